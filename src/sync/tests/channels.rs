//! Opening and creating primitives, job channels, and host waiters that went away.

use super::*;

// ------------------------------------------------------- open and create

#[test]
fn open_finds_only_an_existing_primitive_of_its_kind() {
    let reg = registry(&[
        ("q", queue(0)),
        ("l", Spec::Lock),
        ("r", Spec::RLock),
        ("c", Spec::Condition),
    ]);
    let key = reg.open_channel();
    let w = Guest::new(&reg, 1);

    assert_eq!(w.call(op::open("q", Kind::Queue)), Answer::Done);
    assert_eq!(w.call(op::open("l", Kind::Lock)), Answer::Done);
    assert_eq!(w.call(op::open("r", Kind::RLock)), Answer::Done);
    assert_eq!(w.call(op::open("c", Kind::Condition)), Answer::Done);

    assert_not_found(w.call(op::open("q", Kind::Lock)));
    assert_not_found(w.call(op::open("l", Kind::RLock)));
    assert_not_found(w.call(op::open("r", Kind::Lock)));
    assert_not_found(w.call(op::open("missing", Kind::Queue)));
    assert_not_found(w.call(op::open(&key, Kind::Queue)));
}

#[test]
fn operations_on_a_missing_or_other_primitive_are_not_found() {
    let reg = registry(&[("l", Spec::Lock), ("q", queue(0)), ("c", Spec::Condition)]);
    let w = Guest::new(&reg, 1);

    assert_not_found(w.call(op::put("l", "a")));
    assert_not_found(w.call(op::get("missing")));
    assert_not_found(w.call(op::acquire("q")));
    assert_not_found(w.call(op::sem_acquire("l")));
    assert_not_found(w.call(op::wait("l")));
    assert_not_found(w.call(op::barrier("q")));
    // A condition's lock is a lock.
    assert_eq!(w.call(op::acquire("c")), Answer::Done);
}

#[test]
fn create_again_needs_the_same_settings() {
    let reg = Registry::default();
    let q = Spec::Queue {
        capacity: 2,
        joinable: false,
    };

    assert_eq!(reg.create("q", q), Ok(()));
    assert_eq!(reg.create("q", q), Ok(()));
    assert!(reg.create("q", queue(3)).is_err());
    assert!(
        reg.create(
            "q",
            Spec::Queue {
                capacity: 2,
                joinable: true
            }
        )
        .is_err()
    );
    assert!(reg.create("q", Spec::Lock).is_err());

    reg.create("l", Spec::Lock).expect("lock");
    assert!(reg.create("l", Spec::RLock).is_err());
    reg.create("s", Spec::Semaphore { permits: n(2) })
        .expect("semaphore");
    assert_eq!(reg.create("s", Spec::Semaphore { permits: n(2) }), Ok(()));
    assert!(reg.create("s", Spec::Semaphore { permits: n(3) }).is_err());
    reg.create("b", Spec::Barrier { parties: n(2) })
        .expect("barrier");
    assert!(reg.create("b", Spec::Barrier { parties: n(4) }).is_err());

    let key = reg.open_channel();
    assert!(reg.create(&key, Spec::Event).is_err());
}

// -------------------------------------------------------- job channels

#[test]
fn guest_emit_reaches_the_hosts_recv() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    assert_eq!(job.call(op::emit("a")), Answer::Done);
    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(recv.answer(), Some(value("a")));

    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(recv.answer(), None);
    job.call(op::emit("b"));
    assert_eq!(recv.answer(), Some(value("b")));

    // The guest does not hear its own values.
    job.start(op::recv());
}

#[test]
fn host_emit_reaches_the_guests_recv() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    let r = job.start(op::recv());
    let mut emit = HostCall::submit_on(&reg, Some(&key), op::emit("a"));
    assert_eq!(emit.answer(), Some(Answer::Done));
    assert_eq!(job.answers(), [(r, value("a"))]);

    // The host does not hear its own values.
    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(recv.answer(), None);
}

#[test]
fn end_channel_answers_receivers_with_nothing_and_refuses_emits() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    let r = job.start(op::recv());
    let mut host_recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    reg.end_channel(&key);
    assert_eq!(job.answers(), [(r, Answer::Nothing)]);
    assert_eq!(host_recv.answer(), Some(Answer::Nothing));

    assert_eq!(job.call(op::emit("late")), Answer::Closed);
    let mut host_emit = HostCall::submit_on(&reg, Some(&key), op::emit("late"));
    assert_eq!(host_emit.answer(), Some(Answer::Closed));
}

#[test]
fn values_emitted_before_the_end_are_still_received() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    job.call(op::emit("a"));
    reg.end_channel(&key);
    let recv = || HostCall::submit_on(&reg, Some(&key), op::recv()).answer();
    assert_eq!(recv(), Some(value("a")));
    assert_eq!(recv(), Some(Answer::Nothing));
}

#[test]
fn close_input_closes_only_the_hosts_direction() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);
    let host_on = |o: GuestOp| HostCall::submit_on(&reg, Some(&key), o).answer();

    assert_eq!(host_on(op::emit("a")), Some(Answer::Done));
    reg.close_input(&key);
    assert_eq!(host_on(op::emit("b")), Some(Answer::Closed));
    assert_eq!(job.call(op::recv()), value("a"));
    assert_eq!(job.call(op::recv()), Answer::Nothing);

    assert_eq!(job.call(op::emit("c")), Answer::Done);
    assert_eq!(host_on(op::recv()), Some(value("c")));
}

#[test]
fn channel_emit_waits_beyond_its_capacity() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    for i in 0..JOB_CHANNEL_CAPACITY {
        assert_eq!(job.call(op::emit(&i.to_string())), Answer::Done);
    }
    let e = job.start(op::emit("last"));
    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(recv.answer(), Some(value("0")));
    assert_eq!(job.answers(), [(e, Answer::Done)]);
}

#[test]
fn without_a_channel_emit_is_closed_and_recv_nothing() {
    let reg = Registry::default();
    let w = Guest::new(&reg, 1);

    assert_eq!(w.call(op::emit("a")), Answer::Closed);
    assert_eq!(w.call(op::recv()), Answer::Nothing);
    assert_eq!(host(&reg, op::recv()), Answer::Nothing);
}

#[test]
fn guest_state_call_end_releases_and_ends_the_channel() {
    let reg = Arc::new(registry(&[("l", Spec::Lock)]));
    let sink = Arc::new(TestSink::default());
    let state = GuestState::new(reg.clone(), 7, sink.clone());
    let key = reg.open_channel();
    state.attach_channel(key.clone());
    let other = Guest::new(&reg, 8);

    state.submit(1, op::acquire("l"));
    assert_eq!(sink.take(), [(1, Answer::Done)]);
    let a = other.start(op::acquire("l"));
    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());

    state.call_ended();
    assert_eq!(other.answers(), [(a, Answer::Done)]);
    assert_eq!(recv.answer(), Some(Answer::Nothing));
}

// ------------------------------------------------ host waiters gone away

#[test]
fn host_getter_gone_while_waiting_does_not_lose_the_value() {
    let reg = registry(&[("q", queue(0))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    let mut gone = HostCall::submit(&reg, op::get("q"));
    assert_eq!(gone.answer(), None);
    drop(gone);

    producer.call(op::put("q", "a"));
    producer.call(op::put("q", "b"));
    assert_eq!(consumer.call(op::get("q")), value("a"));
    assert_eq!(consumer.call(op::get("q")), value("b"));
}

#[test]
fn host_getter_gone_before_the_value_came_leaves_it_for_the_next_waiter() {
    let reg = registry(&[("q", queue(0))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    let gone = HostCall::submit(&reg, op::get("q"));
    let g = consumer.start(op::get("q"));
    drop(gone);
    producer.call(op::put("q", "a"));
    assert_eq!(consumer.answers(), [(g, value("a"))]);
}

#[test]
fn host_putter_gone_while_waiting_puts_nothing() {
    let reg = registry(&[("q", queue(1))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));

    producer.call(op::put("q", "a"));
    let mut gone = HostCall::submit(&reg, op::put("q", "b"));
    assert_eq!(gone.answer(), None);
    drop(gone);

    assert_eq!(consumer.call(op::get("q")), value("a"));
    assert_eq!(consumer.call(op::queue_len("q")), Answer::Count(0));
}

#[test]
fn unget_puts_a_value_back_at_the_front() {
    let reg = registry(&[("q", queue(0))]);
    let (producer, consumer) = (Guest::new(&reg, 1), Guest::new(&reg, 2));
    producer.call(op::put("q", "a"));
    producer.call(op::put("q", "b"));

    assert_eq!(host(&reg, op::get("q")), value("a"));
    reg.unget(Unget::Queue("q"), b"a".to_vec());
    assert_eq!(consumer.call(op::get("q")), value("a"));
    assert_eq!(consumer.call(op::get("q")), value("b"));

    let g = consumer.start(op::get("q"));
    reg.unget(Unget::Queue("q"), b"c".to_vec());
    assert_eq!(consumer.answers(), [(g, value("c"))]);
}

#[test]
fn host_receiver_gone_on_a_channel_does_not_lose_the_value() {
    let reg = Registry::default();
    let key = reg.open_channel();
    let job = Guest::on_channel(&reg, 1, &key);

    drop(HostCall::submit_on(&reg, Some(&key), op::recv()));
    assert_eq!(job.call(op::emit("a")), Answer::Done);
    let mut recv = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(recv.answer(), Some(value("a")));

    reg.unget(Unget::Channel(&key), b"a".to_vec());
    let mut again = HostCall::submit_on(&reg, Some(&key), op::recv());
    assert_eq!(again.answer(), Some(value("a")));
}
