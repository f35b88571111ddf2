//! A worker thread, `wasmpool-thread-{id}`: an executor in the host
//! process, fed through a mailbox.

use crate::locks::Locked as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Books, Grants, Link, Request, Shared, Spec, Worker};
use crate::error::{Error, ErrorKind};
use crate::host::Seat;
use crate::idle::Idler;
use crate::runtime::{Answers, Executor, Inbox, OpSender, SPIN};
use crate::sync::{AnswerSink, GuestState, Registry};
use crate::wire::{Answer, CallRequest, GuestOp};

/// A worker thread's guest gets its answers in its inbox.
struct InboxSink(Arc<Inbox>);

impl AnswerSink for InboxSink {
    fn deliver(&self, seq: u64, answer: Answer) {
        self.0.post(seq, answer);
    }
}

/// The `wasmpool-thread-{id}` thread: a worker in this process.
pub(super) fn run(
    books: Arc<dyn Books>,
    registry: Arc<Registry>,
    id: u64,
    spec: Spec,
    ready: oneshot::Sender<Result<Worker, Error>>,
) {
    let inbox = Arc::new(Inbox::default());
    let sink: Arc<dyn AnswerSink> = Arc::new(InboxSink(inbox.clone()));
    let guest = Arc::new(GuestState::new(registry, id, sink.clone()));
    let host = Arc::new(Seat::new(spec.host_fns.clone(), sink, None));
    let send: OpSender = {
        let guest = guest.clone();
        let host = host.clone();
        Box::new(move |seq, op| {
            match op {
                GuestOp::Host {
                    function,
                    args,
                    returns,
                } => host.dispatch(seq, function, args.into_vec(), returns),
                GuestOp::Http(req) => host.http(seq, req),
                op => guest.submit(seq, op),
            }
            Ok(())
        })
    };
    let answers = Arc::new(Answers::inbox(inbox));
    let mut executor = match Executor::new(&spec.settings, spec.reuse_instances, answers, send) {
        Ok(e) => e,
        Err(what) => {
            let _ = ready.send(Err(Error::new(
                ErrorKind::Spawn,
                format!("worker thread {id}: {what}"),
            )));
            return;
        }
    };
    let shared = Arc::new(Shared::new(
        None,
        Some(executor.interrupts()),
        guest,
        host,
        None,
        Arc::downgrade(&books),
    ));
    books.register(id, shared.clone());
    tracing::debug!(worker = id, "worker thread started");
    let mailbox = Arc::new(Mailbox::default());
    let worker = Worker {
        id,
        link: Link::Thread {
            requests: mailbox.clone(),
        },
        shared: shared.clone(),
        calls: 0,
        last_used: Instant::now(),
        // Threads are not confined: they reach what the host reaches.
        grants: Grants::default(),
        kind: spec.settings.kind,
        spare: Vec::new(),
        group: None,
    };
    if let Err(Ok(worker)) = ready.send(Ok(worker)) {
        drop(worker);
    }
    let mut error = Error::crashed(None, "during the call");
    let mut idler = Idler::thread();
    loop {
        let req = match mailbox.recv(idler.take_wait()) {
            Mail::Request(req) => req,
            // The mailbox closes when the pool drops this worker.
            Mail::Closed => break,
            Mail::Idle => {
                idler.give_back(&mut executor);
                continue;
            }
        };
        idler.called();
        let call = req.id;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            executor.run(req, |outcomes| {
                match shared.deliver(&*books, call, outcomes) {
                    None => Ok(()),
                    Some(complaint) => Err(complaint),
                }
            })
        }));
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(complaint)) => {
                error = Error::new(ErrorKind::Protocol, complaint);
                break;
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                error = Error::new(
                    ErrorKind::WorkerCrashed,
                    format!("worker thread {id} panicked during the call: {what}"),
                );
                break;
            }
        }
    }
    mailbox.close();
    drop(executor);
    shared.end(&*books, id, error, Request::Taken);
}

/// Hands requests to a worker thread, one at a time (the [`Slot`] sees to
/// that). A plain mutex and condition variable: on this kind of machine a
/// `std::sync::mpsc` ping-pong was several times slower.
#[derive(Default)]
pub(crate) struct Mailbox {
    state: Mutex<Post>,
    posted: std::sync::Condvar,
    /// Set with the state; lets the thread poll before it sleeps.
    waiting: AtomicBool,
}

/// What a [`Mailbox`] holds.
#[derive(Default)]
struct Post {
    /// The request posted and not yet taken.
    request: Option<CallRequest>,
    /// No more requests will come.
    closed: bool,
}

impl Mailbox {
    /// Posts `req`; gives it back if the mailbox is closed.
    pub(super) fn send(&self, req: CallRequest) -> Result<(), Box<CallRequest>> {
        let mut state = self.state.locked();
        if state.closed {
            return Err(Box::new(req));
        }
        state.request = Some(req);
        drop(state);
        self.waiting.store(true, Ordering::Release);
        self.posted.notify_one();
        Ok(())
    }

    /// No more requests: the thread ends once it has seen this.
    pub(super) fn close(&self) {
        self.state.locked().closed = true;
        self.waiting.store(true, Ordering::Release);
        self.posted.notify_one();
    }

    /// The next request, or word that the mailbox closed, or that none
    /// came for `idle`. Polls for up to [`SPIN`] before it sleeps.
    fn recv(&self, idle: Option<Duration>) -> Mail {
        let start = Instant::now();
        while !self.waiting.load(Ordering::Acquire) && start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        self.waiting.store(false, Ordering::Release);
        let until = idle.map(|d| start + d);
        let mut state = self.state.locked();
        loop {
            if let Some(req) = state.request.take() {
                return Mail::Request(req);
            }
            if state.closed {
                return Mail::Closed;
            }
            state = match until {
                None => crate::locks::unpoisoned(self.posted.wait(state)),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Mail::Idle;
                    }
                    crate::locks::unpoisoned(self.posted.wait_timeout(state, left)).0
                }
            };
        }
    }
}

/// What [`Mailbox::recv`] got. Returned once per call: moving the request
/// costs less than boxing it.
#[allow(clippy::large_enum_variant)]
enum Mail {
    Request(CallRequest),
    Closed,
    /// Nothing, for as long as it was asked to wait.
    Idle,
}
