//! `uring`: one thread, one io_uring ring, every connection.
//!
//! 1. Arm a multishot accept on each listener.
//! 2. Submit what the last turn queued and wait for completions or the
//!    nearest timer, in one system call.
//! 3. For each completion: a new connection (arm its multishot receive), bytes
//!    received (the session consumes them; what it answers is queued as a
//!    send), a send finished (queue the next).
//! 4. Fire due timers; go back to 2.
//!
//! Trade-off: the reactor's shape (one CPU, no locks, a slow session stalls
//! everyone) with fewer system calls: the kernel reads and sends for the
//! loop and one `io_uring_enter` per turn carries every connection's
//! operations; the price is a copy of each answer into a send buffer the
//! kernel owns until it is sent, 1 MiB of receive buffers per ring (4 MiB
//! before Linux 6.12, which cannot fill a buffer in steps), and a
//! kernel that allows io_uring (Linux 6.0 or later, not disabled by sysctl
//! or seccomp). monoio's and Glommio's runtimes, TigerBeetle's I/O.
//!
//! Operations: as `reactor`.

use std::io;

use crate::drivers::proactor::Proactor;
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs the proactor until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    Proactor::new(listeners, ctx.clone())?.run()
}
