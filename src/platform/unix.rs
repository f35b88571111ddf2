//! Channels, spawning, polling and process state on every Unix system:
//! the worker's channels are its descriptors 3, 4 and 5 (and 6, its
//! payload region), placed there between `fork` and `exec`.

use std::io;
use std::io::{PipeReader, PipeWriter};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{Channels, HostRegion, WORKER_ENV, os, region};

/// The host's end of a worker's control channel: a socket, so that
/// [`close_control`] ends it even if a copy leaked into another child.
pub(crate) type ControlHost = UnixStream;
/// The worker's end of its control channel.
pub(crate) type ControlWorker = UnixStream;
/// A channel end on its way to a worker.
pub(crate) type OwnedEnd = OwnedFd;

/// A new control channel: the host's end, and the end for the worker.
pub(crate) fn control_channel() -> io::Result<(ControlHost, OwnedEnd)> {
    let (host, worker) = UnixStream::pair()?;
    Ok((host, worker.into()))
}

/// Ends a control channel: its worker reads the end and exits.
pub(crate) fn close_control(control: &ControlHost) {
    let _ = control.shutdown(std::net::Shutdown::Both);
}

/// A pipe, with a buffer of `size` bytes where the system lets one ask.
pub(crate) fn pipe(size: usize) -> io::Result<(PipeReader, PipeWriter)> {
    let (reader, writer) = std::io::pipe()?;
    os::grow_pipe(&writer, size);
    Ok((reader, writer))
}

/// Where compiled artifacts go when no cache directory is configured:
/// `$XDG_CACHE_HOME/wasmpool`, else `$HOME/.cache/wasmpool` (on macOS,
/// `$HOME/Library/Caches/wasmpool`), else a per-user directory under the
/// system temp directory.
pub(crate) fn default_cache_home() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("wasmpool");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let caches = if cfg!(target_os = "macos") {
            ["Library", "Caches"].iter().collect()
        } else {
            PathBuf::from(".cache")
        };
        return PathBuf::from(h).join(caches).join("wasmpool");
    }
    std::env::temp_dir().join(format!("wasmpool-{}", uid()))
}

/// The descriptor a worker reads requests from (a pipe).
const REQUEST_FD: RawFd = 3;
/// The descriptor a worker reads control frames from (a socket).
const CONTROL_FD: RawFd = 4;
/// The descriptor a worker writes replies to (a pipe).
const REPLY_FD: RawFd = 5;

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

/// A worker process, as [`spawn_worker`] started it.
pub(crate) type WorkerProcess = Child;

/// Starts `program` as a worker with the given channel ends as its
/// descriptors 3, 4 and 5 (and its payload region, if any, as 6), stdin
/// closed, stdout and stderr inherited. On Linux the child gets SIGKILL
/// when the calling thread exits, so the calling thread must live as long
/// as the worker.
pub(crate) fn spawn_worker(
    program: &Path,
    ends: Channels<OwnedFd, OwnedFd, OwnedFd>,
    region: Option<&HostRegion>,
    _confined: bool,
) -> io::Result<WorkerProcess> {
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
    // only async-signal-safe functions (fcntl, dup2, and those of
    // `os::before_exec`); it allocates nothing and touches no locks
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
            os::before_exec(parent)
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
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    super::spin_until(spin, || {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        // Ready, or hung up (a read then sees the end): readable. An
        // interrupted poll (-1) is not.
        n > 0
    })
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
fn uid() -> u32 {
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
