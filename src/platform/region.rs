//! A payload region: memory shared by the host and one worker process, for
//! arguments and results too large to go through the pipes cheaply.
//!
//! The host creates it (a memfd), sizes it once, and seals it against
//! shrinking and growing before the worker sees it, so that no mapping of
//! it can ever reach past its end. It is laid out in two halves:
//!
//! - the arguments half, `[0, results_at)`, which the host writes before it
//!   sends a request and the worker reads in place while it runs it;
//! - the results half, `[results_at, len)`, which the worker writes while
//!   it runs a request and the host copies out of once it has the reply.
//!
//! Each side holds its own type, whose methods are that protocol:
//!
//! - [`HostRegion`] writes only the arguments half and reads only the
//!   results half, and it never lends a reference into the mapping: it
//!   copies. A hostile worker can write any bytes anywhere at any time, but
//!   that can only make a copy hold other bytes, which the host checks
//!   (bounds first, then decoding the private copy); it cannot make the
//!   host's reads fault or change what the host already holds.
//! - [`WorkerRegion`] lends the arguments in place ([`WorkerRegion::args`],
//!   a shared borrow) and writes only the results half
//!   ([`WorkerRegion::results`]), so that its own writes never touch what
//!   it lends. The reply goes out through [`WorkerRegion::reply`], which
//!   takes `&mut self`: no argument slice outlives the request, so none is
//!   alive when the host writes the next request's arguments. The worker
//!   trusts its host to keep the other half of the bargain, as it trusts it
//!   for everything else: the host started it from the same build (the
//!   handshake checks the protocol version), and a `HostRegion` writes the
//!   arguments only while it sends a request, one at a time, or gives their
//!   pages back while the worker is idle.
//!
//! Its size is virtual: pages cost memory only once touched, and
//! [`HostRegion::release`] gives them back.

use crate::locks::Locked as _;
use std::io;
#[cfg(unix)]
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Mutex;

/// Where a worker finds its region's descriptor.
#[cfg(unix)]
pub(super) const REGION_FD: RawFd = 6;

/// The host's side of a payload region: it writes arguments and copies
/// results out, and lends no reference into the mapping.
pub(crate) struct HostRegion {
    map: Mapping,
    /// Where the results half starts.
    results_at: usize,
    /// Held while the arguments half is written, so that two threads never
    /// write it at once.
    writing: Mutex<()>,
}

// SAFETY: the mapping and its descriptor belong to the handle alone and
// are not tied to a thread. Through `&self`, this process only ever writes
// the arguments half, under `writing`, so its writes never race each
// other; reads copy out of the results half, which this process never
// writes, so they race with no write of this process either; `release`
// asks the kernel to drop pages. No reference into the mapping is ever
// lent. What the worker writes at the same time races only with another
// process: a copy may then hold any bytes (every byte is a valid `u8`),
// which is why the host checks and decodes only its private copy.
unsafe impl Send for HostRegion {}
// SAFETY: as above.
unsafe impl Sync for HostRegion {}

/// The worker's side of a payload region: it lends the arguments in place
/// and writes results. Not `Sync`: one thread (the executor's) uses it.
pub(crate) struct WorkerRegion {
    map: Mapping,
    /// Where the results half starts.
    results_at: usize,
}

// SAFETY: the mapping and its descriptor belong to the handle alone and
// are not tied to a thread: moving the handle moves all access with it.
// It is not `Sync`, so two threads never write its results half at once.
unsafe impl Send for WorkerRegion {}

impl std::fmt::Debug for HostRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HostRegion {
            map,
            results_at,
            writing: _,
        } = self;
        f.debug_struct("HostRegion")
            .field("len", &map.len)
            .field("results_at", results_at)
            .finish()
    }
}

impl std::fmt::Debug for WorkerRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let WorkerRegion { map, results_at } = self;
        f.debug_struct("WorkerRegion")
            .field("len", &map.len)
            .field("results_at", results_at)
            .finish()
    }
}

impl HostRegion {
    /// A new region of `len` bytes, sealed at that size, whose results
    /// half starts at `results_at`.
    #[cfg(target_os = "linux")]
    pub(crate) fn create(len: u64, results_at: u64) -> io::Result<HostRegion> {
        let (len, results_at) = layout(len, results_at)?;
        // SAFETY: the name is a NUL-terminated literal; the flags are valid.
        let raw = unsafe {
            libc::memfd_create(
                c"wasmpool-payload".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        // SAFETY: plain calls on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(HostRegion {
            map: Mapping::new(fd, len)?,
            results_at,
            writing: Mutex::new(()),
        })
    }

    /// A new region of `len` bytes, whose results half starts at
    /// `results_at`: a section backed by the paging file, of that size for
    /// good, whose pages are reserved and committed as they are first
    /// used (`SEC_RESERVE`), so that a region costs no commit charge until
    /// a payload fills it.
    #[cfg(windows)]
    pub(crate) fn create(len: u64, results_at: u64) -> io::Result<HostRegion> {
        use std::os::windows::io::{FromRawHandle as _, OwnedHandle};
        use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
        use windows_sys::Win32::System::Memory::{CreateFileMappingW, PAGE_READWRITE, SEC_RESERVE};
        let (len, results_at) = layout(len, results_at)?;
        let size = len as u64;
        // SAFETY: an unnamed section backed by the paging file, with
        // default security; the handle is checked before use.
        let section = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE | SEC_RESERVE,
                (size >> 32) as u32,
                size as u32,
                std::ptr::null(),
            )
        };
        if section.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a handle just created, owned by nothing else.
        let section = unsafe { OwnedHandle::from_raw_handle(section) };
        Ok(HostRegion {
            map: Mapping::new(section, len)?,
            results_at,
            writing: Mutex::new(()),
        })
    }

    /// Other systems have no region: payloads go through the pipes.
    #[cfg(not(any(target_os = "linux", windows)))]
    pub(crate) fn create(_len: u64, _results_at: u64) -> io::Result<HostRegion> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "payload regions need Linux or Windows",
        ))
    }

    /// The descriptor, to hand to a worker.
    #[cfg(unix)]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.map.fd.as_fd()
    }

    /// The section, to duplicate into a worker.
    #[cfg(windows)]
    pub(crate) fn section(&self) -> std::os::windows::io::RawHandle {
        use std::os::windows::io::AsRawHandle as _;
        self.map.section.as_raw_handle()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len
    }

    /// Copies `src` into the arguments half at `offset`; `false` if it
    /// does not fit there.
    pub(crate) fn write_args(&self, offset: u64, src: &[u8]) -> bool {
        let Some(offset) = self.map.range(offset, src.len() as u64, 0, self.results_at) else {
            return false;
        };
        let _writing = self.writing.locked();
        // SAFETY: the range is inside the arguments half (checked above),
        // which this process writes only here, under `writing`, and reads
        // only by copies; this type lends no reference into the mapping.
        unsafe { self.map.write(offset, src) };
        true
    }

    /// A copy of `[offset, offset + len)`, or `None` when that is not
    /// inside the results half. The copy is private: what the worker
    /// writes afterwards cannot change it.
    pub(crate) fn read_result(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let offset = self.map.range(offset, len, self.results_at, self.map.len)?;
        Some(self.map.read(offset, len as usize))
    }

    /// Gives the pages of `[offset, offset + len)` back to the kernel; they
    /// read as zeros afterwards, in every mapping. Only while the worker
    /// runs no request: to it, this writes its arguments half.
    pub(crate) fn release(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            let Some(offset) = self.map.range(offset, len, 0, self.map.len) else {
                return;
            };
            if len == 0 {
                return;
            }
            // SAFETY: punching a hole in our own memfd changes no mapping's
            // extent, only what its pages hold (zeros from now on).
            unsafe {
                libc::fallocate(
                    self.map.fd.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                );
            }
        }
        // A section's committed pages cannot be decommitted while mapped:
        // on Windows they stay until the worker goes.
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

impl WorkerRegion {
    /// The region whose section a worker was given in its bootstrap,
    /// which its host said is `len` bytes with its results half at
    /// `results_at`. A section smaller than that cannot be mapped.
    #[cfg(windows)]
    pub(crate) fn inherit(len: u64, results_at: u64) -> io::Result<WorkerRegion> {
        let (len, results_at) = layout(len, results_at)?;
        let section = super::sys::inherited_region().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the host announced a payload region, but gave no section",
            )
        })?;
        Ok(WorkerRegion {
            map: Mapping::new(section, len)?,
            results_at,
        })
    }

    /// The region a worker inherited as descriptor [`REGION_FD`], which its
    /// host said is `len` bytes with its results half at `results_at`.
    #[cfg(unix)]
    pub(crate) fn inherit(len: u64, results_at: u64) -> io::Result<WorkerRegion> {
        let (len, results_at) = layout(len, results_at)?;
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(REGION_FD, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the host announced a payload region, but descriptor 6 is not open",
            ));
        }
        // SAFETY: the descriptor is open and was placed there by
        // `spawn_worker` for this process alone.
        let fd = unsafe { OwnedFd::from_raw_fd(REGION_FD) };
        // SAFETY: `st` is written by fstat before it is read.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.as_raw_fd(), &mut st) < 0 {
                return Err(io::Error::last_os_error());
            }
            st.st_size
        };
        if usize::try_from(size).ok() != Some(len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the payload region is {size} bytes, not the {len} announced"),
            ));
        }
        Ok(WorkerRegion {
            map: Mapping::new(fd, len)?,
            results_at,
        })
    }

    /// The arguments at `[offset, offset + len)`, in place, or `None` when
    /// that is not inside the arguments half. For the request being run
    /// only: the slice borrows the region, so it cannot outlive the
    /// [`reply`](WorkerRegion::reply) that ends the request.
    pub(crate) fn args(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let offset = self.map.range(offset, len, 0, self.results_at)?;
        // SAFETY: the range is inside the mapping, which lives as long as
        // `self`, and inside the arguments half. This process writes that
        // half only in `scribble`, which takes `&mut self` and so cannot
        // run while the slice lives; the host writes it only between the
        // reply to one request and the next request, and the reply goes
        // out through `reply`, which takes `&mut self` too. So the bytes
        // do not change under the slice.
        Some(unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(offset), len as usize) })
    }

    /// A writer filling the results half from `at` (from its start, if
    /// `at` is before it).
    pub(crate) fn results(&self, at: u64) -> Writer<'_> {
        let start = at.clamp(self.results_at as u64, self.map.len as u64);
        Writer {
            region: self,
            start,
            pos: start,
        }
    }

    /// A copy of `[offset, offset + len)`, or `None` when that is not
    /// inside the region.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let offset = self.map.range(offset, len, 0, self.map.len)?;
        Some(self.map.read(offset, len as usize))
    }

    /// Sends the reply to the request being run: `send` runs with the
    /// region borrowed mutably, so no argument slice of that request is
    /// alive when the host, which has its reply, writes the arguments half
    /// again.
    pub(crate) fn reply<R>(&mut self, send: impl FnOnce() -> R) -> R {
        send()
    }

    /// Test only: fills what part of `[offset, offset + len)` lies in the
    /// region with `fill`, either half, as a hostile worker would.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn scribble(&mut self, offset: u64, len: u64, fill: u8) {
        let end = offset.saturating_add(len).min(self.map.len as u64);
        let start = offset.min(end);
        let garbage = vec![fill; (end - start) as usize];
        if !self.map.commit(start as usize, garbage.len()) {
            return;
        }
        // SAFETY: the range is inside the mapping; `&mut self` means no
        // argument slice is alive, and no other thread has the handle.
        unsafe { self.map.write(start as usize, &garbage) };
    }
}

/// Checks that `results_at` splits a region of `len` bytes, as `usize`s.
fn layout(len: u64, results_at: u64) -> io::Result<(usize, usize)> {
    match (usize::try_from(len), usize::try_from(results_at)) {
        (Ok(len), Ok(results_at)) if results_at <= len => Ok((len, results_at)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a payload region of {len} bytes cannot have its results at {results_at}"),
        )),
    }
}

/// A shared, read-write mapping of a whole memfd, unmapped on drop. Which
/// side may touch which bytes when is for [`HostRegion`] and
/// [`WorkerRegion`] to keep.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    #[cfg(unix)]
    fd: OwnedFd,
    #[cfg(windows)]
    section: std::os::windows::io::OwnedHandle,
}

impl Mapping {
    /// Maps `fd`, of `len` bytes.
    #[cfg(unix)]
    fn new(fd: OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of a descriptor we own, of its
        // size; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapping { ptr, len, fd })
    }

    /// Maps all of `section`, of `len` bytes.
    #[cfg(windows)]
    fn new(section: std::os::windows::io::OwnedHandle, len: usize) -> io::Result<Mapping> {
        use std::os::windows::io::AsRawHandle as _;
        use windows_sys::Win32::System::Memory::{FILE_MAP_READ, FILE_MAP_WRITE, MapViewOfFile};
        // SAFETY: a fresh view of a section we own, of `len` bytes (which
        // fails if the section is smaller); checked before use.
        let view = unsafe {
            MapViewOfFile(
                section.as_raw_handle(),
                FILE_MAP_READ | FILE_MAP_WRITE,
                0,
                0,
                len,
            )
        };
        let ptr = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { ptr, len, section })
    }

    /// `offset` as a `usize`, when `[offset, offset + len)` lies inside
    /// `[from, to)`, which lies inside the mapping. On Windows its pages
    /// are committed too, so that they can be touched: `None` if there
    /// was no memory for that.
    fn range(&self, offset: u64, len: u64, from: usize, to: usize) -> Option<usize> {
        let offset = usize::try_from(offset).ok()?;
        let end = offset.checked_add(usize::try_from(len).ok()?)?;
        (from <= offset && end <= to && to <= self.len && self.commit(offset, end - offset))
            .then_some(offset)
    }

    /// Commits the pages of `[offset, offset + len)`, which lies inside the
    /// mapping; `false` if the system had no memory to commit. Pages
    /// already committed stay as they are.
    #[cfg(windows)]
    fn commit(&self, offset: usize, len: usize) -> bool {
        use windows_sys::Win32::System::Memory::{MEM_COMMIT, PAGE_READWRITE, VirtualAlloc};
        if len == 0 {
            return true;
        }
        // SAFETY: the range is inside our view; committing pages of a
        // section changes no bytes, only whether they may be touched.
        !unsafe {
            VirtualAlloc(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                MEM_COMMIT,
                PAGE_READWRITE,
            )
        }
        .is_null()
    }

    /// Every page of a memfd mapping can be touched.
    #[cfg(unix)]
    fn commit(&self, _offset: usize, _len: usize) -> bool {
        true
    }

    /// Copies `src` in at `offset`.
    ///
    /// # Safety
    ///
    /// `[offset, offset + src.len())` must lie inside the mapping, and
    /// nothing else in this process may read or write those bytes, or hold
    /// a reference to them, until this returns.
    unsafe fn write(&self, offset: usize, src: &[u8]) {
        debug_assert!(offset + src.len() <= self.len);
        // SAFETY: the range is inside the mapping, which is writable and
        // lives as long as `self`, and nothing else in this process uses
        // it now (the caller's promise); `src` is private memory, so the
        // ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
    }

    /// A private copy of `[offset, offset + len)`, which the caller has
    /// checked lies inside the mapping.
    fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        let mut out = super::large_buffer(len);
        // SAFETY: the source range is inside the mapping (asserted above);
        // `out` has room for `len` bytes, which are all initialized by the
        // copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        out
    }
}

#[cfg(windows)]
impl Drop for Mapping {
    fn drop(&mut self) {
        use windows_sys::Win32::System::Memory::{MEMORY_MAPPED_VIEW_ADDRESS, UnmapViewOfFile};
        // SAFETY: the view was made by `Mapping::new` at this address, and
        // no slice of it outlives `self` (a slice borrows the region that
        // owns it).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast(),
            });
        }
    }
}

#[cfg(unix)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this address
        // and length, and no slice of it outlives `self` (a slice borrows
        // the region that owns it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Writes into a worker's results half, failing with `WriteZero` when it is
/// full.
pub(crate) struct Writer<'a> {
    region: &'a WorkerRegion,
    start: u64,
    pos: u64,
}

impl Writer<'_> {
    /// Where the bytes written so far are: offset and length.
    pub(crate) fn written(&self) -> (u64, u64) {
        (self.start, self.pos - self.start)
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let map = &self.region.map;
        let Some(offset) = map.range(self.pos, buf.len() as u64, self.region.results_at, map.len)
        else {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the payload region is full",
            ));
        };
        // SAFETY: the range is inside the results half (checked above),
        // into which this process lends no reference (`args` lends only the
        // arguments half, `read` copies); the region is not `Sync`, so no
        // other thread writes it now.
        unsafe { map.write(offset, buf) };
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn bounds_are_checked_and_the_size_is_sealed() {
        let r = HostRegion::create(1 << 20, 1 << 19).unwrap();
        // Arguments go only into the first half, results come only from
        // the second.
        assert!(r.write_args(10, b"hello"));
        assert!(!r.write_args((1 << 19) - 2, b"abc"));
        assert!(r.read_result(10, 5).is_none());
        assert!(r.read_result((1 << 20) - 2, 3).is_none());
        assert!(r.read_result(u64::MAX, 2).is_none());
        assert_eq!(r.read_result(1 << 19, 5).unwrap(), [0; 5]);
        // Sealed: neither side can change its size.
        // SAFETY: a plain call on the region's descriptor.
        let shrink = unsafe { libc::ftruncate(r.fd().as_raw_fd(), 4096) };
        assert!(shrink < 0);
    }

    #[test]
    fn each_side_sees_the_other_sides_half() {
        let host = HostRegion::create(1 << 20, 1 << 19).unwrap();
        // The worker's side, mapped from a second descriptor of the memfd
        // (a worker inherits it as descriptor 6).
        let fd = host.fd().try_clone_to_owned().unwrap();
        let mut worker = WorkerRegion {
            map: Mapping::new(fd, 1 << 20).unwrap(),
            results_at: 1 << 19,
        };
        assert!(host.write_args(10, b"hello"));
        assert_eq!(worker.args(10, 5).unwrap(), b"hello");
        assert!(worker.args((1 << 19) - 2, 3).is_none());
        // Results start at the results half, whatever `at` says.
        let mut w = worker.results(0);
        w.write_all(b"abcd").unwrap();
        assert_eq!(w.written(), (1 << 19, 4));
        let mut w = worker.results((1 << 20) - 4);
        w.write_all(b"wxyz").unwrap();
        assert!(w.write_all(b"!").is_err());
        assert_eq!(worker.read((1 << 20) - 4, 4).unwrap(), b"wxyz");
        worker.reply(|| ());
        assert_eq!(host.read_result(1 << 19, 4).unwrap(), b"abcd");
        host.release(0, 1 << 20);
        assert_eq!(host.read_result(1 << 19, 4).unwrap(), [0; 4]);
        assert_eq!(worker.args(10, 5).unwrap(), [0; 5]);
    }
}
