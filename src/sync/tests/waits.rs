//! Events, conditions and barriers.

use super::*;

// ---------------------------------------------------------------- events

#[test]
fn event_set_wakes_every_waiter_and_later_waits_pass() {
    let reg = registry(&[("e", Spec::Event)]);
    let (w1, w2, setter) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    assert_eq!(setter.call(op::is_set("e")), Answer::Bool(false));
    let a1 = w1.start(op::wait("e"));
    let a2 = w2.start(op::wait("e"));

    assert_eq!(setter.call(op::set("e")), Answer::Done);
    assert_eq!(w1.answers(), [(a1, Answer::Done)]);
    assert_eq!(w2.answers(), [(a2, Answer::Done)]);
    assert_eq!(setter.call(op::is_set("e")), Answer::Bool(true));
    assert_eq!(w1.call(op::wait("e")), Answer::Done);
}

#[test]
fn cleared_event_blocks_again() {
    let reg = registry(&[("e", Spec::Event)]);
    let (waiter, setter) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    setter.call(op::set("e"));
    assert_eq!(setter.call(op::clear("e")), Answer::Done);
    assert_eq!(setter.call(op::is_set("e")), Answer::Bool(false));
    let a = waiter.start(op::wait("e"));
    setter.call(op::set("e"));
    assert_eq!(waiter.answers(), [(a, Answer::Done)]);
}

// ------------------------------------------------------------ conditions

#[test]
fn condition_wait_and_notify_need_the_lock() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (holder, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    assert_invalid(other.call(op::cond_wait("c")));
    assert_invalid(other.call(op::notify("c", 1)));
    holder.call(op::acquire("c"));
    assert_invalid(other.call(op::cond_wait("c")));
    assert_invalid(other.call(op::notify("c", 1)));
    assert_eq!(holder.call(op::notify("c", 1)), Answer::Done);
}

#[test]
fn condition_wait_lets_go_of_the_lock() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (sleeper, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    assert_eq!(sleeper.call(op::acquire("c")), Answer::Done);
    sleeper.start(op::cond_wait("c"));
    assert_eq!(other.call(op::acquire("c")), Answer::Done);
}

#[test]
fn notify_one_wakes_one_sleeper_once_the_notifier_releases() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (s1, s2, notifier) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    s1.call(op::acquire("c"));
    let w1 = s1.start(op::cond_wait("c"));
    s2.call(op::acquire("c"));
    let w2 = s2.start(op::cond_wait("c"));

    notifier.call(op::acquire("c"));
    assert_eq!(notifier.call(op::notify("c", 1)), Answer::Done);
    s1.assert_unanswered();
    assert_eq!(notifier.call(op::release("c")), Answer::Done);
    assert_eq!(s1.answers(), [(w1, Answer::Bool(true))]);
    s2.assert_unanswered();

    // The woken sleeper holds the lock again.
    let a = notifier.start(op::acquire("c"));
    assert_eq!(s1.call(op::release("c")), Answer::Done);
    assert_eq!(notifier.answers(), [(a, Answer::Done)]);

    notifier.call(op::notify("c", 1));
    notifier.call(op::release("c"));
    assert_eq!(s2.answers(), [(w2, Answer::Bool(true))]);
}

#[test]
fn notify_many_wakes_sleepers_in_turn() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (s1, s2, notifier) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    s1.call(op::acquire("c"));
    let w1 = s1.start(op::cond_wait("c"));
    s2.call(op::acquire("c"));
    let w2 = s2.start(op::cond_wait("c"));

    notifier.call(op::acquire("c"));
    notifier.call(op::notify("c", u32::MAX));
    notifier.call(op::release("c"));
    // Both woke, but they take the lock one at a time.
    assert_eq!(s1.answers(), [(w1, Answer::Bool(true))]);
    s2.assert_unanswered();
    s1.call(op::release("c"));
    assert_eq!(s2.answers(), [(w2, Answer::Bool(true))]);
}

#[test]
fn sleeper_whose_call_ended_takes_no_notification() {
    let reg = registry(&[("c", Spec::Condition)]);
    let (dead, live, notifier) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    dead.call(op::acquire("c"));
    dead.start(op::cond_wait("c"));
    live.call(op::acquire("c"));
    let w = live.start(op::cond_wait("c"));
    dead.end();

    notifier.call(op::acquire("c"));
    notifier.call(op::notify("c", 1));
    notifier.call(op::release("c"));
    assert_eq!(live.answers(), [(w, Answer::Bool(true))]);
    dead.assert_unanswered();
}

// -------------------------------------------------------------- barriers

#[test]
fn barrier_answers_all_parties_at_once_with_distinct_places() {
    let reg = registry(&[("b", Spec::Barrier { parties: n(3) })]);
    let (w1, w2, w3) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    for round in 0..2 {
        let a1 = w1.start(op::barrier("b"));
        let a2 = w2.start(op::barrier("b"));
        let a3 = w3.submit(op::barrier("b"));
        assert_eq!(w1.answers(), [(a1, Answer::Count(0))], "round {round}");
        assert_eq!(w2.answers(), [(a2, Answer::Count(1))], "round {round}");
        assert_eq!(w3.answers(), [(a3, Answer::Count(2))], "round {round}");
    }
}

#[test]
fn barrier_party_whose_call_dies_is_no_longer_counted() {
    let reg = registry(&[("b", Spec::Barrier { parties: n(2) })]);
    let (ended, fenced, w3, w4) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
        Guest::new(&reg, 4),
    );

    ended.start(op::barrier("b"));
    ended.end();
    fenced.start(op::barrier("b"));
    reg.fence(fenced.id);

    let a3 = w3.start(op::barrier("b"));
    let a4 = w4.submit(op::barrier("b"));
    assert_eq!(w3.answers(), [(a3, Answer::Count(0))]);
    assert_eq!(w4.answers(), [(a4, Answer::Count(1))]);
    ended.assert_unanswered();
    fenced.assert_unanswered();
}

#[test]
fn barrier_counts_host_waiters_but_not_those_gone() {
    let reg = registry(&[("b", Spec::Barrier { parties: n(2) })]);
    let (w1, w2) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    let mut gone = HostCall::submit(&reg, op::barrier("b"));
    assert_eq!(gone.answer(), None);
    drop(gone);
    let a1 = w1.start(op::barrier("b"));

    let mut present = HostCall::submit(&reg, op::barrier("b"));
    assert_eq!(w1.answers(), [(a1, Answer::Count(0))]);
    assert_eq!(present.answer(), Some(Answer::Count(1)));

    // The next round starts empty.
    w2.start(op::barrier("b"));
}
