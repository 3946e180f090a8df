//! Putting a server together: bind the listeners, start the protocol's
//! shared services, announce, install signals, and hand over to the
//! architecture. Also the signal watcher that turns `TERM`/`INT`/`QUIT` into
//! a drain of the in-process [`Shutdown`] switch.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::accept::Strategy;
use crate::archs::{self, Arch};
use crate::companion::Keeper;
use crate::drivers::Ctx;
use crate::net::{ListenAddr, Listeners};
use crate::scoreboard::Scoreboard;
use crate::session::Protocol;
use crate::shutdown::Shutdown;
use crate::signals;

/// A checked server configuration (the command line, parsed and validated).
#[derive(Clone, Debug)]
pub struct Config {
    /// The architecture.
    pub arch: Arch,
    /// Where to listen (at least one address).
    pub listen: Vec<ListenAddr>,
    /// The permissions of `unix:` socket files.
    pub unix_mode: u32,
    /// Worker processes (prefork family).
    pub workers: usize,
    /// Threads (pools, reactors, tokio workers).
    pub threads: usize,
    /// Connections open at once across the server; more are refused.
    pub max_connections: usize,
    /// Connections open at once from one client address; more are refused.
    pub max_per_ip: usize,
    /// How long a graceful shutdown waits for open connections.
    pub shutdown_timeout: Duration,
    /// How long a prefork worker may go without a heartbeat before it is
    /// killed.
    pub worker_timeout: Duration,
    /// A prefork worker whose resident memory passes this many bytes is
    /// recycled (`None`: never).
    pub max_worker_memory: Option<u64>,
    /// How prefork workers get their connections (`--accept`).
    pub accept: Strategy,
}

/// A bound, ready server: what every architecture runs with.
pub struct Server {
    /// The configuration.
    pub config: Config,
    /// The bound listeners.
    pub listeners: Listeners,
    /// The protocol, shared by every session.
    pub protocol: Arc<dyn Protocol>,
    /// The scoreboard shared by every process of the server.
    pub board: &'static Scoreboard,
    /// `--accept reuseport`: the listeners of worker positions 1 and up,
    /// bound beside `listeners`, until the prefork master takes them
    /// (`accept::bind_positions`).
    pub reuseport: Mutex<Vec<Listeners>>,
    /// The protocol's companion process (the kv store of the forking
    /// architectures), once started: kept by the process that forks the
    /// workers, which reaps it with them.
    companion: Mutex<Option<Keeper>>,
}

impl Server {
    /// Binds the listeners and starts the protocol's shared services. Nothing
    /// listens (no `listening on` line) until [`Server::run`].
    pub fn bind(config: Config, mut protocol: Box<dyn Protocol>) -> std::io::Result<Server> {
        // A multi-reactor gives each thread its own listeners (see
        // `archs/multi_reactor.rs`), and `--accept reuseport` each prefork
        // worker (see `accept.rs`): they must share the addresses.
        let reuse_port = config.arch == Arch::MultiReactor || config.accept == Strategy::ReusePort;
        let listeners = Listeners::bind(&config.listen, reuse_port, config.unix_mode)?;
        let reuseport = crate::accept::bind_positions(&listeners, &config)?;
        protocol.start(config.arch.placement())?;
        Ok(Server {
            config,
            listeners,
            protocol: Arc::from(protocol),
            board: Scoreboard::new()?,
            reuseport: Mutex::new(reuseport),
            companion: Mutex::new(None),
        })
    }

    /// The context for worker `slot` of this server.
    pub fn ctx(&self, slot: usize, shutdown: Shutdown) -> Ctx {
        Ctx {
            protocol: Arc::clone(&self.protocol),
            shutdown,
            board: self.board,
            slot,
            max_connections: self.config.max_connections,
            max_per_ip: self.config.max_per_ip,
        }
    }

    /// Installs signal handling, prints the `listening on` lines and runs
    /// the architecture until a signal stops it.
    pub fn run(&self) -> std::io::Result<()> {
        signals::install()?;
        // The companion is ready before anything listens: a store that
        // cannot open (a held or damaged data directory) stops the server
        // here, with exit 1.
        let keeper = Keeper::start(self)?;
        *self.keeper() = keeper;
        self.listeners
            .announce(self.protocol.name(), self.config.arch.name())?;
        let served = match self.config.arch {
            Arch::ProcessPerConnection => archs::process_per_connection::serve(self),
            Arch::Prefork => archs::prefork::serve(self),
            Arch::PreforkThreads => archs::prefork_threads::serve(self),
            Arch::PreforkReactor => archs::prefork_reactor::serve(self),
            _ => serve_with_signals(self, 0, |ctx| self.serve_in_process(ctx)),
        };
        if let Some(keeper) = self.keeper().as_mut() {
            keeper.stop(self.config.shutdown_timeout);
        }
        self.protocol.stop();
        served
    }

    fn keeper(&self) -> MutexGuard<'_, Option<Keeper>> {
        self.companion.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reaped child that is not a worker: the companion, if it is one
    /// (logged, its restart scheduled). Returns whether it was.
    pub fn companion_exited(&self, pid: libc::pid_t, how: crate::sys::ChildExit) -> bool {
        self.keeper().as_mut().is_some_and(|k| k.exited(pid, how))
    }

    /// Restarts the companion if it died and its back-off has passed; when
    /// to call this again, if ever. Called by the loops that reap.
    pub fn tend_companion(&self) -> Option<Instant> {
        let mut keeper = self.keeper();
        let keeper = keeper.as_mut()?;
        keeper.tend(self);
        keeper.wake_at()
    }

    /// Runs a single-process architecture with `ctx` until `ctx.shutdown`
    /// drains. Tests call this directly, with a switch they flip themselves.
    pub fn serve_in_process(&self, ctx: &Ctx) -> std::io::Result<()> {
        let l = &self.listeners;
        let threads = self.config.threads;
        match self.config.arch {
            Arch::Serial => archs::serial::serve(l, ctx),
            Arch::ThreadPerConnection => archs::thread_per_connection::serve(l, ctx),
            Arch::ThreadPool => archs::thread_pool::serve(l, ctx, threads),
            Arch::Reactor => archs::reactor::serve(l, ctx),
            Arch::MultiReactor => archs::multi_reactor::serve(l, ctx, threads),
            Arch::ReactorPool => archs::reactor_pool::serve(l, ctx, threads),
            Arch::Async => archs::async_tasks::serve(l, ctx, threads),
            other => Err(std::io::Error::other(format!(
                "{} forks and cannot run inside another process",
                other.name()
            ))),
        }
    }
}

/// Runs `body` in this process with a fresh shutdown switch driven by the
/// process's signals: `TERM`/`INT` drain within `--shutdown-timeout` (a
/// second one closes everything at once), `QUIT` drains without a deadline.
pub fn serve_with_signals(
    server: &Server,
    slot: usize,
    body: impl FnOnce(&Ctx) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let shutdown = Shutdown::new()?;
    let ctx = server.ctx(slot, shutdown.clone());
    let timeout = server.config.shutdown_timeout;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || watch_signals(&shutdown, timeout))?;
    body(&ctx)
}

/// The watcher thread of a process that drains on signals: turns `TERM`,
/// `INT` and `QUIT` into a drain of `shutdown`.
pub fn watch_signals(shutdown: &Shutdown, timeout: Duration) {
    loop {
        if signals::wait(None).is_err() {
            return;
        }
        let got = signals::take();
        let now = Instant::now();
        if got.has(libc::SIGTERM) || got.has(libc::SIGINT) {
            let deadline = if shutdown.is_draining() {
                now
            } else {
                now + timeout
            };
            shutdown.begin(Some(deadline));
        } else if got.has(libc::SIGQUIT) {
            shutdown.begin(None);
        }
    }
}
