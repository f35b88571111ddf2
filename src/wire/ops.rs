//! The `wasmpool:sync` operations a guest (or a host handle) asks of the
//! pool's registry, and their answers. They travel in
//! [`FromWorker::Sync`](super::FromWorker::Sync) and
//! [`ToWorker::Answer`](super::ToWorker::Answer) frames, so a change here is
//! a change of the protocol.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::http::{HttpFailure, HttpRequest, HttpResponse};

/// The kinds of named primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Queue,
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Semaphore => "semaphore",
            Kind::Event => "event",
            Kind::Condition => "condition",
            Kind::Barrier => "barrier",
        }
    }
}

/// An operation on the registry, from a guest or from a host handle.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum GuestOp {
    Open {
        name: String,
        kind: Kind,
    },
    QueuePut {
        name: String,
        value: ByteBuf,
    },
    QueueGet {
        name: String,
    },
    QueueTaskDone {
        name: String,
    },
    QueueJoin {
        name: String,
    },
    QueueClose {
        name: String,
    },
    QueueLen {
        name: String,
    },
    LockAcquire {
        name: String,
    },
    LockRelease {
        name: String,
    },
    SemaphoreAcquire {
        name: String,
    },
    SemaphoreRelease {
        name: String,
    },
    EventSet {
        name: String,
    },
    EventClear {
        name: String,
    },
    EventIsSet {
        name: String,
    },
    EventWait {
        name: String,
    },
    ConditionWait {
        name: String,
    },
    ConditionNotify {
        name: String,
        n: u32,
    },
    BarrierWait {
        name: String,
    },
    /// A value from the job to its handle.
    Emit {
        value: ByteBuf,
    },
    /// The next value from the handle to the job.
    Recv,
    /// The guest's timeout for operation `seq` passed: answer it with
    /// [`Answer::Timeout`] if it is still waiting.
    Abandon {
        seq: u64,
    },
    /// The guest's item ended: release everything it holds.
    Release,
    /// A call of the host function the guest imports as `function`
    /// (fully qualified), with its arguments as a MessagePack array.
    /// Served by the pool's host functions, never by the registry; answered
    /// with [`Answer::Value`] (the MessagePack result) or
    /// [`Answer::HostFailed`].
    Host {
        function: String,
        args: ByteBuf,
        /// The resource type the function returns a handle of (the first,
        /// if its result holds several), as the guest imports it: the name
        /// of the values it makes with `HostContext::new_resource`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        returns: Option<String>,
    },
    /// An outgoing `wasi:http` request of the guest, for the host to check
    /// against the call's allowlist and make; answered with
    /// [`Answer::Http`].
    Http(Box<HttpRequest>),
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Done,
    Value(ByteBuf),
    /// No value: the queue or channel is closed and empty.
    Nothing,
    Bool(bool),
    Count(u64),
    Timeout,
    NotFound(String),
    Closed,
    Invalid(String),
    /// A host function failed. `error` names the host's own error, kept on
    /// the host to be the caller's error's source.
    HostFailed {
        message: String,
        error: Option<u64>,
    },
    /// The response to a [`GuestOp::Http`] request, or why there is none.
    Http(Box<Result<HttpResponse, HttpFailure>>),
}

impl Answer {
    /// The answer's kind, without its payload, for traces.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Answer::Done => "done",
            Answer::Value(_) => "value",
            Answer::Nothing => "nothing",
            Answer::Bool(_) => "bool",
            Answer::Count(_) => "count",
            Answer::Timeout => "timeout",
            Answer::NotFound(_) => "not-found",
            Answer::Closed => "closed",
            Answer::Invalid(_) => "invalid",
            Answer::HostFailed { .. } => "host-failed",
            Answer::Http(_) => "http",
        }
    }
}
