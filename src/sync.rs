//! The pool's synchronisation registry: named queues, locks, rlocks,
//! semaphores, events, conditions and barriers, and the duplex channel of
//! each spawned job.
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
//! since delivering to a worker process writes to its request pipe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::io::PipeWriter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use crate::protocol::{ToWorker, write_frame};

/// The kinds of named primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Queue,
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Semaphore => "semaphore",
            Kind::Event => "event",
            Kind::Condition => "condition",
            Kind::Barrier => "barrier",
        }
    }
}

/// An operation on the registry, from a guest or from a host handle.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum GuestOp {
    Open {
        name: String,
        kind: Kind,
    },
    QueuePut {
        name: String,
        value: ByteBuf,
    },
    QueueGet {
        name: String,
    },
    QueueTaskDone {
        name: String,
    },
    QueueJoin {
        name: String,
    },
    QueueClose {
        name: String,
    },
    QueueLen {
        name: String,
    },
    LockAcquire {
        name: String,
    },
    LockRelease {
        name: String,
    },
    SemaphoreAcquire {
        name: String,
    },
    SemaphoreRelease {
        name: String,
    },
    EventSet {
        name: String,
    },
    EventClear {
        name: String,
    },
    EventIsSet {
        name: String,
    },
    EventWait {
        name: String,
    },
    ConditionWait {
        name: String,
    },
    ConditionNotify {
        name: String,
        n: u32,
    },
    BarrierWait {
        name: String,
    },
    /// A value from the job to its handle.
    Emit {
        value: ByteBuf,
    },
    /// The next value from the handle to the job.
    Recv,
    /// The guest's timeout for operation `seq` passed: answer it with
    /// [`Answer::Timeout`] if it is still waiting.
    Abandon {
        seq: u64,
    },
    /// The guest's item ended: release everything it holds.
    Release,
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Done,
    Value(ByteBuf),
    /// No value: the queue or channel is closed and empty.
    Nothing,
    Bool(bool),
    Count(u64),
    Timeout,
    NotFound(String),
    Closed,
    Invalid(String),
}

/// Who holds or waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// The item a worker runs now.
    Worker(u64),
    /// One host handle's operation or guard.
    Host(u64),
}

/// Where a guest's answers go.
#[derive(Clone)]
pub(crate) enum GuestSink {
    /// A worker process, through its request pipe.
    Process(Arc<Mutex<PipeWriter>>),
    /// A worker thread's inbox.
    Thread(Arc<Inbox>),
}

impl GuestSink {
    fn deliver(&self, seq: u64, answer: Answer) {
        match self {
            GuestSink::Process(requests) => {
                let requests = requests.lock().expect("request pipe lock");
                // A worker that cannot be written to is dead; its host
                // thread sees that and releases what it held.
                let _ = write_frame(&*requests, &ToWorker::Answer { seq, answer });
            }
            GuestSink::Thread(inbox) => inbox.post(seq, answer),
        }
    }
}

/// Where an answer goes.
pub(crate) enum Sink {
    Guest(GuestSink),
    Host(oneshot::Sender<Answer>),
}

struct Waiter {
    owner: Owner,
    seq: u64,
    sink: Sink,
}

/// Answers for guests, delivered once the lock is released.
#[derive(Default)]
struct Outbox(Vec<(GuestSink, u64, Answer)>);

impl Outbox {
    /// Gives `answer` to `w`. A host waiter that has gone away gives the
    /// answer back, so that what it carries is not lost.
    fn give(&mut self, w: Waiter, answer: Answer) -> Result<(), Answer> {
        match w.sink {
            Sink::Guest(sink) => {
                self.0.push((sink, w.seq, answer));
                Ok(())
            }
            Sink::Host(tx) => tx.send(answer),
        }
    }

    fn deliver(self) {
        for (sink, seq, answer) in self.0 {
            sink.deliver(seq, answer);
        }
    }
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

/// The settings a primitive is created with, to check a second creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    Queue { capacity: usize, joinable: bool },
    Lock,
    RLock,
    Semaphore { permits: usize },
    Event,
    Condition,
    Barrier { parties: usize },
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

/// The capacity of each direction of a job's channel.
const CHANNEL_CAPACITY: usize = 64;
const TO_GUEST: usize = 0;
const TO_HOST: usize = 1;

impl Prim {
    fn new(spec: Spec) -> Prim {
        match spec {
            Spec::Queue { capacity, joinable } => Prim::Queue(QueueState::new(capacity, joinable)),
            Spec::Lock => Prim::Lock(LockState::new(false)),
            Spec::RLock => Prim::Lock(LockState::new(true)),
            Spec::Semaphore { permits } => Prim::Semaphore(SemState {
                permits,
                max: permits,
                held: HashMap::new(),
                waiters: VecDeque::new(),
            }),
            Spec::Event => Prim::Event(EventState {
                set: false,
                waiters: Vec::new(),
            }),
            Spec::Condition => Prim::Condition(CondState {
                lock: LockState::new(false),
                sleepers: VecDeque::new(),
            }),
            Spec::Barrier { parties } => Prim::Barrier(BarrierState {
                parties,
                arrived: Vec::new(),
            }),
        }
    }

    fn spec(&self) -> Option<Spec> {
        Some(match self {
            Prim::Queue(q) => Spec::Queue {
                capacity: q.capacity,
                joinable: q.joinable,
            },
            Prim::Lock(l) if l.reentrant => Spec::RLock,
            Prim::Lock(_) => Spec::Lock,
            Prim::Semaphore(s) => Spec::Semaphore { permits: s.max },
            Prim::Event(_) => Spec::Event,
            Prim::Condition(_) => Spec::Condition,
            Prim::Barrier(b) => Spec::Barrier { parties: b.parties },
            Prim::Channel(_) => return None,
        })
    }

    /// Drops `owner`'s waits, unanswered.
    fn drop_waits(&mut self, owner: Owner) {
        match self {
            Prim::Queue(q) => q.drop_waits(owner),
            Prim::Lock(l) => l.waiters.retain(|(w, _)| w.owner != owner),
            Prim::Semaphore(s) => s.waiters.retain(|w| w.owner != owner),
            Prim::Event(e) => e.waiters.retain(|w| w.owner != owner),
            Prim::Condition(c) => {
                c.sleepers.retain(|w| w.owner != owner);
                c.lock.waiters.retain(|(w, _)| w.owner != owner);
            }
            Prim::Barrier(b) => b.arrived.retain(|w| w.owner != owner),
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
            Prim::Condition(c) => c.lock.release_all(owner, out),
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
            Prim::Lock(l) => take_first(&mut l.waiters, |(w, _)| is(w)).map(|(w, _)| w),
            Prim::Semaphore(s) => take_first(&mut s.waiters, is),
            Prim::Event(e) => {
                let i = e.waiters.iter().position(is);
                i.map(|i| e.waiters.remove(i))
            }
            Prim::Condition(c) => {
                // A waiter still asleep stops waiting, but, as with any
                // condition, takes the lock again before it returns.
                if let Some(w) = take_first(&mut c.sleepers, is) {
                    c.lock.waiters.push_back((w, Answer::Bool(false)));
                    c.lock.pump(out);
                    return true;
                }
                // One taking the lock again cannot give up; one taking it
                // to begin with can.
                take_first(&mut c.lock.waiters, |(w, a)| is(w) && *a == Answer::Done)
                    .map(|(w, _)| w)
            }
            Prim::Barrier(b) => {
                let i = b.arrived.iter().position(is);
                i.map(|i| b.arrived.remove(i))
            }
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

fn take_first<T>(q: &mut VecDeque<T>, f: impl Fn(&T) -> bool) -> Option<T> {
    let i = q.iter().position(f)?;
    q.remove(i)
}

struct QueueState {
    /// 0: unbounded.
    capacity: usize,
    joinable: bool,
    items: VecDeque<Vec<u8>>,
    getters: VecDeque<Waiter>,
    putters: VecDeque<(Waiter, Vec<u8>)>,
    joiners: Vec<Waiter>,
    /// Values put and not yet marked done (joinable queues).
    unfinished: u64,
    /// Values guests took from a joinable queue and have not marked done,
    /// oldest first: they go back if their taker ends.
    taken: Vec<(Owner, Vec<u8>)>,
    closed: bool,
}

impl QueueState {
    fn new(capacity: usize, joinable: bool) -> QueueState {
        QueueState {
            capacity,
            joinable,
            items: VecDeque::new(),
            getters: VecDeque::new(),
            putters: VecDeque::new(),
            joiners: Vec::new(),
            unfinished: 0,
            taken: Vec::new(),
            closed: false,
        }
    }

    fn has_room(&self) -> bool {
        self.capacity == 0 || self.items.len() < self.capacity
    }

    fn put(&mut self, w: Waiter, value: Vec<u8>, out: &mut Outbox) {
        if self.closed {
            let _ = out.give(w, Answer::Closed);
        } else {
            self.putters.push_back((w, value));
            self.pump(out);
        }
    }

    fn get(&mut self, w: Waiter, out: &mut Outbox) {
        self.getters.push_back(w);
        self.pump(out);
    }

    /// Moves values from putters into the queue and from the queue to
    /// getters for as long as it can.
    /// Lets waiting putters in while there is room.
    fn admit(&mut self, out: &mut Outbox) {
        while self.has_room()
            && let Some((w, value)) = self.putters.pop_front()
        {
            // A host putter that has gone away did not put.
            if out.give(w, Answer::Done).is_ok() {
                self.items.push_back(value);
                if self.joinable {
                    self.unfinished += 1;
                }
            }
        }
    }

    fn pump(&mut self, out: &mut Outbox) {
        self.admit(out);
        while !self.items.is_empty()
            && let Some(w) = self.getters.pop_front()
        {
            let value = self.items.pop_front().expect("checked non-empty");
            let owner = w.owner;
            let keep = (self.joinable && matches!(owner, Owner::Worker(_))).then(|| value.clone());
            match out.give(w, Answer::Value(ByteBuf::from(value))) {
                Ok(()) => {
                    if let Some(v) = keep {
                        self.taken.push((owner, v));
                    }
                }
                Err(Answer::Value(v)) => self.items.push_front(v.into_vec()),
                Err(_) => {}
            }
            // A get made room: a waiting putter can come in.
            self.admit(out);
        }
        if self.closed && self.items.is_empty() {
            for w in self.getters.drain(..) {
                let _ = out.give(w, Answer::Nothing);
            }
        }
        if self.joinable && self.unfinished == 0 {
            for w in self.joiners.drain(..) {
                let _ = out.give(w, Answer::Done);
            }
        }
    }

    fn task_done(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        if !self.joinable {
            return Answer::Invalid("task-done needs a joinable queue".into());
        }
        if self.unfinished == 0 {
            return Answer::Invalid("task-done called more times than values were put".into());
        }
        self.unfinished -= 1;
        // The caller's oldest value, or else anyone's: a value marked done,
        // by whoever, must not come back.
        let i = self.taken.iter().position(|(o, _)| *o == owner);
        if let Some(i) = i.or((!self.taken.is_empty()).then_some(0)) {
            self.taken.remove(i);
        }
        self.pump(out);
        Answer::Done
    }

    fn join(&mut self, w: Waiter, out: &mut Outbox) {
        if !self.joinable {
            let _ = out.give(w, Answer::Invalid("join needs a joinable queue".into()));
        } else {
            self.joiners.push(w);
            self.pump(out);
        }
    }

    fn close(&mut self, out: &mut Outbox) {
        self.closed = true;
        for (w, _) in self.putters.drain(..) {
            let _ = out.give(w, Answer::Closed);
        }
        self.pump(out);
    }

    /// Puts a value a host getter received and then dropped back at the
    /// front.
    fn unget(&mut self, value: Vec<u8>, out: &mut Outbox) {
        self.items.push_front(value);
        self.pump(out);
    }

    fn drop_waits(&mut self, owner: Owner) {
        self.getters.retain(|w| w.owner != owner);
        self.putters.retain(|(w, _)| w.owner != owner);
        self.joiners.retain(|w| w.owner != owner);
    }

    /// Releases what `owner` took; its waits are already dropped.
    fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        let mut back = Vec::new();
        self.taken.retain_mut(|(o, v)| {
            if *o == owner {
                back.push(std::mem::take(v));
                false
            } else {
                true
            }
        });
        for v in back.into_iter().rev() {
            self.items.push_front(v);
        }
        self.pump(out);
    }

    fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        if let Some(w) = take_first(&mut self.getters, is) {
            return Some(w);
        }
        if let Some((w, _)) = take_first(&mut self.putters, |(w, _)| is(w)) {
            return Some(w);
        }
        let i = self.joiners.iter().position(is)?;
        Some(self.joiners.remove(i))
    }
}

struct LockState {
    reentrant: bool,
    /// The holder and how many times it acquired.
    holder: Option<(Owner, u32)>,
    /// With the answer each gets when it has the lock: `Done` for an
    /// acquire, `Bool` for a condition wait taking it back.
    waiters: VecDeque<(Waiter, Answer)>,
}

impl LockState {
    fn new(reentrant: bool) -> LockState {
        LockState {
            reentrant,
            holder: None,
            waiters: VecDeque::new(),
        }
    }

    fn acquire(&mut self, w: Waiter, out: &mut Outbox) {
        match self.holder {
            Some((owner, ref mut n)) if owner == w.owner => {
                let answer = if self.reentrant {
                    *n += 1;
                    Answer::Done
                } else {
                    Answer::Invalid("the lock is already held by this caller".into())
                };
                let _ = out.give(w, answer);
            }
            _ => {
                self.waiters.push_back((w, Answer::Done));
                self.pump(out);
            }
        }
    }

    fn release(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        match &mut self.holder {
            Some((o, n)) if *o == owner => {
                *n -= 1;
                if *n == 0 {
                    self.holder = None;
                    self.pump(out);
                }
                Answer::Done
            }
            _ => Answer::Invalid("the lock is not held by this caller".into()),
        }
    }

    fn pump(&mut self, out: &mut Outbox) {
        while self.holder.is_none()
            && let Some((w, answer)) = self.waiters.pop_front()
        {
            let owner = w.owner;
            if out.give(w, answer).is_ok() {
                self.holder = Some((owner, 1));
            }
        }
    }

    fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        if matches!(self.holder, Some((o, _)) if o == owner) {
            self.holder = None;
        }
        self.pump(out);
    }
}

struct SemState {
    permits: usize,
    max: usize,
    held: HashMap<Owner, usize>,
    waiters: VecDeque<Waiter>,
}

impl SemState {
    fn pump(&mut self, out: &mut Outbox) {
        while self.permits > 0
            && let Some(w) = self.waiters.pop_front()
        {
            let owner = w.owner;
            if out.give(w, Answer::Done).is_ok() {
                self.permits -= 1;
                *self.held.entry(owner).or_default() += 1;
            }
        }
    }

    fn release(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        match self.held.get_mut(&owner) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&owner);
                }
                self.permits += 1;
                self.pump(out);
                Answer::Done
            }
            _ => Answer::Invalid("this caller holds no permit of the semaphore".into()),
        }
    }

    fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        if let Some(n) = self.held.remove(&owner) {
            self.permits += n;
        }
        self.pump(out);
    }
}

struct EventState {
    set: bool,
    waiters: Vec<Waiter>,
}

struct CondState {
    lock: LockState,
    sleepers: VecDeque<Waiter>,
}

struct BarrierState {
    parties: usize,
    arrived: Vec<Waiter>,
}

impl Registry {
    /// A new owner for a host operation or guard.
    pub(crate) fn host_owner(&self) -> Owner {
        Owner::Host(self.next_owner.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates primitive `name`, or checks that the one of that name has
    /// the same settings.
    pub(crate) fn create(&self, name: &str, spec: Spec) -> Result<(), String> {
        let prims = &mut self.prims.lock().expect("sync lock").map;
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

    /// A new job channel; returns its key.
    pub(crate) fn open_channel(&self) -> String {
        let key = format!(
            "\0job-channel-{}",
            self.next_channel.fetch_add(1, Ordering::Relaxed)
        );
        let channel = Prim::Channel(Box::new([
            QueueState::new(CHANNEL_CAPACITY, false),
            QueueState::new(CHANNEL_CAPACITY, false),
        ]));
        self.prims
            .lock()
            .expect("sync lock")
            .map
            .insert(key.clone(), channel);
        key
    }

    /// The job's call ended, or its handle went away: its channel closes
    /// both ways, and whoever waits on it is answered.
    pub(crate) fn end_channel(&self, key: &str) {
        let mut out = Outbox::default();
        if let Some(Prim::Channel(c)) = self.prims.lock().expect("sync lock").map.get_mut(key) {
            for q in c.iter_mut() {
                q.close(&mut out);
            }
        }
        out.deliver();
    }

    /// `owner` gives up waiting for its operation `seq`: it is answered
    /// with a timeout if it still waits.
    pub(crate) fn abandon(&self, owner: Owner, seq: u64) {
        let mut out = Outbox::default();
        self.prims
            .lock()
            .expect("sync lock")
            .abandon(owner, seq, &mut out);
        out.deliver();
    }

    /// Closes the job's input: its `recv` returns `none` once drained.
    pub(crate) fn close_input(&self, key: &str) {
        let mut out = Outbox::default();
        if let Some(Prim::Channel(c)) = self.prims.lock().expect("sync lock").map.get_mut(key) {
            c[TO_GUEST].close(&mut out);
        }
        out.deliver();
    }

    /// Forgets the channel, answering whoever waits on it: its handle is
    /// gone.
    pub(crate) fn remove_channel(&self, key: &str) {
        self.end_channel(key);
        self.prims.lock().expect("sync lock").map.remove(key);
    }

    /// Gives a value a dropped host `get` received back to its queue, or
    /// (with `channel`) to the channel's values for the host.
    pub(crate) fn unget(&self, key: &str, channel: bool, value: Vec<u8>) {
        let mut out = Outbox::default();
        match (
            self.prims.lock().expect("sync lock").map.get_mut(key),
            channel,
        ) {
            (Some(Prim::Queue(q)), false) => q.unget(value, &mut out),
            (Some(Prim::Channel(c)), true) => c[TO_HOST].unget(value, &mut out),
            _ => {}
        }
        out.deliver();
    }

    /// Worker `worker`'s call was cancelled: until its guest has stopped
    /// (its next release), it gets nothing more. Its waits are dropped
    /// unanswered, since the interrupt wakes it, and what it asks next is
    /// ignored. What it holds stays held until it has stopped.
    pub(crate) fn fence(&self, worker: u64) {
        let mut prims = self.prims.lock().expect("sync lock");
        prims.fenced.insert(worker);
        for prim in prims.map.values_mut() {
            prim.drop_waits(Owner::Worker(worker));
        }
    }

    /// Releases everything `owner` holds and drops its waits.
    pub(crate) fn release_all(&self, owner: Owner) {
        let mut out = Outbox::default();
        self.prims
            .lock()
            .expect("sync lock")
            .release_all(owner, &mut out);
        out.deliver();
    }

    /// Runs `op` for `owner`; its answer goes to `sink`, now or later.
    /// `channel` is the key of the owner's job channel, if it has one;
    /// `from_host` marks the host's side of it.
    pub(crate) fn submit(
        &self,
        owner: Owner,
        seq: u64,
        op: GuestOp,
        sink: Sink,
        channel: Option<&str>,
        from_host: bool,
    ) {
        let mut out = Outbox::default();
        {
            let mut prims = self.prims.lock().expect("sync lock");
            let w = Waiter { owner, seq, sink };
            apply(&mut prims, w, op, channel, from_host, &mut out);
        }
        out.deliver();
    }
}

/// The body of [`Registry::submit`], under the lock.
fn apply(
    all: &mut Prims,
    w: Waiter,
    op: GuestOp,
    channel: Option<&str>,
    from_host: bool,
    out: &mut Outbox,
) {
    let owner = w.owner;
    match (&op, owner) {
        (GuestOp::Release, _) => return all.release_all(owner, out),
        (_, Owner::Worker(worker)) if all.fenced.contains(&worker) => return,
        (GuestOp::Abandon { seq }, _) => return all.abandon(owner, *seq, out),
        _ => {}
    }
    let prims = &mut all.map;
    // The primitive `name` of the kind the pattern matches, or answer
    // not-found.
    macro_rules! prim {
        ($name:expr, $pat:pat => $body:expr, $kind:expr) => {{
            match prims.get_mut(&$name) {
                Some($pat) => $body,
                _ => {
                    let _ = out.give(w, not_found(&$name, $kind));
                }
            }
        }};
    }
    match op {
        GuestOp::Open { name, kind } => {
            let answer = match prims.get(&name).and_then(Prim::spec) {
                Some(s) if s.kind() == kind => Answer::Done,
                _ => not_found(&name, kind.name()),
            };
            let _ = out.give(w, answer);
        }
        GuestOp::QueuePut { name, value } => {
            prim!(name, Prim::Queue(q) => q.put(w, value.into_vec(), out), "queue")
        }
        GuestOp::QueueGet { name } => prim!(name, Prim::Queue(q) => q.get(w, out), "queue"),
        GuestOp::QueueTaskDone { name } => prim!(name, Prim::Queue(q) => {
            let answer = q.task_done(owner, out);
            let _ = out.give(w, answer);
        }, "queue"),
        GuestOp::QueueJoin { name } => prim!(name, Prim::Queue(q) => q.join(w, out), "queue"),
        GuestOp::QueueClose { name } => prim!(name, Prim::Queue(q) => {
            q.close(out);
            let _ = out.give(w, Answer::Done);
        }, "queue"),
        GuestOp::QueueLen { name } => prim!(name, Prim::Queue(q) => {
            let _ = out.give(w, Answer::Count(q.items.len() as u64));
        }, "queue"),
        GuestOp::LockAcquire { name } => match prims.get_mut(&name) {
            Some(Prim::Lock(l)) => l.acquire(w, out),
            Some(Prim::Condition(c)) => c.lock.acquire(w, out),
            _ => {
                let _ = out.give(w, not_found(&name, "lock"));
            }
        },
        GuestOp::LockRelease { name } => {
            let answer = match prims.get_mut(&name) {
                Some(Prim::Lock(l)) => l.release(owner, out),
                Some(Prim::Condition(c)) => c.lock.release(owner, out),
                _ => not_found(&name, "lock"),
            };
            let _ = out.give(w, answer);
        }
        GuestOp::SemaphoreAcquire { name } => prim!(name, Prim::Semaphore(s) => {
            s.waiters.push_back(w);
            s.pump(out);
        }, "semaphore"),
        GuestOp::SemaphoreRelease { name } => prim!(name, Prim::Semaphore(s) => {
            let answer = s.release(owner, out);
            let _ = out.give(w, answer);
        }, "semaphore"),
        GuestOp::EventSet { name } => prim!(name, Prim::Event(e) => {
            e.set = true;
            for waiter in e.waiters.drain(..) {
                let _ = out.give(waiter, Answer::Done);
            }
            let _ = out.give(w, Answer::Done);
        }, "event"),
        GuestOp::EventClear { name } => prim!(name, Prim::Event(e) => {
            e.set = false;
            let _ = out.give(w, Answer::Done);
        }, "event"),
        GuestOp::EventIsSet { name } => prim!(name, Prim::Event(e) => {
            let _ = out.give(w, Answer::Bool(e.set));
        }, "event"),
        GuestOp::EventWait { name } => prim!(name, Prim::Event(e) => {
            if e.set {
                let _ = out.give(w, Answer::Done);
            } else {
                e.waiters.push(w);
            }
        }, "event"),
        GuestOp::ConditionWait { name } => prim!(name, Prim::Condition(c) => {
            if matches!(c.lock.holder, Some((o, _)) if o == owner) {
                c.lock.holder = None;
                c.sleepers.push_back(w);
                c.lock.pump(out);
            } else {
                let _ = out.give(w, Answer::Invalid("waiting on a condition needs its lock".into()));
            }
        }, "condition"),
        GuestOp::ConditionNotify { name, n } => prim!(name, Prim::Condition(c) => {
            let answer = if matches!(c.lock.holder, Some((o, _)) if o == owner) {
                for _ in 0..n {
                    let Some(sleeper) = c.sleepers.pop_front() else { break };
                    c.lock.waiters.push_back((sleeper, Answer::Bool(true)));
                }
                Answer::Done
            } else {
                Answer::Invalid("notifying a condition needs its lock".into())
            };
            let _ = out.give(w, answer);
        }, "condition"),
        GuestOp::BarrierWait { name } => prim!(name, Prim::Barrier(b) => {
            b.arrived.push(w);
            // A host waiter that has gone away is no party.
            b.arrived.retain(|w| !matches!(&w.sink, Sink::Host(tx) if tx.is_closed()));
            if b.arrived.len() >= b.parties {
                for (i, waiter) in b.arrived.drain(..).enumerate() {
                    let _ = out.give(waiter, Answer::Count(i as u64));
                }
            }
        }, "barrier"),
        GuestOp::Emit { value } => match channel.and_then(|k| prims.get_mut(k)) {
            Some(Prim::Channel(c)) => {
                let dir = if from_host { TO_GUEST } else { TO_HOST };
                c[dir].put(w, value.into_vec(), out);
            }
            _ => {
                let _ = out.give(w, Answer::Closed);
            }
        },
        GuestOp::Recv => match channel.and_then(|k| prims.get_mut(k)) {
            Some(Prim::Channel(c)) => {
                let dir = if from_host { TO_HOST } else { TO_GUEST };
                c[dir].get(w, out);
            }
            _ => {
                let _ = out.give(w, Answer::Nothing);
            }
        },
        GuestOp::Abandon { .. } | GuestOp::Release => unreachable!("handled above"),
    }
}

fn not_found(name: &str, kind: &str) -> Answer {
    Answer::NotFound(format!("the pool has no {kind} named {name:?}"))
}

/// Where a worker thread receives its answers: the registry posts them
/// directly. An interrupt wakes a waiting guest through [`Inbox::wake`].
/// (A worker process reads its answers from its request pipe.)
#[derive(Default)]
pub(crate) struct Inbox {
    answers: Mutex<VecDeque<(u64, Answer)>>,
    posted: Condvar,
    /// Counts posts, to poll on before sleeping.
    posts: AtomicU64,
}

/// How a wait for an answer ended.
pub(crate) enum Waited {
    Answer(Answer),
    Deadline,
    Stopped,
    /// The host is gone or broke the protocol.
    Lost(String),
}

impl Inbox {
    pub(crate) fn post(&self, seq: u64, answer: Answer) {
        self.answers
            .lock()
            .expect("inbox lock")
            .push_back((seq, answer));
        self.posts.fetch_add(1, Ordering::Release);
        self.posted.notify_all();
    }

    /// Wakes a waiting guest to check whether it was stopped.
    pub(crate) fn wake(&self) {
        let _guard = self.answers.lock().expect("inbox lock");
        self.posted.notify_all();
    }

    /// Waits for the answer to `seq`, until `deadline` or until `stopped`
    /// says so. Answers to earlier operations, which a stopped guest left
    /// behind, are dropped.
    pub(crate) fn wait(
        &self,
        seq: u64,
        deadline: Option<Instant>,
        stopped: impl Fn() -> bool,
    ) -> Waited {
        let mut answers = self.answers.lock().expect("inbox lock");
        let mut spun = false;
        loop {
            while let Some((s, _)) = answers.front()
                && *s < seq
            {
                answers.pop_front();
            }
            if let Some(i) = answers.iter().position(|(s, _)| *s == seq) {
                let (_, answer) = answers.remove(i).expect("found");
                return Waited::Answer(answer);
            }
            if stopped() {
                return Waited::Stopped;
            }
            if !spun {
                // Most answers come soon: poll for one before sleeping.
                spun = true;
                let posts = self.posts.load(Ordering::Acquire);
                drop(answers);
                let start = Instant::now();
                while self.posts.load(Ordering::Acquire) == posts
                    && start.elapsed() < crate::exec::SPIN
                    && deadline.is_none_or(|d| Instant::now() < d)
                {
                    std::hint::spin_loop();
                }
                answers = self.answers.lock().expect("inbox lock");
                continue;
            }
            answers = match deadline {
                None => self.posted.wait(answers).expect("inbox lock"),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return Waited::Deadline;
                    }
                    self.posted
                        .wait_timeout(answers, at - now)
                        .expect("inbox lock")
                        .0
                }
            };
        }
    }
}

/// A worker's side of the registry, shared by the worker's handle and
/// whoever submits its guest's operations.
#[derive(Default)]
pub(crate) struct GuestState {
    /// The channel of the spawned job in flight, if any
    /// ([`crate::Pool::spawn`]).
    channel: Mutex<Option<String>>,
    /// Set once the call in flight has used the registry (or was fenced):
    /// only then does its end need the registry's lock.
    used: AtomicBool,
}

impl GuestState {
    /// Gives the next call the job channel `key`.
    pub(crate) fn attach_channel(&self, key: String) {
        *self.channel.lock().expect("channel lock") = Some(key);
    }

    /// Submits operation `seq` of worker `worker`'s guest.
    pub(crate) fn submit(
        &self,
        registry: &Registry,
        worker: u64,
        sink: &GuestSink,
        seq: u64,
        op: GuestOp,
    ) {
        self.used.store(true, Ordering::SeqCst);
        let channel = self.channel.lock().expect("channel lock").clone();
        let sink = Sink::Guest(sink.clone());
        registry.submit(
            Owner::Worker(worker),
            seq,
            op,
            sink,
            channel.as_deref(),
            false,
        );
    }

    /// Fences worker `worker` (see [`Registry::fence`]).
    pub(crate) fn fence(&self, registry: &Registry, worker: u64) {
        self.used.store(true, Ordering::SeqCst);
        registry.fence(worker);
    }

    /// The call ended, or the worker did: everything its guest held is
    /// released, and its job channel, if any, closes. A call that never
    /// used the registry costs no lock.
    pub(crate) fn call_ended(&self, registry: &Registry, worker: u64) {
        if self.used.swap(false, Ordering::SeqCst) {
            registry.release_all(Owner::Worker(worker));
        }
        let channel = self.channel.lock().expect("channel lock").take();
        if let Some(key) = channel {
            registry.end_channel(&key);
        }
    }
}

/// Sends a guest's operations to the registry: through the reply pipe from
/// a worker process, or straight in from a worker thread.
pub(crate) type OpSender = Box<dyn Fn(u64, GuestOp) -> io::Result<()> + Send + Sync>;
