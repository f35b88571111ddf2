//! [`Call`]: one call with its options, awaited or spawned; its
//! [`CancelHandle`]; and its [`Output`].

use std::any::Any;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::Type;

use super::Pool;
use super::builder::check_preopens;
use super::cancel::{CancelFlag, CancelHandle};
use super::job_handle::{JobHandle, JobLink};
use super::policy::Policy;
use super::resource::reading_for;
use super::session::SessionInner;
use super::setters::call_option_setters;
use super::transmit::{self, Outgoing};
use super::usage::Usage;
use crate::dynamic::{DynArgs, DynValue};
use crate::error::{Error, ErrorKind};
use crate::job::Job;
use crate::options::Cancel;
use crate::values::{self, Value};
use crate::wire::{CallOptions, Report};

/// One call with its options, from [`Pool::call`]. Await it for the
/// result.
///
/// # Cancel safety
///
/// Dropping the awaited future cancels the call as
/// [`on_cancel`](Call::on_cancel) says:
///
/// - [`Cancel::Interrupt`] (the default): the guest is interrupted by an
///   epoch bump (a guest in wasm) or by dropping its host call (a guest
///   blocked in WASI, such as a sleep); the worker goes back to the pool.
///   If it has not confirmed within the [`grace`](Call::grace) period, it
///   is killed.
/// - [`Cancel::Kill`]: the worker is killed with SIGKILL (on Windows,
///   `TerminateProcess`) at once.
/// - [`Cancel::Finish`]: the call runs to completion, its result is
///   discarded, and the worker goes back to the pool.
///
/// A [`CancelHandle`] from [`cancel_handle`](Call::cancel_handle) does the
/// same from another task, and the future resolves with
/// [`ErrorKind::Cancelled`]. A [`timeout`](Call::timeout) is not a cancel:
/// it fails with [`ErrorKind::Timeout`].
///
/// # Panics
///
/// As [`Pool::run`]: awaited outside a Tokio runtime, or with a timeout on
/// a runtime without its time driver.
#[must_use = "a call does nothing until awaited"]
pub struct Call<'a, R> {
    pub(super) pool: Pool,
    pub(super) job: &'a Job,
    pub(super) func: &'a str,
    pub(super) args: Args,
    /// Turns the result into `R`, given the function's result type (known
    /// for a dynamic call).
    pub(super) decode: Decode<R>,
    pub(super) on_cancel: Cancel,
    pub(super) options: CallOptions,
    pub(super) grace: Duration,
    pub(super) cancel: Arc<CancelFlag>,
    /// Set for a call made by [`Call::spawn`].
    pub(super) link: Option<Arc<JobLink>>,
    /// What the call's host functions see ([`Call::data`]).
    pub(super) data: Option<Arc<dyn Any + Send + Sync>>,
    /// Whose share of the workers it takes ([`Call::tenant`]).
    pub(super) tenant: Option<Arc<str>>,
    /// The session it calls on, for a [`Session::call`](crate::Session::call).
    pub(super) session: Option<Arc<SessionInner>>,
    pub(super) _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Call<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Call {
            pool: _,
            job,
            func,
            args,
            decode: _,
            on_cancel,
            options,
            grace,
            cancel,
            link: _,
            data,
            tenant,
            session,
            _result,
        } = self;
        f.debug_struct("Call")
            .field("job", job)
            .field("func", func)
            .field("args", args)
            .field("on_cancel", on_cancel)
            .field("options", options)
            .field("grace", grace)
            .field("cancelled", &cancel.cancelled.load(Ordering::Relaxed))
            .field("has_data", &data.is_some())
            .field("tenant", tenant)
            .field("session", &session.as_ref().map(|s| s.link.id))
            .finish()
    }
}

impl<R> Call<'_, R> {
    call_option_setters!();

    /// The tenant whose share of the workers this call takes. Calls wait
    /// for a worker first come first served within a tenant; across
    /// tenants, free workers go to the tenants with calls waiting in
    /// proportion to their weights
    /// ([`PoolBuilder::tenant_weight`](crate::PoolBuilder::tenant_weight),
    /// 1 by default), so a tenant with a deep backlog delays another's
    /// next call by about one call's duration, not by its backlog. Calls
    /// that name no tenant share the default one, whose key is `""`.
    /// [`Pool::statistics`] reports each tenant's calls.
    ///
    /// Each key the pool has seen keeps a few counters for the pool's
    /// life. A cluster pool's nodes serve its calls first come first
    /// served, whatever their tenant.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// let n: u64 = pool.call(&job, "fib", (30u64,)).tenant("customer-42").await?;
    /// let mine = pool.statistics().tenants.into_iter().find(|t| t.name == "customer-42");
    /// assert_eq!(mine.map(|t| t.done), Some(1));
    /// # Ok(()) }
    /// ```
    pub fn tenant(mut self, key: impl Into<String>) -> Self {
        let key: String = key.into();
        self.tenant = (!key.is_empty()).then(|| key.into());
        self
    }

    /// A handle that cancels this call from anywhere without dropping its
    /// future. See [`CancelHandle`].
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::new(self.cancel.clone())
    }

    /// What dropping this call before it finishes does. Default: the
    /// pool's setting.
    pub fn on_cancel(mut self, mode: Cancel) -> Self {
        self.on_cancel = mode;
        self
    }

    /// A value for the [host functions](crate::PoolBuilder::host_fn) this
    /// call's guest calls: they see it through
    /// [`HostContext::data`](crate::HostContext::data). A call without
    /// one gives them `None`. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, plugin: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// struct User(String);
    /// let n: u64 = pool.call(&plugin, "run", (7u64,)).data(User("ada".into())).await?;
    /// # Ok(()) }
    /// ```
    pub fn data<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.data = Some(Arc::new(value));
        self
    }

    /// Test only, not part of the API: instead of running the guest, the
    /// worker process tries natively to open `/etc/passwd` and `outside`,
    /// to create a file in `readonly`, to create a socket, to fork and, if
    /// `exec`, to `execve` a shell (which replaces the worker if it works).
    /// The result is a `Vec<(String, String)>`: each attempt and how it
    /// ended (`"ok"` or the error). Process workers only.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn attempt_escape(
        mut self,
        outside: impl Into<std::path::PathBuf>,
        readonly: Option<std::path::PathBuf>,
        exec: bool,
    ) -> Self {
        let attempt = crate::wire::EscapeAttempt {
            outside: outside.into(),
            readonly,
            exec,
        };
        self.options.test_hook = Some(Box::new(crate::wire::TestHook::Escape(attempt)));
        self
    }

    /// Test only, not part of the API: instead of running the guest, the
    /// worker process blocks natively for `how_long`, deaf to interrupts
    /// and timeouts, as a worker stuck outside wasm would be. The result is
    /// `()`. Process workers only.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn stall_natively(mut self, how_long: std::time::Duration) -> Self {
        self.options.test_hook = Some(Box::new(crate::wire::TestHook::Stall(how_long)));
        self
    }

    /// Test only, not part of the API: instead of running the guest, the
    /// worker process acts as a compromised one would: it fills whatever
    /// part of `[offset, offset + len)` lies in its payload region with
    /// `fill`, then answers that its result is there. Process workers
    /// only.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn scribble_region(mut self, offset: u64, len: u64, fill: u8) -> Self {
        let hook = crate::wire::TestHook::Scribble { offset, len, fill };
        self.options.test_hook = Some(Box::new(hook));
        self
    }

    /// Test only, not part of the API: the size of a worker's payload
    /// region, and where its half for results starts.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub const REGION: (u64, u64) = (crate::wire::REGION_SIZE, crate::wire::RESULTS_AT);
}

impl<R: Send + 'static> Call<'_, R> {
    /// Starts the call as a job with a handle, which can be awaited for
    /// the result, cancelled or killed, and has a duplex channel to the
    /// guest. See [`JobHandle`] and [`Pool::spawn`].
    pub fn spawn(self) -> JobHandle<R> {
        self.spawn_then(|out| out.map(|out| out.value))
    }

    /// [`spawn`](Call::spawn), its handle resolving to what `then` makes
    /// of the call's output.
    pub(super) fn spawn_then<T: Send + 'static>(
        self,
        then: impl FnOnce(Result<Output<R>, Error>) -> Result<T, Error> + Send + 'static,
    ) -> JobHandle<T> {
        let registry = self.pool.handle.inner.sync.clone();
        let channel = registry.open_channel();
        let cancel = self.cancel_handle();
        let job = self.job.clone();
        let func = self.func.to_string();
        let Call {
            pool,
            args,
            decode,
            on_cancel,
            options,
            grace,
            cancel: flag,
            data,
            tenant,
            session,
            ..
        } = self;
        JobHandle::spawn(registry, channel, cancel, move |link| {
            Box::pin(async move {
                let call = Call {
                    pool,
                    job: &job,
                    func: &func,
                    args,
                    decode,
                    on_cancel,
                    options,
                    grace,
                    cancel: flag,
                    link: Some(link),
                    data,
                    tenant,
                    session,
                    _result: PhantomData,
                };
                then(call.execute().await)
            })
        })
    }
}

impl<'a, R: Send + 'a> IntoFuture for Call<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.execute().await.map(|out| out.value) })
    }
}

/// A call's result with what else it reported, from [`Call::report`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Output<R> {
    /// The function's result.
    pub value: R,
    /// The fuel the call consumed, when the pool meters fuel
    /// ([`PoolBuilder::fuel`](crate::PoolBuilder::fuel)).
    pub fuel_consumed: Option<u64>,
    /// The guest's stdout, when captured ([`Stdio::Capture`](crate::Stdio::Capture)).
    pub stdout: Option<Vec<u8>>,
    /// The guest's stderr, when captured ([`Stdio::Capture`](crate::Stdio::Capture)).
    pub stderr: Option<Vec<u8>>,
    /// What the call cost: wall and CPU time, peak memory, bytes in and
    /// out.
    pub usage: Usage,
}

impl<'a, R: Send + 'a> Call<'a, R> {
    /// Awaits the call and returns its result together with the fuel it
    /// consumed, its captured output and what it cost ([`Usage`]).
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use wasmpool::Stdio;
    /// let out = pool.call::<String>(&job, "hello", ("you",)).stdout(Stdio::Capture).report().await?;
    /// println!("{} printed {:?} in {:?}", out.value, out.stdout, out.usage.wall);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As awaiting the call.
    ///
    /// # Cancel safety
    ///
    /// As awaiting the call.
    pub fn report(mut self) -> impl Future<Output = Result<Output<R>, Error>> + Send + 'a {
        // Only a call whose report is taken pays for reading its thread's
        // CPU clocks.
        self.options.cpu_time = true;
        self.execute()
    }

    /// Runs the call to its end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call, as its cancel mode says.
    async fn execute(self) -> Result<Output<R>, Error> {
        let Call {
            pool,
            job,
            func,
            args,
            decode,
            on_cancel,
            options,
            grace,
            cancel,
            link,
            data,
            tenant,
            session,
            _result,
        } = self;
        // A dynamic call's arguments are typed against the function's
        // signature, read from the compiled job.
        let (args, result_ty, outgoing) = match args {
            Args::Encoded(args) => (args?, None, Outgoing::default()),
            Args::Passing(_, _) if session.is_some() => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "streams and futures cross only in a plain call, not a session's",
                ));
            }
            Args::Passing(args, outgoing) => (args?, None, outgoing),
            Args::Dynamic(dynamic) => {
                let sig = pool.handle.inner.signature(job, func).await?;
                let types = sig.params.iter().map(|(_, t)| t).chain(&sig.result);
                if types
                    .into_iter()
                    .any(|t| values::wit::transmits(t, false).unwrap_or(true))
                {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "{}: a dynamic call cannot pass or return streams and futures: \
                             call it with StreamReader and FutureReader values (Pool::run)",
                            sig.name
                        ),
                    ));
                }
                (dynamic.encode(&sig)?, sig.result, Outgoing::default())
            }
        };
        let policy = Policy {
            on_cancel,
            grace,
            job: link,
            data,
            tenant,
        };
        // The pool's own preopens were checked when it was built; only
        // those this call added are checked here, so that a pool with
        // preopens does no directory I/O per call.
        // A session's were checked when it opened, and its calls cannot
        // add any.
        let pool_preopens = pool.handle.inner.options.preopens.len();
        if let Some(added) = options.preopens.get(pool_preopens..)
            && !added.is_empty()
            && session.is_none()
        {
            check_preopens(added)?;
        }
        let inner = pool.handle.inner.clone();
        let call = async {
            match &session {
                Some(session) => inner
                    .call_session(session, func, args, options, policy)
                    .await
                    .map(|(bytes, report)| (bytes, report, None)),
                None => inner.call(job, func, args, outgoing, options, policy).await,
            }
        };
        // A cancel through the handle drops the call's future, which
        // applies the cancel mode just as the caller's drop would.
        let (bytes, report, streams) = tokio::select! {
            biased;
            () = cancel.wait() => {
                return Err(Error::new(ErrorKind::Cancelled, "the call was cancelled"));
            }
            r = call => r?,
        };
        match (&session, streams) {
            // The handles in a session's result are that session's.
            (Some(session), _) => reading_for(&session.link, || {
                decode_output(bytes, report, decode, result_ty.as_ref())
            }),
            // And the streams in a call's result, that call's.
            (None, Some(streams)) => transmit::reading(&streams, || {
                decode_output(bytes, report, decode, result_ty.as_ref())
            }),
            (None, None) => decode_output(bytes, report, decode, result_ty.as_ref()),
        }
    }
}

/// A call's arguments: encoded from the caller's value, or dynamic ones
/// to type once the function's signature is known.
#[derive(Debug)]
pub(super) enum Args {
    Encoded(Result<Vec<u8>, Error>),
    /// Arguments that pass streams or futures.
    Passing(Result<Vec<u8>, Error>, Outgoing),
    Dynamic(DynArgs),
}

/// Turns a call's result into the caller's type, given the function's
/// result type when the call knows it.
pub(super) type Decode<R> = fn(Value, Option<&Type>) -> Result<R, Error>;

/// [`Decode`] into a `Deserialize` type.
pub(super) fn typed<R: DeserializeOwned>(value: Value, _: Option<&Type>) -> Result<R, Error> {
    values::from_value(value, "result")
        .map_err(|e| Error::new(ErrorKind::ResultMismatch, e.to_string()))
}

/// [`Decode`] into a [`DynValue`], typed by the result type.
pub(super) fn dynamic(value: Value, ty: Option<&Type>) -> Result<DynValue, Error> {
    DynValue::new(value, ty)
}

/// Encodes the arguments of a call that can pass streams and futures.
pub(super) fn call_args(args: &impl Serialize) -> Args {
    let (args, outgoing) = transmit::sending(|| encode(args));
    if outgoing.is_empty() {
        Args::Encoded(args)
    } else {
        Args::Passing(args, outgoing)
    }
}

/// Encodes a call's arguments, which pass no streams or futures.
pub(super) fn encode_args(args: &impl Serialize) -> Result<Vec<u8>, Error> {
    let (args, outgoing) = transmit::sending(|| encode(args));
    if !outgoing.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "args: a StreamReader or FutureReader can be passed only to a plain call \
             (Pool::run or Pool::call), not to a session's or a batch",
        ));
    }
    args
}

fn encode(args: &impl Serialize) -> Result<Vec<u8>, Error> {
    let mut out = crate::platform::BufferWriter::default();
    rmp_serde::encode::write_named(&mut out, args).map_err(|e| {
        Error::new(
            ErrorKind::ArgumentMismatch,
            format!("args: cannot be encoded: {e}"),
        )
    })?;
    Ok(out.0)
}

/// Decodes a call's result into `R`.
pub(super) fn decode_result<R: DeserializeOwned>(
    bytes: Vec<u8>,
    report: Report,
) -> Result<Output<R>, Error> {
    decode_output(bytes, report, typed::<R>, None)
}

/// Decodes a call's result with `decode`.
fn decode_output<R>(
    bytes: Vec<u8>,
    report: Report,
    decode: Decode<R>,
    ty: Option<&Type>,
) -> Result<Output<R>, Error> {
    let value = values::decode_owned(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("result: not valid MessagePack: {e}"),
        )
    })?;
    let value = decode(value, ty)?;
    let Report {
        fuel_consumed,
        stdout,
        stderr,
        measured,
        lost: _,
    } = report;
    Ok(Output {
        value,
        fuel_consumed,
        stdout: stdout.map(serde_bytes::ByteBuf::into_vec),
        stderr: stderr.map(serde_bytes::ByteBuf::into_vec),
        usage: Usage::from(measured),
    })
}
