//! The registry's semantics, scenario by scenario.
//!
//! Guests are [`Guest`]s: a worker id, a sequence counter and a
//! [`TestSink`] that records every answer, so a test can assert exactly
//! which answers a worker got and in what order. Host waiters are
//! [`HostCall`]s: a oneshot receiver polled with `try_recv`; dropping it is
//! a host waiter that went away.

use crate::locks::Locked as _;
use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use serde_bytes::ByteBuf;
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::*;
use crate::wire::{Answer, GuestOp, Kind};

mod channels;
mod ends;
mod locks;
mod queues;
mod waits;

/// Records what a worker's guest is answered, in order.
#[derive(Default)]
struct TestSink(Mutex<Vec<(u64, Answer)>>);

impl AnswerSink for TestSink {
    fn deliver(&self, seq: u64, answer: Answer) {
        self.0.locked().push((seq, answer));
    }
}

impl TestSink {
    /// Takes the answers delivered so far.
    fn take(&self) -> Vec<(u64, Answer)> {
        std::mem::take(&mut *self.0.locked())
    }
}

/// One worker's guest: submits operations with increasing sequence
/// numbers, and reads its answers.
struct Guest<'r> {
    registry: &'r Registry,
    id: u64,
    sink: Arc<TestSink>,
    next_seq: Cell<u64>,
    channel: Option<String>,
}

impl<'r> Guest<'r> {
    fn new(registry: &'r Registry, id: u64) -> Self {
        Guest {
            registry,
            id,
            sink: Arc::default(),
            next_seq: Cell::new(1),
            channel: None,
        }
    }

    /// A guest running a spawned job with channel `key`.
    fn on_channel(registry: &'r Registry, id: u64, key: &str) -> Self {
        Guest {
            channel: Some(key.to_string()),
            ..Guest::new(registry, id)
        }
    }

    fn owner(&self) -> Owner {
        Owner::Worker(self.id)
    }

    /// Submits `op`; returns its sequence number.
    fn submit(&self, op: GuestOp) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let sink = Sink::Guest(self.sink.clone());
        self.registry
            .submit(self.owner(), seq, op, sink, self.channel.as_deref());
        seq
    }

    /// Submits `op`, which must be answered at once, and returns the
    /// answer.
    fn call(&self, op: GuestOp) -> Answer {
        let seq = self.submit(op);
        match self.answers().as_slice() {
            [(s, answer)] if *s == seq => answer.clone(),
            other => panic!(
                "worker {}: expected one answer to op {seq}, got {other:?}",
                self.id
            ),
        }
    }

    /// Submits `op`, which must wait; returns its sequence number.
    fn start(&self, op: GuestOp) -> u64 {
        let seq = self.submit(op);
        self.assert_unanswered();
        seq
    }

    /// The answers delivered since the last look.
    fn answers(&self) -> Vec<(u64, Answer)> {
        self.sink.take()
    }

    fn assert_unanswered(&self) {
        let answers = self.answers();
        assert!(
            answers.is_empty(),
            "worker {}: expected no answer, got {answers:?}",
            self.id
        );
    }

    /// The worker's call ends: everything it holds is released.
    fn end(&self) {
        self.registry.release_all(self.owner());
    }

    /// The guest's deadline for op `seq` passed.
    fn abandon(&self, seq: u64) {
        self.registry.abandon(self.owner(), seq);
    }
}

/// One host operation, awaited by polling its receiver.
struct HostCall {
    owner: Owner,
    rx: oneshot::Receiver<Answer>,
}

impl HostCall {
    fn submit(registry: &Registry, op: GuestOp) -> HostCall {
        HostCall::submit_on(registry, None, op)
    }

    /// A host handle's operation on job channel `channel`.
    fn submit_on(registry: &Registry, channel: Option<&str>, op: GuestOp) -> HostCall {
        let owner = registry.host_owner();
        let (tx, rx) = oneshot::channel();
        registry.submit(owner, 0, op, Sink::Host(tx), channel);
        HostCall { owner, rx }
    }

    /// The answer, if there is one yet.
    fn answer(&mut self) -> Option<Answer> {
        match self.rx.try_recv() {
            Ok(answer) => Some(answer),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => panic!("host op {:?} dropped unanswered", self.owner),
        }
    }
}

/// Submits `op` for the host and returns its answer, which must be there
/// at once.
fn host(registry: &Registry, op: GuestOp) -> Answer {
    HostCall::submit(registry, op)
        .answer()
        .expect("the host op is answered at once")
}

/// A registry with the primitives `specs`.
fn registry(specs: &[(&str, Spec)]) -> Registry {
    let registry = Registry::default();
    for (name, spec) in specs {
        registry.create(name, *spec).expect("create");
    }
    registry
}

fn queue(capacity: usize) -> Spec {
    Spec::Queue {
        capacity,
        joinable: false,
    }
}

fn joinable_queue() -> Spec {
    Spec::Queue {
        capacity: 0,
        joinable: true,
    }
}

fn n(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

fn value(v: &str) -> Answer {
    Answer::Value(ByteBuf::from(v.as_bytes()))
}

#[track_caller]
fn assert_invalid(answer: Answer) {
    assert!(
        matches!(answer, Answer::Invalid(_)),
        "expected Invalid, got {answer:?}"
    );
}

#[track_caller]
fn assert_not_found(answer: Answer) {
    assert!(
        matches!(answer, Answer::NotFound(_)),
        "expected NotFound, got {answer:?}"
    );
}

/// The operations, by what they do.
mod op {
    use serde_bytes::ByteBuf;

    use crate::wire::{GuestOp, Kind};

    pub(super) fn open(name: &str, kind: Kind) -> GuestOp {
        GuestOp::Open {
            name: name.into(),
            kind,
        }
    }

    pub(super) fn put(name: &str, value: &str) -> GuestOp {
        GuestOp::QueuePut {
            name: name.into(),
            value: ByteBuf::from(value.as_bytes()),
        }
    }

    pub(super) fn get(name: &str) -> GuestOp {
        GuestOp::QueueGet { name: name.into() }
    }

    pub(super) fn task_done(name: &str) -> GuestOp {
        GuestOp::QueueTaskDone { name: name.into() }
    }

    pub(super) fn join(name: &str) -> GuestOp {
        GuestOp::QueueJoin { name: name.into() }
    }

    pub(super) fn close(name: &str) -> GuestOp {
        GuestOp::QueueClose { name: name.into() }
    }

    pub(super) fn queue_len(name: &str) -> GuestOp {
        GuestOp::QueueLen { name: name.into() }
    }

    pub(super) fn acquire(name: &str) -> GuestOp {
        GuestOp::LockAcquire { name: name.into() }
    }

    pub(super) fn release(name: &str) -> GuestOp {
        GuestOp::LockRelease { name: name.into() }
    }

    pub(super) fn sem_acquire(name: &str) -> GuestOp {
        GuestOp::SemaphoreAcquire { name: name.into() }
    }

    pub(super) fn sem_release(name: &str) -> GuestOp {
        GuestOp::SemaphoreRelease { name: name.into() }
    }

    pub(super) fn set(name: &str) -> GuestOp {
        GuestOp::EventSet { name: name.into() }
    }

    pub(super) fn clear(name: &str) -> GuestOp {
        GuestOp::EventClear { name: name.into() }
    }

    pub(super) fn is_set(name: &str) -> GuestOp {
        GuestOp::EventIsSet { name: name.into() }
    }

    pub(super) fn wait(name: &str) -> GuestOp {
        GuestOp::EventWait { name: name.into() }
    }

    pub(super) fn cond_wait(name: &str) -> GuestOp {
        GuestOp::ConditionWait { name: name.into() }
    }

    pub(super) fn notify(name: &str, n: u32) -> GuestOp {
        GuestOp::ConditionNotify {
            name: name.into(),
            n,
        }
    }

    pub(super) fn barrier(name: &str) -> GuestOp {
        GuestOp::BarrierWait { name: name.into() }
    }

    pub(super) fn emit(value: &str) -> GuestOp {
        GuestOp::Emit {
            value: ByteBuf::from(value.as_bytes()),
        }
    }

    pub(super) fn recv() -> GuestOp {
        GuestOp::Recv
    }
}
