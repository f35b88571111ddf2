//! A payload region: memory shared by the host and one worker process, for
//! arguments and results too large to go through the pipes cheaply.
//!
//! The host creates it (a memfd), sizes it once, and seals it against
//! shrinking and growing before the worker sees it, so that no mapping of
//! it can ever reach past its end: a hostile worker can write any bytes
//! into it, but cannot make the host's reads fault. The host never parses
//! the region in place: it copies a result out ([`Region::read`]) after
//! checking its bounds, then decodes the copy.
//!
//! Its size is virtual: pages cost memory only once touched, and
//! [`Region::release`] gives them back.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// Where a worker finds its region's descriptor.
pub(super) const REGION_FD: RawFd = 6;

/// A shared mapping of a sealed memfd.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory that lives as long as the `Region`;
// every access copies through raw pointers within bounds, so sharing the
// handle between threads is as safe as sharing a `Vec<u8>` behind a lock
// the caller holds (each worker runs one request at a time).
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.len).finish()
    }
}

impl Region {
    /// A new region of `len` bytes, sealed at that size (the host's side).
    #[cfg(target_os = "linux")]
    pub(crate) fn create(len: usize) -> io::Result<Region> {
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
        map(fd, len)
    }

    /// Other systems have no memfd: payloads go through the pipes.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create(_len: usize) -> io::Result<Region> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "payload regions need Linux",
        ))
    }

    /// The region a worker inherited as descriptor [`REGION_FD`], which its
    /// host said is `len` bytes (the worker's side).
    pub(crate) fn inherit(len: usize) -> io::Result<Region> {
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
        map(fd, len)
    }

    /// The descriptor, to hand to a worker.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `[offset, offset + len)` lies inside the region.
    fn range(&self, offset: u64, len: u64) -> Option<(usize, usize)> {
        let offset = usize::try_from(offset).ok()?;
        let len = usize::try_from(len).ok()?;
        let end = offset.checked_add(len)?;
        (end <= self.len).then_some((offset, len))
    }

    /// Copies `src` in at `offset`; `false` if it does not fit.
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> bool {
        let Some((offset, len)) = self.range(offset, src.len() as u64) else {
            return false;
        };
        // SAFETY: `[offset, offset + len)` is inside the mapping (checked
        // above), which is writable and lives as long as `self`; `src` is
        // private memory, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), len);
        }
        debug_assert!(len <= self.len);
        true
    }

    /// A copy of `[offset, offset + len)`, or `None` when that is not
    /// inside the region. The copy is private: what the other side writes
    /// afterwards cannot change it.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let (offset, len) = self.range(offset, len)?;
        let mut out = super::large_buffer(len);
        // SAFETY: the source range is inside the mapping (checked above);
        // `out` has room for `len` bytes, which are all initialized by the
        // copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Some(out)
    }

    /// `[offset, offset + len)` in place, for the worker, which trusts its
    /// host: the host writes a request's payloads before it sends the
    /// request and touches them again only for a later request, after this
    /// one has been answered.
    pub(crate) fn view(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let (offset, len) = self.range(offset, len)?;
        // SAFETY: the range is inside the mapping, which lives as long as
        // `self`; the host does not write it while the request that names
        // it runs (see above), so the bytes do not change under the slice.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }

    /// A writer filling `[start, end)` from its start.
    pub(crate) fn writer(&self, start: u64, end: u64) -> Writer<'_> {
        let end = end.min(self.len as u64);
        Writer {
            region: self,
            start,
            pos: start,
            end,
        }
    }

    /// Gives the pages of `[offset, offset + len)` back to the kernel; they
    /// read as zeros afterwards, in every mapping.
    pub(crate) fn release(&self, offset: u64, len: u64) {
        let Some((offset, len)) = self.range(offset, len) else {
            return;
        };
        if len == 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: punching a hole in our own memfd changes no mapping's
        // extent, only what its pages hold (zeros from now on).
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and
        // length, and no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Maps `fd` shared, read-write.
fn map(fd: OwnedFd, len: usize) -> io::Result<Region> {
    // SAFETY: a fresh shared mapping of a descriptor we own, of its size;
    // the result is checked before use.
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
    Ok(Region { ptr, len, fd })
}

/// Writes into a window of a region, failing with `WriteZero` when the
/// window is full.
pub(crate) struct Writer<'a> {
    region: &'a Region,
    start: u64,
    pos: u64,
    end: u64,
}

impl Writer<'_> {
    /// Where the bytes written so far are: offset and length.
    pub(crate) fn written(&self) -> (u64, u64) {
        (self.start, self.pos - self.start)
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.end {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the payload region is full",
            ));
        }
        if !self.region.write(self.pos, buf) {
            return Err(io::ErrorKind::WriteZero.into());
        }
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
        let r = Region::create(1 << 20).unwrap();
        assert!(r.write(10, b"hello"));
        assert_eq!(r.read(10, 5).unwrap(), b"hello");
        assert!(r.read((1 << 20) - 2, 3).is_none());
        assert!(r.read(u64::MAX, 2).is_none());
        assert!(!r.write((1 << 20) - 1, b"ab"));
        // Sealed: neither side can change its size.
        // SAFETY: a plain call on the region's descriptor.
        let shrink = unsafe { libc::ftruncate(r.fd().as_raw_fd(), 4096) };
        assert!(shrink < 0);
        let mut w = r.writer(100, 104);
        w.write_all(b"abcd").unwrap();
        assert!(w.write_all(b"e").is_err());
        assert_eq!(w.written(), (100, 4));
        r.release(0, 1 << 20);
        assert_eq!(r.read(10, 5).unwrap(), [0; 5]);
    }
}
