//! The `wasmpool:sync` imports (`wit/sync/sync.wit`), on the worker's
//! side.
//!
//! Each import sends a [`GuestOp`] through the executor's [`Port`] and
//! blocks the guest until the host's answer. A guest blocked
//! here is stopped like one running wasm: a cancel or a timeout wakes it,
//! and the import fails, which ends the call with the interrupt's error.
//! A timeout given to an import is the host's to decide: once it passes, the guest asks the host to give up
//! ([`GuestOp::Abandon`]) and takes whichever answer comes, the timeout or
//! a grant that crossed it.

use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::port::Port;
use super::store::State;
use crate::wire::{Answer, GuestOp, Kind};

/// `wasmpool:sync/types.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(variant)]
enum SyncError {
    #[component(name = "timeout")]
    Timeout,
    #[component(name = "not-found")]
    NotFound(String),
    #[component(name = "closed")]
    Closed,
    #[component(name = "invalid")]
    Invalid(String),
}

/// `wasmpool:sync/types.kind`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy)]
#[component(enum)]
#[allow(dead_code, reason = "made by lifting from the guest")]
#[repr(u8)]
enum WitKind {
    #[component(name = "queue")]
    Queue,
    #[component(name = "lock")]
    Lock,
    #[component(name = "rlock")]
    RLock,
    #[component(name = "semaphore")]
    Semaphore,
    #[component(name = "event")]
    Event,
    #[component(name = "condition")]
    Condition,
    #[component(name = "barrier")]
    Barrier,
}

impl From<WitKind> for Kind {
    fn from(k: WitKind) -> Kind {
        match k {
            WitKind::Queue => Kind::Queue,
            WitKind::Lock => Kind::Lock,
            WitKind::RLock => Kind::RLock,
            WitKind::Semaphore => Kind::Semaphore,
            WitKind::Event => Kind::Event,
            WitKind::Condition => Kind::Condition,
            WitKind::Barrier => Kind::Barrier,
        }
    }
}

/// An answer that is an error, or the value `ok` makes of it.
fn answer<T>(a: Answer, ok: impl FnOnce(Answer) -> Option<T>) -> Result<T, SyncError> {
    match a {
        Answer::Timeout => Err(SyncError::Timeout),
        Answer::NotFound(m) => Err(SyncError::NotFound(m)),
        Answer::Closed => Err(SyncError::Closed),
        Answer::Invalid(m) => Err(SyncError::Invalid(m)),
        other => {
            let what = format!("{other:?}");
            ok(other).ok_or(SyncError::Invalid(format!("unexpected answer {what}")))
        }
    }
}

fn unit(a: Answer) -> Option<()> {
    matches!(a, Answer::Done).then_some(())
}

fn bytes(a: Answer) -> Option<Option<Vec<u8>>> {
    match a {
        Answer::Value(v) => Some(Some(v.into_vec())),
        Answer::Nothing => Some(None),
        _ => None,
    }
}

fn boolean(a: Answer) -> Option<bool> {
    match a {
        Answer::Bool(b) => Some(b),
        _ => None,
    }
}

fn count(a: Answer) -> Option<u64> {
    match a {
        Answer::Count(n) => Some(n),
        _ => None,
    }
}

fn port(store: &StoreContextMut<'_, State>) -> Arc<Port> {
    store.data().port.clone()
}

type R<T> = wasmtime::Result<(Result<T, SyncError>,)>;

/// Adds `wasmpool:sync/channel` and `wasmpool:sync/primitives` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    // Types only; a component that uses them imports it.
    linker.instance("wasmpool:sync/types@0.1.0")?;
    let mut channel = linker.instance("wasmpool:sync/channel@0.1.0")?;
    channel.func_wrap(
        "emit",
        |s: StoreContextMut<'_, State>, (value, timeout): (Vec<u8>, Option<u64>)| -> R<()> {
            let op = GuestOp::Emit {
                value: value.into(),
            };
            Ok((answer(port(&s).call(op, timeout)?, unit),))
        },
    )?;
    channel.func_wrap(
        "recv",
        |s: StoreContextMut<'_, State>, (timeout,): (Option<u64>,)| -> R<Option<Vec<u8>>> {
            Ok((answer(port(&s).call(GuestOp::Recv, timeout)?, bytes),))
        },
    )?;
    channel.func_wrap(
        "cancelled",
        |s: StoreContextMut<'_, State>, (): ()| -> wasmtime::Result<(bool,)> {
            Ok((port(&s).stops.is_stopped(),))
        },
    )?;

    let mut prims = linker.instance("wasmpool:sync/primitives@0.1.0")?;
    prims.func_wrap(
        "open",
        |s: StoreContextMut<'_, State>, (name, kind): (String, WitKind)| -> R<()> {
            let op = GuestOp::Open {
                name,
                kind: kind.into(),
            };
            Ok((answer(port(&s).call(op, None)?, unit),))
        },
    )?;
    prims.func_wrap(
        "queue-put",
        |s: StoreContextMut<'_, State>,
         (name, value, timeout): (String, Vec<u8>, Option<u64>)|
         -> R<()> {
            let op = GuestOp::QueuePut {
                name,
                value: value.into(),
            };
            Ok((answer(port(&s).call(op, timeout)?, unit),))
        },
    )?;
    prims.func_wrap(
        "queue-get",
        |s: StoreContextMut<'_, State>,
         (name, timeout): (String, Option<u64>)|
         -> R<Option<Vec<u8>>> {
            let op = GuestOp::QueueGet { name };
            Ok((answer(port(&s).call(op, timeout)?, bytes),))
        },
    )?;
    // The blocking operations of one name and a timeout, answered `Done`.
    macro_rules! blocking_unit {
        ($($wit:literal => $op:ident),* $(,)?) => {$(
            prims.func_wrap(
                $wit,
                |s: StoreContextMut<'_, State>, (name, timeout): (String, Option<u64>)| -> R<()> {
                    Ok((answer(port(&s).call(GuestOp::$op { name }, timeout)?, unit),))
                },
            )?;
        )*};
    }
    blocking_unit!(
        "queue-join" => QueueJoin,
        "lock-acquire" => LockAcquire,
        "semaphore-acquire" => SemaphoreAcquire,
        "event-wait" => EventWait,
    );
    // The operations of one name that do not block, answered `Done`.
    macro_rules! immediate_unit {
        ($($wit:literal => $op:ident),* $(,)?) => {$(
            prims.func_wrap(
                $wit,
                |s: StoreContextMut<'_, State>, (name,): (String,)| -> R<()> {
                    Ok((answer(port(&s).call(GuestOp::$op { name }, None)?, unit),))
                },
            )?;
        )*};
    }
    immediate_unit!(
        "queue-task-done" => QueueTaskDone,
        "queue-close" => QueueClose,
        "lock-release" => LockRelease,
        "semaphore-release" => SemaphoreRelease,
        "event-set" => EventSet,
        "event-clear" => EventClear,
    );
    prims.func_wrap(
        "queue-len",
        |s: StoreContextMut<'_, State>, (name,): (String,)| -> R<u64> {
            let op = GuestOp::QueueLen { name };
            Ok((answer(port(&s).call(op, None)?, count),))
        },
    )?;
    prims.func_wrap(
        "event-is-set",
        |s: StoreContextMut<'_, State>, (name,): (String,)| -> R<bool> {
            let op = GuestOp::EventIsSet { name };
            Ok((answer(port(&s).call(op, None)?, boolean),))
        },
    )?;
    prims.func_wrap(
        "condition-wait",
        |s: StoreContextMut<'_, State>, (name, timeout): (String, Option<u64>)| -> R<bool> {
            let op = GuestOp::ConditionWait { name };
            Ok((answer(port(&s).call(op, timeout)?, boolean),))
        },
    )?;
    prims.func_wrap(
        "condition-notify",
        |s: StoreContextMut<'_, State>, (name, n): (String, u32)| -> R<()> {
            let op = GuestOp::ConditionNotify { name, n };
            Ok((answer(port(&s).call(op, None)?, unit),))
        },
    )?;
    prims.func_wrap(
        "barrier-wait",
        |s: StoreContextMut<'_, State>, (name, timeout): (String, Option<u64>)| -> R<u32> {
            let op = GuestOp::BarrierWait { name };
            let place = answer(port(&s).call(op, timeout)?, count)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            Ok((place,))
        },
    )?;
    Ok(())
}
