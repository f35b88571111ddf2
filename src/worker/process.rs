//! A worker process and its host thread, `wasmpool-worker-{id}`: spawn,
//! handshake, then read every frame the worker sends until it exits.

use crate::locks::Locked as _;
use std::io::{self, PipeWriter};
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::oneshot;

use super::{Books, ControlEnd, Grants, Group, Link, Request, Shared, Spec, Worker};
use crate::engine::EngineSettings;
use crate::error::{Error, ErrorKind};
use crate::host::Seat;
use crate::options::DirAccess;
use crate::platform;
use crate::platform::HostRegion;
use crate::pool::transmit::{CallStreams, FrameSink};
use crate::runtime::IdleSpin;
use crate::sync::{AnswerSink, GuestState, Registry};
use crate::wire::{
    Answer, CompileOrder, FromWorker, Grant, GuestOp, Init, PROTOCOL_VERSION, REGION_SIZE,
    RESULTS_AT, Sandbox, ToWorker, read_frame, write_frame,
};

/// The buffer size asked for each request and reply pipe. Linux caps a
/// user's pipes at 64 MiB in all (`pipe-user-pages-soft`) before new pipes
/// shrink to one page, so this leaves room for 32 workers per user at
/// full size; past that, workers still work, with smaller pipes.
const PIPE_SIZE: usize = 1 << 20;

/// The write end of a worker's request pipe. Calls go in from the calling
/// task, answers to the guest's `wasmpool:sync` operations from the
/// registry; the lock keeps their frames whole.
pub(super) struct RequestPipe(Mutex<PipeWriter>);

impl RequestPipe {
    /// Whether anything written is still unread: once the worker has
    /// died, whether it took the request it was sent.
    fn untaken(&self) -> Request {
        if platform::unread_bytes(&*self.0.locked()) > 0 {
            Request::Untaken
        } else {
            Request::Taken
        }
    }

    /// Writes one frame.
    pub(super) fn write<T: Serialize>(&self, msg: &T) -> io::Result<()> {
        write_frame(&*self.0.locked(), msg)
    }
}

impl FrameSink for RequestPipe {
    fn send(&self, frame: &ToWorker) -> io::Result<()> {
        self.write(frame)
    }
}

impl AnswerSink for RequestPipe {
    fn deliver(&self, seq: u64, answer: Answer) {
        // A worker that cannot be written to is dead; its host thread sees
        // that and releases what it held.
        let _ = self.write(&ToWorker::Answer { seq, answer });
    }
}

/// The channels of a started worker, host ends, and its payload region.
struct Spawned {
    requests: PipeWriter,
    control: platform::ControlHost,
    replies: io::PipeReader,
    child: platform::WorkerProcess,
    region: Option<HostRegion>,
}

/// Creates the channels and starts `program` as a worker, which will
/// confine itself (`confined`: on Windows it then starts with a
/// restricted token too).
fn start(program: &std::path::Path, with_region: bool, confined: bool) -> Result<Spawned, String> {
    // Large pipes: a 1 MiB payload then crosses in one hand-off instead of
    // 16.
    let (child_requests, requests) =
        platform::pipe(PIPE_SIZE).map_err(|e| format!("creating a pipe: {e}"))?;
    let (control, child_control) =
        platform::control_channel().map_err(|e| format!("creating a control channel: {e}"))?;
    let (replies, child_replies) =
        platform::pipe(PIPE_SIZE).map_err(|e| format!("creating a pipe: {e}"))?;
    let ends = platform::Channels {
        requests: child_requests.into(),
        control: child_control,
        replies: child_replies.into(),
    };
    // Without a region (no memfd here), payloads go through the pipes.
    let region = with_region
        .then(|| match HostRegion::create(REGION_SIZE, RESULTS_AT) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "no payload region; large payloads use the pipes");
                None
            }
        })
        .flatten();
    let child = platform::spawn_worker(program, ends, region.as_ref(), confined)
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    Ok(Spawned {
        requests,
        control,
        replies,
        child,
        region,
    })
}

/// Compiles `order` in a child process started from `program`, confined
/// (when `confine`) to writing the cache directory, and waits for it to
/// exit. Blocking. The compiler's memory (hundreds of MB for a large
/// component) is the child's, and goes with it.
pub(crate) fn compile_in_child(
    program: &std::path::Path,
    settings: EngineSettings,
    confine: bool,
    order: CompileOrder,
) -> Result<(), Error> {
    let origin = order.origin.clone();
    let sandbox = confine.then(|| Sandbox {
        read: Vec::new(),
        dirs: vec![Grant {
            host: order.dir.clone(),
            access: DirAccess::ReadWrite,
        }],
    });
    let init = Init {
        version: PROTOCOL_VERSION,
        engine: settings,
        reuse_instances: false,
        sandbox,
        compile: Some(order),
        region: None,
        lanes: 1,
    };
    // A program that cannot be started, or that does not answer the
    // handshake, is a wrong worker program, not a bad component.
    let spawn_err = |what: String| {
        Error::new(
            ErrorKind::Spawn,
            format!(
                "worker program {} (compiling {origin}): {what}",
                program.display()
            ),
        )
    };
    let Spawned {
        requests,
        control,
        replies,
        mut child,
        ..
    } = start(program, false, confine).map_err(spawn_err)?;
    let mut buf = Vec::new();
    // The child answers twice: once when it has taken the order (the
    // handshake), once when the compile is done or failed.
    let shook = handshake(&requests, &replies, &mut buf, &init, program);
    let answer = shook
        .is_ok()
        .then(|| read_frame::<_, FromWorker>(&replies, &mut buf));
    drop((requests, control, replies));
    let status = child.wait();
    shook.map_err(spawn_err)?;
    match answer {
        Some(Ok(Some(FromWorker::Ready { .. }))) => Ok(()),
        Some(Ok(Some(FromWorker::Failed { message }))) => {
            Err(Error::new(ErrorKind::InvalidComponent, message))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidComponent,
            format!(
                "the process compiling {origin} ended without an answer ({})",
                match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                }
            ),
        )),
    }
}

/// Sends [`Init`] and waits for the worker to be ready.
fn handshake(
    requests: &PipeWriter,
    replies: &io::PipeReader,
    buf: &mut Vec<u8>,
    init: &Init,
    program: &std::path::Path,
) -> Result<(), String> {
    write_frame(requests, init).map_err(|e| format!("handshake: sending the first frame: {e}"))?;
    match read_frame::<_, FromWorker>(replies, buf) {
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
    }
}

/// The `wasmpool-worker-{id}` thread.
pub(super) fn run(
    books: Arc<dyn Books>,
    registry: Arc<Registry>,
    id: u64,
    spec: Spec,
    grants: Grants,
    ready: oneshot::Sender<Result<Worker, Error>>,
) {
    let Spec {
        program,
        settings,
        reuse_instances,
        host_fns,
        sandbox,
        payload_region,
        async_calls,
        ..
    } = spec;
    // Only an engine for async components runs calls side by side.
    let lanes = if settings.kind.concurrent {
        async_calls.max(1)
    } else {
        1
    };
    let began = Instant::now();
    let spawn_err = |what: String| Error::new(ErrorKind::Spawn, format!("worker {id}: {what}"));
    // A confined worker is granted its cache directory, which must exist.
    for dir in sandbox.iter().flat_map(|s| &s.read) {
        if let Err(e) = platform::create_private_dir(dir) {
            let what = format!("preparing cache directory {}: {e}", dir.display());
            let _ = ready.send(Err(spawn_err(what)));
            return;
        }
    }
    let Spawned {
        requests,
        control,
        replies,
        mut child,
        region,
    } = match start(&program, payload_region && lanes == 1, sandbox.is_some()) {
        Ok(s) => s,
        Err(what) => {
            let _ = ready.send(Err(spawn_err(what)));
            return;
        }
    };
    let pid = child.id();
    let mut buf = Vec::new();
    let init = Init {
        version: PROTOCOL_VERSION,
        engine: settings,
        reuse_instances,
        sandbox: sandbox.map(|base| Sandbox {
            dirs: grants.0.clone(),
            ..base
        }),
        compile: None,
        region: region.as_ref().map(|r| r.len() as u64),
        lanes: u32::try_from(lanes).unwrap_or(u32::MAX),
    };
    let handshake = handshake(&requests, &replies, &mut buf, &init, &program);
    let requests = Arc::new(RequestPipe(Mutex::new(requests)));
    let guest = Arc::new(GuestState::new(registry.clone(), id, requests.clone()));
    let host = Arc::new(Seat::new(host_fns.clone(), requests.clone(), Some(pid)));
    let shared = Arc::new(Shared::new(
        Some(pid),
        None,
        guest,
        host,
        region,
        Arc::downgrade(&books),
    ));
    books.register(id, shared.clone());
    if let Err(what) = handshake {
        shared.kill();
        let status = reap(&shared, &mut child);
        books.exited(id, super::Exit::Expected);
        let what = match status {
            Some(s) if !s.success() => format!("{what} ({s})"),
            _ => what,
        };
        tracing::warn!(worker = id, pid, error = %what, "worker failed to start");
        let _ = ready.send(Err(spawn_err(what)));
        return;
    }
    tracing::debug!(
        worker = id,
        pid,
        took_us = began.elapsed().as_micros() as u64,
        "worker started"
    );
    let pipe = requests.clone();
    let control = Arc::new(ControlEnd(control));
    let group = (lanes > 1).then(|| Arc::new(Group::default()));
    let kind = init.engine.kind;
    let mut all = vec![shared.clone()];
    let mut spare = Vec::with_capacity(lanes - 1);
    for lane in 1..lanes {
        // Each lane holds what its guest holds in the registry apart.
        let owner = (1 << 63) | (id << 16) | lane as u64;
        let guest = Arc::new(GuestState::new(registry.clone(), owner, requests.clone()));
        let host = Arc::new(Seat::new(host_fns.clone(), requests.clone(), Some(pid)));
        let lane = Arc::new(shared.lane(guest, host));
        all.push(lane.clone());
        spare.push(Worker {
            id,
            link: Link::Process {
                requests: requests.clone(),
                control: control.clone(),
            },
            shared: lane,
            calls: 0,
            last_used: Instant::now(),
            grants: grants.clone(),
            kind,
            spare: Vec::new(),
            group: group.clone(),
        });
    }
    let worker = Worker {
        id,
        link: Link::Process { requests, control },
        shared: shared.clone(),
        calls: 0,
        last_used: Instant::now(),
        grants,
        kind,
        spare,
        group,
    };
    if let Err(Ok(worker)) = ready.send(Ok(worker)) {
        // Nobody is waiting any more: dropping the handle ends the worker.
        drop(worker);
    }
    let (lost, spoke) = read_replies(&*books, &all, &replies, &mut buf);
    if lost.is_some() {
        shared.kill();
    }
    let status = reap(&shared, &mut child);
    // The worker itself last: it takes the worker off the books.
    for lane in all.iter().rev() {
        let (error, request) = match &lost {
            Some(what) => (
                Error::new(
                    ErrorKind::Protocol,
                    format!("worker {id} broke the protocol: {what}"),
                ),
                Request::Taken,
            ),
            // A guest that asked the host something had its call. So did
            // a lane's (there is no telling which request is untaken).
            // Otherwise, with nothing reading the pipe any more, what is
            // left in it was never taken.
            None if spoke || lanes > 1 => {
                (Error::crashed(status, "during the call"), Request::Taken)
            }
            None => match pipe.untaken() {
                Request::Untaken => (
                    Error::crashed(status, "before it took the call"),
                    Request::Untaken,
                ),
                Request::Taken => (Error::crashed(status, "during the call"), Request::Taken),
            },
        };
        lane.end(&*books, id, error, request);
    }
}

/// Reads the worker's frames until it exits (`None`) or breaks the
/// protocol (what it did); says too whether the guest of a call in
/// flight asked the host anything. `lanes` are the worker's, itself
/// first: a frame of a call goes to the lane that holds the call.
fn read_replies(
    books: &dyn Books,
    lanes: &[Arc<Shared>],
    replies: &io::PipeReader,
    buf: &mut Vec<u8>,
) -> (Option<String>, bool) {
    let shared = &lanes[0];
    // A worker of one lane (most) holds every call it is sent: no lookup.
    let lane_of = |call: u64| match lanes {
        [only] => Some(only),
        _ => lanes.iter().find(|l| l.holds(call)),
    };
    let mut spoke = false;
    let mut spin = IdleSpin::default();
    let lost = loop {
        // With the rest of the pool quiet, the next reply is worth polling
        // for, if replies come that soon: it spares a wake-up of this
        // thread on each call. With other calls in flight, the cores are
        // better left to them.
        let wait = std::time::Instant::now();
        if books.is_quiet() {
            platform::spin_until_readable(replies, spin.budget());
        }
        let frame = read_frame::<_, FromWorker>(replies, buf);
        spin.waited(wait.elapsed());
        match frame {
            Ok(Some(FromWorker::Done { id: call, outcomes })) => {
                spoke = false;
                let lane = lane_of(call).unwrap_or(shared);
                if let Some(lost) = lane.deliver(books, call, outcomes) {
                    break Some(lost);
                }
            }
            // A worker being killed gets nothing more: what it asked for on
            // its way out would be lost with it.
            Ok(Some(FromWorker::Sync { .. } | FromWorker::CallSync { .. }))
                if shared.expected_exit.load(Ordering::SeqCst) => {}
            Ok(Some(FromWorker::Sync { seq, op })) => {
                spoke = true;
                dispatch(shared, seq, op);
            }
            // A call's streams: frames of a call no longer waited for are
            // dropped.
            Ok(Some(FromWorker::Returned {
                id,
                outcome,
                streams,
            })) => to_streams(shared, id, |s| s.returned(outcome, streams)),
            Ok(Some(FromWorker::Items {
                call,
                stream,
                chunk,
            })) => to_streams(shared, call, |s| s.items(stream, chunk)),
            Ok(Some(FromWorker::End {
                call,
                stream,
                error,
            })) => to_streams(shared, call, |s| s.end(stream, error)),
            Ok(Some(FromWorker::Credit {
                call,
                stream,
                bytes,
            })) => to_streams(shared, call, |s| s.credit(stream, bytes)),
            Ok(Some(FromWorker::CallSync { call, seq, op })) => {
                spoke = true;
                // A call abandoned still holds its lane. What no lane holds
                // (an instance being made ahead) goes to the worker itself,
                // which answers it, if only with an error.
                dispatch(lane_of(call).unwrap_or(shared), seq, op);
            }
            Ok(Some(other)) => break Some(format!("unexpected frame {other:?}")),
            Ok(None) => break None,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                break Some(format!("malformed frame: {e}"));
            }
            Err(_) => break None,
        }
    };
    (lost, spoke)
}

/// Hands a frame of call `call`'s streams to them, if it is still waited
/// for.
fn to_streams(shared: &Shared, call: u64, f: impl FnOnce(&Arc<CallStreams>)) {
    if let Some(streams) = shared.streams.get(call) {
        f(&streams);
    }
}

/// Hands a guest's operation to what serves it: its host functions, the
/// outbound HTTP, or the registry.
fn dispatch(shared: &Shared, seq: u64, op: GuestOp) {
    match op {
        GuestOp::Host {
            function,
            args,
            returns,
        } => shared
            .host
            .dispatch(seq, function, args.into_vec(), returns),
        GuestOp::Http(req) => shared.host.http(seq, req),
        op => shared.guest.submit(seq, op),
    }
}

/// Reaps the process, marking it reaped under the lock `kill` takes.
fn reap(shared: &Shared, child: &mut platform::WorkerProcess) -> Option<ExitStatus> {
    platform::wait_exit_without_reaping(child.id());
    let mut reaped = shared.reaped.locked();
    let status = child.wait().ok();
    *reaped = true;
    status
}
