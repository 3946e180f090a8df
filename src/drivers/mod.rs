//! Drivers move bytes between sockets and sessions. There are four, and
//! every architecture uses one of them:
//!
//! - [`blocking`]: one session on one blocking socket, in whatever thread
//!   or process the architecture gives it;
//! - [`evented`]: many sessions on one epoll loop (mio), never blocking;
//! - [`task`]: one tokio task per session;
//! - [`proactor`]: many sessions on one io_uring ring, told of completions
//!   instead of readiness.
//!
//! All of them share [`conn::Connection`], which does the actual moving, and
//! [`channel::Channel`], which runs side-channel transfers; a driver only
//! decides how to wait. Driver code knows nothing of any protocol.

pub mod blocking;
pub mod channel;
pub mod conn;
pub mod evented;
pub mod proactor;
pub mod secure;
pub mod task;
mod timers;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::Accepted;
use crate::scoreboard::{Scoreboard, Ticket};
use crate::session::Protocol;
use crate::shutdown::Shutdown;

pub use timers::Timers;

/// The size of a driver's read buffer: large enough that bulk transfers
/// take few system calls, small enough to keep per-thread.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Everything a serving thread needs to know about its server.
#[derive(Clone)]
pub struct Ctx {
    /// The protocol, shared by every session of the server.
    pub protocol: Arc<dyn Protocol>,
    /// This process's shutdown switch.
    pub shutdown: Shutdown,
    /// The server's scoreboard.
    pub board: &'static Scoreboard,
    /// This worker's slot on the scoreboard (0 outside the prefork family).
    pub slot: usize,
    /// `--max-connections`.
    pub max_connections: usize,
    /// `--max-per-ip`.
    pub max_per_ip: usize,
    /// In a prefork worker, its master's pid, told (`SIGCHLD`) when this
    /// worker becomes ready or retires itself; 0 elsewhere.
    pub master: libc::pid_t,
}

impl Ctx {
    /// Admits a new connection from `peer` under `--max-connections` and
    /// `--max-per-ip`, or refuses it.
    pub fn admit(&self, peer: std::net::IpAddr) -> Option<Ticket> {
        self.board
            .admit(self.slot, self.max_connections, peer, self.max_per_ip)
    }

    /// Records that this worker is alive.
    pub fn tick(&self) {
        self.board.tick(self.slot);
    }

    /// Marks this worker ready: it has booted and is about to accept.
    /// Called by every loop that accepts, first thing (the threads of a
    /// pool each call it; only the first one counts). A prefork master is
    /// told at once, so a rolling restart goes on without waiting for its
    /// next look.
    pub fn ready(&self) {
        let slot = self.board.slot(self.slot);
        if !slot.ready.swap(true, Ordering::AcqRel) {
            self.tell_master();
        }
    }

    /// Counts `n` requests finished by this worker's sessions (what
    /// [`conn::Connection::take_finished_requests`] returned after a
    /// `process` call). A worker that reaches its request limit
    /// (`--max-requests`) retires: it drains as on `QUIT` (stops accepting,
    /// finishes its connections) and exits 0, and marks itself retiring so
    /// that its master replaces it without waiting for the exit.
    ///
    /// Outside a prefork worker nothing reads the count and no limit
    /// applies: nothing is done, so that the threads of a single-process
    /// server do not contend for one cache line on every request.
    #[inline]
    pub fn count_requests(&self, n: u32) {
        if n == 0 || self.master == 0 {
            return;
        }
        let slot = self.board.slot(self.slot);
        let total = slot.requests.fetch_add(u64::from(n), Ordering::Relaxed) + u64::from(n);
        let limit = slot.request_limit.load(Ordering::Relaxed);
        if limit != 0 && total >= limit && !slot.retiring.swap(true, Ordering::AcqRel) {
            self.shutdown.begin(None);
            self.tell_master();
        }
    }

    /// Wakes the prefork master (if any) to look at the scoreboard: it
    /// handles `SIGCHLD`, the signal that already means "look at your
    /// children".
    fn tell_master(&self) {
        if self.master > 0 {
            crate::sys::kill(self.master, libc::SIGCHLD);
        }
    }

    /// The driver's view of the world at `now`.
    pub fn env(&self, now: Instant) -> conn::Env {
        conn::Env {
            now,
            draining: self.shutdown.is_draining(),
            board: self.board,
            slot: self.slot,
        }
    }

    /// Refuses a connection at the limit with the protocol's own words.
    pub fn refuse(&self, accepted: Accepted) {
        // A TLS client could not read a plaintext refusal: it is closed.
        let refusal = if accepted.tls {
            &[][..]
        } else {
            self.protocol.refusal()
        };
        crate::net::refuse(accepted.stream, refusal);
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_SIZE]);
}

/// Runs `f` with this thread's read buffer. Drivers whose sessions share a
/// thread (the blocking pool threads, tokio workers) share one buffer, so a
/// thousand idle connections do not each hold 64 KiB.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// How often a busy loop stamps its heartbeat: often enough for a
/// `--worker-timeout` of seconds, rarely enough that threads sharing a
/// worker's slot do not fight over its cache line on every request.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// A loop's heartbeat, stamped at most every [`HEARTBEAT_EVERY`].
#[derive(Debug)]
pub struct Heartbeat {
    next: Instant,
}

impl Heartbeat {
    /// A heartbeat due at once.
    pub fn new() -> Heartbeat {
        Heartbeat {
            next: Instant::now(),
        }
    }

    /// Stamps the worker's heartbeat if it is due at `now`.
    pub fn beat(&mut self, ctx: &Ctx, now: Instant) {
        if now >= self.next {
            ctx.tick();
            self.next = now + HEARTBEAT_EVERY;
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat::new()
    }
}

/// The earliest of some optional instants.
pub fn earliest(instants: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    instants.into_iter().flatten().min()
}

/// How long to wait from `now` until `at` (`None`: `cap`), never more than `cap`.
pub fn wait_for(at: Option<Instant>, now: Instant, cap: Duration) -> Duration {
    at.map_or(cap, |at| at.saturating_duration_since(now).min(cap))
}
