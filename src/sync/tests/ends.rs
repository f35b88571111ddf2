//! How a guest's wait ends early: fencing a cancelled guest, and timeouts.

use super::*;

// -------------------------------------------------------------- fencing

#[test]
fn fence_drops_the_workers_waits_unanswered() {
    let reg = registry(&[("q", queue(0)), ("l", Spec::Lock)]);
    let (fenced, holder, other) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    fenced.start(op::get("q"));
    holder.call(op::acquire("l"));
    let lock_wait = fenced.start(op::acquire("l"));
    reg.fence(fenced.id);

    // The value goes to whoever asks next, the lock to the next waiter.
    assert_eq!(other.call(op::put("q", "a")), Answer::Done);
    let a = other.start(op::acquire("l"));
    holder.call(op::release("l"));
    assert_eq!(other.answers(), [(a, Answer::Done)]);
    assert_eq!(other.call(op::get("q")), value("a"));

    // Nor does an abandon reach it.
    fenced.abandon(lock_wait);
    fenced.assert_unanswered();
}

#[test]
fn fenced_worker_is_ignored_but_keeps_what_it_holds_until_released() {
    let reg = registry(&[("l", Spec::Lock), ("m", Spec::Lock), ("q", queue(0))]);
    let (fenced, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    fenced.call(op::acquire("l"));
    reg.fence(fenced.id);

    fenced.submit(op::release("l"));
    fenced.submit(op::acquire("m"));
    fenced.submit(op::put("q", "a"));
    fenced.submit(op::open("q", Kind::Queue));
    fenced.assert_unanswered();

    // None of it took effect: "l" is still held, "m" free, "q" empty.
    let a = other.start(op::acquire("l"));
    assert_eq!(other.call(op::acquire("m")), Answer::Done);
    assert_eq!(other.call(op::queue_len("q")), Answer::Count(0));

    fenced.end();
    assert_eq!(other.answers(), [(a, Answer::Done)]);
    // The fence is lifted with the release.
    assert_eq!(fenced.call(op::open("q", Kind::Queue)), Answer::Done);
}

#[test]
fn release_op_releases_even_a_fenced_worker() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (fenced, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    fenced.call(op::acquire("l"));
    reg.fence(fenced.id);
    let a = other.start(op::acquire("l"));

    fenced.submit(GuestOp::Release);
    fenced.assert_unanswered();
    assert_eq!(other.answers(), [(a, Answer::Done)]);
    assert_eq!(fenced.call(op::open("l", Kind::Lock)), Answer::Done);
}

// ------------------------------------------------------------- timeouts

#[test]
fn abandoned_waits_time_out_and_take_nothing() {
    let reg = registry(&[
        ("empty", queue(0)),
        ("full", queue(1)),
        ("l", Spec::Lock),
        ("s", Spec::Semaphore { permits: n(1) }),
        ("e", Spec::Event),
        ("b", Spec::Barrier { parties: n(2) }),
    ]);
    let (w, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));
    other.call(op::put("full", "x"));
    other.call(op::acquire("l"));
    other.call(op::sem_acquire("s"));

    let waits = [
        op::get("empty"),
        op::put("full", "y"),
        op::acquire("l"),
        op::sem_acquire("s"),
        op::wait("e"),
        op::barrier("b"),
    ];
    for wait in waits {
        let label = format!("{wait:?}");
        let seq = w.start(wait);
        w.abandon(seq);
        assert_eq!(w.answers(), [(seq, Answer::Timeout)], "{label}");
    }

    // The abandoned waits are gone: nothing reaches `w` from here on.
    other.call(op::put("empty", "a"));
    assert_eq!(other.call(op::get("full")), value("x"));
    assert_eq!(other.call(op::queue_len("full")), Answer::Count(0));
    other.call(op::release("l"));
    other.call(op::sem_release("s"));
    other.call(op::set("e"));
    other.start(op::barrier("b"));
    w.assert_unanswered();
    assert_eq!(other.call(op::queue_len("empty")), Answer::Count(1));
}

#[test]
fn abandon_op_from_the_guest_times_out_its_wait() {
    let reg = registry(&[("q", joinable_queue())]);
    let w = Guest::new(&reg, 1);

    w.call(op::put("q", "a"));
    let j = w.start(op::join("q"));
    // The abandon itself is not answered, the join is.
    w.submit(GuestOp::Abandon { seq: j });
    assert_eq!(w.answers(), [(j, Answer::Timeout)]);
}

#[test]
fn abandon_after_a_grant_does_nothing() {
    let reg = registry(&[("l", Spec::Lock), ("q", queue(0))]);
    let (w, holder, other) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    holder.call(op::acquire("l"));
    let a = w.start(op::acquire("l"));
    holder.call(op::release("l"));
    assert_eq!(w.answers(), [(a, Answer::Done)]);
    w.abandon(a);
    w.assert_unanswered();
    // The grant stands: `w` holds the lock.
    other.start(op::acquire("l"));

    let g = w.start(op::get("q"));
    other.call(op::put("q", "v"));
    assert_eq!(w.answers(), [(g, value("v"))]);
    w.abandon(g);
    w.assert_unanswered();
}

#[test]
fn abandoned_condition_wait_answers_false_once_it_has_the_lock() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (sleeper, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    sleeper.call(op::acquire("c"));
    let w = sleeper.start(op::cond_wait("c"));
    other.call(op::acquire("c"));

    sleeper.abandon(w);
    sleeper.assert_unanswered();
    other.call(op::release("c"));
    assert_eq!(sleeper.answers(), [(w, Answer::Bool(false))]);

    // It holds the lock again.
    let a = other.start(op::acquire("c"));
    sleeper.call(op::release("c"));
    assert_eq!(other.answers(), [(a, Answer::Done)]);
}

#[test]
fn abandoned_condition_wait_with_the_lock_free_answers_false_at_once() {
    let reg = registry(&[("c", Spec::Condition)]);
    let sleeper = Guest::new(&reg, 1);

    sleeper.call(op::acquire("c"));
    let w = sleeper.start(op::cond_wait("c"));
    sleeper.abandon(w);
    assert_eq!(sleeper.answers(), [(w, Answer::Bool(false))]);
}

#[test]
fn condition_wait_notified_before_its_abandon_answers_true() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (sleeper, notifier) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    sleeper.call(op::acquire("c"));
    let w = sleeper.start(op::cond_wait("c"));
    notifier.call(op::acquire("c"));
    notifier.call(op::notify("c", 1));

    sleeper.abandon(w);
    sleeper.assert_unanswered();
    notifier.call(op::release("c"));
    assert_eq!(sleeper.answers(), [(w, Answer::Bool(true))]);
}

#[test]
fn abandoned_plain_acquire_of_a_condition_lock_times_out() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (holder, w) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    holder.call(op::acquire("c"));
    let a = w.start(op::acquire("c"));
    w.abandon(a);
    assert_eq!(w.answers(), [(a, Answer::Timeout)]);
    holder.call(op::release("c"));
    w.assert_unanswered();
}
