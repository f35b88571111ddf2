//! What only Linux has: the worker entry that runs before `main`, the
//! parent-death signal, pipe sizes and allocator tuning.

use std::io;
use std::os::fd::AsRawFd;

/// Runs before `main` in every program linked with wasmpool: when the
/// process was started as a worker, it serves calls and exits without ever
/// reaching `main`. This is what makes re-executing the current program as a
/// worker work with no `init()` call in tests, examples or applications.
#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = pre_main_entry;

extern "C" fn pre_main_entry() {
    crate::worker_entry();
}

/// In the forked child, before exec: asks for SIGKILL when the thread that
/// spawned it exits, and fails if the host is already gone.
///
/// # Safety
///
/// Only async-signal-safe calls: fit for a `pre_exec` closure.
pub(super) unsafe fn before_exec(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory
    // of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
            return Err(io::Error::last_os_error());
        }
        // The host may have died between fork and prctl.
        if libc::getppid() != parent {
            return Err(io::Error::other("the host exited during spawn"));
        }
    }
    Ok(())
}

/// Asks for a pipe buffer of `bytes`; returns the size granted. Fewer,
/// larger hand-offs for big payloads. Failure is harmless (the pipe keeps
/// its default 64 KiB), so it is ignored.
pub(crate) fn grow_pipe(pipe: &impl AsRawFd, bytes: usize) -> usize {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; on a
    // descriptor that is not a pipe it fails with EBADF.
    let got = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
    usize::try_from(got).unwrap_or(0)
}

/// Confines a worker process: see [`confine`](super::confine).
pub(super) fn confine_worker(walls: super::Walls<'_>) -> io::Result<super::Landlock> {
    super::confine::confine(walls)
}

/// No new privileges: no exec can gain any (setuid, file capabilities).
pub(super) fn no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers and touches no
    // memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `RLIMIT_CORE` to 0, soft and hard: a crashed worker's memory holds
/// guests' data.
pub(super) fn no_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a live, initialised rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// In a worker process: keeps freed memory for reuse instead of handing
/// it back to the OS at once, so that each large payload does not fault in
/// fresh pages (glibc otherwise maps blocks over 128 KiB anew each time).
/// 32 MiB is the largest mmap threshold glibc accepts on 64-bit systems (it
/// ignores a larger one), so larger blocks are not mapped at all: they come
/// from the heap too (glibc still maps one if the heap cannot grow). A
/// 64 MiB echo took 15% less time so. What is kept goes back when the
/// worker idles ([`trim_freed_memory`]).
pub(crate) fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; it is called before the
    // worker starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}

/// In an idle worker process: gives the memory [`keep_freed_memory`] kept
/// back to the OS.
pub(crate) fn trim_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory; it takes the
    // allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The CPU time the calling thread has used so far, in nanoseconds: all
/// of it, and the part in system mode. `None` if either call fails.
///
/// The total is the scheduler's own count (`CLOCK_THREAD_CPUTIME_ID`),
/// exact to the nanosecond. `getrusage(RUSAGE_THREAD)` gives only the
/// split: its figures are that count as of the thread's last timer tick
/// or switch, so they lag by up to a tick (4 ms at 250 Hz) and would put a
/// short call at 0, or give it the time of calls before it. The worker's
/// seccomp filter allows both calls.
pub(crate) fn thread_cpu_ns() -> Option<(u64, u64)> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: clock_gettime writes a timespec through the pointer, which
    // is to a live one; getrusage writes a whole rusage through its
    // pointer, which is to a live one of the right type, and it is read
    // only when the call says it succeeded.
    let usage = unsafe {
        if libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) != 0
            || libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0
        {
            return None;
        }
        usage.assume_init()
    };
    let total =
        u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    let system = u64::try_from(usage.ru_stime.tv_sec).ok()? * 1_000_000_000
        + u64::try_from(usage.ru_stime.tv_usec).ok()? * 1_000;
    Some((total, system))
}

/// A process's own memory footprint, read from its `/proc/{pid}/statm`.
/// A worker reads its own through a descriptor opened before it confines
/// itself (the sandbox then denies `/proc`).
pub(crate) struct Footprint(std::fs::File);

impl Footprint {
    /// This process's.
    pub(crate) fn open() -> Option<Footprint> {
        std::fs::File::open("/proc/self/statm").ok().map(Footprint)
    }

    /// Process `pid`'s: `None` once it is gone.
    pub(crate) fn of(pid: u32) -> Option<Footprint> {
        std::fs::File::open(format!("/proc/{pid}/statm"))
            .ok()
            .map(Footprint)
    }

    /// Resident memory that is neither file-backed nor shared memory (the
    /// payload region is shared memory): what the process itself holds.
    pub(crate) fn private_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 128];
        let n = self.0.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        // size resident shared text lib data dt, in pages.
        let mut fields = text.split_ascii_whitespace().skip(1);
        let resident: u64 = fields.next()?.parse().ok()?;
        let shared: u64 = fields.next()?.parse().ok()?;
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(resident.saturating_sub(shared) * u64::try_from(page).ok()?)
    }
}

/// An empty `Vec` with room for `len` bytes. A large one is given
/// transparent huge pages where the system allows them on request
/// (`madvise` mode): filling it then takes one page fault per 2 MiB
/// instead of one per 4 KiB, which for a 64 MiB payload was most of the
/// cost of the copy.
pub(crate) fn large_buffer(len: usize) -> Vec<u8> {
    const HUGE: usize = 2 << 20;
    let out = Vec::<u8>::with_capacity(len);
    if len >= 2 * HUGE {
        let start = (out.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (out.as_ptr() as usize + len) & !(HUGE - 1);
        if end > start {
            // SAFETY: advice only, on whole pages inside the allocation
            // just made; it changes no contents and no permissions.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    out
}
