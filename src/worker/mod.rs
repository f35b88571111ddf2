//! The host's side of one worker: a process ([`process`]), or an
//! in-process thread ([`thread`]).
//!
//! A process worker has one host thread, `wasmpool-worker-{id}`. It spawns
//! the process (so that the Linux parent-death signal is tied to a thread
//! that lives exactly as long as the worker), performs the handshake, then
//! reads every frame the worker sends and hands each result to the waiting
//! call. When the worker's reply pipe reaches end of file, the thread reaps
//! the process and fails the call in flight, if any, with `WorkerCrashed`.
//! Requests are written by the calling task itself, straight into the
//! request pipe: one hop fewer than handing them to a thread.
//!
//! A thread worker is the thread `wasmpool-thread-{id}`, which runs an
//! [`Executor`](crate::runtime::Executor) of its own and receives requests
//! in a mailbox. Both kinds hand results over through the same [`Slot`].
//!
//! A worker knows the pool only through two things it is given: the
//! [`Books`] that count it (the pool's roster) and the sync [`Registry`]
//! its guests reach.

mod process;
mod thread;

pub(crate) use process::compile_in_child;

use crate::locks::Locked as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::engine::EngineSettings;
use crate::error::{Error, ErrorKind};
use crate::host::{HostFns, Seat};
use crate::idle::KEEP_REGION;
use crate::options::WorkerKind;
use crate::platform::HostRegion;
use crate::pool::transmit::{CallStreams, Registered, StreamHub};
use crate::runtime::Interrupts;
use crate::shares::Permit;
use crate::sync::{GuestState, Registry};
use crate::wire::{
    CallFrame, CallRef, CallRequest, Control, Grant, INLINE_MAX, Outcome, Payload, PayloadRef,
    Pending, Preopen, REGION_SIZE, RESULTS_AT, Sandbox, WireError, WireOutcome, write_frame,
};

/// The pool's books on its workers, as a worker sees them. The pool's
/// roster keeps them.
pub(crate) trait Books: Send + Sync {
    /// A worker is up (or starting): it counts as live until [`exited`].
    ///
    /// [`exited`]: Books::exited
    fn register(&self, id: u64, shared: Arc<Shared>);
    /// A worker has ended and been reaped; `how` says whether it was meant
    /// to.
    fn exited(&self, id: u64, how: Exit);
    /// A call its caller abandoned has ended: the worker is free again.
    fn checkin(&self, worker: Worker, permit: Permit);
    /// Whether the rest of the pool is quiet enough for a host thread to
    /// poll for its worker's reply rather than sleep.
    fn is_quiet(&self) -> bool;
    /// A worker's last session has ended: it may idle out again.
    fn unpinned(&self);
}

/// How a worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The pool ended it: retired, idle, killed, closed.
    Expected,
    /// It died on its own, or was killed from outside.
    Crashed,
}

/// How a call its caller gave up on goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// It was interrupted, and stops soon.
    Interrupted,
    /// It runs to its end; its result is dropped.
    Finishing,
}

/// What a call gets back.
pub(crate) enum Reply {
    /// One outcome per item of the request.
    Done(Vec<Outcome>),
    /// The worker died or broke the protocol while it had the request.
    Lost(Error),
    /// The worker died before it took the request: no guest saw the call,
    /// which can go to another worker.
    NotStarted(Error),
}

/// Whether a worker that ended had taken the request it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Request {
    /// Some of it was still unread: the call never started.
    Untaken,
    /// It was read (or there is no telling): the call may have run.
    Taken,
}

/// The state of the one call a worker can hold.
enum Slot {
    Idle,
    Waiting {
        id: u64,
        tx: oneshot::Sender<Reply>,
    },
    /// The caller went away; the worker goes back to the pool when the
    /// call ends.
    Abandoned {
        id: u64,
        worker: Worker,
        permit: Permit,
    },
    Dead,
}

/// State shared between a [`Worker`] handle and its thread.
pub(crate) struct Shared {
    slot: Mutex<Slot>,
    /// Set once the process has been reaped; guards `kill` against pid
    /// reuse. Shared by a process's lanes.
    reaped: Arc<Mutex<bool>>,
    /// Set when the host ends the worker on purpose (retire, kill), so its
    /// exit is not counted as a crash. Shared by a process's lanes.
    expected_exit: Arc<AtomicBool>,
    /// Whether this is the worker itself, or one of the further lanes of a
    /// worker that runs several calls at once: only the worker itself is
    /// on the pool's books.
    primary: bool,
    /// The process, for a process worker.
    pid: Option<u32>,
    /// The executor's interrupts, for a thread worker.
    interrupts: Option<Arc<Interrupts>>,
    /// The job channel and registry state of the call in flight.
    pub(crate) guest: Arc<GuestState>,
    /// The host functions of the call in flight.
    pub(crate) host: Arc<Seat>,
    /// The payload region shared with a process worker, if it has one.
    region: Option<HostRegion>,
    /// How much of the region's first half the request in flight uses.
    args_used: std::sync::atomic::AtomicU64,
    /// How far into each half of the region pages have been written since
    /// they were last given back.
    touched: Mutex<Touched>,
    /// The sessions open on the worker: while there are any, the pool
    /// neither retires it nor lets it go idle out of the pool.
    sessions: std::sync::atomic::AtomicUsize,
    /// What the host let go of that the worker still holds: sent with the
    /// next request.
    pending: Mutex<Pending>,
    /// Session calls waiting for the worker: a plain call takes another
    /// idle worker if it can.
    awaited: std::sync::atomic::AtomicUsize,
    /// The books the worker is on, told when its last session ends.
    books: std::sync::Weak<dyn Books>,
    /// The calls in flight that pass or return streams and futures, for
    /// the worker's frames to reach them. Shared by a process's lanes.
    pub(crate) streams: Arc<StreamHub>,
}

/// How far into each half of a payload region pages have been written:
/// the ends of the written parts, as offsets into the region.
#[derive(Clone, Copy)]
struct Touched {
    /// The end of the arguments half's written part (it starts at 0).
    args: u64,
    /// The end of the results half's written part (it starts at
    /// [`RESULTS_AT`]).
    results: u64,
}

impl Touched {
    /// Nothing written.
    const NONE: Touched = Touched {
        args: 0,
        results: RESULTS_AT,
    };
}

impl Shared {
    fn new(
        pid: Option<u32>,
        interrupts: Option<Arc<Interrupts>>,
        guest: Arc<GuestState>,
        host: Arc<Seat>,
        region: Option<HostRegion>,
        books: std::sync::Weak<dyn Books>,
    ) -> Shared {
        Shared {
            slot: Mutex::new(Slot::Idle),
            // A thread has no process to reap.
            reaped: Arc::new(Mutex::new(pid.is_none())),
            expected_exit: Arc::new(AtomicBool::new(false)),
            primary: true,
            pid,
            interrupts,
            guest,
            host,
            region,
            args_used: Default::default(),
            touched: Mutex::new(Touched::NONE),
            sessions: Default::default(),
            pending: Mutex::default(),
            awaited: Default::default(),
            books,
            streams: Arc::default(),
        }
    }

    /// Another lane of the same process: a slot, a registry seat and host
    /// functions of its own, and no payload region.
    fn lane(&self, guest: Arc<GuestState>, host: Arc<Seat>) -> Shared {
        Shared {
            slot: Mutex::new(Slot::Idle),
            reaped: self.reaped.clone(),
            expected_exit: self.expected_exit.clone(),
            primary: false,
            pid: self.pid,
            interrupts: None,
            guest,
            host,
            region: None,
            args_used: Default::default(),
            touched: Mutex::new(Touched::NONE),
            sessions: Default::default(),
            pending: Mutex::default(),
            awaited: Default::default(),
            books: self.books.clone(),
            streams: self.streams.clone(),
        }
    }

    /// Whether this is the worker itself, not one of its further lanes.
    pub(crate) fn is_primary(&self) -> bool {
        self.primary
    }

    /// Whether the lane holds call `call`, waited for or abandoned.
    fn holds(&self, call: u64) -> bool {
        matches!(*self.slot.locked(),
            Slot::Waiting { id, .. } | Slot::Abandoned { id, .. } if id == call)
    }

    /// Whether a session's call waits for the worker.
    pub(crate) fn is_awaited(&self) -> bool {
        self.awaited.load(Ordering::SeqCst) > 0
    }

    /// Counts a session's call waiting for the worker, until the guard
    /// drops.
    pub(crate) fn await_it(&self) -> impl Drop + '_ {
        struct Awaiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Awaiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.awaited.fetch_add(1, Ordering::SeqCst);
        Awaiting(&self.awaited)
    }

    /// How many sessions are open on the worker.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Counts a session opened on the worker.
    pub(crate) fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
    }

    /// A session on the worker has ended; `close` says to drop its
    /// instance with the next request (it was not closed by one).
    pub(crate) fn session_ended(&self, session: u64, close: bool) {
        if close && !self.is_gone() {
            self.pending.locked().closes.push(session);
        }
        if self.sessions.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(books) = self.books.upgrade()
        {
            books.unpinned();
        }
    }

    /// The host let go of handle `handle` of session `session`.
    pub(crate) fn handle_dropped(&self, session: u64, handle: u64) {
        self.pending.locked().drops.push((session, handle));
    }

    /// Whether the region holds more than [`KEEP_REGION`] of pages: then
    /// they are due back once the worker has idled a while.
    pub(crate) fn region_is_large(&self) -> bool {
        let Touched { args, results } = *self.touched.locked();
        args + (results - RESULTS_AT) > KEEP_REGION
    }

    /// Gives the region's pages back to the kernel. Only for an idle
    /// worker: no request may be using the region.
    pub(crate) fn release_region(&self) {
        let Some(r) = &self.region else { return };
        let mut touched = self.touched.locked();
        let Touched { args, results } = *touched;
        r.release(0, args);
        r.release(RESULTS_AT, results - RESULTS_AT);
        *touched = Touched::NONE;
    }

    /// `req` as a frame: payloads of [`INLINE_MAX`] bytes or more are
    /// copied into the worker's region, while it has room, and the frame
    /// says where.
    fn frame<'a>(&self, req: &'a CallRequest) -> CallFrame<'a> {
        if self.region.is_none() {
            return CallFrame::Call(CallRef::of(req));
        }
        let mut at = 0u64;
        let items = req
            .items
            .iter()
            .map(|p| match p {
                Payload::Inline(b) => {
                    let len = b.len() as u64;
                    match &self.region {
                        Some(r) if b.len() >= INLINE_MAX && r.write_args(at, b) => {
                            let offset = at;
                            at += len;
                            PayloadRef::InRegion { offset, len }
                        }
                        _ => PayloadRef::Inline(serde_bytes::Bytes::new(b)),
                    }
                }
                shared => PayloadRef::of(shared),
            })
            .collect();
        self.args_used.store(at, Ordering::Relaxed);
        CallFrame::Call(CallRef {
            id: req.id,
            artifact: &req.artifact,
            export: &req.export,
            items,
            options: &req.options,
            session: &req.session,
            pending: &req.pending,
        })
    }

    /// The outcomes as the worker sent them, with each result taken out of
    /// the region: a copy, made after its bounds are checked, so that
    /// nothing the worker writes later can change it. A result outside the
    /// worker's half of the region fails its call with `Protocol`.
    fn take_results(&self, outcomes: Vec<WireOutcome>) -> Vec<Outcome> {
        let mut end = RESULTS_AT;
        let outcomes = outcomes
            .into_iter()
            .map(|(result, report)| {
                let result = result.and_then(|p| match p {
                    Payload::Inline(b) => Ok(b),
                    Payload::InRegion { offset, len } => {
                        let copy = self
                            .region
                            .as_ref()
                            .and_then(|r| r.read_result(offset, len));
                        match copy {
                            Some(bytes) => {
                                end = end.max(offset + len);
                                Ok(serde_bytes::ByteBuf::from(bytes))
                            }
                            None => Err(WireError::new(
                                ErrorKind::Protocol,
                                format!(
                                    "the worker put its result at {offset}+{len}, outside its half of the payload region"
                                ),
                            )),
                        }
                    }
                });
                (result, report)
            })
            .collect();
        // What the region holds now; the roster gives it back once the
        // worker has been idle a while (`release_region`), so that one
        // 64 MiB call does not pin 64 MiB per worker for ever.
        if self.region.is_some() {
            let args = self.args_used.swap(0, Ordering::Relaxed);
            let mut touched = self.touched.locked();
            touched.args = touched.args.max(args);
            touched.results = touched.results.max(end.min(REGION_SIZE));
        }
        outcomes
    }

    /// Sends SIGKILL unless the process is already reaped. A thread cannot
    /// be killed: its call is interrupted instead.
    pub(crate) fn kill(&self) {
        self.expected_exit.store(true, Ordering::SeqCst);
        if let Some(interrupts) = &self.interrupts {
            interrupts.cancel_current();
        }
        let reaped = self.reaped.locked();
        if let (false, Some(pid)) = (*reaped, self.pid) {
            crate::platform::kill(pid);
        }
    }

    /// The worker's process id; `None` for a thread worker.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Kills the worker if call `id` was abandoned by its caller and has
    /// not ended: its grace period is over. Returns whether it did.
    pub(crate) fn kill_if_abandoned(&self, id: u64) -> bool {
        let abandoned = matches!(*self.slot.locked(), Slot::Abandoned { id: a, .. } if a == id);
        if abandoned {
            tracing::warn!(
                pid = self.pid,
                call = id,
                "interrupted call overran its grace period; killing its worker"
            );
            self.kill();
        }
        abandoned
    }

    pub(crate) fn is_dead(&self) -> bool {
        matches!(*self.slot.locked(), Slot::Dead)
    }

    /// Whether the worker is gone: its host thread has seen it end, or (for
    /// a process) it has exited and the thread has not noticed yet. Cheap:
    /// a lock and, for a process, one `waitid` that reaps nothing.
    pub(crate) fn is_gone(&self) -> bool {
        self.is_dead() || self.pid.is_some_and(crate::platform::has_exited)
    }

    /// Hands a result to its call. Returns a protocol complaint if the
    /// worker answered a call it was not given.
    fn deliver(&self, books: &dyn Books, call: u64, outcomes: Vec<WireOutcome>) -> Option<String> {
        let outcomes = self.take_results(outcomes);
        // Before the caller hears of it, so that what the call held is free
        // by the time its result is seen; under the slot's lock, against a
        // fence set by `abandon`.
        let mut slot = self.slot.locked();
        self.guest.call_ended();
        let scope = self.host.end();
        match std::mem::replace(&mut *slot, Slot::Idle) {
            Slot::Waiting { id, tx } if id == call => {
                drop(slot);
                drop(scope);
                let _ = tx.send(Reply::Done(outcomes));
                None
            }
            Slot::Abandoned { id, worker, permit } if id == call => {
                drop(slot);
                drop(scope);
                books.checkin(worker, permit);
                None
            }
            other => {
                *slot = other;
                Some(format!(
                    "a result for call {call}, which it was not running"
                ))
            }
        }
    }

    /// The worker has ended: fails its call in flight, if any, and takes it
    /// off the books. `request` says whether the call's request was taken.
    fn end(&self, books: &dyn Books, id: u64, error: Error, request: Request) {
        let how = if self.expected_exit.load(Ordering::SeqCst) {
            Exit::Expected
        } else {
            Exit::Crashed
        };
        let (pending, scope) = {
            let mut slot = self.slot.locked();
            if request == Request::Untaken {
                self.guest.call_not_started();
            } else {
                self.guest.call_ended();
            }
            let scope = self.host.end();
            (std::mem::replace(&mut *slot, Slot::Dead), scope)
        };
        drop(scope);
        match how {
            _ if !self.primary => {}
            Exit::Expected => tracing::debug!(worker = id, pid = self.pid, "worker exited"),
            Exit::Crashed => {
                tracing::warn!(worker = id, pid = self.pid, error = %error, "worker crashed")
            }
        }
        match pending {
            Slot::Waiting { tx, .. } if request == Request::Untaken => {
                let _ = tx.send(Reply::NotStarted(error));
            }
            Slot::Waiting { tx, .. } => {
                let _ = tx.send(Reply::Lost(error));
            }
            Slot::Abandoned { worker, permit, .. } => {
                drop(worker);
                drop(permit);
            }
            Slot::Idle | Slot::Dead => {}
        }
        if self.primary {
            books.exited(id, how);
        }
    }
}

/// How the host reaches a worker.
enum Link {
    Process {
        /// The request pipe, shared with the registry, which answers
        /// guests there. The worker's thread reads the reply pipe.
        requests: Arc<process::RequestPipe>,
        /// Shared by the process's lanes: the last one dropped closes it.
        control: Arc<ControlEnd>,
    },
    Thread {
        requests: Arc<thread::Mailbox>,
    },
}

/// The host's end of a worker's control socket. Closing it ends the
/// worker.
struct ControlEnd(crate::platform::ControlHost);

impl Drop for ControlEnd {
    fn drop(&mut self) {
        crate::platform::close_control(&self.0);
    }
}

/// The lanes of a worker process that runs several calls at once (see
/// [`PoolBuilder::async_calls`](crate::PoolBuilder::async_calls)). The
/// worker holds one place in the pool while any lane serves a call: the
/// calls share its permit.
#[derive(Default)]
pub(crate) struct Group {
    /// The permit the worker is held by, while any call holds a share.
    pub(crate) permit: Mutex<crate::shares::WeakPermit>,
}

/// What a new worker is made of.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) kind: WorkerKind,
    pub(crate) program: PathBuf,
    pub(crate) settings: EngineSettings,
    pub(crate) reuse_instances: bool,
    /// The pool's host functions.
    pub(crate) host_fns: Arc<HostFns>,
    /// What a process worker confines itself to, less the directories its
    /// [`Grants`] add; `None` when the pool does not confine workers.
    pub(crate) sandbox: Option<Sandbox>,
    /// Whether a process worker gets a payload region.
    pub(crate) payload_region: bool,
    /// How many calls a process worker whose engine runs async components
    /// runs at once.
    pub(crate) async_calls: usize,
}

impl Spec {
    /// Whether a worker's [`Grants`] bound what its calls may preopen: a
    /// confined process worker can reach no other directory.
    pub(crate) fn confines(&self) -> bool {
        self.kind == WorkerKind::Process && self.sandbox.is_some()
    }
}

/// The host directories a worker's calls may preopen, each with its
/// access: fixed when a confined worker starts (its landlock ruleset).
/// Sorted, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Grants(Vec<Grant>);

impl Grants {
    /// What the calls with `preopens` need.
    pub(crate) fn of(preopens: &[Preopen]) -> Grants {
        let mut grants: Vec<Grant> = preopens
            .iter()
            .map(|p| Grant {
                host: p.host.clone(),
                access: p.access,
            })
            .collect();
        grants.sort();
        grants.dedup();
        Grants(grants)
    }
}

/// A live worker, owned by the pool's idle list or by one call.
pub(crate) struct Worker {
    pub(crate) id: u64,
    link: Link,
    pub(crate) shared: Arc<Shared>,
    pub(crate) calls: u64,
    pub(crate) last_used: Instant,
    /// The directories it can reach, if it is confined.
    pub(crate) grants: Grants,
    /// Its kind of engine: a job compiled for one kind loads only in that
    /// kind.
    pub(crate) kind: crate::engine::EngineKind,
    /// For a worker that runs several calls at once, idle: its other
    /// lanes, which go and come back with it.
    pub(crate) spare: Vec<Worker>,
    /// For a lane of a worker that runs several calls at once: the lanes'
    /// group.
    pub(crate) group: Option<Arc<Group>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("pid", &self.shared.pid)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts a worker. Resolves once it is ready for calls.
    pub(crate) fn spawn(
        books: Arc<dyn Books>,
        registry: Arc<Registry>,
        id: u64,
        spec: Spec,
        grants: Grants,
    ) -> oneshot::Receiver<Result<Worker, Error>> {
        let (tx, rx) = oneshot::channel();
        let spawned = match spec.kind {
            WorkerKind::Process => std::thread::Builder::new()
                .name(format!("wasmpool-worker-{id}"))
                .spawn(move || process::run(books, registry, id, spec, grants, tx)),
            WorkerKind::Thread => std::thread::Builder::new()
                .name(format!("wasmpool-thread-{id}"))
                .spawn(move || thread::run(books, registry, id, spec, tx)),
        };
        if let Err(e) = spawned {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(Error::new(
                ErrorKind::Spawn,
                format!("starting a host thread for worker {id}: {e}"),
            )));
            return rx;
        }
        rx
    }

    /// Sends `req` and returns where its reply will arrive, and the
    /// request back where this worker holds no copy of it (a process
    /// worker, which was sent its encoding), so that a call the worker
    /// never took can go to another. Errors writing are not returned: a
    /// worker that cannot be written to is dead, and the receiver says so.
    /// Routes the worker's frames for `streams`' call to them, and theirs
    /// to the worker, until the guard drops; `None` for a thread worker,
    /// which carries no streams.
    pub(crate) fn open_streams(&self, streams: &Arc<CallStreams>) -> Option<Registered> {
        match &self.link {
            Link::Process { requests, .. } => {
                streams.send_to(requests.clone());
                Some(self.shared.streams.register(streams))
            }
            Link::Thread { .. } => None,
        }
    }

    pub(crate) fn start(
        &self,
        mut req: CallRequest,
    ) -> (oneshot::Receiver<Reply>, Option<CallRequest>) {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending.locked();
            if !pending.is_empty() {
                req.pending = pending.for_request(req.session.as_ref());
            }
        }
        let id = req.id;
        {
            let mut slot = self.shared.slot.locked();
            match *slot {
                Slot::Dead => {
                    let why = Error::crashed(None, "before it took the call");
                    let _ = tx.send(Reply::NotStarted(why));
                    return (rx, Some(req));
                }
                _ => *slot = Slot::Waiting { id, tx },
            }
        }
        let requests = match &self.link {
            Link::Process { requests, .. } => requests,
            Link::Thread { requests } => {
                return match requests.send(req) {
                    Ok(()) => (rx, None),
                    Err(unsent) => {
                        // The thread is gone; it marks the slot dead as it
                        // goes.
                        let why = Error::crashed(None, "before it took the call");
                        self.fail_waiting(Slot::Dead, Reply::NotStarted(why));
                        (rx, Some(*unsent))
                    }
                };
            }
        };
        match requests.write(&self.shared.frame(&req)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                // Too large to send: the worker is still fine.
                let e = Error::new(ErrorKind::ArgumentMismatch, e.to_string());
                self.fail_waiting(Slot::Idle, Reply::Lost(e));
            }
            // A broken pipe: the worker is gone and took nothing.
            Err(e) => {
                let why = Error::crashed(None, &format!("before it took the call ({e})"));
                self.fail_waiting(Slot::Dead, Reply::NotStarted(why));
            }
        }
        (rx, Some(req))
    }

    /// Answers the call waiting in the slot with `reply`, leaving `then`.
    fn fail_waiting(&self, then: Slot, reply: Reply) {
        let mut slot = self.shared.slot.locked();
        if let Slot::Waiting { tx, .. } = std::mem::replace(&mut *slot, then) {
            let _ = tx.send(reply);
        }
    }

    /// Asks the worker to interrupt call `id`.
    pub(crate) fn cancel(&self, id: u64) {
        match (&self.link, &self.shared.interrupts) {
            (Link::Process { control, .. }, _) => {
                let _ = write_frame(&control.0, &Control::Cancel { id });
            }
            (Link::Thread { .. }, Some(interrupts)) => interrupts.cancel(id),
            (Link::Thread { .. }, None) => {}
        }
    }

    /// Whether the worker can be killed: a process can, a thread cannot.
    pub(crate) fn is_process(&self) -> bool {
        matches!(self.link, Link::Process { .. })
    }

    /// Hands the worker to its thread until call `id` ends; the thread then
    /// returns it to the pool. Returns the worker back if the call has
    /// already ended (or the worker died).
    ///
    /// An interrupted call's guest gets nothing more from the registry
    /// until it has stopped (see
    /// [`Registry::fence`](crate::sync::Registry::fence)). That is decided
    /// under the slot's lock, which delivering a result holds while the
    /// call's end lifts the fence, so that a fence never outlives its call.
    pub(crate) fn abandon(
        self,
        id: u64,
        permit: Permit,
        left: Abandoned,
    ) -> Option<(Worker, Permit)> {
        let shared = self.shared.clone();
        let mut slot = shared.slot.locked();
        match *slot {
            Slot::Waiting { id: waiting, .. } if waiting == id => {
                let mut scope = None;
                if left == Abandoned::Interrupted {
                    self.shared.guest.fence();
                    // Its pending host futures are dropped now, not when
                    // the guest has stopped.
                    scope = self.shared.host.end();
                }
                *slot = Slot::Abandoned {
                    id,
                    worker: self,
                    permit,
                };
                drop(slot);
                drop(scope);
                None
            }
            _ => Some((self, permit)),
        }
    }

    /// Ends the worker now. A process is killed with SIGKILL, and its
    /// guest lets go of what it held at once, so that whoever learns of the
    /// kill finds it free (its host thread ignores what the guest asks for
    /// after). A thread's guest is only interrupted, and lets go when it
    /// stops.
    pub(crate) fn kill(self) {
        self.shared.kill();
        if self.is_process() {
            self.shared.guest.release_now();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channels ends the worker: it exits on end of file. A
        // thread ends when its mailbox closes, after its call, if any. A
        // process that has already died on its own (killed from outside
        // while idle, say) is still counted as crashed.
        // The last of a process's lanes ends it.
        let ends = match &self.link {
            Link::Process { control, .. } => Arc::strong_count(control) == 1,
            Link::Thread { .. } => true,
        };
        if ends && !self.shared.pid.is_some_and(crate::platform::has_exited) {
            self.shared.expected_exit.store(true, Ordering::SeqCst);
        }
        // (The request pipe closes as the link is dropped, the control
        // socket as its last lane is.)
        if let Link::Thread { requests } = &self.link {
            requests.close();
        }
    }
}
