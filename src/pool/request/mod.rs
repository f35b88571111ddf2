//! The request path of every call: check and compile on the host, then
//! send where the pool's calls run, the one place where a local and a
//! cluster pool part. Locally: take a worker, hand it the request, wait
//! (with a watchdog for timeouts), and return the worker, or cancel, kill
//! or abandon it when the caller goes away.
//!
//! A single call ([`PoolInner::call`]) and a batch of them
//! ([`PoolInner::call_many`], for `map` and cluster orders) share
//! everything from the check on; only a batch has items that fail early,
//! to merge back in order.

mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::PoolInner;
use super::backend::Backend;
use super::compile::{self, Compiled, Resolved};
use super::policy::Policy;
use super::roster::Roster;
use super::session::{SessionInner, SessionLink};
use super::transmit::{CallStreams, Outgoing, Registered};
use crate::dynamic::Signature;
use crate::engine::EngineKind;
use crate::error::{Error, ErrorKind};
use crate::host::Scope;
use crate::host::http::{Outbound, check_grant};
use crate::host::resources::HostTable;
use crate::job::Job;
use crate::options::Cancel;
use crate::shares::Permit;
use crate::wire::{
    CallOptions, CallRequest, ExportPath, Outcome, Payload, Pending, Report, SessionOp, WireError,
};
use crate::worker::{Abandoned, Books as _, Grants, Reply, Worker};

/// How one call ended: its encoded result and report.
pub(super) type CallResult = Result<(Vec<u8>, Report), Error>;

/// What a request's calls came back with.
struct Replied {
    /// One per item sent, in order.
    outcomes: Vec<Outcome>,
    /// The scope of their host functions, which holds their errors.
    scope: Option<Arc<Scope>>,
}

/// One call's result, report, and the streams and futures it passes or
/// returns, if it does.
pub(super) type Called = (Vec<u8>, Report, Option<Arc<CallStreams>>);

/// A function checked on the host, before a worker is taken: the compiled
/// job and the export the name resolved to.
struct Checked {
    compiled: Arc<Compiled>,
    resolved: Arc<Resolved>,
}

impl PoolInner {
    /// One call of `func` with `args` (an encoded argument tuple).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the reply cancels the call, as `policy`
    /// says.
    pub(super) async fn call(
        self: Arc<Self>,
        job: &Job,
        func: &str,
        args: Vec<u8>,
        outgoing: Outgoing,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Called, Error> {
        let span = call_span(job, func, 1);
        async move {
            let checked = self.check(job, func, &options).await?;
            let args = check_args(&checked.resolved, args)?;
            let streaming = self.streaming(&checked, outgoing)?;
            let items = vec![serde_bytes::ByteBuf::from(args)];
            let (Replied { outcomes, scope }, streams) = match streaming {
                Some((roster, outgoing)) => {
                    self.send_local(roster, &checked, items, options, policy, Some(outgoing))
                        .await?
                }
                None => (
                    self.send(job, &checked, items, options, policy).await?,
                    None,
                ),
            };
            let mut outcomes = outcomes.into_iter();
            match (outcomes.next(), outcomes.next()) {
                (Some(outcome), None) => call_result(outcome, scope.as_deref())
                    .map(|(bytes, report)| (bytes, report, streams)),
                _ => Err(Error::new(
                    ErrorKind::Protocol,
                    "the worker did not answer one call with one outcome",
                )),
            }
        }
        .instrument(span)
        .await
    }

    /// Whether a call of `checked` passes or returns streams and futures
    /// (if so, the roster of the workers that run it and the ones its
    /// arguments pass); an error if it cannot here.
    fn streaming(
        &self,
        checked: &Checked,
        outgoing: Outgoing,
    ) -> Result<Option<(&Arc<Roster>, Outgoing)>, Error> {
        let export = &checked.resolved.export;
        if !checked.resolved.transmits {
            if !outgoing.is_empty() {
                return Err(Error::new(
                    ErrorKind::ArgumentMismatch,
                    format!("args: {export} takes no stream or future, but one was passed"),
                ));
            }
            return Ok(None);
        }
        match &self.backend {
            Backend::Local(roster) if roster.has_lanes(checked.compiled.kind()) => {
                Ok(Some((roster, outgoing)))
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{export}: streams and futures cross only to process workers that run \
                     several async calls at once (PoolBuilder::async_calls of 2 or more), \
                     not on this pool"
                ),
            )),
        }
    }

    /// Calls `func` once per item, in one request to one worker, which runs
    /// them in order. Items that cannot be sent (bad arguments) get their
    /// error without being sent. The outer error is one for all items: the
    /// pool is closed, the job does not compile, the worker died.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the reply cancels the request, as
    /// `policy` says.
    pub(super) async fn call_many(
        self: Arc<Self>,
        job: &Job,
        func: &str,
        items: Vec<Result<Vec<u8>, Error>>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Vec<CallResult>, Error> {
        let span = call_span(job, func, items.len());
        async move {
            let checked = self.check(job, func, &options).await?;
            if checked.resolved.transmits {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}: streams and futures cross only in a plain call (Pool::run or \
                         Pool::call), not in a batch",
                        checked.resolved.export
                    ),
                ));
            }
            // An early error per item that is not sent; `None` for one sent.
            let mut early = Vec::with_capacity(items.len());
            let mut sent = Vec::new();
            for item in items {
                match item.and_then(|args| check_args(&checked.resolved, args)) {
                    Ok(args) => {
                        sent.push(serde_bytes::ByteBuf::from(args));
                        early.push(None);
                    }
                    Err(e) => early.push(Some(Err(e))),
                }
            }
            if sent.is_empty() {
                return Ok(early.into_iter().flatten().collect());
            }
            let count = sent.len();
            let Replied { outcomes, scope } =
                self.send(job, &checked, sent, options, policy).await?;
            merge(early, outcomes, count, scope.as_deref())
        }
        .instrument(span)
        .await
    }

    /// Runs a cluster node's order: `items` (encoded argument tuples) as
    /// calls of `func`, with the caller's options and policy. One outcome
    /// per item, as a worker gives them.
    #[cfg(feature = "cluster")]
    pub(crate) async fn run_order(
        self: Arc<Self>,
        job: &Job,
        func: &str,
        items: Vec<Vec<u8>>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Vec<Outcome>, Error> {
        let items = items.into_iter().map(Ok).collect();
        let results = self.call_many(job, func, items, options, policy).await?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok((bytes, report)) => (Ok(serde_bytes::ByteBuf::from(bytes)), report),
                Err(mut e) => {
                    // The output a failed call captured goes back with it.
                    let inner = e.inner_mut();
                    let report = Report {
                        stdout: inner.stdout.take().map(serde_bytes::ByteBuf::from),
                        stderr: inner.stderr.take().map(serde_bytes::ByteBuf::from),
                        ..Report::default()
                    };
                    (Err(WireError::from(e)), report)
                }
            })
            .collect())
    }

    /// The signature of `func` for a dynamic call, from the compiled job.
    pub(super) async fn signature(&self, job: &Job, func: &str) -> Result<Signature, Error> {
        if self.backend.is_closed() {
            return Err(Error::closed());
        }
        let compiled = self.compiler.compiled(job).await?;
        compiled.dynamic_signature(func)
    }

    /// Checks everything that can be checked on the host before a worker
    /// is taken: the pool is open, the options fit the pool, the job
    /// compiles, its imports are provided, and the function exists.
    async fn check(&self, job: &Job, func: &str, options: &CallOptions) -> Result<Checked, Error> {
        let compiled = self.check_job(job, options).await?;
        let resolved = compiled.resolve(func)?;
        Ok(Checked { compiled, resolved })
    }

    /// [`check`](PoolInner::check) for a session's call: its function may
    /// pass and return resource handles.
    async fn check_session(
        &self,
        job: &Job,
        func: &str,
        options: &CallOptions,
    ) -> Result<Checked, Error> {
        let compiled = self.check_job(job, options).await?;
        let resolved = compiled.resolve_in_session(func)?;
        Ok(Checked { compiled, resolved })
    }

    /// [`check`](PoolInner::check), all but the function.
    async fn check_job(&self, job: &Job, options: &CallOptions) -> Result<Arc<Compiled>, Error> {
        if self.backend.is_closed() {
            return Err(Error::closed());
        }
        #[cfg(feature = "test-hooks")]
        if options.test_hook.is_some()
            && !matches!(&self.backend,
                Backend::Local(r) if r.kind() == crate::options::WorkerKind::Process)
        {
            return Err(Error::new(
                ErrorKind::Config,
                "test hooks are for process workers only",
            ));
        }
        if !options.http.is_empty() {
            #[cfg(feature = "cluster")]
            if matches!(self.backend, Backend::Cluster(_)) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "outbound HTTP (allow_http) is for local pools only: a cluster pool's calls \
                     run on nodes, which make no requests for their callers",
                ));
            }
            check_grant(&options.http)?;
        }
        if options.fuel.is_some() && !self.compiler.settings().consume_fuel {
            return Err(Error::new(
                ErrorKind::Config,
                "a fuel budget needs a pool that meters fuel: set PoolBuilder::fuel",
            ));
        }
        let compiled = self.compiler.compiled(job).await?;
        compiled.check_imports(&self.host_fns)?;
        #[cfg(feature = "cluster")]
        if matches!(self.backend, Backend::Cluster(_)) && compiled.imports_resources() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the component imports resource types, which host functions serve as values \
                 kept for the guest; a cluster pool's host calls come from nodes call by call, \
                 so its guests cannot hold host values: use a local pool",
            ));
        }
        Ok(compiled)
    }

    /// Sends checked `items` where the pool's calls run, and waits for
    /// their outcomes: the one place where a local pool and a cluster
    /// pool part.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the request, as `policy` says.
    async fn send(
        &self,
        job: &Job,
        checked: &Checked,
        items: Vec<serde_bytes::ByteBuf>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Replied, Error> {
        // Only a cluster sends the job itself.
        #[cfg(not(feature = "cluster"))]
        let _ = job;
        match &self.backend {
            Backend::Local(roster) => self
                .send_local(roster, checked, items, options, policy, None)
                .await
                .map(|(replied, _)| replied),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => {
                let started = Instant::now();
                let func = checked.resolved.export.to_string();
                let outcomes = caller.call(job, func, items, options, policy).await;
                // A cluster call's queueing is the nodes': all of it runs.
                tracing::Span::current().record("run_us", started.elapsed().as_micros() as u64);
                outcomes.map(|outcomes| Replied {
                    outcomes,
                    scope: None,
                })
            }
        }
    }

    /// [`send`](PoolInner::send) for a local pool: takes a worker from the
    /// roster, and hands the request to it; with `outgoing`, the request
    /// is a call that passes (those) or returns streams and futures.
    async fn send_local(
        &self,
        roster: &Arc<Roster>,
        checked: &Checked,
        items: Vec<serde_bytes::ByteBuf>,
        options: CallOptions,
        policy: Policy,
        outgoing: Option<Outgoing>,
    ) -> Result<(Replied, Option<Arc<CallStreams>>), Error> {
        let queued = Instant::now();
        // Only a confined worker's directories limit which calls it can
        // take.
        let grants = if roster.confines() {
            Grants::of(&options.preopens)
        } else {
            Grants::default()
        };
        let kind = checked.compiled.kind();
        // The host's own copy of what the calls may reach: the worker is
        // told only to forward requests, never asked what is allowed.
        let http = Outbound::new(&options.http, items.len())?.map(Arc::new);
        let (worker, permit) = roster
            .checkout_call(policy.tenant.as_deref(), &grants, kind)
            .await?;
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let span = tracing::Span::current();
        span.record("call", id);
        span.record("worker", worker.id);
        if let Some(pid) = worker.shared.pid() {
            span.record("pid", pid);
        }
        span.record("queue_wait_us", queued.elapsed().as_micros() as u64);
        let req = CallRequest {
            id,
            artifact: checked.compiled.artifact.clone(),
            export: checked.resolved.export.clone(),
            items: items.into_iter().map(Payload::Inline).collect(),
            options,
            session: None,
            pending: Pending::default(),
        };
        let (streams, returned) = match outgoing {
            Some(outgoing) => {
                let (streams, returned) = CallStreams::new(id, outgoing);
                (Some(streams), Some(returned))
            }
            None => (None, None),
        };
        let target = Target {
            roster,
            grants: &grants,
            kind,
            http,
            pinned: false,
            resources: None,
            streams: streams.clone(),
        };
        let started = Instant::now();
        let replied = target.send(req, worker, permit, policy, returned).await;
        span.record("run_us", started.elapsed().as_micros() as u64);
        replied.map(|r| (r, streams))
    }
}

/// The span of one request, its fields recorded as they become known.
fn call_span(job: &Job, func: &str, items: usize) -> tracing::Span {
    tracing::debug_span!(
        "call",
        job = compile::short(job),
        func,
        items,
        call = tracing::field::Empty,
        worker = tracing::field::Empty,
        pid = tracing::field::Empty,
        queue_wait_us = tracing::field::Empty,
        run_us = tracing::field::Empty,
    )
}

/// The workers a local request may go to: the roster's, of the kind its
/// job needs, that can reach its directories.
struct Target<'a> {
    roster: &'a Arc<Roster>,
    grants: &'a Grants,
    kind: EngineKind,
    /// The outbound HTTP the request's calls may make.
    http: Option<Arc<Outbound>>,
    /// The request is a session's, for its worker alone: a worker that
    /// died before taking it takes the session with it, and the request
    /// goes nowhere else.
    pinned: bool,
    /// The host values a session's guest holds (a plain call's are its
    /// own, made with its scope).
    resources: Option<Arc<HostTable>>,
    /// The streams and futures the call passes or returns.
    streams: Option<Arc<CallStreams>>,
}

impl Target<'_> {
    /// Sends `req` to `worker` and waits for its outcomes. The worker goes
    /// back to the roster when the request ends, or is cancelled, killed
    /// or abandoned as `policy` says if this future is dropped first.
    ///
    /// A worker that died before it took the request (killed while idle,
    /// say) saw nothing of the call: the request goes to a fresh worker
    /// of this target, once.
    async fn send(
        &self,
        req: CallRequest,
        worker: Worker,
        permit: Permit,
        policy: Policy,
        mut returned: Option<oneshot::Receiver<Outcome>>,
    ) -> Result<Replied, Error> {
        let mut attempt = (req, worker, permit);
        let mut retried = false;
        loop {
            let (req, worker, permit) = attempt;
            let id = req.id;
            let (handed, scope, flight) = self.start(req, worker, permit, &policy);
            let (delivery, unsent) = match (&self.streams, returned.as_mut()) {
                (Some(streams), Some(returned)) => {
                    wait_streaming(flight, handed, streams, returned).await?
                }
                _ => wait(flight, handed).await?,
            };
            match delivery {
                Delivery::Outcomes(outcomes) => return Ok(Replied { outcomes, scope }),
                Delivery::NotStarted(e, permit) => match unsent {
                    Some(_) if self.pinned => {
                        drop(permit);
                        return Err(super::session::worker_ended(Some(&e)));
                    }
                    Some(req) if !retried => {
                        retried = true;
                        tracing::debug!(call = id, "its worker died before taking it; retrying");
                        // Fresh: idle workers may have died with this one.
                        let worker = self.roster.spawn(self.grants.clone(), self.kind).await?;
                        attempt = (req, worker, permit);
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Hands `req` to `worker`, in the scope of the call's host functions.
    fn start(
        &self,
        req: CallRequest,
        worker: Worker,
        permit: Permit,
        policy: &Policy,
    ) -> (Handed, Option<Arc<Scope>>, InFlight) {
        if let Some(job) = &policy.job {
            job.started(&worker.shared);
        }
        // The scope of the call's host functions and outbound HTTP: its
        // runtime, its data, its allowlist.
        let scope = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if worker.shared.host.is_used() || self.http.is_some() => {
                let scope = Scope::new(
                    req.export.to_string(),
                    policy.data.clone(),
                    runtime,
                    self.http.clone(),
                    self.resources.clone(),
                );
                worker.shared.host.begin(scope.clone());
                Some(scope)
            }
            _ => None,
        };
        let (id, count, timeout) = (req.id, req.items.len(), req.options.timeout);
        // The worker's frames for the call's streams reach them from now
        // until the call ends.
        let streams = self
            .streams
            .as_ref()
            .and_then(|streams| worker.open_streams(streams));
        let (rx, unsent) = worker.start(req);
        let flight = InFlight {
            roster: self.roster.clone(),
            worker: Some(worker),
            permit: Some(permit),
            id,
            calls: count as u64,
            policy: policy.clone(),
            _streams: streams,
        };
        let handed = Handed {
            rx,
            unsent,
            timeout,
            count,
        };
        (handed, scope, flight)
    }
}

/// Waits for the worker's answer. The watchdog: the worker interrupts each
/// call at its timeout; if no answer comes within the grace period after
/// the last could have timed out, it is killed.
///
/// # Cancel safety
///
/// Dropping the future drops `flight`, which cancels the request as its
/// policy says.
async fn wait(flight: InFlight, handed: Handed) -> Result<(Delivery, Option<CallRequest>), Error> {
    let Handed {
        rx,
        unsent,
        timeout,
        count,
    } = handed;
    let Some(t) = timeout else {
        return flight.reply(rx.await).map(|a| (a, unsent));
    };
    let grace = flight.policy.grace;
    let limit = t
        .saturating_mul(u32::try_from(count).unwrap_or(u32::MAX))
        .saturating_add(grace);
    match tokio::time::timeout(limit, rx).await {
        Ok(reply) => flight.reply(reply).map(|a| (a, unsent)),
        Err(_) => {
            tracing::warn!(call = flight.id, timeout = ?t, ?grace, "call overran its timeout and grace; killing its worker");
            flight.kill();
            Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the call ran past its timeout of {t:?} and did not stop within \
                     {grace:?}; its worker was killed"
                ),
            ))
        }
    }
}

/// [`wait`] for a call that passes or returns `streams`: a result that
/// holds streams comes before the call's end (`returned`), and the rest of
/// the wait goes on in a task of its own, which ends the streams with the
/// call. However the wait ends, the streams end with it.
///
/// # Cancel safety
///
/// As [`wait`], until the result comes.
async fn wait_streaming(
    flight: InFlight,
    handed: Handed,
    streams: &Arc<CallStreams>,
    returned: &mut oneshot::Receiver<Outcome>,
) -> Result<(Delivery, Option<CallRequest>), Error> {
    /// Ends the call's streams when the wait for its end is over.
    struct Finish(Arc<CallStreams>, Option<WireError>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.finish(self.1.take());
        }
    }
    let mut finish = Finish(streams.clone(), None);
    let mut done = Box::pin(wait(flight, handed));
    tokio::select! {
        biased;
        Ok(outcome) = &mut *returned => {
            tokio::spawn(async move {
                let r = done.await;
                finish.1 = end_error(&r);
                drop(finish);
            });
            Ok((Delivery::Outcomes(vec![outcome]), None))
        }
        r = &mut done => {
            finish.1 = end_error(&r);
            // Its result came before its end, if it came: the end's
            // outcome says only how the streams ended.
            match (returned.try_recv(), r) {
                (Ok(outcome), Ok(_)) => Ok((Delivery::Outcomes(vec![outcome]), None)),
                (_, r) => r,
            }
        }
    }
}

/// Why a call failed, from the wait for its end.
fn end_error(r: &Result<(Delivery, Option<CallRequest>), Error>) -> Option<WireError> {
    match r {
        Ok((Delivery::Outcomes(outcomes), _)) => outcomes.iter().find_map(|(o, _)| o.clone().err()),
        Ok((Delivery::NotStarted(e, _), _)) | Err(e) => {
            Some(WireError::new(e.kind(), e.to_string()))
        }
    }
}

/// A request handed to a worker: where its reply comes, and the request
/// itself where the worker holds no copy, to send again.
struct Handed {
    rx: oneshot::Receiver<Reply>,
    unsent: Option<CallRequest>,
    timeout: Option<Duration>,
    count: usize,
}

/// How a worker answered a request.
enum Delivery {
    Outcomes(Vec<Outcome>),
    /// The worker died before it took the request; the right to a worker
    /// is kept for another.
    NotStarted(Error, Permit),
}

/// The results of a request's items: each item's early error, or the
/// outcome of the `count` sent, in order.
fn merge(
    early: Vec<Option<CallResult>>,
    outcomes: Vec<Outcome>,
    count: usize,
    scope: Option<&Scope>,
) -> Result<Vec<CallResult>, Error> {
    if outcomes.len() != count {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("the worker answered {} calls of {count}", outcomes.len()),
        ));
    }
    let mut outcomes = outcomes.into_iter();
    Ok(early
        .into_iter()
        .map(|r| match r {
            Some(early) => early,
            None => match outcomes.next() {
                Some(outcome) => call_result(outcome, scope),
                None => Err(Error::new(ErrorKind::Protocol, "a call went unanswered")),
            },
        })
        .collect())
}

/// One call's outcome as the caller sees it. A failed call keeps the
/// output it captured.
fn call_result((outcome, report): Outcome, scope: Option<&Scope>) -> CallResult {
    match outcome {
        Ok(bytes) => Ok((bytes.into_vec(), report)),
        Err(w) => {
            let mut e = host_error(w, scope);
            let inner = e.inner_mut();
            inner.stdout = report.stdout.map(serde_bytes::ByteBuf::into_vec);
            inner.stderr = report.stderr.map(serde_bytes::ByteBuf::into_vec);
            Err(e)
        }
    }
}

/// A worker's error as the caller sees it: a host function's failure gets
/// the function's own error as its source.
fn host_error(w: WireError, scope: Option<&Scope>) -> Error {
    let source = w.host_error.and_then(|id| scope?.take_error(id));
    let e = Error::from(w);
    match source {
        Some(source) => e.with_boxed_source(source),
        None => e,
    }
}

/// A call in flight on a worker. Dropping it before [`InFlight::finish`]
/// cancels the call.
struct InFlight {
    roster: Arc<Roster>,
    worker: Option<Worker>,
    permit: Option<Permit>,
    id: u64,
    /// How many calls the request carries.
    calls: u64,
    policy: Policy,
    /// The call's streams' place in its worker's hub, until it ends.
    _streams: Option<Registered>,
}

impl InFlight {
    /// The call overran its timeout and grace: kill the worker.
    fn kill(mut self) {
        self.roster.count_calls(self.calls);
        if let Some(worker) = self.worker.take() {
            self.roster.kill(worker);
        }
        self.permit.take();
    }

    /// The worker answered (or died): the outcomes, and the worker back to
    /// the roster if it is alive.
    fn reply(mut self, reply: Result<Reply, oneshot::error::RecvError>) -> Result<Delivery, Error> {
        match reply {
            Ok(Reply::Done(outcomes)) => {
                let whole = outcomes.len() as u64 == self.calls;
                self.finish(whole);
                Ok(Delivery::Outcomes(outcomes))
            }
            Ok(Reply::NotStarted(e)) => {
                // No call ran: none is counted, and the dead worker goes.
                self.worker.take();
                match self.permit.take() {
                    Some(permit) => Ok(Delivery::NotStarted(e, permit)),
                    None => Err(e),
                }
            }
            Ok(Reply::Lost(e)) => {
                self.finish(false);
                Err(e)
            }
            Err(_) => {
                self.finish(false);
                Err(Error::crashed(None, "and its host thread ended"))
            }
        }
    }

    /// The call ended: the worker returns to the pool if it is alive.
    fn finish(mut self, alive: bool) {
        self.roster.count_calls(self.calls);
        if let (Some(worker), Some(permit)) = (self.worker.take(), self.permit.take())
            && alive
        {
            self.roster.checkin(worker, permit);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let (Some(worker), Some(permit)) = (self.worker.take(), self.permit.take()) else {
            return;
        };
        self.roster.count_calls(self.calls);
        let on_cancel = self.policy.cancel_mode();
        tracing::debug!(call = self.id, worker = worker.id, mode = ?on_cancel, "call dropped; cancelling");
        match on_cancel {
            Cancel::Kill if worker.is_process() => self.roster.kill(worker),
            Cancel::Interrupt | Cancel::Kill | Cancel::Finish => {
                let left = if on_cancel == Cancel::Finish {
                    Abandoned::Finishing
                } else {
                    worker.cancel(self.id);
                    Abandoned::Interrupted
                };
                let shared = worker.shared.clone();
                match worker.abandon(self.id, permit, left) {
                    // The call had already ended.
                    Some((worker, permit)) if !worker.shared.is_dead() => {
                        self.roster.checkin(worker, permit);
                    }
                    Some(_) => {}
                    None if left == Abandoned::Interrupted => {
                        self.roster.kill_after(shared, self.id, self.policy.grace)
                    }
                    None => {}
                }
            }
        }
    }
}

/// Checks that `args` is a tuple with one element per parameter.
fn check_args(resolved: &Resolved, args: Vec<u8>) -> Result<Vec<u8>, Error> {
    match compile::arg_count(&args) {
        Some(n) if n == resolved.params => Ok(args),
        Some(n) => Err(Error::new(
            ErrorKind::ArgumentMismatch,
            format!(
                "args: {} takes {} arguments, got {n}",
                resolved.export, resolved.params
            ),
        )),
        None => Err(Error::new(
            ErrorKind::ArgumentMismatch,
            format!(
                "args: expected a tuple with one element per parameter of {} ({} here), \
                 such as `(x,)` or `()`",
                resolved.export, resolved.params
            ),
        )),
    }
}
