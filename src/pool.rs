//! [`Pool`]: worker processes, a FIFO limiter and a LIFO idle cache.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::compile::{self, Compiled};
use crate::engine::{DEFAULT_MAX_WASM_STACK, EngineSettings};
use crate::error::{Error, ErrorKind};
use crate::handles::{Barrier, Condition, Event, JobHandle, Lock, Queue};
use crate::job::Job;
use crate::protocol::{CallOptions, CallRequest, Preopen, Report};
use crate::stdio::Stdio;
use crate::sync::Spec as SyncSpec;
use crate::value;
use crate::worker::{self, Reply, Spec, Worker};

/// How long an idle worker is kept before it exits: 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an interrupted or timed-out call has to stop before its worker
/// is killed: 500 ms. An epoch interrupt takes microseconds; the margin is
/// for a loaded machine.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(500);

/// Whether a preopened directory may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DirAccess {
    /// The guest may read files and list directories.
    ReadOnly,
    /// The guest may also create, write and remove.
    ReadWrite,
}

/// Cancels one call from anywhere: another task, a thread, a signal
/// handler's task. From [`Call::cancel_handle`].
///
/// Cancelling is the same as dropping the call's future: the call's
/// [`Cancel`] mode decides what happens to the guest, and the awaiting
/// future resolves with [`ErrorKind::Cancelled`]. [`cancel`](Self::cancel)
/// is cheap, never blocks, and can be called any number of times; cancelling
/// a call that has already finished does nothing.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) {
/// let call = pool.call::<u64>(&job, "spin", (u64::MAX,));
/// let handle = call.cancel_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     handle.cancel();
/// });
/// assert!(call.await.unwrap_err().is_cancelled());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CancelHandle {
    flag: Arc<CancelFlag>,
}

#[derive(Debug, Default)]
struct CancelFlag {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelHandle {
    /// Cancels the call.
    pub fn cancel(&self) {
        if !self.flag.cancelled.swap(true, Ordering::SeqCst) {
            self.flag.notify.notify_one();
        }
    }

    /// Whether [`cancel`](Self::cancel) has been called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.cancelled.load(Ordering::SeqCst)
    }
}

impl CancelFlag {
    async fn wait(&self) {
        // `notify_one` leaves a permit if nobody waits yet, so a cancel
        // between the check and the await is not lost.
        while !self.cancelled.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }
}

/// The sandbox and limit settings shared by [`PoolBuilder`] and [`Call`].
macro_rules! call_option_setters {
    () => {
        /// Interrupt the call after this long; it fails with
        /// [`ErrorKind::Timeout`]. The worker enforces it with an epoch
        /// interrupt and survives; if it has not stopped `grace` later, the
        /// host kills it. Default: none.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.options.timeout = Some(timeout);
            self
        }

        /// How long an interrupted call (timed out, or dropped with
        /// [`Cancel::Interrupt`]) has to stop before its worker is killed.
        /// Default: [`DEFAULT_GRACE`].
        pub fn grace(mut self, grace: Duration) -> Self {
            self.grace = grace;
            self
        }

        /// The most linear memory the guest may grow to, in bytes. Growing
        /// past it fails in the guest; a guest that traps as a result fails
        /// with [`ErrorKind::ResourceLimit`] and
        /// [`Limit::Memory`](crate::Limit::Memory). Default: none (up to
        /// the 4 GiB a 32-bit memory can address).
        pub fn max_memory(mut self, bytes: u64) -> Self {
            self.options.max_memory = Some(bytes);
            self
        }

        /// The call's fuel budget: a deterministic bound on the wasm
        /// instructions it may run. Running out fails with
        /// [`ErrorKind::ResourceLimit`] and
        /// [`Limit::Fuel`](crate::Limit::Fuel);
        /// [`Call::report`] tells how much was used. It counts the call
        /// itself, not the instantiation before it. On a
        /// [`PoolBuilder`] this also turns fuel metering on for the pool,
        /// which costs about 20% of guest speed; a call can set a budget
        /// only on such a pool.
        pub fn fuel(mut self, fuel: u64) -> Self {
            self.options.fuel = Some(fuel);
            self
        }

        /// Makes the call reproducible: random numbers (secure and
        /// insecure) come from a sequence derived from `seed`, the wall
        /// clock reads a fixed time, and the monotonic clock advances by 1
        /// µs per reading. Not for guests that need real randomness.
        /// Default: real random numbers and clocks.
        pub fn deterministic(mut self, seed: u64) -> Self {
            self.options.deterministic = Some(seed);
            self
        }

        /// Where the guest's stdout goes. Default: [`Stdio::Inherit`].
        pub fn stdout(mut self, mode: Stdio) -> Self {
            self.options.stdout = mode;
            self
        }

        /// Where the guest's stderr goes. Default: [`Stdio::Inherit`]. A
        /// panic message is found in every mode.
        pub fn stderr(mut self, mode: Stdio) -> Self {
            self.options.stderr = mode;
            self
        }

        /// Sets an environment variable the guest sees. By default the
        /// guest sees none.
        pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.options.env.push((key.into(), value.into()));
            self
        }

        /// Passes the host's own value of environment variable `key` to the
        /// guest, if the host has it: an allowlist entry. The value is read
        /// when this is called.
        pub fn env_from_host(mut self, key: impl Into<String>) -> Self {
            let key = key.into();
            if let Ok(value) = std::env::var(&key) {
                self.options.env.push((key, value));
            }
            self
        }

        /// Makes the host directory `host` visible to the guest as `guest`
        /// (through cap-std: the guest cannot leave it by `..` or
        /// symlinks). By default the guest sees no files at all.
        pub fn preopen_dir(
            mut self,
            host: impl Into<PathBuf>,
            guest: impl Into<String>,
            access: DirAccess,
        ) -> Self {
            self.options.preopens.push(Preopen {
                host: host.into(),
                guest: guest.into(),
                read_only: access == DirAccess::ReadOnly,
            });
            self
        }
    };
}

/// Where a pool runs its calls. Set with [`PoolBuilder::worker_kind`].
///
/// | | [`Process`](WorkerKind::Process) | [`Thread`](WorkerKind::Thread) |
/// | --- | --- | --- |
/// | isolation | an OS process per worker | threads of the host process |
/// | soft cancel (epoch interrupt), timeouts, limits, sandbox | yes | yes |
/// | hard cancel ([`Cancel::Kill`]) | SIGKILL | no: interrupts instead |
/// | a crash in wasmtime or the host's code | an error | takes the host down |
/// | start-up | a few ms (re-exec, engine) | about 1 ms (engine) |
/// | round trip of a no-op call | tens of µs | a few µs to tens of µs |
///
/// Both run each call in its own store, sandboxed the same way; a trap is an
/// error in both. Choose threads for many tiny calls to trusted (or at
/// least well-behaved) code, processes when a guest may need to be killed
/// or when the host must survive anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerKind {
    /// Worker processes: the current executable re-executed. The default.
    #[default]
    Process,
    /// Worker threads in the host process, each with its own engine.
    /// There is no hard kill: [`Cancel::Kill`] and an overrun
    /// [`grace`](PoolBuilder::grace) period interrupt the guest instead,
    /// and a worker that still does not stop is abandoned (its thread ends
    /// when the call does) and replaced.
    Thread,
}

/// What happens to a call whose future is dropped before it finishes.
///
/// Set per pool with [`PoolBuilder::on_cancel`] and per call with
/// [`Call::on_cancel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cancel {
    /// Interrupt the guest with an epoch interrupt; the worker survives and
    /// serves the next call. The default.
    #[default]
    Interrupt,
    /// Kill the worker process at once with SIGKILL. The pool starts a new
    /// one when it next needs it. Thread workers cannot be killed; for them
    /// this is [`Interrupt`](Cancel::Interrupt).
    Kill,
    /// Let the call run to completion and discard its result; the worker
    /// then returns to the pool.
    Finish,
}

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
        self.inner.terminate();
    }
}

pub(crate) struct PoolInner {
    workers: usize,
    /// The machine's parallelism.
    cores: usize,
    idle_timeout: Duration,
    retire_after: Option<u64>,
    spec: Spec,
    cache_dir: PathBuf,
    settings: EngineSettings,
    on_cancel: Cancel,
    options: CallOptions,
    grace: Duration,
    engine: wasmtime::Engine,
    /// FIFO: a permit is the right to hold a worker.
    semaphore: Arc<Semaphore>,
    /// LIFO: the most recently used worker is at the end.
    idle: Mutex<Vec<Worker>>,
    /// Wakes the housekeeper (paired with `idle`).
    house: Condvar,
    /// The housekeeper waits with no deadline (the idle list was empty),
    /// so a check-in must wake it. Read and written under the `idle` lock.
    house_unarmed: AtomicBool,
    /// Every worker process that has not been reaped.
    live: Mutex<HashMap<u64, Arc<worker::Shared>>>,
    exited: Notify,
    compiled: Mutex<HashMap<String, Arc<OnceCell<Arc<Compiled>>>>>,
    closed: AtomicBool,
    next_worker: AtomicU64,
    next_call: AtomicU64,
    spawned: AtomicU64,
    crashed: AtomicU64,
    killed: AtomicU64,
    calls: AtomicU64,
    /// The named primitives and job channels.
    pub(crate) sync: Arc<crate::sync::Registry>,
}

/// A snapshot of a pool's counters, from [`Pool::statistics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

/// Builds a [`Pool`]. Start with [`Pool::builder`].
///
/// The defaults are those of [`Pool::new`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    workers: Option<usize>,
    kind: WorkerKind,
    reuse_instances: bool,
    memory_cow: bool,
    idle_timeout: Duration,
    retire_after: Option<u64>,
    worker_program: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    max_wasm_stack: usize,
    on_cancel: Cancel,
    options: CallOptions,
    grace: Duration,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PoolBuilder {
            workers,
            kind,
            reuse_instances,
            memory_cow,
            idle_timeout,
            retire_after,
            worker_program,
            cache_dir,
            max_wasm_stack,
            on_cancel,
            options,
            grace,
        } = self;
        f.debug_struct("PoolBuilder")
            .field("workers", workers)
            .field("kind", kind)
            .field("reuse_instances", reuse_instances)
            .field("memory_cow", memory_cow)
            .field("idle_timeout", idle_timeout)
            .field("retire_after", retire_after)
            .field("worker_program", worker_program)
            .field("cache_dir", cache_dir)
            .field("max_wasm_stack", max_wasm_stack)
            .field("on_cancel", on_cancel)
            .field("options", options)
            .field("grace", grace)
            .finish()
    }
}

impl PoolBuilder {
    call_option_setters!();

    /// The most worker processes to run at once. Calls beyond that wait,
    /// first come first served. Default: the number of CPUs
    /// (`std::thread::available_parallelism`).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Whether workers are processes or threads of this process. Default:
    /// [`WorkerKind::Process`]. See [`WorkerKind`] for the trade-off.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// use wasmpool::{Pool, WorkerKind};
    /// let pool = Pool::builder().worker_kind(WorkerKind::Thread).build()?;
    /// # Ok(()) }
    /// ```
    pub fn worker_kind(mut self, kind: WorkerKind) -> Self {
        self.kind = kind;
        self
    }

    /// Keep each job's instance alive between calls on a worker, instead of
    /// giving every call a fresh one. Default: `false`.
    ///
    /// This saves the instantiation (a few µs for a small Rust guest, much
    /// more for large ones), but a call then sees the state earlier calls on
    /// the same worker left in the guest's memory and globals: use it only
    /// for trusted jobs that expect it. An instance is used for calls with
    /// the same sandbox options ([`env`](Self::env),
    /// [`preopen_dir`](Self::preopen_dir), stdio, limits) only, and is
    /// discarded after any call that fails (trap, cancel, timeout, limit),
    /// so a broken instance is never entered again.
    ///
    /// Without reuse, a worker still prepares the next call's fresh
    /// instance ahead of time, after answering the last call, so that
    /// instantiation is off the latency path either way.
    pub fn reuse_instances(mut self, reuse: bool) -> Self {
        self.reuse_instances = reuse;
        self
    }

    /// Whether a new instance maps its guest's initial memory copy-on-write
    /// rather than copying it in. Default: `false`.
    ///
    /// Mapping is much faster for guests with megabytes of data: a
    /// componentize-py guest took about 1.5 ms a call mapped against 10 ms
    /// copied, a componentize-js guest 0.8 ms against 4 ms. But the first
    /// write to each mapped page is a copy-on-write fault, which interrupts
    /// every other core the process runs on to flush its TLB. For a small
    /// guest that costs more than copying its few pages: a thread worker's
    /// no-op call took about 45 µs mapped against 22 µs copied, and two
    /// callers on process workers got 4–8 k calls/s mapped against 13–22 k
    /// copied, on two cores. Turn it on for large guests.
    pub fn copy_on_write_memory(mut self, on: bool) -> Self {
        self.memory_cow = on;
        self
    }

    /// How long an idle worker waits for a call before it exits. Default:
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Retire a worker (let it exit, and start a fresh one when needed)
    /// after it has served this many calls. Default: never.
    pub fn retire_after(mut self, calls: u64) -> Self {
        self.retire_after = Some(calls);
        self
    }

    /// The program to start as a worker. Default: the current executable,
    /// which diverts into the worker before `main` when started as one. A
    /// dedicated worker program must be linked with wasmpool (on Linux that
    /// is all it needs; elsewhere its `main` calls
    /// [`worker_entry`](crate::worker_entry) first).
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Where compiled components are cached. Default:
    /// `$XDG_CACHE_HOME/wasmpool`, else `~/.cache/wasmpool`. It must be
    /// writable by this user only, since artifacts are native code.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The size of the wasm stack of each call, in bytes. Default: 1 MiB.
    /// A guest that exceeds it fails with [`ErrorKind::ResourceLimit`].
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// What dropping an unfinished call does. Default:
    /// [`Cancel::Interrupt`].
    pub fn on_cancel(mut self, mode: Cancel) -> Self {
        self.on_cancel = mode;
        self
    }

    /// Builds the pool. No worker starts until the first call (or
    /// [`Pool::warm`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a setting out of range (zero workers, a
    /// wasm stack under 64 KiB), [`ErrorKind::Io`] if the current
    /// executable cannot be found.
    pub fn build(self) -> Result<Pool, Error> {
        let PoolBuilder {
            workers,
            kind,
            reuse_instances,
            memory_cow,
            idle_timeout,
            retire_after,
            worker_program,
            cache_dir,
            max_wasm_stack,
            on_cancel,
            options,
            grace,
        } = self;
        let workers = match workers {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "a pool needs at least one worker",
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if retire_after == Some(0) {
            return Err(Error::new(
                ErrorKind::Config,
                "retire_after must be at least 1 call",
            ));
        }
        if max_wasm_stack < 64 * 1024 {
            return Err(Error::new(
                ErrorKind::Config,
                "max_wasm_stack must be at least 64 KiB",
            ));
        }
        let program = match worker_program {
            Some(p) => p,
            None => std::env::current_exe()
                .map_err(|e| Error::io("finding the current executable to start workers", e))?,
        };
        let settings = EngineSettings {
            max_wasm_stack,
            consume_fuel: options.fuel.is_some(),
            memory_cow,
        };
        let engine = settings
            .host_engine()
            .map_err(|e| Error::new(ErrorKind::Config, format!("creating the engine: {e:#}")))?;
        let inner = Arc::new(PoolInner {
            workers,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            idle_timeout,
            retire_after,
            spec: Spec {
                kind,
                program,
                settings: settings.clone(),
                reuse_instances,
            },
            cache_dir: cache_dir.unwrap_or_else(compile::default_cache_dir),
            settings,
            on_cancel,
            options,
            grace,
            engine,
            semaphore: Arc::new(Semaphore::new(workers)),
            idle: Mutex::new(Vec::new()),
            house: Condvar::new(),
            house_unarmed: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            exited: Notify::new(),
            compiled: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            next_worker: AtomicU64::new(0),
            next_call: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
            crashed: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            sync: Arc::default(),
        });
        let house = inner.clone();
        std::thread::Builder::new()
            .name("wasmpool-housekeeper".into())
            .spawn(move || house.housekeeper())
            .map_err(|e| Error::io("starting the housekeeper thread", e))?;
        Ok(Pool {
            handle: Arc::new(Handle { inner }),
        })
    }
}

impl Pool {
    /// A pool with the defaults:
    ///
    /// - workers: the number of CPUs;
    /// - idle timeout: [`DEFAULT_IDLE_TIMEOUT`] (10 minutes);
    /// - retire after: never;
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
            memory_cow: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retire_after: None,
            worker_program: None,
            cache_dir: None,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            on_cancel: Cancel::Interrupt,
            options: CallOptions::default(),
            grace: DEFAULT_GRACE,
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
    /// See [`ErrorKind`]: a trap, a crashed worker, a name or type mismatch,
    /// a closed pool.
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
    pub fn call<'a, R>(&self, job: &'a Job, func: &'a str, args: impl Serialize) -> Call<'a, R> {
        let args = encode_args(&args);
        Call {
            pool: self.clone(),
            job,
            func,
            args,
            on_cancel: self.handle.inner.on_cancel,
            options: self.handle.inner.options.clone(),
            grace: self.handle.inner.grace,
            cancel: Arc::default(),
            link: None,
            _result: PhantomData,
        }
    }

    /// Calls `func` once per item of `args`, and yields the results in the
    /// order of the items, like an ordered parallel map.
    ///
    /// Items are taken from `args` as calls finish, so it may be a long or
    /// endless iterator. At most as many requests are in flight as the pool
    /// has workers. Tiny items are sent in batches: a worker runs a batch
    /// item after item (each on its own instance, as always) and answers it
    /// in one message, which saves a round trip per item. The batch size
    /// adapts to how long items take, aiming at about 2 ms of work per
    /// batch; items that take longer go one at a time.
    ///
    /// A failing item yields its error and the stream goes on. Dropping the
    /// stream cancels the calls in flight (as [`PoolBuilder::on_cancel`]
    /// says) and takes no more items. The pool's call options (timeout,
    /// limits, sandbox) apply to each item.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use futures_util::StreamExt;
    /// let fibs: Vec<u64> = pool
    ///     .map(&job, "fib", (0..20u64).map(|n| (n,)))
    ///     .collect::<Vec<_>>()
    ///     .await
    ///     .into_iter()
    ///     .collect::<Result<_, _>>()?;
    /// # Ok(()) }
    /// ```
    pub fn map<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = Result<R, Error>> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let limit = self.handle.inner.workers;
        self.batches(job, func, args.into_iter())
            .buffered(limit)
            .flat_map(futures_util::stream::iter)
            .map(|(_, r)| r)
    }

    /// Like [`map`](Pool::map), but yields each result as soon as its
    /// batch is done, whatever the order of the items. Each result comes
    /// with its item's index.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) {
    /// use futures_util::StreamExt;
    /// let mut results = pool.map_unordered::<_, u64, _>(&job, "fib", [(30u64,), (5,), (20,)]);
    /// while let Some((index, result)) = results.next().await {
    ///     println!("item {index}: {result:?}");
    /// }
    /// # }
    /// ```
    pub fn map_unordered<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = (usize, Result<R, Error>)> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let limit = self.handle.inner.workers;
        self.batches(job, func, args.into_iter())
            .buffer_unordered(limit)
            .flat_map(futures_util::stream::iter)
    }

    /// The items of `args` as a stream of batch futures, each resolving to
    /// its items' indices and results. Sizes adapt (see [`Pool::map`]).
    fn batches<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = impl Future<Output = Vec<(usize, Result<R, Error>)>> + Send + 'a> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: Iterator<Item = A> + Send + 'a,
    {
        let inner = self.handle.inner.clone();
        let sizer = Arc::new(BatchSizer::default());
        let mut next_index = 0;
        futures_util::stream::iter(std::iter::from_fn({
            let sizer = sizer.clone();
            let mut args = args;
            move || {
                let size = sizer.next_size();
                let items: Vec<Result<Vec<u8>, Error>> =
                    args.by_ref().take(size).map(|a| encode_args(&a)).collect();
                (!items.is_empty()).then_some(items)
            }
        }))
        .map(move |items| {
            let first = next_index;
            next_index += items.len();
            let inner = inner.clone();
            let sizer = sizer.clone();
            let options = inner.options.clone();
            let policy = Policy {
                on_cancel: inner.on_cancel,
                grace: inner.grace,
                job: None,
            };
            async move {
                let count = items.len();
                let started = Instant::now();
                let results = inner.call_many(job, func, items, options, policy).await;
                sizer.record(started.elapsed(), count);
                let results: Vec<Result<R, Error>> = match results {
                    Ok(results) => results
                        .into_iter()
                        .map(|r| r.and_then(|(bytes, report)| decode_result(&bytes, report)))
                        .map(|r| r.map(|out: Output<R>| out.value))
                        .collect(),
                    Err(e) => (0..count).map(|_| Err(e.duplicate())).collect(),
                };
                (first..).zip(results).collect::<Vec<_>>()
            }
        })
    }

    /// Compiles `job` for this pool now, off the async threads, instead of
    /// on its first call. Later calls and workers reuse the artifact.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`] if it does not compile.
    pub async fn prepare(&self, job: &Job) -> Result<(), Error> {
        self.handle.inner.compiled(job).await.map(drop)
    }

    /// Starts workers until `n` (at most the pool's size) are idle, so that
    /// the first calls do not wait for a process to start.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Spawn`] if a worker cannot be started,
    /// [`ErrorKind::PoolClosed`] after shutdown.
    pub async fn warm(&self, n: usize) -> Result<(), Error> {
        let inner = &self.handle.inner;
        let mut held = Vec::new();
        for _ in 0..n.min(inner.workers) {
            let permit = inner
                .semaphore
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::closed())?;
            let worker = inner.checkout().await?;
            held.push((worker, permit));
        }
        for (worker, permit) in held {
            inner.checkin(worker, permit);
        }
        Ok(())
    }

    /// A snapshot of the pool's counters.
    pub fn statistics(&self) -> Statistics {
        let inner = &self.handle.inner;
        let idle = inner.idle.lock().expect("idle lock").len();
        let live = inner.live.lock().expect("live lock").len();
        Statistics {
            max_workers: inner.workers,
            idle,
            busy: live.saturating_sub(idle),
            spawned: inner.spawned.load(Ordering::Relaxed),
            crashed: inner.crashed.load(Ordering::Relaxed),
            killed: inner.killed.load(Ordering::Relaxed),
            calls: inner.calls.load(Ordering::Relaxed),
        }
    }

    /// The pids of the live worker processes; empty for a pool of
    /// [`WorkerKind::Thread`] workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        let live = self.handle.inner.live.lock().expect("live lock");
        live.values().filter_map(|s| s.pid()).collect()
    }

    /// Closes the pool and waits until every worker has exited and been
    /// reaped. Calls in flight finish first; calls that have not started
    /// fail with [`ErrorKind::PoolClosed`], as do calls made afterwards.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting, not the shutdown: the pool
    /// stays closed and its workers still exit.
    pub async fn shutdown(&self) {
        let inner = &self.handle.inner;
        inner.close();
        loop {
            let exited = inner.exited.notified();
            tokio::pin!(exited);
            exited.as_mut().enable();
            if inner.live.lock().expect("live lock").is_empty() {
                return;
            }
            exited.await;
        }
    }

    /// Whether [`shutdown`](Pool::shutdown) has been called.
    pub fn is_closed(&self) -> bool {
        self.handle.inner.closed.load(Ordering::SeqCst)
    }
}

/// Spawned jobs and the pool's named primitives (`wasmpool:sync`).
///
/// Primitives are created on the pool by name, and typed on the host.
/// Guests open them by the same name through the `wasmpool:sync` imports
/// (the `wasmpool-guest` SDK: `Queue::open(name)`, `Lock::open(name)`,
/// ...), and block on them; a guest's blocking call takes a timeout, and
/// wakes at once when its call is cancelled or times out. When a guest's
/// call ends, however it ends, everything it held is released: see
/// [`Queue`], [`Lock`](crate::Lock), [`Semaphore`](crate::Semaphore) and
/// [`Barrier`](crate::Barrier).
///
/// Creating a primitive whose name exists returns a handle to the same one
/// if the kind and settings match, and an [`ErrorKind::Sync`] error if not.
/// Primitives live as long as the pool.
impl Pool {
    /// Starts `func` as a job with a handle: see [`JobHandle`]. The same as
    /// `pool.call(job, func, args).spawn()`, which also takes call options.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// // A guest that emits its progress as it goes.
    /// let handle = pool.spawn::<u64>(&job, "progress", (100u64,));
    /// while let Some(done) = handle.recv::<u64>().await? {
    ///     println!("{done}/100");
    /// }
    /// assert_eq!(handle.await?, 100);
    /// # Ok(()) }
    /// ```
    ///
    /// The handle resolves to an [`ErrorKind::Config`] error when called
    /// outside a Tokio runtime.
    pub fn spawn<R: DeserializeOwned + Send + 'static>(
        &self,
        job: &Job,
        func: &str,
        args: impl Serialize,
    ) -> JobHandle<R> {
        self.call(job, func, args).spawn()
    }

    /// The queue `name` of values of type `T`, holding at most `capacity`
    /// values (0: no bound).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// let work = pool.queue::<u64>("work", 100)?;
    /// work.put(&7).await?;
    /// work.close();
    /// assert_eq!(work.get().await?, Some(7));
    /// assert_eq!(work.get().await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the name is taken by another kind or another
    /// capacity.
    pub fn queue<T>(&self, name: &str, capacity: usize) -> Result<Queue<T>, Error> {
        self.create(
            name,
            SyncSpec::Queue {
                capacity,
                joinable: false,
            },
        )?;
        Ok(Queue::new(self.handle.inner.sync.clone(), name))
    }

    /// A queue whose values are marked done as they are handled
    /// ([`Queue::task_done`]), so that [`Queue::join`] can wait for all of
    /// them. A guest that ends without marking a value it took done gives
    /// it back to the queue.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue).
    pub fn joinable_queue<T>(&self, name: &str, capacity: usize) -> Result<Queue<T>, Error> {
        self.create(
            name,
            SyncSpec::Queue {
                capacity,
                joinable: true,
            },
        )?;
        Ok(Queue::new(self.handle.inner.sync.clone(), name))
    }

    /// The lock `name`.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// let lock = pool.lock("ledger")?;
    /// let guard = lock.lock().await?;
    /// // ... no guest holds "ledger" here ...
    /// drop(guard);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the name is taken by another kind.
    pub fn lock(&self, name: &str) -> Result<Lock, Error> {
        self.create(name, SyncSpec::Lock)?;
        Ok(Lock::new(self.handle.inner.sync.clone(), name))
    }

    /// The reentrant lock `name`: a guest's call that holds it may take it
    /// again, and releases it as often.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn rlock(&self, name: &str) -> Result<Lock, Error> {
        self.create(name, SyncSpec::RLock)?;
        Ok(Lock::new(self.handle.inner.sync.clone(), name))
    }

    /// The semaphore `name`, with `permits` permits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for 0 permits; [`ErrorKind::Sync`] if the name
    /// is taken by another kind or another count.
    pub fn semaphore(
        &self,
        name: &str,
        permits: usize,
    ) -> Result<crate::handles::Semaphore, Error> {
        if permits == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a semaphore needs at least one permit",
            ));
        }
        self.create(name, SyncSpec::Semaphore { permits })?;
        Ok(crate::handles::Semaphore::new(
            self.handle.inner.sync.clone(),
            name,
        ))
    }

    /// The event `name`, initially clear.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn event(&self, name: &str) -> Result<Event, Error> {
        self.create(name, SyncSpec::Event)?;
        Ok(Event::new(self.handle.inner.sync.clone(), name))
    }

    /// The condition variable `name`, with a lock of its own.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn condition(&self, name: &str) -> Result<Condition, Error> {
        self.create(name, SyncSpec::Condition)?;
        Ok(Condition::new(self.handle.inner.sync.clone(), name))
    }

    /// The barrier `name`, for `parties` waiters.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for 0 parties; [`ErrorKind::Sync`] if the name
    /// is taken by another kind or another count.
    pub fn barrier(&self, name: &str, parties: usize) -> Result<Barrier, Error> {
        if parties == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a barrier needs at least one party",
            ));
        }
        self.create(name, SyncSpec::Barrier { parties })?;
        Ok(Barrier::new(self.handle.inner.sync.clone(), name))
    }

    fn create(&self, name: &str, spec: SyncSpec) -> Result<(), Error> {
        if name.is_empty() || name.starts_with('\0') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{name:?} is not a primitive's name"),
            ));
        }
        self.handle
            .inner
            .sync
            .create(name, spec)
            .map_err(|m| Error::new(ErrorKind::Sync, m))
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("statistics", &self.statistics())
            .finish_non_exhaustive()
    }
}

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
/// - [`Cancel::Kill`]: the worker is killed with SIGKILL at once.
/// - [`Cancel::Finish`]: the call runs to completion, its result is
///   discarded, and the worker goes back to the pool.
///
/// A [`CancelHandle`] from [`cancel_handle`](Call::cancel_handle) does the
/// same from another task, and the future resolves with
/// [`ErrorKind::Cancelled`]. A [`timeout`](Call::timeout) is not a cancel:
/// it fails with [`ErrorKind::Timeout`].
#[must_use = "a call does nothing until awaited"]
pub struct Call<'a, R> {
    pool: Pool,
    job: &'a Job,
    func: &'a str,
    args: Result<Vec<u8>, Error>,
    on_cancel: Cancel,
    options: CallOptions,
    grace: Duration,
    cancel: Arc<CancelFlag>,
    /// Set for a call made by [`Call::spawn`].
    link: Option<Arc<crate::handles::JobLink>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Call<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Call {
            pool: _,
            job,
            func,
            args,
            on_cancel,
            options,
            grace,
            cancel,
            link: _,
            _result,
        } = self;
        f.debug_struct("Call")
            .field("job", job)
            .field("func", func)
            .field("args_len", &args.as_ref().map(Vec::len).ok())
            .field("on_cancel", on_cancel)
            .field("options", options)
            .field("grace", grace)
            .field("cancelled", &cancel.cancelled.load(Ordering::Relaxed))
            .finish()
    }
}

impl<R> Call<'_, R> {
    call_option_setters!();

    /// A handle that cancels this call from anywhere without dropping its
    /// future. See [`CancelHandle`].
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            flag: self.cancel.clone(),
        }
    }

    /// What dropping this call before it finishes does. Default: the
    /// pool's setting.
    pub fn on_cancel(mut self, mode: Cancel) -> Self {
        self.on_cancel = mode;
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> Call<'_, R> {
    /// Starts the call as a job with a handle, which can be awaited for
    /// the result, cancelled or killed, and has a duplex channel to the
    /// guest. See [`JobHandle`] and [`Pool::spawn`].
    pub fn spawn(self) -> JobHandle<R> {
        let registry = self.pool.handle.inner.sync.clone();
        let channel = registry.open_channel();
        let cancel = self.cancel_handle();
        let job = self.job.clone();
        let func = self.func.to_string();
        let Call {
            pool,
            args,
            on_cancel,
            options,
            grace,
            cancel: flag,
            ..
        } = self;
        JobHandle::spawn(registry, channel, cancel, move |link| {
            Box::pin(async move {
                let call = Call {
                    pool,
                    job: &job,
                    func: &func,
                    args,
                    on_cancel,
                    options,
                    grace,
                    cancel: flag,
                    link: Some(link),
                    _result: PhantomData,
                };
                call.execute().await.map(|out| out.value)
            })
        })
    }
}

impl<'a, R: DeserializeOwned + Send + 'a> IntoFuture for Call<'a, R> {
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
    /// ([`PoolBuilder::fuel`]).
    pub fuel_consumed: Option<u64>,
    /// The guest's stdout, when captured ([`Stdio::Capture`]).
    pub stdout: Option<Vec<u8>>,
    /// The guest's stderr, when captured ([`Stdio::Capture`]).
    pub stderr: Option<Vec<u8>>,
}

impl<'a, R: DeserializeOwned + Send + 'a> Call<'a, R> {
    /// Awaits the call and returns its result together with the fuel it
    /// consumed and its captured output.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use wasmpool::Stdio;
    /// let out = pool.call::<String>(&job, "hello", ("you",)).stdout(Stdio::Capture).report().await?;
    /// println!("{} printed {:?}", out.value, out.stdout);
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
    pub fn report(self) -> impl Future<Output = Result<Output<R>, Error>> + Send + 'a {
        self.execute()
    }

    async fn execute(self) -> Result<Output<R>, Error> {
        let Call {
            pool,
            job,
            func,
            args,
            on_cancel,
            options,
            grace,
            cancel,
            link,
            _result,
        } = self;
        let policy = Policy {
            on_cancel,
            grace,
            job: link,
        };
        let call = pool
            .handle
            .inner
            .clone()
            .call(job, func, args?, options, policy);
        // A cancel through the handle drops the call's future, which
        // applies the cancel mode just as the caller's drop would.
        let (bytes, report) = tokio::select! {
            biased;
            () = cancel.wait() => {
                return Err(Error::new(ErrorKind::Cancelled, "the call was cancelled"));
            }
            r = call => r?,
        };
        decode_result(&bytes, report)
    }
}

/// A call in flight on a worker. Dropping it before [`InFlight::finish`]
/// cancels the call.
struct InFlight {
    inner: Arc<PoolInner>,
    worker: Option<Worker>,
    permit: Option<OwnedSemaphorePermit>,
    id: u64,
    /// How many calls the request carries.
    items: u64,
    policy: Policy,
}

/// What to do when a call is dropped or overruns.
#[derive(Clone)]
struct Policy {
    on_cancel: Cancel,
    grace: Duration,
    /// The handle's side of a spawned job.
    job: Option<Arc<crate::handles::JobLink>>,
}

impl Policy {
    /// The cancel mode, unless the job's handle asked for a kill.
    fn on_cancel(&self) -> Cancel {
        match &self.job {
            Some(job) if job.kill_requested() => Cancel::Kill,
            _ => self.on_cancel,
        }
    }
}

impl InFlight {
    /// The call overran its timeout and grace: kill the worker.
    fn kill(mut self) {
        self.inner.calls.fetch_add(self.items, Ordering::Relaxed);
        self.inner.killed.fetch_add(1, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            self.inner.kill(worker);
        }
        self.permit.take();
    }

    /// The call ended: the worker returns to the pool if it is alive.
    fn finish(mut self, alive: bool) {
        self.inner.calls.fetch_add(self.items, Ordering::Relaxed);
        if let (Some(worker), Some(permit)) = (self.worker.take(), self.permit.take())
            && alive
        {
            self.inner.checkin(worker, permit);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let (Some(worker), Some(permit)) = (self.worker.take(), self.permit.take()) else {
            return;
        };
        self.inner.calls.fetch_add(self.items, Ordering::Relaxed);
        let on_cancel = self.policy.on_cancel();
        match on_cancel {
            Cancel::Kill if worker.is_process() => {
                self.inner.killed.fetch_add(1, Ordering::Relaxed);
                self.inner.kill(worker);
            }
            Cancel::Interrupt | Cancel::Kill | Cancel::Finish => {
                let interrupt = on_cancel != Cancel::Finish;
                if interrupt {
                    worker.cancel(self.id);
                }
                let shared = worker.shared.clone();
                let fence = interrupt.then_some(&*self.inner.sync);
                match worker.abandon(self.id, permit, fence) {
                    // The call had already ended.
                    Some((worker, permit)) if !worker.shared.is_dead() => {
                        self.inner.checkin(worker, permit);
                    }
                    Some(_) => {}
                    None if interrupt => {
                        worker::kill_after_grace(shared, self.id, self.policy.grace, &self.inner)
                    }
                    None => {}
                }
            }
        }
    }
}

impl PoolInner {
    /// One call: [`PoolInner::call_many`] with one item.
    async fn call(
        self: Arc<Self>,
        job: &Job,
        func: &str,
        args: Vec<u8>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<(Vec<u8>, Report), Error> {
        let mut results = self
            .call_many(job, func, vec![Ok(args)], options, policy)
            .await?;
        results.pop().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Protocol,
                "the worker answered no call",
            ))
        })
    }

    /// Calls `func` once per item, in one request to one worker, which runs
    /// them in order. Items that cannot be sent (bad arguments) get their
    /// error without being sent. The outer error is one for all items: the
    /// pool is closed, the job does not compile, the worker died.
    async fn call_many(
        self: Arc<Self>,
        job: &Job,
        func: &str,
        items: Vec<Result<Vec<u8>, Error>>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Vec<CallResult>, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::closed());
        }
        if options.fuel.is_some() && !self.settings.consume_fuel {
            return Err(Error::new(
                ErrorKind::Config,
                "a fuel budget needs a pool that meters fuel: set PoolBuilder::fuel",
            ));
        }
        let compiled = self.compiled(job).await?;
        let resolved = compiled.resolve(&self.engine, func)?;
        // An early error per item that was not sent; `None` for one sent.
        let mut results: Vec<Option<CallResult>> = Vec::new();
        let mut sent = Vec::new();
        for item in items {
            match item.and_then(|args| check_args(&resolved, args)) {
                Ok(args) => {
                    sent.push(serde_bytes::ByteBuf::from(args));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if sent.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::closed())?;
        let worker = self.checkout().await?;
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let count = sent.len();
        let req = CallRequest {
            id,
            artifact: compiled.artifact.clone(),
            export: resolved.export.clone(),
            items: sent,
            options,
        };
        let timeout = req.options.timeout;
        if let Some(job) = &policy.job {
            job.started(&worker.shared);
        }
        let rx = worker.start(req);
        let grace = policy.grace;
        let flight = InFlight {
            inner: self.clone(),
            worker: Some(worker),
            permit: Some(permit),
            id,
            items: count as u64,
            policy,
        };
        let reply = match timeout {
            None => rx.await,
            // The watchdog: the worker interrupts each call at its timeout;
            // if no answer comes within the grace period after the last
            // could have timed out, kill it.
            Some(t) => {
                let limit = t
                    .saturating_mul(u32::try_from(count).unwrap_or(u32::MAX))
                    .saturating_add(grace);
                match tokio::time::timeout(limit, rx).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        flight.kill();
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "the call ran past its timeout of {t:?} and did not stop within \
                                 {:?}; its worker was killed",
                                grace
                            ),
                        ));
                    }
                }
            }
        };
        let outcomes = match reply {
            Ok(Reply::Done(outcomes)) if outcomes.len() == count => {
                flight.finish(true);
                outcomes
            }
            Ok(Reply::Done(outcomes)) => {
                flight.finish(false);
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("the worker answered {} calls of {count}", outcomes.len()),
                ));
            }
            Ok(Reply::Lost(e)) => {
                flight.finish(false);
                return Err(e);
            }
            Err(_) => {
                flight.finish(false);
                return Err(Error::crashed(None, "and its host thread ended"));
            }
        };
        let mut outcomes = outcomes.into_iter();
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(early) => early,
                None => match outcomes.next() {
                    Some((outcome, report)) => outcome
                        .map(|bytes| (bytes.into_vec(), report))
                        .map_err(Error::from),
                    None => Err(Error::new(ErrorKind::Protocol, "a call went unanswered")),
                },
            })
            .collect())
    }

    /// Compiles `job` once for this pool, off the async threads.
    ///
    /// The compile runs in a spawned task, so a caller that gives up (its
    /// call is dropped) does not throw away a compile that may take many
    /// seconds: the next caller finds it done or joins it.
    async fn compiled(&self, job: &Job) -> Result<Arc<Compiled>, Error> {
        let cell = self
            .compiled
            .lock()
            .expect("compiled lock")
            .entry(job.hash().to_string())
            .or_default()
            .clone();
        if let Some(done) = cell.get() {
            return Ok(done.clone());
        }
        let engine = self.engine.clone();
        let settings = self.settings.clone();
        let dir = self.cache_dir.clone();
        let job = job.clone();
        tokio::spawn(async move {
            cell.get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    compile::compile(&engine, &settings, &dir, &job)
                })
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidComponent,
                        format!("compiling panicked: {e}"),
                    )
                })?
                .map(Arc::new)
            })
            .await
            .cloned()
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidComponent,
                format!("compiling failed: {e}"),
            )
        })?
    }

    /// Takes the most recently used idle worker, or starts a new one.
    async fn checkout(self: &Arc<Self>) -> Result<Worker, Error> {
        loop {
            let popped = self.idle.lock().expect("idle lock").pop();
            match popped {
                Some(w) if w.shared.is_dead() => drop(w),
                Some(w) => return Ok(w),
                None => break,
            }
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::closed());
        }
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let rx = Worker::spawn(self, id, self.spec.clone());
        let worker = rx.await.map_err(|_| {
            Error::new(
                ErrorKind::Spawn,
                format!("worker {id}: its host thread ended"),
            )
        })??;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        Ok(worker)
    }

    /// Returns a worker after a call: to the idle list, or to retirement.
    pub(crate) fn checkin(&self, mut worker: Worker, permit: OwnedSemaphorePermit) {
        worker.calls += 1;
        worker.last_used = Instant::now();
        let retire = self.closed.load(Ordering::SeqCst)
            || worker.shared.is_dead()
            || self.retire_after.is_some_and(|n| worker.calls >= n);
        if retire {
            drop(worker);
        } else {
            let mut idle = self.idle.lock().expect("idle lock");
            idle.push(worker);
            // Only a housekeeper with no deadline needs waking: one that
            // has a deadline sees this worker when it next looks, and a
            // wake-up per call would cost a context switch per call.
            if self.house_unarmed.swap(false, Ordering::SeqCst) {
                self.house.notify_one();
            }
        }
        drop(permit);
    }

    /// Whether at most one call is in flight and a core is left over for a
    /// host thread to poll on.
    pub(crate) fn is_quiet(&self) -> bool {
        self.cores > 1 && self.semaphore.available_permits() + 1 >= self.workers
    }

    /// Kills `worker`. A process's guest lets go of what it held at once,
    /// so that whoever learns of the kill finds it free; its host thread
    /// ignores what the guest asks for after. A thread's guest is only
    /// interrupted, and lets go when it stops.
    fn kill(&self, worker: Worker) {
        let owner = crate::sync::Owner::Worker(worker.id);
        let process = worker.is_process();
        worker.kill();
        if process {
            self.sync.release_all(owner);
        }
    }

    pub(crate) fn count_kill(&self) {
        self.killed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn register(&self, id: u64, shared: Arc<worker::Shared>) {
        self.live.lock().expect("live lock").insert(id, shared);
    }

    pub(crate) fn unregister(&self, id: u64, crashed: bool) {
        self.live.lock().expect("live lock").remove(&id);
        if crashed {
            self.crashed.fetch_add(1, Ordering::Relaxed);
        }
        self.exited.notify_waiters();
    }

    /// Stops new calls and lets idle workers exit.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.semaphore.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("idle lock"));
        drop(idle);
        self.house.notify_one();
    }

    /// The last `Pool` handle is gone: kill every worker. Never blocks; the
    /// workers' threads reap them.
    fn terminate(&self) {
        self.close();
        for shared in self.live.lock().expect("live lock").values() {
            shared.kill();
        }
    }

    /// The `wasmpool-housekeeper` thread: retires workers idle for longer
    /// than the idle timeout; exits when the pool closes.
    fn housekeeper(&self) {
        let mut idle = self.idle.lock().expect("idle lock");
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            // The oldest worker is first: the list is used from the end.
            let stale = idle
                .iter()
                .take_while(|w| now.duration_since(w.last_used) >= self.idle_timeout)
                .count();
            if stale > 0 {
                let expired: Vec<Worker> = idle.drain(..stale).collect();
                drop(idle);
                drop(expired);
                idle = self.idle.lock().expect("idle lock");
                continue;
            }
            // An idle timeout too long to add to an Instant never expires.
            let due = idle
                .first()
                .and_then(|w| w.last_used.checked_add(self.idle_timeout))
                .map(|at| at.saturating_duration_since(now));
            idle = match due {
                Some(due) => self.house.wait_timeout(idle, due).expect("idle lock").0,
                None => {
                    // With workers idle, this is an idle timeout that never
                    // expires: only `close` needs to wake it.
                    self.house_unarmed.store(idle.is_empty(), Ordering::SeqCst);
                    self.house.wait(idle).expect("idle lock")
                }
            };
        }
    }
}

/// How one call of a request ended: its encoded result and report.
type CallResult = Result<(Vec<u8>, Report), Error>;

/// Sizes [`Pool::map`]'s batches from how long the last one took per item.
#[derive(Debug, Default)]
struct BatchSizer {
    /// Nanoseconds per item of the last batch; 0 before the first.
    per_item: AtomicU64,
}

impl BatchSizer {
    /// About this much work per batch.
    const TARGET: Duration = Duration::from_millis(2);
    const MAX: usize = 64;

    fn next_size(&self) -> usize {
        match self.per_item.load(Ordering::Relaxed) {
            0 => 1,
            per_item => {
                let n = Self::TARGET.as_nanos() / u128::from(per_item);
                usize::try_from(n).unwrap_or(Self::MAX).clamp(1, Self::MAX)
            }
        }
    }

    fn record(&self, took: Duration, items: usize) {
        let per_item = took.as_nanos() / items.max(1) as u128;
        let per_item = u64::try_from(per_item).unwrap_or(u64::MAX).max(1);
        self.per_item.store(per_item, Ordering::Relaxed);
    }
}

/// Checks that `args` is a tuple with one element per parameter.
fn check_args(resolved: &compile::Resolved, args: Vec<u8>) -> Result<Vec<u8>, Error> {
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

/// Encodes a call's arguments.
fn encode_args(args: &impl Serialize) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(args).map_err(|e| {
        Error::new(
            ErrorKind::ArgumentMismatch,
            format!("args: cannot be encoded: {e}"),
        )
    })
}

/// Decodes a call's result into `R`.
fn decode_result<R: DeserializeOwned>(bytes: &[u8], report: Report) -> Result<Output<R>, Error> {
    let value = value::decode(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("result: not valid MessagePack: {e}"),
        )
    })?;
    let value = value::from_value(value, "result")
        .map_err(|e| Error::new(ErrorKind::ResultMismatch, e.to_string()))?;
    let Report {
        fuel_consumed,
        stdout,
        stderr,
    } = report;
    Ok(Output {
        value,
        fuel_consumed,
        stdout: stdout.map(serde_bytes::ByteBuf::into_vec),
        stderr: stderr.map(serde_bytes::ByteBuf::into_vec),
    })
}

/// The default pool behind [`run`], created on first use with
/// [`Pool::new`].
pub fn default_pool() -> Result<Pool, Error> {
    static DEFAULT: Mutex<Option<Pool>> = Mutex::new(None);
    let mut slot = DEFAULT.lock().expect("default pool lock");
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
