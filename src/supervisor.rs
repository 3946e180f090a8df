//! The prefork master: forks workers, keeps their number at the target,
//! restarts the ones that die, kills the ones that hang, and shuts them all
//! down. Shared by `prefork`, `prefork-threads` and `prefork-reactor`, which
//! differ only in what a worker runs.
//!
//! The master is single-threaded (it forks) and runs one loop of named steps,
//! as Unicorn's does: [`Master::reap_workers`], handle the signals that
//! arrived, [`Master::kill_hung_workers`], [`Master::recycle_big_workers`]
//! (`--max-worker-memory`), [`Master::maintain_worker_count`]
//! (and the protocol's companion process, if it has one: `companion.rs`),
//! then sleep until the nearest deadline or the next signal. Signal handlers
//! only record (see `signals.rs`); this loop acts.
//!
//! Signals: `TERM`/`INT` stop gracefully within `--shutdown-timeout` (then
//! `KILL`); `QUIT` stops gracefully waiting for every connection; `TTIN` and
//! `TTOU` move the target one worker up or down. Workers ask the kernel for
//! `TERM` when the master dies, so none outlives it.
//!
//! How workers get their connections is the [`Acceptor`]'s (`--accept`,
//! `accept.rs`): from the listeners the master bound (`shared`: a herd
//! races for each connection, and the spread is uneven), from their
//! position's own `SO_REUSEPORT` listeners (`reuseport`: the kernel hashes
//! connections over the positions, blind to load, and a position's backlog
//! waits for its worker), or from the master itself, which then also
//! accepts while it sleeps (`handoff`: the least-loaded worker gets each
//! connection, for two more system calls and one more process hop). In the
//! bench (`accept.rs`), 50 kept connections on three `prefork-reactor`
//! workers spread 84/16/0 % shared, 35/34/31 % reuseport and 34/33/32 %
//! hand-off; a connection per request cost hand-off a third more CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::accept::Acceptor;
use crate::drivers::Ctx;
use crate::net::Listeners;
use crate::scoreboard::MAX_WORKERS;
use crate::server::Server;
use crate::sys::{self, ChildExit, Forked};
use crate::{log, signals};

/// A worker that dies sooner than this after starting counts as crashing:
/// its next start is delayed by a back-off that doubles each time.
pub const CRASH_WINDOW: Duration = Duration::from_secs(2);
/// The first restart delay of a crashing worker.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest restart delay, so a fixed worker comes back within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// After the shutdown timeout, how long workers get to exit before `KILL`.
pub const KILL_GRACE: Duration = Duration::from_millis(500);
/// The master's longest sleep between looking at its workers.
const MASTER_TICK: Duration = Duration::from_millis(500);
/// Exit code of a worker whose code panicked outside any session.
const WORKER_PANICKED: i32 = 70;

/// What a worker process runs once forked: serve the connections of the
/// listeners it is given until `ctx.shutdown` drains.
pub type WorkerBody = fn(&Server, &Listeners, &Ctx) -> std::io::Result<()>;

/// One worker position (Unicorn's `nr`).
#[derive(Default)]
struct WorkerSlot {
    pid: Option<libc::pid_t>,
    started: Option<Instant>,
    backoff: Duration,
    not_before: Option<Instant>,
    told_to_quit: bool,
    killed: bool,
}

/// How the master is stopping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Graceful; `KILL` whatever is left at the deadline (`None`: wait).
    Stopping(Option<Instant>),
}

/// The master process's state.
pub struct Master<'a> {
    server: &'a Server,
    body: WorkerBody,
    target: usize,
    slots: Vec<WorkerSlot>,
    stop: Stop,
    pid: libc::pid_t,
    /// When the companion process is due to be restarted, if it is down.
    companion_due: Option<Instant>,
    /// The stop's deadline passed: the workers left are being killed.
    killing: bool,
    /// How workers get their connections (`--accept`).
    accept: Acceptor,
}

impl<'a> Master<'a> {
    /// A master for `server` whose workers run `body`.
    pub fn new(server: &'a Server, body: WorkerBody) -> Master<'a> {
        let target = server.config.workers.clamp(1, MAX_WORKERS);
        Master {
            server,
            body,
            target,
            slots: (0..MAX_WORKERS).map(|_| WorkerSlot::default()).collect(),
            stop: Stop::Running,
            pid: sys::getpid(),
            companion_due: None,
            killing: false,
            accept: Acceptor::new(server),
        }
    }

    /// Runs until every worker has exited after a stop signal.
    pub fn run(mut self) -> std::io::Result<()> {
        loop {
            self.reap_workers();
            self.handle_signals();
            if let Stop::Stopping(deadline) = self.stop {
                if self.running() == 0 {
                    return Ok(());
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    if !self.killing {
                        self.killing = true;
                        log::warn(format_args!(
                            "{} worker(s) still running past the shutdown timeout; killing them",
                            self.running()
                        ));
                    }
                    self.kill_all(libc::SIGKILL);
                }
            } else {
                self.kill_hung_workers();
                self.recycle_big_workers();
                self.companion_due = self.server.tend_companion();
                self.maintain_worker_count();
            }
            let taking = self.taking_connections();
            let sleep = self.sleep_time();
            self.accept.wait(self.server, self.target, &taking, sleep)?;
        }
    }

    fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.pid.is_some()).count()
    }

    /// Reaps every worker that has exited and schedules its restart.
    fn reap_workers(&mut self) {
        let now = Instant::now();
        while let Some((pid, how)) = sys::reap_any() {
            let Some(nr) = self.slots.iter().position(|s| s.pid == Some(pid)) else {
                self.server.companion_exited(pid, how);
                continue;
            };
            self.server.board.release_slot(nr);
            let slot = &mut self.slots[nr];
            let lived = slot.started.map_or(Duration::ZERO, |t| now - t);
            slot.pid = None;
            slot.started = None;
            let expected = slot.told_to_quit || self.stop != Stop::Running;
            slot.told_to_quit = false;
            slot.killed = false;
            if expected {
                continue;
            }
            if lived < CRASH_WINDOW {
                slot.backoff = (slot.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
                slot.not_before = Some(now + slot.backoff);
            } else {
                slot.backoff = Duration::ZERO;
                slot.not_before = None;
            }
            let how = match how {
                ChildExit::Code(c) => format!("exited with code {c}"),
                ChildExit::Signal(s) => format!("was killed by signal {s}"),
            };
            log::warn(format_args!(
                "worker {nr} (pid {pid}) {how} after {lived:.1?}; restarting in {:?}",
                slot.backoff
            ));
        }
    }

    fn handle_signals(&mut self) {
        let got = signals::take();
        if got.is_empty() {
            return;
        }
        let now = Instant::now();
        if got.has(libc::SIGTERM) || got.has(libc::SIGINT) {
            let deadline = now + self.server.config.shutdown_timeout + KILL_GRACE;
            let sooner = match self.stop {
                Stop::Stopping(Some(d)) => d.min(deadline),
                _ => deadline,
            };
            if self.stop == Stop::Running {
                log::info(format_args!(
                    "shutting down (within {:?})",
                    self.server.config.shutdown_timeout
                ));
            }
            self.stop = Stop::Stopping(Some(sooner));
            self.kill_all(libc::SIGTERM);
        } else if got.has(libc::SIGQUIT) && self.stop == Stop::Running {
            log::info(format_args!(
                "shutting down once every connection has finished"
            ));
            self.stop = Stop::Stopping(None);
            self.kill_all(libc::SIGQUIT);
        }
        if self.stop == Stop::Running {
            // Each TTIN one worker more, each TTOU one fewer, in the count
            // they arrived in (not merged into one).
            let more = got.count(libc::SIGTTIN) as usize;
            let fewer = got.count(libc::SIGTTOU) as usize;
            let target = (self.target + more)
                .saturating_sub(fewer)
                .clamp(1, MAX_WORKERS);
            if more + fewer > 0 {
                self.target = target;
                log::info(format_args!("workers: {}", self.target));
            }
        }
    }

    /// Asks each worker whose resident memory passed
    /// `--max-worker-memory` to quit gracefully (`QUIT`: it stops
    /// accepting, the other workers take the new connections, and it ends
    /// once its own connections have); its slot is filled again once it
    /// has gone, as after any expected exit.
    fn recycle_big_workers(&mut self) {
        let Some(limit) = self.server.config.max_worker_memory else {
            return;
        };
        for (nr, slot) in self.slots.iter_mut().enumerate() {
            let Some(pid) = slot.pid else { continue };
            if slot.told_to_quit || slot.killed {
                continue;
            }
            let Some(rss) = sys::resident_bytes(pid) else {
                continue;
            };
            if rss > limit {
                log::info(format_args!(
                    "worker {nr} (pid {pid}) uses {} MiB, over --max-worker-memory {} MiB; recycling it",
                    rss >> 20,
                    limit >> 20
                ));
                slot.told_to_quit = true;
                sys::kill(pid, libc::SIGQUIT);
            }
        }
    }

    /// Kills workers whose heartbeat is older than `--worker-timeout`.
    fn kill_hung_workers(&mut self) {
        let now_ms = sys::monotonic_ms();
        let limit = self.server.config.worker_timeout.as_millis() as u64;
        for (nr, slot) in self.slots.iter_mut().enumerate() {
            let Some(pid) = slot.pid else { continue };
            let tick = self.server.board.slot(nr).tick_ms.load(Ordering::Relaxed);
            if tick == 0 || slot.killed || now_ms.saturating_sub(tick) <= limit {
                continue;
            }
            log::warn(format_args!(
                "worker {nr} (pid {pid}) has not made progress for {} ms; killing it",
                now_ms - tick
            ));
            sys::kill(pid, libc::SIGKILL);
            slot.killed = true;
        }
    }

    /// Starts missing workers below the target (unless backing off) and
    /// asks workers above it to quit.
    fn maintain_worker_count(&mut self) {
        let now = Instant::now();
        for nr in 0..MAX_WORKERS {
            let slot = &mut self.slots[nr];
            if nr < self.target {
                if slot.pid.is_none() && slot.not_before.is_none_or(|t| now >= t) {
                    slot.not_before = None;
                    self.spawn_worker(nr);
                }
            } else if let Some(pid) = slot.pid {
                if !slot.told_to_quit {
                    slot.told_to_quit = true;
                    sys::kill(pid, libc::SIGQUIT);
                }
            }
        }
    }

    fn spawn_worker(&mut self, nr: usize) {
        let board = self.server.board;
        // The spawn is the worker's first sign of life: one that hangs
        // before its own first beat (stopped, or stuck while booting) is
        // timed out like any other.
        board.tick(nr);
        if let Err(e) = self.accept.prepare(self.server, nr) {
            log::warn(format_args!("cannot prepare worker {nr}'s listeners: {e}"));
            return;
        }
        match signals::fork() {
            Err(e) => log::warn(format_args!("cannot fork worker {nr}: {e}")),
            Ok(Forked::Parent(pid)) => {
                board.slot(nr).pid.store(pid, Ordering::Relaxed);
                let slot = &mut self.slots[nr];
                slot.pid = Some(pid);
                slot.started = Some(Instant::now());
            }
            Ok(Forked::Child) => {
                let own = self.accept.for_worker(self.server, nr);
                let listeners = own.as_ref().unwrap_or(&self.server.listeners);
                let code = run_worker(self.server, listeners, self.body, nr, self.pid);
                sys::exit_now(code);
            }
        }
    }

    fn kill_all(&mut self, sig: libc::c_int) {
        for slot in &mut self.slots {
            if let Some(pid) = slot.pid {
                sys::kill(pid, sig);
                if sig == libc::SIGKILL {
                    slot.killed = true;
                }
            }
        }
    }

    /// Per position, whether its worker takes new connections: running,
    /// and neither told to quit nor killed (`handoff` sends it some).
    fn taking_connections(&self) -> Vec<bool> {
        self.slots
            .iter()
            .map(|s| self.stop == Stop::Running && s.pid.is_some() && !s.told_to_quit && !s.killed)
            .collect()
    }

    fn sleep_time(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + MASTER_TICK;
        for slot in &self.slots[..self.target] {
            if let Some(t) = slot.not_before {
                wake = wake.min(t);
            }
        }
        if let Stop::Stopping(Some(d)) = self.stop {
            wake = wake.min(d);
        }
        if let Some(t) = self.companion_due {
            wake = wake.min(t);
        }
        wake.saturating_duration_since(now)
    }
}

/// The life of a worker process, from just after `fork` to its exit code.
fn run_worker(
    server: &Server,
    listeners: &Listeners,
    body: WorkerBody,
    nr: usize,
    master: libc::pid_t,
) -> i32 {
    if !sys::die_with_parent(libc::SIGTERM, master) {
        return 1;
    }
    server.board.tick(nr);
    server.protocol.enter_worker(nr);
    let result = catch_unwind(AssertUnwindSafe(|| {
        crate::server::serve_with_signals(server, nr, |ctx| body(server, listeners, ctx))
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            log::warn(format_args!("worker {nr}: {e}"));
            1
        }
        Err(_) => WORKER_PANICKED,
    }
}
