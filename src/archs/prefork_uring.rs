//! `prefork-uring`: a master and N worker processes, each running a
//! proactor on its own io_uring ring.
//!
//! 1. The master binds the listeners, then forks N workers (`--workers`,
//!    default one per CPU).
//! 2. Each worker arms a multishot accept on the shared listeners in its own
//!    ring and runs the proactor loop (see `uring.rs`).
//! 3. The master supervises the workers (see `supervisor.rs`); a worker told
//!    to stop cancels its accepts, drains its connections, then exits.
//!
//! Trade-off: `prefork-reactor`'s (every CPU, a crash costs one worker's
//! clients, an uneven spread on the shared accept queue unless `--accept
//! reuseport` or `handoff`) with the proactor's cheaper turns. nginx's
//! shape, on io_uring.

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
    crate::archs::uring::serve(listeners, ctx)
}
