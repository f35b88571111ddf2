//! The second wall on Windows: a confined worker is in a Job Object of its
//! own that allows it no other process, and its token holds no privilege
//! but traversal. Wine 8.0 accepts the job but does not enforce its limit,
//! so `.ci/cross` skips the test that needs it; its control, and what a
//! confined worker still does, run under Wine too. And no worker inherits
//! a handle its host application left inheritable.

use std::path::{Path, PathBuf};

use wasmpool::Pool;

use crate::common::{job, temp_dir};

/// Asks a worker of `pool` to try to escape; returns each attempt and how
/// it ended.
async fn attempt(pool: &Pool, outside: &Path) -> Vec<(String, String)> {
    let fib = job(wasmpool_guests::FIB);
    pool.call::<Vec<(String, String)>>(&fib, "fib", (1u64,))
        .attempt_escape(outside, None::<PathBuf>, false)
        .await
        .unwrap()
}

/// How the attempt to start a process ended.
fn spawned(tried: &[(String, String)]) -> &str {
    tried
        .iter()
        .find(|(what, _)| what.starts_with("spawn"))
        .map(|(_, how)| how.as_str())
        .expect("a spawn attempt")
}

fn outside(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.txt");
    std::fs::write(&file, "secret").unwrap();
    file
}

// Skipped under Wine (`.ci/cross`): Wine 8.0 does not enforce a job's
// process limit.
#[tokio::test]
async fn a_confined_worker_cannot_start_a_process() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let tried = attempt(&pool, &outside("win-confined")).await;
    assert_ne!(spawned(&tried), "ok", "{tried:?}");
    // The worker is as good as before.
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (20u64,))
        .await
        .unwrap();
    assert_eq!(n, 6765);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_confined_worker_serves_and_an_unconfined_one_can_start_a_process() {
    // Confined: the job is in place and the worker serves calls.
    let confined = Pool::builder().workers(1).build().unwrap();
    let n: u64 = confined
        .run(&job(wasmpool_guests::FIB), "fib", (20u64,))
        .await
        .unwrap();
    assert_eq!(n, 6765);
    confined.shutdown().await;
    // The control: without the wall, the same attempt works, so it is the
    // wall that stops it where it is enforced.
    let open = Pool::builder().workers(1).confine(false).build().unwrap();
    let tried = attempt(&open, &outside("win-unconfined")).await;
    assert_eq!(spawned(&tried), "ok", "{tried:?}");
    open.shutdown().await;
}

/// The token of process `pid`, queried for `class`: the buffer the call
/// filled (aligned for any of its structures), which starts with a count
/// and holds that many entries from `offset`, returned as a slice of `T`.
///
/// # Safety
///
/// `T` and `offset` must be the entry type and offset of the structure
/// that `class` returns.
unsafe fn token_entries<T: Copy>(pid: u32, class: i32, offset: usize) -> (Vec<u64>, Vec<T>) {
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::Security::{GetTokenInformation, TOKEN_QUERY};
    use windows_sys::Win32::System::Threading::{
        OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: plain values in; every handle opened here is closed here;
    // the buffer is sized by the first call and aligned for the type, and
    // its entries lie within what the second call wrote (checked).
    unsafe {
        let process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        assert!(!process.is_null(), "no process {pid}");
        let mut token: HANDLE = std::ptr::null_mut();
        assert_ne!(OpenProcessToken(process, TOKEN_QUERY, &mut token), 0);
        let mut len = 0u32;
        GetTokenInformation(token, class, std::ptr::null_mut(), 0, &mut len);
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        let ok = GetTokenInformation(token, class, buf.as_mut_ptr().cast(), len, &mut len);
        CloseHandle(token);
        CloseHandle(process);
        assert_ne!(ok, 0);
        let count = buf.as_ptr().cast::<u32>().read() as usize;
        assert!(offset + count * std::mem::size_of::<T>() <= len as usize);
        let first = buf.as_ptr().cast::<u8>().add(offset).cast::<T>();
        let entries = std::slice::from_raw_parts(first, count).to_vec();
        (buf, entries)
    }
}

/// The privileges in the token of process `pid`, as LUID low parts.
fn privileges(pid: u32) -> Vec<u32> {
    use windows_sys::Win32::Security::{LUID_AND_ATTRIBUTES, TOKEN_PRIVILEGES, TokenPrivileges};
    let offset = std::mem::offset_of!(TOKEN_PRIVILEGES, Privileges);
    // SAFETY: the entry type and offset of TOKEN_PRIVILEGES.
    let (_, held) = unsafe { token_entries::<LUID_AND_ATTRIBUTES>(pid, TokenPrivileges, offset) };
    held.iter().map(|p| p.Luid.LowPart).collect()
}

/// The attributes of the Administrators group in the token of process
/// `pid`, if it is in it.
fn administrators(pid: u32) -> Option<u32> {
    use windows_sys::Win32::Security::{
        CreateWellKnownSid, GetLengthSid, SECURITY_MAX_SID_SIZE, SID_AND_ATTRIBUTES, TOKEN_GROUPS,
        TokenGroups, WinBuiltinAdministratorsSid,
    };
    let mut admins = [0u64; (SECURITY_MAX_SID_SIZE as usize).div_ceil(8)];
    let mut len = SECURITY_MAX_SID_SIZE;
    // SAFETY: `admins` has room for the largest SID, as `len` says.
    let made = unsafe {
        CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            admins.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_ne!(made, 0);
    let offset = std::mem::offset_of!(TOKEN_GROUPS, Groups);
    // SAFETY: the entry type and offset of TOKEN_GROUPS. The groups' SIDs
    // point into `_buf`, which lives to the end of the function.
    let (_buf, groups) = unsafe { token_entries::<SID_AND_ATTRIBUTES>(pid, TokenGroups, offset) };
    // SAFETY: each SID is valid (in `admins` or `_buf`), as long as
    // GetLengthSid says.
    let bytes = |sid: *mut core::ffi::c_void| unsafe {
        std::slice::from_raw_parts(sid.cast::<u8>(), GetLengthSid(sid) as usize).to_vec()
    };
    let admins = bytes(admins.as_mut_ptr().cast());
    groups
        .iter()
        .find(|g| bytes(g.Sid) == admins)
        .map(|g| g.Attributes)
}

/// `SE_GROUP_USE_FOR_DENY_ONLY`: a group that only denies access.
const DENY_ONLY: u32 = 0x10;

/// `SE_CHANGE_NOTIFY_PRIVILEGE`, the one privilege a confined worker keeps.
const CHANGE_NOTIFY: u32 = 23;

#[tokio::test]
async fn a_confined_worker_holds_no_privilege_but_traversal_nor_administrators() {
    let fib = job(wasmpool_guests::FIB);
    let confined = Pool::builder().workers(1).build().unwrap();
    let n: u64 = confined.run(&fib, "fib", (20u64,)).await.unwrap();
    assert_eq!(n, 6765);
    let pid = confined.worker_pids()[0];
    let held = privileges(pid);
    assert!(held.iter().all(|&p| p == CHANGE_NOTIFY), "{held:?}");
    // It started with a restricted token: where its host is an
    // administrator (as Wine's user is), it is not.
    if let Some(host) = administrators(std::process::id()) {
        let worker = administrators(pid).expect("the group, for denying only");
        eprintln!("Administrators: host {host:#x}, confined worker {worker:#x}");
        assert_eq!(
            worker & DENY_ONLY,
            DENY_ONLY,
            "host {host:#x}, worker {worker:#x}"
        );
    }
    confined.shutdown().await;
    // The control: an unconfined worker holds what its host holds, which
    // is more (a standard user's token has five privileges, Wine's more).
    let open = Pool::builder().workers(1).confine(false).build().unwrap();
    let n: u64 = open.run(&fib, "fib", (20u64,)).await.unwrap();
    assert_eq!(n, 6765);
    let held = privileges(open.worker_pids()[0]);
    assert!(held.len() > 1, "{held:?}");
    assert_eq!(held, privileges(std::process::id()));
    open.shutdown().await;
}

#[tokio::test]
async fn a_worker_inherits_no_handle_the_host_left_inheritable() {
    use std::os::windows::io::AsRawHandle as _;
    use windows_sys::Win32::Foundation::{
        ERROR_BROKEN_PIPE, GetLastError, HANDLE_FLAG_INHERIT, SetHandleInformation,
    };
    use windows_sys::Win32::System::Pipes::PeekNamedPipe;
    // A pipe whose write end the host application made inheritable, as a
    // program that starts its own children with std's `Command` may.
    let (reader, writer) = std::io::pipe().unwrap();
    // SAFETY: a live handle of ours; only its inherit flag changes.
    let ok = unsafe {
        SetHandleInformation(
            writer.as_raw_handle(),
            HANDLE_FLAG_INHERIT,
            HANDLE_FLAG_INHERIT,
        )
    };
    assert_ne!(ok, 0);
    // Both kinds of worker start while it is inheritable, and live on.
    let fib = job(wasmpool_guests::FIB);
    let mut pools = Vec::new();
    for confine in [true, false] {
        let pool = Pool::builder().workers(1).confine(confine).build().unwrap();
        let n: u64 = pool.run(&fib, "fib", (20u64,)).await.unwrap();
        assert_eq!(n, 6765);
        pools.push(pool);
    }
    // Once the host closes its write end, the pipe breaks: no worker holds
    // a copy. (A process another test starts with std's `Command` may
    // hold one for as long as it runs: hence the wait.)
    drop(writer);
    crate::common::eventually("the pipe to break", || {
        let mut avail = 0u32;
        // SAFETY: a live pipe handle; only the count is written.
        let ok = unsafe {
            PeekNamedPipe(
                reader.as_raw_handle(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut avail,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: reads this thread's last error.
        ok == 0 && unsafe { GetLastError() } == ERROR_BROKEN_PIPE
    })
    .await;
    for pool in pools {
        assert!(crate::common::alive(pool.worker_pids()[0]));
        pool.shutdown().await;
    }
}
