//! The scoreboard: memory shared by a server's master and every worker it
//! forks (and, trivially, by threads), holding the connection counts that
//! `--max-connections` and `--max-per-ip` are checked against, and one slot
//! per worker with its pid, its heartbeat and its own counters.
//!
//! It is the one piece of state that crosses process boundaries in every
//! architecture, so it is plain atomics in `MAP_SHARED` memory, created
//! before the first fork. The master reads heartbeats to find stuck
//! workers, and when a worker dies it subtracts that worker's open
//! connections from the total, so a crash cannot leak admission tickets.
//!
//! # The request limit
//!
//! A prefork worker's slot holds its `--max-requests` limit (drawn by the
//! master before the fork) and its count of answers, which its driver adds
//! after each turn (`Ctx::count_requests`: one atomic per turn, none on
//! the hot path of a worker without a limit). The turn that reaches the
//! limit retires the worker: it marks its slot `retiring`, accepts no more
//! connections and drains as on `QUIT`. The answers that reached the limit
//! were sent before the count (a session does not know the worker's
//! limit), so the drain still answers what each connection's client had
//! sent, or sends within the drain's grace, before it learnt: on each
//! kept-alive HTTP connection one more request, with `Connection: close`;
//! the kv commands and calc lines already received; the ftp command under
//! way; an echo connection until its client closes. A worker with one
//! kept-alive HTTP client thus answers its limit plus one.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

/// How many worker slots the scoreboard has: the most workers a prefork
/// master runs (`--workers` and `SIGTTIN` stop there).
pub const MAX_WORKERS: usize = 256;

/// Buckets counting connections per client address for `--max-per-ip`.
/// Addresses are hashed into them, so two clients that share a bucket share
/// a count: with 512 buckets that is rare, and it can only refuse early,
/// never admit more than the limit.
pub const IP_BUCKETS: usize = 512;

/// The bucket of a client address (IPv4-mapped IPv6 counts as IPv4).
pub fn ip_bucket(ip: IpAddr) -> usize {
    let bytes: [u8; 16] = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    // FNV-1a: tiny, and good enough to spread addresses over the buckets.
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % IP_BUCKETS
}

/// One worker's row.
#[repr(C)]
pub struct Slot {
    /// The worker's pid (0: free).
    pub pid: AtomicI32,
    /// `sys::monotonic_ms()` when the worker last showed it was alive.
    pub tick_ms: AtomicU64,
    /// Connections this worker has open.
    pub open: AtomicUsize,
    /// Connections this worker has accepted since it started.
    pub accepted: AtomicU64,
    /// Requests this worker's sessions have finished since it started
    /// (see `Session::take_finished_requests`), added after each turn of
    /// a driver (`Ctx::count_requests`).
    pub requests: AtomicU64,
    /// The requests after which this worker retires (`--max-requests`,
    /// drawn by the master before the fork; 0: never): see the module's
    /// doc for the bound it keeps.
    pub request_limit: AtomicU64,
    /// Set by the worker once it has booted, just before it serves: a
    /// rolling restart waits for it before it retires an old worker, and
    /// a worker that dies without it failed to boot.
    pub ready: AtomicBool,
    /// Set by a worker that reached its request limit: it is draining and
    /// will exit 0 by itself; the master fills its position at once.
    pub retiring: AtomicBool,
    /// Connections taken from this position's hand-off socket
    /// (`--accept handoff`), by its workers or, when one is gone, by the
    /// master that hands them on: the master, which counts what it sent,
    /// knows how many still wait there. Never reset (the socket outlives
    /// the workers).
    pub received: AtomicU64,
    /// This worker's share of the per-address counts.
    per_ip: [AtomicU32; IP_BUCKETS],
}

/// The shared page.
#[repr(C)]
pub struct Scoreboard {
    /// Connections open across the whole server.
    open: AtomicUsize,
    /// Connections open across the whole server, per address bucket.
    per_ip: [AtomicU32; IP_BUCKETS],
    slots: [Slot; MAX_WORKERS],
}

impl Scoreboard {
    /// A new zeroed scoreboard in shared memory. It lives as long as the
    /// process (and the processes forked from it).
    pub fn new() -> std::io::Result<&'static Scoreboard> {
        let mem = sys::shared_memory(std::mem::size_of::<Scoreboard>())?;
        // SAFETY: the mapping is page-aligned (so aligned for atomics), large
        // enough, zero-filled (a valid all-zero Scoreboard), and never freed.
        Ok(unsafe { &*(mem.as_ptr() as *const Scoreboard) })
    }

    /// Worker `slot`'s row.
    pub fn slot(&self, slot: usize) -> &Slot {
        &self.slots[slot]
    }

    /// Connections open across the server.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits one more connection from `peer` for worker `slot`, unless
    /// `limit` are already open, or `per_ip` from the same address. The
    /// ticket gives the places back when dropped.
    pub fn admit(
        &'static self,
        slot: usize,
        limit: usize,
        peer: IpAddr,
        per_ip: usize,
    ) -> Option<Ticket> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let bucket = ip_bucket(peer);
        let from_peer = self.per_ip[bucket].fetch_add(1, Ordering::AcqRel);
        // Unix-domain clients have no address to tell apart (all read as
        // the unspecified one): the per-address limit does not apply.
        if from_peer as usize >= per_ip && !peer.is_unspecified() {
            self.per_ip[bucket].fetch_sub(1, Ordering::AcqRel);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let s = &self.slots[slot];
        s.open.fetch_add(1, Ordering::Relaxed);
        s.per_ip[bucket].fetch_add(1, Ordering::Relaxed);
        s.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            board: self,
            slot,
            bucket,
        })
    }

    /// Records that worker `slot` is alive now.
    pub fn tick(&self, slot: usize) {
        self.slots[slot]
            .tick_ms
            .store(sys::monotonic_ms(), Ordering::Relaxed);
    }

    /// Clears a dead worker's slot and gives back the places its
    /// connections held.
    pub fn release_slot(&self, slot: usize) {
        let s = &self.slots[slot];
        let held = s.open.swap(0, Ordering::AcqRel);
        self.open.fetch_sub(held, Ordering::AcqRel);
        for (mine, all) in s.per_ip.iter().zip(&self.per_ip) {
            let held = mine.swap(0, Ordering::AcqRel);
            if held > 0 {
                all.fetch_sub(held, Ordering::AcqRel);
            }
        }
        s.pid.store(0, Ordering::Relaxed);
        s.tick_ms.store(0, Ordering::Relaxed);
        s.accepted.store(0, Ordering::Relaxed);
        s.requests.store(0, Ordering::Relaxed);
        s.request_limit.store(0, Ordering::Relaxed);
        s.ready.store(false, Ordering::Relaxed);
        s.retiring.store(false, Ordering::Relaxed);
    }
}

/// One admitted connection's place under `--max-connections`.
pub struct Ticket {
    board: &'static Scoreboard,
    slot: usize,
    bucket: usize,
}

impl Scoreboard {
    /// Counts a connection of worker `slot` that was admitted under `from`
    /// under `to` instead (its real client, named by a PROXY header), unless
    /// `to` already has `per_ip` connections open: then `None`, and nothing
    /// changes. The move is undone when the returned guard drops, so the
    /// admission ticket (which may belong to another process: a
    /// process-per-connection parent) releases what it took.
    pub fn move_to(
        &'static self,
        slot: usize,
        from: IpAddr,
        to: IpAddr,
        per_ip: usize,
    ) -> Option<Moved> {
        let (from, to_ip) = (ip_bucket(from), to);
        let to = ip_bucket(to_ip);
        let before = self.per_ip[to].fetch_add(1, Ordering::AcqRel) as usize;
        // In the same bucket, this connection is already among them.
        let others = before - usize::from(from == to);
        if others >= per_ip && !to_ip.is_unspecified() {
            self.per_ip[to].fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.per_ip[from].fetch_sub(1, Ordering::AcqRel);
        let s = &self.slots[slot];
        s.per_ip[to].fetch_add(1, Ordering::Relaxed);
        s.per_ip[from].fetch_sub(1, Ordering::Relaxed);
        Some(Moved {
            board: self,
            slot,
            from,
            to,
        })
    }
}

/// A connection counted under another address than it was admitted with
/// ([`Scoreboard::move_to`]); dropping it moves the count back.
pub struct Moved {
    board: &'static Scoreboard,
    slot: usize,
    from: usize,
    to: usize,
}

impl Drop for Moved {
    fn drop(&mut self) {
        let s = &self.board.slots[self.slot];
        s.per_ip[self.from].fetch_add(1, Ordering::Relaxed);
        s.per_ip[self.to].fetch_sub(1, Ordering::Relaxed);
        self.board.per_ip[self.from].fetch_add(1, Ordering::AcqRel);
        self.board.per_ip[self.to].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let s = &self.board.slots[self.slot];
        s.open.fetch_sub(1, Ordering::Relaxed);
        s.per_ip[self.bucket].fetch_sub(1, Ordering::Relaxed);
        self.board.per_ip[self.bucket].fetch_sub(1, Ordering::AcqRel);
        self.board.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_moved_to_its_real_client_counts_there_until_dropped() {
        let board = Scoreboard::new().unwrap();
        let balancer: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "198.51.100.3".parse().unwrap();
        let a = board.admit(0, 100, balancer, usize::MAX).unwrap();
        let b = board.admit(0, 100, balancer, usize::MAX).unwrap();
        let moved = board.move_to(0, balancer, client, 1).expect("the first");
        assert!(board.move_to(0, balancer, client, 1).is_none(), "over 1");
        let elsewhere = board
            .move_to(0, balancer, other, 1)
            .expect("another client");
        // Moving back and releasing leaves every count at zero: a third
        // connection from `client` fits again, and the balancer's address
        // is back to the two tickets.
        drop(moved);
        let again = board.move_to(0, balancer, client, 1).expect("freed");
        drop((again, elsewhere, a, b));
        assert_eq!(board.per_ip[ip_bucket(balancer)].load(Ordering::SeqCst), 0);
        assert_eq!(board.per_ip[ip_bucket(client)].load(Ordering::SeqCst), 0);
        assert_eq!(board.slot(0).open.load(Ordering::SeqCst), 0);
        // The same bucket: the connection does not count against itself.
        let t = board.admit(0, 100, client, usize::MAX).unwrap();
        let same = board.move_to(0, client, client, 1).expect("itself only");
        drop((same, t));
    }
}
