//! Hot restart (`SIGUSR2`): a new server takes over the listening sockets
//! of a running one without refusing a connection.
//!
//! 1. The running server (the single process, or the prefork master or the
//!    process-per-connection parent) receives `USR2` and starts its
//!    *successor*: the binary it was started from (the new one, after an
//!    upgrade put it at the same path), with the same arguments and its
//!    listening sockets inherited, named in `MUSE_LISTEN_FDS`
//!    ([`Successor::spawn`]).
//! 2. The successor adopts those sockets instead of binding
//!    ([`inherited`]), starts as any server does, and once it serves says so
//!    on the pipe named in `MUSE_READY_FD` ([`announce_ready`]).
//! 3. Only then does the old server stop accepting and drain gracefully
//!    (as on `TERM`, within `--shutdown-timeout`), and exit. The sockets
//!    never close in between, so a client connecting during the handover
//!    waits in the kernel's backlog for whichever server accepts next:
//!    none is refused.
//!
//! A successor that needs what only one server may hold (kv's data
//! directory) asks the old server to drain first ([`ask_to_hand_over`])
//! and waits for it: connections then wait in the backlog while the old
//! server finishes its own.
//!
//! If the successor exits before it is ready, or is not ready within
//! [`READY_TIMEOUT`], the old server keeps serving and logs why (the
//! successor's own error is on the shared stderr just before). A
//! multi-reactor's per-thread `SO_REUSEPORT` sockets are passed too (groups
//! separated by `;`), because closing one would reset the connections
//! queued on it. (The prefork family's `--accept reuseport` sockets of
//! positions 1 and up are not passed: connections queued on them when the
//! old server exits are reset, so prefer `shared` or `handoff` where hot
//! restarts matter.) A `unix:` socket file passes to the successor, which
//! removes it at its exit; the old server leaves it in place.
//!
//! Under systemd the main process changes with a hot restart, which a
//! `Type=simple` unit takes for the service ending: use rolling restarts
//! there, or `Type=forking` with a PID file (see the README).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::net::Listeners;
use crate::sys::{self, ChildExit};

/// The environment variable naming the inherited listening descriptors:
/// comma-separated, in `--listen` order; groups separated by `;`.
pub const LISTEN_FDS_VAR: &str = "MUSE_LISTEN_FDS";
/// The environment variable naming the descriptor on which the successor
/// says it is ready.
pub const READY_FD_VAR: &str = "MUSE_READY_FD";
/// How long the old server waits for its successor to be ready: time to
/// replay a large kv log, with room to spare.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The byte a successor writes once it serves.
const READY: u8 = b'R';
/// The byte a successor writes when it needs the old server gone before it
/// can serve (the kv data directory, which one server holds at a time).
const HAND_OVER: u8 = b'H';

/// The binary this process was started from, read before anything could
/// replace it (afterwards `/proc/self/exe` names the deleted file).
static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
/// This process's end of its predecessor's ready pipe, if it is a
/// successor that has not yet said it is ready.
static READY_FD: OnceLock<RawFd> = OnceLock::new();

/// Notes the path of this process's binary. Call first thing in `main`.
pub fn remember_exe() {
    EXE.get_or_init(|| std::env::current_exe().ok());
}

/// The listening sockets a predecessor passed to this process, one group
/// per listener set (the first is the server's, the others a
/// multi-reactor's siblings); `None` if it is not a successor. The
/// variables are removed so that no child takes them for its own.
pub fn inherited() -> io::Result<Option<Vec<Vec<RawFd>>>> {
    if let Some(fd) = std::env::var(READY_FD_VAR)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    {
        // Not for the workers or programs this process starts.
        // SAFETY: fcntl on a plain integer; a bad one is EBADF, ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let _ = READY_FD.set(fd);
    }
    std::env::remove_var(READY_FD_VAR);
    let Some(list) = std::env::var_os(LISTEN_FDS_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(LISTEN_FDS_VAR);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{LISTEN_FDS_VAR}={list:?} is not a list of descriptors"),
        )
    };
    let list = list.to_str().ok_or_else(bad)?;
    let groups = list
        .split(';')
        .map(|g| {
            g.split(',')
                .map(|n| {
                    n.parse::<RawFd>()
                        .ok()
                        .filter(|fd| *fd >= 0)
                        .ok_or_else(bad)
                })
                .collect::<io::Result<Vec<_>>>()
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Some(groups))
}

/// Tells the predecessor, if this process is a successor, that it serves.
pub fn announce_ready() {
    if let Some(&fd) = READY_FD.get() {
        // SAFETY: writes one byte from a valid local; the descriptor was handed to this process for this one
        // write and close; nothing else uses it.
        unsafe {
            libc::write(fd, (&READY as *const u8).cast(), 1);
            libc::close(fd);
        }
    }
}

/// Whether this process is a hot restart's successor that has not yet
/// said it is ready (or one of its children, forked meanwhile).
pub fn is_successor() -> bool {
    READY_FD.get().is_some()
}

/// Asks the predecessor to stop accepting and drain now, because this
/// successor cannot serve until it has gone (it holds a resource only one
/// server may hold). Connections wait in the backlog meanwhile.
pub fn ask_to_hand_over() {
    if let Some(&fd) = READY_FD.get() {
        // SAFETY: writes one byte from a valid local to a descriptor this
        // process holds (the predecessor's pipe).
        unsafe { libc::write(fd, (&HAND_OVER as *const u8).cast(), 1) };
    }
}

/// A successor being started.
pub struct Successor {
    pid: libc::pid_t,
    /// The read end of its ready pipe (non-blocking).
    ready: OwnedFd,
    /// When it was started.
    since: Instant,
    /// How it ended, if a reaping loop saw it end first.
    exit: Option<ChildExit>,
}

/// Where a successor is.
pub enum Progress {
    /// Starting.
    Starting,
    /// Serving: the old server now drains.
    Ready,
    /// Waiting for the old server to go (see [`ask_to_hand_over`]): it
    /// now drains.
    HandOver,
    /// It will not serve (why); the old server goes on.
    Failed(String),
}

impl Successor {
    /// Starts a successor that inherits `groups` of listeners (the
    /// server's, then a multi-reactor's siblings).
    pub fn spawn(groups: &[&Listeners]) -> io::Result<Successor> {
        let exe = EXE
            .get()
            .cloned()
            .flatten()
            .ok_or_else(|| io::Error::other("the path of this binary is unknown"))?;
        let (ready_read, ready_write) = sys::pipe()?;
        let fds: Vec<Vec<RawFd>> = groups
            .iter()
            .map(|g| g.iter().map(|l| l.as_raw_fd()).collect())
            .collect();
        let list = fds
            .iter()
            .map(|g| {
                g.iter()
                    .map(|fd| fd.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join(";");
        let write_fd = ready_write.as_raw_fd();
        let mut keep: Vec<RawFd> = fds.into_iter().flatten().collect();
        keep.push(write_fd);
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .env(LISTEN_FDS_VAR, list)
            .env(READY_FD_VAR, write_fd.to_string());
        // SAFETY: between fork and exec the closure only calls fcntl, which
        // is async-signal-safe, on descriptors this process holds open.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &keep {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags == -1
                        || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", exe.display())))?;
        drop(ready_write);
        Ok(Successor {
            pid: child.id() as libc::pid_t,
            ready: ready_read,
            since: Instant::now(),
            exit: None,
        })
    }

    /// The successor's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// A descriptor that becomes readable when the successor is ready or
    /// has exited: include it in the old server's wait.
    pub fn fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// When to call [`Successor::poll`] at the latest.
    pub fn deadline(&self) -> Instant {
        self.since + READY_TIMEOUT
    }

    /// The successor was reaped by a loop that reaps every child.
    pub fn exited(&mut self, how: ChildExit) {
        self.exit = Some(how);
    }

    /// Where the successor is now. After [`Progress::Failed`] it has been
    /// reaped or told to stop; after [`Progress::Ready`] it is on its own.
    pub fn poll(&mut self, now: Instant) -> Progress {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a valid local.
        let n = unsafe { libc::read(self.ready.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        if n == 1 && byte == READY {
            return Progress::Ready;
        }
        if n == 1 && byte == HAND_OVER {
            return Progress::HandOver;
        }
        let eof = n == 0;
        if eof || self.exit.is_some() {
            // It closed the pipe without a word: it exited (or exec failed).
            let how = self.exit.take().or_else(|| sys::reap(self.pid, true));
            let how = match how {
                Some(ChildExit::Code(c)) => format!("exited with code {c}"),
                Some(ChildExit::Signal(s)) => format!("was killed by signal {s}"),
                None => "ended".to_string(),
            };
            return Progress::Failed(format!(
                "the new server (pid {}) {how} before it was ready",
                self.pid
            ));
        }
        if now >= self.deadline() {
            sys::kill(self.pid, libc::SIGTERM);
            return Progress::Failed(format!(
                "the new server (pid {}) was not ready within {READY_TIMEOUT:?}; stopped it",
                self.pid
            ));
        }
        Progress::Starting
    }
}
