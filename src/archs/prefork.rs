//! `prefork`: a master and N single-client worker processes.
//!
//! 1. The master binds the listeners, then forks N workers (`--workers`).
//! 2. Each worker waits for a connection on the shared listeners, serves it
//!    with the blocking driver until it closes, and waits again.
//! 3. The master supervises: restarts a worker that dies (with back-off),
//!    kills one that hangs, adds or removes one on `TTIN`/`TTOU`, replaces
//!    them one at a time on `USR1`, recycles one past `--max-requests` or
//!    `--max-worker-memory`, and forwards shutdown (see `supervisor.rs`).
//!
//! Trade-off: fork cost is paid once, a crash loses one worker (which the
//! master replaces) and blocking code is simple; but each worker holds one
//! client at a time, so N bounds concurrency and an idle client occupies a
//! whole process. Unicorn, Apache's prefork MPM.
//!
//! `--accept` (see `accept.rs`): a worker holds one client, so it must only
//! get a connection when it is free. The shared queue does that by itself
//! (only idle workers wait in `accept`; the herd they make is the cost), and
//! hand-off does it by sending each connection to a worker with nothing
//! open. `reuseport` does not: the kernel hashes a connection to a socket
//! whatever its worker is doing, and in the bench four kept clients on four
//! workers hashed two and two onto two workers in both runs, so two of them
//! stalled behind busy workers while two workers idled.

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
    crate::archs::serial::serve(listeners, ctx)
}
