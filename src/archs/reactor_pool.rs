//! `reactor-pool`: a reactor for waiting, a thread pool for work.
//!
//! 1. One reactor thread watches the listeners and every connection.
//! 2. When a connection is ready, the reactor hands it to the pool.
//! 3. A pool thread (`--threads`) lets the session read what arrived, do its
//!    work and write its answer, then hands the connection back.
//! 4. The reactor takes it back and watches it again.
//!
//! Trade-off: slow session work no longer stalls the loop, and idle clients
//! still cost no thread; but every request crosses threads twice (a queue,
//! a wake-up, a lock), which costs latency on small requests. Puma's
//! reactor, EventMachine's `defer`.
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

/// Runs the reactor and its pool until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx, threads: usize) -> io::Result<()> {
    Reactor::new(listeners, ctx.clone(), threads.max(1))?.run()
}
