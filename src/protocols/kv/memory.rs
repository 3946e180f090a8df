//! How much memory the server uses, for `INFO memory` and `--maxmemory`:
//! the counting allocator's live bytes (`used_memory`, as Redis reports
//! its allocator's count), and the resident set size the kernel reports
//! for this process (`used_memory_rss`), which also counts what the
//! allocator keeps and the threads' stacks.

/// Bytes in use: the counting allocator's live bytes when the program
/// installed one (the `muse` binary does), else the resident set size.
pub fn used() -> u64 {
    crate::allocator::used().map_or_else(rss, |n| n as u64)
}

/// Resident bytes of this process (0 if the kernel does not say).
pub fn rss() -> u64 {
    crate::sys::resident_bytes(crate::sys::getpid()).unwrap_or(0)
}
