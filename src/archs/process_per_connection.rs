//! `process-per-connection`: a new process for every client.
//!
//! 1. Wait for a connection (or a signal) in the single-threaded parent.
//! 2. Fork; the child serves the connection with the blocking driver and
//!    exits.
//! 3. The parent closes its copy of the connection, reaps children that
//!    have exited, and goes back to 1.
//!
//! Trade-off: the strongest isolation there is (a crash, a leak or a hang
//! dies with its client's process) and plain blocking code; but a `fork` per
//! connection is the most expensive way to start serving, and each client
//! costs a whole process. inetd, "shotgun" servers, early CGI.
//!
//! Operations: `USR2` (hot restart) and `HUP` (reload, for the connections
//! accepted from then on) work here; the rolling restart (`USR1`),
//! `--max-requests` and `--max-worker-memory` are the prefork family's:
//! each child already serves one connection and ends (they are ignored
//! here), and so are the `--accept` strategies (refused here).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::net::{AcceptError, AcceptPause, Accepted, EXHAUSTED_BACKOFF};
use crate::server::{serve_with_signals, Server};
use crate::supervisor::KILL_GRACE;
use crate::sys::{self, Forked};
use crate::{log, signals};

/// The exit status of a child that panicked (EX_SOFTWARE).
const CHILD_PANICKED: i32 = 70;

/// Runs the parent until a signal stops it and every child is gone.
pub fn serve(server: &Server) -> io::Result<()> {
    let parent = sys::getpid();
    // Each child's admission ticket, held here until the child is reaped.
    let mut children: HashMap<libc::pid_t, crate::scoreboard::Ticket> = HashMap::new();
    let mut stopping: Option<Option<Instant>> = None;
    // The stop's deadline passed: the children left are being killed.
    let mut killing = false;
    let mut ready = Vec::new();
    let wake = [signals::wake_fd()];
    loop {
        // Reap every child that has exited (the protocol's companion
        // process too, if it has one: restarted after its back-off).
        while let Some((pid, how)) = sys::reap_any() {
            if children.remove(&pid).is_none() {
                server.child_exited(pid, how);
            }
        }
        let got = signals::take();
        let now = Instant::now();
        if got.has(libc::SIGTERM) || got.has(libc::SIGINT) {
            stopping = Some(Some(now + server.config.shutdown_timeout + KILL_GRACE));
            children
                .keys()
                .for_each(|&pid| sys::kill(pid, libc::SIGTERM));
        } else if got.has(libc::SIGUSR2) {
            server.hot_restart(stopping.is_some());
        } else if got.has(libc::SIGHUP) {
            // For the connections accepted from now on.
            server.reload();
        } else if got.has(libc::SIGQUIT) && stopping.is_none() {
            stopping = Some(None);
            children
                .keys()
                .for_each(|&pid| sys::kill(pid, libc::SIGQUIT));
        }
        if let Some(deadline) = stopping {
            if children.is_empty() {
                return Ok(());
            }
            if deadline.is_some_and(|d| now >= d) {
                if !killing {
                    killing = true;
                    log::warn(format_args!(
                        "{} connection process(es) still running past the shutdown timeout; killing them",
                        children.len()
                    ));
                }
                children
                    .keys()
                    .for_each(|&pid| sys::kill(pid, libc::SIGKILL));
            }
            signals::wait(Some(crate::archs::ACCEPT_TICK))?;
            continue;
        }
        server.tend_hot_restart();
        let tick = match server.tend_companion() {
            Some(due) => sys::until(due, now).min(crate::archs::ACCEPT_TICK),
            None => crate::archs::ACCEPT_TICK,
        };
        server.listeners.wait(&wake, Some(tick), &mut ready)?;
        for &i in &ready {
            let accepted = match server.listeners.accept(i, false) {
                Ok(accepted) => {
                    AcceptPause::resumed();
                    accepted
                }
                Err(AcceptError::WouldBlock) => {
                    AcceptPause::resumed();
                    continue;
                }
                Err(AcceptError::Gone) => continue,
                Err(AcceptError::Exhausted(e)) => {
                    AcceptPause::exhausted(&e);
                    signals::wait(Some(EXHAUSTED_BACKOFF))?;
                    continue;
                }
                Err(AcceptError::Other(e)) => {
                    log::warn(format_args!("accept: {e}"));
                    continue;
                }
            };
            let admitted = server.board.admit(
                0,
                server.config.max_connections,
                accepted.peer.ip(),
                server.config.max_per_ip,
            );
            let Some(ticket) = admitted else {
                // A TLS client could not read a plaintext refusal.
                let refusal = if accepted.tls {
                    &[][..]
                } else {
                    server.protocol.refusal()
                };
                crate::net::refuse(accepted.stream, refusal);
                continue;
            };
            match signals::fork() {
                Err(e) => log::warn(format_args!("cannot fork: {e}")),
                Ok(Forked::Parent(pid)) => {
                    children.insert(pid, ticket);
                }
                Ok(Forked::Child) => {
                    // A panic anywhere in the child ends the child: unwinding
                    // further would run the parent's frames in this process
                    // (dropping its copy of the children table, returning
                    // its tickets to the shared scoreboard).
                    let served =
                        catch_unwind(AssertUnwindSafe(|| serve_child(server, accepted, parent)));
                    sys::exit_now(served.unwrap_or(CHILD_PANICKED))
                }
            }
        }
    }
}

/// The child's whole life: serve one connection, return the exit code.
fn serve_child(server: &Server, accepted: Accepted, parent: libc::pid_t) -> i32 {
    // The listeners belong to the parent: close this process's copies so that
    // a child serving a long connection does not keep the port open.
    for l in server.listeners.iter() {
        // SAFETY: closes this process's duplicate; the parent's copy is
        // untouched, and this child never uses the listener (and exits with
        // `_exit`, so no destructor closes it twice).
        unsafe { libc::close(l.as_raw_fd()) };
    }
    if !sys::die_with_parent(libc::SIGTERM, parent) {
        return 1;
    }
    server.protocol.enter_worker(0);
    let served = serve_with_signals(server, 0, 0, |ctx| {
        crate::archs::serve_contained(accepted, None, ctx);
        Ok(())
    });
    i32::from(served.is_err())
}
