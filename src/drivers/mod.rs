//! Drivers move bytes between sockets and sessions. There are three, and
//! every architecture uses one of them:
//!
//! - [`blocking`]: one session on one blocking socket, in whatever thread
//!   or process the architecture gives it;
//! - [`evented`]: many sessions on one epoll loop (mio), never blocking;
//! - [`task`]: one tokio task per session.
//!
//! All three share [`conn::Connection`], which does the actual moving, and
//! [`channel::Channel`], which runs side-channel transfers; a driver only
//! decides how to wait. Driver code knows nothing of any protocol.

pub mod blocking;
pub mod channel;
pub mod conn;
pub mod evented;
pub mod task;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::Accepted;
use crate::scoreboard::{Scoreboard, Ticket};
use crate::session::Protocol;
use crate::shutdown::Shutdown;

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
        crate::net::refuse(accepted.stream, self.protocol.refusal());
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
