//! `multi-reactor`: one reactor per thread, all on the same listeners.
//!
//! 1. Start N threads (`--threads`, default one per CPU).
//! 2. Each binds its own listeners on the server's addresses with
//!    `SO_REUSEPORT`, so the kernel spreads new connections evenly over the
//!    threads, and runs the reactor loop over them: a connection stays on
//!    the thread that accepted it for its whole life.
//! 3. On shutdown, each stops accepting and drains its own connections.
//!
//! Trade-off: every CPU is used and no state is shared between threads on
//! the hot path; but the spread is by hash, not by load, so a busy
//! connection cannot move to an idle thread (tokio's work stealing can).
//! Thread-per-core servers (Seastar, nginx with `reuseport`).

use std::io;

use crate::drivers::evented::Reactor;
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs `threads` reactors until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx, threads: usize) -> io::Result<()> {
    // Thread 0 uses the server's listeners; the others get siblings.
    let siblings = (1..threads)
        .map(|_| listeners.sibling())
        .collect::<io::Result<Vec<_>>>()?;
    let groups: Vec<&Listeners> = std::iter::once(listeners).chain(siblings.iter()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(i, group)| {
                let ctx = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("reactor-{i}"))
                    .spawn_scoped(scope, move || Reactor::new(group, ctx, 0)?.run())
            })
            .collect::<io::Result<_>>()?;
        for h in handles {
            h.join()
                .map_err(|_| io::Error::other("a reactor thread panicked"))??;
        }
        Ok(())
    })
}
