//! `serial`: one client at a time.
//!
//! 1. Wait for a connection on any listener.
//! 2. Serve it with the blocking driver until it closes.
//! 3. Go back to 1.
//!
//! Trade-off: the simplest server there is, with no concurrency bugs to
//! have; but every other client waits in the kernel's backlog while one is
//! served, so one slow or idle client stalls everyone. The baseline the
//! others are measured against.
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

/// Runs until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx) -> io::Result<()> {
    accept_loop(listeners, ctx, |accepted, ticket| {
        serve_contained(accepted, Some(ticket), ctx)
    });
    Ok(())
}
