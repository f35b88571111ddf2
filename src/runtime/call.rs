//! One call, start to end, inside an executor: find the function, decode
//! its arguments, take an instance made ahead (or make one), arm the
//! interrupts, run it, and classify how it ended.

use crate::locks::Locked as _;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Instance, InstancePre, Linker, Type, Val};
use wasmtime::{Engine, Store};

use super::host_imports::HostFailed;
use super::interrupts::Stops;
use super::loaded::{Func, Loaded, Params, call_typed, load, single_payload};
use super::port::Port;
use super::stdio::GuestOutput;
use super::store::{State, new_store};
use crate::error::{ErrorKind, Limit, TrapCode};
use crate::values::{self, Handles, Value, wit};
use crate::wire::{Artifact, CallOptions, ExportPath, Report, WireError};

/// One call of a request.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub(super) id: u64,
    pub(super) artifact: &'a Artifact,
    pub(super) export: &'a ExportPath,
    pub(super) args: &'a [u8],
    pub(super) options: &'a CallOptions,
}

/// What an executor lends a call.
pub(super) struct Context<'a> {
    pub(super) engine: &'a Engine,
    pub(super) port: &'a Arc<Port>,
    pub(super) linker: &'a Linker<State>,
    pub(super) jobs: &'a mut HashMap<String, Loaded>,
    pub(super) interrupts: &'a dyn Stops,
}

/// What a call that has found its function runs with.
pub(super) struct Runs<'a> {
    pub(super) engine: &'a Engine,
    pub(super) port: &'a Arc<Port>,
    pub(super) stops: &'a dyn Stops,
}

/// A call's function, found, with its arguments decoded.
pub(super) struct Resolved<'a> {
    pre: InstancePre<State>,
    func: Arc<Func>,
    params: Params<'a>,
}

/// An instance waiting for a call of its job with the same options.
pub(super) struct Ready {
    /// The options it was made for, without the per-call ones.
    pub(super) options: CallOptions,
    pub(super) store: Store<State>,
    pub(super) instance: Instance,
    pub(super) stdout: GuestOutput,
    pub(super) stderr: GuestOutput,
    pub(super) tail: Arc<Mutex<Vec<u8>>>,
}

/// The options that shape an instance's store: all but the timeout, the
/// fuel budget, the result limit, the config and what to measure, which
/// are set per call.
pub(super) fn store_options(options: &CallOptions) -> CallOptions {
    CallOptions {
        timeout: None,
        fuel: None,
        max_result: None,
        config: Default::default(),
        cpu_time: false,
        ..options.clone()
    }
}

/// What a call leaves behind, dropped (or kept, when instances are reused)
/// after the caller has its answer.
pub(super) enum Leftover {
    Nothing,
    Instance(Box<Ready>),
    Store(#[expect(dead_code, reason = "held only to be dropped after the reply")] Store<State>),
}

impl Leftover {
    /// An instance made ahead that the call did not get to use.
    fn unused(ready: Option<Ready>) -> Leftover {
        ready.map_or(Leftover::Nothing, |r| Leftover::Instance(Box::new(r)))
    }
}

/// Runs one call, on `ready` if given, else on a new instance. Returns its
/// result and what it used, for the caller to keep or drop once it has
/// answered. `cancel` fires when the call is interrupted.
pub(super) async fn execute(
    cx: Context<'_>,
    item: Item<'_>,
    ready: Option<Ready>,
    cancel: tokio::sync::oneshot::Receiver<()>,
    report: &mut Report,
    handles: &mut dyn Handles,
) -> (Result<Value, WireError>, Leftover) {
    let Context {
        engine,
        port,
        linker,
        jobs,
        interrupts,
    } = cx;
    let resolved = match resolve(engine, linker, jobs, &item, handles) {
        Ok(r) => r,
        Err(StartFailed::Call(e)) => return (Err(e), Leftover::unused(ready)),
        Err(StartFailed::Load(e)) => return (Err(e), Leftover::Nothing),
    };
    let runs = Runs {
        engine,
        port,
        stops: interrupts,
    };
    execute_resolved(runs, item, resolved, ready, cancel, report, handles).await
}

/// [`execute`] for a call whose function is found.
pub(super) async fn execute_resolved(
    runs: Runs<'_>,
    item: Item<'_>,
    resolved: Resolved<'_>,
    ready: Option<Ready>,
    cancel: tokio::sync::oneshot::Receiver<()>,
    report: &mut Report,
    handles: &mut dyn Handles,
) -> (Result<Value, WireError>, Leftover) {
    let Runs {
        engine,
        port,
        stops: interrupts,
    } = runs;
    let Item {
        id,
        export,
        options,
        ..
    } = item;
    let Resolved {
        pre,
        func,
        mut params,
    } = resolved;
    let (mut store, instance, stdout, stderr, tail) = match ready {
        Some(r) => (r.store, Some(r.instance), r.stdout, r.stderr, r.tail),
        None => match new_store(engine, port, options) {
            Ok((store, stdout, stderr, tail)) => (store, None, stdout, stderr, tail),
            Err(e) => return (Err(e), Leftover::Nothing),
        },
    };
    stdout.begin_call();
    stderr.begin_call();
    let fuel = match arm(&mut store, engine, &tail, options) {
        Ok(fuel) => fuel,
        Err(e) => return (Err(e), Leftover::Store(store)),
    };
    interrupts.arm(&mut store);
    // A bump that came before the deadline was set is not seen by it, but
    // `interrupt` raises its flag before bumping, so check the flags now.
    if let Some(e) = interrupts.interrupted(id, options) {
        return (Err(e), Leftover::Store(store));
    }
    let outcome = tokio::select! {
        // A wake that already fired wins before the guest is entered.
        biased;
        _ = cancel => Err(None),
        r = invoke(&mut store, instance, &pre, &func, &mut params, fuel, export, handles) => r.map_err(Some),
    };
    report.fuel_consumed = fuel.and_then(|f| Some(f - store.get_fuel().ok()?));
    report.measured.peak_memory = store.data_mut().limits.peak();
    report.stdout = stdout.take_captured().map(serde_bytes::ByteBuf::from);
    report.stderr = stderr.take_captured().map(serde_bytes::ByteBuf::from);
    let end = CallEnd {
        stdout: &stdout,
        stderr: &stderr,
        tail: &tail,
        interrupts,
        id,
        options,
    };
    if options.command {
        return command_outcome(outcome, store, &end);
    }
    match outcome {
        Ok((instance, value)) => {
            let used = Ready {
                options: store_options(options),
                store,
                instance,
                stdout,
                stderr,
                tail,
            };
            (Ok(value), Leftover::Instance(Box::new(used)))
        }
        // A failed instance is never reused; the caller drops it after it
        // has answered.
        Err(e) => {
            let e = failed(e, &store, &end);
            (Err(e), Leftover::Store(store))
        }
    }
}

/// What a call's end is judged by, besides its outcome and store.
struct CallEnd<'a> {
    stdout: &'a GuestOutput,
    stderr: &'a GuestOutput,
    tail: &'a Mutex<Vec<u8>>,
    interrupts: &'a dyn Stops,
    id: u64,
    options: &'a CallOptions,
}

/// [`failure`], and a guest that trapped after a write past its output
/// limit failed because of the limit.
fn failed(e: Option<wasmtime::Error>, store: &Store<State>, end: &CallEnd<'_>) -> WireError {
    let mut e = failure(e, store, end.tail, end.interrupts, end.id, end.options);
    let over = [end.stdout, end.stderr].into_iter().find(|o| o.went_over());
    if let Some(out) = over
        && e.kind == ErrorKind::Trap
    {
        e.kind = ErrorKind::ResourceLimit;
        e.limit = Some(crate::error::Limit::Output);
        e.message = format!(
            "the guest wrote more than its output limit of {} bytes ({})",
            out.limit().unwrap_or_default(),
            e.message
        );
    }
    e
}

/// How a command ended: its exit status as the call's value, as `wasmtime
/// run` reports it (0 when `run` returns `ok`, 1 when it returns `err`,
/// `n` for `exit(n)`), or an error for what is not an exit (a trap, a
/// timeout, a limit). Its instance is never used again: a program runs
/// once.
fn command_outcome(
    outcome: Result<(Instance, Value), Option<wasmtime::Error>>,
    store: Store<State>,
    end: &CallEnd<'_>,
) -> (Result<Value, WireError>, Leftover) {
    let status = match outcome {
        Ok((_, Value::Map(m))) if matches!(m.first(), Some((Value::Str(k), _)) if k == "err") => 1,
        Ok(_) => 0,
        Err(e) => {
            let exit = e
                .as_ref()
                .and_then(|e| e.downcast_ref::<wasmtime_wasi::I32Exit>())
                // An interrupt that raced the exit is still an interrupt.
                .filter(|_| end.interrupts.interrupted(end.id, end.options).is_none());
            match exit {
                Some(code) => code.0,
                None => return (Err(failed(e, &store, end)), Leftover::Store(store)),
            }
        }
    };
    (Ok(Value::Int(i128::from(status))), Leftover::Store(store))
}

/// Why a call could not start.
pub(super) enum StartFailed {
    /// The job did not load: an instance made ahead is of no use.
    Load(WireError),
    /// The function or its arguments are wrong: the job's instance made
    /// ahead is still good for the next call.
    Call(WireError),
}

/// The job's instance-pre, the function and its decoded arguments.
pub(super) fn resolve<'a>(
    engine: &Engine,
    linker: &Linker<State>,
    jobs: &mut HashMap<String, Loaded>,
    item: &Item<'a>,
    handles: &mut dyn Handles,
) -> Result<Resolved<'a>, StartFailed> {
    let loaded = match jobs.entry(item.artifact.key.clone()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            v.insert(load(engine, linker, item.artifact).map_err(StartFailed::Load)?)
        }
    };
    let func = loaded.func(item.export).map_err(StartFailed::Call)?;
    let params = decode_args(item.args, &func, handles).map_err(StartFailed::Call)?;
    Ok(Resolved {
        pre: loaded.pre.clone(),
        func,
        params,
    })
}

/// Readies `store` for the call: clears what the last call left, gives it
/// its config and its fuel budget (returned), and makes any epoch bump
/// interrupt it.
fn arm(
    store: &mut Store<State>,
    engine: &Engine,
    tail: &Mutex<Vec<u8>>,
    options: &CallOptions,
) -> Result<Option<u64>, WireError> {
    let state = store.data_mut();
    state.limits.begin_call();
    state.set_config(&options.config);
    tail.locked().clear();
    // Fuel counts the call, not the instantiation, which an instance made
    // ahead has already done: so that the same call always burns the
    // same fuel. (Until the call, the store has all the fuel there is.)
    let fuel = if engine.get_consume_fuel() {
        store
            .set_fuel(u64::MAX)
            .map_err(|e| WireError::new(ErrorKind::Config, format!("setting fuel: {e:#}")))?;
        Some(options.fuel.unwrap_or(u64::MAX))
    } else {
        None
    };
    // Any epoch bump from now on interrupts this call.
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    Ok(fuel)
}

/// Instantiates `pre` in `store` ahead of its call (the next call's, or a
/// session's), unless `wake` fires first (`None`). Any epoch bump
/// interrupts it, and until its call the store has all the fuel there is.
pub(super) async fn instantiate(
    store: &mut Store<State>,
    pre: &InstancePre<State>,
    wake: tokio::sync::oneshot::Receiver<()>,
) -> Option<wasmtime::Result<Instance>> {
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    if store.engine().get_consume_fuel()
        && let Err(e) = store.set_fuel(u64::MAX)
    {
        return Some(Err(e));
    }
    tokio::select! {
        biased;
        _ = wake => None,
        i = pre.instantiate_async(&mut *store) => Some(i),
    }
}

/// Instantiates (unless given an instance) and calls the function.
#[expect(clippy::too_many_arguments, reason = "one call's parts, passed once")]
async fn invoke(
    store: &mut Store<State>,
    instance: Option<Instance>,
    pre: &InstancePre<State>,
    func: &Func,
    params: &mut Params<'_>,
    fuel: Option<u64>,
    export: &ExportPath,
    handles: &mut dyn Handles,
) -> wasmtime::Result<(Instance, Value)> {
    let instance = match instance {
        Some(i) => i,
        None => pre.instantiate_async(&mut *store).await?,
    };
    if let Some(fuel) = fuel {
        store.set_fuel(fuel)?;
    }
    let value = match (params, func.typed) {
        (Params::Dynamic(params), _) => {
            let f = instance.get_func(&mut *store, func.index).ok_or_else(|| {
                wasmtime::Error::msg(format!("export {export} is not a function"))
            })?;
            handles.bind_transmits(store, params)?;
            let mut results = vec![Val::Bool(false); func.results.len()];
            f.call_async(&mut *store, params, &mut results).await?;
            match (results.pop(), func.results.first()) {
                (Some(v), Some(ty)) => wit::from_val_in(ty, v, handles),
                _ => Value::Nil,
            }
        }
        (payload, Some(out)) => call_typed(store, &instance, func.index, &*payload, out).await?,
        (_, None) => unreachable!("payloads are only decoded for typed calls"),
    };
    Ok((instance, value))
}

/// How a call that did not return ended: interrupted (`None`: by its wake)
/// or failed. Classified once, here.
pub(super) fn failure(
    e: Option<wasmtime::Error>,
    store: &Store<State>,
    tail: &Mutex<Vec<u8>>,
    interrupts: &dyn Stops,
    id: u64,
    options: &CallOptions,
) -> WireError {
    if let Some(interrupted) = interrupts.interrupted(id, options) {
        return interrupted;
    }
    // Only `interrupt` sends the wake, and it raises a flag first.
    let Some(e) = e else {
        return super::interrupts::cancelled();
    };
    let mut w = classify(e, &tail.locked());
    if let Some(limit) = store.data().limits.hit {
        w.kind = ErrorKind::ResourceLimit;
        w.limit = Some(limit);
        w.message = format!(
            "the guest needed more than its memory limit of {} bytes ({})",
            options.max_memory.unwrap_or_default(),
            w.message
        );
    }
    w
}

fn decode_args<'a>(
    args: &'a [u8],
    func: &Func,
    handles: &mut dyn Handles,
) -> Result<Params<'a>, WireError> {
    let types = &func.params;
    let bad = |m: String| WireError::new(ErrorKind::ArgumentMismatch, m);
    // One byte list or string for the typed API, read where it lies.
    if func.typed.is_some() {
        match (single_payload(args), &types[0]) {
            (Some((false, bytes)), Type::List(_)) => return Ok(Params::Bytes(bytes)),
            (Some((true, bytes)), Type::String) => {
                if let Ok(s) = simdutf8::basic::from_utf8(bytes) {
                    return Ok(Params::Str(s));
                }
            }
            _ => {}
        }
    }
    let items = match values::decode(args) {
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
        .map(|(i, (ty, v))| {
            wit::to_val_in(&wit::Path::Index(&root, i), ty, v, handles).map_err(|m| bad(m.0))
        })
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
    } else if let Some(host) = e.downcast_ref::<HostFailed>() {
        let mut w = WireError::new(ErrorKind::HostFunction, host.message.clone());
        w.host_error = host.error;
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
    fn single_payloads_are_found_in_place() {
        for len in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let args = rmp_serde::to_vec(&(serde_bytes::ByteBuf::from(bytes.clone()),)).unwrap();
            assert_eq!(
                single_payload(&args),
                Some((false, bytes.as_slice())),
                "{len}"
            );
            let text = "é".repeat(len / 2);
            let args = rmp_serde::to_vec(&(text.as_str(),)).unwrap();
            assert_eq!(
                single_payload(&args),
                Some((true, text.as_bytes())),
                "{len}"
            );
            // Two arguments, or a torn one, are not one payload.
            let two = rmp_serde::to_vec(&(text.as_str(), 1u8)).unwrap();
            assert_eq!(single_payload(&two), None);
            assert_eq!(
                single_payload(&args[..args.len().saturating_sub(1)]).filter(|_| len > 1),
                None
            );
        }
        assert_eq!(single_payload(&[]), None);
        assert_eq!(single_payload(&[0x91]), None);
        assert_eq!(single_payload(&[0x91, 0xc6, 0, 0]), None);
    }

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
