//! The in-process shutdown switch shared by every thread of one server
//! process.
//!
//! A server process runs until [`Shutdown::begin`] is called (by its signal
//! watcher, or by a test). From then on it is *draining*: loops stop
//! accepting, sessions are told (`handle_shutdown`), and connections still
//! open at the deadline are closed. The switch also owns a pipe that becomes
//! readable, and stays readable, once draining starts, so that any thread
//! waiting in `poll`, epoll or tokio can include it in its wait.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys;

/// A cloneable handle to one process's shutdown state.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    draining: AtomicBool,
    /// Nanoseconds after `epoch` at which remaining connections are closed;
    /// `u64::MAX`: no deadline (wait for every connection).
    deadline_ns: AtomicU64,
    epoch: Instant,
    read: OwnedFd,
    write: OwnedFd,
}

impl Shutdown {
    /// A switch in the running position.
    pub fn new() -> std::io::Result<Shutdown> {
        let (read, write) = sys::pipe()?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                draining: AtomicBool::new(false),
                deadline_ns: AtomicU64::new(u64::MAX),
                epoch: Instant::now(),
                read,
                write,
            }),
        })
    }

    /// Starts draining; connections still open at `deadline` are closed
    /// (`None`: wait for all of them). Calling it again can only bring the
    /// deadline closer.
    pub fn begin(&self, deadline: Option<Instant>) {
        let ns = match deadline {
            None => u64::MAX,
            Some(d) => d.saturating_duration_since(self.inner.epoch).as_nanos() as u64,
        };
        self.inner.deadline_ns.fetch_min(ns, Ordering::SeqCst);
        if !self.inner.draining.swap(true, Ordering::SeqCst) {
            sys::poke(self.inner.write.as_raw_fd());
        }
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// When remaining connections are closed, if draining has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        match self.inner.deadline_ns.load(Ordering::SeqCst) {
            u64::MAX => None,
            ns => Some(self.inner.epoch + Duration::from_nanos(ns)),
        }
    }

    /// Whether the drain deadline has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.is_draining() && self.deadline().is_some_and(|d| now >= d)
    }

    /// A descriptor that is readable once draining has started. Never read
    /// from it: it must stay readable for every other waiter.
    pub fn wake_fd(&self) -> RawFd {
        self.inner.read.as_raw_fd()
    }
}
