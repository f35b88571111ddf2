//! How a running call is stopped from another thread: a cancel (from the
//! host) or a timeout (from the `wasmpool-timer` thread). Both bump the
//! engine's epoch, for a guest running wasm, and wake the call's future and
//! any `wasmpool:sync` wait, for a guest blocked in a host call.

use crate::locks::Locked as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use wasmtime::Engine;

use super::answers::Answers;
use crate::error::ErrorKind;
use crate::wire::{CallOptions, WireError};

/// What an executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Running {
    Nothing,
    /// An instance being made ahead of the next call.
    Preparing,
    /// A call: one item of the request with this id.
    Call(u64),
}

/// A [`Running`] in one atomic word, so that other threads read it without
/// a lock.
struct AtomicRunning(AtomicU64);

impl AtomicRunning {
    fn new(r: Running) -> AtomicRunning {
        AtomicRunning(AtomicU64::new(Self::pack(r)))
    }

    // Call ids count up from 0 and never come near the top of the range.
    fn pack(r: Running) -> u64 {
        match r {
            Running::Nothing => u64::MAX,
            Running::Preparing => u64::MAX - 1,
            Running::Call(id) => id,
        }
    }

    fn load(&self) -> Running {
        match self.0.load(Ordering::SeqCst) {
            u64::MAX => Running::Nothing,
            x if x == u64::MAX - 1 => Running::Preparing,
            id => Running::Call(id),
        }
    }

    fn store(&self, r: Running) {
        self.0.store(Self::pack(r), Ordering::SeqCst);
    }
}

/// What a running call asks to learn whether it was stopped, and how:
/// the executor's [`Interrupts`] for the call it runs, or a
/// [`CallStop`](super::lanes::CallStop) for one of the calls a worker runs
/// at once.
pub(crate) trait Stops: Send + Sync {
    /// Whether the call was cancelled or timed out.
    fn is_stopped(&self) -> bool;
    /// The error for call `id` if it timed out or was cancelled.
    fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError>;
    /// Readies the call's store, once armed, for how it is stopped. An
    /// armed store traps at any epoch bump; that is the default.
    fn arm(&self, _store: &mut wasmtime::Store<super::store::State>) {}
}

impl Stops for Interrupts {
    fn is_stopped(&self) -> bool {
        Interrupts::is_stopped(self)
    }

    fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError> {
        Interrupts::interrupted(self, id, options)
    }
}

/// The error for a call that was cancelled.
pub(super) fn cancelled() -> WireError {
    WireError::new(ErrorKind::Cancelled, "the call was cancelled")
}

/// The error for a call that ran past `timeout`.
pub(super) fn timed_out(timeout: Option<std::time::Duration>) -> WireError {
    WireError::new(
        ErrorKind::Timeout,
        format!(
            "the call ran past its timeout of {:?}",
            timeout.unwrap_or_default()
        ),
    )
}

/// How an executor's calls are interrupted, from other threads.
pub(crate) struct Interrupts {
    /// The executor's engine, whose epoch interrupts wasm. Replaced when
    /// an idle executor makes a new one.
    engine: Mutex<Engine>,
    /// The engine of the executor's sessions, once one has opened: its
    /// epoch moves with the other's.
    sessions: Mutex<Option<Engine>>,
    /// What runs now.
    current: AtomicRunning,
    /// The last call a cancel was asked for ([`Running::Nothing`]: none).
    cancelled: AtomicRunning,
    /// Counts [`Interrupts::begin`]s: the number of the item running,
    /// from 1. The calls of a batched request share their id, but not this.
    item: AtomicU64,
    /// The number of the last item that ran past its timeout; 0 for none,
    /// since items are numbered from 1.
    timed_out: AtomicU64,
    /// Wakes the running call's future on cancel or timeout.
    wake: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The running item's deadline, for the timer thread.
    deadline: Mutex<Option<Deadline>>,
    deadline_set: Condvar,
    /// The executor is gone: the timer thread exits.
    closed: AtomicBool,
    /// Where a guest blocked in a `wasmpool:sync` import waits.
    answers: Arc<Answers>,
}

/// When the running item times out.
#[derive(Clone, Copy)]
struct Deadline {
    /// The item's number (see `Interrupts::begin`).
    item: u64,
    at: Instant,
}

impl Interrupts {
    /// Cancels call `id`: the guest traps at its next epoch check, or its
    /// blocked host call is dropped. The flag is raised even when the call
    /// has not started yet (a cancel can overtake its call);
    /// [`Interrupts::interrupted`] reads it before the guest runs. An
    /// instance being instantiated ahead for a next call is interrupted too, so that
    /// a guest whose start-up never ends cannot hold the worker.
    pub(crate) fn cancel(&self, id: u64) {
        self.cancelled.store(Running::Call(id));
        let current = self.current.load();
        if current == Running::Call(id) || current == Running::Preparing {
            self.stop_running();
        }
    }

    /// Interrupts whatever runs now, whichever call it is.
    pub(crate) fn cancel_current(&self) {
        if let Running::Call(id) = self.current.load() {
            self.cancel(id);
        }
    }

    /// Times out item `item`, if it is still the one running.
    fn time_out(&self, item: u64) {
        self.timed_out.store(item, Ordering::SeqCst);
        if self.item.load(Ordering::SeqCst) == item && self.current.load() != Running::Nothing {
            self.stop_running();
        }
    }

    /// Bumps the epoch for a guest in wasm and wakes the running future for
    /// a guest blocked in a host call.
    fn stop_running(&self) {
        self.engine.locked().increment_epoch();
        if let Some(sessions) = &*self.sessions.locked() {
            sessions.increment_epoch();
        }
        if let Some(tx) = self.wake.locked().take() {
            let _ = tx.send(());
        }
        self.answers.wake();
    }

    /// Whether the running item was cancelled or timed out.
    pub(crate) fn is_stopped(&self) -> bool {
        let current = self.current.load();
        self.timed_out.load(Ordering::SeqCst) == self.item.load(Ordering::SeqCst)
            || (matches!(current, Running::Call(_)) && self.cancelled.load() == current)
    }

    /// The error for the running item of call `id` if it timed out or the
    /// call was cancelled.
    pub(super) fn interrupted(&self, id: u64, options: &CallOptions) -> Option<WireError> {
        if self.timed_out.load(Ordering::SeqCst) == self.item.load(Ordering::SeqCst) {
            Some(timed_out(options.timeout))
        } else if self.cancelled.load() == Running::Call(id) {
            Some(cancelled())
        } else {
            None
        }
    }

    /// Marks `running` (a call, or an instance being instantiated ahead)
    /// as running, and arms its deadline. Returns the receiver its interrupt wakes.
    pub(super) fn begin(
        &self,
        running: Running,
        timeout: Option<std::time::Duration>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.wake.locked() = Some(tx);
        let item = self.item.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.store(running);
        if let Some(timeout) = timeout {
            *self.deadline.locked() = Some(Deadline {
                item,
                at: Instant::now() + timeout,
            });
            self.deadline_set.notify_one();
        }
        rx
    }

    /// Marks the end of what [`Interrupts::begin`] started.
    pub(super) fn end(&self, timed: bool) {
        self.current.store(Running::Nothing);
        if timed {
            self.deadline.locked().take();
        }
        self.wake.locked().take();
    }

    /// The `wasmpool-timer` thread: interrupts the running call when its
    /// deadline passes; exits once the executor is dropped.
    pub(super) fn timer_loop(&self) {
        let mut deadline = self.deadline.locked();
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            deadline = match *deadline {
                None => crate::locks::unpoisoned(self.deadline_set.wait(deadline)),
                Some(Deadline { item, at }) => {
                    let now = Instant::now();
                    if now >= at {
                        *deadline = None;
                        drop(deadline);
                        self.time_out(item);
                        self.deadline.locked()
                    } else {
                        crate::locks::unpoisoned(self.deadline_set.wait_timeout(deadline, at - now))
                            .0
                    }
                }
            };
        }
    }
}

impl Interrupts {
    /// Interrupts for calls on `engine`'s stores; a guest waiting for an
    /// answer waits on `answers`.
    pub(super) fn new(engine: Engine, answers: Arc<Answers>) -> Interrupts {
        Interrupts {
            engine: Mutex::new(engine),
            sessions: Mutex::new(None),
            current: AtomicRunning::new(Running::Nothing),
            cancelled: AtomicRunning::new(Running::Nothing),
            item: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            wake: Mutex::new(None),
            deadline: Mutex::new(None),
            deadline_set: Condvar::new(),
            closed: AtomicBool::new(false),
            answers,
        }
    }

    /// Interrupts calls on `engine`'s stores from now on. Only between
    /// calls: a store of the old engine would not see its epoch move.
    pub(super) fn set_engine(&self, engine: Engine) {
        *self.engine.locked() = engine;
    }

    /// Interrupts calls on the stores of `engine`, the sessions' engine,
    /// too.
    pub(super) fn set_session_engine(&self, engine: Engine) {
        *self.sessions.locked() = Some(engine);
    }

    /// The executor is gone: ends the timer thread.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _guard = self.deadline.locked();
        self.deadline_set.notify_one();
    }
}
