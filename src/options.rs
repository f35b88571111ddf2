//! The settings a user chooses from: worker kinds, cancel modes, directory
//! access, stdio, and the defaults of [`PoolBuilder`](crate::PoolBuilder).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an idle worker is kept before it exits: 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The most the compile cache may hold before its least recently used
/// artifacts are removed: 2 GiB. See
/// [`PoolBuilder::cache_limit`](crate::PoolBuilder::cache_limit).
pub const DEFAULT_CACHE_LIMIT: u64 = 2 << 30;

/// How long an interrupted or timed-out call has to stop before its worker
/// is killed: 500 ms. An epoch interrupt takes microseconds; the margin is
/// for a loaded machine.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(500);

/// How many calls to async components one worker process runs at once,
/// unless [`PoolBuilder::async_calls`](crate::PoolBuilder::async_calls)
/// says otherwise: 8.
pub const DEFAULT_ASYNC_CALLS: usize = 8;

/// The most [`PoolBuilder::async_calls`](crate::PoolBuilder::async_calls)
/// allows.
pub(crate) const MAX_ASYNC_CALLS: usize = 1024;

/// Whether a preopened directory may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DirAccess {
    /// The guest may read files and list directories.
    ReadOnly,
    /// The guest may also create, write and remove.
    ReadWrite,
}

/// Where a pool runs its calls. Set with [`PoolBuilder::worker_kind`](crate::PoolBuilder::worker_kind).
///
/// | | [`Process`](WorkerKind::Process) | [`Thread`](WorkerKind::Thread) |
/// | --- | --- | --- |
/// | isolation | an OS process per worker | threads of the host process |
/// | soft cancel (epoch interrupt), timeouts, limits, sandbox | yes | yes |
/// | hard cancel ([`Cancel::Kill`]) | SIGKILL (`TerminateProcess` on Windows) | no: interrupts instead |
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
    /// [`grace`](crate::PoolBuilder::grace) period interrupt the guest instead,
    /// and a worker that still does not stop is abandoned (its thread ends
    /// when the call does) and replaced.
    Thread,
}

/// What happens to a call whose future is dropped before it finishes.
///
/// Set per pool with [`PoolBuilder::on_cancel`](crate::PoolBuilder::on_cancel) and per call with
/// [`Call::on_cancel`](crate::Call::on_cancel).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum Cancel {
    /// Interrupt the guest with an epoch interrupt; the worker survives and
    /// serves the next call. The default.
    #[default]
    Interrupt,
    /// Kill the worker process at once with SIGKILL (on Windows,
    /// `TerminateProcess`). The pool starts a new
    /// one when it next needs it. Thread workers cannot be killed; for them
    /// this is [`Interrupt`](Cancel::Interrupt).
    Kill,
    /// Let the call run to completion and discard its result; the worker
    /// then returns to the pool.
    Finish,
}

/// Where a call's stdout or stderr goes. Set with
/// [`Call::stdout`](crate::Call::stdout) and
/// [`Call::stderr`](crate::Call::stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Stdio {
    /// To the host process's own stdout or stderr. The default: print just
    /// works.
    #[default]
    Inherit,
    /// Into a buffer returned with the result by
    /// [`Call::report`](crate::Call::report), up to
    /// [`CAPTURE_LIMIT`](crate::CAPTURE_LIMIT) bytes or the call's
    /// [`max_output_bytes`](crate::Call::max_output_bytes); writes past it
    /// fail in the guest.
    Capture,
    /// Nowhere.
    Discard,
}

/// The most a captured stream holds unless the call sets its own
/// [`max_output_bytes`](crate::Call::max_output_bytes): 16 MiB.
pub const CAPTURE_LIMIT: usize = 16 << 20;

/// How long one outbound HTTP request may take, from resolving its host to
/// the last byte of its response, unless the pool or the call sets
/// [`http_timeout`](crate::PoolBuilder::http_timeout): 30 s.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest outbound HTTP response body a call accepts unless the pool
/// or the call sets
/// [`max_http_response_bytes`](crate::PoolBuilder::max_http_response_bytes):
/// 16 MiB.
pub const DEFAULT_MAX_HTTP_RESPONSE_BYTES: u64 = 16 << 20;

/// The most outbound HTTP requests one call may make unless the pool or
/// the call sets
/// [`max_http_requests`](crate::PoolBuilder::max_http_requests): 64.
pub const DEFAULT_MAX_HTTP_REQUESTS: u32 = 64;
