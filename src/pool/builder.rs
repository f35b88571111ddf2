//! [`PoolBuilder`]: a pool's settings, checked and taken apart by
//! [`build`](PoolBuilder::build).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::backend::Backend;
use super::compile::{self, Compiler, InChild};
use super::roster::{Roster, RosterSettings};
use super::setters::call_option_setters;
use super::{Handle, Pool, PoolInner};
use crate::engine::EngineSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};
use crate::host::http::check_grant;
use crate::host::{BoxError, HostContext, HostFns};
use crate::options::{Cancel, WorkerKind};
use crate::shares::TenantSetup;
use crate::sync::Registry;
use crate::wire::{CallOptions, Preopen, Sandbox};
use crate::worker::Spec;

/// Builds a [`Pool`]. Start with [`Pool::builder`].
///
/// The defaults are those of [`Pool::new`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    pub(super) workers: Option<usize>,
    pub(super) kind: WorkerKind,
    pub(super) reuse_instances: bool,
    pub(super) memory_cow: Option<bool>,
    pub(super) idle_timeout: Duration,
    pub(super) retire_after: Option<u64>,
    pub(super) retire_above: Option<u64>,
    pub(super) worker_program: Option<PathBuf>,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) cache_limit: u64,
    pub(super) max_wasm_stack: usize,
    pub(super) on_cancel: Cancel,
    pub(super) options: CallOptions,
    pub(super) grace: Duration,
    pub(super) host_fns: HostFns,
    pub(super) confine: bool,
    pub(super) payload_region: bool,
    pub(super) async_calls: usize,
    /// The tenants with a weight or a cap of their own.
    pub(super) tenants: BTreeMap<String, TenantSetup>,
    /// The NATS server of a cluster pool.
    #[cfg(feature = "cluster")]
    pub(super) nats: Option<String>,
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
            retire_above,
            worker_program,
            cache_dir,
            cache_limit,
            max_wasm_stack,
            on_cancel,
            options,
            grace,
            host_fns,
            confine,
            payload_region,
            async_calls,
            tenants,
            #[cfg(feature = "cluster")]
                nats: _,
        } = self;
        f.debug_struct("PoolBuilder")
            .field("workers", workers)
            .field("kind", kind)
            .field("reuse_instances", reuse_instances)
            .field("memory_cow", memory_cow)
            .field("idle_timeout", idle_timeout)
            .field("retire_after", retire_after)
            .field("retire_above", retire_above)
            .field("worker_program", worker_program)
            .field("cache_dir", cache_dir)
            .field("cache_limit", cache_limit)
            .field("max_wasm_stack", max_wasm_stack)
            .field("on_cancel", on_cancel)
            .field("options", options)
            .field("grace", grace)
            .field("host_fns", host_fns)
            .field("confine", confine)
            .field("payload_region", payload_region)
            .field("async_calls", async_calls)
            .field("tenants", tenants)
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
    /// rather than copying it in, for every job. Default: decided per job,
    /// which is the fast choice for each: a job whose data segments hold
    /// 1 MiB or more (componentize-py and componentize-js guests carry
    /// 10–20 MB) maps them, a smaller one (a Rust guest: tens of KB)
    /// copies them. Each kind runs on workers of its own, which a pool of
    /// both kinds of job starts as its calls need them.
    ///
    /// Mapping is much faster for guests with megabytes of data: a
    /// componentize-py guest took about 0.8 ms a call mapped against
    /// 2.3–3.3 ms copied, a componentize-js guest 0.2 ms against 0.9–1.1 ms
    /// (see the README's "Heavy guests"). But the first write to each
    /// mapped page is a copy-on-write fault, which interrupts every other
    /// core the process runs on to flush its TLB: for a small guest that
    /// can cost more than copying its few pages. Set it to have one kind
    /// of worker for all jobs.
    pub fn copy_on_write_memory(mut self, on: bool) -> Self {
        self.memory_cow = Some(on);
        self
    }

    /// How long an idle worker waits for a call before it exits. Default:
    /// [`DEFAULT_IDLE_TIMEOUT`](crate::DEFAULT_IDLE_TIMEOUT).
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

    /// Retire a worker process (let it exit, and start a fresh one when
    /// needed) whose memory is above `bytes` after a call, instead of
    /// keeping it for the next one: [`retire_after`](Self::retire_after)'s
    /// twin for memory. Default: no bound.
    ///
    /// The memory is the worker's own memory (on Linux its resident
    /// memory, read from `/proc/{pid}/statm`; on Windows its private
    /// working set; on macOS its physical footprint) when the call has ended:
    /// its heap and its
    /// guests' linear memory, not the compiled code it maps from the cache
    /// nor the payload region it shares with the host. It is read as the
    /// worker tidies up after the call, so it counts what the worker keeps
    /// for its next call (freed memory, a large guest memory reset in
    /// place), which it would give back on its own after about a second
    /// idle: the bound catches a worker that a call left large, or that
    /// grows call after call. A Rust guest's worker holds a few MiB; set
    /// the bound well above what the pool's usual calls leave.
    ///
    /// The call that passes the bound still succeeds; only its worker is
    /// replaced. Worker threads ([`WorkerKind::Thread`]) have no memory of
    /// their own (it is the host's), so the bound does not apply to them,
    /// and neither does it on other Unix systems, which have no such
    /// count.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// // Replace any worker that a call leaves holding more than 256 MiB.
    /// let pool = wasmpool::Pool::builder().retire_above(256 << 20).build()?;
    /// # Ok(()) }
    /// ```
    pub fn retire_above(mut self, bytes: u64) -> Self {
        self.retire_above = Some(bytes);
        self
    }

    /// Tenant `key`'s share of the workers, relative to the other
    /// tenants' (see [`Call::tenant`](crate::Call::tenant)). While several
    /// tenants have calls waiting, free workers go to them in proportion
    /// to their weights. Default: 1 for every tenant, the default one
    /// (key `""`) included.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`ErrorKind::Config`] for a
    /// weight of 0, and with [`ErrorKind::Unsupported`] on a cluster pool.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// // "paying" gets three workers for each one of "free".
    /// let pool = wasmpool::Pool::builder()
    ///     .tenant_weight("paying", 3)
    ///     .tenant_weight("free", 1)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn tenant_weight(mut self, key: impl Into<String>, weight: u32) -> Self {
        self.tenants.entry(key.into()).or_default().weight = Some(weight);
        self
    }

    /// The most calls of tenant `key` that hold a worker at once; its
    /// other calls wait, even with workers idle. Default: no cap, beyond
    /// the pool's size.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`ErrorKind::Config`] for a cap
    /// of 0, and with [`ErrorKind::Unsupported`] on a cluster pool.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// // "trial" never holds more than one of the eight workers.
    /// let pool = wasmpool::Pool::builder().workers(8).tenant_limit("trial", 1).build()?;
    /// # Ok(()) }
    /// ```
    pub fn tenant_limit(mut self, key: impl Into<String>, calls: usize) -> Self {
        self.tenants.entry(key.into()).or_default().limit = Some(calls);
        self
    }

    /// The program to start as a worker. Default: the current executable,
    /// which diverts into the worker before `main` when started as one. A
    /// dedicated worker program must be linked with wasmpool (on Linux,
    /// Windows and macOS that is all it needs; elsewhere its `main` calls
    /// [`worker_entry`](crate::worker_entry) first).
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Whether each worker process confines itself before it loads a
    /// guest: the second wall, beside wasmtime's sandbox, against a bug in
    /// wasmtime or in wasmpool's worker code. Default: `true`.
    ///
    /// On Linux a confined worker:
    ///
    /// - has no new privileges (`PR_SET_NO_NEW_PRIVS`), no core dumps, and
    ///   at most 4096 open descriptors;
    /// - reaches, by landlock, its compile cache (read-only) and the
    ///   directories its calls preopen (each with its [`DirAccess`]), and
    ///   nothing else of the filesystem; no TCP; no signals to processes
    ///   outside it. On a kernel without landlock it goes on without, and
    ///   says so in a `tracing` warning;
    /// - makes only the system calls a worker needs (a seccomp allowlist):
    ///   it cannot start a process or a program, open a socket, or trace
    ///   another process.
    ///
    /// Since a worker's directories are fixed when it starts, a call that
    /// preopens directories of its own ([`Call::preopen_dir`]) runs on a
    /// worker started for exactly those directories: kept for later calls
    /// with the same ones, but a pool whose calls each preopen a different
    /// directory starts a worker per call (a few milliseconds). Preopen
    /// directories shared by all calls on the pool instead.
    ///
    /// On macOS a confined worker has no core dumps, at most 4096 open
    /// descriptors, and a Seatbelt profile that denies the network,
    /// starting processes, writing files outside its read-write preopens,
    /// and reading files outside its compile cache, its preopens and the
    /// system's own (untested: it is cross-built here, not run). On
    /// Windows a confined worker starts with a restricted token (every
    /// privilege removed but the one to traverse directories, the
    /// Administrators group for denying only) and joins a Job Object of
    /// its own that allows it no other process (no filesystem rules).
    /// Other Unix systems only
    /// get no core dumps. Thread workers
    /// ([`WorkerKind::Thread`]) run in the host's process and are never
    /// confined.
    ///
    /// [`DirAccess`]: crate::DirAccess
    /// [`Call::preopen_dir`]: crate::Call::preopen_dir
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// // Workers that may need more than the sandbox above allows.
    /// let pool = wasmpool::Pool::builder().confine(false).build()?;
    /// # Ok(()) }
    /// ```
    pub fn confine(mut self, on: bool) -> Self {
        self.confine = on;
        self
    }

    /// Runs the pool's calls on the worker nodes of a cluster, through the
    /// NATS server (with JetStream) at `url`, instead of on local workers.
    /// The API is the same: [`run`](crate::Pool::run), [`call`](crate::Pool::call)
    /// with its options, [`map`](crate::Pool::map) and [`spawn`](crate::Pool::spawn). Nodes
    /// are started with `wasmpool serve --nats URL` or
    /// [`Node`](crate::cluster::Node); see [`cluster`](crate::cluster)
    /// for how calls travel and what is guaranteed.
    ///
    /// The pool connects on its first call. It still compiles each job
    /// once (into its cache), to check names and arguments before anything
    /// is sent. Per-call directories
    /// ([`preopen_dir`](crate::Call::preopen_dir)) are the nodes'. A call's
    /// [`timeout`](crate::Call::timeout) counts from when it is sent,
    /// waiting for a node included.
    ///
    /// [Host functions](Self::host_fn) stay in this process: a node
    /// forwards each host call of a guest to the caller over NATS
    /// request-reply, and the function sees the call's
    /// [`data`](crate::Call::data) as on a local pool.
    ///
    /// A [`JobHandle`](crate::JobHandle)'s channel works too: the node
    /// bridges it to the guest. Not supported on a cluster pool: named
    /// `wasmpool:sync` primitives ([`Pool::queue`](crate::Pool::queue) and
    /// the others fail with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported); a guest
    /// that opens one on a node is told it is not supported).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wasmpool::Error> {
    /// let pool = wasmpool::Pool::builder().nats("nats://127.0.0.1:4222").build()?;
    /// let job = wasmpool::Job::from_file("fib.wasm")?;
    /// let n: u64 = pool.run(&job, "fib", (30u64,)).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn nats(mut self, url: impl Into<String>) -> Self {
        self.nats = Some(url.into());
        self
    }

    /// A cluster node's pool: every guest import that no host function
    /// here serves goes to `forward`.
    #[cfg(feature = "cluster")]
    pub(crate) fn forward_host_calls(
        mut self,
        forward: impl Fn(crate::HostContext, Vec<u8>) -> crate::host::HostFuture + Send + Sync + 'static,
    ) -> Self {
        self.host_fns.set_fallback(forward);
        self
    }

    /// How many calls to async components one worker process runs at once
    /// (default [`DEFAULT_ASYNC_CALLS`](crate::DEFAULT_ASYNC_CALLS), 8; from 1 to 1024).
    ///
    /// A component that uses the component model's async (an `async func`
    /// export or import, a `stream` or a `future`) runs on workers of its
    /// own kind. Such a worker takes up to `n` plain calls at once, each
    /// with its own `Store` and instance, and interleaves them on its one
    /// thread: while one call's guest awaits a host function, a timer or a
    /// stream, the others run. So a pool of `w` workers runs up to `w * n`
    /// such calls at once. The calls share their worker's place in the
    /// pool: the worker counts once against [`workers`](Self::workers)
    /// and in [`Statistics`](crate::Statistics), and under
    /// [`tenant_weight`](Self::tenant_weight) the tenant whose call took
    /// the worker holds it until the last call on it ends. A call that
    /// joins a busy worker waits for no share.
    ///
    /// Calls that need the worker whole run alone on it, as on any worker:
    /// a session's calls, a batch (`map`, `call_many`), and a worker thread's
    /// calls ([`WorkerKind::Thread`](crate::WorkerKind::Thread) runs one call
    /// at a time). A call side by side reports no CPU time (its thread's is
    /// every call's), and its arguments and result go through the pipes,
    /// not the shared payload region.
    ///
    /// Cancelling one of these calls (dropping it, or its timeout) drops its
    /// task and its `Store`, and with them the guest's tasks and any host
    /// function it awaits; the other calls on the worker go on. A guest
    /// that spins without awaiting is interrupted by the epoch, as any
    /// other; [`Cancel::Kill`](crate::Cancel::Kill), or a call that overruns
    /// its grace period, still kills the worker, and with it every call on
    /// it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wasmpool::Error> {
    /// let pool = wasmpool::Pool::builder().workers(1).async_calls(16).build()?;
    /// # Ok(()) }
    /// ```
    pub fn async_calls(mut self, n: usize) -> Self {
        self.async_calls = n;
        self
    }

    /// Benchmarks only, not part of the API: whether process workers get
    /// a shared payload region for large arguments and results (the
    /// default), or send everything through their pipes, as before there
    /// was one.
    #[doc(hidden)]
    pub fn payload_region(mut self, on: bool) -> Self {
        self.payload_region = on;
        self
    }

    /// Where compiled components are cached. It must be writable by this
    /// user only, since artifacts are native code. Default, per platform:
    ///
    /// - Linux and other Unix systems: `$XDG_CACHE_HOME/wasmpool`, else
    ///   `~/.cache/wasmpool`;
    /// - macOS: `$XDG_CACHE_HOME/wasmpool` if that is set, else
    ///   `~/Library/Caches/wasmpool`;
    /// - Windows: `%LOCALAPPDATA%\wasmpool`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The most bytes of artifacts the compile cache keeps. Default:
    /// [`DEFAULT_CACHE_LIMIT`](crate::DEFAULT_CACHE_LIMIT) (2 GiB).
    ///
    /// After each compile, the least recently used artifacts are removed
    /// until the cache fits, except those used in the last ten minutes
    /// and the one just made. A pool marks the artifacts it uses as used
    /// (their modification time) at most once a second, and writes an
    /// artifact again if it finds it gone, so several processes (or
    /// someone clearing the cache) can share the directory while pools
    /// run: a call never fails for want of its artifact.
    pub fn cache_limit(mut self, bytes: u64) -> Self {
        self.cache_limit = bytes;
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

    /// Registers `f` as the host function that guests import as `name`:
    /// `"<interface>#<function>"` as the component imports it
    /// (`"my:app/api#add"`; the version may be left out, as for export
    /// names), or just the function's name for a world-level import.
    ///
    /// A guest that calls the import blocks until `f`'s future resolves;
    /// other workers go on. `f` takes the call's [`HostContext`] and the
    /// arguments as one serde value, a tuple with one element per WIT
    /// parameter (as for calls); it returns the WIT result (`()` for none)
    /// or an error. Values map between WIT and serde as for calls (see the
    /// crate docs). `f` may serve many guests at once: it is `Fn`, and
    /// each call of it is a future of its own.
    ///
    /// The future runs in the context of the Tokio runtime that made the
    /// guest's call: it is polled first on the worker's host thread (a
    /// function that is ready at once costs no thread hop), and if it is
    /// not ready, on that runtime.
    ///
    /// - An `Err` traps the guest: the call fails with
    ///   [`ErrorKind::HostFunction`], whose message names the function and
    ///   whose [`source`](std::error::Error::source) is `f`'s error. The
    ///   worker is kept. A panic in `f` does the same.
    /// - Arguments that do not decode as `A`, or a result that does not fit
    ///   the import's WIT type, fail the same way, with the value's path.
    /// - A component importing anything that neither wasmpool (WASI,
    ///   `wasi:http`, `wasmpool:sync`) nor a host function provides fails
    ///   [`Pool::prepare`](crate::Pool::prepare) and its first call with
    ///   [`ErrorKind::InvalidComponent`], naming each such import. Names a
    ///   component does not import are fine: one pool serves many plugins.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(plugin: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use wasmpool::{BoxError, HostContext, Pool};
    /// let pool = Pool::builder()
    ///     .host_fn("my:app/api#add", |_cx: HostContext, (a, b): (u64, u64)| async move {
    ///         Ok::<u64, BoxError>(a + b)
    ///     })
    ///     .build()?;
    /// let n: u64 = pool.run(&plugin, "run", (7u64,)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// When the guest's call is cancelled, times out or otherwise ends
    /// while `f`'s future is pending, the future is dropped, at once: hold
    /// nothing in it that must not be dropped mid-way. The guest then ends
    /// as the call's [`Cancel`] mode says.
    pub fn host_fn<A, R, E, F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(HostContext, A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + 'static,
        E: Into<BoxError> + 'static,
    {
        self.host_fns.insert(name.into(), f);
        self
    }

    /// Builds the pool. No worker starts until the first call (or
    /// [`Pool::warm`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a setting out of range (zero workers, a
    /// wasm stack under 64 KiB) or a preopened directory that cannot be
    /// opened, [`ErrorKind::Io`] if the current executable cannot be found.
    pub fn build(self) -> Result<Pool, Error> {
        let PoolBuilder {
            workers,
            kind,
            reuse_instances,
            memory_cow,
            idle_timeout,
            retire_after,
            retire_above,
            worker_program,
            cache_dir,
            cache_limit,
            max_wasm_stack,
            on_cancel,
            options,
            grace,
            host_fns,
            confine,
            payload_region,
            async_calls,
            tenants,
            #[cfg(feature = "cluster")]
            nats,
        } = self;
        if !(1..=crate::options::MAX_ASYNC_CALLS).contains(&async_calls) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "async_calls must be from 1 to {}, not {async_calls}",
                    crate::options::MAX_ASYNC_CALLS
                ),
            ));
        }
        let workers = match workers {
            Some(n) => NonZeroUsize::new(n)
                .ok_or_else(|| Error::new(ErrorKind::Config, "a pool needs at least one worker"))?,
            None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        };
        let retire_after = match retire_after {
            Some(n) => Some(NonZeroU64::new(n).ok_or_else(|| {
                Error::new(ErrorKind::Config, "retire_after must be at least 1 call")
            })?),
            None => None,
        };
        if max_wasm_stack < 64 * 1024 {
            return Err(Error::new(
                ErrorKind::Config,
                "max_wasm_stack must be at least 64 KiB",
            ));
        }
        let tenants = check_tenants(tenants)?;
        let host_fns = Arc::new(host_fns);
        let sync = Arc::new(Registry::default());
        #[cfg(feature = "cluster")]
        let cluster = nats.map(|url| {
            Arc::new(super::remote::Caller::new(
                url,
                host_fns.clone(),
                sync.clone(),
            ))
        });
        #[cfg(not(feature = "cluster"))]
        let cluster: Option<std::convert::Infallible> = None;
        // A cluster pool's directories are the nodes'.
        if cluster.is_none() {
            check_preopens(&options.preopens)?;
        } else if !tenants.is_empty() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "tenant_weight and tenant_limit are for local pools only: a cluster's nodes serve \
                 calls first come first served",
            ));
        }
        if cluster.is_some() && !options.http.is_empty() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "outbound HTTP (allow_http) is for local pools only: a cluster pool's calls run \
                 on nodes, which make no requests for their callers",
            ));
        }
        check_grant(&options.http)?;
        let program = match worker_program {
            Some(p) => p,
            None => std::env::current_exe()
                .map_err(|e| Error::io("finding the current executable to start workers", e))?,
        };
        let settings = EngineSettings {
            max_wasm_stack,
            consume_fuel: options.fuel.is_some(),
            kind: crate::engine::EngineKind {
                memory_cow: memory_cow.unwrap_or(false),
                concurrent: false,
            },
        };
        let cache_dir = cache_dir.unwrap_or_else(compile::default_cache_dir);
        // Compiles run in a child process, so that the compiler's memory
        // is never the host's.
        let in_child = InChild {
            program: program.clone(),
            confine,
        };
        let sandbox = confine.then(|| Sandbox {
            read: vec![cache_dir.clone()],
            dirs: Vec::new(),
        });
        let compiler = Compiler::new(
            settings.clone(),
            memory_cow,
            cache_dir.clone(),
            cache_limit,
            Some(in_child),
        )?;
        let spec = Spec {
            kind,
            program,
            settings: settings.clone(),
            reuse_instances,
            host_fns: host_fns.clone(),
            sandbox,
            payload_region,
            async_calls,
        };
        let backend = match cluster {
            #[cfg(feature = "cluster")]
            Some(caller) => Backend::Cluster(caller),
            #[cfg(not(feature = "cluster"))]
            Some(never) => match never {},
            None => Backend::Local(Roster::start(RosterSettings {
                workers,
                idle_timeout,
                retire_after,
                retire_above,
                spec,
                registry: sync.clone(),
                tenants,
            })?),
        };
        let inner = Arc::new(PoolInner {
            on_cancel,
            options,
            grace,
            compiler,
            backend,
            sync,
            host_fns,
            next_call: AtomicU64::new(0),
        });
        Ok(Pool {
            handle: Arc::new(Handle { inner }),
        })
    }
}

/// Checks, on the host and before any call, that every preopened
/// directory can be opened as a directory.
pub(super) fn check_preopens(preopens: &[Preopen]) -> Result<(), Error> {
    for p in preopens {
        if let Err(e) = cap_std::fs::Dir::open_ambient_dir(&p.host, cap_std::ambient_authority()) {
            let message = format!("cannot preopen {} as {}: {e}", p.host.display(), p.guest);
            return Err(Error::new(ErrorKind::Config, message).with_source(e));
        }
    }
    Ok(())
}

/// The tenants set up on a builder, checked: no weight or cap of 0.
fn check_tenants(
    tenants: BTreeMap<String, TenantSetup>,
) -> Result<Vec<(String, TenantSetup)>, Error> {
    for (key, setup) in &tenants {
        if setup.weight == Some(0) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("tenant {key:?}: a weight must be at least 1"),
            ));
        }
        if setup.limit == Some(0) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("tenant {key:?}: a cap on calls in flight must be at least 1"),
            ));
        }
    }
    Ok(tenants.into_iter().collect())
}
