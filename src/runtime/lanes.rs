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
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::oneshot;
use wasmtime::Engine;
use wasmtime::component::Linker;

use super::answers::{Answers, IdleSpin, Inbox};
use super::call::{
    Item, Leftover, Ready, Runs, StartFailed, execute_resolved, instantiate, resolve, store_options,
};
use super::executor::{Executor, encode_result, within_limit};
use super::interrupts::{Stops, cancelled, timed_out};
use super::loaded::Loaded;
use super::meter::Meter;
use super::port::{OpSender, Port};
use super::store::{State, new_store};
use super::transmit::{Pipes, Transmits};
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
    /// Wakes the call's task once its function has returned, while its
    /// streams still run.
    stopped: tokio::sync::Notify,
    /// When it times out.
    deadline: Option<Instant>,
}

impl CallStop {
    /// A running call's, woken by `wake`, timing out at `deadline`.
    fn new(wake: Option<oneshot::Sender<()>>, deadline: Option<Instant>) -> CallStop {
        CallStop {
            why: Arc::new(AtomicU8::new(RUNNING)),
            wake: Mutex::new(wake),
            stopped: tokio::sync::Notify::new(),
            deadline,
        }
    }
}

impl Stops for CallStop {
    fn is_stopped(&self) -> bool {
        self.why.load(Ordering::SeqCst) != RUNNING
    }

    fn interrupted(&self, _id: u64, options: &CallOptions) -> Option<WireError> {
        match self.why.load(Ordering::SeqCst) {
            TIMED_OUT => Some(timed_out(options.timeout)),
            CANCELLED => Some(cancelled()),
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
    /// The request the executor runs alone, whose operations its port
    /// tags.
    alone: Arc<AtomicU64>,
    /// The streams and futures of the calls in flight.
    pipes: Arc<Pipes>,
}

impl Lanes {
    /// `alone` is read by the executor's port.
    pub(crate) fn new(engine: Engine, answers: Arc<Answers>, alone: Arc<AtomicU64>) -> Lanes {
        Lanes {
            engine,
            answers,
            alone,
            calls: Mutex::default(),
            early: Mutex::default(),
            blocking: Mutex::new(false),
            deadlines: Mutex::default(),
            deadline_set: Condvar::new(),
            closed: AtomicBool::new(false),
            pipes: Arc::default(),
        }
    }

    /// Call `id` starts: returns how it is stopped and what wakes its task.
    fn begin(&self, id: u64, timeout: Option<Duration>) -> (Arc<CallStop>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let deadline = timeout.map(|t| Instant::now() + t);
        let stop = Arc::new(CallStop::new(Some(tx), deadline));
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
        stop.stopped.notify_one();
        {
            let blocking = self.blocking.locked();
            if !*blocking {
                self.engine.increment_epoch();
            }
        }
        self.answers.wake();
    }

    /// Runs `f`, request `id` that the executor runs on its own: see
    /// `blocking`.
    fn alone<R>(&self, id: u64, f: impl FnOnce() -> R) -> R {
        self.alone.store(id, Ordering::SeqCst);
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

/// What the main loop waited for.
enum Next {
    Request(Box<CallRequest>),
    /// The host closed the request pipe.
    Closed,
    /// The last call in flight ended.
    Idle,
}

/// The calls' tasks in flight.
#[derive(Default)]
struct Tasks {
    running: std::cell::Cell<usize>,
    /// Told when the last one ends.
    ended: tokio::sync::Notify,
}

impl Tasks {
    /// Counts a task until the guard drops.
    fn enter(self: &Rc<Self>) -> impl Drop + use<> {
        struct Running(Rc<Tasks>);
        impl Drop for Running {
            fn drop(&mut self) {
                let n = self.0.running.get() - 1;
                self.0.running.set(n);
                if n == 0 {
                    self.0.ended.notify_one();
                }
            }
        }
        self.running.set(self.running.get() + 1);
        Running(self.clone())
    }

    /// Resolves once no task runs.
    async fn all_ended(&self) {
        while self.running.get() > 0 {
            self.ended.notified().await;
        }
    }
}

/// How a port made ahead, with its instance, is given to the call that
/// takes it: the call's id, for its operations, and how it is stopped.
struct Bound {
    call: AtomicU64,
    stop: Mutex<Arc<CallStop>>,
}

impl Bound {
    fn bind(&self, call: u64, stop: Arc<CallStop>) {
        self.call.store(call, Ordering::SeqCst);
        *self.stop.locked() = stop;
    }

    fn current(&self) -> Arc<CallStop> {
        self.stop.locked().clone()
    }
}

impl Stops for Bound {
    fn is_stopped(&self) -> bool {
        self.current().is_stopped()
    }

    fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError> {
        self.current().interrupted(id, options)
    }

    fn arm(&self, store: &mut wasmtime::Store<State>) {
        self.current().arm(store);
    }
}

/// An instance made ahead for the next call of its job, with its port.
struct Ahead {
    key: String,
    ready: Ready,
    port: Arc<Port>,
    bound: Arc<Bound>,
}

/// What the calls' tasks share, on the main thread.
struct Shared {
    engine: Engine,
    linker: Linker<State>,
    jobs: RefCell<HashMap<String, Loaded>>,
    /// One instance made ahead, as the executor keeps one: the next call
    /// of its job with the same options only enters the guest.
    ahead: RefCell<Option<Ahead>>,
    /// The executor's port, whose numbers the calls' ports share.
    port: Arc<Port>,
    replies: Arc<Replies>,
    lanes: Arc<Lanes>,
}

impl Shared {
    /// A port for a call's store: its operations are tagged with the call
    /// it is bound to.
    fn port(&self) -> (Arc<Port>, Arc<Bound>) {
        let bound = Arc::new(Bound {
            // No call's, until one takes it: an operation of its guest's
            // start goes to the worker itself, and is answered.
            call: AtomicU64::new(u64::MAX),
            stop: Mutex::new(Arc::new(CallStop::new(None, None))),
        });
        let tag = bound.clone();
        let replies = self.replies.clone();
        let send: OpSender = Box::new(move |seq, op| {
            let call = tag.call.load(Ordering::SeqCst);
            replies.write(&FromWorker::CallSync { call, seq, op })
        });
        (Arc::new(self.port.for_call(send, bound.clone())), bound)
    }

    /// The instance made ahead, if it is of job `key` with `shape`; one of
    /// another is dropped, freeing its slot.
    fn take_ahead(&self, key: &str, shape: &CallOptions) -> Option<Ahead> {
        let ahead = self.ahead.borrow_mut().take()?;
        (ahead.key == key && ahead.ready.options == *shape).then_some(ahead)
    }

    /// Instantiates job `key` with `shape` ahead of its next call, unless
    /// an instance is made ahead already. A failure is left for that call
    /// to meet.
    async fn instantiate_ahead(&self, key: &str, shape: CallOptions) {
        if self.ahead.borrow().is_some() {
            return;
        }
        let Some(pre) = self.jobs.borrow().get(key).map(|l| l.pre.clone()) else {
            return;
        };
        let (port, bound) = self.port();
        let Ok((mut store, stdout, stderr, tail)) = new_store(&self.engine, &port, &shape) else {
            return;
        };
        // Held, so that only a stop's epoch bump ends it.
        let (_keep, wake) = oneshot::channel();
        let Some(Ok(instance)) = instantiate(&mut store, &pre, wake).await else {
            return;
        };
        let mut ahead = self.ahead.borrow_mut();
        if ahead.is_none() {
            *ahead = Some(Ahead {
                key: key.to_string(),
                ready: Ready {
                    options: shape,
                    store,
                    instance,
                    stdout,
                    stderr,
                    tail,
                },
                port,
                bound,
            });
        }
    }

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
    let pipes = lanes.pipes.clone();
    std::thread::Builder::new()
        .name("wasmpool-requests".into())
        .spawn(move || {
            // It does not poll: with the main thread polling for what it
            // hands over, two threads polling on two cores cost the host
            // its own (measured: the round trip took twice as long).
            let mut buf = Vec::new();
            loop {
                match read_frame::<_, ToWorker>(&*requests, &mut buf) {
                    Ok(Some(ToWorker::Call(req))) => {
                        if tx.send(req).is_err() {
                            return;
                        }
                    }
                    Ok(Some(ToWorker::Answer { seq, answer })) => inbox.post(seq, answer),
                    Ok(Some(ToWorker::Items {
                        call,
                        stream,
                        chunk,
                    })) => pipes.items(call, stream, chunk),
                    Ok(Some(ToWorker::End {
                        call,
                        stream,
                        error,
                    })) => pipes.end(call, stream, error),
                    Ok(Some(ToWorker::Credit {
                        call,
                        stream,
                        bytes,
                    })) => pipes.credit(call, stream, bytes),
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
    let tasks = Rc::new(Tasks::default());
    let cx = Rc::new(Shared {
        engine: executor.engine().clone(),
        linker: executor.linker().clone(),
        jobs: RefCell::default(),
        ahead: RefCell::default(),
        port: executor.port.clone(),
        replies,
        lanes: lanes.clone(),
    });
    let local = tokio::task::LocalSet::new();
    let mut spin = IdleSpin::default();
    let served = loop {
        // With no call in flight, the next request is polled for a while
        // (it is handed over by the reader thread), then waited for; with
        // calls in flight, their tasks run until a request comes, or the
        // last of them ends.
        let idle = Instant::now();
        let mut next = None;
        if tasks.running.get() == 0 {
            let budget = spin.budget();
            loop {
                match rx.try_recv() {
                    Ok(req) => next = Some(Next::Request(Box::new(req))),
                    Err(TryRecvError::Disconnected) => next = Some(Next::Closed),
                    Err(TryRecvError::Empty) if idle.elapsed() < budget => {
                        std::hint::spin_loop();
                        continue;
                    }
                    Err(TryRecvError::Empty) => {}
                }
                break;
            }
        }
        let next = match next {
            Some(next) => next,
            None if tasks.running.get() == 0 => executor
                .runtime
                .block_on(rx.recv())
                .map_or(Next::Closed, |r| Next::Request(Box::new(r))),
            None => executor.runtime.block_on(local.run_until(async {
                tokio::select! {
                    req = rx.recv() => req.map_or(Next::Closed, |r| Next::Request(Box::new(r))),
                    () = tasks.all_ended() => Next::Idle,
                }
            })),
        };
        let req = match next {
            Next::Request(req) => *req,
            Next::Closed => break Ok(()),
            // The last call ended: back to polling.
            Next::Idle => continue,
        };
        spin.waited(idle.elapsed());
        if runs_alone(&req) {
            let id = req.id;
            let sent = lanes.alone(id, || executor.run(req, |outcomes| cx.reply(id, outcomes)));
            if let Err(e) = sent {
                break Err(e);
            }
        } else {
            let running = tasks.enter();
            let cx = cx.clone();
            local.spawn_local(async move {
                call(cx, req).await;
                drop(running);
            });
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
    let shape = store_options(&options);
    let (port, bound, ready) = match cx.take_ahead(&artifact.key, &shape) {
        Some(a) => (a.port, a.bound, Some(a.ready)),
        None => {
            let (port, bound) = cx.port();
            (port, bound, None)
        }
    };
    bound.bind(id, stop.clone());
    let item = Item {
        id,
        artifact: &artifact,
        export: &export,
        args,
        options: &options,
    };
    let mut transmits = Transmits::new(id, cx.lanes.pipes.clone(), cx.replies.clone());
    let resolved = {
        let mut jobs = cx.jobs.borrow_mut();
        resolve(&cx.engine, &cx.linker, &mut jobs, &item, &mut transmits)
    };
    let (mut outcome, mut left) = match resolved {
        Ok(resolved) => {
            let runs = Runs {
                engine: &cx.engine,
                port: &port,
                stops: &*stop,
            };
            execute_resolved(
                runs,
                item,
                resolved,
                ready,
                wake,
                &mut report,
                &mut transmits,
            )
            .await
        }
        Err(StartFailed::Call(e) | StartFailed::Load(e)) => (Err(e), Leftover::Nothing),
    };
    // A passed stream's items that did not fit failed the call.
    if let (Err(_), Some(e)) = (&outcome, transmits.failure()) {
        outcome = Err(e);
    }
    let mut outcome = outcome.and_then(|v| {
        let mut results_at = RESULTS_AT;
        within_limit(encode_result(None, &v, &mut results_at), options.max_result)
    });
    if let Leftover::Instance(ready) = &mut left {
        match &outcome {
            Ok(_) if transmits.returned_any() || transmits.any_open() => {
                let streamed = stream(&cx, &mut transmits, ready, &stop, &item, outcome, &report);
                outcome = streamed.await;
                if outcome.is_err() {
                    // Its streams end with its error before its end is
                    // told.
                    left = Leftover::Nothing;
                }
            }
            Ok(_) => {}
            Err(_) => transmits.close_results(&mut ready.store),
        }
    }
    port.item_ended();
    cx.lanes.end(id);
    meter.stop(&mut report.measured);
    report.measured.bytes_in = args.len() as u64;
    report.measured.bytes_out = outcome.as_ref().map_or(0, Payload::len);
    // A host that cannot be written to is gone: the main loop ends when
    // the request pipe does.
    let _ = cx.reply(id, vec![(outcome, report)]);
    // The store goes after the reply, off the caller's path, and the next
    // call's instance is made.
    drop(left);
    drop(transmits);
    cx.instantiate_ahead(&artifact.key, shape).await;
}

/// The streams and futures of a call that has returned `outcome`: sends
/// the host the result, then runs the call's store until every stream
/// has ended on both sides, or the call is stopped, or its guest fails.
/// What the call's [`FromWorker::Done`] then says: its end.
async fn stream(
    cx: &Shared,
    transmits: &mut Transmits,
    ready: &mut Ready,
    stop: &CallStop,
    item: &Item<'_>,
    outcome: Result<Payload, WireError>,
    report: &Report,
) -> Result<Payload, WireError> {
    let id = item.id;
    // The result first: the streams' items follow it. Their pipes are
    // open before it goes, for the host's answers to find.
    transmits.open_results();
    if cx
        .replies
        .write(&FromWorker::Returned {
            id,
            outcome: (outcome, report.clone()),
            streams: transmits.returned_count(),
        })
        .is_err()
    {
        return Err(cancelled());
    }
    if let Err(e) = transmits.read_results(&mut ready.store) {
        transmits.close_results(&mut ready.store);
        return Err(WireError::new(
            crate::error::ErrorKind::Unsupported,
            format!("the result's streams cannot be read: {e:#}"),
        ));
    }
    let ended = if stop.is_stopped() {
        Err(None)
    } else {
        let store = &mut ready.store;
        let all_ended = store.run_concurrent(async |_| transmits.all_ended().await);
        tokio::select! {
            biased;
            () = stop.stopped.notified() => Err(None),
            r = all_ended => r.map_err(Some),
        }
    };
    let end = match ended {
        Ok(()) => transmits.failure().map_or(Ok(()), Err),
        Err(e) => Err(super::call::failure(
            e,
            &ready.store,
            &ready.tail,
            stop,
            id,
            item.options,
        )),
    };
    match end {
        Ok(()) => Ok(Payload::Inline(serde_bytes::ByteBuf::new())),
        Err(e) => {
            // The streams still open end with the call's error, as the
            // store drops them.
            transmits.fail(e.clone());
            Err(e)
        }
    }
}
