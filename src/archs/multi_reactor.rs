//! `multi-reactor`: one reactor per thread, all on the same listeners.
//!
//! 1. Start N threads (`--threads`, default one per CPU).
//! 2. Each has its own listeners on the server's addresses, bound at start
//!    with `SO_REUSEPORT`, so the kernel spreads new connections evenly over the
//!    threads, and runs the reactor loop over them: a connection stays on
//!    the thread that accepted it for its whole life.
//! 3. On shutdown, each stops accepting and drains its own connections.
//!
//! Trade-off: every CPU is used and no state is shared between threads on
//! the hot path; but the spread is by hash, not by load, so a busy
//! connection cannot move to an idle thread (tokio's work stealing can).
//! Thread-per-core servers (Seastar, nginx with `reuseport`).
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

/// Runs one reactor on `listeners` and one on each group of `siblings`
/// (made by `Server::bind`, one per thread after the first, so that a hot
/// restart can pass them all on) until the server drains.
pub fn serve(listeners: &Listeners, siblings: &[Listeners], ctx: &Ctx) -> io::Result<()> {
    crate::archs::loop_per_thread(
        "reactor",
        listeners,
        siblings,
        ctx,
        |group, ctx| Reactor::new(group, ctx, 0),
        Reactor::run,
    )
}
