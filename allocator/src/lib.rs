//! The proxy's global allocator: mimalloc, asked for an aligned block only when an allocation
//! needs more alignment than every block has.
//!
//! The `mimalloc` crate's allocator hands every allocation to `mi_malloc_aligned`, whatever
//! its alignment. mimalloc 3 serves that from its small-block path only when the size is at
//! most 1 KiB and the block at the head of the free list happens to be aligned; otherwise,
//! unless the size class is a power of two (a request's future, 2.5 KB, and a request's
//! header map, 1.2 KB, are not), it over-allocates
//! (`mi_theap_malloc_zero_aligned_at_generic`, then `..._overalloc`: 222 instructions where a
//! small block takes about 50, callgrind) and marks the block's page as holding interior
//! pointers, which every later free in that page must check for.
//!
//! Every block of 16 bytes or more that `mi_malloc` returns is aligned to 16 bytes
//! (`MI_MAX_ALIGN_SIZE`: size classes of 16 bytes or more are multiples of 16, and a page's
//! first block is 16-aligned), and a smaller block to 8. So an allocation whose alignment is
//! at most 16 and at most its size is what plain `malloc` serves, the rule the standard
//! library's own `System` allocator follows (its `MIN_ALIGN`). Anything else, such as
//! tokio's 128-byte-aligned task cells, still goes to the aligned functions. The tests in
//! `tests/` check the alignment of every block over the sizes and alignments that matter.

use core::{
    alloc::{GlobalAlloc, Layout},
    ffi::c_void,
};

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// The alignment of every block of at least this many bytes from `mi_malloc`
/// (`MI_MAX_ALIGN_SIZE` in mimalloc's `types.h`, unless a build overrides it; the
/// `libmimalloc-sys` build does not).
const MALLOC_ALIGNMENT: usize = 16;

/// mimalloc, with plain `malloc` for the allocations it already aligns (the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

/// Whether `mi_malloc(size)` returns a block aligned to `align`.
#[inline]
const fn malloc_aligns(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGNMENT && align <= size
}

#[allow(unsafe_code, reason = "a global allocator is an unsafe trait of raw pointers")]
// SAFETY: every block comes from mimalloc, aligned to `layout.align()` (by mimalloc's aligned
// functions, or by `malloc_aligns`), at least `layout.size()` bytes long, and freed or
// reallocated only by mimalloc; a null pointer is returned as it is, meaning failure.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let block = if malloc_aligns(size, align) {
            // SAFETY: a plain allocation of `size` bytes; aligned by `malloc_aligns`.
            unsafe { mi_malloc(size) }
        } else {
            // SAFETY: `align` is a power of two, as every `Layout`'s is.
            unsafe { mi_malloc_aligned(size, align) }
        };
        block.cast()
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let block = if malloc_aligns(size, align) {
            // SAFETY: as in `alloc`, zeroed.
            unsafe { mi_zalloc(size) }
        } else {
            // SAFETY: as in `alloc`, zeroed.
            unsafe { mi_zalloc_aligned(size, align) }
        };
        block.cast()
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned (`GlobalAlloc`'s
        // contract); mimalloc frees a block of either kind by its pointer.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let block = if malloc_aligns(new_size, align) {
            // SAFETY: `ptr` is a block of this allocator (the caller's contract); the new
            // block is aligned by `malloc_aligns`, and a block kept in place already was.
            unsafe { mi_realloc(ptr.cast::<c_void>(), new_size) }
        } else {
            // SAFETY: as above, with the alignment asked of mimalloc.
            unsafe { mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align) }
        };
        block.cast()
    }
}
