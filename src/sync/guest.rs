//! A worker's seat at the registry: what its guest's operations go
//! through, and what ends with each of its calls.

use crate::locks::Locked as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{AnswerSink, Owner, Registry, Sink};
use crate::wire::GuestOp;

/// A worker's side of the registry, shared by the worker's handle and
/// whoever submits its guest's operations.
pub(crate) struct GuestState {
    registry: Arc<Registry>,
    worker: u64,
    /// Where the guest's answers go.
    sink: Arc<dyn AnswerSink>,
    /// The channel of the spawned job in flight, if any
    /// ([`crate::Pool::spawn`]).
    channel: Mutex<Option<String>>,
    /// Set once the call in flight has used the registry (or was fenced):
    /// only then does its end need the registry's lock.
    used: AtomicBool,
}

impl GuestState {
    /// Worker `worker`'s seat at `registry`, answered through `sink`.
    pub(crate) fn new(
        registry: Arc<Registry>,
        worker: u64,
        sink: Arc<dyn AnswerSink>,
    ) -> GuestState {
        GuestState {
            registry,
            worker,
            sink,
            channel: Mutex::new(None),
            used: AtomicBool::new(false),
        }
    }

    /// Gives the next call the job channel `key`.
    pub(crate) fn attach_channel(&self, key: String) {
        *self.channel.locked() = Some(key);
    }

    /// Submits the guest's operation `seq`.
    pub(crate) fn submit(&self, seq: u64, op: GuestOp) {
        self.used.store(true, Ordering::SeqCst);
        let channel = self.channel.locked().clone();
        let sink = Sink::Guest(self.sink.clone());
        self.registry.submit(
            Owner::Worker(self.worker),
            seq,
            op,
            sink,
            channel.as_deref(),
        );
    }

    /// The call was cancelled: fences the guest until it has stopped (see
    /// [`Registry::fence`]).
    pub(crate) fn fence(&self) {
        self.used.store(true, Ordering::SeqCst);
        self.registry.fence(self.worker);
    }

    /// The worker was killed: what its guest held is released at once, so
    /// that whoever learns of the kill finds it free.
    pub(crate) fn release_now(&self) {
        self.registry.release_all(Owner::Worker(self.worker));
    }

    /// The call ended, or the worker did: everything its guest held is
    /// released, and its job channel, if any, closes. A call that never
    /// used the registry costs no lock.
    pub(crate) fn call_ended(&self) {
        if let Some(key) = self.detach() {
            self.registry.end_channel(&key);
        }
    }

    /// The call's request was never taken (the worker died first), so it
    /// goes to another worker: its job channel is detached from this one,
    /// not ended, for the next to attach.
    pub(crate) fn call_not_started(&self) {
        self.detach();
    }

    /// Releases what the guest held, and takes its job channel's key.
    fn detach(&self) -> Option<String> {
        if self.used.swap(false, Ordering::SeqCst) {
            self.registry.release_all(Owner::Worker(self.worker));
        }
        self.channel.locked().take()
    }
}
