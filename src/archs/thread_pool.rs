//! `thread-pool`: a fixed set of threads that each accept and serve.
//!
//! 1. Start N threads (`--threads`).
//! 2. Each waits for a connection on the shared listeners, serves it with
//!    the blocking driver until it closes, and waits again.
//! 3. On shutdown, each stops accepting and finishes its client.
//!
//! Trade-off: thread creation is off the accept path and the thread count is
//! bounded, so memory is predictable; but at most N clients are served at
//! once, and the N+1th waits in the backlog however idle the N are. A panic
//! in a session is caught, so the pool keeps its size. Puma's threads,
//! Python's `ThreadPoolExecutor` servers.
//!
//! Operations: `USR2` (hot restart) and `HUP` (reload) work here; the
//! rolling restart (`USR1`), `--max-requests` and `--max-worker-memory`
//! are the prefork family's, since this architecture has no worker
//! processes to replace one at a time (they are ignored here), and so are
//! the `--accept` strategies (refused here).

use std::io;

use crate::archs::{accept_loop, serve_contained};
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs `threads` threads until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx, threads: usize) -> io::Result<()> {
    std::thread::scope(|scope| {
        for i in 0..threads {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("pool-{i}"))
                .stack_size(crate::archs::thread_per_connection::STACK_SIZE)
                .spawn_scoped(scope, move || {
                    accept_loop(listeners, &ctx, |accepted, ticket| {
                        serve_contained(accepted, Some(ticket), &ctx)
                    })
                })?;
        }
        Ok(())
    })
}
