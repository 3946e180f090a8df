//! `thread-per-connection`: a new thread for every client.
//!
//! 1. Wait for a connection on any listener.
//! 2. Spawn a thread that serves it with the blocking driver and exits.
//! 3. Go back to 1. On shutdown, stop accepting and wait for the threads.
//!
//! Trade-off: straight-line blocking code per client, and clients never wait
//! for each other; but each client costs a thread (a stack, a kernel task,
//! scheduler work), thread creation is on the accept path, and thousands of
//! mostly idle clients mean thousands of threads. WEBrick and Mongrel.
//!
//! Operations: `USR2` (hot restart) and `HUP` (reload) work here; the
//! rolling restart (`USR1`), `--max-requests` and `--max-worker-memory`
//! are the prefork family's, since this architecture has no worker
//! processes to replace one at a time (they are ignored here), and so are
//! the `--accept` strategies (refused here).

use std::io;

use crate::archs::{accept_loop, serve_contained, wait_drained};
use crate::drivers::Ctx;
use crate::net::Listeners;

/// Stack size of a connection thread: the drivers and sessions keep their
/// buffers on the heap, so a small stack suffices and idle threads stay cheap.
pub const STACK_SIZE: usize = 256 * 1024;

/// Runs until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    accept_loop(listeners, ctx, |accepted, ticket| {
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || serve_contained(accepted, Some(ticket), &ctx));
        if let Err(e) = spawned {
            // The closure (with the connection and its ticket) was dropped.
            crate::log::warn(format_args!("cannot start a connection thread: {e}"));
        }
    });
    wait_drained(ctx);
    Ok(())
}
