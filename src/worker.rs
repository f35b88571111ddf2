//! The host's side of one worker process.
//!
//! Each worker has one host thread, `wasmpool-worker-{id}`. It spawns the
//! process (so that the Linux parent-death signal is tied to a thread that
//! lives exactly as long as the worker), performs the handshake, then reads
//! every frame the worker sends and hands each result to the waiting call.
//! When the worker's socket reaches end of file, the thread reaps the
//! process and fails the call in flight, if any, with `WorkerCrashed`.
//!
//! Requests are written by the calling task itself, straight into the
//! socket: one hop fewer than handing them to a thread.

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
use crate::error::{Error, ErrorKind, WireError};
use crate::pool::PoolInner;
use crate::protocol::{
    CallRequest, Control, FromWorker, Init, PROTOCOL_VERSION, Report, ToWorker, read_frame,
    write_frame,
};

/// What a call gets back.
pub(crate) enum Reply {
    Done(Result<serde_bytes::ByteBuf, WireError>, Report),
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
    pid: u32,
}

impl Shared {
    /// Sends SIGKILL unless the process is already reaped.
    pub(crate) fn kill(&self) {
        self.expected_exit.store(true, Ordering::SeqCst);
        let reaped = self.reaped.lock().expect("reaped lock");
        if !*reaped {
            crate::platform::kill(self.pid);
        }
    }

    pub(crate) fn pid(&self) -> u32 {
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

/// A live worker process, owned by the pool's idle list or by one call.
pub(crate) struct Worker {
    pub(crate) id: u64,
    data: UnixStream,
    control: UnixStream,
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
    /// Starts a worker process. Resolves once it has answered the handshake.
    pub(crate) fn spawn(
        pool: &Arc<PoolInner>,
        id: u64,
        program: PathBuf,
        settings: EngineSettings,
    ) -> oneshot::Receiver<Result<Worker, Error>> {
        let (tx, rx) = oneshot::channel();
        let pool = pool.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("wasmpool-worker-{id}"))
            .spawn(move || worker_thread(pool, id, program, settings, tx));
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
        if let Err(e) = write_frame(&self.data, &ToWorker::Call(req)) {
            if e.kind() == io::ErrorKind::InvalidInput {
                // Too large to send: the worker is still fine.
                let mut slot = self.shared.slot.lock().expect("slot lock");
                if let Slot::Waiting { tx, .. } = std::mem::replace(&mut *slot, Slot::Idle) {
                    let _ = tx.send(Reply::Lost(Error::new(
                        ErrorKind::ArgumentMismatch,
                        e.to_string(),
                    )));
                }
            } else {
                // A broken pipe: the worker thread sees the end of file too.
                let _ = self.data.shutdown(Shutdown::Both);
            }
        }
        rx
    }

    /// Asks the worker to interrupt call `id`.
    pub(crate) fn cancel(&self, id: u64) {
        let _ = write_frame(&self.control, &Control::Cancel { id });
    }

    /// Hands the worker to its thread until call `id` ends; the thread then
    /// returns it to the pool. Returns the worker back if the call has
    /// already ended (or the worker died).
    pub(crate) fn abandon(
        self,
        id: u64,
        permit: OwnedSemaphorePermit,
    ) -> Option<(Worker, OwnedSemaphorePermit)> {
        let shared = self.shared.clone();
        let mut slot = shared.slot.lock().expect("slot lock");
        match *slot {
            Slot::Waiting { id: waiting, .. } if waiting == id => {
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
        // Closing the sockets ends the worker: it exits on end of file.
        self.shared.expected_exit.store(true, Ordering::SeqCst);
        let _ = self.data.shutdown(Shutdown::Both);
        let _ = self.control.shutdown(Shutdown::Both);
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

fn worker_thread(
    pool: Arc<PoolInner>,
    id: u64,
    program: PathBuf,
    settings: EngineSettings,
    ready: oneshot::Sender<Result<Worker, Error>>,
) {
    let spawn_err = |what: String| Error::new(ErrorKind::Spawn, format!("worker {id}: {what}"));
    let started = (|| -> Result<_, Error> {
        let (data, child_data) =
            UnixStream::pair().map_err(|e| spawn_err(format!("creating a socket pair: {e}")))?;
        let (control, child_control) =
            UnixStream::pair().map_err(|e| spawn_err(format!("creating a socket pair: {e}")))?;
        let child =
            crate::platform::spawn_worker(&program, child_data.into(), child_control.into())
                .map_err(|e| spawn_err(format!("starting {}: {e}", program.display())))?;
        Ok((data, control, child))
    })();
    let (data, control, mut child) = match started {
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
        pid: child.id(),
    });
    pool.register(id, shared.clone());

    let mut buf = Vec::new();
    let reader = match data.try_clone() {
        Ok(r) => r,
        Err(e) => {
            shared.kill();
            wait(&shared, &mut child);
            pool.unregister(id, false);
            let _ = ready.send(Err(spawn_err(format!("cloning the socket: {e}"))));
            return;
        }
    };
    let init = Init {
        version: PROTOCOL_VERSION,
        engine: settings,
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
    let worker = Worker {
        id,
        data,
        control,
        shared: shared.clone(),
        calls: 0,
        last_used: Instant::now(),
    };
    if let Err(Ok(worker)) = ready.send(Ok(worker)) {
        // Nobody is waiting any more: dropping the handle ends the worker.
        drop(worker);
    }

    let lost = loop {
        match read_frame::<_, FromWorker>(&reader, &mut buf) {
            Ok(Some(FromWorker::Done {
                id: call,
                outcome,
                report,
            })) => {
                if let Some(lost) = deliver(&pool, &shared, call, outcome, report) {
                    break Some(lost);
                }
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
    let expected = shared.expected_exit.load(Ordering::SeqCst);
    let pending = std::mem::replace(&mut *shared.slot.lock().expect("slot lock"), Slot::Dead);
    let error = match lost {
        Some(what) => Error::new(
            ErrorKind::Protocol,
            format!("worker {id} broke the protocol: {what}"),
        ),
        None => Error::crashed(status, "during the call"),
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

/// Reaps the process, marking it reaped under the lock `kill` takes.
fn wait(shared: &Shared, child: &mut std::process::Child) -> Option<ExitStatus> {
    crate::platform::wait_exit_without_reaping(shared.pid);
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
    call: u64,
    outcome: Result<serde_bytes::ByteBuf, WireError>,
    report: Report,
) -> Option<String> {
    let mut slot = shared.slot.lock().expect("slot lock");
    match std::mem::replace(&mut *slot, Slot::Idle) {
        Slot::Waiting { id, tx } if id == call => {
            drop(slot);
            let _ = tx.send(Reply::Done(outcome, report));
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
