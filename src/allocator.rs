//! A global allocator that counts: the system's allocator, wrapped to keep
//! the number of bytes live, as Redis's `used_memory` is its allocator's
//! count of live bytes. kv reports it in `INFO memory` and enforces
//! `--maxmemory` against it.
//!
//! The `muse` binary installs one ([`Counting`] as its
//! `#[global_allocator]`) and [`register`]s it; the library never installs
//! one itself, so a program that embeds muse keeps its own allocator (and
//! kv falls back to the resident set size). In the forking architectures
//! the count is per process, so the store process's count is the store's.
//!
//! The count is of the sizes asked for (`Layout::size`), not of what the
//! system allocator rounds them up to or keeps for itself: the resident
//! size (`used_memory_rss`) shows that overhead. Each allocation, free and
//! reallocation costs one relaxed atomic add on a shared counter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The system allocator with a count of live bytes.
#[derive(Debug, Default)]
pub struct Counting {
    live: AtomicUsize,
}

impl Counting {
    /// A counting allocator with nothing allocated.
    pub const fn new() -> Counting {
        Counting {
            live: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated through it and not yet freed.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

// SAFETY: every call is passed to `System` unchanged; the count is a side
// effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.live.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.live.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // On failure the old block stays, and so does the count.
            if new_size >= layout.size() {
                self.live
                    .fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                self.live
                    .fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// The installed counting allocator, once registered.
static INSTALLED: AtomicPtr<Counting> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `allocator` (the program's `#[global_allocator]`) the one
/// [`used`] reads. The `muse` binary calls it first thing.
pub fn register(allocator: &'static Counting) {
    INSTALLED.store(std::ptr::from_ref(allocator).cast_mut(), Ordering::Release);
}

/// Bytes live in this process per the registered allocator (`None`: none
/// was registered).
pub fn used() -> Option<usize> {
    let p = INSTALLED.load(Ordering::Acquire);
    // SAFETY: only `register` stores here, and it takes a `&'static`.
    unsafe { p.as_ref() }.map(Counting::live)
}

/// Fixes glibc malloc's thresholds, which otherwise adapt: buffers of up to
/// 4 MiB come from the heap, not from a mapping of their own, and the heap
/// keeps up to 16 MiB of freed memory instead of handing it back at once.
/// A connection's buffers grow and empty with every burst it sends
/// (hundreds of KiB for a bulk echo); with the defaults each burst mapped
/// fresh pages and faulted them in (220,000 page faults a second under
/// `echo stream`), which cost more than the copying itself.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_allocations_reallocations_and_frees_exactly() {
        // An instance of its own, called directly: the count is exact
        // whatever the test's other threads allocate meanwhile.
        let a = Counting::new();
        let l1 = Layout::from_size_align(1000, 8).unwrap();
        let l2 = Layout::from_size_align(24, 16).unwrap();
        // SAFETY: each block is freed once, with the layout it has.
        unsafe {
            let p = a.alloc(l1);
            let q = a.alloc_zeroed(l2);
            assert!(!p.is_null() && !q.is_null());
            assert_eq!(a.live(), 1024);
            assert!((0..24).all(|i| *q.add(i) == 0));
            let p = a.realloc(p, l1, 5000);
            assert!(!p.is_null());
            assert_eq!(a.live(), 5024);
            let p = a.realloc(p, Layout::from_size_align(5000, 8).unwrap(), 10);
            assert_eq!(a.live(), 34);
            a.dealloc(p, Layout::from_size_align(10, 8).unwrap());
            a.dealloc(q, l2);
        }
        assert_eq!(a.live(), 0);
    }

    #[test]
    fn a_registered_allocator_is_the_one_read() {
        static A: Counting = Counting::new();
        let v = {
            // SAFETY: freed below with the same layout.
            let p = unsafe { A.alloc(Layout::from_size_align(4096, 8).unwrap()) };
            assert!(!p.is_null());
            p
        };
        // Whatever this test process had registered comes back at the end.
        let before = INSTALLED.load(Ordering::Acquire);
        register(&A);
        assert_eq!(used(), Some(4096));
        // SAFETY: allocated above with this layout.
        unsafe { A.dealloc(v, Layout::from_size_align(4096, 8).unwrap()) };
        assert_eq!(used(), Some(0));
        INSTALLED.store(before, Ordering::Release);
    }
}
