//! The caller's side: [`Pool`] and its builder, calls, maps and spawned
//! jobs, the roster of workers, and compiling jobs.
//!
//! A call goes: [`Call`] (options, cancel handle) → `PoolInner::call` in
//! `request/` (check and compile on the host, then send where the
//! pool's [`Backend`] says) → for a local pool, a worker from the
//! [`Roster`] and its host thread → back. A `map` goes the same way in
//! batches, through `PoolInner::call_many`. Nothing here knows how a
//! worker runs a call; workers know the pool only as their roster's
//! [`Books`](crate::worker::Books).
//!
//! [`Roster`]: roster::Roster
//! [`Backend`]: backend::Backend

mod backend;
mod builder;
mod call;
mod cancel;
mod command;
pub(crate) mod compile;
mod job_handle;
mod map;
mod policy;
mod prims;
#[cfg(feature = "cluster")]
mod remote;
mod request;
mod resource;
mod roster;
mod session;
mod setters;
pub(crate) mod transmit;
mod usage;

use crate::locks::Locked as _;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::PoolBuilder;
pub use call::{Call, Output};
pub use cancel::CancelHandle;
pub use command::{Command, CommandHandle, CommandOutput, STDIN_CHUNK};
pub use job_handle::JobHandle;
#[cfg(feature = "cluster")]
pub(crate) use job_handle::JobLink;
#[cfg(feature = "cluster")]
pub use remote::NodeInfo;
pub use resource::Resource;
pub use session::{OpenSession, Session};
pub use transmit::{FutureReader, STREAM_WINDOW, StreamReader};
pub use usage::{CpuTime, Usage};

use crate::dynamic::{DynArgs, DynValue};
use crate::engine::DEFAULT_MAX_WASM_STACK;
use crate::error::Error;
use crate::host::HostFns;
use crate::job::Job;
use crate::options::{
    Cancel, DEFAULT_ASYNC_CALLS, DEFAULT_GRACE, DEFAULT_IDLE_TIMEOUT, WorkerKind,
};
use crate::shares::TenantStatistics;
use crate::sync::Registry;
use crate::wire::CallOptions;
use crate::worker::{Books as _, Grants};
use backend::Backend;
use call::Args;
use compile::Compiler;
#[cfg(feature = "cluster")]
pub(crate) use policy::Policy;

/// A pool of worker processes that run component calls.
///
/// A `Pool` is a cheap handle: clones share the same workers, and it is
/// `Send + Sync`, so it can be moved into `tokio::spawn`. When the last
/// handle is dropped, every worker is killed and reaped in the background;
/// [`shutdown`](Pool::shutdown) does the same gracefully and waits.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), wasmpool::Error> {
/// let job = wasmpool::Job::from_file("fib.wasm")?;
/// let pool = wasmpool::Pool::new()?;
/// let n: u64 = pool.run(&job, "fib", (30u64,)).await?;
/// assert_eq!(n, 832040);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// Owned by the `Pool` handles only: its drop ends the pool.
struct Handle {
    inner: Arc<PoolInner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.backend.terminate();
    }
}

/// What the `Pool` handles share.
pub(crate) struct PoolInner {
    /// The call settings a call starts from.
    on_cancel: Cancel,
    options: CallOptions,
    grace: Duration,
    compiler: Compiler,
    /// Where calls run: this pool's workers, or a cluster's nodes.
    backend: Backend,
    /// The named primitives and job channels.
    sync: Arc<Registry>,
    /// The host functions guests may import.
    host_fns: Arc<HostFns>,
    next_call: AtomicU64,
}

/// A snapshot of a pool's counters, from [`Pool::statistics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// The most workers the pool runs at once.
    pub max_workers: usize,
    /// Live workers waiting for a call.
    pub idle: usize,
    /// Live workers that are running a call (or being started).
    pub busy: usize,
    /// Worker processes started so far.
    pub spawned: u64,
    /// Workers that died without being asked to (killed from outside,
    /// crashed).
    pub crashed: u64,
    /// Workers the pool killed: cancels with [`Cancel::Kill`].
    pub killed: u64,
    /// Calls that reached a worker and ended, whatever the outcome.
    pub calls: u64,
    /// Each tenant's calls ([`Call::tenant`]): the default tenant first,
    /// then the others by key. Empty for a cluster pool.
    pub tenants: Vec<TenantStatistics>,
}

impl Pool {
    /// A pool with the defaults:
    ///
    /// - workers: the number of CPUs;
    /// - idle timeout: [`DEFAULT_IDLE_TIMEOUT`] (10 minutes);
    /// - retire after: never;
    /// - retire above: no memory bound;
    /// - worker program: the current executable;
    /// - cache directory: `$XDG_CACHE_HOME/wasmpool` or `~/.cache/wasmpool`;
    /// - wasm stack: 1 MiB;
    /// - on cancel: [`Cancel::Interrupt`], with a grace of
    ///   [`DEFAULT_GRACE`];
    /// - no timeout and no memory limit;
    /// - the sandbox: no environment variables, no preopened directories.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new() -> Result<Pool, Error> {
        Pool::builder().build()
    }

    /// A builder to configure a pool.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// use std::time::Duration;
    /// let pool = wasmpool::Pool::builder()
    ///     .workers(4)
    ///     .idle_timeout(Duration::from_secs(30))
    ///     .retire_after(10_000)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            kind: WorkerKind::Process,
            reuse_instances: false,
            memory_cow: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retire_after: None,
            retire_above: None,
            worker_program: None,
            cache_dir: None,
            cache_limit: crate::options::DEFAULT_CACHE_LIMIT,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            on_cancel: Cancel::Interrupt,
            options: CallOptions::default(),
            grace: DEFAULT_GRACE,
            host_fns: HostFns::default(),
            confine: true,
            payload_region: true,
            async_calls: DEFAULT_ASYNC_CALLS,
            tenants: std::collections::BTreeMap::new(),
            #[cfg(feature = "cluster")]
            nats: None,
        }
    }

    /// Calls the exported function `func` of `job` with `args` and returns
    /// its result.
    ///
    /// `func` is a world-level export (`"fib"`), a function of an exported
    /// interface (`"ns:pkg/iface@1.0.0#fib"`, the version optional when
    /// only one is exported), or a bare name that is unique among the
    /// interfaces' functions. `args` is a tuple with one element per
    /// parameter: `(x,)` for one, `()` for none. See the crate docs for how
    /// serde values map to WIT types.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// let n: u64 = pool.run(&job, "fib", (30u64,)).await?;
    /// let m: u64 = pool.run(&job, "wasmpool:jobs/math#fib", (10u64,)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`ErrorKind`](crate::ErrorKind): a trap, a crashed worker, a name or type mismatch,
    /// a closed pool.
    ///
    /// # Panics
    ///
    /// When awaited outside a Tokio runtime (compiling runs on its blocking
    /// pool), or, for a call with a [`timeout`](Call::timeout), on a runtime
    /// without its time driver.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call as the pool's
    /// [`on_cancel`](PoolBuilder::on_cancel) mode says: by default the guest
    /// is interrupted and the worker returns to the pool.
    pub fn run<'a, R: DeserializeOwned + Send + 'a>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: impl Serialize,
    ) -> impl Future<Output = Result<R, Error>> + Send + 'a {
        self.call(job, func, args).into_future()
    }

    /// Like [`run`](Pool::run), but returns a [`Call`] to set per-call
    /// options on before awaiting it.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use wasmpool::Cancel;
    /// let n: u64 = pool.call(&job, "fib", (30u64,)).on_cancel(Cancel::Kill).await?;
    /// # Ok(()) }
    /// ```
    pub fn call<'a, R: DeserializeOwned>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: impl Serialize,
    ) -> Call<'a, R> {
        self.new_call(job, func, call::call_args(&args), call::typed::<R>)
    }

    /// Calls `func` with arguments whose types are known only at run time:
    /// WAVE text or JSON ([`DynArgs`]), typed on the host against the
    /// function's WIT signature before anything is sent. The result is a
    /// [`DynValue`], which prints as WAVE and converts to JSON. The
    /// [`Call`] takes every per-call option, as [`call`](Pool::call)'s
    /// does.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// use wasmpool::{DynArgs, Job};
    /// let job = Job::from_file("types.wasm")?;
    /// let area = pool.call_dynamic(&job, "area", DynArgs::wave("circle(2.0)")).await?;
    /// println!("{area}"); // 12.566370614359172
    /// let p = pool
    ///     .call_dynamic(&job, "echo-point", DynArgs::json(serde_json::json!({"x": 1, "y": 2})))
    ///     .timeout(std::time::Duration::from_secs(1))
    ///     .await?;
    /// assert_eq!(p.to_json(), serde_json::json!({"x": 1, "y": 2}));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Pool::run); arguments that do not fit the signature fail
    /// with [`ErrorKind::ArgumentMismatch`](crate::ErrorKind::ArgumentMismatch),
    /// naming the argument and, for JSON, the path inside it.
    pub fn call_dynamic<'a>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: DynArgs,
    ) -> Call<'a, DynValue> {
        self.new_call(job, func, Args::Dynamic(args), call::dynamic)
    }

    /// Opens a [`Session`] of `job`: one instance, kept alive across
    /// calls on the worker that holds it. Await the [`OpenSession`]
    /// builder, after setting the session's sandbox and limits on it if
    /// need be.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// let session = pool.session(&job).max_memory(64 << 20).await?;
    /// let n: u64 = session.run("bump", ()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Pool::run) for the component, and a trap of its
    /// instantiation; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)
    /// on a cluster pool.
    pub fn session<'a>(&self, job: &'a Job) -> OpenSession<'a> {
        OpenSession {
            pool: self.clone(),
            job,
            options: self.handle.inner.options.clone(),
            grace: self.handle.inner.grace,
            on_cancel: self.handle.inner.on_cancel,
        }
    }

    fn new_call<'a, R>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: Args,
        decode: call::Decode<R>,
    ) -> Call<'a, R> {
        Call {
            pool: self.clone(),
            job,
            func,
            args,
            decode,
            on_cancel: self.handle.inner.on_cancel,
            options: self.handle.inner.options.clone(),
            grace: self.handle.inner.grace,
            cancel: Arc::default(),
            link: None,
            data: None,
            tenant: None,
            session: None,
            _result: PhantomData,
        }
    }

    /// Compiles `job` for this pool now, off the async threads, instead of
    /// on its first call. Later calls and workers reuse the artifact.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`](crate::ErrorKind::InvalidComponent) if it does not compile, or
    /// imports what neither wasmpool nor a [host
    /// function](PoolBuilder::host_fn) provides.
    ///
    /// # Panics
    ///
    /// When awaited outside a Tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting, not the compile: it goes on
    /// in the background, and the next call or `prepare` finds it done or
    /// joins it.
    pub async fn prepare(&self, job: &Job) -> Result<(), Error> {
        let inner = &self.handle.inner;
        let compiled = inner.compiler.compiled(job).await?;
        compiled.check_imports(&inner.host_fns)
    }

    /// Starts workers until `n` (at most the pool's size) are idle, so that
    /// the first calls do not wait for a process to start.
    ///
    /// They are of the pool's memory kind: copying guests' initial memory
    /// in, unless [`copy_on_write_memory(true)`](PoolBuilder::copy_on_write_memory).
    /// With the kind left to each job (the default), a job with a large
    /// initial memory starts workers of its own kind on its first calls,
    /// in place of idle ones. So does a component that uses the component
    /// model's async: it runs on workers whose engine has it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Spawn`](crate::ErrorKind::Spawn) if a worker cannot be started,
    /// [`ErrorKind::PoolClosed`](crate::ErrorKind::PoolClosed) after shutdown.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops warming; the workers it had started and
    /// not yet handed to the pool exit, and their places go to waiting
    /// calls.
    pub async fn warm(&self, n: usize) -> Result<(), Error> {
        let roster = match &self.handle.inner.backend {
            Backend::Local(roster) => roster,
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => return caller.connect().await,
        };
        let mut held = Vec::new();
        let grants = Grants::of(&self.handle.inner.options.preopens);
        for _ in 0..n.min(roster.size().get()) {
            let permit = roster.warming_permit().await?;
            let worker = roster
                .checkout(&grants, self.handle.inner.compiler.default_kind())
                .await?;
            held.push((worker, permit));
        }
        for (worker, permit) in held {
            roster.checkin(worker, permit);
        }
        Ok(())
    }

    /// A snapshot of the pool's counters. For a cluster pool (the
    /// `cluster` feature's `PoolBuilder::nats`), the sums over the nodes
    /// heard from in the last seconds (see `Pool::nodes`).
    pub fn statistics(&self) -> Statistics {
        self.handle.inner.backend.statistics()
    }

    /// For a [cluster pool](PoolBuilder::nats), the worker nodes heard
    /// from in the last seconds, with their load; empty for a local pool.
    ///
    /// ```no_run
    /// # fn demo(pool: wasmpool::Pool) {
    /// for node in pool.nodes() {
    ///     println!("{} on {}: {}/{} busy", node.id, node.host, node.busy, node.workers);
    /// }
    /// # }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn nodes(&self) -> Vec<NodeInfo> {
        match &self.handle.inner.backend {
            Backend::Cluster(caller) => caller.nodes(),
            Backend::Local(_) => Vec::new(),
        }
    }

    /// How many requests [`map`](Pool::map) keeps in flight: one per
    /// worker, or for a cluster, one per worker of the nodes (and at
    /// least two, before any node is heard from).
    pub(super) fn parallelism(&self) -> usize {
        self.handle.inner.backend.parallelism()
    }

    /// Runs a cluster node's order in this (local) pool.
    #[cfg(feature = "cluster")]
    pub(crate) async fn run_order(
        &self,
        job: &Job,
        func: &str,
        items: Vec<Vec<u8>>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Vec<crate::wire::Outcome>, Error> {
        self.handle
            .inner
            .clone()
            .run_order(job, func, items, options, policy)
            .await
    }

    /// The registry of the pool's primitives and job channels.
    #[cfg(feature = "cluster")]
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.handle.inner.sync
    }

    /// Whether calls run on a cluster's nodes.
    pub(super) fn is_cluster(&self) -> bool {
        !matches!(self.handle.inner.backend, Backend::Local(_))
    }

    /// The pids of the live worker processes; empty for a pool of
    /// [`WorkerKind::Thread`] workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.handle.inner.backend.pids()
    }

    /// Closes the pool and waits until every worker has exited and been
    /// reaped. Calls in flight finish first; calls that have not started
    /// fail with [`ErrorKind::PoolClosed`](crate::ErrorKind::PoolClosed), as do calls made afterwards.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting, not the shutdown: the pool
    /// stays closed and its workers still exit.
    pub async fn shutdown(&self) {
        let backend = &self.handle.inner.backend;
        backend.close();
        backend.all_exited().await;
    }

    /// Test only, not part of the API: panics, and catches the panic,
    /// while holding each of the pool's own locks in turn (its registry of
    /// primitives, its compiler, its roster), so that all of them are
    /// poisoned.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn poison_internal_locks(&self) {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let inner = &self.handle.inner;
        let _ = catch_unwind(AssertUnwindSafe(|| inner.sync.poison()));
        let _ = catch_unwind(AssertUnwindSafe(|| inner.compiler.poison()));
        if let Backend::Local(roster) = &inner.backend {
            let _ = catch_unwind(AssertUnwindSafe(|| roster.poison()));
        }
    }

    /// Whether [`shutdown`](Pool::shutdown) has been called.
    pub fn is_closed(&self) -> bool {
        self.handle.inner.backend.is_closed()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("statistics", &self.statistics())
            .finish_non_exhaustive()
    }
}

/// The default pool behind [`run`], created on first use with
/// [`Pool::new`].
pub fn default_pool() -> Result<Pool, Error> {
    static DEFAULT: Mutex<Option<Pool>> = Mutex::new(None);
    let mut slot = DEFAULT.locked();
    if let Some(p) = &*slot {
        return Ok(p.clone());
    }
    let pool = Pool::new()?;
    *slot = Some(pool.clone());
    Ok(pool)
}

/// Calls `func` of `job` on the [`default_pool`]: the same as
/// [`Pool::run`] with no pool to set up.
///
/// ```no_run
/// # async fn demo() -> Result<(), wasmpool::Error> {
/// let job = wasmpool::Job::from_file("fib.wasm")?;
/// let n: u64 = wasmpool::run(&job, "fib", (30u64,)).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`Pool::run`], and as [`Pool::new`] when the default pool is first
/// made.
///
/// # Panics
///
/// As [`Pool::run`].
///
/// # Cancel safety
///
/// As [`Pool::run`].
pub fn run<'a, R: DeserializeOwned + Send + 'a>(
    job: &'a Job,
    func: &'a str,
    args: impl Serialize,
) -> impl Future<Output = Result<R, Error>> + Send + 'a {
    let call = default_pool().map(|pool| pool.call(job, func, args));
    async move { call?.await }
}
