//! A Windows worker's token, part of its second wall: the restricted
//! token a confined worker is started with, and the privileges it removes
//! from its own token when it confines itself.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{ERROR_NOT_ALL_ASSIGNED, GetLastError, HANDLE};
use windows_sys::Win32::Security::{
    AdjustTokenPrivileges, CreateRestrictedToken, CreateWellKnownSid, DISABLE_MAX_PRIVILEGE,
    GetTokenInformation, LUID_AND_ATTRIBUTES, SE_PRIVILEGE_REMOVED, SECURITY_MAX_SID_SIZE,
    SID_AND_ATTRIBUTES, TOKEN_ADJUST_PRIVILEGES, TOKEN_ASSIGN_PRIMARY, TOKEN_DUPLICATE,
    TOKEN_PRIVILEGES, TOKEN_QUERY, TokenPrivileges, WinBuiltinAdministratorsSid,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// A primary token for a confined worker: this process's own, restricted
/// as Chromium's sandbox restricts its targets' (`CreateRestrictedToken`)
/// within what a worker still needs, its user's files:
///
/// - every privilege removed but traversal (`DISABLE_MAX_PRIVILEGE`);
/// - the Administrators group for denying only, so that a worker of an
///   elevated host has none of an administrator's access.
///
/// A restricted version of the caller's own token needs no privilege to
/// start a process with.
pub(super) fn restricted_token() -> io::Result<OwnedHandle> {
    let mut own: HANDLE = std::ptr::null_mut();
    // SAFETY: the current process's pseudo-handle; the token handle is
    // written through a pointer to a live local, and owned below.
    let ok = unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_DUPLICATE | TOKEN_ASSIGN_PRIMARY | TOKEN_QUERY,
            &mut own,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle just opened, owned by nothing else.
    let own = unsafe { OwnedHandle::from_raw_handle(own) };
    let mut sid = [0u64; (SECURITY_MAX_SID_SIZE as usize).div_ceil(8)];
    let mut len = SECURITY_MAX_SID_SIZE;
    // SAFETY: `sid` has room for the largest SID, as `len` says.
    let ok = unsafe {
        CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            sid.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let deny_only = SID_AND_ATTRIBUTES {
        Sid: sid.as_mut_ptr().cast(),
        Attributes: 0,
    };
    let mut restricted: HANDLE = std::ptr::null_mut();
    // SAFETY: `own` is live with the access asked; the one SID to disable
    // lives in `sid` for the call; the new token is written through a
    // pointer to a live local, and owned below.
    let ok = unsafe {
        CreateRestrictedToken(
            own.as_raw_handle(),
            DISABLE_MAX_PRIVILEGE,
            1,
            &deny_only,
            0,
            std::ptr::null(),
            0,
            std::ptr::null(),
            &mut restricted,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle just created, owned by nothing else.
    Ok(unsafe { OwnedHandle::from_raw_handle(restricted) })
}

/// `SE_CHANGE_NOTIFY_PRIVILEGE`, the privilege to traverse directories
/// one cannot list, which every token has and path lookups need.
const CHANGE_NOTIFY: i32 = 23;

/// Removes every privilege of this process's token but
/// [`CHANGE_NOTIFY`].
pub(super) fn remove_privileges() -> io::Result<()> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current process's pseudo-handle; the token handle is
    // written through a pointer to a live local, and owned below.
    if unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_QUERY | TOKEN_ADJUST_PRIVILEGES,
            &mut token,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle just opened, owned by nothing else.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    let mut held = token_privileges(token.as_raw_handle())?;
    held.retain(|p| !(p.Luid.HighPart == 0 && p.Luid.LowPart == CHANGE_NOTIFY as u32));
    if held.is_empty() {
        return Ok(());
    }
    for p in &mut held {
        p.Attributes = SE_PRIVILEGE_REMOVED;
    }
    // TOKEN_PRIVILEGES is a count followed by that many entries: laid out
    // here in a buffer of u64s, which is aligned for both.
    let entries = std::mem::size_of_val(held.as_slice());
    let offset = std::mem::offset_of!(TOKEN_PRIVILEGES, Privileges);
    let mut buf = vec![0u64; (offset + entries).div_ceil(8)];
    // SAFETY: `buf` holds `offset + entries` bytes, aligned for the type;
    // the count is written at its start and the entries at their offset,
    // each within the buffer.
    unsafe {
        let tp = buf.as_mut_ptr().cast::<TOKEN_PRIVILEGES>();
        (&raw mut (*tp).PrivilegeCount).write(held.len() as u32);
        std::ptr::copy_nonoverlapping(
            held.as_ptr(),
            buf.as_mut_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<LUID_AND_ATTRIBUTES>(),
            held.len(),
        );
    }
    // SAFETY: the token is live and opened for adjusting; the new state is
    // the buffer just laid out; no previous state is asked for.
    let ok = unsafe {
        AdjustTokenPrivileges(
            token.as_raw_handle(),
            0,
            buf.as_ptr().cast(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    // SAFETY: reads this thread's last error, set by the call above.
    if ok == 0 || unsafe { GetLastError() } == ERROR_NOT_ALL_ASSIGNED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The privileges a token holds, enabled or not.
fn token_privileges(token: HANDLE) -> io::Result<Vec<LUID_AND_ATTRIBUTES>> {
    let mut len = 0u32;
    // SAFETY: with no buffer, the call only writes the size it needs.
    unsafe { GetTokenInformation(token, TokenPrivileges, std::ptr::null_mut(), 0, &mut len) };
    let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` holds at least `len` bytes, aligned for the type.
    if unsafe {
        GetTokenInformation(
            token,
            TokenPrivileges,
            buf.as_mut_ptr().cast(),
            len,
            &mut len,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let offset = std::mem::offset_of!(TOKEN_PRIVILEGES, Privileges);
    // SAFETY: the call wrote a TOKEN_PRIVILEGES of `len` bytes into `buf`:
    // its count, then that many entries from `offset`, all inside the
    // buffer (checked against `len` before they are read).
    unsafe {
        let count = buf.as_ptr().cast::<u32>().read() as usize;
        let size = std::mem::size_of::<LUID_AND_ATTRIBUTES>();
        if offset + count * size > len as usize {
            return Err(io::Error::other("a short TOKEN_PRIVILEGES"));
        }
        let first = buf
            .as_ptr()
            .cast::<u8>()
            .add(offset)
            .cast::<LUID_AND_ATTRIBUTES>();
        Ok(std::slice::from_raw_parts(first, count).to_vec())
    }
}
