//! `prefork-reactor`: a master and N worker processes, each running a
//! reactor.
//!
//! 1. The master binds the listeners, then forks N workers (`--workers`,
//!    default one per CPU).
//! 2. Each worker registers the shared listeners with its own epoll set and
//!    runs the reactor loop: it accepts and serves many clients at once.
//! 3. The master supervises the workers (see `supervisor.rs`); a worker told
//!    to stop closes its listeners, drains its connections, then exits.
//!
//! Trade-off: every CPU busy, thousands of clients per worker, and a crash
//! costs one worker's clients only; but a new connection wakes every worker
//! (the first to accept keeps it, so load can spread unevenly), and workers
//! share nothing but what the master set up before forking. nginx.

use std::io;

use crate::drivers::Ctx;
use crate::net::Listeners;
use crate::server::Server;
use crate::supervisor::Master;

/// Runs the master until it stops.
pub fn serve(server: &Server) -> io::Result<()> {
    Master::new(server, worker).run()
}

fn worker(_: &Server, listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    crate::archs::reactor::serve(listeners, ctx)
}
