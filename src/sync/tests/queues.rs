//! Queues: FIFO order, capacity, close, joinable queues and the give-back of a dead taker's values.

use super::*;

// ---------------------------------------------------------------- queues

#[test]
fn queue_is_fifo() {
    let reg = registry(&[("q", queue(0))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    for v in ["a", "b", "c"] {
        assert_eq!(producer.call(op::put("q", v)), Answer::Done);
    }
    assert_eq!(consumer.call(op::queue_len("q")), Answer::Count(3));
    assert_eq!(consumer.call(op::get("q")), value("a"));
    assert_eq!(consumer.call(op::get("q")), value("b"));
    assert_eq!(consumer.call(op::get("q")), value("c"));
    assert_eq!(consumer.call(op::queue_len("q")), Answer::Count(0));
}

#[test]
fn waiting_getters_are_served_in_arrival_order() {
    let reg = registry(&[("q", queue(0))]);
    let (first, second, producer) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    let g1 = first.start(op::get("q"));
    let g2 = second.start(op::get("q"));
    assert_eq!(producer.call(op::put("q", "a")), Answer::Done);
    assert_eq!(first.answers(), [(g1, value("a"))]);
    second.assert_unanswered();
    assert_eq!(producer.call(op::put("q", "b")), Answer::Done);
    assert_eq!(second.answers(), [(g2, value("b"))]);
}

#[test]
fn put_beyond_capacity_waits_until_a_get_makes_room() {
    let reg = registry(&[("q", queue(1))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    assert_eq!(producer.call(op::put("q", "a")), Answer::Done);
    let p = producer.start(op::put("q", "b"));
    assert_eq!(consumer.call(op::queue_len("q")), Answer::Count(1));

    assert_eq!(consumer.call(op::get("q")), value("a"));
    assert_eq!(producer.answers(), [(p, Answer::Done)]);
    assert_eq!(consumer.call(op::queue_len("q")), Answer::Count(1));
    assert_eq!(consumer.call(op::get("q")), value("b"));
}

#[test]
fn close_answers_waiting_getters_with_nothing() {
    let reg = registry(&[("q", queue(0))]);
    let (a, b, closer) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    let ga = a.start(op::get("q"));
    let gb = b.start(op::get("q"));
    assert_eq!(closer.call(op::close("q")), Answer::Done);
    assert_eq!(a.answers(), [(ga, Answer::Nothing)]);
    assert_eq!(b.answers(), [(gb, Answer::Nothing)]);
}

#[test]
fn closed_queue_refuses_puts_and_drains_before_nothing() {
    let reg = registry(&[("q", queue(0))]);
    let w = Guest::new(&reg, 1);

    assert_eq!(w.call(op::put("q", "a")), Answer::Done);
    assert_eq!(w.call(op::close("q")), Answer::Done);
    assert_eq!(w.call(op::put("q", "b")), Answer::Closed);
    assert_eq!(w.call(op::get("q")), value("a"));
    assert_eq!(w.call(op::get("q")), Answer::Nothing);
    assert_eq!(w.call(op::get("q")), Answer::Nothing);
}

#[test]
fn close_answers_waiting_putters_with_closed() {
    let reg = registry(&[("q", queue(1))]);
    let (producer, blocked, other) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    assert_eq!(producer.call(op::put("q", "a")), Answer::Done);
    let p = blocked.start(op::put("q", "b"));
    assert_eq!(other.call(op::close("q")), Answer::Done);
    assert_eq!(blocked.answers(), [(p, Answer::Closed)]);
    // What was in the queue stays; the refused value never went in.
    assert_eq!(other.call(op::get("q")), value("a"));
    assert_eq!(other.call(op::get("q")), Answer::Nothing);
}

#[test]
fn join_answers_once_every_value_put_is_done() {
    let reg = registry(&[("q", joinable_queue())]);
    let (producer, worker, joiner) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    // Nothing put: nothing to wait for.
    assert_eq!(joiner.call(op::join("q")), Answer::Done);

    producer.call(op::put("q", "a"));
    producer.call(op::put("q", "b"));
    let j = joiner.start(op::join("q"));

    assert_eq!(worker.call(op::get("q")), value("a"));
    assert_eq!(worker.call(op::task_done("q")), Answer::Done);
    joiner.assert_unanswered();

    assert_eq!(worker.call(op::get("q")), value("b"));
    joiner.assert_unanswered();
    assert_eq!(worker.call(op::task_done("q")), Answer::Done);
    assert_eq!(joiner.answers(), [(j, Answer::Done)]);
}

#[test]
fn task_done_and_join_misuse_is_invalid() {
    let reg = registry(&[("plain", queue(0)), ("q", joinable_queue())]);
    let w = Guest::new(&reg, 1);

    assert_invalid(w.call(op::task_done("plain")));
    assert_invalid(w.call(op::join("plain")));

    assert_invalid(w.call(op::task_done("q")));
    w.call(op::put("q", "a"));
    assert_eq!(w.call(op::get("q")), value("a"));
    assert_eq!(w.call(op::task_done("q")), Answer::Done);
    assert_invalid(w.call(op::task_done("q")));
}

#[test]
fn values_taken_and_not_done_go_back_to_the_front_in_order() {
    let reg = registry(&[("q", joinable_queue())]);
    let (producer, taker, next) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );
    for v in ["a", "b", "c", "d"] {
        producer.call(op::put("q", v));
    }

    assert_eq!(taker.call(op::get("q")), value("a"));
    assert_eq!(taker.call(op::get("q")), value("b"));
    assert_eq!(taker.call(op::get("q")), value("c"));
    // Marks its oldest value, "a", done: that one does not come back.
    assert_eq!(taker.call(op::task_done("q")), Answer::Done);
    taker.end();

    assert_eq!(next.call(op::queue_len("q")), Answer::Count(3));
    for v in ["b", "c", "d"] {
        assert_eq!(next.call(op::get("q")), value(v));
    }
}

#[test]
fn give_back_returns_only_the_ending_workers_values() {
    let reg = registry(&[("q", joinable_queue())]);
    let (producer, w1, w2) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );
    for v in ["a", "b", "c", "d"] {
        producer.call(op::put("q", v));
    }

    assert_eq!(w1.call(op::get("q")), value("a"));
    assert_eq!(w2.call(op::get("q")), value("b"));
    assert_eq!(w1.call(op::get("q")), value("c"));
    w1.end();

    for v in ["a", "c", "d"] {
        assert_eq!(producer.call(op::get("q")), value(v));
    }
    assert_eq!(producer.call(op::queue_len("q")), Answer::Count(0));
}

#[test]
fn given_back_value_reaches_a_waiting_getter_and_join_still_waits() {
    let reg = registry(&[("q", joinable_queue())]);
    let (producer, quitter, heir) = (
        Guest::new(&reg, 1),
        Guest::new(&reg, 2),
        Guest::new(&reg, 3),
    );

    producer.call(op::put("q", "a"));
    assert_eq!(quitter.call(op::get("q")), value("a"));
    let g = heir.start(op::get("q"));
    let j = producer.start(op::join("q"));

    quitter.end();
    assert_eq!(heir.answers(), [(g, value("a"))]);
    producer.assert_unanswered();

    assert_eq!(heir.call(op::task_done("q")), Answer::Done);
    assert_eq!(producer.answers(), [(j, Answer::Done)]);
    // Done for good: the heir's end gives nothing back.
    heir.end();
    assert_eq!(producer.call(op::queue_len("q")), Answer::Count(0));
}

#[test]
fn a_plain_queue_gives_nothing_back() {
    let reg = registry(&[("q", queue(0))]);
    let (producer, taker) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    producer.call(op::put("q", "a"));
    assert_eq!(taker.call(op::get("q")), value("a"));
    taker.end();
    assert_eq!(producer.call(op::queue_len("q")), Answer::Count(0));
}

/// A host consumer and a guest consumer share a joinable queue; the host
/// marks its own value done while the guest still holds its value, then
/// the guest's call ends (say it trapped) without marking its value done.
/// The guest's value must come back (`Queue`'s docs: "no value is lost").
///
/// It does not: host gets are not recorded in `taken`, so the host's
/// `task_done` (a fresh host owner with no taken value of its own) falls
/// back to "anyone's" and erases the guest's record instead; the value is
/// gone, and `unfinished` stays at 1, so `join` never returns.
#[test]
fn host_task_done_does_not_cancel_a_guests_give_back() {
    let reg = registry(&[("q", joinable_queue())]);
    let (producer, guest) = (Guest::new(&reg, 1), Guest::new(&reg, 2));
    producer.call(op::put("q", "a"));
    producer.call(op::put("q", "b"));

    assert_eq!(host(&reg, op::get("q")), value("a"));
    assert_eq!(guest.call(op::get("q")), value("b"));
    assert_eq!(host(&reg, op::task_done("q")), Answer::Done);
    guest.end();

    assert_eq!(producer.call(op::queue_len("q")), Answer::Count(1));
    let j = producer.start(op::join("q"));
    assert_eq!(guest.call(op::get("q")), value("b"));
    assert_eq!(guest.call(op::task_done("q")), Answer::Done);
    assert_eq!(producer.answers(), [(j, Answer::Done)]);
}
