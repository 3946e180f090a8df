//! `async`: one tokio task per connection.
//!
//! 1. Start a tokio runtime with N worker threads (`--threads`).
//! 2. A task per listener accepts connections and spawns a task for each.
//! 3. Each connection task runs the session as sequential code, awaiting
//!    readiness; tokio's scheduler multiplexes the tasks over the workers
//!    and moves them between threads when one is busy.
//! 4. On shutdown, the accept tasks end and the runtime waits for the
//!    connection tasks, up to the deadline.
//!
//! Trade-off: the cost of a reactor (a task is a few hundred bytes) with the
//! programming model of a thread, and work stealing balances load across
//! CPUs; but the runtime's machinery (wakers, queues, cross-thread steals)
//! costs some throughput against a hand-rolled reactor, and a task that
//! blocks still stalls its worker thread. Goroutines, green threads,
//! eventlet.
//!
//! Operations: `USR2` (hot restart) and `HUP` (reload) work here; the
//! rolling restart (`USR1`), `--max-requests` and `--max-worker-memory`
//! are the prefork family's, since this architecture has no worker
//! processes to replace one at a time (they are ignored here), and so are
//! the `--accept` strategies (refused here).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::drivers::{task, Ctx};
use crate::net::{AcceptError, AcceptPause, Listeners, EXHAUSTED_BACKOFF};

struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Runs the runtime until the server drains.
pub fn serve(listeners: &Listeners, ctx: &Ctx, threads: usize) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("async")
        .enable_io()
        .enable_time()
        .build()?;
    let result = runtime.block_on(async {
        let (tx, rx) = watch::channel(false);
        let mut acceptors = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.iter().enumerate() {
            // SAFETY: the AsyncFd owns this duplicate of the listener.
            let listener = unsafe { AsyncFd::register(l.try_clone()?) }.map_err(io::Error::from)?;
            let fixed = listeners.fixed_local(i);
            let tls = listeners.is_tls(i);
            let acceptor = accept_loop(listener, fixed, tls, ctx.clone(), rx.clone());
            acceptors.push(tokio::spawn(acceptor));
        }
        // SAFETY: the switch's pipe lives as long as `ctx`, which outlives
        // this registration (dropped below).
        let switch = unsafe {
            AsyncFd::register_with_interest(
                Fd(ctx.shutdown.wake_fd()),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(io::Error::from)?;
        drop(switch.readable().await?);
        let _ = tx.send(true);
        // An accept task may be admitting a connection on another worker
        // thread at this moment: only once every accept task has ended is
        // the count of open connections final, so that a connection
        // accepted just after the drain began is served rather than
        // dropped (reset) with the runtime.
        for acceptor in acceptors {
            let _ = acceptor.await;
        }
        // Past the deadline each task says its last words and ends (its
        // own timer fires at the deadline); give them a moment to, rather
        // than racing their timers and dropping them mid-sentence.
        while ctx.board.open() > 0
            && ctx
                .shutdown
                .deadline()
                .is_none_or(|d| Instant::now() < d + LAST_WORDS_GRACE)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(switch);
        Ok(())
    });
    runtime.shutdown_timeout(Duration::ZERO);
    result
}

/// How long past the shutdown deadline the runtime waits for its tasks to
/// say their last words and end before it drops whatever is left.
const LAST_WORDS_GRACE: Duration = Duration::from_millis(200);

async fn accept_loop(
    listener: AsyncFd<crate::net::Listener>,
    fixed: Option<std::net::SocketAddr>,
    tls: bool,
    ctx: Ctx,
    mut draining: watch::Receiver<bool>,
) {
    loop {
        let mut guard = tokio::select! {
            g = listener.readable() => match g {
                Ok(g) => g,
                Err(_) => return,
            },
            _ = draining.changed() => return,
        };
        // Accept what is queued, but not past the start of a drain: under a
        // steady stream of connections the queue is never empty, and the
        // successor of a hot restart is there to take the rest.
        while !*draining.borrow() {
            match crate::net::accept_from(listener.get_ref(), fixed, true) {
                Ok(mut accepted) => {
                    accepted.tls = tls;
                    AcceptPause::resumed();
                    match ctx.admit(accepted.peer.ip()) {
                        Some(ticket) => {
                            let serve =
                                task::serve(accepted, ticket, ctx.clone(), draining.clone());
                            tokio::spawn(serve);
                        }
                        None => ctx.refuse(accepted),
                    }
                }
                Err(AcceptError::Gone) => {}
                Err(AcceptError::WouldBlock) => {
                    AcceptPause::resumed();
                    guard.clear_ready();
                    break;
                }
                Err(AcceptError::Exhausted(e)) => {
                    AcceptPause::exhausted(&e);
                    tokio::time::sleep(EXHAUSTED_BACKOFF).await;
                    break;
                }
                Err(AcceptError::Other(e)) => {
                    crate::log::warn(format_args!("accept: {e}"));
                    break;
                }
            }
        }
    }
}
