//! The login gate: a bound on FTP password checks under way, per server and
//! per client address, shared by every process of the server.
//!
//! An argon2 check costs ~19 MiB and tens of milliseconds of CPU. Unbounded,
//! 150 clients failing logins at once take a server to gigabytes and
//! queue a valid login behind all of them. So a session takes a
//! [`LoginPermit`] before asking for a check and moves it into the
//! computation, which drops it when the check ends. Without a place it
//! waits, holding no thread and no hash memory, and tries again a little
//! later (the session's `LOGIN_RETRY`) until its login deadline. One address
//! holds at most `per_ip` places, so a flood from one address delays only
//! itself, and a valid login from another address gets a place at once.
//!
//! The places are slots in `MAP_SHARED` memory made before the first fork,
//! each claimed by a compare-and-swap of its owner's pid: prefork workers
//! and process-per-connection children share them. A process killed while
//! holding places cannot leak them: a slot whose owner no longer exists is
//! reclaimed when the gate looks full.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::scoreboard::ip_bucket;

/// The most places a gate can have.
pub const MAX_TOTAL: usize = 64;

/// Places per client address: two checks under way from one address, so a
/// client that retries at once is not refused by its own previous attempt.
pub const DEFAULT_PER_IP: usize = 2;

/// Places per server: two checks per CPU keep every core busy with hashing
/// when logins are many, and bound memory at ~19 MiB a place.
pub fn default_total() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cpus).clamp(2, MAX_TOTAL)
}

#[repr(C)]
#[derive(Debug)]
struct Slot {
    /// The holder's pid (0: free).
    owner: AtomicI32,
    /// The holder's address bucket.
    bucket: AtomicU32,
}

/// The shared places (see the module documentation).
#[derive(Clone, Copy)]
pub struct LoginGate {
    slots: &'static [Slot],
    per_ip: usize,
}

impl std::fmt::Debug for LoginGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGate")
            .field("total", &self.slots.len())
            .field("per_ip", &self.per_ip)
            .finish()
    }
}

/// One place at the gate, given back when dropped.
#[derive(Debug)]
pub struct LoginPermit {
    slot: &'static Slot,
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        self.slot.owner.store(0, Ordering::Release);
    }
}

impl LoginGate {
    /// A gate of `total` places (at most [`MAX_TOTAL`]), `per_ip` of them
    /// for one address, in memory shared with processes forked later.
    pub fn new(total: usize, per_ip: usize) -> std::io::Result<LoginGate> {
        let total = total.clamp(1, MAX_TOTAL);
        let mem = crate::sys::shared_memory(total * std::mem::size_of::<Slot>())?;
        // SAFETY: the mapping is page-aligned, zero-filled (all slots free)
        // and never unmapped; Slot is plain atomics.
        let slots = unsafe { std::slice::from_raw_parts(mem.as_ptr() as *const Slot, total) };
        Ok(LoginGate {
            slots,
            per_ip: per_ip.max(1),
        })
    }

    /// A place for a check from `ip`, if the server and that address have
    /// one free.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<LoginPermit> {
        let bucket = ip_bucket(ip) as u32;
        let me = std::process::id() as i32;
        for reclaim in [false, true] {
            let mut from_ip = 0;
            for slot in self.slots {
                let owner = slot.owner.load(Ordering::Acquire);
                if owner == 0 {
                    continue;
                }
                if reclaim && !alive(owner) {
                    // Its process died holding it.
                    let _ =
                        slot.owner
                            .compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed);
                } else if slot.bucket.load(Ordering::Relaxed) == bucket {
                    from_ip += 1;
                }
            }
            if from_ip >= self.per_ip {
                if reclaim {
                    return None;
                }
                continue;
            }
            // Claim a free slot; another process may race for it, so try
            // each free one in turn.
            for slot in self.slots {
                if slot
                    .owner
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.bucket.store(bucket, Ordering::Relaxed);
                    // Count again now that the slot is ours: two claims from
                    // one address racing past the count give one back.
                    let held = self
                        .slots
                        .iter()
                        .filter(|s| {
                            !std::ptr::eq(*s, slot)
                                && s.owner.load(Ordering::Acquire) != 0
                                && s.bucket.load(Ordering::Relaxed) == bucket
                        })
                        .count();
                    let permit = LoginPermit { slot };
                    if held >= self.per_ip {
                        return None;
                    }
                    return Some(permit);
                }
            }
        }
        None
    }

    /// Places held now (for tests and status).
    pub fn held(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.owner.load(Ordering::Acquire) != 0)
            .count()
    }
}

/// Whether process `pid` exists.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bounds_per_server_and_per_address_and_gives_back_on_drop() {
        let gate = LoginGate::new(3, 2).unwrap();
        let a1 = gate.try_acquire(ip("10.0.0.1")).unwrap();
        let a2 = gate.try_acquire(ip("10.0.0.1")).unwrap();
        assert!(gate.try_acquire(ip("10.0.0.1")).is_none(), "per address");
        let b1 = gate.try_acquire(ip("10.0.0.2")).unwrap();
        assert!(gate.try_acquire(ip("10.0.0.3")).is_none(), "per server");
        assert_eq!(gate.held(), 3);
        drop(a1);
        assert!(gate.try_acquire(ip("10.0.0.3")).is_some());
        drop((a2, b1));
        assert_eq!(gate.held(), 0);
    }

    #[test]
    fn a_dead_process_places_are_reclaimed() {
        let gate = LoginGate::new(1, 1).unwrap();
        // SAFETY: the child only takes a place and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let p = gate.try_acquire(ip("10.0.0.9"));
            std::mem::forget(p);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(gate.held(), 1, "the child died holding its place");
        assert!(gate.try_acquire(ip("10.0.0.1")).is_some(), "reclaimed");
    }

    #[test]
    fn threads_racing_never_pass_the_bounds() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let gate = LoginGate::new(4, 2).unwrap();
        let held = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let total = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let held = Arc::clone(&held);
                let total = Arc::clone(&total);
                std::thread::spawn(move || {
                    let who = t % 2;
                    let addr = ip(if who == 0 { "10.0.0.1" } else { "10.0.0.2" });
                    for _ in 0..2000 {
                        if let Some(p) = gate.try_acquire(addr) {
                            let h = held[who].fetch_add(1, Ordering::SeqCst) + 1;
                            let all = total.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(h <= 2, "{h} from one address");
                            assert!(all <= 4, "{all} in all");
                            held[who].fetch_sub(1, Ordering::SeqCst);
                            total.fetch_sub(1, Ordering::SeqCst);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gate.held(), 0);
    }
}
