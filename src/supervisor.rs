//! The prefork master: forks workers, keeps their number at the target,
//! restarts the ones that die, kills the ones that hang, replaces them all
//! one at a time on request, and shuts them all down. Shared by `prefork`,
//! `prefork-threads` and `prefork-reactor`, which differ only in what a
//! worker runs.
//!
//! The master is single-threaded (it forks) and runs one loop of named steps,
//! as Unicorn's does: [`Master::reap_workers`], handle the signals that
//! arrived, [`Master::read_scoreboard`] (workers that became ready or retire
//! themselves), [`Master::kill_hung_workers`], [`Master::recycle_big_workers`]
//! (`--max-worker-memory`), [`Master::maintain_worker_count`] (and the
//! protocol's companion process, if it has one: `companion.rs`),
//! [`Master::roll_workers`] (a rolling restart), then sleep until the
//! nearest deadline or the next signal. Signal handlers only record (see
//! `signals.rs`); this loop acts.
//!
//! # Positions and slots
//!
//! A *position* (Unicorn's `nr`, `0..target`) is a place for one worker;
//! a *slot* is a worker process's row on the scoreboard. They differ
//! because for a while a position can have two workers: the old one
//! draining its connections and its replacement, already serving. A worker
//! keeps its slot until it is reaped; its replacement takes any free slot
//! (there are [`MAX_WORKERS`] of them, so one is free unless 256 workers
//! live at once). A position is *filled* by any worker of it that is not
//! retiring; [`Master::maintain_worker_count`] forks a worker for every
//! position below the target that is not.
//!
//! A worker marks its slot *ready* just before it serves (`Ctx::ready`). A
//! worker that dies before it is ready failed to boot; one that does so
//! [`BOOT_FAILURES_MAX`] times in a row at one position stops the server
//! (exit 1): respawning it forever would only fill the log.
//!
//! Signals: `TERM`/`INT` stop gracefully within `--shutdown-timeout` (then
//! `KILL`); `QUIT` stops gracefully waiting for every connection; `TTIN` and
//! `TTOU` move the target one worker up or down; `USR1` starts a rolling
//! restart ([`Master::roll_workers`]; a `USR1` during one is logged and
//! ignored); `USR2` is a hot restart of the whole server (`restart.rs`);
//! `HUP` reloads what the protocol can (the FTP users file) in the master
//! and every worker; `CHLD` (from the kernel, or from a worker that became
//! ready or retires itself) wakes the loop. Workers ask the kernel for
//! `TERM` when the master dies, so none outlives it.
//!
//! Recycling: a worker over `--max-worker-memory` is told to quit (`QUIT`);
//! a worker at its `--max-requests` limit (drawn at its spawn) drains by
//! itself and marks its slot retiring (the bound it keeps is in
//! `scoreboard.rs`). Either way the position is filled
//! again at once, while the old worker finishes its connections, and its
//! exit is expected (logged at info, never counted as a crash; a worker
//! that retired itself says how many requests it answered in all).
//!
//! Fault injection, for tests: when the environment variable
//! [`FAULT_WORKER_BOOT`] names a file that exists as a worker boots, the
//! worker says so and exits 1 before it is ready.
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
/// Workers of one position that die before they are ready, this many times
/// in a row, stop the server (Gunicorn's boot-error halt). A boot that
/// fails that often fails for a reason a restart does not fix (a bad
/// option, a missing file); five, with the crash back-off between them
/// (0.1 s doubling: about 1.5 s in all), still rides out a passing one.
pub const BOOT_FAILURES_MAX: u32 = 5;
/// The environment variable that makes workers fail to boot, for tests:
/// while the file it names exists, a booting worker exits 1.
pub const FAULT_WORKER_BOOT: &str = "MUSE_FAULT_WORKER_BOOT";
/// The master's longest sleep between looking at its workers.
const MASTER_TICK: Duration = Duration::from_millis(500);
/// Exit code of a worker whose code panicked outside any session.
const WORKER_PANICKED: i32 = 70;

/// What a worker process runs once forked: serve the connections of the
/// listeners it is given until `ctx.shutdown` drains.
pub type WorkerBody = fn(&Server, &Listeners, &Ctx) -> std::io::Result<()>;

/// What a worker does for its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Fills its position (booting, then serving).
    Serving,
    /// Boots to take its position over from an old worker, in a rolling
    /// restart; fills the position too, so that no third worker is forked
    /// for it.
    Successor,
    /// Leaving (told to quit, or retiring by itself at its request limit):
    /// it no longer fills its position, and its exit is expected.
    Retiring,
}

/// One worker process.
struct Worker {
    pid: libc::pid_t,
    /// Its position.
    nr: usize,
    /// Its row on the scoreboard.
    slot: usize,
    started: Instant,
    role: Role,
    /// Its slot said it was ready.
    ready: bool,
    /// Sent `KILL`.
    killed: bool,
}

/// One worker position: what outlives its workers.
#[derive(Default)]
struct Position {
    backoff: Duration,
    not_before: Option<Instant>,
    /// Workers of this position that died before they were ready, in a row.
    boot_failures: u32,
}

/// A rolling restart under way.
struct Roll {
    began: Instant,
    /// The workers to replace: those that filled a position when it began.
    old: Vec<libc::pid_t>,
    replaced: usize,
    /// The new worker booting now, if any.
    successor: Option<libc::pid_t>,
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
    /// The worker processes not yet reaped, in no order.
    workers: Vec<Worker>,
    /// Every position, `0..MAX_WORKERS`.
    positions: Vec<Position>,
    roll: Option<Roll>,
    stop: Stop,
    /// Why the master stops with an error (a boot that kept failing).
    halted: Option<String>,
    pid: libc::pid_t,
    /// Workers forked so far (it keys the request-limit draws).
    spawned: u64,
    /// When the companion process is due to be restarted, if it is down.
    companion_due: Option<Instant>,
    /// The stop's deadline passed: the workers left are being killed.
    killing: bool,
    /// The first time every position had a ready worker has been logged
    /// (`N workers ready`: the server is fully up).
    all_ready_said: bool,
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
            workers: Vec::with_capacity(2 * target),
            positions: (0..MAX_WORKERS).map(|_| Position::default()).collect(),
            roll: None,
            stop: Stop::Running,
            halted: None,
            pid: sys::getpid(),
            spawned: 0,
            companion_due: None,
            killing: false,
            all_ready_said: false,
            accept: Acceptor::new(server),
        }
    }

    /// Runs until every worker has exited after a stop signal (or after a
    /// boot that kept failing: then with that error).
    pub fn run(mut self) -> std::io::Result<()> {
        loop {
            self.reap_workers();
            self.handle_signals();
            self.read_scoreboard();
            if let Stop::Stopping(deadline) = self.stop {
                if self.workers.is_empty() {
                    return match self.halted.take() {
                        Some(why) => Err(std::io::Error::other(why)),
                        None => Ok(()),
                    };
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    if !self.killing {
                        self.killing = true;
                        log::warn(format_args!(
                            "{} worker(s) still running past the shutdown timeout; killing them",
                            self.workers.len()
                        ));
                    }
                    self.kill_all(libc::SIGKILL);
                }
            } else {
                self.kill_hung_workers();
                self.recycle_big_workers();
                self.server.tend_hot_restart();
                self.companion_due = self.server.tend_companion();
                self.maintain_worker_count();
                self.roll_workers();
            }
            let taking = self.taking_connections();
            let sleep = self.sleep_time();
            self.accept.wait(self.server, self.target, &taking, sleep)?;
        }
    }

    /// Reaps every worker that has exited: an expected exit is forgotten;
    /// a crash schedules the position's restart (with back-off); a
    /// successor that died stops the rolling restart; and the position's
    /// [`BOOT_FAILURES_MAX`]th boot failure in a row stops the server.
    fn reap_workers(&mut self) {
        let now = Instant::now();
        while let Some((pid, how)) = sys::reap_any() {
            let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
                self.server.child_exited(pid, how);
                continue;
            };
            let w = self.workers.swap_remove(i);
            let slot = self.server.board.slot(w.slot);
            let ready = w.ready || slot.ready.load(Ordering::Acquire);
            let retired_itself = slot.retiring.load(Ordering::Acquire);
            if retired_itself && w.role != Role::Retiring {
                // It reached its limit and drained before the master looked.
                self.log_recycle(&w);
            }
            let how = match how {
                ChildExit::Code(c) => format!("exited with code {c}"),
                ChildExit::Signal(s) => format!("was killed by signal {s}"),
            };
            if retired_itself {
                // Its count is final now: what --max-requests bounded.
                log::info(format_args!(
                    "worker {} (pid {pid}) answered {} requests in all (limit {}) and {how}",
                    w.nr,
                    slot.requests.load(Ordering::Relaxed),
                    slot.request_limit.load(Ordering::Relaxed)
                ));
            }
            self.server.board.release_slot(w.slot);
            let lived = now - w.started;
            let nr = w.nr;
            if self.stop != Stop::Running || w.role == Role::Retiring || retired_itself {
                continue;
            }
            if w.role == Role::Successor {
                self.stop_roll(&format!(
                    "the new worker {nr} (pid {pid}) {how} before it took over"
                ));
                continue;
            }
            let pos = &mut self.positions[nr];
            if lived < CRASH_WINDOW {
                pos.backoff = (pos.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
                pos.not_before = Some(now + pos.backoff);
            } else {
                pos.backoff = Duration::ZERO;
                pos.not_before = None;
            }
            if ready {
                log::warn(format_args!(
                    "worker {nr} (pid {pid}) {how} after {lived:.1?}; restarting in {:?}",
                    pos.backoff
                ));
                continue;
            }
            pos.boot_failures += 1;
            if pos.boot_failures >= BOOT_FAILURES_MAX {
                let why = format!("worker {nr} failed to boot {BOOT_FAILURES_MAX} times in a row");
                log::error(format_args!("{why}; stopping"));
                self.halted = Some(why);
                let deadline = now + self.server.config.shutdown_timeout + KILL_GRACE;
                self.begin_stop(Some(deadline), libc::SIGTERM);
                continue;
            }
            log::warn(format_args!(
                "worker {nr} (pid {pid}) {how} before it was ready (boot failure {} of {BOOT_FAILURES_MAX} in a row); restarting in {:?}",
                pos.boot_failures, pos.backoff
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
            if self.stop == Stop::Running {
                log::info(format_args!(
                    "shutting down (within {:?})",
                    self.server.config.shutdown_timeout
                ));
            }
            self.begin_stop(Some(deadline), libc::SIGTERM);
        } else if got.has(libc::SIGUSR2) {
            self.server.hot_restart(self.stop != Stop::Running);
        } else if got.has(libc::SIGQUIT) && self.stop == Stop::Running {
            log::info(format_args!(
                "shutting down once every connection has finished"
            ));
            self.begin_stop(None, libc::SIGQUIT);
        }
        if got.has(libc::SIGHUP) {
            // Here for the workers forked from now on, and in each worker.
            self.server.reload();
            self.kill_all(libc::SIGHUP);
        }
        if self.stop != Stop::Running {
            return;
        }
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
        if got.has(libc::SIGUSR1) {
            self.begin_roll(now);
        }
    }

    /// Stops gracefully: tells every worker `sig` (`TERM`, or `QUIT` to
    /// wait for every connection); `KILL` for those left at `deadline`. A
    /// rolling restart under way ends here.
    fn begin_stop(&mut self, deadline: Option<Instant>, sig: libc::c_int) {
        let sooner = match (self.stop, deadline) {
            (Stop::Stopping(Some(d)), Some(new)) => Some(d.min(new)),
            (Stop::Stopping(Some(d)), None) => Some(d),
            (_, new) => new,
        };
        self.stop = Stop::Stopping(sooner);
        self.roll = None;
        self.kill_all(sig);
    }

    /// `USR1`: replaces every worker that fills a position now, one at a
    /// time ([`Master::roll_workers`]). One already under way goes on: the
    /// signal is logged and ignored (a second roll would only replace the
    /// new workers too).
    fn begin_roll(&mut self, now: Instant) {
        if let Some(roll) = &self.roll {
            log::info(format_args!(
                "rolling restart already under way ({} of {} replaced); USR1 ignored",
                roll.replaced,
                roll.old.len()
            ));
            return;
        }
        let old: Vec<libc::pid_t> = self
            .workers
            .iter()
            .filter(|w| w.role == Role::Serving)
            .map(|w| w.pid)
            .collect();
        log::info(format_args!(
            "rolling restart: replacing {} workers one at a time",
            old.len()
        ));
        self.roll = Some(Roll {
            began: now,
            old,
            replaced: 0,
            successor: None,
        });
    }

    /// Moves a rolling restart on by one step. For each position in turn
    /// whose worker is an old one, it forks a successor and waits until the
    /// successor is ready; then the old worker is told to quit (`QUIT`: it
    /// stops accepting and finishes its connections) and the next position
    /// is taken. So as many workers as before are ready to accept all
    /// along. A successor that dies, or is not ready within
    /// `--worker-timeout`, stops the roll: the old workers left keep
    /// serving.
    fn roll_workers(&mut self) {
        let Some(mut roll) = self.roll.take() else {
            return;
        };
        if let Some(pid) = roll.successor {
            let timeout = self.server.config.worker_timeout;
            let Some(new) = self.workers.iter_mut().find(|w| w.pid == pid) else {
                // Reaped: `reap_workers` has said why and stopped the roll.
                return;
            };
            match new.role {
                // Told to go (TTOU took its position away): go on.
                Role::Retiring => roll.successor = None,
                Role::Successor if !new.ready => {
                    if new.started.elapsed() > timeout {
                        new.role = Role::Retiring;
                        new.killed = true;
                        sys::kill(pid, libc::SIGKILL);
                        let why = format!(
                            "the new worker {} (pid {pid}) was not ready within --worker-timeout ({timeout:?}); killed it",
                            new.nr
                        );
                        self.roll = Some(roll);
                        self.stop_roll(&why);
                        return;
                    }
                    self.roll = Some(roll);
                    return;
                }
                Role::Successor | Role::Serving => {
                    new.role = Role::Serving;
                    let nr = new.nr;
                    for old in &mut self.workers {
                        if old.nr == nr && old.role == Role::Serving && old.pid != pid {
                            old.role = Role::Retiring;
                            sys::kill(old.pid, libc::SIGQUIT);
                        }
                    }
                    roll.replaced += 1;
                    roll.successor = None;
                }
            }
        }
        let next = (0..self.target).find(|&nr| {
            self.workers
                .iter()
                .any(|w| w.nr == nr && w.role == Role::Serving && roll.old.contains(&w.pid))
        });
        let Some(nr) = next else {
            log::info(format_args!(
                "rolling restart complete: {} workers replaced in {:.1?}",
                roll.replaced,
                roll.began.elapsed()
            ));
            return;
        };
        match self.spawn_worker(nr, Role::Successor) {
            Some(pid) => {
                roll.successor = Some(pid);
                self.roll = Some(roll);
            }
            None => {
                self.roll = Some(roll);
                self.stop_roll(&format!("no new worker {nr} could be started"));
            }
        }
    }

    /// Ends the rolling restart under way, if any, saying why.
    fn stop_roll(&mut self, why: &str) {
        let Some(roll) = self.roll.take() else {
            return;
        };
        log::warn(format_args!(
            "rolling restart stopped: {why}; {} of {} workers replaced, the old ones left keep serving",
            roll.replaced,
            roll.old.len()
        ));
    }

    /// Notes the workers whose slots say they became ready (their
    /// position's boot is no longer failing) or retire themselves (their
    /// position is filled again at once).
    fn read_scoreboard(&mut self) {
        let board = self.server.board;
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            let slot = board.slot(w.slot);
            if !w.ready && slot.ready.load(Ordering::Acquire) {
                w.ready = true;
                self.positions[w.nr].boot_failures = 0;
            }
            if w.role != Role::Retiring && slot.retiring.load(Ordering::Acquire) {
                w.role = Role::Retiring;
                self.log_recycle(&self.workers[i]);
            }
        }
        if !self.all_ready_said {
            let ready = self
                .workers
                .iter()
                .filter(|w| w.ready && w.role == Role::Serving)
                .count();
            if ready >= self.target {
                self.all_ready_said = true;
                log::info(format_args!("{ready} workers ready"));
            }
        }
    }

    /// Says that worker `w` reached its request limit. Its count is not
    /// logged here: its drain may still answer what its clients had sent;
    /// its exit says the final count.
    fn log_recycle(&self, w: &Worker) {
        let slot = self.server.board.slot(w.slot);
        log::info(format_args!(
            "worker {} (pid {}) reached its limit of {} requests; recycling it",
            w.nr,
            w.pid,
            slot.request_limit.load(Ordering::Relaxed)
        ));
    }

    /// Asks each ready worker whose resident memory passed
    /// `--max-worker-memory` to quit gracefully (`QUIT`: it stops
    /// accepting, the other workers take the new connections, and it ends
    /// once its own connections have); its position is filled again at
    /// once.
    fn recycle_big_workers(&mut self) {
        let Some(limit) = self.server.config.max_worker_memory else {
            return;
        };
        for w in &mut self.workers {
            if w.role == Role::Retiring || w.killed || !w.ready {
                continue;
            }
            let Some(rss) = sys::resident_bytes(w.pid) else {
                continue;
            };
            if rss > limit {
                log::info(format_args!(
                    "worker {} (pid {}) uses {} MiB, over --max-worker-memory {} MiB; recycling it",
                    w.nr,
                    w.pid,
                    rss >> 20,
                    limit >> 20
                ));
                w.role = Role::Retiring;
                sys::kill(w.pid, libc::SIGQUIT);
            }
        }
    }

    /// Kills workers whose heartbeat is older than `--worker-timeout`.
    fn kill_hung_workers(&mut self) {
        let now_ms = sys::monotonic_ms();
        let limit = self.server.config.worker_timeout.as_millis() as u64;
        for w in &mut self.workers {
            let tick = self
                .server
                .board
                .slot(w.slot)
                .tick_ms
                .load(Ordering::Relaxed);
            if tick == 0 || w.killed || now_ms.saturating_sub(tick) <= limit {
                continue;
            }
            log::warn(format_args!(
                "worker {} (pid {}) has not made progress for {} ms; killing it",
                w.nr,
                w.pid,
                now_ms - tick
            ));
            sys::kill(w.pid, libc::SIGKILL);
            w.killed = true;
        }
    }

    /// Starts a worker for each position below the target that no worker
    /// fills (unless it is backing off), and asks workers above it to quit.
    fn maintain_worker_count(&mut self) {
        let now = Instant::now();
        let mut filled = [false; MAX_WORKERS];
        for w in &mut self.workers {
            if w.role == Role::Retiring {
                continue;
            }
            if w.nr >= self.target {
                w.role = Role::Retiring;
                sys::kill(w.pid, libc::SIGQUIT);
            } else {
                filled[w.nr] = true;
            }
        }
        for (nr, &filled) in filled.iter().enumerate().take(self.target) {
            let pos = &mut self.positions[nr];
            if filled || pos.not_before.is_some_and(|t| now < t) {
                continue;
            }
            pos.not_before = None;
            self.spawn_worker(nr, Role::Serving);
        }
    }

    /// Forks a worker for position `nr` in a free slot, with its own
    /// request limit. Returns its pid, or `None` (logged) if it could not be.
    fn spawn_worker(&mut self, nr: usize, role: Role) -> Option<libc::pid_t> {
        let board = self.server.board;
        let Some(slot) = (0..MAX_WORKERS).find(|&s| self.workers.iter().all(|w| w.slot != s))
        else {
            log::warn(format_args!(
                "cannot start worker {nr}: all {MAX_WORKERS} scoreboard slots are in use"
            ));
            return None;
        };
        self.spawned += 1;
        let limit = self
            .server
            .config
            .max_requests
            .map_or(0, |m| m.draw(random_u64(self.spawned)));
        board
            .slot(slot)
            .request_limit
            .store(limit, Ordering::Relaxed);
        // The spawn is the worker's first sign of life: one that hangs
        // before its own first beat (stopped, or stuck while booting) is
        // timed out like any other.
        board.tick(slot);
        if let Err(e) = self.accept.prepare(self.server, nr) {
            log::warn(format_args!("cannot prepare worker {nr}'s listeners: {e}"));
            board.release_slot(slot);
            return None;
        }
        match signals::fork() {
            Err(e) => {
                log::warn(format_args!("cannot fork worker {nr}: {e}"));
                board.release_slot(slot);
                None
            }
            Ok(Forked::Parent(pid)) => {
                board.slot(slot).pid.store(pid, Ordering::Relaxed);
                self.workers.push(Worker {
                    pid,
                    nr,
                    slot,
                    started: Instant::now(),
                    role,
                    ready: false,
                    killed: false,
                });
                Some(pid)
            }
            Ok(Forked::Child) => {
                let own = self.accept.for_worker(self.server, nr);
                let listeners = own.as_ref().unwrap_or(&self.server.listeners);
                let code = run_worker(self.server, listeners, self.body, nr, slot, self.pid);
                sys::exit_now(code);
            }
        }
    }

    fn kill_all(&mut self, sig: libc::c_int) {
        for w in &mut self.workers {
            sys::kill(w.pid, sig);
            if sig == libc::SIGKILL {
                w.killed = true;
            }
        }
    }

    /// Per position, the scoreboard slots of its workers that take new
    /// connections (running, neither retiring nor killed: `handoff` sends
    /// them some); empty for a position that takes none.
    fn taking_connections(&self) -> Vec<Vec<usize>> {
        let mut taking = vec![Vec::new(); MAX_WORKERS];
        if self.stop != Stop::Running {
            return taking;
        }
        for w in &self.workers {
            if w.role != Role::Retiring && !w.killed {
                taking[w.nr].push(w.slot);
            }
        }
        taking
    }

    fn sleep_time(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + MASTER_TICK;
        for pos in &self.positions[..self.target] {
            if let Some(t) = pos.not_before {
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

/// 64 random bits for the `n`th draw: std's `RandomState` is keyed from
/// the OS's random source once per thread (and its keys move on at each
/// `new`), so hashing `n` with a fresh one is random enough for jitter and
/// needs no generator of our own.
fn random_u64(n: u64) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(n)
}

/// The life of a worker process, from just after `fork` to its exit code.
/// `nr` is its position, `slot` its scoreboard row; it accepts on
/// `listeners`.
fn run_worker(
    server: &Server,
    listeners: &Listeners,
    body: WorkerBody,
    nr: usize,
    slot: usize,
    master: libc::pid_t,
) -> i32 {
    if !sys::die_with_parent(libc::SIGTERM, master) {
        return 1;
    }
    server.board.tick(slot);
    if let Some(path) = std::env::var_os(FAULT_WORKER_BOOT) {
        let path = std::path::Path::new(&path);
        if path.exists() {
            log::warn(format_args!(
                "worker {nr}: failing to boot (fault injection: {} exists)",
                path.display()
            ));
            return 1;
        }
    }
    server.protocol.enter_worker(nr);
    let result = catch_unwind(AssertUnwindSafe(|| {
        crate::server::serve_with_signals(server, slot, master, |ctx| body(server, listeners, ctx))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::MaxRequests;

    #[test]
    fn request_limits_are_drawn_within_the_jitter_and_spread_over_it() {
        let m = MaxRequests {
            base: 20,
            jitter: 5,
        };
        let mut seen = [0u32; 6];
        for n in 0..600 {
            let limit = m.draw(random_u64(n));
            assert!((20..=25).contains(&limit), "{limit}");
            seen[(limit - 20) as usize] += 1;
        }
        // Uniform: each of the six values about 100 times; none missing.
        assert!(seen.iter().all(|&c| c > 30), "{seen:?}");
    }

    #[test]
    fn a_draw_without_jitter_is_the_base_and_extremes_do_not_overflow() {
        let none = MaxRequests { base: 7, jitter: 0 };
        assert!((0..50).all(|n| none.draw(random_u64(n)) == 7));
        let edge = MaxRequests {
            base: u64::MAX - 1,
            jitter: u64::MAX,
        };
        assert!(edge.draw(u64::MAX) >= u64::MAX - 1);
        assert_eq!(none.draw(u64::MAX), 7);
    }
}
