//! A guest's way to the host's registry and back: its operations go out
//! through an [`OpSender`], and it waits for each answer in [`Answers`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::answers::{Answers, Waited};
use super::interrupts::Stops;
use crate::wire::{Answer, GuestOp};

/// Sends a guest's operations to the registry: through the reply pipe from
/// a worker process, or straight in from a worker thread.
pub(crate) type OpSender = Box<dyn Fn(u64, GuestOp) -> io::Result<()> + Send + Sync>;

/// A worker's way to the registry.
pub(crate) struct Port {
    send: OpSender,
    answers: Arc<Answers>,
    /// Whether the call using the port was stopped.
    pub(super) stops: Arc<dyn Stops>,
    /// Shared by every port of a worker: answers are told apart by it.
    next_seq: Arc<AtomicU64>,
    /// Set once the running item has used an import.
    used: AtomicBool,
}

impl Port {
    pub(crate) fn new(send: OpSender, answers: Arc<Answers>, stops: Arc<dyn Stops>) -> Port {
        Port {
            send,
            answers,
            stops,
            next_seq: Arc::new(AtomicU64::new(1)),
            used: AtomicBool::new(false),
        }
    }

    /// A port for one of the calls a worker runs at once: its operations
    /// go out through `send`, it is stopped by `stops`, and it numbers
    /// its operations with this port's numbers, so that answers in the
    /// one inbox stay apart.
    pub(super) fn for_call(&self, send: OpSender, stops: Arc<dyn Stops>) -> Port {
        Port {
            send,
            answers: self.answers.clone(),
            stops,
            next_seq: self.next_seq.clone(),
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

    /// Sends the registry operation `op` and waits for its answer. The
    /// item's end then releases what it may hold.
    pub(super) fn call(&self, op: GuestOp, timeout_ms: Option<u64>) -> wasmtime::Result<Answer> {
        self.used.store(true, Ordering::SeqCst);
        self.exchange(op, timeout_ms)
    }

    /// Sends `op` for an `async func` import and waits for its answer
    /// without blocking the thread, so that the guest's other tasks go on.
    /// A stopped call drops the future, and with it the wait.
    pub(super) async fn call_async(&self, op: GuestOp) -> wasmtime::Result<Answer> {
        let stopped = || wasmtime::Error::msg("wasmpool: the call was interrupted while it waited");
        // A call being stopped starts nothing more on the host.
        if self.stops.is_stopped() {
            return Err(stopped());
        }
        self.used.store(true, Ordering::SeqCst);
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let waited = self.answers.wait_async(seq, || (self.send)(seq, op));
        match waited.await {
            Waited::Answer(a) => Ok(a),
            Waited::Stopped | Waited::Deadline => Err(stopped()),
            Waited::Lost(why) => Err(wasmtime::Error::msg(format!("wasmpool: {why}"))),
        }
    }

    /// Sends `op` and waits for its answer, giving up (as the host decides)
    /// after `timeout_ms`.
    pub(super) fn exchange(
        &self,
        op: GuestOp,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Answer> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let stopped = || self.stops.is_stopped();
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
