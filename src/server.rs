//! Putting a server together: bind the listeners (or take over a
//! predecessor's, in a hot restart), start the protocol's shared services,
//! announce, install signals, and hand over to the architecture. Also the
//! signal watcher that turns `TERM`/`INT`/`QUIT` into a drain of the
//! in-process [`Shutdown`] switch, and `USR2` into a hot restart
//! (`restart.rs`).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::accept::Strategy;
use crate::archs::{self, Arch};
use crate::companion::Keeper;
use crate::drivers::Ctx;
use crate::net::{ListenAddr, Listeners};
use crate::restart::{Progress, Successor};
use crate::scoreboard::Scoreboard;
use crate::session::Protocol;
use crate::shutdown::Shutdown;
use crate::{log, signals, sys};

/// A checked server configuration (the command line, parsed and validated).
#[derive(Clone, Debug)]
pub struct Config {
    /// The architecture.
    pub arch: Arch,
    /// Where to listen (at least one address).
    pub listen: Vec<ListenAddr>,
    /// Where to listen with TLS from the first byte (`--tls-listen`).
    pub tls_listen: Vec<ListenAddr>,
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
    /// A prefork worker retires after serving a number of requests drawn
    /// at its spawn (`None`: never); see [`MaxRequests`].
    pub max_requests: Option<MaxRequests>,
    /// How prefork workers get their connections (`--accept`).
    pub accept: Strategy,
}

/// `--max-requests N` and `--max-requests-jitter J`: each prefork worker
/// retires after `N..=N+J` requests, drawn uniformly when it is spawned,
/// so that workers started together do not all recycle at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxRequests {
    /// The least requests a worker serves before it retires (at least 1).
    pub base: u64,
    /// How many more it may serve, at most.
    pub jitter: u64,
}

impl MaxRequests {
    /// One worker's limit, in `base..=base+jitter`, from `random` (any
    /// 64 random bits). Modulo bias is below `(jitter+1) / 2^64`: nothing.
    pub fn draw(self, random: u64) -> u64 {
        match self.jitter.checked_add(1) {
            Some(span) => self.base.saturating_add(random % span),
            None => self.base.saturating_add(random),
        }
    }
}

/// A bound, ready server: what every architecture runs with.
pub struct Server {
    /// The configuration.
    pub config: Config,
    /// The bound listeners.
    pub listeners: Listeners,
    /// A multi-reactor's listeners for its other threads, on the same
    /// addresses with `SO_REUSEPORT` (empty for other architectures).
    pub siblings: Vec<Listeners>,
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
    /// The new server of a hot restart, while it starts.
    successor: Mutex<Option<Successor>>,
}

impl Server {
    /// Binds the listeners and starts the protocol's shared services. Nothing
    /// listens (no `listening on` line) until [`Server::run`].
    pub fn bind(config: Config, protocol: Box<dyn Protocol>) -> std::io::Result<Server> {
        Server::bind_inheriting(config, protocol, None)
    }

    /// Like [`Server::bind`], but takes over the listening sockets a
    /// predecessor passed (`inherited`, see [`crate::restart::inherited`])
    /// instead of binding, when there are some.
    pub fn bind_inheriting(
        config: Config,
        mut protocol: Box<dyn Protocol>,
        inherited: Option<Vec<Vec<RawFd>>>,
    ) -> std::io::Result<Server> {
        // A multi-reactor gives each thread its own listeners (see
        // `archs/multi_reactor.rs`), and `--accept reuseport` each prefork
        // worker (see `accept.rs`): they must share the addresses.
        let multi = matches!(config.arch, Arch::MultiReactor | Arch::MultiUring);
        let reuse_port = multi || config.accept == Strategy::ReusePort;
        let mut groups = inherited.unwrap_or_default().into_iter();
        // Plain listeners first, then the TLS ones.
        let addrs: Vec<ListenAddr> = config
            .listen
            .iter()
            .chain(&config.tls_listen)
            .cloned()
            .collect();
        let mut listeners = match groups.next() {
            Some(fds) => Listeners::inherit(&addrs, &fds)?,
            None => Listeners::bind(&addrs, reuse_port, config.unix_mode)?,
        };
        if !config.tls_listen.is_empty() {
            listeners.set_tls_from(config.listen.len());
        }
        let mut siblings = Vec::new();
        if multi {
            for _ in 1..config.threads.max(1) {
                siblings.push(match groups.next() {
                    Some(fds) => listeners.inherit_sibling(&fds)?,
                    None => listeners.sibling()?,
                });
            }
        }
        let extra = groups.count();
        if extra > 0 {
            // Closing them resets the connections queued on them.
            log::warn(format_args!(
                "the old server passed {extra} more listener group(s) than there are threads; \
                 connections queued on them are lost"
            ));
        }
        let reuseport = crate::accept::bind_positions(&listeners, &config)?;
        protocol.start(config.arch.placement())?;
        Ok(Server {
            config,
            listeners,
            siblings,
            protocol: Arc::from(protocol),
            board: Scoreboard::new()?,
            reuseport: Mutex::new(reuseport),
            companion: Mutex::new(None),
            successor: Mutex::new(None),
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
            master: 0,
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
        crate::restart::announce_ready();
        let served = match self.config.arch {
            Arch::ProcessPerConnection => archs::process_per_connection::serve(self),
            Arch::Prefork => archs::prefork::serve(self),
            Arch::PreforkThreads => archs::prefork_threads::serve(self),
            Arch::PreforkReactor => archs::prefork_reactor::serve(self),
            Arch::PreforkUring => archs::prefork_uring::serve(self),
            _ => self.serve_top(),
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

    /// A reaped child that is not a worker: a hot restart's successor (its
    /// failure logged on the next [`Server::tend_hot_restart`]) or the
    /// companion (logged, its restart scheduled). Returns whether it was
    /// either.
    pub fn child_exited(&self, pid: libc::pid_t, how: crate::sys::ChildExit) -> bool {
        if let Some(s) = self.successor().as_mut().filter(|s| s.pid() == pid) {
            s.exited(how);
            return true;
        }
        self.keeper().as_mut().is_some_and(|k| k.exited(pid, how))
    }

    fn successor(&self) -> MutexGuard<'_, Option<Successor>> {
        self.successor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every listener group of this server: its listeners, then a
    /// multi-reactor's siblings.
    pub fn listener_groups(&self) -> Vec<&Listeners> {
        std::iter::once(&self.listeners)
            .chain(&self.siblings)
            .collect()
    }

    /// `USR2`: starts a hot restart's successor, unless one is starting
    /// already or the server is stopping.
    pub fn hot_restart(&self, stopping: bool) {
        let mut successor = self.successor();
        if let Some(s) = successor.as_ref() {
            log::info(format_args!(
                "hot restart: the new server (pid {}) is still starting; USR2 ignored",
                s.pid()
            ));
            return;
        }
        if stopping {
            log::info(format_args!(
                "hot restart: the server is stopping; USR2 ignored"
            ));
            return;
        }
        match Successor::spawn(&self.listener_groups()) {
            Ok(s) => {
                log::info(format_args!(
                    "hot restart: started the new server (pid {})",
                    s.pid()
                ));
                *successor = Some(s);
            }
            Err(e) => log::warn(format_args!("hot restart failed: {e}; still serving")),
        }
    }

    /// Follows a starting successor. Once it serves, this server hands it
    /// the socket files and stops as on `TERM` (the signal is sent to this
    /// process, so each architecture's own stop runs); if it fails, this
    /// server goes on. Returns the successor's ready pipe to wait on, and
    /// when to call this again at the latest.
    pub fn tend_hot_restart(&self) -> Option<(RawFd, Instant)> {
        let mut successor = self.successor();
        let s = successor.as_mut()?;
        match s.poll(Instant::now()) {
            Progress::Starting => Some((s.fd(), s.deadline())),
            ready @ (Progress::Ready | Progress::HandOver) => {
                let what = match ready {
                    Progress::Ready => "is serving",
                    _ => "waits for this one to hand over",
                };
                log::info(format_args!(
                    "hot restart: the new server (pid {}) {what}; this one (pid {}) drains and exits",
                    s.pid(),
                    std::process::id()
                ));
                crate::net::hand_over_socket_files();
                *successor = None;
                sys::kill(sys::getpid(), libc::SIGTERM);
                None
            }
            Progress::Failed(why) => {
                log::warn(format_args!("hot restart failed: {why}; still serving"));
                *successor = None;
                None
            }
        }
    }

    /// `HUP`: the protocol reads again what it can (see
    /// [`Protocol::reload`]); said in the log.
    pub fn reload(&self) {
        reload(&*self.protocol, true);
    }

    /// Runs a single-process architecture in this process, with a watcher
    /// thread for its signals (`TERM`/`INT`/`QUIT` drain, `USR2` restarts).
    fn serve_top(&self) -> std::io::Result<()> {
        let shutdown = Shutdown::new()?;
        let ctx = self.ctx(0, shutdown.clone());
        let (done_read, done_write) = sys::pipe()?;
        std::thread::scope(|scope| {
            let watcher = std::thread::Builder::new()
                .name("signals".into())
                .spawn_scoped(scope, || self.watch_top(&shutdown, done_read.as_raw_fd()))?;
            // A panic that escapes the architecture still ends the watcher,
            // so that the process exits with it instead of lingering with
            // nothing served.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.serve_in_process(&ctx)
            }));
            sys::poke(done_write.as_raw_fd());
            let _ = watcher.join();
            served.unwrap_or_else(|_| Err(std::io::Error::other("the server's loop panicked")))
        })
    }

    /// The watcher of a single-process server: [`watch_signals`] plus hot
    /// restarts, until `done` is readable.
    fn watch_top(&self, shutdown: &Shutdown, done: RawFd) {
        let timeout = self.config.shutdown_timeout;
        loop {
            let tending = self.tend_hot_restart();
            let mut fds = vec![
                sys::poll_fd(signals::wake_fd(), sys::POLLIN),
                sys::poll_fd(done, sys::POLLIN),
            ];
            let mut wait = None;
            if let Some((fd, due)) = tending {
                fds.push(sys::poll_fd(fd, sys::POLLIN));
                wait = Some(sys::until(due, Instant::now()));
            }
            if sys::poll(&mut fds, wait).is_err() || fds[1].revents != 0 {
                return;
            }
            let got = signals::take();
            on_stop_signals(got, shutdown, timeout);
            if got.has(libc::SIGHUP) {
                self.reload();
            }
            if got.has(libc::SIGUSR2) {
                self.hot_restart(shutdown.is_draining());
            }
        }
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
            Arch::MultiReactor => archs::multi_reactor::serve(l, &self.siblings, ctx),
            Arch::ReactorPool => archs::reactor_pool::serve(l, ctx, threads),
            Arch::Async => archs::async_tasks::serve(l, ctx, threads),
            Arch::Uring => archs::uring::serve(l, ctx),
            Arch::MultiUring => archs::multi_uring::serve(l, &self.siblings, ctx),
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
/// `master` is a prefork worker's master (0: none), see [`Ctx::master`].
pub fn serve_with_signals(
    server: &Server,
    slot: usize,
    master: libc::pid_t,
    body: impl FnOnce(&Ctx) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let shutdown = Shutdown::new()?;
    let mut ctx = server.ctx(slot, shutdown.clone());
    ctx.master = master;
    let timeout = server.config.shutdown_timeout;
    let protocol = Arc::clone(&server.protocol);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || watch_signals(&shutdown, timeout, Some(&*protocol)))?;
    body(&ctx)
}

/// The watcher thread of a process that drains on signals: turns `TERM`,
/// `INT` and `QUIT` into a drain of `shutdown`, and `HUP` into a reload of
/// `protocol` (a worker's: its master says how it went).
pub fn watch_signals(shutdown: &Shutdown, timeout: Duration, protocol: Option<&dyn Protocol>) {
    loop {
        if signals::wait(None).is_err() {
            return;
        }
        let got = signals::take();
        on_stop_signals(got, shutdown, timeout);
        if let Some(p) = protocol.filter(|_| got.has(libc::SIGHUP)) {
            reload(p, false);
        }
    }
}

/// Reloads `protocol` and the TLS certificate; logs the outcome (a success
/// only if `say_done`).
fn reload(protocol: &dyn Protocol, say_done: bool) {
    for outcome in [protocol.reload(), crate::tls::reload()] {
        match outcome {
            Ok(Some(done)) if say_done => log::info(format_args!("{done}")),
            Ok(_) => {}
            Err(why) => log::warn(format_args!("{why}")),
        }
    }
}

/// `TERM`/`INT` drain `shutdown` within `timeout` (a second one: at once);
/// `QUIT` drains it without a deadline.
fn on_stop_signals(got: signals::Arrived, shutdown: &Shutdown, timeout: Duration) {
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
