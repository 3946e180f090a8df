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

/// Runs `run` on one thread per listener group, `listeners` then each of
/// `siblings` (threads named `NAME-i`), until all have returned; the first
/// error or panic is the result. The thread-per-core architectures
/// (`multi-reactor`, `multi-uring`).
pub fn loop_per_thread<F>(
    name: &str,
    listeners: &Listeners,
    siblings: &[Listeners],
    ctx: &Ctx,
    run: F,
) -> std::io::Result<()>
where
    F: Fn(&Listeners, Ctx) -> std::io::Result<()> + Sync,
{
    let groups: Vec<&Listeners> = std::iter::once(listeners).chain(siblings.iter()).collect();
    let run = &run;
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(i, group)| {
                let ctx = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(scope, move || run(group, ctx))
            })
            .collect::<std::io::Result<_>>()?;
        for h in handles {
            h.join()
                .map_err(|_| std::io::Error::other(format!("a {name} thread panicked")))??;
        }
        Ok(())
    })
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
