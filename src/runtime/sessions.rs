//! Sessions in an executor: instances kept across calls
//! ([`crate::Session`]), and the resource handles they lend the host.
//!
//! A session's store lives in an engine of its own, made when the first
//! session opens: the calls' engine has a pooling allocator of a few
//! slots, sized for one call at a time, where an executor may hold
//! thousands of sessions. The second engine allocates on demand, and an
//! idle session costs only the pages its guest touched. Its epoch moves
//! with the calls' engine's, so interrupts and timeouts reach a session's
//! call as any other.
//!
//! A session is lost, its store dropped, when a call enters the guest and
//! fails (a trap, an interrupt, a timeout, a limit): the component model
//! forbids entering the instance again. A call that fails before the
//! guest runs (no such function, bad arguments, a handle the session does
//! not hold) leaves it as it was.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceAny, Type, Val};

use super::call::{Context, Item, Leftover, Ready, execute, instantiate, store_options};
use super::executor::{Executor, encode_result, make_linker, within_limit};
use super::interrupts::Running;
use super::loaded::{Loaded, ResourceNames, load};
use super::meter::Meter;
use super::store::{State, new_store};
use crate::error::ErrorKind;
use crate::values::{self, HandleRef, Handles, Path, Value, wit};
use crate::wire::{
    Artifact, CallOptions, Payload, Pending, RESULTS_AT, Report, SessionOp, WireError, WireOutcome,
};

/// The sessions of an executor.
#[derive(Default)]
pub(super) struct Sessions {
    /// Their engine and linker, made when the first session opens.
    made: Option<(Engine, Linker<State>)>,
    /// The jobs loaded into that engine.
    jobs: HashMap<String, Loaded>,
    open: HashMap<u64, Held>,
}

/// One session.
struct Held {
    /// Its job's artifact key.
    key: String,
    /// Its instance; `None` once lost.
    live: Option<Ready>,
    /// Why it was lost.
    lost: Option<String>,
    /// The resources it has lent the host, by handle.
    table: HashMap<u64, Lent>,
    /// The next handle's number.
    next: u64,
}

impl Held {
    /// Drops the instance: the session is lost, for `why`.
    fn lose(&mut self, why: String) {
        self.live = None;
        self.table.clear();
        self.lost = Some(why);
    }
}

/// A resource lent to the host, and its type's name.
struct Lent {
    resource: ResourceAny,
    type_name: String,
}

/// A session's handles, as one call's conversions meet them.
struct SessionHandles<'a> {
    session: u64,
    table: &'a mut HashMap<u64, Lent>,
    next: &'a mut u64,
    names: &'a ResourceNames,
    /// The owned handles the arguments took out of the table, to put back
    /// if the guest is never entered.
    taken: Vec<(u64, Lent)>,
    /// The handles the result lent the host.
    lifted: Vec<u64>,
}

/// The name of resource type `ty` (an `own` or a `borrow`).
fn resource_name(names: &ResourceNames, ty: &Type) -> String {
    let rt = match ty {
        Type::Own(rt) | Type::Borrow(rt) => rt,
        _ => return "resource".into(),
    };
    names
        .iter()
        .find(|(t, _)| t == rt)
        .map_or_else(|| "resource".into(), |(_, n)| n.clone())
}

impl Handles for SessionHandles<'_> {
    fn lower(&mut self, path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, wit::Mismatch> {
        let expected = resource_name(self.names, ty);
        let Some(h) = HandleRef::from_value(&v) else {
            return Err(wit::Mismatch(format!(
                "{path}: expected a {expected} handle (a wasmpool::Resource), got {}",
                v.describe()
            )));
        };
        let HandleRef {
            host,
            owner,
            handle,
            type_name,
        } = h;
        if host || owner != self.session {
            return Err(wit::Mismatch(format!(
                "{path}: resource {type_name} (handle {handle}) belongs to another session"
            )));
        }
        let Some(lent) = self.table.get(&handle) else {
            return Err(wit::Mismatch(format!(
                "{path}: resource {type_name} (handle {handle}) is no longer held by this \
                 session: a call consumed it, or it was dropped"
            )));
        };
        if lent.type_name != expected {
            return Err(wit::Mismatch(format!(
                "{path}: expected a {expected} handle, got resource {} (handle {handle})",
                lent.type_name
            )));
        }
        let resource = lent.resource;
        if matches!(ty, Type::Own(_))
            && let Some(lent) = self.table.remove(&handle)
        {
            self.taken.push((handle, lent));
        }
        Ok(Val::Resource(resource))
    }

    fn lift(&mut self, ty: &Type, resource: ResourceAny) -> Value {
        let handle = *self.next;
        *self.next += 1;
        let type_name = resource_name(self.names, ty);
        let lent = Lent {
            resource,
            type_name: type_name.clone(),
        };
        self.table.insert(handle, lent);
        self.lifted.push(handle);
        HandleRef {
            host: false,
            owner: self.session,
            handle,
            type_name,
        }
        .to_value()
    }
}

/// A session's request, as the worker serves it: its one item (whose
/// arguments are an empty tuple but for a call), and the handles of the
/// session the host let go of, to drop around it.
pub(super) struct SessionItem<'a> {
    pub(super) item: Item<'a>,
    pub(super) mine: Vec<u64>,
}

/// The error of a call on a lost session.
fn lost_error(why: &str) -> WireError {
    WireError::new(
        ErrorKind::SessionLost,
        format!("the session is lost: {why}"),
    )
}

/// The handles of `session` that the encoded arguments `args` name.
fn named_handles(args: &[u8], session: u64) -> Vec<u64> {
    fn walk(v: &Value, session: u64, out: &mut Vec<u64>) {
        if let Some(h) = HandleRef::from_value(v) {
            if !h.host && h.owner == session {
                out.push(h.handle);
            }
            return;
        }
        match v {
            Value::Array(items) => items.iter().for_each(|v| walk(v, session, out)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                walk(k, session, out);
                walk(v, session, out);
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = values::decode(args) {
        walk(&v, session, &mut out);
    }
    out
}

impl Executor {
    /// Serves a request of a session: `op`, with `req`.
    pub(super) fn session_request(&mut self, op: SessionOp, req: SessionItem<'_>) -> WireOutcome {
        let Item {
            id,
            artifact,
            options,
            ..
        } = req.item;
        let mine = &req.mine;
        match op {
            SessionOp::Open(session) => {
                let outcome = self.open_session(id, session, artifact, options);
                (outcome.map(|()| Payload::Inline(nil())), Report::default())
            }
            SessionOp::Close(session) => {
                self.sessions.open.remove(&session);
                (Ok(Payload::Inline(nil())), Report::default())
            }
            SessionOp::Drop {
                session,
                handle,
                type_name,
            } => {
                let wake = self.interrupts.begin(Running::Call(id), options.timeout);
                let mut report = Report::default();
                let dropped = self
                    .drop_handles(session, mine)
                    .and_then(|()| self.drop_resource(session, handle, &type_name));
                drop(wake);
                self.interrupts.end(options.timeout.is_some());
                self.port.item_ended();
                if let Err(e) = &dropped {
                    report.lost = self.lost_why(session, e);
                }
                (dropped.map(|()| Payload::Inline(nil())), report)
            }
            SessionOp::Call(session) => self.session_call(session, req),
        }
    }

    /// Drops the sessions the host closed, and returns the handles of
    /// session `this` it let go of (the only ones it sends with a request
    /// of `this`).
    pub(super) fn take_pending(&mut self, pending: Pending, this: Option<u64>) -> Vec<u64> {
        let Pending { closes, drops } = pending;
        for session in closes {
            // Dropping the store runs no guest code.
            self.sessions.open.remove(&session);
        }
        drops
            .into_iter()
            .filter(|(s, _)| Some(*s) == this)
            .map(|(_, h)| h)
            .collect()
    }

    /// Why session `session` is lost, if it is: after `e`, which may have
    /// lost it, or before.
    fn lost_why(&self, session: u64, e: &WireError) -> Option<String> {
        match self.sessions.open.get(&session) {
            None => Some("it was closed".into()),
            Some(held) => held
                .lost
                .clone()
                .or_else(|| (e.kind == ErrorKind::SessionLost).then(|| e.message.clone())),
        }
    }

    /// Drops `handles` of `session` in the guest, running their
    /// destructors; a handle the session does not hold is passed over. A
    /// destructor that fails loses the session. Run inside the request's
    /// interrupts, so that a cancel or timeout stops a destructor that
    /// does not end.
    fn drop_handles(&mut self, session: u64, handles: &[u64]) -> Result<(), WireError> {
        let Some(held) = self.sessions.open.get_mut(&session) else {
            return Ok(());
        };
        for handle in handles {
            let Some(ready) = held.live.as_mut() else {
                return Ok(());
            };
            let Some(lent) = held.table.remove(handle) else {
                continue;
            };
            let store = &mut ready.store;
            store.set_epoch_deadline(1);
            if store.engine().get_consume_fuel() {
                let _ = store.set_fuel(u64::MAX);
            }
            let dropped = self
                .runtime
                .block_on(lent.resource.resource_drop_async(&mut *store));
            if let Err(e) = dropped {
                let why = format!(
                    "the destructor of resource {} (handle {handle}) failed: {e:#}",
                    lent.type_name
                );
                held.lose(why.clone());
                return Err(WireError::new(ErrorKind::Trap, why));
            }
        }
        Ok(())
    }

    /// [`drop_handles`](Executor::drop_handles) of one handle, which the
    /// session must hold.
    fn drop_resource(
        &mut self,
        session: u64,
        handle: u64,
        type_name: &str,
    ) -> Result<(), WireError> {
        match self.sessions.open.get(&session) {
            None => Err(lost_error("it was closed")),
            Some(Held {
                lost: Some(why), ..
            }) => Err(lost_error(why)),
            Some(held) if !held.table.contains_key(&handle) => Err(WireError::new(
                ErrorKind::ArgumentMismatch,
                format!(
                    "resource {type_name} (handle {handle}) is no longer held by this session: \
                     a call consumed it, or it was dropped"
                ),
            )),
            Some(_) => self.drop_handles(session, &[handle]),
        }
    }

    /// Instantiates the job as session `session`.
    fn open_session(
        &mut self,
        id: u64,
        session: u64,
        artifact: &Artifact,
        options: &CallOptions,
    ) -> Result<(), WireError> {
        if self.sessions.open.contains_key(&session) {
            return Err(WireError::new(
                ErrorKind::Protocol,
                format!("session {session} is already open"),
            ));
        }
        if self.sessions.made.is_none() {
            let engine = self.settings.host_engine().map_err(|e| {
                WireError::new(
                    ErrorKind::Config,
                    format!("creating the sessions' engine: {e:#}"),
                )
            })?;
            let linker = make_linker(&engine)
                .map_err(|e| WireError::new(ErrorKind::Config, format!("linking WASI: {e:#}")))?;
            self.interrupts.set_session_engine(engine.clone());
            self.sessions.made = Some((engine, linker));
        }
        let Sessions { made, jobs, open } = &mut self.sessions;
        let Some((engine, linker)) = made.as_ref() else {
            unreachable!("made above")
        };
        let loaded = match jobs.entry(artifact.key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(load(engine, linker, artifact)?)
            }
        };
        let pre = loaded.pre.clone();
        let (mut store, stdout, stderr, tail) = new_store(engine, &self.port, options)?;
        let wake = self.interrupts.begin(Running::Call(id), options.timeout);
        let made = self.runtime.block_on(instantiate(&mut store, &pre, wake));
        let interrupted = self.interrupts.interrupted(id, options);
        self.interrupts.end(options.timeout.is_some());
        self.port.item_ended();
        let instance = match (made, interrupted) {
            (_, Some(e)) => return Err(e),
            (None, None) => {
                return Err(WireError::new(
                    ErrorKind::Cancelled,
                    "the open was cancelled",
                ));
            }
            (Some(Err(e)), None) => {
                return Err(WireError::new(
                    ErrorKind::Trap,
                    format!("instantiating the session's component: {e:#}"),
                ));
            }
            (Some(Ok(instance)), None) => instance,
        };
        open.insert(
            session,
            Held {
                key: artifact.key.clone(),
                live: Some(Ready {
                    options: store_options(options),
                    store,
                    instance,
                    stdout,
                    stderr,
                    tail,
                }),
                lost: None,
                table: HashMap::new(),
                next: 1,
            },
        );
        Ok(())
    }

    /// Calls `export` on session `session`'s instance. Of `mine`, the
    /// handles the host let go of, those the arguments do not name are
    /// dropped before the call, the others after it; all inside the call's
    /// interrupts.
    fn session_call(&mut self, session: u64, req: SessionItem<'_>) -> WireOutcome {
        let Item {
            id, args, options, ..
        } = req.item;
        let meter = Meter::start(options.cpu_time);
        let wake = self.interrupts.begin(Running::Call(id), options.timeout);
        let (outcome, mut report) = self.session_call_inner(session, req, wake);
        self.interrupts.end(options.timeout.is_some());
        self.port.item_ended();
        meter.stop(&mut report.measured);
        report.measured.bytes_in = args.len() as u64;
        report.measured.bytes_out = outcome.as_ref().map_or(0, Payload::len);
        (outcome, report)
    }

    /// [`session_call`](Executor::session_call) inside its interrupts.
    fn session_call_inner(
        &mut self,
        session: u64,
        req: SessionItem<'_>,
        wake: tokio::sync::oneshot::Receiver<()>,
    ) -> WireOutcome {
        let SessionItem { item, mine } = req;
        let Item {
            artifact,
            export,
            args,
            options,
            ..
        } = item;
        let mut report = Report::default();
        let (before, after): (Vec<u64>, Vec<u64>) = if mine.is_empty() {
            (mine, Vec::new())
        } else {
            let named = named_handles(args, session);
            mine.into_iter().partition(|h| !named.contains(h))
        };
        if let Err(e) = self.drop_handles(session, &before) {
            report.lost = Some(e.message.clone());
            return (Err(e), report);
        }
        let Sessions { made, jobs, open } = &mut self.sessions;
        let held = match open.get_mut(&session) {
            None => {
                report.lost = Some("it was closed".into());
                return (Err(lost_error("it was closed")), report);
            }
            Some(held) => held,
        };
        if let Some(why) = &held.lost {
            report.lost = Some(why.clone());
            return (Err(lost_error(why)), report);
        }
        let (Some((engine, linker)), Some(ready)) = (made.as_ref(), held.live.take()) else {
            let why = "its instance is gone".to_string();
            held.lose(why.clone());
            report.lost = Some(why.clone());
            return (Err(lost_error(&why)), report);
        };
        if held.key != artifact.key {
            held.live = Some(ready);
            let e = WireError::new(
                ErrorKind::Protocol,
                "a session call of another job than the session's",
            );
            return (Err(e), report);
        }
        if store_options(options) != ready.options {
            held.live = Some(ready);
            let e = WireError::new(
                ErrorKind::Config,
                "a session's calls run in the sandbox it opened with: env, preopens, stdio \
                 and the memory limit are set when the session opens, not per call",
            );
            return (Err(e), report);
        }
        let names = match jobs.get_mut(&held.key) {
            Some(loaded) => loaded.resource_names(),
            None => Arc::default(),
        };
        let mut handles = SessionHandles {
            session,
            table: &mut held.table,
            next: &mut held.next,
            names: &names,
            taken: Vec::new(),
            lifted: Vec::new(),
        };
        let cx = Context {
            engine,
            port: &self.port,
            linker,
            jobs,
            interrupts: &*self.interrupts,
        };
        let (outcome, left) = self.runtime.block_on(execute(
            cx,
            item,
            Some(ready),
            wake,
            &mut report,
            &mut handles,
        ));
        let taken = std::mem::take(&mut handles.taken);
        let lifted = std::mem::take(&mut handles.lifted);
        match left {
            Leftover::Instance(ready) => {
                held.live = Some(*ready);
                // The guest never ran: what the arguments took goes back.
                if outcome.is_err() {
                    held.table.extend(taken);
                }
            }
            _ => {
                let why = match &outcome {
                    Err(e) => format!("a call of {export} failed: {}", e.message),
                    Ok(_) => format!("a call of {export} left no instance"),
                };
                held.lose(why.clone());
                report.lost = Some(why);
            }
        }
        let mut results_at = RESULTS_AT;
        let outcome = outcome.and_then(|v| {
            let payload = encode_result(self.region.as_ref(), &v, &mut results_at);
            within_limit(payload, options.max_result)
        });
        // Handles of a result that is not sent (over its limit) would
        // never be dropped by the host: the guest drops them now.
        let unsent = if outcome.is_err() { lifted } else { Vec::new() };
        for drops in [unsent, after] {
            if report.lost.is_none()
                && let Err(e) = self.drop_handles(session, &drops)
            {
                report.lost = Some(e.message.clone());
            }
        }
        (outcome, report)
    }
}

/// An encoded nil, the value of a session's open, close and drop.
fn nil() -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(values::encode(&Value::Nil))
}
