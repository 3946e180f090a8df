//! How much memory the server uses, for `INFO memory`: the resident set
//! size the kernel reports for this process (`/proc/self/statm`), which
//! counts everything the store holds and what the allocator keeps.

/// Resident bytes of this process (0 if the kernel does not say).
pub fn used() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
