//! The extension's Rust allocations: large blocks (chunks of input, encoded rows, long lines)
//! are mapped from the kernel, and unmapped when freed unless a load is running and the few
//! it keeps for reuse are fewer than its share; everything else goes to malloc.
//!
//! Why: glibc gives each parse thread its own arena, and once a large block has been freed it
//! raises its mmap threshold (up to 32 MB), so the next large blocks come from the arenas, and
//! freed ones stay resident there. Sixteen threads that each once held a 6 MB line and its rows
//! then keep that memory after the chunks are gone: the backend's peak grew past
//! `pg_ingest.memory_budget` by whatever the threads happened to keep, differently each run.
//! Here what is kept is bounded: a quarter of the budget while a load runs, nothing after it.
//! Reusing a block spares the page faults of a fresh mapping (8% of a parse thread's time on
//! 4 MB chunks). PostgreSQL's own allocations (palloc, malloc) are left as they are.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks from this size on are mapped. The default chunk is 4 MB; blocks this large are few
/// (a handful per chunk), so a map and an unmap each cost little next to parsing them.
const LARGE: usize = 1 << 20;

/// Page alignment is what a mapping gives.
const PAGE: usize = 4096;

/// Freed blocks kept for reuse, at most.
const KEPT: usize = 32;

pub struct Allocator;

/// Freed mappings kept while loads run: `(address, length)`, most recently freed last.
struct Kept {
    blocks: [(usize, usize); KEPT],
    n: usize,
    bytes: usize,
    limit: usize,
    /// Loads running in this backend (a read_jsonl per scan, a load inside a trigger).
    loads: usize,
}

static KEEP: std::sync::Mutex<Kept> =
    std::sync::Mutex::new(Kept { blocks: [(0, 0); KEPT], n: 0, bytes: 0, limit: 0, loads: 0 });

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    // nothing panics while holding it; a poisoned lock is still consistent
    KEEP.lock().unwrap_or_else(|p| p.into_inner())
}

/// While it lives, freed blocks up to `limit` bytes are kept for the next ones (the largest
/// limit of the loads running); when the last one ends, they are unmapped.
pub struct Reuse(());

impl Reuse {
    pub fn new(limit: usize) -> Self {
        let mut k = kept();
        k.loads += 1;
        k.limit = k.limit.max(limit);
        Self(())
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        let mut k = kept();
        k.loads -= 1;
        if k.loads == 0 {
            k.limit = 0;
            let blocks = k.blocks;
            let n = std::mem::take(&mut k.n);
            k.bytes = 0;
            drop(k);
            for &(p, len) in &blocks[..n] {
                // SAFETY: a mapping freed by its user and kept here, now owned by no one
                unsafe { libc::munmap(p as *mut libc::c_void, len) };
            }
        }
    }
}

fn page_round(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

/// A kept block resized to `size`, if one is kept: the smallest that is big enough, or
/// else the largest (its pages are reused, the rest are new).
unsafe fn reuse(size: usize) -> Option<*mut u8> {
    let (p, len) = {
        let mut k = kept();
        let n = k.n;
        let fits = (0..n).filter(|&i| k.blocks[i].1 >= size).min_by_key(|&i| k.blocks[i].1);
        let i = fits.or_else(|| (0..n).max_by_key(|&i| k.blocks[i].1))?;
        let block = k.blocks[i];
        k.blocks[i] = k.blocks[n - 1];
        k.n -= 1;
        k.bytes -= block.1;
        block
    };
    let want = page_round(size);
    if len == want {
        return Some(p as *mut u8);
    }
    // SAFETY: a mapping of `len` bytes owned by no one else
    let q = unsafe { remap(p as *mut u8, len, want) };
    if q.is_null() {
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
        return None;
    }
    Some(q)
}

/// A mapping of `old` bytes resized to `new`, moved if need be (its bytes kept); null if the
/// kernel refuses, the mapping then unchanged.
unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    // SAFETY: the caller owns the mapping
    let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        q.cast()
    }
}

/// Keeps a freed block if there is room; false if it is to be unmapped.
fn keep(p: *mut u8, size: usize) -> bool {
    let len = page_round(size);
    let mut k = kept();
    if k.n == KEPT || k.bytes + len > k.limit {
        return false;
    }
    let n = k.n;
    k.blocks[n] = (p as usize, len);
    k.n += 1;
    k.bytes += len;
    true
}

fn mapped(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping of `size` bytes; no file, no fixed address
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
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            unsafe { reuse(layout.size()).unwrap_or_else(|| map(layout.size())) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            // a fresh mapping is zeroed
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            if !keep(ptr, layout.size()) {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map` or `reuse`
                unsafe { libc::munmap(ptr.cast(), layout.size()) };
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, fits isize
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (mapped(&layout), mapped(&new)) {
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes
            (true, true) => unsafe { remap(ptr, layout.size(), new_size) },
            _ => unsafe {
                let p = self.alloc(new);
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                p
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_move_between_malloc_and_mappings_keeping_their_bytes() {
        let a = Allocator;
        unsafe {
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = a.alloc(small);
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            // malloc → mapping → bigger mapping → malloc
            let p = a.realloc(p, small, 3 * LARGE);
            let big = Layout::from_size_align(3 * LARGE, 8).unwrap();
            *p.add(3 * LARGE - 1) = 7;
            let p = a.realloc(p, big, 9 * LARGE);
            let bigger = Layout::from_size_align(9 * LARGE, 8).unwrap();
            assert_eq!(*p.add(3 * LARGE - 1), 7);
            let p = a.realloc(p, bigger, 500);
            for i in 0..500 {
                assert_eq!(*p.add(i), i as u8);
            }
            a.dealloc(p, Layout::from_size_align(500, 8).unwrap());
            let z = a.alloc_zeroed(big);
            assert!((0..3 * LARGE).step_by(4093).all(|i| *z.add(i) == 0));
            a.dealloc(z, big);
        }
    }

    #[test]
    fn freed_blocks_are_kept_within_the_limit_while_a_load_runs_and_unmapped_after() {
        let a = Allocator;
        let block = Layout::from_size_align(3 * LARGE, 8).unwrap();
        unsafe {
            let reuse = Reuse::new(7 * LARGE);
            let (p, q, r) = (a.alloc(block), a.alloc(block), a.alloc(block));
            *p = 42;
            a.dealloc(p, block);
            a.dealloc(q, block);
            // a third would pass the limit: unmapped
            a.dealloc(r, block);
            assert!(kept().bytes <= 7 * LARGE);
            // a smaller block takes a kept one, shrunk to its size
            let small = Layout::from_size_align(2 * LARGE, 8).unwrap();
            let s = a.alloc(small);
            std::ptr::write_bytes(s, 1, 2 * LARGE);
            a.dealloc(s, small);
            drop(reuse);
            let k = kept();
            assert_eq!((k.n, k.bytes, k.limit), (0, 0, 0));
        }
    }
}
