//! `multi-uring`: one io_uring ring per thread, each on its own listeners.
//!
//! 1. Start N threads (`--threads`, default one per CPU).
//! 2. Each has its own listeners on the server's addresses, bound at start
//!    with `SO_REUSEPORT` (the kernel spreads new connections over them by
//!    hash), and runs the proactor loop (see `uring.rs`) over them; a
//!    connection stays on its thread for its whole life.
//! 3. On shutdown, each stops accepting and drains its own connections.
//!
//! Trade-off: `multi-reactor`'s (every CPU, nothing shared on the hot path,
//! no moving a busy connection to an idle thread) with `uring`'s cheaper
//! turns. Thread-per-core runtimes: monoio, Glommio, Seastar.
//!
//! Operations: as `multi-reactor`.

use std::io;

use crate::drivers::proactor::Proactor;
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Runs one proactor on `listeners` and one on each group of `siblings`
/// (one per thread after the first, bound by `Server::bind`) until the
/// server drains.
pub fn serve(listeners: &Listeners, siblings: &[Listeners], ctx: &Ctx) -> io::Result<()> {
    crate::archs::loop_per_thread(
        "uring",
        listeners,
        siblings,
        ctx,
        Proactor::new,
        Proactor::run,
    )
}
