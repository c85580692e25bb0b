//! Every block the allocator returns is aligned and sized as its layout asks, through
//! allocation, zeroed allocation and reallocation in both directions, with many blocks of a
//! size alive at once (so that blocks come from many places in mimalloc's pages, not only
//! the head of a fresh one). The test binary itself also runs on the allocator.
#![allow(
    unsafe_code,
    reason = "an allocator is tested through its raw-pointer interface"
)]

use std::alloc::{GlobalAlloc, Layout};

use lockstep_allocator::Mimalloc;

#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// Sizes around mimalloc's size classes and its 1 KiB small-block limit, and larger ones.
fn sizes() -> impl Iterator<Item = usize> {
    (1..=256).chain((257..=4096).step_by(7)).chain([
        1000,
        1024,
        1025,
        1248,
        2568,
        3000,
        8192,
        65_536,
        100_000,
        1 << 20,
        5 << 20,
    ])
}

const ALIGNMENTS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 4096, 65_536];

/// How many blocks of one layout are kept alive at once.
const LIVE: usize = 32;

/// The bytes of a block of `size` that are written and read back: all of a small one, the
/// first and last 256 bytes of a large one (a debug build writes a byte at a time).
fn touched(size: usize) -> impl Iterator<Item = usize> {
    let edge = size.min(256);
    (0..edge).chain((size - edge).max(edge)..size)
}

fn fill(block: *mut u8, size: usize, seed: usize) {
    for i in touched(size) {
        // SAFETY: `block` holds `size` bytes.
        unsafe { block.add(i).write((i ^ seed) as u8) };
    }
}

/// Whether `block`, filled as a block of `size` bytes, still holds what was written to its
/// first `kept` bytes.
fn holds(block: *const u8, size: usize, kept: usize, seed: usize) -> bool {
    // SAFETY: `block` holds `kept` bytes, those of them touched when it was filled initialised.
    touched(size)
        .filter(|&i| i < kept)
        .all(|i| unsafe { block.add(i).read() } == (i ^ seed) as u8)
}

fn aligned(block: *const u8, align: usize) -> bool {
    !block.is_null() && block.addr().is_multiple_of(align)
}

#[test]
fn every_block_is_aligned_and_holds_its_bytes() {
    for align in ALIGNMENTS {
        for size in sizes() {
            let layout = Layout::from_size_align(size, align).expect("layout");
            let blocks: Vec<*mut u8> = (0..LIVE)
                // SAFETY: the layout's size is not zero.
                .map(|_| unsafe { Mimalloc.alloc(layout) })
                .collect();
            for (seed, &block) in blocks.iter().enumerate() {
                assert!(aligned(block, align), "alloc({size}, {align}) = {block:p}");
                fill(block, size, seed);
            }
            for (seed, &block) in blocks.iter().enumerate() {
                assert!(
                    holds(block, size, size, seed),
                    "alloc({size}, {align}) lost its bytes"
                );
                // SAFETY: allocated above with `layout`.
                unsafe { Mimalloc.dealloc(block, layout) };
            }
        }
    }
}

#[test]
fn a_zeroed_block_is_aligned_and_zero() {
    for align in ALIGNMENTS {
        for size in sizes() {
            let layout = Layout::from_size_align(size, align).expect("layout");
            // SAFETY: the layout's size is not zero.
            let block = unsafe { Mimalloc.alloc_zeroed(layout) };
            assert!(aligned(block, align), "alloc_zeroed({size}, {align}) = {block:p}");
            // SAFETY: `block` holds `size` bytes, zeroed.
            assert!(touched(size).all(|i| unsafe { block.add(i).read() } == 0));
            fill(block, size, 1);
            // SAFETY: allocated above with `layout`.
            unsafe { Mimalloc.dealloc(block, layout) };
        }
    }
}

#[test]
fn a_reallocated_block_keeps_its_alignment_and_bytes() {
    for align in ALIGNMENTS {
        for size in sizes().filter(|&s| s <= 1 << 20) {
            for new_size in [1, size / 2, size.saturating_sub(1), size + 1, size * 2 + 24] {
                if new_size == 0 {
                    continue;
                }
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: the layout's size is not zero.
                let block = unsafe { Mimalloc.alloc(layout) };
                fill(block, size, 3);
                // SAFETY: `block` is of `layout`; `new_size` is not zero and, rounded up to
                // `align`, far from `isize::MAX`.
                let moved = unsafe { Mimalloc.realloc(block, layout, new_size) };
                assert!(aligned(moved, align), "realloc({size} -> {new_size}, {align})");
                assert!(
                    holds(moved, size, new_size, 3),
                    "realloc({size} -> {new_size}, {align})"
                );
                let new_layout = Layout::from_size_align(new_size, align).expect("layout");
                // SAFETY: reallocated above to `new_layout`.
                unsafe { Mimalloc.dealloc(moved, new_layout) };
            }
        }
    }
}
