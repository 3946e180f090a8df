//! `prefork-threads`: a master and N worker processes, each with a pool of
//! threads.
//!
//! 1. The master binds the listeners, then forks N workers (`--workers`).
//! 2. Each worker starts M threads (`--threads`) (threads only after the
//!    fork) that each accept on the shared listeners and serve one client at
//!    a time with the blocking driver.
//! 3. The master supervises the workers (see `supervisor.rs`).
//!
//! Trade-off: N×M clients at once on N processes, with a crash costing one
//! worker's clients instead of the server; but threads in a worker share its
//! fate, and memory grows with N×M stacks. Puma's cluster mode, Gunicorn's
//! `gthread` worker.
//!
//! `--accept` (see `accept.rs`): every pool thread of every worker waits on
//! the shared queue, so each connection wakes N×M threads; `reuseport`
//! wakes only one worker's M, and was the cheapest in the bench (a
//! connection per echo request, three workers of eight threads: 15.7k
//! requests per CPU-second, against 12.4k shared and 9.0k for hand-off,
//! whose master took a fifth of the CPU), at the risk of hashing more than
//! M kept clients onto one worker, where the extra ones wait.

use std::io;

use crate::drivers::Ctx;
use crate::net::Listeners;
use crate::server::Server;
use crate::supervisor::Master;

/// Runs the master until it stops.
pub fn serve(server: &Server) -> io::Result<()> {
    Master::new(server, worker).run()
}

fn worker(server: &Server, listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    crate::archs::thread_pool::serve(listeners, ctx, server.config.threads)
}
