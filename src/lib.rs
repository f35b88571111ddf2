//! Run WebAssembly component calls in a pool of sandboxed worker processes,
//! as simply as `tokio::task::spawn_blocking`.
//!
//! A job is a call to an exported function of a WebAssembly component. It
//! runs in a pool of worker processes, each with its own wasmtime engine, so
//! CPU-bound work runs truly in parallel and a crashing or runaway guest
//! never takes the host down. A trap, or a worker killed mid-call, comes back
//! as an ordinary [`Error`].
//!
//! # Examples
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), wasmpool::Error> {
//! let job = wasmpool::Job::from_file("fib.wasm")?;
//! let pool = wasmpool::Pool::new()?;
//! let n: u64 = pool.run(&job, "fib", (30u64,)).await?;
//!
//! // Records, variants, enums, flags and options are serde values.
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Point { x: i32, y: i32 }
//! let p: Point = pool.run(&job, "echo-point", (Point { x: 1, y: 2 },)).await?;
//!
//! // Traps are errors, with the trap code and the guest's panic message.
//! let err = pool.run::<()>(&job, "panic", ("boom",)).await.unwrap_err();
//! assert_eq!(err.kind(), wasmpool::ErrorKind::Trap);
//! assert_eq!(err.panic_message(), Some("boom"));
//! # Ok(()) }
//! ```
//!
//! # Values
//!
//! Arguments are one `Serialize` value: a tuple with one element per
//! parameter, `(x,)` for one and `()` for none. The result is any
//! `DeserializeOwned`. They travel as MessagePack and are converted to and
//! from WIT values with the function's types:
//!
//! | WIT | Rust |
//! | --- | --- |
//! | `bool`, `s8`..`u64`, `f32`, `f64`, `char`, `string` | the primitive; integers are range-checked, never wrapped |
//! | `list<u8>` | `Vec<u8>` or `serde_bytes::ByteBuf` (sent as bytes) |
//! | `list<T>`, `tuple<..>` | `Vec<T>`, tuples |
//! | `record` | a struct (fields by name, or a tuple in field order) |
//! | `variant`, `enum` | an enum (externally tagged) |
//! | `option<T>` | `Option<T>` |
//! | `result<T, E>` | `Result<T, E>` |
//! | `flags` | a sequence of flag names, such as `Vec<String>` |
//! | `own<T>`, `borrow<T>` of a `resource` | a [`Resource`] handle, on a [`Session`] (refused with [`ErrorKind::Unsupported`] elsewhere) |
//! | `future`, `stream` | refused with [`ErrorKind::Unsupported`] |
//!
//! Names match ignoring case, `-` and `_`: WIT's `dark-blue` is Rust's
//! `DarkBlue`, and a field `max-size` is `max_size`. A mismatch names its
//! path, such as `args[0].points[3].x: expected s32, got string "a"`.
//!
//! Functions are named as exported: `"fib"` at world level,
//! `"ns:pkg/iface@1.0.0#fib"` in an interface (the version may be left out
//! when only one is exported), or a bare `"fib"` when exactly one exported
//! interface has it.
//!
//! # Inspecting a component, and calls typed at run time
//!
//! [`Job::exports`] and [`Job::imports`] list a component's functions with
//! their WIT signatures, read from its bytes without a pool or a compile;
//! each import says what in wasmpool provides it ([`Provider`]), or that a
//! [host function](PoolBuilder::host_fn) must. [`Job::wit`] prints its
//! whole world as WIT.
//!
//! [`Pool::call_dynamic`] calls a function whose types are known only at
//! run time: the arguments are WAVE text (the value syntax of `wasmtime run
//! --invoke`) or `serde_json::Value`s ([`DynArgs`]), typed on the host
//! against the function's signature, and the result is a [`DynValue`] that
//! prints as WAVE and converts to JSON. Every WIT value type round-trips
//! both ways; a mismatch names the argument, and for JSON the path inside
//! it. The `wasmpool` command line (`cli/`) is built on these.
//!
//! ```no_run
//! # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
//! use wasmpool::{DynArgs, Job};
//! let job = Job::from_file("types.wasm")?;
//! for f in job.exports()? {
//!     println!("{f}"); // wasmpool:jobs/types@0.1.0#area: func(s: shape) -> f64
//! }
//! let area = pool.call_dynamic(&job, "area", DynArgs::wave("circle(2.0)")).await?;
//! assert_eq!(area.to_json(), serde_json::json!(12.566370614359172));
//! # Ok(()) }
//! ```
//!
//! # Many calls: map
//!
//! [`Pool::map`] calls a function once per item of an iterator and yields
//! the results in order as a [`Stream`](futures_util::Stream);
//! [`Pool::map_unordered`] yields them as they finish, with each item's
//! index. A failing item yields its error and the stream goes on; dropping
//! the stream cancels what is in flight. Tiny items travel in batches,
//! sized to a couple of milliseconds of work, so a map of no-op calls runs
//! far faster than one call at a time (see the README's performance
//! table).
//!
//! ```no_run
//! # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
//! use futures_util::StreamExt;
//! let mut results = pool.map::<_, u64, _>(&job, "fib", (0..1000u64).map(|n| (n,)));
//! while let Some(fib) = results.next().await {
//!     println!("{}", fib?);
//! }
//! # Ok(()) }
//! ```
//!
//! # Programs
//!
//! [`Pool::command`] runs a command component, a program with a `main`
//! (what `cargo build --target wasm32-wasip2` makes of a binary), the way
//! `wasmtime run` does: arguments, env, preopens and stdin in, and a
//! [`CommandOutput`] out, with its exit status (an exit is an outcome, not
//! an error), captured stdout and stderr, and what it cost. A WASI 0.1
//! program, the core module of `wasm32-wasip1`, is wrapped into a command
//! component when its [`Job`] is made. [`Command::spawn`] streams stdin and
//! stdout instead ([`CommandHandle`]). A trap, a timeout or a limit is an
//! [`Error`]; when the worker survived it, the error still carries the
//! output captured before it ([`Error::stdout`], [`Error::stderr`]).
//!
//! ```no_run
//! # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
//! let sort = wasmpool::Job::from_file("sort.wasm")?;
//! let out = pool.command(&sort).arg("-n").stdin(b"3\n1\n2\n".to_vec()).output().await?;
//! assert_eq!((out.status, out.stdout), (0, b"1\n2\n3\n".to_vec()));
//! # Ok(()) }
//! ```
//!
//! # Job handles and shared primitives
//!
//! [`Pool::spawn`] (or [`Call::spawn`], with call options) starts a job and
//! returns a [`JobHandle`]: await it for the result, [`cancel`] or [`kill`]
//! it, and talk to the guest while it runs. [`JobHandle::send`] values that
//! the guest takes with `recv`, [`JobHandle::close`] its input (its `recv`
//! then returns `None`), and [`JobHandle::recv`] values it `emit`s as it
//! goes: progress, or results streamed one by one.
//!
//! The pool also holds named primitives, created by the host and typed
//! there: [`Queue`] ([`Pool::queue`], [`Pool::joinable_queue`]), [`Lock`]
//! ([`Pool::lock`], [`Pool::rlock`]), [`Semaphore`], [`Event`],
//! [`Condition`] and [`Barrier`]. The host awaits them; guests open them by
//! name and block on them through the `wasmpool:sync` imports
//! (`wit/sync/sync.wit`), most easily with the `wasmpool-guest` SDK in
//! `guest/sdk`. Every blocking guest call takes a timeout and wakes at once
//! when its call is cancelled or times out. When a guest's call ends, by
//! return, trap, cancel or kill, everything it held is released: locks,
//! permits, its place at a barrier, and values it took from a joinable
//! queue without marking them done, which go back to the queue. Host
//! futures are cancel-safe, so a timeout is `tokio::time::timeout`
//! (for a condition, [`ConditionGuard::wait_timeout`]).
//!
//! ```no_run
//! # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
//! let results = pool.queue::<u64>("results", 0)?;
//! let work = pool.joinable_queue::<u64>("work", 16)?;
//! // Guests that take from "work" and put on "results".
//! let consumers: Vec<_> = (0..2)
//!     .map(|_| pool.spawn::<u64>(&job, "consume", ("work", "results")))
//!     .collect();
//! for x in 1..=100u64 {
//!     work.put(&x).await?; // waits while 16 are queued
//! }
//! work.close();
//! work.join().await?;
//! for consumer in consumers {
//!     consumer.await?;
//! }
//! results.close();
//! while let Some(square) = results.get().await? {
//!     println!("{square}");
//! }
//! # Ok(()) }
//! ```
//!
//! In the guest, a primitive's state lives on the host, so each operation
//! is a round trip to it (tens of microseconds); a guest that runs none of
//! them pays nothing.
//!
//! [`cancel`]: JobHandle::cancel
//! [`kill`]: JobHandle::kill
//!
//! # Host functions
//!
//! Plugins call their host. [`PoolBuilder::host_fn`] registers an async
//! closure for an import name; a guest's import that neither WASI,
//! `wasi:http` nor `wasmpool:sync` provides is served by it, across the
//! process boundary, with the same WIT ↔ serde mapping as calls. The
//! closure gets a [`HostContext`] (the function, the export, the worker's
//! pid, and the call's [`data`](Call::data)) and the arguments as a tuple.
//!
//! ```no_run
//! # async fn demo(plugin: wasmpool::Job) -> Result<(), wasmpool::Error> {
//! use wasmpool::{BoxError, HostContext, Pool};
//! let pool = Pool::builder()
//!     .host_fn("my:app/api#log", |cx: HostContext, (line,): (String,)| async move {
//!         println!("{}: {line}", cx.export());
//!         Ok::<(), BoxError>(())
//!     })
//!     .build()?;
//! let n: u64 = pool.run(&plugin, "run", (7u64,)).await?;
//! # Ok(()) }
//! ```
//!
//! The rules, in full at [`PoolBuilder::host_fn`]: the guest blocks until
//! the future resolves; an error or a panic traps the guest as
//! [`ErrorKind::HostFunction`] with the error as its source, and the worker
//! is kept; a cancel or timeout drops the pending future; an import nothing
//! provides fails [`Pool::prepare`] and the first call with
//! [`ErrorKind::InvalidComponent`].
//!
//! # Worker kinds and instance reuse
//!
//! Workers are processes by default. [`WorkerKind::Thread`] runs the same
//! calls, with the same sandbox, limits and soft cancellation, on threads
//! of the host process: lower latency and a faster start, but no hard kill
//! and no protection from a crash in wasmtime itself. See [`WorkerKind`]
//! for the trade-off.
//!
//! Every call gets a fresh instance unless the pool opts in with
//! [`PoolBuilder::reuse_instances`], for trusted jobs that may keep state
//! between calls. Either way, a worker makes the next fresh instance after
//! it has answered a call, so instantiation is off the latency path.
//!
//! # Sessions and resources
//!
//! A [`Session`] ([`Pool::session`]) is one instance kept across calls, on
//! the worker that holds it: a plugin that keeps state. It is also the way
//! to the component model's resources: a function whose signature holds a
//! `resource` is called on a session, and the handles it returns are
//! [`Resource`]s, passed back by reference (`borrow<T>`) or by value
//! (`own<T>`). A guest may import resource types too, served by
//! [host functions](PoolBuilder::host_fn) under their canonical names
//! ([`HostContext::new_resource`], [`HostContext::resource`]).
//!
//! ```no_run
//! # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
//! let session = pool.session(&job).await?;
//! let n: u64 = session.run("bump", ()).await?;
//! let c: wasmpool::Resource = session.run("[constructor]counter", (5i64,)).await?;
//! let v: i64 = session.run("[method]counter.add", (&c, 3i64)).await?;
//! # Ok(()) }
//! ```
//!
//! A trap, timeout or interrupt in a session's call loses the session
//! ([`ErrorKind::SessionLost`] for its later calls); see [`Session`].
//!
//! # Implementation
//!
//! - **Host threads.** Each process worker has a host thread,
//!   `wasmpool-worker-{id}`, which starts the process, reads every frame it
//!   sends, hands results to the waiting call, and reaps the process when
//!   it exits. Each local pool has a `wasmpool-housekeeper` thread that
//!   retires idle workers and kills a worker whose interrupted call has
//!   not stopped within its grace period; a cluster
//!   pool (`PoolBuilder::nats`) has neither workers nor housekeeper.
//!   Components are compiled once per pool, each in a child process (the
//!   worker program, started to compile and exit, so that the compiler's
//!   memory is never the host's),
//!   waited for on tokio's blocking pool, and cached on disk across runs
//!   ([`PoolBuilder::cache_dir`]), keyed by the component's hash and the
//!   engine's compatibility hash and settings; the cache is reached through
//!   a `cap-std` directory handle, so a symlink planted in it cannot
//!   redirect a write. After a compile, the least recently used artifacts
//!   are removed past [`PoolBuilder::cache_limit`].
//! - **Worker processes.** A worker is the current executable started again
//!   with an environment marker; code that runs before `main` (an
//!   `.init_array` entry on Linux, `.CRT$XCU` on Windows) diverts it into the worker loop, so tests,
//!   examples and applications need no `init()` call. A dedicated program
//!   can be set with [`PoolBuilder::worker_program`]. A worker's stdout and
//!   stderr are the host's, so a guest's `println!` just works. Requests
//!   and replies travel on two pipes (descriptors 3 and 5), cancels on a
//!   socket (descriptor 4), never on stdout. A guest's `wasmpool:sync`
//!   operations go out on the reply pipe and their answers come back on
//!   the request pipe, which the waiting guest's thread reads itself.
//! - **Inside a worker** (process or thread), one call runs at a time on
//!   async wasmtime, each in its own `Store` and instance from an
//!   `InstancePre`, with the pooling allocator. A `wasmpool-control` thread
//!   reads cancel frames and a `wasmpool-timer` thread enforces timeouts;
//!   both interrupt the call by bumping the engine's epoch. The compiled
//!   artifact is mapped from the on-disk cache, never recompiled per
//!   worker. Functions of one `list<u8>` or `string` parameter are called
//!   through wasmtime's typed API, which copies the payload in one piece.
//!   A thread worker is one `wasmpool-thread-{id}` thread with the same
//!   executor (and its own `wasmpool-timer`). A process worker for async
//!   components is the exception: it runs up to
//!   [`async_calls`](PoolBuilder::async_calls) plain calls at once, each a
//!   task with its own `Store` on its one thread, fed by a
//!   `wasmpool-requests` reader thread; a `wasmpool-lanes` thread times
//!   them out, and a stopped call's task and `Store` are dropped. A call
//!   whose result holds streams or futures ([`StreamReader`],
//!   [`FutureReader`]) sends its result first, then keeps its `Store`
//!   running while their items cross in frames of their own, each stream
//!   within a window of credit ([`STREAM_WINDOW`]) per direction.
//! - **Host functions.** A guest's call of a [host
//!   function](PoolBuilder::host_fn) reaches the host like a
//!   `wasmpool:sync` operation. Its future is polled first on the thread
//!   that received it (the worker's host thread, or the worker thread),
//!   inside the caller's Tokio runtime context, and if it is not ready,
//!   spawned on that runtime; the call's end drops it.
//! - **Outbound HTTP.** A guest's `wasi:http` request, when its call
//!   allows any ([`PoolBuilder::allow_http`]), reaches the host whole like
//!   a `wasmpool:sync` operation. The host checks it against its own copy
//!   of the call's allowlist and makes it (hyper, rustls) on one
//!   `wasmpool-http` thread, started on the first request and kept for the
//!   process's life; the call's end drops a request in flight.
//! - **Scheduling.** One permit per worker gives back-pressure. Permits
//!   go first come first served within a [tenant](Call::tenant), and
//!   across tenants by stride scheduling, in proportion to their
//!   [weights](PoolBuilder::tenant_weight) (module `shares.rs`), so one
//!   tenant's backlog does not hold up another's calls; idle workers are
//!   reused last-in, first-out, so the
//!   warmest worker serves the next call. After answering, a worker polls
//!   briefly for its next request before it sleeps, as long as its
//!   requests come closely; where they come sparsely (a cluster node's), it
//!   sleeps at once and leaves the cores to the rest.
//! - **Memory.** A worker keeps memory for its next call (its freed heap,
//!   the guest memory of freed instances, its payload region's pages) and
//!   gives it back once it has been idle for a second;
//!   [`PoolBuilder::retire_above`] replaces a worker process that holds
//!   more than a bound after a call. The whole policy is in one module,
//!   `idle.rs`.
//! - **Locks.** A panic while one of wasmpool's internal locks is held (a
//!   bug) does not poison the pool: every lock recovers its guard. None is
//!   held while the user's code runs (host functions, their arguments'
//!   `Deserialize`, a call's data being dropped, a tracing subscriber), so
//!   only wasmpool's own code can panic under one (`locks.rs`).
//!
//! The source follows these roles: `pool/` is the caller's side (calls,
//! maps, where calls run (`backend.rs`: the roster of workers, or a
//! cluster's nodes), compiling), `worker/` the host's handle on
//! one worker, `sync/` the registry of named primitives, `wire/` every
//! message between host and worker, `values/` the serde ↔ WIT mapping,
//! `runtime/` what runs inside a worker, `host/` the host functions and
//! outbound HTTP,
//! `idle.rs` the policy for giving memory back, `locks.rs` the policy on
//! poisoned locks, and `platform/` every OS call and all of the crate's
//! `unsafe`.
//!
//! # Tracing
//!
//! wasmpool reports through [`tracing`](https://docs.rs/tracing), under
//! the `wasmpool` target. Each call is a `call` span (at debug level) with
//! the job's hash, the function, the call id, the worker id and pid, the
//! time it waited for a worker and the time it ran. Events mark workers
//! starting, exiting, crashing, being killed and retiring, compile-cache
//! hits and misses, a timeout escalating to a kill, and (at trace level)
//! every answer of the `wasmpool:sync` registry. Worker processes start
//! before `main`, so the host's subscriber is not theirs: when `RUST_LOG`
//! is set, a worker process writes its own events to its stderr (the
//! host's), filtered by `RUST_LOG` in the syntax of `tracing-subscriber`'s
//! `Targets` (`wasmpool=debug`). `examples/tracing.rs` shows the output.
//!
//! # Features
//!
//! - `cluster`: pools whose calls run on the worker nodes of a cluster,
//!   over NATS JetStream (`PoolBuilder::nats`, `cluster::Node`). Off by
//!   default, so that a local pool does not build `async-nats` and its TLS
//!   stack; the `wasmpool` command line turns it on.
//! - `wasi-http` (default): links `wasi:http` into every guest, so that
//!   components importing it (componentize-js ones do) run, with every
//!   outgoing request denied unless [`allow_http`](PoolBuilder::allow_http)
//!   allows it. Without it, such a component fails to instantiate with
//!   [`ErrorKind::InvalidComponent`], and `allow_http` fails calls with
//!   [`ErrorKind::Unsupported`].
//!
//! # Cancellation
//!
//! Dropping a call's future cancels it, as its [`Cancel`] mode says:
//!
//! - [`Cancel::Interrupt`] (the default) interrupts the guest and keeps the
//!   worker. A guest running wasm traps at its next epoch check; a guest
//!   blocked in a WASI call (a sleep, a poll) has that call dropped, since
//!   workers run wasmtime asynchronously. A worker that has not stopped
//!   within the [grace period](PoolBuilder::grace) is killed.
//! - [`Cancel::Kill`] kills the process at once (trio-parallel's
//!   `kill_on_cancel`).
//! - [`Cancel::Finish`] lets the call finish and discards its result.
//!
//! A [`CancelHandle`] cancels from another task without a drop. A
//! [`timeout`](Call::timeout) interrupts the same way but fails with
//! [`ErrorKind::Timeout`], and the host kills a worker that overruns it by
//! more than the grace period.
//!
//! # Sandbox
//!
//! Each call gets a fresh WASI p2 context. The current defaults are:
//!
//! - no preopened directories, no environment variables, no arguments;
//! - stdin is empty; stdout and stderr are the host's;
//! - no network: TCP, UDP and name lookup are denied, and `wasi:http`
//!   outgoing requests (imported by componentize-js components) fail with
//!   `HTTP-request-denied`, unless [`allow_http`](Call::allow_http)
//!   allows their destination: then the host checks and makes them (see
//!   there), and the worker stays socketless;
//! - no configuration: `wasi:config/store` has no keys;
//! - real clocks and random numbers;
//! - no timeout, no fuel budget, no memory limit beyond a 32-bit memory's
//!   4 GiB; a 1 MiB wasm stack.
//!
//! Beside wasmtime's sandbox, each worker process confines itself before
//! it loads a guest (on Linux; macOS gets a Seatbelt profile instead, see
//! [`PoolBuilder::confine`], which turns it off):
//!
//! - no new privileges, no core dumps, at most 4096 open descriptors;
//! - landlock: its compile cache read-only and the directories its calls
//!   preopen, each with its [`DirAccess`], and nothing else of the
//!   filesystem; no TCP; no signals to processes outside it;
//! - seccomp: only the system calls a worker needs. It cannot start a
//!   process or a program, open a socket or trace a process.
//!
//! A call that preopens a directory of its own runs on a worker started
//! for exactly its directories. Thread workers run in the host's process
//! and are not confined.
//!
//! Per pool ([`PoolBuilder`]) and per call ([`Call`]):
//! [`preopen_dir`](Call::preopen_dir) (read-only or read-write, confined by
//! cap-std), [`env`](Call::env) and [`env_from_host`](Call::env_from_host),
//! [`deterministic`](Call::deterministic) random numbers and clocks,
//! [`stdout`](Call::stdout)/[`stderr`](Call::stderr) inherited, captured or
//! discarded, [`timeout`](Call::timeout), [`max_memory`](Call::max_memory),
//! [`fuel`](Call::fuel), [`max_result_bytes`](Call::max_result_bytes) and
//! [`max_output_bytes`](Call::max_output_bytes). A limit exceeded fails with
//! [`ErrorKind::ResourceLimit`] and says which ([`Limit`]). Outbound HTTP:
//! [`allow_http`](Call::allow_http), [`http_timeout`](Call::http_timeout),
//! [`max_http_response_bytes`](Call::max_http_response_bytes) and
//! [`max_http_requests`](Call::max_http_requests); their limits fail the
//! guest's request, with `wasi:http` error codes, not the call. A guest reads
//! its [`config`](Call::config) through `wasi:config/store`: the pool's
//! values, overridden key by key by the call's.
//!
//! # Platform support
//!
//! The same API on Linux, Windows and macOS; the OS-facing code is all in
//! the crate's `platform` module. The README's "Platforms" table says what
//! was tested how.
//!
//! - **Linux**, fully: workers on pipes and a Unix socket, placed as
//!   descriptors before `exec`; `PR_SET_PDEATHSIG`; an `.init_array`
//!   entry, so the host's own program serves as the worker; the payload
//!   region on a memfd; the second wall above.
//! - **Windows**: workers on anonymous pipes whose handles the host
//!   duplicates into the worker (none is inheritable, so no other child
//!   takes one); a worker inherits its stdin, stdout and stderr and no
//!   other handle, whatever the host application left inheritable; one
//!   Job Object that ends the workers when the host ends, killed
//!   included, joined before the worker runs; `TerminateProcess` for a
//!   kill (a killed worker's status is exit code 137); a `.CRT$XCU` entry
//!   before `main`; the payload region on a section of the paging file.
//!   The second wall is a restricted token (no privilege but traversal,
//!   the Administrators group for denying only) and a Job Object of the
//!   worker's own that allows it no other process; the filesystem is
//!   guarded by wasmtime's sandbox alone.
//!   Compile cache: `%LOCALAPPDATA%\wasmpool`.
//! - **macOS**: as on Linux, with a `__mod_init_func` entry before `main`,
//!   no parent-death signal (a worker exits when its control socket
//!   closes), no payload region, and a Seatbelt profile as the second wall
//!   (no network, no processes, files as the preopens grant). Compile
//!   cache: `~/Library/Caches/wasmpool`. Cross-built only: it has not run
//!   on a Mac.
//! - Other Unix systems build, with fallbacks: no entry before `main` (a
//!   dedicated [`worker_program`](PoolBuilder::worker_program) calls
//!   [`worker_entry`] first thing), no CPU time in a call's [`Usage`]
//!   (`cpu` is `None`), no second wall beyond no core dumps.
//!
//! # Limitations
//!
//! - Resources cross the process boundary only in a session. Streams and
//!   futures cross only as a plain call's parameters (whole) and results,
//!   with items of primitive types, chars or strings, on process workers
//!   for async components ([`StreamReader`], [`FutureReader`]).
//! - A typed call cannot send `some(none)` of an `option<option<T>>`: serde
//!   writes it as nil, which is `none`. Dynamic calls carry it both ways
//!   (`[null]` in JSON), as does the wire (`[nil]`).
//! - A worker runs one call at a time (a worker for async components runs
//!   several plain calls at once, interleaved on its one thread); the
//!   pool's size bounds parallelism.
//! - The wasm stack size and fuel metering are engine settings, so they are
//!   set per pool; a call can set its own fuel budget on a metering pool.
//! - Arguments and results of 64 KiB or more cross through memory shared
//!   with the worker process, not its pipes; still, a payload is copied a
//!   few times on the way (encoded, into the shared region, into guest
//!   memory, and back): see the README's payload table. Payloads over
//!   512 MiB, and all payloads on systems other than Linux and Windows
//!   (which have no region), go through the pipes, on which a very large
//!   argument blocks the calling task while the worker reads it.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

#[cfg(feature = "unstable-bench")]
#[doc(hidden)]
pub mod bench_support;
#[cfg(feature = "cluster")]
pub mod cluster;
mod dynamic;
mod engine;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod idle;
mod inspect;
mod job;
mod locks;
#[cfg(feature = "cluster")]
mod nats;
mod options;
#[allow(unsafe_code)]
mod platform;
mod pool;
mod runtime;
mod shares;
mod sync;
mod values;
mod wire;
mod worker;

pub use dynamic::{DynArgs, DynValue};
pub use error::{Error, ErrorKind, Limit, TrapCode};
pub use host::{BoxError, HostContext};
pub use inspect::{Function, Import, Param, Provider};
pub use job::Job;
pub use options::{
    CAPTURE_LIMIT, Cancel, DEFAULT_ASYNC_CALLS, DEFAULT_CACHE_LIMIT, DEFAULT_GRACE,
    DEFAULT_HTTP_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HTTP_REQUESTS,
    DEFAULT_MAX_HTTP_RESPONSE_BYTES, DirAccess, Stdio, WorkerKind,
};
pub use pool::{
    Call, CancelHandle, Command, CommandHandle, CommandOutput, CpuTime, FutureReader, JobHandle,
    OpenSession, Output, Pool, PoolBuilder, Resource, STDIN_CHUNK, STREAM_WINDOW, Session,
    Statistics, StreamReader, Usage, default_pool, run,
};
pub use shares::TenantStatistics;
pub use sync::{
    Barrier, Condition, ConditionGuard, Event, JOB_CHANNEL_CAPACITY, Lock, LockGuard, Queue,
    Semaphore, SemaphorePermit,
};

/// Serves as a worker and exits, if this process was started as one;
/// otherwise returns at once.
///
/// On Linux, Windows and macOS this runs by itself before `main` in every
/// program linked with wasmpool, so nothing needs to call it. A dedicated
/// worker program (see [`PoolBuilder::worker_program`]) on another
/// platform calls it first thing in `main`.
pub fn worker_entry() {
    if platform::is_worker() {
        let code = runtime::run();
        std::process::exit(code);
    }
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
