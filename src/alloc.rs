//! The process allocator: the system allocator, except that blocks of 32 MiB and more are mapped
//! directly and marked for transparent huge pages.
//!
//! The one such block in a signer is scrypt's ROMix table (256 MiB per EIP-2335 keystore
//! decryption, allocated and freed once per keystore). With 4 KiB pages every decryption
//! faults in 65,536 fresh pages and its random reads over the table miss the TLB; with 2 MiB
//! pages both costs mostly go away. Where the kernel offers no huge pages (`never`), this is
//! an ordinary anonymous mapping, as the system allocator would have made.
//!
//! Besides `threshold::curve`, this is the one module allowed `unsafe`: the `scrypt` crate
//! allocates its table itself, so the allocator is the only place to ask for huge pages.
//! Invariants: a block is "large" by its layout alone ([`Allocator::is_large`]), so the same
//! layout always goes back to where it came from; large blocks are page-aligned, zero-filled
//! mappings of exactly `size` bytes.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks at least this large bypass the system allocator.
const LARGE: usize = 32 << 20;

/// Whether large blocks are marked for huge pages (on unless [`set_huge_pages`] turned it off).
static HUGE_PAGES: AtomicBool = AtomicBool::new(true);

/// Turns the huge-page advice for large blocks on or off (the start-up benchmark compares
/// both; a signer has no reason to turn it off).
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

/// Declared as `#[global_allocator]` by the binary and the start-up benchmark.
pub struct Allocator;

impl Allocator {
    fn is_large(layout: &Layout) -> bool {
        // mmap returns page-aligned memory; anything stricter goes to the system allocator.
        layout.size() >= LARGE && layout.align() <= 4096
    }
}

// SAFETY: large blocks come from mmap (page-aligned, zeroed, `size` bytes) and are returned to
// munmap with the same size; every other block is the system allocator's, untouched.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::is_large(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::is_large(&layout) {
            // Fresh anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::is_large(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !Self::is_large(&layout) && !Self::is_large(&new_layout) {
            // SAFETY: both blocks are the system allocator's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid (above); the copy stays within both blocks.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    if HUGE_PAGES.load(Ordering::Relaxed) {
        // Advice only: where huge pages are unavailable the mapping keeps small pages.
        // SAFETY: `p..p+size` is the mapping just made.
        unsafe { libc::madvise(p, size, libc::MADV_HUGEPAGE) };
    }
    p.cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Allocates through [`Allocator`] directly (the test binary keeps the system allocator).
    fn with_block(size: usize, zeroed: bool) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        // SAFETY: a non-zero size with a valid alignment.
        let p = unsafe {
            if zeroed {
                Allocator.alloc_zeroed(layout)
            } else {
                Allocator.alloc(layout)
            }
        };
        assert!(!p.is_null(), "allocation of {size} bytes failed");
        (p, layout)
    }

    #[test]
    fn large_blocks_are_zeroed_writable_and_freed() {
        let (p, layout) = with_block(64 * MIB, true);
        // SAFETY: `p` is a live block of `layout.size()` bytes.
        let block = unsafe { std::slice::from_raw_parts_mut(p, layout.size()) };
        assert!(block.iter().step_by(4096).all(|b| *b == 0));
        assert_eq!(block[layout.size() - 1], 0);
        block.fill(0xa5);
        assert!(block.iter().step_by(4093).all(|b| *b == 0xa5));
        // SAFETY: `p` came from this allocator with `layout`.
        unsafe { Allocator.dealloc(p, layout) };
    }

    #[test]
    fn realloc_keeps_contents_across_the_threshold_both_ways() {
        // Small to large, large to larger, large to small: each keeps the common prefix.
        let mut size = LARGE - MIB;
        let (mut p, mut layout) = with_block(size, false);
        // SAFETY: `p` is a live block of `size` bytes.
        unsafe { std::ptr::write_bytes(p, 7, size) };
        for new_size in [LARGE + MIB, 2 * LARGE, 4096] {
            // SAFETY: `p` is live with `layout`; `new_size` is non-zero and fits the alignment.
            p = unsafe { Allocator.realloc(p, layout, new_size) };
            assert!(!p.is_null());
            let kept = size.min(new_size);
            // SAFETY: the first `kept` bytes of the new block were copied from the old one.
            let block = unsafe { std::slice::from_raw_parts(p, kept) };
            assert!(block.iter().all(|b| *b == 7), "realloc to {new_size}");
            if new_size > size {
                // SAFETY: `p` is a live block of `new_size` bytes.
                unsafe { std::ptr::write_bytes(p.add(size), 7, new_size - size) };
            }
            size = new_size;
            layout = Layout::from_size_align(size, 8).expect("layout");
        }
        // SAFETY: `p` came from this allocator with `layout`.
        unsafe { Allocator.dealloc(p, layout) };
    }

    #[test]
    fn small_and_overaligned_blocks_go_to_the_system_allocator() {
        assert!(!Allocator::is_large(
            &Layout::from_size_align(LARGE - 1, 8).expect("l")
        ));
        assert!(Allocator::is_large(
            &Layout::from_size_align(LARGE, 4096).expect("l")
        ));
        assert!(!Allocator::is_large(
            &Layout::from_size_align(LARGE, 8192).expect("l")
        ));
        let (p, layout) = with_block(100, true);
        // SAFETY: `p` is a live, zeroed block of 100 bytes from this allocator.
        unsafe {
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|b| *b == 0));
            Allocator.dealloc(p, layout);
        }
    }
}
