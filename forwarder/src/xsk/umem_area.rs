//! The UMEM's memory: one anonymous, page-aligned mapping owned by a worker.
//!
//! Invariant: `ptr..ptr+len` is a live private mapping for the lifetime of the value; it is
//! unmapped on drop, which must happen after every socket using it is closed (field order in
//! `XskWorker`).

use std::io;
use std::ptr::NonNull;

/// An anonymous read/write mapping of `len` bytes.
#[derive(Debug)]
pub struct UmemArea {
    ptr: NonNull<u8>,
    len: usize,
}

impl UmemArea {
    /// Maps `len` bytes, pre-faulted so the datapath never page-faults on first touch.
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping at a kernel-chosen address; no existing memory is
        // affected. The result is checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }

    /// The whole area, as xdpilone's `Umem::new` takes it.
    pub fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// Base address of the area.
    pub fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`, unmapped only here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
