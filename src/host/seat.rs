//! One worker's place at the pool's host functions, and the scope of the
//! call it runs.

use crate::locks::Locked as _;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt as _;
use serde_bytes::ByteBuf;

use super::http::{self, Outbound};
use super::resources::{DROP_FUNCTION, HostTable};
use super::{BoxError, Failure, HostContext, HostFns, HostFuture};
use crate::sync::AnswerSink;
use crate::wire::{Answer, HttpFailure, HttpRequest};

/// What the host functions called during one request share: set when the
/// request starts on a worker, ended when it ends.
pub(crate) struct Scope {
    export: Arc<str>,
    data: Option<Arc<dyn Any + Send + Sync>>,
    runtime: tokio::runtime::Handle,
    /// The outbound HTTP the call may make, if any.
    http: Option<Arc<Outbound>>,
    /// Host futures and outbound requests still running on the runtime; aborted (dropped) when
    /// the call ends, however it ends.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The host functions' own errors, by id: each becomes the source of
    /// the caller's error.
    errors: Mutex<HashMap<u64, BoxError>>,
    next_error: AtomicU64,
    /// The host values the guest holds handles to: the call's own, or its
    /// session's.
    resources: Arc<HostTable>,
}

impl Scope {
    /// The scope of a call of `export`, whose host functions run on
    /// `runtime` and see `data`, and whose guest may make the outbound
    /// requests `http` allows.
    pub(crate) fn new(
        export: String,
        data: Option<Arc<dyn Any + Send + Sync>>,
        runtime: tokio::runtime::Handle,
        http: Option<Arc<Outbound>>,
        resources: Option<Arc<HostTable>>,
    ) -> Arc<Scope> {
        Arc::new(Scope {
            export: export.into(),
            data,
            runtime,
            http,
            tasks: Mutex::default(),
            errors: Mutex::default(),
            next_error: AtomicU64::new(0),
            resources: resources.unwrap_or_default(),
        })
    }

    /// Takes the host function error the worker reported as `id`.
    pub(crate) fn take_error(&self, id: u64) -> Option<BoxError> {
        self.errors.locked().remove(&id)
    }

    fn keep_error(&self, e: BoxError) -> u64 {
        let id = self.next_error.fetch_add(1, Ordering::Relaxed);
        self.errors.locked().insert(id, e);
        id
    }

    /// Keeps `task`, to abort it when the call ends.
    fn track(&self, task: tokio::task::AbortHandle) {
        let mut tasks = self.tasks.locked();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Drops every host future still pending.
    fn abort_all(&self) {
        for task in self.tasks.locked().drain(..) {
            task.abort();
        }
    }

    /// The answer to the guest for a host function's outcome.
    fn answer(&self, function: &str, outcome: Result<Vec<u8>, Failure>) -> Answer {
        match outcome {
            Ok(bytes) => Answer::Value(ByteBuf::from(bytes)),
            Err(Failure::Func(e)) => {
                let message = format!("host function {function} failed: {e}");
                Answer::HostFailed {
                    message,
                    error: Some(self.keep_error(e)),
                }
            }
            Err(Failure::Mismatch(m)) => Answer::HostFailed {
                message: format!("host function {function}: {m}"),
                error: None,
            },
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("export", &self.export)
            .finish_non_exhaustive()
    }
}

/// A host function panicked: its message, as the caller's error's source.
#[derive(Debug)]
struct Panicked(String);

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

fn panicked(payload: Box<dyn Any + Send>) -> Failure {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    Failure::Func(Box::new(Panicked(what)))
}

/// One worker's place at the pool's host functions.
pub(crate) struct Seat {
    fns: Arc<HostFns>,
    /// Where the worker's guest gets its answers.
    sink: Arc<dyn AnswerSink>,
    pid: Option<u32>,
    scope: Mutex<Option<Arc<Scope>>>,
}

impl Seat {
    pub(crate) fn new(fns: Arc<HostFns>, sink: Arc<dyn AnswerSink>, pid: Option<u32>) -> Seat {
        Seat {
            fns,
            sink,
            pid,
            scope: Mutex::new(None),
        }
    }

    /// Whether the pool has host functions at all; without any, calls
    /// need no scope.
    pub(crate) fn is_used(&self) -> bool {
        !self.fns.is_empty()
    }

    /// The worker starts a call in `scope`.
    pub(crate) fn begin(&self, scope: Arc<Scope>) {
        // A scope left over is dropped after the lock: its data is the
        // user's, and so is its `Drop`.
        let old = self.scope.locked().replace(scope);
        drop(old);
    }

    /// The call ended, or was cancelled: its pending host futures are
    /// aborted, and the guest's later calls (a stopping guest may still
    /// make one) are refused. Returns the call's scope, which holds the
    /// user's [`data`](crate::Call::data) and errors: drop it after every
    /// lock the caller holds, since its `Drop` may run user code.
    #[must_use = "drop the scope after the locks held"]
    pub(crate) fn end(&self) -> Option<Arc<Scope>> {
        let scope = self.scope.locked().take();
        if let Some(scope) = &scope {
            scope.abort_all();
        }
        scope
    }

    /// Runs the host function the guest imports as `function` for the
    /// guest's operation `seq`, and answers it.
    ///
    /// The future is polled once here, in the runtime's context: a
    /// function that is ready at once (most are) is answered without a hop
    /// to another thread. One that is not moves to the runtime, and is
    /// dropped if the call ends first.
    pub(crate) fn dispatch(
        &self,
        seq: u64,
        function: String,
        args: Vec<u8>,
        returns: Option<String>,
    ) {
        let scope = self.scope.locked().clone();
        let Some(scope) = scope else {
            let message = format!("host function {function} was called outside a call");
            let answer = Answer::HostFailed {
                message,
                error: None,
            };
            return self.sink.deliver(seq, answer);
        };
        if function == DROP_FUNCTION {
            // The guest dropped a handle of a host value.
            let id = crate::values::decode(&args)
                .ok()
                .and_then(|v| match v {
                    crate::values::Value::Array(a) => a.into_iter().next(),
                    _ => None,
                })
                .and_then(|v| match v {
                    crate::values::Value::Int(i) => u32::try_from(i).ok(),
                    _ => None,
                });
            if let Some(id) = id {
                scope.resources.remove(id);
            }
            let nil = ByteBuf::from(crate::values::encode(&crate::values::Value::Nil));
            return self.sink.deliver(seq, Answer::Value(nil));
        }
        let Some(f) = self.fns.find(&function) else {
            let message = format!("no host function is registered for {function}");
            let answer = Answer::HostFailed {
                message,
                error: None,
            };
            return self.sink.deliver(seq, answer);
        };
        let cx = HostContext {
            function: function.as_str().into(),
            export: scope.export.clone(),
            pid: self.pid,
            data: scope.data.clone(),
            resources: scope.resources.clone(),
            returns: returns.map(Into::into),
        };
        let _runtime = scope.runtime.enter();
        let mut fut: HostFuture = f(cx, args);
        let mut first = Context::from_waker(Waker::noop());
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut first)));
        let outcome = match polled {
            Ok(Poll::Ready(outcome)) => outcome,
            Err(payload) => Err(panicked(payload)),
            Ok(Poll::Pending) => {
                let sink = self.sink.clone();
                let task_scope = scope.clone();
                let task = scope.runtime.spawn(async move {
                    let outcome = AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|payload| Err(panicked(payload)));
                    sink.deliver(seq, task_scope.answer(&function, outcome));
                });
                self.track(&scope, task.abort_handle());
                return;
            }
        };
        self.sink.deliver(seq, scope.answer(&function, outcome));
    }

    /// Keeps `task` in `scope`, aborting it at once if the call ended
    /// meanwhile (it did not see this task).
    fn track(&self, scope: &Arc<Scope>, task: tokio::task::AbortHandle) {
        scope.track(task);
        let current = self.scope.locked().clone();
        if !current.is_some_and(|c| Arc::ptr_eq(&c, scope)) {
            scope.abort_all();
        }
    }

    /// Checks the guest's outgoing request `req` (its operation `seq`)
    /// against the outbound HTTP of the call in flight, as the host holds
    /// it, and makes it on the `wasmpool-http` runtime if it passes. The
    /// answer is the response, or the `wasi:http` error the guest gets:
    /// denied when the call has no grant (or no call is in flight).
    pub(crate) fn http(&self, seq: u64, req: Box<HttpRequest>) {
        let scope = self.scope.locked().clone();
        let deny = |why: String| {
            tracing::info!(pid = self.pid, uri = %req.uri, "outbound HTTP denied: {why}");
            Answer::Http(Box::new(Err(HttpFailure::Denied(why))))
        };
        let Some((scope, outbound)) = scope.and_then(|s| s.http.clone().map(|h| (s, h))) else {
            let answer = deny("the call may make no outbound HTTP requests (allow_http)".into());
            return self.sink.deliver(seq, answer);
        };
        if let Err(too_many) = outbound.take_turn() {
            tracing::info!(pid = self.pid, uri = %req.uri, "outbound HTTP refused: {too_many:?}");
            return self
                .sink
                .deliver(seq, Answer::Http(Box::new(Err(too_many))));
        }
        let runtime = match http::runtime() {
            Ok(rt) => rt,
            Err(why) => {
                let failure = HttpFailure::Protocol(why);
                return self.sink.deliver(seq, Answer::Http(Box::new(Err(failure))));
            }
        };
        let sink = self.sink.clone();
        let pid = self.pid;
        let task = runtime.spawn(async move {
            let uri = req.uri.clone();
            let outcome = outbound.fetch(*req).await;
            match &outcome {
                Ok(r) => tracing::debug!(pid, %uri, status = r.status, bytes = r.body.len(), "outbound HTTP"),
                Err(HttpFailure::Denied(why)) => {
                    tracing::info!(pid, %uri, "outbound HTTP denied: {why}")
                }
                Err(e) => tracing::debug!(pid, %uri, "outbound HTTP failed: {e:?}"),
            }
            sink.deliver(seq, Answer::Http(Box::new(outcome)));
        });
        self.track(&scope, task.abort_handle());
    }
}

impl fmt::Debug for Seat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seat")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}
