//! A protocol's companion process, kept by the process that forks the
//! workers (a prefork master, a process-per-connection parent): the kv store
//! of the forking architectures, which owns the one keyspace every worker's
//! sessions reach over their service streams.
//!
//! 1. [`Keeper::start`] forks it before any worker and waits until it says
//!    it is ready (its store is open: the log replayed, the data directory
//!    locked). If it fails, the server does not start: exit 1, before
//!    anything listens.
//! 2. In the companion, a reactor serves the companion's listener with the
//!    protocol the companion opens ([`Companion::open`]), whose sessions
//!    share the store as under the threaded architectures.
//! 3. The keeper's owner reaps it with the workers ([`Keeper::exited`]); a
//!    companion that dies is logged and restarted with the workers'
//!    back-off ([`Keeper::tend`]). Meanwhile its listener, held by the
//!    keeper's process, keeps the workers' new streams in its backlog, so
//!    they wait for the new store instead of being refused.
//! 4. [`Keeper::stop`] stops it once the last worker has gone (`TERM`, then
//!    `KILL` after the shutdown timeout), so the store closes its log last.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::drivers::Ctx;
use crate::scoreboard::Scoreboard;
use crate::server::Server;
use crate::session::Companion;
use crate::shutdown::Shutdown;
use crate::supervisor::{BACKOFF_FIRST, BACKOFF_MAX, CRASH_WINDOW, KILL_GRACE};
use crate::sys::{self, ChildExit, Forked};
use crate::{log, signals};

/// Exit code of a companion that panicked (EX_SOFTWARE).
const COMPANION_PANICKED: i32 = 70;

/// The companion process of a server, from the side of the process that
/// forked it.
pub struct Keeper {
    name: &'static str,
    pid: Option<libc::pid_t>,
    started: Option<Instant>,
    backoff: Duration,
    not_before: Option<Instant>,
    /// Serving has ended: a companion that dies now stays dead.
    stopping: bool,
}

impl Keeper {
    /// Forks the protocol's companion, if it has one, and waits until it is
    /// ready. Call in the process that will fork the workers, before it
    /// forks any, after the signal handlers are installed.
    pub fn start(server: &Server) -> io::Result<Option<Keeper>> {
        let Some(companion) = server.protocol.companion() else {
            return Ok(None);
        };
        let mut keeper = Keeper {
            name: companion.name(),
            pid: None,
            started: None,
            backoff: Duration::ZERO,
            not_before: None,
            stopping: false,
        };
        let (ready_read, ready_write) = sys::pipe()?;
        let pid = keeper.spawn(server, Some(ready_write))?;
        // The companion's write end is the only one left: EOF without a byte
        // means it gave up (and said why on stderr).
        let mut byte = [0u8; 1];
        let mut ready = std::fs::File::from(ready_read);
        let said = loop {
            match ready.read(&mut byte) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A large log takes a while to replay.
                    let mut fds = [sys::poll_fd(ready.as_raw_fd(), sys::POLLIN)];
                    sys::poll(&mut fds, None)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if said == 1 {
            return Ok(Some(keeper));
        }
        let how = sys::reap(pid, true);
        Err(io::Error::other(format!(
            "the {} process did not start ({})",
            keeper.name,
            describe(how)
        )))
    }

    fn spawn(&mut self, server: &Server, ready: Option<OwnedFd>) -> io::Result<libc::pid_t> {
        let master = sys::getpid();
        match signals::fork()? {
            Forked::Parent(pid) => {
                drop(ready);
                self.pid = Some(pid);
                self.started = Some(Instant::now());
                Ok(pid)
            }
            Forked::Child => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(server, master, ready)
                }));
                sys::exit_now(code.unwrap_or(COMPANION_PANICKED))
            }
        }
    }

    /// A child of the keeper's process was reaped: if it was the companion,
    /// logs it and schedules the restart, and returns true.
    pub fn exited(&mut self, pid: libc::pid_t, how: ChildExit) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        let now = Instant::now();
        let lived = self.started.map_or(Duration::ZERO, |t| now - t);
        self.pid = None;
        self.started = None;
        if self.stopping {
            return true;
        }
        if lived < CRASH_WINDOW {
            self.backoff = (self.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
        } else {
            self.backoff = Duration::ZERO;
        }
        self.not_before = Some(now + self.backoff);
        log::warn(format_args!(
            "{} (pid {pid}) {} after {lived:.1?}; restarting in {:?}",
            self.name,
            describe(Some(how)),
            self.backoff
        ));
        true
    }

    /// Restarts a companion that died, once its back-off has passed.
    pub fn tend(&mut self, server: &Server) {
        if self.stopping || self.pid.is_some() {
            return;
        }
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.not_before = None;
        match self.spawn(server, None) {
            Ok(pid) => log::info(format_args!("{} restarted (pid {pid})", self.name)),
            Err(e) => {
                log::warn(format_args!("cannot fork the {}: {e}", self.name));
                self.not_before = Some(Instant::now() + BACKOFF_MAX.min(BACKOFF_FIRST * 10));
            }
        }
    }

    /// When [`Keeper::tend`] has something to do next, if ever.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.stopping || self.pid.is_some() {
            return None;
        }
        Some(self.not_before.unwrap_or_else(Instant::now))
    }

    /// Stops the companion (the workers are gone): `TERM`, then `KILL` if
    /// it has not exited within `timeout` and a grace period, and reaps it.
    pub fn stop(&mut self, timeout: Duration) {
        self.stopping = true;
        let Some(pid) = self.pid.take() else { return };
        sys::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + timeout + KILL_GRACE;
        loop {
            if let Some(how) = sys::reap(pid, false) {
                if how != ChildExit::Code(0) {
                    log::warn(format_args!(
                        "{} (pid {pid}) {}",
                        self.name,
                        describe(Some(how))
                    ));
                }
                return;
            }
            if Instant::now() >= deadline {
                log::warn(format_args!(
                    "{} (pid {pid}) did not stop within {timeout:?}; killing it",
                    self.name
                ));
                sys::kill(pid, libc::SIGKILL);
                sys::reap(pid, true);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The companion process's whole life, just after `fork`.
fn run(server: &Server, master: libc::pid_t, ready: Option<OwnedFd>) -> i32 {
    if !sys::die_with_parent(libc::SIGTERM, master) {
        return 1;
    }
    // The public listeners belong to the workers: a companion must not keep
    // the port open, nor count in its accept queue.
    for l in server.listeners.iter() {
        // SAFETY: closes this process's duplicate, which nothing here uses;
        // the process ends with `_exit`, so no destructor closes it again.
        unsafe { libc::close(l.as_raw_fd()) };
    }
    let Some(companion) = server.protocol.companion() else {
        return 1;
    };
    let name = companion.name();
    let protocol: Arc<dyn crate::session::Protocol> = match companion.open() {
        Ok(p) => Arc::from(p),
        Err(e) => {
            log::warn(format_args!("{name}: {e}"));
            return 1;
        }
    };
    if let Some(fd) = ready {
        let _ = std::fs::File::from(fd).write_all(b"!");
    }
    let served = serve(server, companion, &protocol);
    protocol.stop();
    match served {
        Ok(()) => 0,
        Err(e) => {
            log::warn(format_args!("{name}: {e}"));
            1
        }
    }
}

/// Serves the companion's listener with a reactor until `TERM` drains it.
/// Its streams come from this server's own workers, whose clients the
/// workers have already admitted: no connection limit applies here.
fn serve(
    server: &Server,
    companion: &dyn Companion,
    protocol: &Arc<dyn crate::session::Protocol>,
) -> io::Result<()> {
    let shutdown = Shutdown::new()?;
    let ctx = Ctx {
        protocol: Arc::clone(protocol),
        shutdown: shutdown.clone(),
        board: Scoreboard::new()?,
        slot: 0,
        max_connections: usize::MAX,
        max_per_ip: usize::MAX,
        master: 0,
    };
    let timeout = server.config.shutdown_timeout;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || crate::server::watch_signals(&shutdown, timeout, None))?;
    crate::archs::reactor::serve(companion.listeners(), &ctx)
}

fn describe(how: Option<ChildExit>) -> String {
    match how {
        Some(ChildExit::Code(c)) => format!("exited with code {c}"),
        Some(ChildExit::Signal(s)) => format!("was killed by signal {s}"),
        None => "ended".into(),
    }
}
