//! Fallbacks for Unix systems other than Linux: no pre-`main` entry (a
//! dedicated worker program calls [`worker_entry`](crate::worker_entry)
//! first thing), no parent-death signal (a worker still exits when its
//! control socket closes), default pipe sizes and allocator.

use std::io;
use std::os::fd::AsRawFd;

/// No parent-death signal here; the worker exits when its control socket
/// closes.
///
/// # Safety
///
/// Calls nothing: fit for a `pre_exec` closure.
pub(super) unsafe fn before_exec(_parent: libc::pid_t) -> io::Result<()> {
    Ok(())
}

/// Pipes keep their default size.
pub(crate) fn grow_pipe(_pipe: &impl AsRawFd, _bytes: usize) -> usize {
    0
}

/// The allocator keeps its defaults.
pub(crate) fn keep_freed_memory() {}

/// Nothing to give back: [`keep_freed_memory`] kept nothing.
pub(crate) fn trim_freed_memory() {}

/// An empty `Vec` with room for `len` bytes.
pub(crate) fn large_buffer(len: usize) -> Vec<u8> {
    Vec::with_capacity(len)
}

/// No per-thread CPU time here: `RUSAGE_THREAD` is Linux's, and the
/// process's would count every thread of a thread worker's host.
pub(crate) fn thread_cpu_ns() -> Option<(u64, u64)> {
    None
}

/// No `/proc` here to read a process's footprint from.
pub(crate) struct Footprint;

impl Footprint {
    pub(crate) fn open() -> Option<Footprint> {
        None
    }

    pub(crate) fn of(_pid: u32) -> Option<Footprint> {
        None
    }

    pub(crate) fn private_bytes(&self) -> Option<u64> {
        None
    }
}

/// Only no core dumps here: no `PR_SET_NO_NEW_PRIVS`, seccomp or landlock.
pub(super) fn confine_worker(_walls: super::Walls<'_>) -> io::Result<super::Landlock> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a live, initialised rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(super::Landlock::None)
}
