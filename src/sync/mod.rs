//! The pool's synchronisation registry: named queues, locks, rlocks,
//! semaphores, events, conditions and barriers, and the duplex channel of
//! each spawned job; and the host's async handles on them.
//!
//! Every primitive lives here, on the host, under one mutex. Guests reach
//! them through the `wasmpool:sync` imports: a worker sends a [`GuestOp`]
//! and blocks until its [`Answer`]. The host's async handles
//! ([`crate::Queue`], [`crate::Lock`], ...) submit the same operations and
//! await the answer on a oneshot.
//!
//! Whoever waits or holds is an [`Owner`]: a worker (for the item it runs
//! now) or one host operation. [`Registry::release_all`] undoes whatever
//! an owner holds and drops its waits; the pool calls it when a guest's
//! call ends, however it ends, so a dead holder never blocks anyone.
//!
//! Timeouts are decided here too, so that a grant and a timeout cannot
//! cross: a guest whose deadline passes sends [`GuestOp::Abandon`] and
//! takes whichever answer the host gives, the grant or the timeout.
//!
//! Answers to guests are decided under the lock and delivered after it,
//! through each worker's [`AnswerSink`], since delivering to a worker
//! process writes to its request pipe.
//!
//! The registry knows nothing of processes, threads or wasmtime: its
//! semantics are unit-tested in `tests.rs`, in milliseconds.

mod apply;
mod barrier;
mod condition;
mod event;
mod guest;
mod handles;
mod lock;
mod queue;
mod semaphore;
#[cfg(test)]
mod tests;

use crate::locks::Locked as _;
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::wire::{Answer, GuestOp, Kind};

use barrier::BarrierState;
use condition::CondState;
use event::EventState;
pub(crate) use guest::GuestState;
pub use handles::{
    Barrier, Condition, ConditionGuard, Event, Lock, LockGuard, Queue, Semaphore, SemaphorePermit,
};
pub(crate) use handles::{HostOp, check, decode, encode};
use lock::LockState;
use queue::QueueState;
use semaphore::SemState;

/// Who holds or waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// The item a worker runs now.
    Worker(u64),
    /// One host handle's operation or guard.
    Host(u64),
}

/// Where a worker's guest gets its answers: the worker's request pipe for
/// a process, its inbox for a thread. Delivery never blocks for long and
/// never fails loudly: a worker that cannot be reached is dead, and its
/// host thread releases what it held.
pub(crate) trait AnswerSink: Send + Sync {
    /// Hands `answer` to the guest's operation `seq`.
    fn deliver(&self, seq: u64, answer: Answer);
}

/// Submits `op` on the job channel `channel` as its guest would, and
/// resolves to the answer: a cluster caller standing in for a guest that
/// runs on a node. `owner` must be no local worker's.
#[cfg(feature = "cluster")]
pub(crate) async fn as_guest(
    registry: &Registry,
    owner: Owner,
    op: GuestOp,
    channel: &str,
) -> Answer {
    struct Once(Mutex<Option<oneshot::Sender<Answer>>>);
    impl AnswerSink for Once {
        fn deliver(&self, _seq: u64, answer: Answer) {
            if let Some(tx) = self.0.locked().take() {
                let _ = tx.send(answer);
            }
        }
    }
    let (tx, rx) = oneshot::channel();
    let sink = Sink::Guest(Arc::new(Once(Mutex::new(Some(tx)))));
    registry.submit(owner, 0, op, sink, Some(channel));
    rx.await.unwrap_or(Answer::Closed)
}

/// Where an answer goes.
pub(crate) enum Sink {
    Guest(Arc<dyn AnswerSink>),
    Host(oneshot::Sender<Answer>),
}

/// One waiting operation.
pub(crate) struct Waiter {
    owner: Owner,
    seq: u64,
    sink: Sink,
}

/// Answers for guests, delivered once the lock is released; and every
/// answer given, traced then too (a tracing subscriber is the user's code,
/// which no internal lock is held across).
#[derive(Default)]
pub(crate) struct Outbox {
    answers: Vec<(Arc<dyn AnswerSink>, u64, Answer)>,
    traced: Vec<(Owner, u64, &'static str)>,
}

impl Outbox {
    /// Gives `answer` to `w`. A host waiter that has gone away gives the
    /// answer back, so that what it carries is not lost.
    fn give(&mut self, w: Waiter, answer: Answer) -> Result<(), Answer> {
        self.traced.push((w.owner, w.seq, answer.label()));
        match w.sink {
            Sink::Guest(sink) => {
                self.answers.push((sink, w.seq, answer));
                Ok(())
            }
            Sink::Host(tx) => tx.send(answer),
        }
    }

    fn deliver(self) {
        for (owner, seq, answer) in self.traced {
            tracing::trace!(?owner, seq, answer, "registry answers");
        }
        for (sink, seq, answer) in self.answers {
            sink.deliver(seq, answer);
        }
    }
}

/// The settings a primitive is created with, to check a second creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    Queue { capacity: usize, joinable: bool },
    Lock,
    RLock,
    Semaphore { permits: NonZeroUsize },
    Event,
    Condition,
    Barrier { parties: NonZeroUsize },
}

impl Spec {
    fn kind(self) -> Kind {
        match self {
            Spec::Queue { .. } => Kind::Queue,
            Spec::Lock => Kind::Lock,
            Spec::RLock => Kind::RLock,
            Spec::Semaphore { .. } => Kind::Semaphore,
            Spec::Event => Kind::Event,
            Spec::Condition => Kind::Condition,
            Spec::Barrier { .. } => Kind::Barrier,
        }
    }
}

/// Where a value that a dropped host `get` or `recv` received goes back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unget<'a> {
    /// To the front of the named queue.
    Queue(&'a str),
    /// To the front of the job channel's values for the host.
    Channel(&'a str),
}

/// The pool's primitives and job channels.
#[derive(Default)]
pub(crate) struct Registry {
    prims: Mutex<Prims>,
    next_owner: AtomicU64,
    next_channel: AtomicU64,
}

#[derive(Default)]
struct Prims {
    map: HashMap<String, Prim>,
    /// Workers whose call was cancelled and has not yet stopped: whatever
    /// they ask is dropped, unanswered, until the interrupt stops them.
    fenced: HashSet<u64>,
    /// Why named primitives are refused here, if they are: on a cluster
    /// node, whose pool is not the caller's.
    refuse_named: Option<String>,
}

impl Prims {
    fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        if let Owner::Worker(w) = owner {
            self.fenced.remove(&w);
        }
        for prim in self.map.values_mut() {
            prim.release_all(owner, out);
        }
    }

    fn abandon(&mut self, owner: Owner, seq: u64, out: &mut Outbox) {
        for prim in self.map.values_mut() {
            if prim.abandon(owner, seq, out) {
                break;
            }
        }
    }
}

enum Prim {
    Queue(QueueState),
    Lock(LockState),
    Semaphore(SemState),
    Event(EventState),
    Condition(CondState),
    Barrier(BarrierState),
    /// A job's channel: values to the guest, values to the host.
    Channel(Box<[QueueState; 2]>),
}

/// How many values each direction of a spawned job's channel buffers
/// before its sender waits: 64. See [`JobHandle`](crate::JobHandle).
pub const JOB_CHANNEL_CAPACITY: usize = 64;
const TO_GUEST: usize = 0;
const TO_HOST: usize = 1;

impl Prim {
    fn new(spec: Spec) -> Prim {
        match spec {
            Spec::Queue { capacity, joinable } => Prim::Queue(QueueState::new(capacity, joinable)),
            Spec::Lock => Prim::Lock(LockState::new(false)),
            Spec::RLock => Prim::Lock(LockState::new(true)),
            Spec::Semaphore { permits } => Prim::Semaphore(SemState::new(permits)),
            Spec::Event => Prim::Event(EventState::default()),
            Spec::Condition => Prim::Condition(CondState::default()),
            Spec::Barrier { parties } => Prim::Barrier(BarrierState::new(parties)),
        }
    }

    fn spec(&self) -> Option<Spec> {
        Some(match self {
            Prim::Queue(q) => Spec::Queue {
                capacity: q.capacity(),
                joinable: q.joinable(),
            },
            Prim::Lock(l) if l.reentrant() => Spec::RLock,
            Prim::Lock(_) => Spec::Lock,
            Prim::Semaphore(s) => Spec::Semaphore { permits: s.max() },
            Prim::Event(_) => Spec::Event,
            Prim::Condition(_) => Spec::Condition,
            Prim::Barrier(b) => Spec::Barrier {
                parties: b.parties(),
            },
            Prim::Channel(_) => return None,
        })
    }

    /// Drops `owner`'s waits, unanswered.
    fn drop_waits(&mut self, owner: Owner) {
        match self {
            Prim::Queue(q) => q.drop_waits(owner),
            Prim::Lock(l) => l.drop_waits(owner),
            Prim::Semaphore(s) => s.drop_waits(owner),
            Prim::Event(e) => e.drop_waits(owner),
            Prim::Condition(c) => c.drop_waits(owner),
            Prim::Barrier(b) => b.drop_waits(owner),
            Prim::Channel(c) => {
                for q in c.iter_mut() {
                    q.drop_waits(owner);
                }
            }
        }
    }

    fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        self.drop_waits(owner);
        match self {
            Prim::Queue(q) => q.release_all(owner, out),
            Prim::Lock(l) => l.release_all(owner, out),
            Prim::Semaphore(s) => s.release_all(owner, out),
            Prim::Event(_) | Prim::Barrier(_) => {}
            Prim::Condition(c) => c.release_all(owner, out),
            Prim::Channel(c) => {
                for q in c.iter_mut() {
                    q.release_all(owner, out);
                }
            }
        }
    }

    /// Answers `owner`'s operation `seq` with a timeout if it still waits.
    fn abandon(&mut self, owner: Owner, seq: u64, out: &mut Outbox) -> bool {
        let is = |w: &Waiter| w.owner == owner && w.seq == seq;
        let removed = match self {
            Prim::Queue(q) => q.abandon(&is),
            Prim::Lock(l) => l.abandon(&is),
            Prim::Semaphore(s) => s.abandon(&is),
            Prim::Event(e) => e.abandon(&is),
            Prim::Condition(c) => return c.abandon(&is, out),
            Prim::Barrier(b) => b.abandon(&is),
            Prim::Channel(c) => c.iter_mut().find_map(|q| q.abandon(&is)),
        };
        match removed {
            Some(w) => {
                let _ = out.give(w, Answer::Timeout);
                true
            }
            None => false,
        }
    }
}

/// Takes the first element that `f` picks out of `q`.
fn take_first<T>(q: &mut VecDeque<T>, f: impl Fn(&T) -> bool) -> Option<T> {
    let i = q.iter().position(f)?;
    q.remove(i)
}

impl Registry {
    /// Test only: panics while holding the registry's lock, which poisons it.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn poison(&self) {
        let _held = self.prims.locked();
        panic!("a test poisons the registry's lock on purpose");
    }

    /// A new owner for a host operation or guard.
    pub(crate) fn host_owner(&self) -> Owner {
        Owner::Host(self.next_owner.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `f` on the primitives under the lock, then delivers the answers
    /// it decided, after the lock.
    fn with<T>(&self, f: impl FnOnce(&mut Prims, &mut Outbox) -> T) -> T {
        let mut out = Outbox::default();
        let r = f(&mut self.prims.locked(), &mut out);
        out.deliver();
        r
    }

    /// Creates primitive `name`, or checks that the one of that name has
    /// the same settings.
    pub(crate) fn create(&self, name: &str, spec: Spec) -> Result<(), String> {
        let prims = &mut self.prims.locked().map;
        match prims.get(name) {
            None => {
                prims.insert(name.to_string(), Prim::new(spec));
                Ok(())
            }
            Some(p) if p.spec() == Some(spec) => Ok(()),
            Some(p) => Err(match p.spec() {
                Some(s) if s.kind() == spec.kind() => {
                    format!(
                        "{} {name:?} exists with other settings: {s:?}",
                        s.kind().name()
                    )
                }
                Some(s) => format!("{name:?} is already a {}", s.kind().name()),
                None => format!("{name:?} is taken"),
            }),
        }
    }

    /// Answers every operation on a named primitive with `why`, as not
    /// found: a cluster node's registry, where only job channels live.
    #[cfg(feature = "cluster")]
    pub(crate) fn refuse_named(&self, why: String) {
        self.prims.locked().refuse_named = Some(why);
    }

    /// A new job channel; returns its key.
    pub(crate) fn open_channel(&self) -> String {
        let key = format!(
            "\0job-channel-{}",
            self.next_channel.fetch_add(1, Ordering::Relaxed)
        );
        let channel = Prim::Channel(Box::new([
            QueueState::new(JOB_CHANNEL_CAPACITY, false),
            QueueState::new(JOB_CHANNEL_CAPACITY, false),
        ]));
        self.prims.locked().map.insert(key.clone(), channel);
        key
    }

    /// The job's call ended, or its handle went away: its channel closes
    /// both ways, and whoever waits on it is answered.
    pub(crate) fn end_channel(&self, key: &str) {
        self.with(|prims, out| {
            if let Some(Prim::Channel(c)) = prims.map.get_mut(key) {
                for q in c.iter_mut() {
                    q.close(out);
                }
            }
        });
    }

    /// Closes the job's input: its `recv` returns `none` once drained.
    pub(crate) fn close_input(&self, key: &str) {
        self.with(|prims, out| {
            if let Some(Prim::Channel(c)) = prims.map.get_mut(key) {
                c[TO_GUEST].close(out);
            }
        });
    }

    /// Forgets the channel, answering whoever waits on it: its handle is
    /// gone.
    pub(crate) fn remove_channel(&self, key: &str) {
        self.end_channel(key);
        self.prims.locked().map.remove(key);
    }

    /// Gives a value that a dropped host `get` or `recv` received back to
    /// where it came from.
    pub(crate) fn unget(&self, to: Unget<'_>, value: Vec<u8>) {
        self.with(|prims, out| match to {
            Unget::Queue(key) => {
                if let Some(Prim::Queue(q)) = prims.map.get_mut(key) {
                    q.unget(value, out);
                }
            }
            Unget::Channel(key) => {
                if let Some(Prim::Channel(c)) = prims.map.get_mut(key) {
                    c[TO_HOST].unget(value, out);
                }
            }
        });
    }

    /// Worker `worker`'s call was cancelled: until its guest has stopped
    /// (its next release), it gets nothing more. Its waits are dropped
    /// unanswered, since the interrupt wakes it, and what it asks next is
    /// ignored. What it holds stays held until it has stopped.
    pub(crate) fn fence(&self, worker: u64) {
        let mut prims = self.prims.locked();
        prims.fenced.insert(worker);
        for prim in prims.map.values_mut() {
            prim.drop_waits(Owner::Worker(worker));
        }
    }

    /// `owner` gives up waiting for its operation `seq`: it is answered
    /// with a timeout if it still waits.
    pub(crate) fn abandon(&self, owner: Owner, seq: u64) {
        self.with(|prims, out| prims.abandon(owner, seq, out));
    }

    /// Releases everything `owner` holds and drops its waits.
    pub(crate) fn release_all(&self, owner: Owner) {
        self.with(|prims, out| prims.release_all(owner, out));
    }

    /// Runs `op` for `owner`; its answer goes to `sink`, now or later.
    /// `channel` is the key of the job channel the owner speaks on, if it
    /// has one: a guest's `emit` and `recv` use one direction of it, a
    /// host handle's the other.
    pub(crate) fn submit(
        &self,
        owner: Owner,
        seq: u64,
        op: GuestOp,
        sink: Sink,
        channel: Option<&str>,
    ) {
        self.with(|prims, out| {
            let w = Waiter { owner, seq, sink };
            apply::apply(prims, w, op, channel, out);
        });
    }
}
