//! `multi-reactor`: one reactor per thread, all on the same listeners.
//!
//! 1. Start N threads (`--threads`, default one per CPU).
//! 2. Each registers the shared listeners with its own epoll set and runs
//!    the reactor loop: whichever thread accepts a connection serves it for
//!    its whole life.
//! 3. On shutdown, each stops accepting and drains its own connections.
//!
//! Trade-off: every CPU is used and no state is shared between threads on
//! the hot path; but a new connection wakes every reactor and the first to
//! accept it keeps it, so load can spread unevenly, and a busy connection
//! cannot move to an idle thread. Thread-per-core servers.

use std::io;

use crate::drivers::evented::Reactor;
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs `threads` reactors until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx, threads: usize) -> io::Result<()> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let ctx = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("reactor-{i}"))
                    .spawn_scoped(scope, move || Reactor::new(listeners, ctx, 0)?.run())
            })
            .collect::<io::Result<_>>()?;
        for h in handles {
            h.join()
                .map_err(|_| io::Error::other("a reactor thread panicked"))??;
        }
        Ok(())
    })
}
