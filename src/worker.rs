//! The host's side of one worker: a process, or an in-process thread.
//!
//! A process worker has one host thread, `wasmpool-worker-{id}`. It spawns
//! the process (so that the Linux parent-death signal is tied to a thread
//! that lives exactly as long as the worker), performs the handshake, then
//! reads every frame the worker sends and hands each result to the waiting
//! call. When the worker's socket reaches end of file, the thread reaps the
//! process and fails the call in flight, if any, with `WorkerCrashed`.
//! Requests are written by the calling task itself, straight into the
//! socket: one hop fewer than handing them to a thread.
//!
//! A thread worker is the thread `wasmpool-thread-{id}`, which runs an
//! [`Executor`] of its own and receives requests in a [`Mailbox`]. Both kinds
//! hand results over through the same [`Slot`].

use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::engine::EngineSettings;
use crate::error::{Error, ErrorKind};
use crate::exec::{Executor, Interrupts};
use crate::imports::Answers;
use crate::pool::{PoolInner, WorkerKind};
use crate::protocol::{
    CallRequest, Control, FromWorker, Init, Outcome, PROTOCOL_VERSION, ToWorker, read_frame,
    write_frame,
};
use crate::sync::{GuestSink, GuestState, Inbox};

/// The buffer size asked for each request and reply pipe. Linux caps a
/// user's pipes at 64 MiB in all (`pipe-user-pages-soft`) before new pipes
/// shrink to one page, so this leaves room for 32 workers per user at
/// full size; past that, workers still work, with smaller pipes.
const PIPE_SIZE: usize = 1 << 20;

/// What a call gets back.
pub(crate) enum Reply {
    /// One outcome per item of the request.
    Done(Vec<Outcome>),
    /// The worker died or broke the protocol.
    Lost(Error),
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
        permit: OwnedSemaphorePermit,
    },
    Dead,
}

/// State shared between a [`Worker`] handle and its thread.
pub(crate) struct Shared {
    slot: Mutex<Slot>,
    /// Set once the process has been reaped; guards `kill` against pid
    /// reuse.
    reaped: Mutex<bool>,
    /// Set when the host ends the worker on purpose (retire, kill), so its
    /// exit is not counted as a crash.
    expected_exit: AtomicBool,
    /// The process, for a process worker.
    pid: Option<u32>,
    /// The executor's interrupts, for a thread worker.
    interrupts: Option<Arc<Interrupts>>,
    /// The job channel and registry state of the call in flight.
    pub(crate) guest: Arc<GuestState>,
}

impl Shared {
    /// Sends SIGKILL unless the process is already reaped. A thread cannot
    /// be killed: its call is interrupted instead.
    pub(crate) fn kill(&self) {
        self.expected_exit.store(true, Ordering::SeqCst);
        if let Some(interrupts) = &self.interrupts {
            interrupts.cancel_current();
        }
        let reaped = self.reaped.lock().expect("reaped lock");
        if let (false, Some(pid)) = (*reaped, self.pid) {
            crate::platform::kill(pid);
        }
    }

    /// The worker's process id; `None` for a thread worker.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether call `id` was abandoned by its caller and has not ended.
    fn is_abandoned(&self, id: u64) -> bool {
        matches!(*self.slot.lock().expect("slot lock"), Slot::Abandoned { id: a, .. } if a == id)
    }

    pub(crate) fn is_dead(&self) -> bool {
        matches!(*self.slot.lock().expect("slot lock"), Slot::Dead)
    }
}

/// How the host reaches a worker.
enum Link {
    Process {
        /// The request pipe, shared with the registry, which answers
        /// guests there. The worker's thread reads the reply pipe.
        data: Arc<Mutex<std::io::PipeWriter>>,
        control: UnixStream,
    },
    Thread {
        requests: Arc<Mailbox>,
    },
}

/// What a new worker is made of.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) kind: WorkerKind,
    pub(crate) program: PathBuf,
    pub(crate) settings: EngineSettings,
    pub(crate) reuse_instances: bool,
}

/// A live worker, owned by the pool's idle list or by one call.
pub(crate) struct Worker {
    pub(crate) id: u64,
    link: Link,
    pub(crate) shared: Arc<Shared>,
    pub(crate) calls: u64,
    pub(crate) last_used: Instant,
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
        pool: &Arc<PoolInner>,
        id: u64,
        spec: Spec,
    ) -> oneshot::Receiver<Result<Worker, Error>> {
        let (tx, rx) = oneshot::channel();
        let pool = pool.clone();
        let spawned = match spec.kind {
            WorkerKind::Process => std::thread::Builder::new()
                .name(format!("wasmpool-worker-{id}"))
                .spawn(move || process_thread(pool, id, spec, tx)),
            WorkerKind::Thread => std::thread::Builder::new()
                .name(format!("wasmpool-thread-{id}"))
                .spawn(move || worker_thread(pool, id, spec, tx)),
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

    /// Sends `req` and returns where its reply will arrive. Errors writing
    /// are not returned: a worker that cannot be written to is dead, and its
    /// thread reports that on the receiver.
    pub(crate) fn start(&self, req: CallRequest) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let id = req.id;
        {
            let mut slot = self.shared.slot.lock().expect("slot lock");
            match *slot {
                Slot::Dead => {
                    let _ = tx.send(Reply::Lost(Error::crashed(None, "before the call started")));
                    return rx;
                }
                _ => *slot = Slot::Waiting { id, tx },
            }
        }
        let data = match &self.link {
            Link::Process { data, .. } => data,
            Link::Thread { requests } => {
                if let Err(unsent) = requests.send(req) {
                    // The thread is gone; it marks the slot dead as it goes.
                    let mut slot = self.shared.slot.lock().expect("slot lock");
                    if let Slot::Waiting { tx, .. } = std::mem::replace(&mut *slot, Slot::Dead) {
                        let _ = tx.send(Reply::Lost(Error::crashed(
                            None,
                            &format!("before call {} started", unsent.id),
                        )));
                    }
                }
                return rx;
            }
        };
        // Any other error is a broken pipe: the worker is gone, and its
        // thread sees the end of file and fails the call.
        let written = write_frame(
            &*data.lock().expect("request pipe lock"),
            &ToWorker::Call(req),
        );
        if let Err(e) = written
            && e.kind() == io::ErrorKind::InvalidInput
        {
            // Too large to send: the worker is still fine.
            let mut slot = self.shared.slot.lock().expect("slot lock");
            if let Slot::Waiting { tx, .. } = std::mem::replace(&mut *slot, Slot::Idle) {
                let _ = tx.send(Reply::Lost(Error::new(
                    ErrorKind::ArgumentMismatch,
                    e.to_string(),
                )));
            }
        }
        rx
    }

    /// Asks the worker to interrupt call `id`.
    pub(crate) fn cancel(&self, id: u64) {
        match (&self.link, &self.shared.interrupts) {
            (Link::Process { control, .. }, _) => {
                let _ = write_frame(control, &Control::Cancel { id });
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
    /// With `fence`, the call was interrupted: its guest gets nothing more
    /// from the registry until it has stopped (see
    /// [`Registry::fence`](crate::sync::Registry::fence)). That is decided
    /// under the slot's lock, which [`deliver`] holds while the call's end
    /// lifts the fence, so that a fence never outlives its call.
    pub(crate) fn abandon(
        self,
        id: u64,
        permit: OwnedSemaphorePermit,
        fence: Option<&crate::sync::Registry>,
    ) -> Option<(Worker, OwnedSemaphorePermit)> {
        let shared = self.shared.clone();
        let mut slot = shared.slot.lock().expect("slot lock");
        match *slot {
            Slot::Waiting { id: waiting, .. } if waiting == id => {
                if let Some(registry) = fence {
                    self.shared.guest.fence(registry, self.id);
                }
                *slot = Slot::Abandoned {
                    id,
                    worker: self,
                    permit,
                };
                None
            }
            _ => Some((self, permit)),
        }
    }

    /// Ends the worker now, with SIGKILL.
    pub(crate) fn kill(self) {
        self.shared.kill();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the sockets ends the worker: it exits on end of file. A
        // thread ends when its channel closes, after its call, if any.
        self.shared.expected_exit.store(true, Ordering::SeqCst);
        // (The request pipe closes as the link is dropped.)
        match &self.link {
            Link::Process { control, .. } => {
                let _ = control.shutdown(Shutdown::Both);
            }
            Link::Thread { requests } => requests.close(),
        }
    }
}

/// Kills the worker if abandoned call `id` has not ended after `grace`.
/// Runs on a short-lived `wasmpool-grace` thread, since no task is left to
/// wait on the caller's behalf.
pub(crate) fn kill_after_grace(
    shared: Arc<Shared>,
    id: u64,
    grace: Duration,
    pool: &Arc<PoolInner>,
) {
    let pool = pool.clone();
    let _ = std::thread::Builder::new()
        .name("wasmpool-grace".into())
        .spawn(move || {
            std::thread::sleep(grace);
            if shared.is_abandoned(id) {
                pool.count_kill();
                shared.kill();
            }
        });
}

fn process_thread(
    pool: Arc<PoolInner>,
    id: u64,
    spec: Spec,
    ready: oneshot::Sender<Result<Worker, Error>>,
) {
    let Spec {
        program,
        settings,
        reuse_instances,
        ..
    } = spec;
    let spawn_err = |what: String| Error::new(ErrorKind::Spawn, format!("worker {id}: {what}"));
    let started = (|| -> Result<_, Error> {
        let (child_requests, data) =
            std::io::pipe().map_err(|e| spawn_err(format!("creating a pipe: {e}")))?;
        let (control, child_control) =
            UnixStream::pair().map_err(|e| spawn_err(format!("creating a socket pair: {e}")))?;
        let (reader, child_replies) =
            std::io::pipe().map_err(|e| spawn_err(format!("creating a pipe: {e}")))?;
        // A 1 MiB payload then crosses in one hand-off instead of 16.
        crate::platform::grow_pipe(&data, PIPE_SIZE);
        crate::platform::grow_pipe(&reader, PIPE_SIZE);
        let ends = crate::platform::Channels {
            requests: child_requests.into(),
            control: child_control.into(),
            replies: child_replies.into(),
        };
        let child = crate::platform::spawn_worker(&program, ends)
            .map_err(|e| spawn_err(format!("starting {}: {e}", program.display())))?;
        Ok((data, control, reader, child))
    })();
    let (data, control, reader, mut child) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot::Idle),
        reaped: Mutex::new(false),
        expected_exit: AtomicBool::new(false),
        pid: Some(child.id()),
        interrupts: None,
        guest: Arc::default(),
    });
    pool.register(id, shared.clone());

    let mut buf = Vec::new();
    let init = Init {
        version: PROTOCOL_VERSION,
        engine: settings,
        reuse_instances,
    };
    let handshake = write_frame(&data, &init)
        .map_err(|e| format!("handshake: sending the first frame: {e}"))
        .and_then(|()| match read_frame::<_, FromWorker>(&reader, &mut buf) {
            Ok(Some(FromWorker::Ready { version, .. })) if version == PROTOCOL_VERSION => Ok(()),
            Ok(Some(FromWorker::Ready { version, .. })) => Err(format!(
                "handshake: protocol version {version}, expected {PROTOCOL_VERSION}"
            )),
            Ok(Some(FromWorker::Failed { message })) => Err(format!("handshake: {message}")),
            Ok(Some(other)) => Err(format!("handshake: unexpected first frame {other:?}")),
            Ok(None) => Err(format!(
                "{} exited during the handshake; is it a program linked with wasmpool?",
                program.display()
            )),
            Err(e) => Err(format!("handshake: {e}")),
        });
    if let Err(what) = handshake {
        shared.kill();
        let status = wait(&shared, &mut child);
        pool.unregister(id, false);
        let what = match status {
            Some(s) if !s.success() => format!("{what} ({s})"),
            _ => what,
        };
        let _ = ready.send(Err(spawn_err(what)));
        return;
    }
    let data = Arc::new(Mutex::new(data));
    let sink = GuestSink::Process(data.clone());
    let worker = Worker {
        id,
        link: Link::Process { data, control },
        shared: shared.clone(),
        calls: 0,
        last_used: Instant::now(),
    };
    if let Err(Ok(worker)) = ready.send(Ok(worker)) {
        // Nobody is waiting any more: dropping the handle ends the worker.
        drop(worker);
    }

    let lost = loop {
        // With the rest of the pool quiet, the next reply is worth polling
        // for: it spares a wake-up of this thread on each call. With other
        // calls in flight, the cores are better left to them.
        if pool.is_quiet() {
            crate::platform::spin_until_readable(&reader, crate::exec::SPIN);
        }
        match read_frame::<_, FromWorker>(&reader, &mut buf) {
            Ok(Some(FromWorker::Done { id: call, outcomes })) => {
                if let Some(lost) = deliver(&pool, &shared, id, call, outcomes) {
                    break Some(lost);
                }
            }
            // A worker being killed gets nothing more: what it asked for on
            // its way out would be lost with it.
            Ok(Some(FromWorker::Sync { .. })) if shared.expected_exit.load(Ordering::SeqCst) => {}
            Ok(Some(FromWorker::Sync { seq, op })) => {
                shared.guest.submit(&pool.sync, id, &sink, seq, op);
            }
            Ok(Some(other)) => break Some(format!("unexpected frame {other:?}")),
            Ok(None) => break None,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                break Some(format!("malformed frame: {e}"));
            }
            Err(_) => break None,
        }
    };
    if lost.is_some() {
        shared.kill();
    }
    let status = wait(&shared, &mut child);
    let error = match lost {
        Some(what) => Error::new(
            ErrorKind::Protocol,
            format!("worker {id} broke the protocol: {what}"),
        ),
        None => Error::crashed(status, "during the call"),
    };
    end(&pool, &shared, id, error);
}

/// A worker has ended: fails its call in flight, if any, and takes it off
/// the pool's books.
fn end(pool: &Arc<PoolInner>, shared: &Shared, id: u64, error: Error) {
    let expected = shared.expected_exit.load(Ordering::SeqCst);
    let pending = {
        let mut slot = shared.slot.lock().expect("slot lock");
        shared.guest.call_ended(&pool.sync, id);
        std::mem::replace(&mut *slot, Slot::Dead)
    };
    match pending {
        Slot::Waiting { tx, .. } => {
            let _ = tx.send(Reply::Lost(error));
        }
        Slot::Abandoned { worker, permit, .. } => {
            drop(worker);
            drop(permit);
        }
        Slot::Idle | Slot::Dead => {}
    }
    pool.unregister(id, !expected);
}

/// The `wasmpool-thread-{id}` thread: a worker in this process.
fn worker_thread(
    pool: Arc<PoolInner>,
    id: u64,
    spec: Spec,
    ready: oneshot::Sender<Result<Worker, Error>>,
) {
    let inbox = Arc::new(Inbox::default());
    let guest: Arc<GuestState> = Arc::default();
    let send: crate::sync::OpSender = {
        let pool = pool.clone();
        let guest = guest.clone();
        let sink = GuestSink::Thread(inbox.clone());
        Box::new(move |seq, op| {
            guest.submit(&pool.sync, id, &sink, seq, op);
            Ok(())
        })
    };
    let answers = Arc::new(Answers::Inbox(inbox));
    let mut executor = match Executor::new(&spec.settings, spec.reuse_instances, answers, send) {
        Ok(e) => e,
        Err(what) => {
            let _ = ready.send(Err(Error::new(
                ErrorKind::Spawn,
                format!("worker thread {id}: {what}"),
            )));
            return;
        }
    };
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot::Idle),
        reaped: Mutex::new(true),
        expected_exit: AtomicBool::new(false),
        pid: None,
        interrupts: Some(executor.interrupts()),
        guest,
    });
    pool.register(id, shared.clone());
    let mailbox = Arc::new(Mailbox::default());
    let worker = Worker {
        id,
        link: Link::Thread {
            requests: mailbox.clone(),
        },
        shared: shared.clone(),
        calls: 0,
        last_used: Instant::now(),
    };
    if let Err(Ok(worker)) = ready.send(Ok(worker)) {
        drop(worker);
    }
    let mut error = Error::crashed(None, "during the call");
    // The mailbox closes when the pool drops this worker.
    while let Some(req) = mailbox.recv() {
        let call = req.id;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            executor.run(req, |outcomes| {
                match deliver(&pool, &shared, id, call, outcomes) {
                    None => Ok(()),
                    Some(complaint) => Err(complaint),
                }
            })
        }));
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(complaint)) => {
                error = Error::new(ErrorKind::Protocol, complaint);
                break;
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                error = Error::new(
                    ErrorKind::WorkerCrashed,
                    format!("worker thread {id} panicked during the call: {what}"),
                );
                break;
            }
        }
    }
    mailbox.close();
    drop(executor);
    end(&pool, &shared, id, error);
}

/// Hands requests to a worker thread, one at a time (the [`Slot`] sees to
/// that). A plain mutex and condition variable: on this kind of machine a
/// `std::sync::mpsc` ping-pong was several times slower.
#[derive(Default)]
pub(crate) struct Mailbox {
    state: Mutex<(Option<CallRequest>, bool)>,
    posted: std::sync::Condvar,
    /// Set with the state; lets the thread poll before it sleeps.
    waiting: AtomicBool,
}

impl Mailbox {
    /// Posts `req`; gives it back if the mailbox is closed.
    fn send(&self, req: CallRequest) -> Result<(), Box<CallRequest>> {
        let mut state = self.state.lock().expect("mailbox lock");
        if state.1 {
            return Err(Box::new(req));
        }
        state.0 = Some(req);
        drop(state);
        self.waiting.store(true, Ordering::Release);
        self.posted.notify_one();
        Ok(())
    }

    /// No more requests: the thread ends once it has seen this.
    fn close(&self) {
        self.state.lock().expect("mailbox lock").1 = true;
        self.waiting.store(true, Ordering::Release);
        self.posted.notify_one();
    }

    /// The next request, or `None` once closed. Polls for up to
    /// [`crate::exec::SPIN`] before it sleeps.
    fn recv(&self) -> Option<CallRequest> {
        let start = Instant::now();
        while !self.waiting.load(Ordering::Acquire) && start.elapsed() < crate::exec::SPIN {
            std::hint::spin_loop();
        }
        self.waiting.store(false, Ordering::Release);
        let mut state = self.state.lock().expect("mailbox lock");
        loop {
            if let Some(req) = state.0.take() {
                return Some(req);
            }
            if state.1 {
                return None;
            }
            state = self.posted.wait(state).expect("mailbox lock");
        }
    }
}

/// Reaps the process, marking it reaped under the lock `kill` takes.
fn wait(shared: &Shared, child: &mut std::process::Child) -> Option<ExitStatus> {
    let pid = child.id();
    crate::platform::wait_exit_without_reaping(pid);
    let mut reaped = shared.reaped.lock().expect("reaped lock");
    let status = child.wait().ok();
    *reaped = true;
    status
}

/// Hands a result to its call. Returns a protocol complaint if the worker
/// answered a call it was not given.
fn deliver(
    pool: &Arc<PoolInner>,
    shared: &Shared,
    worker: u64,
    call: u64,
    outcomes: Vec<Outcome>,
) -> Option<String> {
    // Before the caller hears of it, so that what the call held is free
    // by the time its result is seen; under the slot's lock, against a
    // fence set by `abandon`.
    let mut slot = shared.slot.lock().expect("slot lock");
    shared.guest.call_ended(&pool.sync, worker);
    match std::mem::replace(&mut *slot, Slot::Idle) {
        Slot::Waiting { id, tx } if id == call => {
            drop(slot);
            let _ = tx.send(Reply::Done(outcomes));
            None
        }
        Slot::Abandoned { id, worker, permit } if id == call => {
            drop(slot);
            pool.checkin(worker, permit);
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
