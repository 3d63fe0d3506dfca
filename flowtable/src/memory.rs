//! The table's two big arrays (records and index buckets), allocated once at construction.
//!
//! Arrays of 2 MiB or more are placed on a 2 MiB boundary and, on Linux, advised into transparent
//! huge pages before they are first touched: a flow table of a million flows is ~120 MiB read at
//! random, and with 4 KiB pages nearly every lookup would also miss the TLB. The advice is a
//! single `madvise` at construction (never on the packet path) and only a hint: if the kernel
//! declines, the table works the same with small pages.
//!
//! Invariant: a `FixedArray` owns exactly `len` initialised elements at `pointer`, allocated with
//! `layout`, and frees them with that same layout.

use core::alloc::Layout;
use core::ops::Deref;
use core::ptr::NonNull;

/// Alignment (and huge-page size) used for large arrays.
const HUGE_PAGE: usize = 2 << 20;

pub(crate) struct FixedArray<T> {
    pointer: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: `FixedArray<T>` owns its elements like a `Box<[T]>`, so it is `Send`/`Sync` exactly
// when `T` is.
unsafe impl<T: Send> Send for FixedArray<T> {}
// SAFETY: as above; shared access hands out `&[T]` only.
unsafe impl<T: Sync> Sync for FixedArray<T> {}

impl<T> FixedArray<T> {
    /// An array of `len` (> 0) elements, element `i` being `make(i)`.
    pub(crate) fn new(len: usize, mut make: impl FnMut(usize) -> T) -> Self {
        assert!(
            len > 0 && size_of::<T>() > 0,
            "fixed arrays are non-empty and not zero-sized"
        );
        let bytes = Layout::array::<T>(len).expect("array size overflows");
        let align = if bytes.size() >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            bytes.align()
        };
        let layout = bytes
            .align_to(align)
            .expect("alignment is a power of two")
            .pad_to_align();
        // SAFETY: the layout has a non-zero size (len > 0, T not zero-sized).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(pointer) = NonNull::new(raw.cast::<T>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        if align == HUGE_PAGE {
            advise_huge_pages(raw, layout.size());
        }
        for index in 0..len {
            // SAFETY: `index < len` and the allocation holds `len` elements of `T`, suitably
            // aligned; each slot is written once, before any read.
            unsafe { pointer.add(index).write(make(index)) };
        }
        FixedArray {
            pointer,
            len,
            layout,
        }
    }
}

impl<T> Deref for FixedArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `pointer` holds `len` initialised elements for as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }
}

impl<T> Drop for FixedArray<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialised and dropped once here; the memory was allocated
        // with `self.layout` by the global allocator and is freed once with it.
        unsafe {
            core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(
                self.pointer.as_ptr(),
                self.len,
            ));
            std::alloc::dealloc(self.pointer.as_ptr().cast(), self.layout);
        }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *mut u8, len: usize) {
    // SAFETY: the range is one live allocation owned by the caller; MADV_HUGEPAGE changes only
    // how the kernel backs it, not its contents or validity. Failure is harmless (a hint).
    let _ = unsafe { libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_built_in_order_and_dropped() {
        let small = FixedArray::new(5, |index| index * 2);
        assert_eq!(&*small, &[0, 2, 4, 6, 8]);
        let large = FixedArray::new(HUGE_PAGE / 8 + 3, |index| index as u64);
        assert_eq!(large.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(large[large.len() - 1], (HUGE_PAGE / 8 + 2) as u64);
        let counted = std::rc::Rc::new(());
        drop(FixedArray::new(3, |_| std::rc::Rc::clone(&counted)));
        assert_eq!(std::rc::Rc::strong_count(&counted), 1);
    }
}
