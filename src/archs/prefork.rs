//! `prefork`: a master and N single-client worker processes.
//!
//! 1. The master binds the listeners, then forks N workers (`--workers`).
//! 2. Each worker waits for a connection on the shared listeners, serves it
//!    with the blocking driver until it closes, and waits again.
//! 3. The master supervises: restarts a worker that dies (with back-off),
//!    kills one that hangs, adds or removes one on `TTIN`/`TTOU`, and
//!    forwards shutdown (see `supervisor.rs`).
//!
//! Trade-off: fork cost is paid once, a crash loses one worker (which the
//! master replaces) and blocking code is simple; but each worker holds one
//! client at a time, so N bounds concurrency and an idle client occupies a
//! whole process. Unicorn, Apache's prefork MPM.

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
