//! `reactor`: one thread, one epoll set, every connection.
//!
//! 1. Register the listeners with epoll.
//! 2. Wait for readiness or the nearest timer.
//! 3. Accept until the listener would block; for each ready connection, let
//!    its session consume what arrived and write what it answers, until the
//!    socket would block.
//! 4. Fire due timers; go back to 2.
//!
//! Trade-off: no thread per client, so ten thousand idle clients cost only
//! their buffers, and no locks at all; but one CPU, and any session that
//! computes for long (or a blocking call) stalls every client. Node,
//! EventMachine, Twisted, Redis.
//!
//! Operations: `USR2` (hot restart) and `HUP` (reload) work here; the
//! rolling restart (`USR1`), `--max-requests` and `--max-worker-memory`
//! are the prefork family's, since this architecture has no worker
//! processes to replace one at a time (they are ignored here), and so are
//! the `--accept` strategies (refused here).

use std::io;

use crate::drivers::evented::Reactor;
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs the reactor until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    Reactor::new(listeners, ctx.clone(), 0)?.run()
}
