//! The second wall around a worker process, on Linux: what the process may
//! do even if a bug in wasmtime, Cranelift or wasmpool's own worker code
//! hands a guest native execution.
//!
//! In this order, before the worker loads any guest:
//!
//! 1. `PR_SET_NO_NEW_PRIVS`: no `execve` can gain privileges.
//! 2. rlimits: no core dumps ([`RLIMIT_CORE`](libc::RLIMIT_CORE) 0), at
//!    most [`MAX_OPEN_FILES`] descriptors.
//! 3. A landlock ruleset: the compile cache read-only, each directory its
//!    calls may preopen with exactly its [`DirAccess`], nothing else of the
//!    filesystem; no TCP; no signals to, or abstract sockets of, processes
//!    outside the worker. On a kernel without landlock the worker goes on
//!    without it and says so in a `tracing` warning.
//! 4. A seccomp filter: an allowlist of the system calls a worker makes.
//!    Threads may be created, processes may not (`fork`, `clone` without
//!    `CLONE_THREAD`, `execve`); no sockets, no `ptrace`, and `ioctl` and
//!    `prctl` only for the few requests a worker uses. Anything else fails
//!    with `EPERM` (`clone3` with `ENOSYS`, so that the C library falls back
//!    to `clone`, whose flags the filter can see).
//!
//! No address-space limit: the pooling allocator reserves its slots (many
//! GiB of address space, none of it memory) when the engine starts, and
//! every instance's memory is bounded by the call's `max_memory`.

use std::collections::BTreeMap;
use std::io;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::{Landlock, Walls};
use crate::options::DirAccess;

/// `_IOWR('f', 16, struct pm_scan_arg)` (96 bytes), from the kernel's
/// `linux/fs.h`; the `libc` crate lacks it.
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;

/// The most descriptors a worker process may hold open.
pub(crate) const MAX_OPEN_FILES: u64 = 4096;

/// The landlock ABI whose rights wasmpool asks for (Linux 6.15's).
/// Newer kernels enforce exactly these; older ones enforce what they can.
const LANDLOCK_ABI: ABI = ABI::V7;

/// Confines the calling process as the module docs say. Call it on the
/// only thread of the process: threads created later inherit every wall,
/// threads that already exist would not.
pub(crate) fn confine(walls: Walls<'_>) -> io::Result<Landlock> {
    super::os::no_new_privs()?;
    super::os::no_core_dumps()?;
    limit_open_files(MAX_OPEN_FILES)?;
    let landlock = landlock(walls)?;
    seccomp()?;
    Ok(landlock)
}

fn limit_open_files(max: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a live rlimit, valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = max.min(limit.rlim_max);
    let lowered = libc::rlimit {
        rlim_cur: max.min(limit.rlim_cur.max(max)),
        rlim_max: max,
    };
    // SAFETY: the pointer is to a live, initialised rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_access() -> BitFlags<AccessFs> {
    read_access()
        | AccessFs::WriteFile
        | AccessFs::Truncate
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::MakeSym
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::Refer
}

fn landlock(walls: Walls<'_>) -> io::Result<Landlock> {
    let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?;
    for dir in walls.read {
        let fd = PathFd::new(dir)
            .map_err(|e| io::Error::other(format!("landlock: opening {}: {e}", dir.display())))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, read_access()))
            .map_err(err)?;
    }
    for (dir, access) in walls.dirs {
        // A directory that is gone is not granted: the call that preopens
        // it fails with the reason, as it would unconfined.
        let Ok(fd) = PathFd::new(dir) else {
            tracing::debug!(dir = %dir.display(), "not granting a directory that cannot be opened");
            continue;
        };
        let rights = match access {
            DirAccess::ReadOnly => read_access(),
            DirAccess::ReadWrite => write_access(),
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(err)?;
    }
    let status = ruleset.restrict_self().map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Landlock::Full,
        RulesetStatus::PartiallyEnforced => Landlock::Partial,
        RulesetStatus::NotEnforced => Landlock::None,
    })
}

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::riscv64;

/// Installs the allowlist, then a second filter that answers `clone3` with
/// `ENOSYS` (of two filters that both fail a call, the later one's error
/// number wins).
fn seccomp() -> io::Result<()> {
    fn err(e: impl Into<seccompiler::Error>) -> io::Error {
        io::Error::other(format!("seccomp: {}", e.into()))
    }
    let allow: BpfProgram = SeccompFilter::new(
        allowlist().map_err(err)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        ARCH,
    )
    .map_err(err)?
    .try_into()
    .map_err(err)?;
    let no_clone3: BpfProgram = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )
    .map_err(err)?
    .try_into()
    .map_err(err)?;
    seccompiler::apply_filter(&allow).map_err(err)?;
    seccompiler::apply_filter(&no_clone3).map_err(err)?;
    Ok(())
}

/// A rule that holds when argument `arg` (a 64-bit value) equals `value`.
fn arg_is(arg: u8, value: u64) -> Result<SeccompRule, seccompiler::Error> {
    let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
        .map_err(seccompiler::Error::Backend)?;
    SeccompRule::new(vec![cond]).map_err(seccompiler::Error::Backend)
}

/// A rule that holds when argument `arg` (a 32-bit value) equals `value`.
fn arg_dword_is(arg: u8, value: u32) -> Result<SeccompRule, seccompiler::Error> {
    let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value.into())
        .map_err(seccompiler::Error::Backend)?;
    SeccompRule::new(vec![cond]).map_err(seccompiler::Error::Backend)
}

/// The pidfd that names the calling process (Linux 6.15).
const PIDFD_SELF: i32 = -10000;

/// A rule that holds when argument `arg` has every bit of `mask` set.
fn arg_has(arg: u8, mask: u64) -> Result<SeccompRule, seccompiler::Error> {
    let cond = SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        mask,
    )
    .map_err(seccompiler::Error::Backend)?;
    SeccompRule::new(vec![cond]).map_err(seccompiler::Error::Backend)
}

/// The system calls a worker makes, with conditions on the few whose
/// arguments decide whether they are safe.
fn allowlist() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::Error> {
    let any = [
        // Reading and writing descriptors it holds.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_preadv,
        libc::SYS_pwritev,
        libc::SYS_preadv2,
        libc::SYS_pwritev2,
        libc::SYS_lseek,
        libc::SYS_close,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_shutdown,
        libc::SYS_pipe2,
        libc::SYS_eventfd2,
        libc::SYS_ppoll,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        // The filesystem, within what landlock grants: WASI in preopens,
        // artifacts in the cache.
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_fstatfs,
        libc::SYS_getdents64,
        libc::SYS_mkdirat,
        libc::SYS_unlinkat,
        libc::SYS_renameat2,
        libc::SYS_linkat,
        libc::SYS_symlinkat,
        libc::SYS_readlinkat,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_utimensat,
        libc::SYS_ftruncate,
        libc::SYS_fallocate,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_fadvise64,
        libc::SYS_getcwd,
        // Memory: the pooling allocator, the heap, wasmtime's code.
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mprotect,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_membarrier,
        libc::SYS_memfd_create,
        // Threads, signals (wasmtime's trap handlers), time.
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getppid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        libc::SYS_getrusage,
        libc::SYS_uname,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        any.into_iter().map(|nr| (nr, Vec::new())).collect();
    // The older forms the C library may still use on x86-64.
    #[cfg(target_arch = "x86_64")]
    for nr in [
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_access,
        libc::SYS_readlink,
        libc::SYS_poll,
        libc::SYS_epoll_wait,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_mkdir,
        libc::SYS_unlink,
        libc::SYS_rmdir,
    ] {
        rules.insert(nr, Vec::new());
    }
    // Threads only: a process (fork, vfork, spawn) is a clone without
    // CLONE_THREAD.
    rules.insert(
        libc::SYS_clone,
        vec![arg_has(0, libc::CLONE_THREAD as u64)?],
    );
    // Signals only to itself: wasmtime and the C library raise them.
    let pid = u64::from(std::process::id());
    rules.insert(libc::SYS_tgkill, vec![arg_is(0, pid)?]);
    // Decommitting its own memory in batches (wasmtime's pooling
    // allocator), by `PIDFD_SELF` only.
    rules.insert(
        libc::SYS_process_madvise,
        vec![arg_dword_is(0, PIDFD_SELF as u32)?],
    );
    // Unix socket pairs only, never a socket that reaches anything: tokio
    // makes one for its signal driver.
    rules.insert(libc::SYS_socketpair, vec![arg_is(0, libc::AF_UNIX as u64)?]);
    // Filters can only be added, and only narrow what is allowed: the
    // second of ours is installed under the first.
    rules.insert(libc::SYS_seccomp, Vec::new());
    // Reading limits, never setting them.
    rules.insert(libc::SYS_prlimit64, vec![arg_is(2, 0)?]);
    // Naming threads and memory, and no new privileges (which it has).
    rules.insert(
        libc::SYS_prctl,
        vec![
            arg_is(0, libc::PR_SET_NO_NEW_PRIVS as u64)?,
            arg_is(0, libc::PR_SET_NAME as u64)?,
            arg_is(0, libc::PR_GET_NAME as u64)?,
            arg_is(0, libc::PR_SET_VMA as u64)?,
        ],
    );
    // Descriptor queries only: bytes waiting, blocking mode, close-on-exec,
    // whether it is a terminal, and which of its own pages the process has
    // written (wasmtime's `PAGEMAP_SCAN` on `/proc/self/pagemap`, opened
    // before confinement). Not TIOCSTI, which would type into the user's
    // terminal.
    rules.insert(
        libc::SYS_ioctl,
        [
            libc::FIONREAD,
            libc::FIONBIO,
            libc::FIOCLEX,
            libc::FIONCLEX,
            libc::TCGETS,
            PAGEMAP_SCAN,
        ]
        .into_iter()
        .map(|request| arg_is(1, request))
        .collect::<Result<_, _>>()?,
    );
    Ok(rules)
}
