//! Running calls: the engine, the WASI sandbox of each call, instances
//! (fresh or reused), interrupts and timeouts. Shared by both kinds of
//! worker: a worker process ([`crate::child`]) and an in-process worker
//! thread ([`crate::worker`]).
//!
//! An [`Executor`] serves one call at a time. Keeping the latency path
//! short is its main concern:
//!
//! - it answers before it tears the call's instance down;
//! - after answering, it instantiates the next instance of the same job
//!   with the same options ahead of time, so that the next call only has to
//!   enter the guest. Every call still gets an instance of its own, unless
//!   the pool opted in to reuse;
//! - a `wasmpool-timer` thread enforces timeouts, so the call itself arms
//!   no timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use wasmtime::component::{
    ComponentExportIndex, Instance, InstancePre, Linker, ResourceTable, Type, Val,
};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::engine::EngineSettings;
use crate::error::{ErrorKind, Limit, TrapCode, WireError};
use crate::imports::{Answers, Port};
use crate::protocol::{Artifact, CallOptions, CallRequest, ExportPath, Outcome, Report};
use crate::stdio::{Fd, GuestOutput};
use crate::value::{self, Value};
use crate::wit;

/// How much of a call's stderr is kept to find a panic message.
const STDERR_TAIL: usize = 8 * 1024;

/// No call is running.
const NO_CALL: u64 = u64::MAX;

/// How long a worker polls for its next request, after answering one,
/// before it sleeps. Waking a sleeping thread costs 5–15 µs on a virtual
/// machine (an inter-processor interrupt), on each side of each hop; a
/// caller that sends its next call at once skips that, for at most this
/// much CPU per call.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// An instance is being prepared ahead of the next call.
const PREPARING: u64 = u64::MAX - 1;

/// How an executor's calls are interrupted, from other threads.
pub(crate) struct Interrupts {
    engine: Engine,
    /// The id of the running call, [`NO_CALL`] or [`PREPARING`].
    current: AtomicU64,
    /// The id of the last call a cancel was asked for.
    cancelled: AtomicU64,
    /// Counts [`Interrupts::begin`]s: the number of the item running. The
    /// calls of a batched request share their id, but not this.
    item: AtomicU64,
    /// The number of the last item that ran past its timeout.
    timed_out: AtomicU64,
    /// Wakes the running call's future on cancel or timeout.
    wake: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The running item's number and deadline, for the timer thread.
    deadline: Mutex<Option<(u64, Instant)>>,
    deadline_set: Condvar,
    /// The executor is gone: the timer thread exits.
    closed: AtomicBool,
    /// Where a guest blocked in a `wasmpool:sync` import waits.
    answers: Arc<Answers>,
}

impl Interrupts {
    /// Cancels call `id`: the guest traps at its next epoch check, or its
    /// blocked host call is dropped. The flag is raised even when the call
    /// has not started yet (a cancel can overtake its call);
    /// [`Interrupts::interrupted`] reads it before the guest runs. An
    /// instance being prepared for a next call is interrupted too, so that
    /// a guest whose start-up never ends cannot hold the worker.
    pub(crate) fn cancel(&self, id: u64) {
        self.cancelled.store(id, Ordering::SeqCst);
        let current = self.current.load(Ordering::SeqCst);
        if current == id || current == PREPARING {
            self.stop_running();
        }
    }

    /// Interrupts whatever runs now, whichever call it is.
    pub(crate) fn cancel_current(&self) {
        let id = self.current.load(Ordering::SeqCst);
        if id != NO_CALL && id != PREPARING {
            self.cancel(id);
        }
    }

    /// Times out item `item`, if it is still the one running.
    fn time_out(&self, item: u64) {
        self.timed_out.store(item, Ordering::SeqCst);
        if self.item.load(Ordering::SeqCst) == item
            && self.current.load(Ordering::SeqCst) != NO_CALL
        {
            self.stop_running();
        }
    }

    /// Bumps the epoch for a guest in wasm and wakes the running future for
    /// a guest blocked in a host call.
    fn stop_running(&self) {
        self.engine.increment_epoch();
        if let Some(tx) = self.wake.lock().expect("wake lock").take() {
            let _ = tx.send(());
        }
        self.answers.wake();
    }

    /// Whether the running item was cancelled or timed out.
    pub(crate) fn is_stopped(&self) -> bool {
        let current = self.current.load(Ordering::SeqCst);
        self.timed_out.load(Ordering::SeqCst) == self.item.load(Ordering::SeqCst)
            || (current != NO_CALL
                && current != PREPARING
                && self.cancelled.load(Ordering::SeqCst) == current)
    }

    /// The error for the running item of call `id` if it timed out or the
    /// call was cancelled.
    fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError> {
        if self.timed_out.load(Ordering::SeqCst) == self.item.load(Ordering::SeqCst) {
            Some(WireError::new(
                ErrorKind::Timeout,
                format!(
                    "the call ran past its timeout of {:?}",
                    options.timeout.unwrap_or_default()
                ),
            ))
        } else if self.cancelled.load(Ordering::SeqCst) == id {
            Some(WireError::new(
                ErrorKind::Cancelled,
                "the call was cancelled",
            ))
        } else {
            None
        }
    }

    /// Marks call `id` (or [`PREPARING`]) as running, and arms its
    /// deadline. Returns the receiver its interrupt wakes.
    fn begin(
        &self,
        id: u64,
        timeout: Option<std::time::Duration>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.wake.lock().expect("wake lock") = Some(tx);
        let item = self.item.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.store(id, Ordering::SeqCst);
        if let Some(timeout) = timeout {
            *self.deadline.lock().expect("deadline lock") = Some((item, Instant::now() + timeout));
            self.deadline_set.notify_one();
        }
        rx
    }

    /// Marks the end of what [`Interrupts::begin`] started.
    fn end(&self, timed: bool) {
        self.current.store(NO_CALL, Ordering::SeqCst);
        if timed {
            self.deadline.lock().expect("deadline lock").take();
        }
        self.wake.lock().expect("wake lock").take();
    }

    /// The `wasmpool-timer` thread: interrupts the running call when its
    /// deadline passes; exits once the executor is dropped.
    fn timer_loop(&self) {
        let mut deadline = self.deadline.lock().expect("deadline lock");
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            deadline = match *deadline {
                None => self.deadline_set.wait(deadline).expect("deadline lock"),
                Some((item, at)) => {
                    let now = Instant::now();
                    if now >= at {
                        *deadline = None;
                        drop(deadline);
                        self.time_out(item);
                        self.deadline.lock().expect("deadline lock")
                    } else {
                        self.deadline_set
                            .wait_timeout(deadline, at - now)
                            .expect("deadline lock")
                            .0
                    }
                }
            };
        }
    }
}

/// Runs calls, one at a time, on the thread that owns it.
pub(crate) struct Executor {
    engine: Engine,
    linker: Linker<State>,
    runtime: tokio::runtime::Runtime,
    jobs: HashMap<String, Loaded>,
    interrupts: Arc<Interrupts>,
    reuse: bool,
    /// An instance ready for the next call: prepared ahead of time, or kept
    /// from the last call when instances are reused. At most one, since
    /// the pooling allocator has few slots.
    ready: Option<(String, Ready)>,
    /// The guest's way to the host's `wasmpool:sync` registry.
    port: Arc<Port>,
}

/// An instance waiting for a call of its job with the same options.
struct Ready {
    /// The options it was made for, without the per-call ones.
    options: CallOptions,
    store: Store<State>,
    instance: Instance,
    stdout: GuestOutput,
    stderr: GuestOutput,
    tail: Arc<Mutex<Vec<u8>>>,
}

/// The options that shape an instance's store: all but the timeout and the
/// fuel budget, which are set per call.
fn store_options(options: &CallOptions) -> CallOptions {
    CallOptions {
        timeout: None,
        fuel: None,
        ..options.clone()
    }
}

impl Executor {
    /// An executor with its own engine, and its `wasmpool-timer` thread.
    /// With `reuse`, a job's instance serves call after call until one
    /// fails.
    ///
    /// A guest's `wasmpool:sync` operations go out through `send`; their
    /// answers come from `answers`.
    pub(crate) fn new(
        settings: &EngineSettings,
        reuse: bool,
        answers: Arc<Answers>,
        send: crate::sync::OpSender,
    ) -> Result<Executor, String> {
        let engine = settings
            .worker_engine()
            .map_err(|e| format!("creating the engine: {e:#}"))?;
        let linker = make_linker(&engine).map_err(|e| format!("linking WASI: {e:#}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("creating the runtime: {e}"))?;
        let interrupts = Arc::new(Interrupts {
            engine: engine.clone(),
            current: AtomicU64::new(NO_CALL),
            cancelled: AtomicU64::new(NO_CALL),
            item: AtomicU64::new(0),
            timed_out: AtomicU64::new(NO_CALL),
            wake: Mutex::new(None),
            deadline: Mutex::new(None),
            deadline_set: Condvar::new(),
            closed: AtomicBool::new(false),
            answers: answers.clone(),
        });
        let port = Arc::new(Port::new(send, answers, interrupts.clone()));
        let timer = interrupts.clone();
        std::thread::Builder::new()
            .name("wasmpool-timer".into())
            .spawn(move || timer.timer_loop())
            .map_err(|e| format!("starting the timer thread: {e}"))?;
        Ok(Executor {
            engine,
            linker,
            runtime,
            jobs: HashMap::new(),
            interrupts,
            reuse,
            ready: None,
            port,
        })
    }

    /// The handle other threads interrupt calls with.
    pub(crate) fn interrupts(&self) -> Arc<Interrupts> {
        self.interrupts.clone()
    }

    /// Runs each call of `req` in turn and hands their outcomes to `reply`;
    /// then, off the latency path, tears the last instance down and
    /// prepares the next one.
    pub(crate) fn run<E>(
        &mut self,
        req: CallRequest,
        reply: impl FnOnce(Vec<Outcome>) -> Result<(), E>,
    ) -> Result<(), E> {
        let CallRequest {
            id,
            artifact,
            export,
            items,
            options,
        } = req;
        let key = artifact.key.clone();
        let shape = store_options(&options);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut used = Leftover::Nothing;
        for (i, args) in items.into_iter().enumerate() {
            if i > 0 {
                let ok = outcomes.last().is_some_and(|(o, _): &Outcome| o.is_ok());
                self.recycle(used, ok, &key, &shape);
            }
            let wake = self.interrupts.begin(id, options.timeout);
            let mut report = Report::default();
            let ready = match self.ready.take() {
                Some((k, r)) if k == key && r.options == shape => Some(r),
                // Frees its pool slot before this call takes one.
                _ => None,
            };
            let (outcome, left) = self.runtime.block_on(execute(
                &self.engine,
                &self.port,
                &self.linker,
                &mut self.jobs,
                Item {
                    id,
                    artifact: &artifact,
                    export: &export,
                    args: &args,
                    options: &options,
                },
                ready,
                wake,
                &self.interrupts,
                &mut report,
            ));
            self.interrupts.end(options.timeout.is_some());
            self.port.item_ended();
            let outcome = outcome.map(|v| serde_bytes::ByteBuf::from(value::encode(&v)));
            outcomes.push((outcome, report));
            used = left;
        }
        let ok = outcomes.last().is_some_and(|(o, _)| o.is_ok());
        let sent = reply(outcomes);
        // Now, with the caller served.
        self.recycle(used, ok, &key, &shape);
        sent
    }

    /// After a call: keeps its instance for the next call (reuse, and the
    /// call succeeded), or drops it and prepares a fresh one.
    fn recycle(&mut self, used: Leftover, ok: bool, key: &str, shape: &CallOptions) {
        match used {
            Leftover::Instance(r) if ok && self.reuse => self.ready = Some((key.to_string(), *r)),
            used => {
                drop(used);
                self.prepare(key, shape.clone());
            }
        }
    }

    /// Instantiates job `key` with `options` for the next call. A failure
    /// is left for that call to meet and report.
    fn prepare(&mut self, key: &str, options: CallOptions) {
        let Some(loaded) = self.jobs.get(key) else {
            return;
        };
        let pre = loaded.pre.clone();
        let wake = self.interrupts.begin(PREPARING, None);
        let made = self.runtime.block_on(async {
            let (mut store, stdout, stderr, tail) =
                new_store(&self.engine, &self.port, &options).ok()?;
            store.set_epoch_deadline(1);
            store.epoch_deadline_trap();
            if self.engine.get_consume_fuel() {
                store.set_fuel(u64::MAX).ok()?;
            }
            tokio::select! {
                biased;
                _ = wake => None,
                i = pre.instantiate_async(&mut store) => i.ok(),
            }
            .map(|instance| Ready {
                options,
                store,
                instance,
                stdout,
                stderr,
                tail,
            })
        });
        self.interrupts.end(false);
        self.ready = made.map(|r| (key.to_string(), r));
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.interrupts.closed.store(true, Ordering::SeqCst);
        let _guard = self.interrupts.deadline.lock().expect("deadline lock");
        self.interrupts.deadline_set.notify_one();
    }
}

/// The per-call store data: WASI, wasi:http (outgoing requests denied) and
/// the limits.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyHttp,
    table: ResourceTable,
    limits: Limits,
    pub(crate) port: Arc<Port>,
}

/// Enforces a call's memory limit and remembers that it did.
struct Limits {
    max_memory: Option<u64>,
    hit: Option<Limit>,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.max_memory {
            Some(max) if desired as u64 > max => {
                self.hit = Some(Limit::Memory);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Refuses every outgoing HTTP request: the sandbox has no network.
struct DenyHttp;

impl wasmtime_wasi_http::WasiHttpHooks for DenyHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

fn make_linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::imports::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// A job loaded in this worker: its instance-pre and resolved functions.
/// A job loaded in this executor: its instance-pre and resolved functions.
struct Loaded {
    component: wasmtime::component::Component,
    pre: InstancePre<State>,
    funcs: HashMap<ExportPath, Arc<Func>>,
}

struct Func {
    index: ComponentExportIndex,
    params: Vec<Type>,
    results: Vec<Type>,
    /// Set when the signature can be called through wasmtime's typed API.
    typed: Option<TypedOut>,
}

/// Functions of one `list<u8>` or `string` parameter, whose result is one
/// of these, are called through wasmtime's typed API. It copies bytes and
/// strings across with `memcpy`, where the dynamic [`Val`] API holds a
/// byte list as one `Val` per byte (about 0.1 µs per byte, both ways): for
/// a 1 MiB payload that is 1 ms against 100.
#[derive(Clone, Copy, Debug)]
enum TypedOut {
    Unit,
    Bytes,
    Str,
    Bool,
    U32,
    S32,
    U64,
    S64,
    F64,
}

/// A call's arguments: for the dynamic API, or one payload for the typed.
enum Params {
    Dynamic(Vec<Val>),
    Bytes(Vec<u8>),
    Str(String),
}

fn typed_shape(params: &[Type], results: &[Type]) -> Option<TypedOut> {
    let is_bytes = |t: &Type| matches!(t, Type::List(l) if matches!(l.ty(), Type::U8));
    match params {
        [p] if is_bytes(p) || matches!(p, Type::String) => {}
        _ => return None,
    }
    Some(match results {
        [] => TypedOut::Unit,
        [r] if is_bytes(r) => TypedOut::Bytes,
        [Type::String] => TypedOut::Str,
        [Type::Bool] => TypedOut::Bool,
        [Type::U32] => TypedOut::U32,
        [Type::S32] => TypedOut::S32,
        [Type::U64] => TypedOut::U64,
        [Type::S64] => TypedOut::S64,
        [Type::Float64] => TypedOut::F64,
        _ => return None,
    })
}

/// Calls a function with a [`TypedOut`] shape through the typed API.
async fn call_typed(
    store: &mut Store<State>,
    instance: &Instance,
    index: ComponentExportIndex,
    params: &Params,
    out: TypedOut,
) -> wasmtime::Result<Value> {
    macro_rules! call {
        ($arg:expr, $R:ty, $wrap:expr) => {{
            let f = instance.get_typed_func::<(_,), ($R,)>(&mut *store, index)?;
            let (r,) = f.call_async(&mut *store, ($arg,)).await?;
            $wrap(r)
        }};
    }
    macro_rules! by_result {
        ($arg:expr) => {
            match out {
                TypedOut::Unit => {
                    let f = instance.get_typed_func::<(_,), ()>(&mut *store, index)?;
                    f.call_async(&mut *store, ($arg,)).await?;
                    Value::Nil
                }
                TypedOut::Bytes => call!($arg, Vec<u8>, Value::Bin),
                TypedOut::Str => call!($arg, String, Value::Str),
                TypedOut::Bool => call!($arg, bool, Value::Bool),
                TypedOut::U32 => call!($arg, u32, |x: u32| Value::Int(x.into())),
                TypedOut::S32 => call!($arg, i32, |x: i32| Value::Int(x.into())),
                TypedOut::U64 => call!($arg, u64, |x: u64| Value::Int(x.into())),
                TypedOut::S64 => call!($arg, i64, |x: i64| Value::Int(x.into())),
                TypedOut::F64 => call!($arg, f64, Value::F64),
            }
        };
    }
    Ok(match params {
        Params::Bytes(b) => by_result!(b.as_slice()),
        Params::Str(s) => by_result!(s.as_str()),
        Params::Dynamic(_) => unreachable!("only typed payloads come here"),
    })
}

fn load(engine: &Engine, linker: &Linker<State>, artifact: &Artifact) -> Result<Loaded, WireError> {
    let component = crate::platform::load_artifact(engine, &artifact.path).map_err(|e| {
        WireError::new(
            ErrorKind::InvalidComponent,
            format!("loading artifact {}: {e:#}", artifact.path.display()),
        )
    })?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        WireError::new(
            ErrorKind::InvalidComponent,
            format!("the component needs imports wasmpool does not provide: {e:#}"),
        )
    })?;
    Ok(Loaded {
        component,
        pre,
        funcs: HashMap::new(),
    })
}

impl Loaded {
    fn func(&mut self, path: &ExportPath) -> Result<Arc<Func>, WireError> {
        if let Some(f) = self.funcs.get(path) {
            return Ok(f.clone());
        }
        let missing = || WireError::new(ErrorKind::NoSuchFunction, format!("no export {path}"));
        let parent = match &path.instance {
            Some(i) => Some(
                self.component
                    .get_export_index(None, i)
                    .ok_or_else(missing)?,
            ),
            None => None,
        };
        let (item, index) = self
            .component
            .get_export(parent.as_ref(), &path.func)
            .ok_or_else(missing)?;
        let wasmtime::component::types::ComponentItem::ComponentFunc(ty) = item else {
            return Err(missing());
        };
        let params: Vec<Type> = ty.params().map(|(_, t)| t).collect();
        let results: Vec<Type> = ty.results().collect();
        let f = Arc::new(Func {
            index,
            typed: typed_shape(&params, &results),
            params,
            results,
        });
        self.funcs.insert(path.clone(), f.clone());
        Ok(f)
    }
}

type NewStore = (Store<State>, GuestOutput, GuestOutput, Arc<Mutex<Vec<u8>>>);

/// A store whose WASI context grants what `options` grants, and nothing
/// else.
fn new_store(
    engine: &Engine,
    port: &Arc<Port>,
    options: &CallOptions,
) -> Result<NewStore, WireError> {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let stdout = GuestOutput::new(Fd::Stdout, options.stdout);
    let stderr = GuestOutput::new(Fd::Stderr, options.stderr).with_tail(tail.clone(), STDERR_TAIL);
    let wasi = wasi_ctx(options, &stdout, &stderr)?;
    let mut store = Store::new(
        engine,
        State {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: DenyHttp,
            table: ResourceTable::new(),
            limits: Limits {
                max_memory: options.max_memory,
                hit: None,
            },
            port: port.clone(),
        },
    );
    store.limiter(|s| &mut s.limits);
    Ok((store, stdout, stderr, tail))
}

/// Runs one call, on `ready` if given, else on a new instance. Returns what
/// it used, for the caller to keep or drop once it has answered.
/// One call of a request.
struct Item<'a> {
    id: u64,
    artifact: &'a Artifact,
    export: &'a ExportPath,
    args: &'a [u8],
    options: &'a CallOptions,
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    engine: &Engine,
    port: &Arc<Port>,
    linker: &Linker<State>,
    jobs: &mut HashMap<String, Loaded>,
    item: Item<'_>,
    ready: Option<Ready>,
    cancel: tokio::sync::oneshot::Receiver<()>,
    interrupts: &Interrupts,
    report: &mut Report,
) -> (Result<Value, WireError>, Leftover) {
    let Item {
        id,
        artifact,
        export,
        args,
        options,
    } = item;
    let loaded = match jobs.entry(artifact.key.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => match load(engine, linker, artifact) {
            Ok(l) => v.insert(l),
            Err(e) => return (Err(e), Leftover::Nothing),
        },
    };
    let func = match loaded.func(export) {
        Ok(f) => f,
        Err(e) => {
            return (
                Err(e),
                ready.map_or(Leftover::Nothing, |r| Leftover::Instance(Box::new(r))),
            );
        }
    };
    let params = match decode_args(args, &func) {
        Ok(p) => p,
        Err(e) => {
            return (
                Err(e),
                ready.map_or(Leftover::Nothing, |r| Leftover::Instance(Box::new(r))),
            );
        }
    };
    let (mut store, instance, stdout, stderr, tail) = match ready {
        Some(r) => (r.store, Some(r.instance), r.stdout, r.stderr, r.tail),
        None => match new_store(engine, port, options) {
            Ok((store, stdout, stderr, tail)) => (store, None, stdout, stderr, tail),
            Err(e) => return (Err(e), Leftover::Nothing),
        },
    };
    store.data_mut().limits.hit = None;
    tail.lock().expect("tail lock").clear();
    // Fuel counts the call, not the instantiation, which a prepared
    // instance has already done: so that the same call always burns the
    // same fuel. (Until the call, the store has all the fuel there is.)
    let fuel = if engine.get_consume_fuel() {
        let fuel = options.fuel.unwrap_or(u64::MAX);
        if let Err(e) = store.set_fuel(u64::MAX) {
            let e = WireError::new(ErrorKind::Config, format!("setting fuel: {e:#}"));
            return (Err(e), Leftover::Store(store));
        }
        Some(fuel)
    } else {
        None
    };
    // Any epoch bump from now on interrupts this call.
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    // A bump that came before the deadline was set is not seen by it, but
    // `interrupt` raises its flag before bumping, so check the flags now.
    if let Some(e) = interrupts.interrupted(id, options) {
        return (Err(e), Leftover::Store(store));
    }

    let mut results = vec![Val::Bool(false); func.results.len()];
    let pre = loaded.pre.clone();
    let outcome = {
        let call = async {
            let instance = match instance {
                Some(i) => i,
                None => pre.instantiate_async(&mut store).await?,
            };
            if let Some(fuel) = fuel {
                store.set_fuel(fuel)?;
            }
            let value = match (&params, func.typed) {
                (Params::Dynamic(params), _) => {
                    let f = instance.get_func(&mut store, func.index).ok_or_else(|| {
                        wasmtime::Error::msg(format!("export {export} is not a function"))
                    })?;
                    f.call_async(&mut store, params, &mut results).await?;
                    match (results.pop(), func.results.first()) {
                        (Some(v), Some(ty)) => wit::from_val(ty, v),
                        _ => Value::Nil,
                    }
                }
                (payload, Some(out)) => {
                    call_typed(&mut store, &instance, func.index, payload, out).await?
                }
                (_, None) => unreachable!("payloads are only decoded for typed calls"),
            };
            Ok((instance, value))
        };
        tokio::select! {
            // A wake that already fired wins before the guest is entered.
            biased;
            _ = cancel => Err(None),
            r = call => r.map_err(Some),
        }
    };
    report.fuel_consumed = fuel.and_then(|f| Some(f - store.get_fuel().ok()?));
    report.stdout = stdout.take_captured().map(serde_bytes::ByteBuf::from);
    report.stderr = stderr.take_captured().map(serde_bytes::ByteBuf::from);
    let result = match outcome {
        Ok((instance, value)) => {
            let used = Ready {
                options: store_options(options),
                store,
                instance,
                stdout,
                stderr,
                tail,
            };
            return (Ok(value), Leftover::Instance(Box::new(used)));
        }
        // Only `interrupt` sends the wake, and it raises a flag first.
        Err(None) => Err(interrupts
            .interrupted(id, options)
            .unwrap_or_else(|| WireError::new(ErrorKind::Cancelled, "the call was cancelled"))),
        Err(Some(e)) => {
            if let Some(interrupted) = interrupts.interrupted(id, options) {
                Err(interrupted)
            } else {
                let mut w = classify(e, &tail.lock().expect("tail lock"));
                if let Some(limit) = store.data().limits.hit {
                    w.kind = ErrorKind::ResourceLimit;
                    w.limit = Some(limit);
                    w.message = format!(
                        "the guest needed more than its memory limit of {} bytes ({})",
                        options.max_memory.unwrap_or_default(),
                        w.message
                    );
                }
                Err(w)
            }
        }
    };
    // A failed instance is never reused; the caller drops it after it has
    // answered.
    (result, Leftover::Store(store))
}

/// What a call leaves behind, dropped (or kept, when instances are reused)
/// after the caller has its answer.
enum Leftover {
    Nothing,
    Instance(Box<Ready>),
    Store(#[expect(dead_code, reason = "held only to be dropped after the reply")] Store<State>),
}

/// The WASI context of one call: nothing but what `options` grants.
fn wasi_ctx(
    options: &CallOptions,
    stdout: &GuestOutput,
    stderr: &GuestOutput,
) -> Result<WasiCtx, WireError> {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for (k, v) in &options.env {
        b.env(k, v);
    }
    if let Some(seed) = options.deterministic {
        b.secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(seed)))
            .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(!seed)))
            .insecure_random_seed(u128::from(seed))
            .wall_clock(FixedWallClock)
            .monotonic_clock(SteppingClock(std::sync::atomic::AtomicU64::new(0)));
    }
    for p in &options.preopens {
        let perms = if p.read_only {
            wasmtime_wasi::FsPerms::ReadOnly
        } else {
            wasmtime_wasi::FsPerms::ReadWrite
        };
        b.preopened_dir(&p.host, &p.guest, perms).map_err(|e| {
            WireError::new(
                ErrorKind::Io,
                format!("preopening {} as {}: {e:#}", p.host.display(), p.guest),
            )
        })?;
    }
    Ok(b.build())
}

fn decode_args(args: &[u8], func: &Func) -> Result<Params, WireError> {
    let types = &func.params;
    let bad = |m: String| WireError::new(ErrorKind::ArgumentMismatch, m);
    let mut items = match value::decode(args) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Nil) => Vec::new(),
        Ok(other) => {
            return Err(bad(format!(
                "args: expected a tuple with one element per parameter, got {}",
                other.describe()
            )));
        }
        Err(e) => return Err(bad(format!("args: not valid MessagePack: {e}"))),
    };
    if items.len() != types.len() {
        return Err(bad(format!(
            "args: expected {} arguments, got {}",
            types.len(),
            items.len()
        )));
    }
    if func.typed.is_some() {
        match (&items[..], &types[0]) {
            ([Value::Bin(_)], Type::List(_)) | ([Value::Str(_)], Type::String) => {
                return Ok(match items.pop() {
                    Some(Value::Bin(b)) => Params::Bytes(b),
                    Some(Value::Str(s)) => Params::Str(s),
                    _ => unreachable!("matched above"),
                });
            }
            // Anything else (a byte list sent as an array of integers, a
            // mismatch) takes the dynamic path, which also explains errors.
            _ => {}
        }
    }
    let root = wit::Path::Root("args");
    types
        .iter()
        .zip(items)
        .enumerate()
        .map(|(i, (ty, v))| wit::to_val(&wit::Path::Index(&root, i), ty, v).map_err(|m| bad(m.0)))
        .collect::<Result<_, _>>()
        .map(Params::Dynamic)
}

/// Classifies a failed call, once, here at the boundary.
fn classify(e: wasmtime::Error, stderr: &[u8]) -> WireError {
    let backtrace = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|s| !s.trim().is_empty());
    let panic_message = panic_message(stderr);
    let mut w = if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let code = TrapCode::from_wasmtime(*trap);
        let mut w = match code {
            TrapCode::StackOverflow => {
                let mut w =
                    WireError::new(ErrorKind::ResourceLimit, "wasm trap: call stack exhausted");
                w.limit = Some(Limit::Stack);
                w
            }
            TrapCode::OutOfFuel => {
                let mut w =
                    WireError::new(ErrorKind::ResourceLimit, "wasm trap: all fuel consumed");
                w.limit = Some(Limit::Fuel);
                w
            }
            TrapCode::Interrupt => WireError::new(ErrorKind::Timeout, "wasm trap: interrupt"),
            code => WireError::new(ErrorKind::Trap, format!("wasm trap: {code}")),
        };
        w.trap_code = Some(code);
        w
    } else if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        WireError::new(
            ErrorKind::Trap,
            format!("the guest called exit({})", exit.0),
        )
    } else {
        WireError::new(ErrorKind::Trap, format!("the guest failed: {e:#}"))
    };
    w.backtrace = backtrace;
    w.panic_message = panic_message;
    w
}

/// 4 KiB of bytes from a seed (splitmix64), cycled by `Deterministic`.
fn seeded_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..512)
        .flat_map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

/// A wall clock stopped at 2023-11-14T22:13:20Z.
struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1_700_000_000)
    }
}

/// A monotonic clock that advances 1 µs each time it is read.
struct SteppingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

/// Finds a Rust guest's panic message, or an allocation failure, in the
/// tail of its stderr.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    if let Some(at) = text.rfind("panicked at ") {
        let rest = &text[at..];
        // "panicked at src/lib.rs:1:2:\n<message>\nnote: ..."
        let body = rest.split_once('\n').map(|(_, b)| b).unwrap_or("");
        let body = body.split("\nnote: ").next().unwrap_or(body);
        let msg = body.trim_end();
        if !msg.is_empty() {
            return Some(msg.to_string());
        }
    }
    text.lines()
        .rev()
        .find(|l| l.starts_with("memory allocation of "))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_panic_messages() {
        let s = b"noise\nthread '<unnamed>' panicked at src/lib.rs:47:9:\nboom: it broke\nsecond line\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(s).as_deref(),
            Some("boom: it broke\nsecond line")
        );
        let s = b"memory allocation of 1048576 bytes failed\n";
        assert_eq!(
            panic_message(s).as_deref(),
            Some("memory allocation of 1048576 bytes failed")
        );
        assert_eq!(panic_message(b"just a note\n"), None);
    }
}
