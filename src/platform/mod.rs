//! Everything that touches the OS below std: the worker's channels,
//! spawning and killing workers, polling, the private cache directory,
//! mapping compiled artifacts, the payload region, and a thread's CPU
//! time. All of the crate's `unsafe` lives here, each block with a
//! `SAFETY` comment, including the one shortcut of pure code
//! ([`string_from_utf8`]).
//!
//! - `unix.rs`: channels as inherited descriptors, `fork`/`exec`, `poll`,
//!   signals and `waitid`, for every Unix system.
//! - `linux.rs`: what only Linux has (the pre-`main` worker entry, the
//!   parent-death signal, pipe sizes, allocator tuning, per-thread CPU
//!   time), with `confine.rs`, the second wall.
//! - `macos.rs`: macOS's counterparts (the entry before `main`, CPU time,
//!   footprint), with a Seatbelt profile as its second wall.
//! - `other.rs`: the fallbacks for other Unix systems.
//! - `windows.rs` (with `windows_token.rs`, a worker's token): channels as
//!   handles duplicated into the worker, a Job Object that ends the
//!   workers with the host, `TerminateProcess`.

#[cfg(not(any(unix, windows)))]
compile_error!("wasmpool runs its workers as Unix or Windows processes");

#[cfg(target_os = "linux")]
mod confine;
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
#[path = "other.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;
mod region;
#[cfg(unix)]
#[path = "unix.rs"]
mod sys;
#[cfg(windows)]
use os as sys;

pub(crate) use os::{Footprint, keep_freed_memory, large_buffer, thread_cpu_ns, trim_freed_memory};
pub(crate) use region::{HostRegion, WorkerRegion};
#[cfg(windows)]
pub(crate) use sys::KILL_CODE;
#[cfg(feature = "test-hooks")]
pub(crate) use sys::attempt_escape;
pub(crate) use sys::{
    ControlHost, ControlWorker, WakePipe, WorkerProcess, close_control, control_channel,
    create_private_dir, default_cache_home, has_exited, inherited_channels, kill, pipe,
    spawn_worker, spin_until_readable, unread_bytes, wait_exit_without_reaping, wait_readable,
};

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::options::DirAccess;

/// A `Vec` to encode into, whose large growth comes from [`large_buffer`].
#[derive(Default)]
pub(crate) struct BufferWriter(pub(crate) Vec<u8>);

impl io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + buf.len();
        if needed > self.0.capacity() && needed >= LARGE {
            let mut grown = large_buffer(needed.max(self.0.capacity() * 2));
            grown.extend_from_slice(&self.0);
            self.0 = grown;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// From this size on, [`BufferWriter`] grows into a [`large_buffer`].
const LARGE: usize = 4 << 20;

/// `String::from_utf8`, checked several times faster on multi-byte text
/// (simdutf8); the bytes back when they are not UTF-8. Here because
/// `String::from_utf8_unchecked` is unsafe.
pub(crate) fn string_from_utf8(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    if simdutf8::basic::from_utf8(&bytes).is_err() {
        return Err(bytes);
    }
    // SAFETY: `bytes` was just checked to be UTF-8.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

/// The environment variable that marks a process as a wasmpool worker.
pub(crate) const WORKER_ENV: &str = "WASMPOOL_WORKER";

/// A worker's three channels to its host.
///
/// Requests and replies travel on two one-way pipes rather than one
/// socket: a Unix socket wakes every thread blocked reading it whenever
/// the peer reads (its write-space callback), so a shared socket costs a
/// spurious wake-up on each side per call. A pipe wakes only readers on
/// write, and writers only when it was full.
#[derive(Debug)]
pub(crate) struct Channels<R, C, W> {
    pub(crate) requests: R,
    pub(crate) control: C,
    pub(crate) replies: W,
}

/// Whether this process was started as a worker.
pub(crate) fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// A number unique within this process, for temporary file names.
pub(crate) fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Loads a compiled artifact by mapping it into memory.
///
/// Only ever called on files in the private cache directory (see
/// [`create_private_dir`]), written there by the host or by its compiling
/// child from `Component::serialize` of an engine with the same settings.
pub(crate) fn load_artifact(
    engine: &wasmtime::Engine,
    path: &Path,
) -> wasmtime::Result<wasmtime::component::Component> {
    // Windows: read, not mapped. wasmtime maps a file copy-on-write and
    // then makes it read-only, which Wine refuses; a read costs each worker
    // its own copy of the code instead of sharing the file's pages.
    #[cfg(windows)]
    {
        let bytes = std::fs::read(path)?;
        load_artifact_bytes(engine, &bytes)
    }
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
    // output. It is: the file lives in a directory only this user can
    // write, and was written by the host's `store_artifact`. Files from an
    // incompatible engine fail wasmtime's header check, an error, not UB.
    #[cfg(not(windows))]
    unsafe {
        wasmtime::component::Component::deserialize_file(engine, path)
    }
}

/// Loads a compiled artifact the host read from its private cache
/// directory (see [`create_private_dir`]), written there by the host's
/// compiling child from `Component::serialize` of an engine with the same
/// settings.
pub(crate) fn load_artifact_bytes(
    engine: &wasmtime::Engine,
    bytes: &[u8],
) -> wasmtime::Result<wasmtime::component::Component> {
    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output.
    // They are: read from a directory only this user can write, through a
    // handle confined to it, from a file written by `compile_artifact`.
    // Bytes from an incompatible engine fail wasmtime's header check, an
    // error, not UB.
    unsafe { wasmtime::component::Component::deserialize(engine, bytes) }
}

/// What a confined worker keeps of the filesystem.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(target_os = "linux"),
    allow(
        dead_code,
        reason = "only Linux's second wall narrows the filesystem yet"
    )
)]
pub(crate) struct Walls<'a> {
    /// Directories it may read (its compile cache).
    pub(crate) read: &'a [&'a Path],
    /// Directories its calls may preopen, each with its access.
    pub(crate) dirs: &'a [(&'a Path, DirAccess)],
}

/// How much of its landlock ruleset a confined worker got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(target_os = "linux"),
    allow(
        dead_code,
        reason = "only Linux's second wall narrows the filesystem yet"
    )
)]
pub(crate) enum Landlock {
    Full,
    Partial,
    /// The kernel has no landlock (or it is turned off): the filesystem is
    /// guarded by wasmtime's sandbox alone.
    None,
}

/// Why a confined worker has no filesystem wall, when it has none (Windows
/// says what its wall is instead).
pub(crate) const NO_FS_WALL: &str = if cfg!(target_os = "linux") {
    "this kernel lacks landlock"
} else {
    "only Linux's landlock is supported"
};

/// Calls `ready` without sleeping until it says yes or `spin` has passed;
/// returns its last answer.
fn spin_until(spin: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= spin {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Confines the calling worker process before it loads any guest (on
/// Linux: no new privileges, rlimits, landlock, seccomp; see
/// `confine.rs`). Call it while the process has one thread. An error
/// means the worker must not go on.
pub(crate) fn confine_worker(walls: Walls<'_>) -> io::Result<Landlock> {
    os::confine_worker(walls)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::{BufferWriter, LARGE, large_buffer};

    #[test]
    fn a_buffer_writer_keeps_every_byte_across_its_large_growth() {
        let mut expected = Vec::new();
        let mut w = BufferWriter::default();
        // Small writes up to past the large threshold, then one large one.
        let mut i = 0u32;
        while expected.len() < LARGE + 4096 {
            let chunk: Vec<u8> = (0..1021).map(|k| (i.wrapping_mul(31) ^ k) as u8).collect();
            w.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            i += 1;
        }
        let big: Vec<u8> = (0..3 * LARGE as u32).map(|k| (k % 251) as u8).collect();
        w.write_all(&big).unwrap();
        expected.extend_from_slice(&big);
        assert!(w.0 == expected, "the written bytes came out changed");
    }

    #[test]
    fn a_large_buffer_has_room_and_nothing_in_it() {
        for len in [0, 1, 4 << 20, (4 << 20) + 4097, 64 << 20] {
            let b = large_buffer(len);
            assert!(b.is_empty());
            assert!(b.capacity() >= len, "{len}: capacity {}", b.capacity());
        }
    }
}
