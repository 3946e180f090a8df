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
//! costs one worker's clients only; but with the shared accept queue
//! (`--accept shared`) a new connection wakes every worker and the first to
//! accept keeps it, so load spreads unevenly, and workers share nothing but
//! what the master set up before forking. nginx.
//!
//! `--accept` (see `accept.rs` for the measurements): with 50 kept echo
//! connections on three workers, the shared queue left them all to one
//! worker in two runs of three (worker CPU 84/16/0 % over the runs, 166k
//! req/s), `reuseport`'s hashing spread them 35/34/31 % (213k req/s) and
//! least-busy hand-off 34/33/32 % (204k req/s); with a new connection per
//! request, hand-off's extra hop through the master cost a third more CPU
//! per connection (20.6k requests per CPU-second against 30.9k shared and
//! 26.8k reuseport). nginx's `reuseport` listen option.

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
