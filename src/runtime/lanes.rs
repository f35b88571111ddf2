//! A worker process that runs several calls at once: one whose engine runs
//! async components, started with more than one lane (see
//! [`PoolBuilder::async_calls`](crate::PoolBuilder::async_calls)).
//!
//! Each plain call gets a `Store` and an instance of its own, as everywhere
//! else, and runs as a task of one current-thread runtime: while one call's
//! guest awaits (a host function, `wait-for`, a stream), the others run.
//! So calls stay isolated (a trap fails its own store only), and a call is
//! stopped the component model's way: its task and its `Store` are dropped,
//! which drops the guest's tasks and any host future it was awaiting. The
//! worker is neither killed nor interrupted, and its other calls go on.
//!
//! A guest that never awaits cannot be dropped while it runs: the stop then
//! bumps the engine's epoch, and each running store's epoch callback decides
//! for itself. The stopped call traps; any other yields to the runtime, so
//! that the stopped one is dropped, and goes on after.
//!
//! Threads:
//!
//! - the main thread drives the calls' tasks, and runs the requests that
//!   need the executor whole (a session's, a batch, one carrying releases)
//!   on its [`Executor`], while the tasks wait;
//! - `wasmpool-requests` reads the request pipe: calls go to the main
//!   thread, answers to the guests' operations to the [`Inbox`];
//! - `wasmpool-lanes` stops calls at their timeouts;
//! - `wasmpool-control` (the worker's) stops calls the host cancels.

use crate::locks::Locked as _;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, PipeReader, PipeWriter};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;
use wasmtime::Engine;
use wasmtime::component::Linker;

use super::answers::{Answers, Inbox};
use super::call::{Item, Leftover, Runs, StartFailed, execute_resolved, resolve};
use super::executor::{Executor, encode_result, within_limit};
use super::interrupts::{Stops, timed_out};
use super::loaded::Loaded;
use super::meter::Meter;
use super::port::{OpSender, Port};
use super::store::State;
use crate::error::ErrorKind;
use crate::values;
use crate::wire::{
    CallOptions, CallRequest, FromWorker, Payload, RESULTS_AT, Report, ToWorker, WireError,
    read_frame, write_frame,
};

/// How many cancels of calls not seen yet are remembered: a cancel can
/// overtake its call, which comes on another channel.
const EARLY_CANCELS: usize = 64;

/// The reply pipe, written by the main thread's calls and executor.
pub(crate) struct Replies(Mutex<PipeWriter>);

impl Replies {
    pub(crate) fn new(pipe: PipeWriter) -> Replies {
        Replies(Mutex::new(pipe))
    }

    /// Writes one frame whole.
    pub(crate) fn write<T: Serialize>(&self, msg: &T) -> io::Result<()> {
        write_frame(&*self.0.locked(), msg)
    }
}

/// A call's state: running, or why it was stopped.
const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// How one of the calls a worker runs at once is stopped.
pub(crate) struct CallStop {
    why: Arc<AtomicU8>,
    /// Wakes the call's task, to drop it.
    wake: Mutex<Option<oneshot::Sender<()>>>,
    /// When it times out.
    deadline: Option<Instant>,
}

impl Stops for CallStop {
    fn is_stopped(&self) -> bool {
        self.why.load(Ordering::SeqCst) != RUNNING
    }

    fn interrupted(&self, _id: u64, options: &CallOptions) -> Option<WireError> {
        match self.why.load(Ordering::SeqCst) {
            TIMED_OUT => Some(timed_out(options.timeout)),
            CANCELLED => Some(WireError::new(
                ErrorKind::Cancelled,
                "the call was cancelled",
            )),
            _ => None,
        }
    }

    /// An epoch bump traps this call only if it was stopped; any other
    /// running guest yields, so that the stopped call's task is dropped.
    fn arm(&self, store: &mut wasmtime::Store<State>) {
        let why = self.why.clone();
        store.epoch_deadline_callback(move |_| {
            if why.load(Ordering::SeqCst) == RUNNING {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            } else {
                Err(wasmtime::Trap::Interrupt.into())
            }
        });
    }
}

/// The calls a worker runs at once, as the threads that stop them see
/// them.
pub(crate) struct Lanes {
    engine: Engine,
    /// Where guests blocked in a sync import wait: woken on a stop.
    answers: Arc<Answers>,
    calls: Mutex<HashMap<u64, Arc<CallStop>>>,
    /// Cancels of calls not seen yet, newest last.
    early: Mutex<VecDeque<u64>>,
    /// Set while the executor runs a request on its own: its store traps
    /// at any epoch bump, and no call of these can be in wasm meanwhile,
    /// so a stop then bumps nothing (its task is dropped when the main
    /// thread comes back to the tasks).
    blocking: Mutex<bool>,
    /// The calls' deadlines, soonest first.
    deadlines: Mutex<BTreeSet<(Instant, u64)>>,
    deadline_set: Condvar,
    closed: AtomicBool,
}

impl Lanes {
    pub(crate) fn new(engine: Engine, answers: Arc<Answers>) -> Lanes {
        Lanes {
            engine,
            answers,
            calls: Mutex::default(),
            early: Mutex::default(),
            blocking: Mutex::new(false),
            deadlines: Mutex::default(),
            deadline_set: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Call `id` starts: returns how it is stopped and what wakes its task.
    fn begin(&self, id: u64, timeout: Option<Duration>) -> (Arc<CallStop>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let deadline = timeout.map(|t| Instant::now() + t);
        let stop = Arc::new(CallStop {
            why: Arc::new(AtomicU8::new(RUNNING)),
            wake: Mutex::new(Some(tx)),
            deadline,
        });
        {
            let mut early = self.early.locked();
            if let Some(i) = early.iter().position(|&e| e == id) {
                early.remove(i);
                stop.why.store(CANCELLED, Ordering::SeqCst);
            }
        }
        self.calls.locked().insert(id, stop.clone());
        if let Some(at) = deadline {
            self.deadlines.locked().insert((at, id));
            self.deadline_set.notify_one();
        }
        (stop, rx)
    }

    /// Call `id` has ended.
    fn end(&self, id: u64) {
        let stop = self.calls.locked().remove(&id);
        if let Some(at) = stop.and_then(|s| s.deadline) {
            self.deadlines.locked().remove(&(at, id));
        }
    }

    /// Cancels call `id`, if it is one of these; returns whether it was.
    /// A call not seen yet is remembered, in case it is one.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        let stop = self.calls.locked().get(&id).cloned();
        match stop {
            Some(stop) => {
                self.stop(&stop, CANCELLED);
                true
            }
            None => {
                let mut early = self.early.locked();
                if early.len() == EARLY_CANCELS {
                    early.pop_front();
                }
                early.push_back(id);
                false
            }
        }
    }

    /// Stops a call: wakes its task (to drop it), and its guest wherever it
    /// is (in wasm, through the epoch; in a sync import, through the
    /// answers). The first reason given is the one it keeps.
    fn stop(&self, stop: &CallStop, why: u8) {
        if stop
            .why
            .compare_exchange(RUNNING, why, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if let Some(tx) = stop.wake.locked().take() {
            let _ = tx.send(());
        }
        {
            let blocking = self.blocking.locked();
            if !*blocking {
                self.engine.increment_epoch();
            }
        }
        self.answers.wake();
    }

    /// Runs `f`, a request the executor runs on its own: see `blocking`.
    fn alone<R>(&self, f: impl FnOnce() -> R) -> R {
        *self.blocking.locked() = true;
        let r = f();
        *self.blocking.locked() = false;
        r
    }

    /// The `wasmpool-lanes` thread: stops each call at its deadline; exits
    /// once the worker closes the lanes.
    pub(crate) fn timer_loop(&self) {
        let mut deadlines = self.deadlines.locked();
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            let next = deadlines.first().copied();
            deadlines = match next {
                None => crate::locks::unpoisoned(self.deadline_set.wait(deadlines)),
                Some((at, id)) if at <= now => {
                    deadlines.pop_first();
                    drop(deadlines);
                    let stop = self.calls.locked().get(&id).cloned();
                    if let Some(stop) = stop {
                        self.stop(&stop, TIMED_OUT);
                    }
                    self.deadlines.locked()
                }
                Some((at, _)) => {
                    crate::locks::unpoisoned(self.deadline_set.wait_timeout(deadlines, at - now)).0
                }
            };
        }
    }

    /// Ends the timer thread.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _guard = self.deadlines.locked();
        self.deadline_set.notify_one();
    }
}

/// What the calls' tasks share, on the main thread.
struct Shared {
    engine: Engine,
    linker: Linker<State>,
    jobs: RefCell<HashMap<String, Loaded>>,
    /// The executor's port, whose numbers the calls' ports share.
    port: Arc<Port>,
    replies: Arc<Replies>,
    lanes: Arc<Lanes>,
}

impl Shared {
    /// Sends the outcomes of request `id`. A host that cannot be written
    /// to is gone, and the request pipe's end says so to the main loop.
    fn reply(&self, id: u64, outcomes: Vec<crate::wire::WireOutcome>) -> io::Result<()> {
        self.replies.write(&FromWorker::Done { id, outcomes })
    }
}

/// Serves calls until the host closes the request pipe: plain calls side
/// by side, each in a task; the rest one at a time on `executor`.
pub(crate) fn serve(
    mut executor: Executor,
    lanes: Arc<Lanes>,
    requests: Arc<PipeReader>,
    inbox: Arc<Inbox>,
    replies: Arc<Replies>,
) -> io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CallRequest>();
    std::thread::Builder::new()
        .name("wasmpool-requests".into())
        .spawn(move || {
            let mut buf = Vec::new();
            loop {
                match read_frame::<_, ToWorker>(&*requests, &mut buf) {
                    Ok(Some(ToWorker::Call(req))) => {
                        if tx.send(req).is_err() {
                            return;
                        }
                    }
                    Ok(Some(ToWorker::Answer { seq, answer })) => inbox.post(seq, answer),
                    // The host is gone, or broke the protocol: the main
                    // loop ends once the channel closes.
                    Ok(None) | Err(_) => return,
                }
            }
        })?;
    let timer = lanes.clone();
    std::thread::Builder::new()
        .name("wasmpool-lanes".into())
        .spawn(move || timer.timer_loop())?;
    let cx = Rc::new(Shared {
        engine: executor.engine().clone(),
        linker: executor.linker().clone(),
        jobs: RefCell::default(),
        port: executor.port.clone(),
        replies,
        lanes: lanes.clone(),
    });
    let local = tokio::task::LocalSet::new();
    let served = loop {
        let next = executor.runtime.block_on(local.run_until(rx.recv()));
        let Some(req) = next else { break Ok(()) };
        if runs_alone(&req) {
            let id = req.id;
            let sent = lanes.alone(|| executor.run(req, |outcomes| cx.reply(id, outcomes)));
            if let Err(e) = sent {
                break Err(e);
            }
        } else {
            local.spawn_local(call(cx.clone(), req));
        }
    };
    lanes.close();
    served
}

/// Whether a request needs the executor whole: a session's (its instance
/// is the executor's), a batch (its items run in turn), one carrying what
/// the host let go of, and a test's.
fn runs_alone(req: &CallRequest) -> bool {
    #[cfg(feature = "test-hooks")]
    if req.options.test_hook.is_some() {
        return true;
    }
    req.session.is_some()
        || req.items.len() != 1
        || !req.pending.is_empty()
        || !matches!(req.items.first(), Some(Payload::Inline(_)))
}

/// One call, as a task of its own: a store and an instance of its own,
/// stopped by dropping them.
async fn call(cx: Rc<Shared>, req: CallRequest) {
    let CallRequest {
        id,
        artifact,
        export,
        items,
        options,
        ..
    } = req;
    let Some(Payload::Inline(args)) = items.first() else {
        unreachable!("only calls with one inline item run side by side")
    };
    let (stop, wake) = cx.lanes.begin(id, options.timeout);
    // The thread's CPU time is every call's: a call side by side reports
    // its wall time only.
    let meter = Meter::start(false);
    let mut report = Report::default();
    let replies = cx.replies.clone();
    let send: OpSender =
        Box::new(move |seq, op| replies.write(&FromWorker::CallSync { call: id, seq, op }));
    let port = Arc::new(cx.port.for_call(send, stop.clone()));
    let item = Item {
        id,
        artifact: &artifact,
        export: &export,
        args,
        options: &options,
    };
    let mut handles = values::NoHandles;
    let resolved = {
        let mut jobs = cx.jobs.borrow_mut();
        resolve(&cx.engine, &cx.linker, &mut jobs, &item, &mut handles)
    };
    let (outcome, left) = match resolved {
        Ok(resolved) => {
            let runs = Runs {
                engine: &cx.engine,
                port: &port,
                stops: &*stop,
            };
            execute_resolved(runs, item, resolved, None, wake, &mut report, &mut handles).await
        }
        Err(StartFailed::Call(e) | StartFailed::Load(e)) => (Err(e), Leftover::Nothing),
    };
    port.item_ended();
    cx.lanes.end(id);
    let outcome = outcome.and_then(|v| {
        let mut results_at = RESULTS_AT;
        within_limit(encode_result(None, &v, &mut results_at), options.max_result)
    });
    meter.stop(&mut report.measured);
    report.measured.bytes_in = args.len() as u64;
    report.measured.bytes_out = outcome.as_ref().map_or(0, Payload::len);
    // A host that cannot be written to is gone: the main loop ends when
    // the request pipe does.
    let _ = cx.reply(id, vec![(outcome, report)]);
    // The store goes after the reply, off the caller's path.
    drop(left);
}
