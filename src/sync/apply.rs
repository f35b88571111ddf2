//! [`Registry::submit`](super::Registry::submit)'s body, under the lock: one
//! operation, dispatched to its primitive.

use super::{Outbox, Owner, Prim, Prims, Sink, TO_GUEST, TO_HOST, Waiter};
use crate::wire::{Answer, GuestOp, Kind};

/// Runs `op` for waiter `w`. `channel` is the job channel `w` speaks on:
/// a guest's values go to the host's direction, a host handle's to the
/// guest's.
pub(super) fn apply(
    all: &mut Prims,
    w: Waiter,
    op: GuestOp,
    channel: Option<&str>,
    out: &mut Outbox,
) {
    let owner = w.owner;
    match (&op, owner) {
        (GuestOp::Release, _) => return all.release_all(owner, out),
        (_, Owner::Worker(worker)) if all.fenced.contains(&worker) => return,
        (GuestOp::Abandon { seq }, _) => return all.abandon(owner, *seq, out),
        _ => {}
    }
    if let Some(why) = &all.refuse_named
        && !matches!(
            op,
            GuestOp::Emit { .. } | GuestOp::Recv | GuestOp::Host { .. } | GuestOp::Http(_)
        )
    {
        let _ = out.give(w, Answer::NotFound(why.clone()));
        return;
    }
    let prims = &mut all.map;
    // The primitive `name` of the kind the pattern matches, or answer
    // not-found.
    macro_rules! prim {
        ($name:expr, $kind:expr, $pat:pat => $body:expr) => {{
            match prims.get_mut(&$name) {
                Some($pat) => $body,
                _ => {
                    let _ = out.give(w, not_found(&$name, $kind));
                }
            }
        }};
    }
    // The same, for operations answered at once with what `$body` gives.
    macro_rules! now {
        ($name:expr, $kind:expr, $pat:pat => $body:expr) => {{
            let answer = match prims.get_mut(&$name) {
                Some($pat) => $body,
                _ => not_found(&$name, $kind),
            };
            let _ = out.give(w, answer);
        }};
    }
    match op {
        GuestOp::Open { name, kind } => {
            let answer = match prims.get(&name).and_then(Prim::spec) {
                Some(s) if s.kind() == kind => Answer::Done,
                _ => not_found(&name, kind),
            };
            let _ = out.give(w, answer);
        }
        GuestOp::QueuePut { name, value } => {
            prim!(name, Kind::Queue, Prim::Queue(q) => q.put(w, value.into_vec(), out))
        }
        GuestOp::QueueGet { name } => prim!(name, Kind::Queue, Prim::Queue(q) => q.get(w, out)),
        GuestOp::QueueTaskDone { name } => {
            now!(name, Kind::Queue, Prim::Queue(q) => q.task_done(owner, out))
        }
        GuestOp::QueueJoin { name } => prim!(name, Kind::Queue, Prim::Queue(q) => q.join(w, out)),
        GuestOp::QueueClose { name } => now!(name, Kind::Queue, Prim::Queue(q) => {
            q.close(out);
            Answer::Done
        }),
        GuestOp::QueueLen { name } => {
            now!(name, Kind::Queue, Prim::Queue(q) => Answer::Count(q.len() as u64))
        }
        GuestOp::LockAcquire { name } => match prims.get_mut(&name) {
            Some(Prim::Lock(l)) => l.acquire(w, out),
            Some(Prim::Condition(c)) => c.lock().acquire(w, out),
            _ => {
                let _ = out.give(w, not_found(&name, Kind::Lock));
            }
        },
        GuestOp::LockRelease { name } => {
            let answer = match prims.get_mut(&name) {
                Some(Prim::Lock(l)) => l.release(owner, out),
                Some(Prim::Condition(c)) => c.lock().release(owner, out),
                _ => not_found(&name, Kind::Lock),
            };
            let _ = out.give(w, answer);
        }
        GuestOp::SemaphoreAcquire { name } => {
            prim!(name, Kind::Semaphore, Prim::Semaphore(s) => s.acquire(w, out))
        }
        GuestOp::SemaphoreRelease { name } => {
            now!(name, Kind::Semaphore, Prim::Semaphore(s) => s.release(owner, out))
        }
        GuestOp::EventSet { name } => now!(name, Kind::Event, Prim::Event(e) => {
            e.set(out);
            Answer::Done
        }),
        GuestOp::EventClear { name } => now!(name, Kind::Event, Prim::Event(e) => {
            e.clear();
            Answer::Done
        }),
        GuestOp::EventIsSet { name } => {
            now!(name, Kind::Event, Prim::Event(e) => Answer::Bool(e.is_set()))
        }
        GuestOp::EventWait { name } => prim!(name, Kind::Event, Prim::Event(e) => e.wait(w, out)),
        GuestOp::ConditionWait { name } => {
            prim!(name, Kind::Condition, Prim::Condition(c) => c.wait(w, out))
        }
        GuestOp::ConditionNotify { name, n } => {
            now!(name, Kind::Condition, Prim::Condition(c) => c.notify(owner, n))
        }
        GuestOp::BarrierWait { name } => {
            prim!(name, Kind::Barrier, Prim::Barrier(b) => b.wait(w, out))
        }
        GuestOp::Emit { value } => match channel.and_then(|k| prims.get_mut(k)) {
            Some(Prim::Channel(c)) => {
                let dir = if is_host(&w) { TO_GUEST } else { TO_HOST };
                c[dir].put(w, value.into_vec(), out);
            }
            _ => {
                let _ = out.give(w, Answer::Closed);
            }
        },
        GuestOp::Recv => match channel.and_then(|k| prims.get_mut(k)) {
            Some(Prim::Channel(c)) => {
                let dir = if is_host(&w) { TO_HOST } else { TO_GUEST };
                c[dir].get(w, out);
            }
            _ => {
                let _ = out.give(w, Answer::Nothing);
            }
        },
        // The worker's host thread hands these to the pool's host
        // functions; one that reaches the registry is answered, not lost.
        GuestOp::Host { function, .. } => {
            let message = format!("host function {function} was sent to the registry");
            let _ = out.give(
                w,
                Answer::HostFailed {
                    message,
                    error: None,
                },
            );
        }
        // Likewise outgoing HTTP, which is the host's to check: one that
        // reaches the registry is denied.
        GuestOp::Http(_) => {
            let why = "an outgoing HTTP request was sent to the registry".to_string();
            let denied = crate::wire::HttpFailure::Denied(why);
            let _ = out.give(w, Answer::Http(Box::new(Err(denied))));
        }
        GuestOp::Abandon { .. } | GuestOp::Release => unreachable!("handled above"),
    }
}

/// Whether `w` is the host's side of a channel.
fn is_host(w: &Waiter) -> bool {
    matches!(w.sink, Sink::Host(_))
}

fn not_found(name: &str, kind: Kind) -> Answer {
    Answer::NotFound(format!("the pool has no {} named {name:?}", kind.name()))
}
