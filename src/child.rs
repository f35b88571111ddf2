//! The worker process: serves calls from its host, one at a time.
//!
//! Threads of a worker:
//!
//! - the main thread reads [`ToWorker`] frames from the data socket and runs
//!   each call to completion on a current-thread tokio runtime (async
//!   wasmtime, so WASI sleeps and polls can be abandoned on cancel);
//! - `wasmpool-control` reads [`Control`] frames. A cancel bumps the
//!   engine's epoch (a running guest traps at its next epoch check) and
//!   wakes the call's future (a guest blocked in a host call is dropped).
//!   When the control socket closes, the host is gone and the process
//!   exits.
//! - `wasmpool-timer` enforces a call's timeout the same way, at its
//!   deadline.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, ResourceTable, Type, Val};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::error::{ErrorKind, Limit, TrapCode, WireError};
use crate::protocol::{
    Artifact, CallOptions, CallRequest, Control, ExportPath, FromWorker, Init, PROTOCOL_VERSION,
    Report, ToWorker, read_frame, write_frame,
};
use crate::stdio::{Fd, GuestOutput};
use crate::value::{self, Value};
use crate::wit;

/// How much of a call's stderr is kept to find a panic message.
const STDERR_TAIL: usize = 8 * 1024;

/// No call is running.
const NO_CALL: u64 = u64::MAX;

/// Runs the worker; returns the process exit code.
pub(crate) fn run() -> i32 {
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wasmpool worker {}: {e}", std::process::id());
            70
        }
    }
}

struct Shared {
    engine: Engine,
    /// The id of the running call, or [`NO_CALL`].
    current: AtomicU64,
    /// The id of the last call a cancel was asked for.
    cancelled: AtomicU64,
    /// The id of the last call that ran past its timeout.
    timed_out: AtomicU64,
    /// Wakes the running call's future on cancel or timeout.
    wake: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The running call's deadline, for the timer thread.
    deadline: Mutex<Option<(u64, Instant)>>,
    deadline_set: Condvar,
}

impl Shared {
    /// Interrupts call `id`: `flag` records why, and if it is the call
    /// running, bumps the epoch for a guest in wasm and wakes the call's
    /// future for a guest blocked in a host call. The flag is raised even
    /// when the call has not started yet (a cancel frame can overtake its
    /// call frame); [`Shared::interrupted`] reads it before the guest runs.
    fn interrupt(&self, id: u64, flag: &AtomicU64) {
        flag.store(id, Ordering::SeqCst);
        if self.current.load(Ordering::SeqCst) == id {
            self.engine.increment_epoch();
            if let Some(tx) = self.wake.lock().expect("wake lock").take() {
                let _ = tx.send(());
            }
        }
    }

    /// The error for call `id` if it was cancelled or timed out.
    fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError> {
        if self.timed_out.load(Ordering::SeqCst) == id {
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
}

fn serve() -> io::Result<()> {
    let (data, control) = crate::platform::inherited_sockets()?;
    let mut buf = Vec::new();
    let Some(init) = read_frame::<_, Init>(&data, &mut buf)? else {
        return Ok(());
    };
    let fail = |message: String| {
        let _ = write_frame(
            &data,
            &FromWorker::Failed {
                message: message.clone(),
            },
        );
        io::Error::other(message)
    };
    if init.version != PROTOCOL_VERSION {
        return Err(fail(format!(
            "protocol version {} from the host, {} here: the worker program is a different build",
            init.version, PROTOCOL_VERSION
        )));
    }
    let engine = init
        .engine
        .worker_engine()
        .map_err(|e| fail(format!("creating the engine: {e:#}")))?;
    let linker = make_linker(&engine).map_err(|e| fail(format!("linking WASI: {e:#}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("creating the runtime: {e}")))?;
    write_frame(
        &data,
        &FromWorker::Ready {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        },
    )?;

    let shared = Arc::new(Shared {
        engine: engine.clone(),
        current: AtomicU64::new(NO_CALL),
        cancelled: AtomicU64::new(NO_CALL),
        timed_out: AtomicU64::new(NO_CALL),
        wake: Mutex::new(None),
        deadline: Mutex::new(None),
        deadline_set: Condvar::new(),
    });
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("wasmpool-control".into())
            .spawn(move || control_loop(control, &shared))?;
    }
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("wasmpool-timer".into())
            .spawn(move || timer_loop(&shared))?;
    }

    let mut jobs: HashMap<String, Loaded> = HashMap::new();
    loop {
        let Some(ToWorker::Call(req)) = read_frame::<_, ToWorker>(&data, &mut buf)? else {
            return Ok(());
        };
        let id = req.id;
        let (tx, rx) = tokio::sync::oneshot::channel();
        *shared.wake.lock().expect("wake lock") = Some(tx);
        shared.current.store(id, Ordering::SeqCst);
        if let Some(timeout) = req.options.timeout {
            *shared.deadline.lock().expect("deadline lock") = Some((id, Instant::now() + timeout));
            shared.deadline_set.notify_one();
        }
        let mut report = Report::default();
        let outcome = runtime.block_on(execute(
            &engine,
            &linker,
            &mut jobs,
            req,
            rx,
            &shared,
            &mut report,
        ));
        shared.current.store(NO_CALL, Ordering::SeqCst);
        shared.deadline.lock().expect("deadline lock").take();
        shared.wake.lock().expect("wake lock").take();
        let outcome = outcome.map(|v| serde_bytes::ByteBuf::from(value::encode(&v)));
        write_frame(
            &data,
            &FromWorker::Done {
                id,
                outcome,
                report,
            },
        )?;
    }
}

fn control_loop(control: UnixStream, shared: &Shared) {
    let mut buf = Vec::new();
    loop {
        match read_frame::<_, Control>(&control, &mut buf) {
            Ok(Some(Control::Cancel { id })) => shared.interrupt(id, &shared.cancelled),
            // The host is gone or broke the protocol: nothing left to serve.
            Ok(None) | Err(_) => {
                let _ = io::stdout().flush();
                std::process::exit(0);
            }
        }
    }
}

/// Interrupts the running call when its deadline passes.
fn timer_loop(shared: &Shared) {
    let mut deadline = shared.deadline.lock().expect("deadline lock");
    loop {
        deadline = match *deadline {
            None => shared.deadline_set.wait(deadline).expect("deadline lock"),
            Some((id, at)) => {
                let now = Instant::now();
                if now >= at {
                    *deadline = None;
                    drop(deadline);
                    shared.interrupt(id, &shared.timed_out);
                    shared.deadline.lock().expect("deadline lock")
                } else {
                    shared
                        .deadline_set
                        .wait_timeout(deadline, at - now)
                        .expect("deadline lock")
                        .0
                }
            }
        };
    }
}

/// The per-call store data: WASI, wasi:http (outgoing requests denied) and
/// the limits.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyHttp,
    table: ResourceTable,
    limits: Limits,
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
    Ok(linker)
}

/// A job loaded in this worker: its instance-pre and resolved functions.
struct Loaded {
    component: wasmtime::component::Component,
    pre: InstancePre<State>,
    funcs: HashMap<ExportPath, Arc<Func>>,
}

struct Func {
    index: ComponentExportIndex,
    params: Vec<Type>,
    results: Vec<Type>,
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
        let f = Arc::new(Func {
            index,
            params: ty.params().map(|(_, t)| t).collect(),
            results: ty.results().collect(),
        });
        self.funcs.insert(path.clone(), f.clone());
        Ok(f)
    }
}

async fn execute(
    engine: &Engine,
    linker: &Linker<State>,
    jobs: &mut HashMap<String, Loaded>,
    req: CallRequest,
    cancel: tokio::sync::oneshot::Receiver<()>,
    shared: &Shared,
    report: &mut Report,
) -> Result<Value, WireError> {
    let CallRequest {
        id,
        artifact,
        export,
        args,
        options,
    } = req;
    let loaded = match jobs.entry(artifact.key.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => v.insert(load(engine, linker, &artifact)?),
    };
    let func = loaded.func(&export)?;
    let params = decode_args(&args, &func.params)?;

    let tail = Arc::new(Mutex::new(Vec::new()));
    let stdout = GuestOutput::new(Fd::Stdout, options.stdout);
    let stderr = GuestOutput::new(Fd::Stderr, options.stderr).with_tail(tail.clone(), STDERR_TAIL);
    let wasi = wasi_ctx(&options, &stdout, &stderr)?;
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
        },
    );
    store.limiter(|s| &mut s.limits);
    let fuel = if engine.get_consume_fuel() {
        let fuel = options.fuel.unwrap_or(u64::MAX);
        store
            .set_fuel(fuel)
            .map_err(|e| WireError::new(ErrorKind::Config, format!("setting fuel: {e:#}")))?;
        Some(fuel)
    } else {
        None
    };
    // Any epoch bump from now on interrupts this call.
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    // A bump that came before the deadline was set is not seen by it, but
    // `interrupt` raises its flag before bumping, so check the flags now.
    if let Some(e) = shared.interrupted(id, &options) {
        return Err(e);
    }

    let mut results = vec![Val::Bool(false); func.results.len()];
    let pre = loaded.pre.clone();
    let outcome = {
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let f = instance.get_func(&mut store, func.index).ok_or_else(|| {
                wasmtime::Error::msg(format!("export {export} is not a function"))
            })?;
            f.call_async(&mut store, &params, &mut results).await
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
    match outcome {
        Ok(()) => Ok(match (results.pop(), func.results.first()) {
            (Some(v), Some(ty)) => wit::from_val(ty, v),
            _ => Value::Nil,
        }),
        // Only `interrupt` sends the wake, and it raises a flag first.
        Err(None) => Err(shared
            .interrupted(id, &options)
            .unwrap_or_else(|| WireError::new(ErrorKind::Cancelled, "the call was cancelled"))),
        Err(Some(e)) => {
            if let Some(interrupted) = shared.interrupted(id, &options) {
                return Err(interrupted);
            }
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

fn decode_args(args: &[u8], types: &[Type]) -> Result<Vec<Val>, WireError> {
    let bad = |m: String| WireError::new(ErrorKind::ArgumentMismatch, m);
    let items = match value::decode(args) {
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
    let root = wit::Path::Root("args");
    types
        .iter()
        .zip(items)
        .enumerate()
        .map(|(i, (ty, v))| wit::to_val(&wit::Path::Index(&root, i), ty, v).map_err(|m| bad(m.0)))
        .collect()
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
