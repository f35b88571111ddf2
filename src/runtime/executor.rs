//! Running calls: the engine, instances (fresh or reused), interrupts and
//! timeouts. Shared by both kinds of worker: a worker process (this
//! module's parent, [`super::serve`]) and an in-process worker thread
//! (`crate::worker::thread`).
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
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::answers::Answers;
use super::call::{Context, Item, Leftover, Ready, execute, instantiate, store_options};
use super::interrupts::{Interrupts, Running};
use super::loaded::{Loaded, load};
use super::meter::Meter;
use super::port::{OpSender, Port};
use super::sessions::{SessionItem, Sessions};
use super::store::{State, new_store, take_grown};
use crate::engine::EngineSettings;
use crate::error::ErrorKind;
use crate::idle::GuestMemory;
use crate::platform::WorkerRegion;
use crate::values;
use crate::wire::{
    CallOptions, CallRequest, INLINE_MAX, Payload, RESULTS_AT, Report, SessionOp, WireError,
    WireOutcome,
};

/// Runs calls, one at a time, on the thread that owns it.
pub(crate) struct Executor {
    pub(super) settings: EngineSettings,
    engine: Engine,
    linker: Linker<State>,
    pub(super) runtime: tokio::runtime::Runtime,
    jobs: HashMap<String, Loaded>,
    pub(super) interrupts: Arc<Interrupts>,
    reuse: bool,
    /// An instance ready for the next call: instantiated ahead of time, or kept
    /// from the last call when instances are reused. At most one, since
    /// the pooling allocator has few slots.
    ready: Option<(String, Ready)>,
    /// The guest's way to the host's `wasmpool:sync` registry.
    pub(super) port: Arc<Port>,
    /// The payload region shared with the host, for a worker process that
    /// has one.
    pub(super) region: Option<WorkerRegion>,
    /// The instances kept across calls ([`crate::Session`]).
    pub(super) sessions: Sessions,
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
        send: OpSender,
    ) -> Result<Executor, String> {
        let engine = worker_engine(settings)?;
        Executor::with_engine(settings, engine, reuse, answers, send)
    }

    /// [`Executor::new`] with an engine made earlier by [`worker_engine`]:
    /// a worker process makes it before it confines itself, since the
    /// engine opens `/proc/self/pagemap`, which the sandbox then denies.
    pub(crate) fn with_engine(
        settings: &EngineSettings,
        engine: Engine,
        reuse: bool,
        answers: Arc<Answers>,
        send: OpSender,
    ) -> Result<Executor, String> {
        let linker = make_linker(&engine).map_err(|e| format!("linking WASI: {e:#}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("creating the runtime: {e}"))?;
        let interrupts = Arc::new(Interrupts::new(engine.clone(), answers.clone()));
        let port = Arc::new(Port::new(send, answers, interrupts.clone()));
        let timer = interrupts.clone();
        std::thread::Builder::new()
            .name("wasmpool-timer".into())
            .spawn(move || timer.timer_loop())
            .map_err(|e| format!("starting the timer thread: {e}"))?;
        Ok(Executor {
            settings: settings.clone(),
            engine,
            linker,
            runtime,
            jobs: HashMap::new(),
            interrupts,
            reuse,
            ready: None,
            port,
            region: None,
            sessions: Sessions::default(),
        })
    }

    /// Takes payloads from, and puts large results in, `region`.
    pub(crate) fn set_region(&mut self, region: WorkerRegion) {
        self.region = Some(region);
    }

    /// Its engine.
    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Its linker.
    pub(super) fn linker(&self) -> &Linker<State> {
        &self.linker
    }

    /// The handle other threads interrupt calls with.
    pub(crate) fn interrupts(&self) -> Arc<Interrupts> {
        self.interrupts.clone()
    }

    /// Runs each call of `req` in turn and hands their outcomes to `reply`;
    /// then, off the latency path, tears the last instance down and
    /// instantiates the next one ahead.
    pub(crate) fn run<E>(
        &mut self,
        req: CallRequest,
        reply: impl FnOnce(Vec<WireOutcome>) -> Result<(), E>,
    ) -> Result<(), E> {
        let CallRequest {
            id,
            artifact,
            export,
            items,
            options,
            session,
            pending,
        } = req;
        #[cfg(feature = "test-hooks")]
        if let Some(hook) = &options.test_hook {
            return reply(super::test_hooks::run(
                hook,
                items.len(),
                self.region.as_mut(),
            ));
        }
        let this = match &session {
            Some(SessionOp::Call(s) | SessionOp::Drop { session: s, .. }) => Some(*s),
            _ => None,
        };
        let mine = if pending.is_empty() {
            Vec::new()
        } else {
            self.take_pending(pending, this)
        };
        if let Some(op) = session {
            let args = items.first().map(|p| {
                // Copied: the session's call borrows the executor whole.
                args_in(self.region.as_ref(), p).map(<[u8]>::to_vec)
            });
            let outcome = match args {
                Some(Ok(args)) => {
                    let item = Item {
                        id,
                        artifact: &artifact,
                        export: &export,
                        args: &args,
                        options: &options,
                    };
                    let req = SessionItem { item, mine };
                    self.session_request(op, req)
                }
                Some(Err(e)) => (Err(e), Report::default()),
                None => {
                    let e =
                        WireError::new(ErrorKind::Protocol, "a session request without an item");
                    (Err(e), Report::default())
                }
            };
            let outcomes = vec![outcome];
            return match &mut self.region {
                Some(r) => r.reply(|| reply(outcomes)),
                None => reply(outcomes),
            };
        }
        let key = artifact.key.clone();
        let shape = store_options(&options);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut used = Leftover::Nothing;
        // Where the next large result goes in the region.
        let mut results_at = RESULTS_AT;
        for (i, payload) in items.iter().enumerate() {
            if i > 0 {
                let ok = outcomes
                    .last()
                    .is_some_and(|(o, _): &WireOutcome| o.is_ok());
                self.recycle(used, ok, &key, &shape);
                used = Leftover::Nothing;
            }
            let args = match args_in(self.region.as_ref(), payload) {
                Ok(args) => args,
                Err(e) => {
                    outcomes.push((Err(e), Report::default()));
                    continue;
                }
            };
            let meter = Meter::start(options.cpu_time);
            let wake = self.interrupts.begin(Running::Call(id), options.timeout);
            let mut report = Report::default();
            let ready = match self.ready.take() {
                Some((k, r)) if k == key && r.options == shape => Some(r),
                // Frees its pool slot before this call takes one.
                _ => None,
            };
            let cx = Context {
                engine: &self.engine,
                port: &self.port,
                linker: &self.linker,
                jobs: &mut self.jobs,
                interrupts: &*self.interrupts,
            };
            let item = Item {
                id,
                artifact: &artifact,
                export: &export,
                args,
                options: &options,
            };
            let (outcome, left) = self.runtime.block_on(execute(
                cx,
                item,
                ready,
                wake,
                &mut report,
                &mut values::NoHandles,
            ));
            self.interrupts.end(options.timeout.is_some());
            self.port.item_ended();
            let outcome = outcome.and_then(|v| {
                let payload = encode_result(self.region.as_ref(), &v, &mut results_at);
                within_limit(payload, options.max_result)
            });
            meter.stop(&mut report.measured);
            report.measured.bytes_in = args.len() as u64;
            report.measured.bytes_out = outcome.as_ref().map_or(0, Payload::len);
            outcomes.push((outcome, report));
            used = left;
        }
        let ok = outcomes.last().is_some_and(|(o, _)| o.is_ok());
        // Through the region, if any: no argument slice outlives the reply.
        let sent = match &mut self.region {
            Some(r) => r.reply(|| reply(outcomes)),
            None => reply(outcomes),
        };
        // Now, with the caller served.
        self.recycle(used, ok, &key, &shape);
        sent
    }

    /// After a call: keeps its instance for the next call (reuse, and the
    /// call succeeded), or drops it and instantiates a fresh one ahead.
    fn recycle(&mut self, used: Leftover, ok: bool, key: &str, shape: &CallOptions) {
        match used {
            Leftover::Instance(r) if ok && self.reuse => self.ready = Some((key.to_string(), *r)),
            used => {
                drop(used);
                self.instantiate_ahead(key, shape.clone());
            }
        }
    }

    /// Instantiates job `key` with `options` for the next call. A failure
    /// is left for that call to meet and report.
    fn instantiate_ahead(&mut self, key: &str, options: CallOptions) {
        let Some(loaded) = self.jobs.get(key) else {
            return;
        };
        let pre = loaded.pre.clone();
        let wake = self.interrupts.begin(Running::Preparing, None);
        let made = self.runtime.block_on(async {
            let (mut store, stdout, stderr, tail) =
                new_store(&self.engine, &self.port, &options).ok()?;
            let instance = instantiate(&mut store, &pre, wake).await?.ok()?;
            Some(Ready {
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

impl GuestMemory for Executor {
    /// A freed instance's memory stays resident, reset in place, up to
    /// [`KEEP_RESIDENT`](crate::idle::KEEP_RESIDENT), so that the next call
    /// takes no page faults; what is beyond that goes back in batches of
    /// freed instances, which a last large call does not fill. Wasmtime
    /// has no call to give back either early: see
    /// [`renew_engine`](GuestMemory::renew_engine).
    fn take_grown(&mut self) -> usize {
        take_grown()
    }

    /// In an idle worker: gives back all the guest memory wasmtime holds
    /// for freed instances, by making a new engine. The old one's pool is
    /// unmapped whole. The jobs are loaded again and the next instance
    /// instantiated, off the latency path. A reused instance is live, and is
    /// left alone.
    fn renew_engine(&mut self) {
        if self.reuse {
            return;
        }
        let made = worker_engine(&self.settings).and_then(|engine| {
            let linker = make_linker(&engine).map_err(|e| format!("linking WASI: {e:#}"))?;
            Ok((engine, linker))
        });
        let (engine, linker) = match made {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!("an idle worker kept its guest memory: {e}");
                return;
            }
        };
        let next = self.ready.take().map(|(key, r)| (key, r.options.clone()));
        let artifacts: Vec<_> = self.jobs.drain().map(|(_, l)| l.artifact).collect();
        self.interrupts.set_engine(engine.clone());
        self.engine = engine;
        self.linker = linker;
        for artifact in artifacts {
            // One that no longer loads fails its next call, as it would have.
            if let Ok(loaded) = load(&self.engine, &self.linker, &artifact) {
                self.jobs.insert(artifact.key, loaded);
            }
        }
        if let Some((key, options)) = next {
            self.instantiate_ahead(&key, options);
        }
        tracing::debug!("an idle worker made a new engine, to give its guest memory back");
    }
}

/// The engine of a worker, with its error said for the worker's `Failed`.
pub(crate) fn worker_engine(settings: &EngineSettings) -> Result<Engine, String> {
    settings
        .worker_engine()
        .map_err(|e| format!("creating the engine: {e:#}"))
}

/// What a guest may import: WASI p2, and p3 (clocks, random, cli,
/// filesystem and sockets, from the same `WasiCtx`) on an engine with the
/// component model's async, `wasi:http` (with the `wasi-http`
/// feature; every request denied unless the call allows it),
/// `wasi:config` (the call's config) and
/// `wasmpool:sync`.
pub(super) fn make_linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // p3's functions are async: only an engine with the component model's
    // async links them, and only components that use it run there.
    if engine.get_concurrency_support() {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    }
    #[cfg(feature = "wasi-http")]
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, State::config)?;
    super::imports::add_to_linker(&mut linker)?;
    Ok(linker)
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.interrupts.close();
    }
}

/// A call's arguments, where they are: in the frame, or in the region.
fn args_in<'a>(
    region: Option<&'a WorkerRegion>,
    payload: &'a Payload,
) -> Result<&'a [u8], WireError> {
    match payload {
        Payload::Inline(b) => Ok(b.as_slice()),
        Payload::InRegion { offset, len } => {
            region.and_then(|r| r.args(*offset, *len)).ok_or_else(|| {
                WireError::new(
                    ErrorKind::Protocol,
                    format!("the arguments at {offset}+{len} are outside the payload region"),
                )
            })
        }
    }
}

/// `payload`, unless it is larger than `max` bytes: then the limit's
/// error, and the result is not sent.
pub(super) fn within_limit(payload: Payload, max: Option<u64>) -> Result<Payload, WireError> {
    let len = payload.len();
    match max {
        Some(max) if len > max => {
            let mut w = WireError::new(
                ErrorKind::ResourceLimit,
                format!(
                    "the result is {len} bytes encoded, over the limit of {max} bytes \
                     (max_result_bytes)"
                ),
            );
            w.limit = Some(crate::error::Limit::Result);
            Err(w)
        }
        _ => Ok(payload),
    }
}

/// A result, encoded: into the region at `at` when it is large and fits
/// (moving `at` past it), else inline.
pub(super) fn encode_result(
    region: Option<&WorkerRegion>,
    value: &values::Value,
    at: &mut u64,
) -> Payload {
    use values::Value;
    // Scalars, and bytes or strings known to be short, go inline at once.
    let small = match value {
        Value::Nil | Value::Bool(_) | Value::Int(_) | Value::F32(_) | Value::F64(_) => true,
        Value::Bin(b) => b.len() < INLINE_MAX - 8,
        Value::Str(s) => s.len() < INLINE_MAX - 8,
        Value::Array(_) | Value::Map(_) => false,
    };
    if let Some(r) = region.filter(|_| !small) {
        let mut w = r.results(*at);
        if values::encode_into(&mut w, value).is_ok() {
            let (offset, len) = w.written();
            if len >= INLINE_MAX as u64 {
                *at += len;
                return Payload::InRegion { offset, len };
            }
            if let Some(small) = r.read(offset, len) {
                return Payload::Inline(serde_bytes::ByteBuf::from(small));
            }
        }
    }
    Payload::Inline(serde_bytes::ByteBuf::from(values::encode(value)))
}
