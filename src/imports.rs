//! The `wasmpool:sync` imports (`wit/sync/sync.wit`), on the worker's
//! side.
//!
//! Each import sends a [`GuestOp`] through the executor's [`Port`] and
//! blocks the guest until the host's answer ([`Answers`]). A guest blocked
//! here is stopped like one running wasm: a cancel or a timeout wakes it,
//! and the import fails, which ends the call with the interrupt's error. A timeout given to an import is the host's to
//! decide: once it passes, the guest asks the host to give up
//! ([`GuestOp::Abandon`]) and takes whichever answer comes, the timeout or
//! a grant that crossed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use crate::exec::{Interrupts, State};
use crate::platform::WakePipe;
use crate::protocol::{ToWorker, read_frame};
use crate::sync::{Answer, GuestOp, Inbox, Kind, Waited};

/// Where a waiting guest gets its answers.
pub(crate) enum Answers {
    /// A worker thread's: the registry posts them.
    Inbox(Arc<Inbox>),
    /// A worker process's: its request pipe, which the guest's thread reads
    /// itself while the guest waits (between calls, the worker's main loop
    /// reads it and drops stale answers). An interrupt rings `wake`.
    Pipe {
        requests: Arc<std::io::PipeReader>,
        wake: WakePipe,
    },
}

impl Answers {
    /// Wakes a waiting guest to check whether it was stopped.
    pub(crate) fn wake(&self) {
        match self {
            Answers::Inbox(inbox) => inbox.wake(),
            Answers::Pipe { wake, .. } => wake.ring(),
        }
    }

    fn wait(&self, seq: u64, deadline: Option<Instant>, stopped: impl Fn() -> bool) -> Waited {
        match self {
            Answers::Inbox(inbox) => inbox.wait(seq, deadline, stopped),
            Answers::Pipe { requests, wake } => wait_pipe(requests, wake, seq, deadline, stopped),
        }
    }
}

/// Reads the request pipe until the answer to `seq` arrives.
fn wait_pipe(
    requests: &std::io::PipeReader,
    wake: &WakePipe,
    seq: u64,
    deadline: Option<Instant>,
    stopped: impl Fn() -> bool,
) -> Waited {
    let mut buf = Vec::new();
    loop {
        if stopped() {
            return Waited::Stopped;
        }
        // Most answers come at once: poll before sleeping.
        let mut readable = crate::platform::spin_until_readable(requests, crate::exec::SPIN);
        if !readable {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Waited::Deadline;
            }
            match crate::platform::wait_readable(requests, wake.readable(), left) {
                Ok((r, woken)) => {
                    if woken {
                        wake.drain();
                    }
                    readable = r;
                }
                Err(e) => return Waited::Lost(format!("waiting for the host: {e}")),
            }
        }
        if !readable {
            continue;
        }
        match read_frame::<_, ToWorker>(requests, &mut buf) {
            Ok(Some(ToWorker::Answer { seq: s, answer })) if s == seq => {
                return Waited::Answer(answer);
            }
            // An answer left behind by an earlier, stopped wait.
            Ok(Some(ToWorker::Answer { .. })) => {}
            Ok(Some(ToWorker::Call(_))) => {
                return Waited::Lost("the host sent a call while one runs".into());
            }
            Ok(None) => return Waited::Lost("the host is gone".into()),
            Err(e) => return Waited::Lost(format!("reading from the host: {e}")),
        }
    }
}

/// A worker's way to the registry.
pub(crate) struct Port {
    send: crate::sync::OpSender,
    answers: Arc<Answers>,
    interrupts: Arc<Interrupts>,
    next_seq: AtomicU64,
    /// Set once the running item has used an import.
    used: AtomicBool,
}

impl Port {
    pub(crate) fn new(
        send: crate::sync::OpSender,
        answers: Arc<Answers>,
        interrupts: Arc<Interrupts>,
    ) -> Port {
        Port {
            send,
            answers,
            interrupts,
            next_seq: AtomicU64::new(1),
            used: AtomicBool::new(false),
        }
    }

    /// After each item: if it used an import, the host releases whatever
    /// it still holds.
    pub(crate) fn item_ended(&self) {
        if self.used.swap(false, Ordering::SeqCst) {
            let _ = (self.send)(0, GuestOp::Release);
        }
    }

    /// Sends `op` and waits for its answer.
    fn call(&self, op: GuestOp, timeout_ms: Option<u64>) -> wasmtime::Result<Answer> {
        self.used.store(true, Ordering::SeqCst);
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let stopped = || self.interrupts.is_stopped();
        (self.send)(seq, op)
            .map_err(|e| wasmtime::Error::msg(format!("wasmpool: the host is gone: {e}")))?;
        let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        let waited = match self.answers.wait(seq, deadline, stopped) {
            Waited::Deadline => {
                (self.send)(seq, GuestOp::Abandon { seq }).map_err(|e| {
                    wasmtime::Error::msg(format!("wasmpool: the host is gone: {e}"))
                })?;
                self.answers.wait(seq, None, stopped)
            }
            w => w,
        };
        match waited {
            Waited::Answer(a) => Ok(a),
            Waited::Stopped | Waited::Deadline => Err(wasmtime::Error::msg(
                "wasmpool: the call was interrupted while it waited",
            )),
            Waited::Lost(why) => Err(wasmtime::Error::msg(format!("wasmpool: {why}"))),
        }
    }
}

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
            Ok((port(&s).interrupts.is_stopped(),))
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
