//! Windows: workers are child processes whose channels are anonymous
//! pipes. No handle of ours is ever inheritable. A worker is created
//! suspended and inherits exactly three handles
//! (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`): its stdin (a bootstrap pipe),
//! stdout and stderr. Whatever else the host application left inheritable
//! stays out of it. Its host duplicates the channel handles, and its
//! payload region's section, into it (`DuplicateHandle`) and tells it
//! their values on that stdin. A spawn elsewhere in the host, which on
//! Windows inherits every inheritable handle of the process, so takes no
//! channel end with it, and a dead worker's pipes break at once.
//!
//! Every worker is put in one Job Object that ends its processes when it
//! closes (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`), while it is still
//! suspended. The host holds the job's only handle until it exits, so its
//! workers die with it however it ends, killed included. A worker also
//! exits when its control pipe breaks.

use std::io;
use std::io::{PipeReader, PipeWriter, Read as _, Write as _};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::os::windows::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_PRIVILEGE_NOT_HELD, FILETIME, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE};
use windows_sys::Win32::System::Diagnostics::Debug::{
    SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SetErrorMode,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_ACTIVE_PROCESS,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject,
};
use windows_sys::Win32::System::Pipes::{CreatePipe, PeekNamedPipe};
use windows_sys::Win32::System::ProcessStatus::{
    K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS, PROCESS_MEMORY_COUNTERS_EX2,
};
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW,
    CreateProcessW, DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetCurrentProcess,
    GetCurrentThread, GetExitCodeProcess, GetThreadTimes, INFINITE,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST, OpenProcess,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};

use super::{Channels, HostRegion, WORKER_ENV};

/// A worker's token: the restricted one its host starts it with, and the
/// privileges it removes itself.
#[path = "windows_token.rs"]
mod token;
use token::{remove_privileges, restricted_token};

/// The exit code of a worker the host killed (`TerminateProcess`): 128 +
/// 9, what a shell reports for a process killed by `SIGKILL`.
pub(crate) const KILL_CODE: u32 = 137;

/// The host's end of a worker's control channel.
pub(crate) type ControlHost = PipeWriter;
/// The worker's end of its control channel.
pub(crate) type ControlWorker = PipeReader;
/// A channel end on its way to a worker.
pub(crate) type OwnedEnd = OwnedHandle;

/// A new control channel: the host's end, and the end for the worker.
pub(crate) fn control_channel() -> io::Result<(ControlHost, OwnedEnd)> {
    let (worker, host) = std::io::pipe()?;
    Ok((host, worker.into()))
}

/// An anonymous pipe with a buffer of `size` bytes; neither end is
/// inheritable. (`std::io::pipe` gives a small buffer, and every hand-off
/// of a large frame costs a wake-up on each side; under Wine, a trip
/// through its server.)
pub(crate) fn pipe(size: usize) -> io::Result<(PipeReader, PipeWriter)> {
    let (mut reader, mut writer): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    // SAFETY: both out-pointers are to live locals; no security attributes,
    // so neither handle is inheritable.
    if unsafe { CreatePipe(&mut reader, &mut writer, std::ptr::null(), size) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both handles were just created and are owned by nothing else.
    unsafe {
        Ok((
            PipeReader::from(OwnedHandle::from_raw_handle(reader)),
            PipeWriter::from(OwnedHandle::from_raw_handle(writer)),
        ))
    }
}

/// Nothing to do: no copy of the host's end exists outside the host, so
/// dropping it ends the channel.
pub(crate) fn close_control(_control: &ControlHost) {}

/// Where compiled artifacts go when no cache directory is configured:
/// `%LOCALAPPDATA%\wasmpool`, else a per-user directory under the system
/// temp directory.
pub(crate) fn default_cache_home() -> PathBuf {
    if let Some(d) = std::env::var_os("LOCALAPPDATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("wasmpool");
    }
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
    std::env::temp_dir().join(format!("wasmpool-{user}"))
}

/// Creates `dir` (and its parents) if needed. Windows gives a user's
/// `%LOCALAPPDATA%` and `%TEMP%` an access list of that user alone, and
/// the directory inherits it; unlike on Unix, a custom cache directory's
/// access list is not checked.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// What starts a worker's stdin: the bootstrap's magic, then the values
/// of its request, control and reply handles, and its region's (0: none).
const BOOT_MAGIC: &[u8; 8] = b"wasmpool";
const BOOT_LEN: usize = 8 + 4 * 8;

/// Runs before `main` in every program linked with wasmpool (the C
/// runtime's initializers, `.CRT$XCU`): when the process was started as a
/// worker, it serves calls and exits without ever reaching `main`.
#[used]
#[unsafe(link_section = ".CRT$XCU")]
static WORKER_ENTRY: extern "C" fn() = pre_main_entry;

extern "C" fn pre_main_entry() {
    crate::worker_entry();
}

/// The channels a worker was given by its host, as the bootstrap on its
/// stdin names them.
pub(crate) fn inherited_channels() -> io::Result<Channels<PipeReader, PipeReader, PipeWriter>> {
    // SAFETY: SetErrorMode only changes this process's error mode: a
    // crashed worker ends without a dialog box.
    unsafe { SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX) };
    let not_ours = |why: String| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{WORKER_ENV} is set but {why}: not started by a wasmpool host"),
        )
    };
    let mut boot = [0u8; BOOT_LEN];
    std::io::stdin()
        .lock()
        .read_exact(&mut boot)
        .map_err(|e| not_ours(format!("stdin has no bootstrap ({e})")))?;
    if &boot[..8] != BOOT_MAGIC {
        return Err(not_ours("stdin does not start with its bootstrap".into()));
    }
    let handle = |i: usize| {
        let at = 8 + 8 * i;
        let value = u64::from_le_bytes(boot[at..at + 8].try_into().expect("8 bytes"));
        value as usize as RawHandle
    };
    // The fourth value is the region's section, or 0 for none; the
    // region is taken once the host announces its size.
    REGION.store(handle(3) as usize, Ordering::Relaxed);
    // SAFETY: the host duplicated these handles into this process for it
    // alone, and sent their values once, just read; nothing else here
    // owns them.
    unsafe {
        Ok(Channels {
            requests: PipeReader::from(OwnedHandle::from_raw_handle(handle(0))),
            control: PipeReader::from(OwnedHandle::from_raw_handle(handle(1))),
            replies: PipeWriter::from(OwnedHandle::from_raw_handle(handle(2))),
        })
    }
}

/// The section of this worker's payload region, as its bootstrap named
/// it (0: none), until [`inherited_region`] takes it.
static REGION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The section of the payload region the host gave this worker, once:
/// `None` if it gave none, or it was taken already.
pub(crate) fn inherited_region() -> Option<OwnedHandle> {
    let raw = REGION.swap(0, Ordering::Relaxed);
    // SAFETY: the host duplicated the section into this process for it
    // alone; the swap above hands its value out once.
    (raw != 0).then(|| unsafe { OwnedHandle::from_raw_handle(raw as RawHandle) })
}

/// Starts `program` as a worker: its stdin the bootstrap pipe, stdout and
/// stderr the host's, its channel handles (and its region's section)
/// duplicated into it, in the host's Job Object before it runs a single
/// instruction; with a [`restricted_token`] when it is to be `confined`.
pub(crate) fn spawn_worker(
    program: &Path,
    ends: Channels<OwnedHandle, OwnedHandle, OwnedHandle>,
    region: Option<&HostRegion>,
    confined: bool,
) -> io::Result<WorkerProcess> {
    let (boot_reader, mut boot_writer) = std::io::pipe()?;
    // A worker that will confine itself starts with a restricted token.
    let token = confined
        .then(|| {
            restricted_token()
                .inspect_err(|e| tracing::warn!(error = %e, "no restricted token for a worker"))
                .ok()
        })
        .flatten();
    let (mut process, thread) = match create_suspended(program, &boot_reader, token.as_ref()) {
        Err(e) if token.is_some() && e.raw_os_error() == Some(ERROR_PRIVILEGE_NOT_HELD as i32) => {
            tracing::warn!(
                error = %e,
                "a confined worker starts with its host's token, less the privileges it removes"
            );
            create_suspended(program, &boot_reader, None)?
        }
        r => r?,
    };
    drop(boot_reader);
    let sent = (|| {
        join_job(process.handle.as_raw_handle());
        let target = process.handle.as_raw_handle();
        let mut boot = Vec::with_capacity(BOOT_LEN);
        boot.extend_from_slice(BOOT_MAGIC);
        for h in [&ends.requests, &ends.control, &ends.replies] {
            boot.extend_from_slice(&duplicate_into(target, h.as_raw_handle())?.to_le_bytes());
        }
        let region = match region {
            Some(r) => duplicate_into(target, r.section())?,
            None => 0u64,
        };
        boot.extend_from_slice(&region.to_le_bytes());
        boot_writer.write_all(&boot)?;
        // SAFETY: `thread` is the new process's first thread, created
        // suspended and held by us.
        if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })();
    if let Err(e) = sent {
        process.kill();
        let _ = process.wait();
        return Err(e);
    }
    Ok(process)
}

/// A worker process, as [`spawn_worker`] started it.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    handle: OwnedHandle,
    pid: u32,
}

impl WorkerProcess {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for it to exit; its exit status.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        let h = self.handle.as_raw_handle();
        let mut code = 0u32;
        // SAFETY: `h` is our live handle to the process; the code is
        // written through a pointer to a live local.
        unsafe {
            if WaitForSingleObject(h, INFINITE) != WAIT_OBJECT_0
                || GetExitCodeProcess(h, &mut code) == 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ExitStatus::from_raw(code))
    }

    /// Ends it with [`KILL_CODE`]; a process that already exited keeps
    /// its own code.
    fn kill(&self) {
        // SAFETY: `handle` is our live handle to the process.
        unsafe { TerminateProcess(self.handle.as_raw_handle(), KILL_CODE) };
    }
}

/// Creates the process of `program`, suspended, with `stdin` as its
/// standard input and the host's standard output and error. It inherits
/// those three handles and no other (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`):
/// what the host application left inheritable stays out of workers. The
/// three are inheritable copies that live only for the call, as std's
/// `Command` makes its own.
fn create_suspended(
    program: &Path,
    stdin: &PipeReader,
    token: Option<&OwnedHandle>,
) -> io::Result<(WorkerProcess, OwnedHandle)> {
    // SAFETY: GetStdHandle takes a constant and returns a handle we do
    // not own (or none); it is only copied below.
    let (out, err) = unsafe {
        (
            GetStdHandle(STD_OUTPUT_HANDLE),
            GetStdHandle(STD_ERROR_HANDLE),
        )
    };
    let stdin = inheritable_copy(stdin.as_raw_handle())?;
    // A host with no standard output (a GUI program) gives its workers
    // none: their prints go nowhere, as std's do with no handle.
    let out = inheritable_copy(out).ok();
    let err = inheritable_copy(err).ok();
    let raw = |h: &Option<OwnedHandle>| {
        h.as_ref()
            .map_or(std::ptr::null_mut(), |h| h.as_raw_handle())
    };
    let inherited: Vec<HANDLE> = [Some(&stdin), out.as_ref(), err.as_ref()]
        .into_iter()
        .flatten()
        .map(|h| h.as_raw_handle())
        .collect();

    let list = AttributeList::new()?;
    // SAFETY: the list was initialized for one attribute; `inherited`
    // outlives the list's use (the CreateProcessW call below).
    let ok = unsafe {
        UpdateProcThreadAttribute(
            list.ptr(),
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            inherited.as_ptr().cast(),
            std::mem::size_of_val(inherited.as_slice()),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut si = STARTUPINFOEXW::default();
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = stdin.as_raw_handle();
    si.StartupInfo.hStdOutput = raw(&out);
    si.StartupInfo.hStdError = raw(&err);
    si.lpAttributeList = list.ptr();

    // No application name: the command line's first word is looked up as
    // std's `Command` and `cmd.exe` look a program up (a bare name on the
    // PATH too).
    let mut command_line = wide(&{
        let mut s = std::ffi::OsString::from("\"");
        s.push(program.as_os_str());
        s.push("\"");
        s
    });
    let env = environment_block();
    let flags = EXTENDED_STARTUPINFO_PRESENT
        | CREATE_UNICODE_ENVIRONMENT
        | CREATE_SUSPENDED
        | if has_console() { 0 } else { CREATE_NO_WINDOW };
    let mut pi = PROCESS_INFORMATION::default();
    // SAFETY: every pointer is to a live, NUL-terminated (command line,
    // environment) or initialized (startup info, attribute list) value
    // that outlives the call; `pi` is written by it; the token, when
    // given, is a live primary token.
    let ok = unsafe {
        match token {
            Some(token) => CreateProcessAsUserW(
                token.as_raw_handle(),
                std::ptr::null(),
                command_line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                flags,
                env.as_ptr().cast(),
                std::ptr::null(),
                (&raw const si).cast(),
                &mut pi,
            ),
            None => CreateProcessW(
                std::ptr::null(),
                command_line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                flags,
                env.as_ptr().cast(),
                std::ptr::null(),
                (&raw const si).cast(),
                &mut pi,
            ),
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateProcessW succeeded and gave us these two handles.
    let (handle, thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(pi.hProcess),
            OwnedHandle::from_raw_handle(pi.hThread),
        )
    };
    Ok((
        WorkerProcess {
            handle,
            pid: pi.dwProcessId,
        },
        thread,
    ))
}

/// An inheritable copy of `h`, ours to close.
fn inheritable_copy(h: HANDLE) -> io::Result<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let mut copy: HANDLE = std::ptr::null_mut();
    // SAFETY: `h` is live (ours, or the process's standard handle); the
    // copy is written through a pointer to a live local.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut copy,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the copy was just made, and nothing else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(copy) })
}

/// A process-thread attribute list of one attribute, deleted on drop.
struct AttributeList(Vec<usize>);

impl AttributeList {
    fn new() -> io::Result<AttributeList> {
        let mut size = 0usize;
        // SAFETY: a null list asks for the size only (the call then fails
        // with ERROR_INSUFFICIENT_BUFFER, by design).
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut buf = vec![0usize; size.div_ceil(std::mem::size_of::<usize>()).max(1)];
        // SAFETY: `buf` is at least `size` bytes, and aligned for a pointer.
        if unsafe { InitializeProcThreadAttributeList(buf.as_mut_ptr().cast(), 1, 0, &mut size) }
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(AttributeList(buf))
    }

    fn ptr(&self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.0.as_ptr().cast_mut().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialized by `new`, and is deleted once.
        unsafe { DeleteProcThreadAttributeList(self.ptr()) };
    }
}

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt as _;
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// The host's environment with [`WORKER_ENV`] set, as a Unicode
/// environment block, sorted by name regardless of case, as Windows asks.
fn environment_block() -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt as _;
    let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(WORKER_ENV))
        .chain(std::iter::once((WORKER_ENV.into(), "1".into())))
        .collect();
    vars.sort_by_cached_key(|(k, _)| k.to_ascii_uppercase());
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.push(0);
    block
}

/// Whether this process has a console: a worker started without one gets
/// no window of its own.
fn has_console() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Duplicates `handle` into process `target`; returns its value there.
fn duplicate_into(target: RawHandle, handle: RawHandle) -> io::Result<u64> {
    let mut theirs: HANDLE = std::ptr::null_mut();
    // SAFETY: both handles are live (ours, and the worker's process
    // handle held by its `WorkerProcess`); the result is written through a pointer to a
    // live local. The copy is not inheritable.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle,
            target,
            &mut theirs,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(theirs as usize as u64)
}

/// Puts `process` in the host's Job Object, which ends it when the host
/// exits. A host in a job that forbids nesting carries on without: a
/// worker still exits when its control pipe breaks.
fn join_job(process: RawHandle) {
    static JOB: OnceLock<Option<OwnedHandle>> = OnceLock::new();
    let job = JOB.get_or_init(|| {
        new_job(
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION,
            0,
        )
        .inspect_err(|e| tracing::debug!(error = %e, "no Job Object for workers"))
        .ok()
    });
    if let Some(job) = job {
        // SAFETY: both handles are live for the call.
        if unsafe { AssignProcessToJobObject(job.as_raw_handle(), process) } == 0 {
            tracing::debug!(
                error = %io::Error::last_os_error(),
                "a worker is outside the Job Object; it ends when its control pipe breaks"
            );
        }
    }
}

/// Bytes waiting to be read in pipe `h`, or `None` when the pipe is
/// broken or not a pipe (a read then sees the end or the error).
fn available(h: RawHandle) -> Option<u32> {
    let mut avail = 0u32;
    // SAFETY: PeekNamedPipe with no buffer only writes the count through
    // the pointer, which is to a live local.
    let ok = unsafe {
        PeekNamedPipe(
            h,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut avail,
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(avail)
}

/// Whether a read of `h` would not block.
fn readable(h: RawHandle) -> bool {
    available(h).is_none_or(|n| n > 0)
}

/// Polls `pipe` for input without sleeping for up to `spin`; returns
/// whether input arrived.
pub(crate) fn spin_until_readable(pipe: &impl AsRawHandle, spin: Duration) -> bool {
    super::spin_until(spin, || readable(pipe.as_raw_handle()))
}

/// Waits until `a` or `b` has input, or `timeout` passes (`None`: no
/// limit); returns which have input. Windows cannot wait on an anonymous
/// pipe, so this peeks, sleeping between peeks from 50 µs up to 1 ms.
pub(crate) fn wait_readable(
    a: &impl AsRawHandle,
    b: &impl AsRawHandle,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut nap = Duration::from_micros(50);
    loop {
        let ready = (readable(a.as_raw_handle()), readable(b.as_raw_handle()));
        if ready.0 || ready.1 {
            return Ok(ready);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(ready);
        }
        let nap_now = deadline.map_or(nap, |d| nap.min(d - now));
        std::thread::sleep(nap_now);
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

/// A pipe that wakes a thread waiting in [`wait_readable`]. It holds at
/// most one byte: anonymous pipes on Windows cannot be written without
/// blocking, so a full one must never happen.
pub(crate) struct WakePipe {
    reader: PipeReader,
    writer: PipeWriter,
    rung: AtomicBool,
}

impl WakePipe {
    pub(crate) fn new() -> io::Result<WakePipe> {
        let (reader, writer) = std::io::pipe()?;
        Ok(WakePipe {
            reader,
            writer,
            rung: AtomicBool::new(false),
        })
    }

    /// Makes the pipe readable. Never blocks: it writes one byte at most
    /// until the next [`drain`](WakePipe::drain).
    pub(crate) fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Empties the pipe.
    pub(crate) fn drain(&self) {
        if self.rung.swap(false, Ordering::AcqRel) {
            let mut byte = [0u8; 1];
            let _ = (&self.reader).read(&mut byte);
        }
    }

    /// What [`wait_readable`] waits on.
    pub(crate) fn readable(&self) -> &PipeReader {
        &self.reader
    }
}

/// Opens process `pid` with `access`, or `None` if it is gone.
fn open_process(pid: u32, access: u32) -> Option<OwnedHandle> {
    // SAFETY: OpenProcess takes plain values; the handle it returns, if
    // any, is owned by the result.
    let h = unsafe { OpenProcess(access, 0, pid) };
    // SAFETY: a handle just opened, owned by nothing else.
    (!h.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(h) })
}

/// Terminates `pid` with [`KILL_CODE`]. The caller guarantees the process
/// has not been reaped: its `WorkerProcess` still holds a handle, so the pid
/// cannot have been reused.
pub(crate) fn kill(pid: u32) {
    if let Some(h) = open_process(pid, PROCESS_TERMINATE) {
        // SAFETY: a live process handle with terminate access.
        unsafe { TerminateProcess(h.as_raw_handle(), KILL_CODE) };
    }
}

/// Whether process `pid` has exited (or is gone), without waiting.
pub(crate) fn has_exited(pid: u32) -> bool {
    match open_process(pid, PROCESS_SYNCHRONIZE) {
        Some(h) => {
            // SAFETY: a live process handle with synchronize access.
            let r = unsafe { WaitForSingleObject(h.as_raw_handle(), 0) };
            r != WAIT_TIMEOUT
        }
        None => true,
    }
}

/// Blocks until process `pid` has exited. (Waiting reaps nothing on
/// Windows: the exit code stays until the last handle closes.)
pub(crate) fn wait_exit_without_reaping(pid: u32) {
    if let Some(h) = open_process(pid, PROCESS_SYNCHRONIZE) {
        // SAFETY: a live process handle with synchronize access.
        let r = unsafe { WaitForSingleObject(h.as_raw_handle(), INFINITE) };
        debug_assert_eq!(r, WAIT_OBJECT_0);
    }
}

/// How many bytes written to a pipe have not been read yet: 0, as Windows
/// cannot tell from the write end (the caller then takes a request as
/// taken, the cautious answer).
pub(crate) fn unread_bytes(_pipe: &impl AsRawHandle) -> usize {
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
/// of it, and the part in kernel mode. Windows counts it in 100 ns units
/// but adds to it only at the clock tick (15.6 ms by default; Wine, 10 ms),
/// so a call's share is exact only to a tick.
pub(crate) fn thread_cpu_ns() -> Option<(u64, u64)> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the pseudo-handle of the calling thread, and four pointers
    // to live FILETIMEs.
    let ok = unsafe {
        GetThreadTimes(
            GetCurrentThread(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return None;
    }
    let ns = |t: FILETIME| ((u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)) * 100;
    Some((ns(kernel) + ns(user), ns(kernel)))
}

/// A process's own memory footprint: its private working set (what it
/// holds resident that is its own: not the system's DLLs, nor the compiled
/// code), through a handle. Windows before 10 (1809), and Wine, do not
/// count that: there it is the whole working set.
pub(crate) struct Footprint(OwnedHandle);

impl Footprint {
    /// This process's.
    pub(crate) fn open() -> Option<Footprint> {
        open_process(std::process::id(), PROCESS_QUERY_LIMITED_INFORMATION).map(Footprint)
    }

    /// Process `pid`'s: `None` once it is gone.
    pub(crate) fn of(pid: u32) -> Option<Footprint> {
        open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).map(Footprint)
    }

    /// The memory the process holds resident for itself alone.
    pub(crate) fn private_bytes(&self) -> Option<u64> {
        // SAFETY: an all-zero PROCESS_MEMORY_COUNTERS_EX2 is a valid value.
        let mut counters: PROCESS_MEMORY_COUNTERS_EX2 = unsafe { std::mem::zeroed() };
        counters.cb = std::mem::size_of_val(&counters) as u32;
        // SAFETY: the pointer is to a live value of the size passed; the
        // _EX2 form starts with the plain one, as the API allows.
        let ok = unsafe {
            K32GetProcessMemoryInfo(
                self.0.as_raw_handle(),
                (&raw mut counters).cast::<PROCESS_MEMORY_COUNTERS>(),
                counters.cb,
            )
        };
        if ok == 0 {
            return None;
        }
        let private = counters.PrivateWorkingSetSize;
        Some(if private > 0 {
            private
        } else {
            counters.WorkingSetSize
        } as u64)
    }
}

/// The second wall on Windows, the worker's part (its host started it
/// with a [`restricted_token`]):
///
/// - the worker puts itself in a Job Object of its own, nested in the
///   host's, that allows one process in it (itself), so it can start no
///   other, and a crash in it ends it without a dialog box;
/// - it removes every privilege from its token but the one to traverse
///   directories (`SeChangeNotifyPrivilege`), which the restricted token
///   has done already, unless the host could not start it with one. A
///   removed privilege cannot be enabled again.
///
/// No filesystem rules: the filesystem is guarded by wasmtime's sandbox
/// alone. Restricting SIDs, a low integrity level or an AppContainer
/// would each deny the worker the files of its read-write preopens,
/// which are the user's, unless their ACLs were changed. Wine 8.0 accepts
/// the job but does not enforce its process limit.
pub(super) fn confine_worker(_walls: super::Walls<'_>) -> io::Result<super::Landlock> {
    let job = new_job(
        JOB_OBJECT_LIMIT_ACTIVE_PROCESS | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION,
        1,
    )?;
    // SAFETY: both handles are live for the call (the second is this
    // process's pseudo-handle).
    if unsafe { AssignProcessToJobObject(job.as_raw_handle(), GetCurrentProcess()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // The job lives on while this process is in it; its limits with it.
    drop(job);
    remove_privileges()?;
    Ok(super::Landlock::None)
}

/// A new Job Object with these limits.
fn new_job(flags: u32, active_processes: u32) -> io::Result<OwnedHandle> {
    // SAFETY: a new, unnamed job with default security; checked below.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `job` was just created and is owned by nothing else.
    let job = unsafe { OwnedHandle::from_raw_handle(job) };
    // SAFETY: an all-zero JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid
    // value (plain integers).
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags = flags;
    limits.BasicLimitInformation.ActiveProcessLimit = active_processes;
    // SAFETY: the pointer and size describe a live value of the type the
    // information class names.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const limits).cast(),
            std::mem::size_of_val(&limits) as u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(job)
}

/// Test only: tries, natively, what a guest that broke out of wasmtime
/// would try (read `outside`, write in `readonly`, open a socket, start a
/// process), and says how each attempt ended (`"ok"` or the error).
#[cfg(feature = "test-hooks")]
pub(crate) fn attempt_escape(
    outside: &Path,
    readonly: Option<&Path>,
    _exec: bool,
) -> Vec<(String, String)> {
    fn ended(r: io::Result<()>) -> String {
        match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    }
    let mut out = Vec::new();
    out.push((
        format!("open {}", outside.display()),
        ended(std::fs::File::open(outside).map(drop)),
    ));
    if let Some(dir) = readonly {
        let file = dir.join("escaped");
        let created = std::fs::File::create(&file).map(drop);
        if created.is_ok() {
            let _ = std::fs::remove_file(&file);
        }
        out.push((format!("create {}", file.display()), ended(created)));
    }
    out.push((
        "socket".into(),
        ended(std::net::UdpSocket::bind("127.0.0.1:0").map(drop)),
    ));
    out.push((
        "spawn cmd.exe".into(),
        ended(
            std::process::Command::new("cmd.exe")
                .args(["/c", "exit 0"])
                .status()
                .map(drop),
        ),
    ));
    out
}
