//! The architectures: who runs a driver, where. One file each; this module
//! holds their names and one-line descriptions (what `muse archs` prints),
//! their defaults, and the two loops several of them share.

pub mod async_tasks;
pub mod multi_reactor;
pub mod multi_uring;
pub mod prefork;
pub mod prefork_reactor;
pub mod prefork_threads;
pub mod prefork_uring;
pub mod process_per_connection;
pub mod reactor;
pub mod reactor_pool;
pub mod serial;
pub mod thread_per_connection;
pub mod thread_pool;
pub mod uring;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::drivers::{blocking, Ctx};
use crate::net::{AcceptError, AcceptPause, Accepted, Listeners, EXHAUSTED_BACKOFF};
use crate::scoreboard::Ticket;
use crate::session::Placement;
use crate::sys;

/// An architecture, by its `--arch` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `serial`
    Serial,
    /// `process-per-connection`
    ProcessPerConnection,
    /// `thread-per-connection`
    ThreadPerConnection,
    /// `prefork`
    Prefork,
    /// `thread-pool`
    ThreadPool,
    /// `prefork-threads`
    PreforkThreads,
    /// `reactor`
    Reactor,
    /// `prefork-reactor`
    PreforkReactor,
    /// `multi-reactor`
    MultiReactor,
    /// `reactor-pool`
    ReactorPool,
    /// `async`
    Async,
    /// `uring`
    Uring,
    /// `multi-uring`
    MultiUring,
    /// `prefork-uring`
    PreforkUring,
}

impl Arch {
    /// Every architecture, in the order DESIGN.md §3 lists them.
    pub const ALL: [Arch; 14] = [
        Arch::Serial,
        Arch::ProcessPerConnection,
        Arch::ThreadPerConnection,
        Arch::Prefork,
        Arch::ThreadPool,
        Arch::PreforkThreads,
        Arch::Reactor,
        Arch::PreforkReactor,
        Arch::MultiReactor,
        Arch::ReactorPool,
        Arch::Async,
        Arch::Uring,
        Arch::MultiUring,
        Arch::PreforkUring,
    ];

    /// The `--arch` name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Serial => "serial",
            Arch::ProcessPerConnection => "process-per-connection",
            Arch::ThreadPerConnection => "thread-per-connection",
            Arch::Prefork => "prefork",
            Arch::ThreadPool => "thread-pool",
            Arch::PreforkThreads => "prefork-threads",
            Arch::Reactor => "reactor",
            Arch::PreforkReactor => "prefork-reactor",
            Arch::MultiReactor => "multi-reactor",
            Arch::ReactorPool => "reactor-pool",
            Arch::Async => "async",
            Arch::Uring => "uring",
            Arch::MultiUring => "multi-uring",
            Arch::PreforkUring => "prefork-uring",
        }
    }

    /// The architecture with this `--arch` name.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The flow in one line (the file's numbered steps, condensed).
    pub fn describe(self) -> &'static str {
        match self {
            Arch::Serial => "accept, serve until close, accept again; one client at a time (baseline)",
            Arch::ProcessPerConnection => "accept, fork a child that serves and exits; the parent reaps (inetd)",
            Arch::ThreadPerConnection => "accept, spawn a thread that serves (WEBrick, Mongrel)",
            Arch::Prefork => "fork N workers that each accept and serve one client at a time; a master supervises (Unicorn, Apache prefork)",
            Arch::ThreadPool => "N threads that each accept and serve one client at a time (Puma threads)",
            Arch::PreforkThreads => "fork N workers, each with a pool of threads that accept and serve (Puma cluster, Gunicorn gthread)",
            Arch::Reactor => "one thread, epoll over the listeners and every connection (Node, EventMachine, Twisted)",
            Arch::PreforkReactor => "fork N workers, each running its own reactor; a master supervises (nginx)",
            Arch::MultiReactor => "N threads, each running its own reactor over the shared listeners (thread-per-core)",
            Arch::ReactorPool => "a reactor watches every connection; sessions with work run on a thread pool (Puma's reactor)",
            Arch::Async => "one tokio task per connection: sequential code, evented underneath (goroutines, green threads)",
            Arch::Uring => "one thread, one io_uring ring: completions instead of readiness, one system call per loop turn",
            Arch::MultiUring => "N threads, each with its own ring and listeners (SO_REUSEPORT): thread per core (monoio, Glommio)",
            Arch::PreforkUring => "fork N workers, each running its own ring; a master supervises (nginx's shape on io_uring)",
        }
    }

    /// Whether the architecture forks, which decides how shared state is
    /// reached.
    pub fn placement(self) -> Placement {
        match self {
            Arch::ProcessPerConnection
            | Arch::Prefork
            | Arch::PreforkThreads
            | Arch::PreforkReactor
            | Arch::PreforkUring => Placement::ManyProcesses,
            _ => Placement::OneProcess,
        }
    }

    /// Whether the architecture runs on io_uring (the proactor driver).
    pub fn is_proactor(self) -> bool {
        matches!(self, Arch::Uring | Arch::MultiUring | Arch::PreforkUring)
    }

    /// Whether a master supervises forked workers (`--workers`, TTIN/TTOU).
    pub fn is_prefork(self) -> bool {
        matches!(
            self,
            Arch::Prefork | Arch::PreforkThreads | Arch::PreforkReactor | Arch::PreforkUring
        )
    }

    /// Whether `--threads` sizes something (a pool, reactors, tokio
    /// workers).
    pub fn has_threads(self) -> bool {
        matches!(
            self,
            Arch::ThreadPool
                | Arch::PreforkThreads
                | Arch::MultiReactor
                | Arch::MultiUring
                | Arch::Async
                | Arch::ReactorPool
        )
    }

    /// The default `--workers` on a machine with `cpus` CPUs.
    pub fn default_workers(self, cpus: usize) -> usize {
        match self {
            // Each worker serves one client at a time: Gunicorn's 2×CPU+1.
            Arch::Prefork => 2 * cpus + 1,
            // Each worker has threads or a reactor: one per CPU.
            _ => cpus,
        }
    }

    /// The default `--threads` on a machine with `cpus` CPUs.
    pub fn default_threads(self, cpus: usize) -> usize {
        match self {
            // Threads that each hold one client: enough to overlap I/O.
            Arch::ThreadPool => 16.max(4 * cpus),
            Arch::PreforkThreads => 8,
            // Reactors and tokio workers: one per CPU.
            Arch::MultiReactor | Arch::MultiUring | Arch::Async => cpus,
            // Pool threads behind one reactor.
            Arch::ReactorPool => 2 * cpus,
            _ => 1,
        }
    }
}

/// Runs one event loop per listener group, `listeners` then each of
/// `siblings`, on threads named `NAME-i`, until all have returned; the
/// first error or panic is the result. The thread-per-core architectures
/// (`multi-reactor`, `multi-uring`).
///
/// Each thread `make`s its loop, and none `run`s one until all are made:
/// a loop that serves before its siblings exist could take every
/// descriptor under a small `RLIMIT_NOFILE` and leave a sibling unable to
/// make its own, its listener then taking connections nobody accepts. If
/// any cannot be made, none runs and the server fails with the reason.
/// If one fails or panics later, the others are stopped at once, so the
/// server exits with the error instead of running on with a listener
/// nobody serves.
pub fn loop_per_thread<'g, L, M, R>(
    name: &str,
    listeners: &'g Listeners,
    siblings: &'g [Listeners],
    ctx: &Ctx,
    make: M,
    run: R,
) -> std::io::Result<()>
where
    M: Fn(&'g Listeners, Ctx) -> std::io::Result<L> + Sync,
    R: Fn(L) -> std::io::Result<()> + Sync,
{
    let groups: Vec<&'g Listeners> = std::iter::once(listeners).chain(siblings.iter()).collect();
    let gate = Gate::new(groups.len());
    let (make, run, gate) = (&make, &run, &gate);
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(groups.len());
        for (i, group) in groups.into_iter().enumerate() {
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn_scoped(scope, move || {
                    let stop = ctx.shutdown.clone();
                    let looped = make(group, ctx);
                    let all_made = gate.pass(looped.is_ok());
                    let result = match looped {
                        Err(e) => Err(e),
                        // A sibling could not make its loop: nothing runs.
                        Ok(_) if !all_made => Ok(()),
                        Ok(looped) => match catch_unwind(AssertUnwindSafe(|| run(looped))) {
                            Ok(result) => result,
                            Err(panic) => {
                                stop.begin(Some(Instant::now()));
                                std::panic::resume_unwind(panic);
                            }
                        },
                    };
                    if result.is_err() {
                        stop.begin(Some(Instant::now()));
                    }
                    result
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // The threads started wait for this one: they are told
                    // it will not come, and make nothing run.
                    gate.pass(false);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(e);
                }
            }
        }
        let mut first = Ok(());
        for h in handles {
            let result = h.join().unwrap_or_else(|_| {
                Err(std::io::Error::other(format!("a {name} thread panicked")))
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    })
}

/// Where the threads of [`loop_per_thread`] wait for each other before
/// serving: each passes once, saying whether it made its loop, and learns
/// whether all of them did. One failure opens it for everyone at once.
struct Gate {
    /// Threads still to pass, and whether one failed.
    state: std::sync::Mutex<(usize, bool)>,
    passed: std::sync::Condvar,
}

impl Gate {
    fn new(threads: usize) -> Gate {
        Gate {
            state: std::sync::Mutex::new((threads, false)),
            passed: std::sync::Condvar::new(),
        }
    }

    /// Passes, having made a loop or not (`made`); waits until every
    /// thread has passed or one failed, and returns whether all made theirs.
    fn pass(&self, made: bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = state.0.saturating_sub(1);
        state.1 |= !made;
        self.passed.notify_all();
        while state.0 > 0 && !state.1 {
            state = self.passed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.1
    }
}

/// How often a blocking accept loop looks at the shutdown switch and updates
/// its heartbeat even when nobody connects.
pub const ACCEPT_TICK: Duration = Duration::from_secs(1);

/// Accepts admitted connections and hands each to `serve`, until the server
/// drains. Used by every architecture whose threads block.
pub fn accept_loop(listeners: &Listeners, ctx: &Ctx, mut serve: impl FnMut(Accepted, Ticket)) {
    let mut ready = Vec::with_capacity(listeners.len());
    let wake = [ctx.shutdown.wake_fd()];
    ctx.ready();
    while !ctx.shutdown.is_draining() {
        if let Err(e) = listeners.wait(&wake, Some(ACCEPT_TICK), &mut ready) {
            crate::log::warn(format_args!("poll: {e}"));
            std::thread::sleep(EXHAUSTED_BACKOFF);
        }
        ctx.tick();
        for &i in &ready {
            if ctx.shutdown.is_draining() {
                return;
            }
            match listeners.accept(i, false) {
                Ok(accepted) => {
                    AcceptPause::resumed();
                    match ctx.admit(accepted.peer.ip()) {
                        Some(ticket) => serve(accepted, ticket),
                        None => ctx.refuse(accepted),
                    }
                }
                Err(AcceptError::WouldBlock) => AcceptPause::resumed(),
                Err(AcceptError::Gone) => {}
                Err(AcceptError::Exhausted(e)) => {
                    AcceptPause::exhausted(&e);
                    // Wait on the shutdown switch alone: the listeners are
                    // still ready, which is why we pause.
                    let mut fds = [sys::poll_fd(ctx.shutdown.wake_fd(), sys::POLLIN)];
                    let _ = sys::poll(&mut fds, Some(EXHAUSTED_BACKOFF));
                }
                Err(AcceptError::Other(e)) => crate::log::warn(format_args!("accept: {e}")),
            }
        }
    }
}

/// Serves one connection with the blocking driver, containing a panic in
/// the session to this connection.
pub fn serve_contained(accepted: Accepted, ticket: Option<Ticket>, ctx: &Ctx) {
    if catch_unwind(AssertUnwindSafe(|| blocking::serve(accepted, ticket, ctx))).is_err() {
        crate::log::warn(format_args!("a session panicked; its connection is closed"));
    }
}

/// How long past the drain deadline the connection threads are given to
/// say their last words (FTP's `426` and `421`) before the process exits:
/// each wakes at the deadline itself, but on a busy machine it may not run
/// at once.
pub const LAST_WORDS_GRACE: Duration = Duration::from_millis(500);

/// Waits until every connection of this process has closed, or the drain
/// deadline (and [`LAST_WORDS_GRACE`]) passes. For architectures whose
/// connections run on threads the caller does not join.
pub fn wait_drained(ctx: &Ctx) {
    loop {
        let now = Instant::now();
        let open = ctx
            .board
            .slot(ctx.slot)
            .open
            .load(std::sync::atomic::Ordering::Acquire);
        let past = ctx
            .shutdown
            .deadline()
            .is_some_and(|d| now >= d + LAST_WORDS_GRACE);
        if open == 0 || past {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn ctx() -> Ctx {
        Ctx {
            protocol: Arc::new(crate::protocols::echo::Echo { idle_timeout: None }),
            shutdown: Shutdown::new().unwrap(),
            board: crate::scoreboard::Scoreboard::new().unwrap(),
            slot: 0,
            max_connections: 8,
            max_per_ip: 8,
            master: sys::getpid(),
        }
    }

    fn groups(n: usize) -> Vec<Listeners> {
        (0..n)
            .map(|_| Listeners::bind(&["127.0.0.1:0".parse().unwrap()], false, 0o666).unwrap())
            .collect()
    }

    #[test]
    fn no_loop_runs_unless_every_thread_made_its_own() {
        let groups = groups(3);
        let ran = AtomicUsize::new(0);
        let made = AtomicUsize::new(0);
        let result = loop_per_thread(
            "test",
            &groups[0],
            &groups[1..],
            &ctx(),
            |group, _| {
                made.fetch_add(1, Ordering::SeqCst);
                if std::ptr::eq(group, &groups[2]) {
                    Err(std::io::Error::from_raw_os_error(libc::EMFILE))
                } else {
                    Ok(())
                }
            },
            |()| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(made.load(Ordering::SeqCst), 3);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "a loop ran beside a sibling that failed"
        );
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EMFILE));
    }

    #[test]
    fn a_loop_that_fails_stops_its_siblings() {
        let groups = groups(2);
        let ctx = ctx();
        let result = loop_per_thread(
            "test",
            &groups[0],
            &groups[1..],
            &ctx,
            |group, ctx| Ok((std::ptr::eq(group, &groups[1]), ctx)),
            |(fails, ctx)| {
                if fails {
                    return Err(std::io::Error::other("broken"));
                }
                // The sibling serves until told to stop (bounded, so that a
                // regression fails instead of hanging).
                let start = Instant::now();
                while !ctx.shutdown.is_draining() {
                    if start.elapsed() > Duration::from_secs(30) {
                        return Err(std::io::Error::other("never stopped"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            },
        );
        assert_eq!(result.unwrap_err().to_string(), "broken");
        assert!(ctx.shutdown.is_draining());
    }
}
