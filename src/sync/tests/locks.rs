//! Locks, rlocks and semaphores: who holds, who waits, and what an owner's end gives back.

use super::*;

// ----------------------------------------------------------------- locks

#[test]
fn second_acquirer_waits_for_release() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (holder, waiter) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    assert_eq!(holder.call(op::acquire("l")), Answer::Done);
    let a = waiter.start(op::acquire("l"));
    assert_eq!(holder.call(op::release("l")), Answer::Done);
    assert_eq!(waiter.answers(), [(a, Answer::Done)]);
}

#[test]
fn release_by_non_holder_is_invalid_and_changes_nothing() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (holder, intruder, waiter) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    assert_invalid(intruder.call(op::release("l")));
    assert_eq!(holder.call(op::acquire("l")), Answer::Done);
    assert_invalid(intruder.call(op::release("l")));
    // Still held by the holder.
    waiter.start(op::acquire("l"));
}

#[test]
fn holders_end_grants_the_next_waiter_only() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (w1, w2, w3) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    w1.call(op::acquire("l"));
    let a2 = w2.start(op::acquire("l"));
    let a3 = w3.start(op::acquire("l"));

    w1.end();
    assert_eq!(w2.answers(), [(a2, Answer::Done)]);
    w3.assert_unanswered();
    w2.end();
    assert_eq!(w3.answers(), [(a3, Answer::Done)]);
}

#[test]
fn plain_lock_reacquired_by_its_holder_is_invalid() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (holder, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    holder.call(op::acquire("l"));
    assert_invalid(holder.call(op::acquire("l")));
    // One release frees it: the failed acquire counted nothing.
    let a = other.start(op::acquire("l"));
    assert_eq!(holder.call(op::release("l")), Answer::Done);
    assert_eq!(other.answers(), [(a, Answer::Done)]);
}

#[test]
fn rlock_is_released_as_many_times_as_acquired() {
    let reg = registry(&[("r", Spec::RLock)]);
    let (holder, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    assert_eq!(holder.call(op::acquire("r")), Answer::Done);
    assert_eq!(holder.call(op::acquire("r")), Answer::Done);
    let a = other.start(op::acquire("r"));

    assert_eq!(holder.call(op::release("r")), Answer::Done);
    other.assert_unanswered();
    assert_eq!(holder.call(op::release("r")), Answer::Done);
    assert_eq!(other.answers(), [(a, Answer::Done)]);
    assert_invalid(holder.call(op::release("r")));
}

#[test]
fn rlock_holders_end_releases_every_level() {
    let reg = registry(&[("r", Spec::RLock)]);
    let (holder, other) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    holder.call(op::acquire("r"));
    holder.call(op::acquire("r"));
    holder.call(op::acquire("r"));
    let a = other.start(op::acquire("r"));
    holder.end();
    assert_eq!(other.answers(), [(a, Answer::Done)]);
}

#[test]
fn host_lock_waiter_that_went_away_is_skipped() {
    let reg = registry(&[("l", Spec::Lock)]);
    let (holder, next) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    holder.call(op::acquire("l"));
    let mut gone = HostCall::submit(&reg, op::acquire("l"));
    assert_eq!(gone.answer(), None);
    drop(gone);
    let a = next.start(op::acquire("l"));

    holder.call(op::release("l"));
    assert_eq!(next.answers(), [(a, Answer::Done)]);
}

// ------------------------------------------------------------ semaphores

#[test]
fn semaphore_grants_its_permits_then_waits() {
    let reg = registry(&[("s", Spec::Semaphore { permits: n(2) })]);
    let (w1, w2, w3) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    assert_eq!(w1.call(op::sem_acquire("s")), Answer::Done);
    assert_eq!(w2.call(op::sem_acquire("s")), Answer::Done);
    let a = w3.start(op::sem_acquire("s"));
    assert_eq!(w1.call(op::sem_release("s")), Answer::Done);
    assert_eq!(w3.answers(), [(a, Answer::Done)]);
}

#[test]
fn semaphore_release_without_a_permit_is_invalid() {
    let reg = registry(&[("s", Spec::Semaphore { permits: n(1) })]);
    let (holder, other, waiter) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    assert_invalid(other.call(op::sem_release("s")));
    holder.call(op::sem_acquire("s"));
    assert_invalid(other.call(op::sem_release("s")));
    // The permit is still taken: no extra one appeared.
    waiter.start(op::sem_acquire("s"));
    assert_eq!(holder.call(op::sem_release("s")), Answer::Done);
    assert_invalid(holder.call(op::sem_release("s")));
}

#[test]
fn owners_end_returns_all_its_permits() {
    let reg = registry(&[("s", Spec::Semaphore { permits: n(2) })]);
    let (greedy, w2, w3, w4) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
        Guest::new(&reg, 4),
    );

    greedy.call(op::sem_acquire("s"));
    greedy.call(op::sem_acquire("s"));
    let a2 = w2.start(op::sem_acquire("s"));
    let a3 = w3.start(op::sem_acquire("s"));
    let a4 = w4.start(op::sem_acquire("s"));

    greedy.end();
    assert_eq!(w2.answers(), [(a2, Answer::Done)]);
    assert_eq!(w3.answers(), [(a3, Answer::Done)]);
    w4.assert_unanswered();
    w2.end();
    assert_eq!(w4.answers(), [(a4, Answer::Done)]);
}
