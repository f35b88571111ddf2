//! What macOS has in place of Linux's: the worker entry before `main` (in
//! `__mod_init_func`), descriptors closed before `exec` in place of
//! atomic close-on-exec, per-thread CPU time from Mach, the footprint from
//! `proc_pid_rusage`, and a Seatbelt profile as the second wall.
//!
//! Built and linted here by cross-compiling; it has not run on a Mac (see
//! the README's "Platforms").

use std::ffi::{CStr, CString, c_char};
use std::io;
use std::os::fd::AsRawFd;

use crate::options::DirAccess;

/// Runs before `main` in every program linked with wasmpool: when the
/// process was started as a worker, it serves calls and exits without ever
/// reaching `main`.
#[used]
#[unsafe(link_section = "__DATA,__mod_init_func,mod_init_funcs")]
static WORKER_ENTRY: extern "C" fn() = pre_main_entry;

extern "C" fn pre_main_entry() {
    crate::worker_entry();
}

/// In the forked child, before exec: closes every descriptor above the
/// worker's own (3 to 6). macOS makes pipes and socket pairs
/// close-on-exec in a second step after creating them, so a worker forked
/// by one thread while another creates a channel could otherwise inherit
/// that channel's host end, and keep it open past its own worker's death.
/// A worker still exits when its control socket closes, which is how it
/// notices that its host died.
///
/// # Safety
///
/// Only async-signal-safe calls: fit for a `pre_exec` closure.
pub(super) unsafe fn before_exec(_parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: getdtablesize and close are async-signal-safe; closing a
    // descriptor that is not open fails harmlessly with EBADF.
    unsafe {
        let top = libc::getdtablesize().clamp(7, 1 << 16);
        for fd in 7..top {
            libc::close(fd);
        }
    }
    Ok(())
}

/// Pipes keep their default size (macOS grows them by itself up to
/// 64 KiB).
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

/// The CPU time the calling thread has used so far, in nanoseconds: all
/// of it (`CLOCK_THREAD_CPUTIME_ID`), and the part in system mode (Mach's
/// `thread_info`). `None` if either call fails.
pub(crate) fn thread_cpu_ns() -> Option<(u64, u64)> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec through a pointer to a live
    // one.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return None;
    }
    // SAFETY: an all-zero thread_basic_info is a valid value (integers).
    let mut info: libc::thread_basic_info = unsafe { std::mem::zeroed() };
    let mut count = libc::THREAD_BASIC_INFO_COUNT;
    // SAFETY: pthread_mach_thread_np names the calling thread without
    // taking a port reference; thread_info writes at most `count` integers
    // into `info`, which has room for them.
    let r = unsafe {
        libc::thread_info(
            libc::pthread_mach_thread_np(libc::pthread_self()),
            libc::THREAD_BASIC_INFO as libc::thread_flavor_t,
            (&raw mut info).cast::<libc::integer_t>(),
            &mut count,
        )
    };
    if r != libc::KERN_SUCCESS {
        return None;
    }
    let total =
        u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    let system = u64::try_from(info.system_time.seconds).ok()? * 1_000_000_000
        + u64::try_from(info.system_time.microseconds).ok()? * 1_000;
    Some((total, system.min(total)))
}

/// A process's own memory footprint: what macOS's memory pressure counts
/// against it (`ri_phys_footprint`).
pub(crate) struct Footprint(libc::c_int);

impl Footprint {
    /// This process's.
    pub(crate) fn open() -> Option<Footprint> {
        Some(Footprint(std::process::id() as libc::c_int))
    }

    /// Process `pid`'s.
    pub(crate) fn of(pid: u32) -> Option<Footprint> {
        let pid = libc::c_int::try_from(pid).ok()?;
        let f = Footprint(pid);
        f.private_bytes().map(|_| f)
    }

    /// The process's physical footprint: its private memory, compressed
    /// included; `None` once it is gone.
    pub(crate) fn private_bytes(&self) -> Option<u64> {
        // SAFETY: an all-zero rusage_info_v2 is a valid value (integers).
        let mut usage: libc::rusage_info_v2 = unsafe { std::mem::zeroed() };
        // SAFETY: the flavor names the struct the pointer points to, which
        // is live for the call.
        let r = unsafe {
            libc::proc_pid_rusage(
                self.0,
                libc::RUSAGE_INFO_V2,
                (&raw mut usage).cast::<libc::rusage_info_t>(),
            )
        };
        (r == 0).then_some(usage.ri_phys_footprint)
    }
}

/// The Seatbelt profile of a confined worker (see [`confine_worker`]).
fn profile(walls: super::Walls<'_>) -> io::Result<CString> {
    let quoted = |p: &std::path::Path| -> io::Result<String> {
        // Seatbelt matches real paths (`/var` is `/private/var`).
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let s = real.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not UTF-8", p.display()),
            )
        })?;
        Ok(format!(
            "\"{}\"",
            s.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    };
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    for dir in walls.read {
        readable.push(quoted(dir)?);
    }
    for (dir, access) in walls.dirs {
        let q = quoted(dir)?;
        if *access == DirAccess::ReadWrite {
            writable.push(q.clone());
        }
        readable.push(q);
    }
    let subpaths = |dirs: &[String]| {
        dirs.iter()
            .map(|d| format!(" (subpath {d})"))
            .collect::<String>()
    };
    // The last rule that matches decides. The system's own files stay
    // readable for what the already running worker may still load.
    let text = format!(
        "(version 1)\n\
         (allow default)\n\
         (deny network*)\n\
         (deny process-fork)\n\
         (deny process-exec)\n\
         (deny file-write*)\n\
         (allow file-write-data (literal \"/dev/null\"))\n\
         (deny file-read-data)\n\
         (allow file-read-data (subpath \"/System\") (subpath \"/usr/lib\") \
         (subpath \"/Library/Apple\") (literal \"/dev/null\") (literal \"/dev/urandom\") \
         (literal \"/dev/random\"){}){}\n",
        subpaths(&readable),
        if writable.is_empty() {
            String::new()
        } else {
            format!("\n(allow file-write*{})", subpaths(&writable))
        },
    );
    CString::new(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

// libSystem's Seatbelt entry points (`sandbox.h`), which the libc crate
// does not declare.
unsafe extern "C" {
    fn sandbox_init(profile: *const c_char, flags: u64, errorbuf: *mut *mut c_char) -> libc::c_int;
    fn sandbox_free_error(errorbuf: *mut c_char);
}

/// The second wall on macOS: no core dumps, at most 4096 open
/// descriptors, and a Seatbelt profile that denies the network, starting
/// processes, every file write outside the read-write preopens, and file
/// reads outside the compile cache, the preopens and the system's own
/// files.
pub(super) fn confine_worker(walls: super::Walls<'_>) -> io::Result<super::Landlock> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a live, initialised rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let files = libc::rlimit {
        rlim_cur: 4096,
        rlim_max: 4096,
    };
    // SAFETY: as above. Lowering the limit can only fail if it is already
    // lower, which is as good.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &files) };
    let profile = profile(walls)?;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the profile is a NUL-terminated string that outlives the
    // call; on failure `error` points to a message that is freed below.
    let r = unsafe { sandbox_init(profile.as_ptr(), 0, &mut error) };
    if r != 0 {
        let why = if error.is_null() {
            "no reason given".to_string()
        } else {
            // SAFETY: sandbox_init set `error` to a NUL-terminated message,
            // read before it is freed, once.
            unsafe {
                let why = CStr::from_ptr(error).to_string_lossy().into_owned();
                sandbox_free_error(error);
                why
            }
        };
        return Err(io::Error::other(format!("sandbox_init: {why}")));
    }
    Ok(super::Landlock::Full)
}
