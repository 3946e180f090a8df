//! The scoreboard: a page of memory shared by a server's master and every
//! worker it forks (and, trivially, by threads), holding the connection
//! count that `--max-connections` is checked against, and one slot per
//! worker with its pid, its heartbeat and its own counters.
//!
//! It is the one piece of state that crosses process boundaries in every
//! architecture, so it is plain atomics in `MAP_SHARED` memory, created
//! before the first fork. The master reads heartbeats to find stuck
//! workers, and when a worker dies it subtracts that worker's open
//! connections from the total, so a crash cannot leak admission tickets.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

/// How many worker slots the scoreboard has: the most workers a prefork
/// master runs (`--workers` and `SIGTTIN` stop there).
pub const MAX_WORKERS: usize = 256;

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
}

/// The shared page.
#[repr(C)]
pub struct Scoreboard {
    /// Connections open across the whole server.
    open: AtomicUsize,
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

    /// Admits one more connection for worker `slot` unless `limit` are
    /// already open. The ticket gives the place back when dropped.
    pub fn admit(&'static self, slot: usize, limit: usize) -> Option<Ticket> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let s = &self.slots[slot];
        s.open.fetch_add(1, Ordering::Relaxed);
        s.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Ticket { board: self, slot })
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
        s.pid.store(0, Ordering::Relaxed);
        s.tick_ms.store(0, Ordering::Relaxed);
    }
}

/// One admitted connection's place under `--max-connections`.
pub struct Ticket {
    board: &'static Scoreboard,
    slot: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.board.slots[self.slot]
            .open
            .fetch_sub(1, Ordering::Relaxed);
        self.board.open.fetch_sub(1, Ordering::AcqRel);
    }
}
