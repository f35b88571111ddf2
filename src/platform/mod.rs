//! Everything that touches the OS below std: the worker's channels,
//! spawning and killing workers, polling, the private cache directory,
//! mapping compiled artifacts, the payload region, and a thread's CPU
//! time. All of the crate's `unsafe` lives here, each block with a
//! `SAFETY` comment, including the one shortcut of pure code
//! ([`string_from_utf8`]). What only Linux has (the pre-`main` worker
//! entry, the parent-death signal, pipe sizes, allocator tuning, per-thread
//! CPU time) is in `linux.rs`; other Unix systems get the fallbacks in
//! `other.rs`.

#[cfg(not(unix))]
compile_error!(
    "wasmpool runs its workers as Unix processes: it builds on Linux (fully supported) and \
     other Unix systems (workers need a dedicated program that calls `worker_entry`)"
);

#[cfg(target_os = "linux")]
mod confine;
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;
#[cfg(all(unix, not(target_os = "linux")))]
#[path = "other.rs"]
mod os;
mod region;

pub(crate) use os::{
    Footprint, grow_pipe, keep_freed_memory, large_buffer, thread_cpu_ns, trim_freed_memory,
};
pub(crate) use region::{HostRegion, WorkerRegion};

use std::io;
use std::io::{PipeReader, PipeWriter};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// The descriptor a worker reads requests from (a pipe).
const REQUEST_FD: RawFd = 3;
/// The descriptor a worker reads control frames from (a socket).
const CONTROL_FD: RawFd = 4;
/// The descriptor a worker writes replies to (a pipe).
const REPLY_FD: RawFd = 5;

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

/// The channels a worker inherited from its host.
pub(crate) fn inherited_channels() -> io::Result<Channels<PipeReader, UnixStream, PipeWriter>> {
    for fd in [REQUEST_FD, CONTROL_FD, REPLY_FD] {
        // SAFETY: F_GETFD only reads the descriptor's flags; it is valid to
        // call on any integer.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{WORKER_ENV} is set but descriptor {fd} is not open: not started by a wasmpool host"
                ),
            ));
        }
    }
    // SAFETY: the descriptors are open (checked above) and were placed
    // there by `spawn_worker` for this process alone; nothing else in the
    // worker owns them.
    let requests = unsafe { PipeReader::from_raw_fd(REQUEST_FD) };
    // SAFETY: as above.
    let control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    // SAFETY: as above.
    let replies = unsafe { PipeWriter::from_raw_fd(REPLY_FD) };
    Ok(Channels {
        requests,
        control,
        replies,
    })
}

/// Starts `program` as a worker with the given channel ends as its
/// descriptors 3, 4 and 5 (and its payload region, if any, as 6), stdin
/// closed, stdout and stderr inherited. On Linux the child gets SIGKILL
/// when the calling thread exits, so the calling thread must live as long
/// as the worker.
pub(crate) fn spawn_worker(
    program: &Path,
    ends: Channels<OwnedFd, OwnedFd, OwnedFd>,
    region: Option<&HostRegion>,
) -> io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.env(WORKER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut fds = [
        (ends.requests.as_raw_fd(), REQUEST_FD),
        (ends.control.as_raw_fd(), CONTROL_FD),
        (ends.replies.as_raw_fd(), REPLY_FD),
        (-1, region::REGION_FD),
    ];
    let count = match region {
        Some(r) => {
            fds[3].0 = r.fd().as_raw_fd();
            4
        }
        None => 3,
    };
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (fcntl, dup2, and prctl and getppid
    // in `die_with_parent`); it allocates nothing and touches no locks
    // (`fds` is a copied array).
    unsafe {
        cmd.pre_exec(move || {
            // Move all out of the way first, so that dup2 onto 3, 4 and 5
            // cannot clobber one with another.
            let mut moved = [0; 4];
            for (m, (fd, _)) in moved.iter_mut().zip(fds).take(count) {
                *m = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *m < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (m, (_, target)) in moved.into_iter().zip(fds).take(count) {
                if libc::dup2(m, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            os::die_with_parent(parent)
        });
    }
    let child = cmd.spawn();
    // The child has its own copies now; ours must close so that EOF works.
    drop(ends);
    child
}

/// Polls `fd` for input without sleeping for up to `spin`; returns whether
/// input arrived.
pub(crate) fn spin_until_readable(fd: &impl AsRawFd, spin: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        // Ready, or hung up (a read then sees the end): readable. An
        // interrupted poll (-1) is not.
        if n > 0 {
            return true;
        }
        if start.elapsed() >= spin {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Waits until `a` or `b` has input, or `timeout` passes (`None`: no
/// limit); returns which have input.
pub(crate) fn wait_readable(
    a: &impl AsRawFd,
    b: &impl AsRawFd,
    timeout: Option<std::time::Duration>,
) -> io::Result<(bool, bool)> {
    let mut pfds = [a.as_raw_fd(), b.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = match timeout {
        None => -1,
        // Rounded up, so that a wait never ends before its deadline.
        Some(t) => libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX),
    };
    // SAFETY: `pfds` is a valid array of two pollfds for the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok((false, false))
        } else {
            Err(e)
        };
    }
    // Hang-up and errors count as input: the read that follows sees them.
    let ready = |p: &libc::pollfd| p.revents != 0;
    Ok((ready(&pfds[0]), ready(&pfds[1])))
}

/// A self-pipe that wakes a thread waiting in [`wait_readable`].
pub(crate) struct WakePipe {
    reader: PipeReader,
    writer: PipeWriter,
}

impl WakePipe {
    pub(crate) fn new() -> io::Result<WakePipe> {
        let (reader, writer) = std::io::pipe()?;
        for fd in [reader.as_raw_fd(), writer.as_raw_fd()] {
            // SAFETY: F_GETFL/F_SETFL only change the descriptor's flags.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Ok(WakePipe { reader, writer })
    }

    /// Makes the pipe readable. Never blocks: a full pipe is readable.
    pub(crate) fn ring(&self) {
        use std::io::Write as _;
        let _ = (&self.writer).write(&[1]);
    }

    /// Empties the pipe.
    pub(crate) fn drain(&self) {
        use std::io::Read as _;
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// What [`wait_readable`] waits on.
    pub(crate) fn readable(&self) -> &PipeReader {
        &self.reader
    }
}

/// Sends SIGKILL to `pid`. The caller guarantees the process has not been
/// reaped, so the pid cannot have been reused.
pub(crate) fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; the pid belongs to
    // an unreaped child of ours (see the caller's contract).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// The real user id, to make per-user paths.
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// Creates `dir` (and its parents) if needed, and checks that only this
/// user can write to it: compiled artifacts are loaded as native code.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != uid() || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by other users; wasmpool will not load native code from it",
                dir.display()
            ),
        ));
    }
    Ok(())
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
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
    // output. It is: the file lives in a directory only this user can
    // write, and was written by the host's `store_artifact`. Files from an
    // incompatible engine fail wasmtime's header check, an error, not UB.
    unsafe { wasmtime::component::Component::deserialize_file(engine, path) }
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

/// Whether our child `pid` has exited (or is no child of ours any more),
/// without waiting and without reaping it: the host thread that owns the
/// child still reaps it.
pub(crate) fn has_exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to
    // overwrite; the pointer is to a live local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with WNOHANG | WNOWAIT only observes the child's
    // state; the pointer is valid for writes for the duration of the call.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (or left it zeroed, which reads as 0).
    let exited_pid = unsafe { info.si_pid() };
    r != 0 || exited_pid != 0
}

/// How many bytes written to a pipe have not been read yet. Works on
/// either end of a Linux pipe; 0 where it cannot tell.
pub(crate) fn unread_bytes(pipe: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid
    // for the call.
    let r = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Blocks until process `pid` has exited, without reaping it, so that the
/// caller can reap it under a lock that `kill` also takes.
pub(crate) fn wait_exit_without_reaping(pid: u32) {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to
        // overwrite; the pointer is to a live local.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only observes the child's state; the
        // pointer is valid for writes for the duration of the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// What a confined worker keeps of the filesystem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walls<'a> {
    /// Directories it may read (its compile cache).
    pub(crate) read: &'a [&'a Path],
    /// Directories its calls may preopen, each with its access.
    pub(crate) dirs: &'a [(&'a Path, DirAccess)],
}

/// How much of its landlock ruleset a confined worker got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landlock {
    Full,
    Partial,
    /// The kernel has no landlock (or it is turned off): the filesystem is
    /// guarded by wasmtime's sandbox alone.
    None,
}

/// Confines the calling worker process before it loads any guest (on
/// Linux: no new privileges, rlimits, landlock, seccomp; see
/// `confine.rs`). Call it while the process has one thread. An error
/// means the worker must not go on.
pub(crate) fn confine_worker(walls: Walls<'_>) -> io::Result<Landlock> {
    os::confine_worker(walls)
}

/// Test only: tries, natively, what a guest that broke out of wasmtime
/// would try (read `/etc/passwd` and `outside`, write in `readonly`, open a
/// socket, fork, exec), and says how each attempt ended (`"ok"` or the
/// error). The fork's child exits at once; `exec` replaces this process if
/// it works.
#[cfg(feature = "test-hooks")]
pub(crate) fn attempt_escape(
    outside: &Path,
    readonly: Option<&Path>,
    exec: bool,
) -> Vec<(String, String)> {
    fn ended(r: io::Result<()>) -> String {
        match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    }
    let mut out = Vec::new();
    let open = |path: &Path| std::fs::File::open(path).map(drop);
    out.push((
        "open /etc/passwd".into(),
        ended(open(Path::new("/etc/passwd"))),
    ));
    out.push((format!("open {}", outside.display()), ended(open(outside))));
    if let Some(dir) = readonly {
        let file = dir.join("escaped");
        let created = std::fs::File::create(&file).map(drop);
        if created.is_ok() {
            let _ = std::fs::remove_file(&file);
        }
        out.push((format!("create {}", file.display()), ended(created)));
    }
    let socket = || {
        // SAFETY: socket takes plain integers; the descriptor it returns,
        // if any, is closed at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor this function just opened.
        unsafe { libc::close(fd) };
        Ok(())
    };
    out.push(("socket".into(), ended(socket())));
    let fork = || {
        // SAFETY: the child calls only `_exit`, which is async-signal-safe.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            // SAFETY: `_exit` ends the child without running anything of
            // the parent's.
            0 => unsafe { libc::_exit(0) },
            child => {
                let mut status = 0;
                // SAFETY: the pointer is to a live int; child is ours.
                unsafe { libc::waitpid(child, &mut status, 0) };
                Ok(())
            }
        }
    };
    out.push(("fork".into(), ended(fork())));
    if exec {
        let execve = || {
            let sh = c"/bin/sh";
            let argv = [
                sh.as_ptr(),
                c"-c".as_ptr(),
                c"exit 0".as_ptr(),
                std::ptr::null(),
            ];
            let envp = [std::ptr::null()];
            // SAFETY: every pointer is to a NUL-terminated string that
            // outlives the call, and both arrays end in a null pointer.
            unsafe { libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            Err(io::Error::last_os_error())
        };
        out.push(("execve /bin/sh".into(), ended(execve())));
    }
    out
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
