//! Process signals: handlers record, loops act.
//!
//! The handler for each signal muse cares about only sets a bit in
//! [`PENDING`] and writes one byte to a self-pipe, both async-signal-safe.
//! Whoever runs a process's main loop (a prefork master, a process-per-
//! connection parent, or the watcher thread of a single-process server)
//! waits on [`wake_fd`] and calls [`take`] to learn what arrived.
//!
//! A forked child inherits the handlers but must not share its parent's
//! pipe (the parent would wake for the child's signals), so children call
//! [`reinstall_after_fork`] first thing.

use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// The signals muse handles.
pub const HANDLED: [libc::c_int; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

static PENDING: AtomicU64 = AtomicU64::new(0);
/// How many times each signal arrived since the last [`take`]: `TTIN`
/// twice is two workers more (the kernel still merges a signal that
/// arrives again before the handler has run for it).
static COUNTS: [AtomicU32; 32] = [const { AtomicU32::new(0) }; 32];
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY (async-signal-safety): only atomics and write(2); errno is
    // saved and restored so the interrupted code does not see it change.
    let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    if let Some(count) = usize::try_from(sig).ok().and_then(|i| COUNTS.get(i)) {
        count.fetch_add(1, Ordering::SeqCst);
    }
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        sys::poke(fd);
    }
    // SAFETY: __errno_location always returns this thread's errno.
    unsafe { *libc::__errno_location() = saved };
}

fn new_pipe() -> io::Result<()> {
    let (r, w) = sys::pipe()?;
    let old_r = WAKE_READ.swap(r.into_raw_fd(), Ordering::SeqCst);
    let old_w = WAKE_WRITE.swap(w.into_raw_fd(), Ordering::SeqCst);
    for fd in [old_r, old_w] {
        if fd >= 0 {
            // SAFETY: these descriptors were ours (from a previous pipe) and
            // nothing else holds them.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Installs the handlers and the self-pipe. Call once, early, in the first
/// process.
pub fn install() -> io::Result<()> {
    new_pipe()?;
    for sig in HANDLED {
        // SAFETY: a zeroed sigaction is valid; we fill handler and flags.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa` is fully initialised; the handler is async-signal-safe.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Gives a freshly forked child its own self-pipe and forgets the signals
/// its parent had pending.
fn reinstall_after_fork() -> io::Result<()> {
    PENDING.store(0, Ordering::SeqCst);
    new_pipe()
}

fn mask(how: libc::c_int, set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: valid sigset pointers; sigprocmask only reads `set` and
    // writes `old`.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(how, set, &mut old);
        old
    }
}

/// Forks with the handled signals held back across the fork, so that a
/// signal sent to the new child before it has its own self-pipe is not
/// lost (the handler would poke the parent's pipe, and the child would then
/// forget the flag): the child installs its pipe first, then lets them in.
/// The caller must be single-threaded (see `sys::fork`).
pub fn fork() -> io::Result<sys::Forked> {
    // SAFETY: sigemptyset/sigaddset initialise a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        set
    };
    let old = mask(libc::SIG_BLOCK, &set);
    let forked = sys::fork();
    if let Ok(sys::Forked::Child) = forked {
        crate::log::after_fork();
        if let Err(e) = reinstall_after_fork() {
            mask(libc::SIG_SETMASK, &old);
            return Err(e);
        }
    }
    mask(libc::SIG_SETMASK, &old);
    forked
}

/// The read end of the self-pipe: readable when a signal has arrived.
pub fn wake_fd() -> RawFd {
    WAKE_READ.load(Ordering::SeqCst)
}

/// The signals that arrived since the last call, and how many times each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrived {
    mask: u64,
    counts: [u32; 32],
}

impl Arrived {
    /// Whether `sig` is among them.
    pub fn has(self, sig: libc::c_int) -> bool {
        self.mask & (1 << sig) != 0
    }

    /// How many times `sig` arrived (at least once if [`Arrived::has`]).
    pub fn count(self, sig: libc::c_int) -> u32 {
        let counted = usize::try_from(sig)
            .ok()
            .and_then(|i| self.counts.get(i).copied())
            .unwrap_or(0);
        counted.max(u32::from(self.has(sig)))
    }

    /// Whether none arrived.
    pub fn is_empty(self) -> bool {
        self.mask == 0
    }
}

/// Takes (and clears) the signals that arrived, and empties the self-pipe.
pub fn take() -> Arrived {
    let fd = wake_fd();
    if fd >= 0 {
        sys::drain(fd);
    }
    let mask = PENDING.swap(0, Ordering::SeqCst);
    let mut counts = [0u32; 32];
    for (c, n) in counts.iter_mut().zip(&COUNTS) {
        *c = n.swap(0, Ordering::SeqCst);
    }
    Arrived { mask, counts }
}

/// Waits until a signal arrives or `timeout` passes.
pub fn wait(timeout: Option<std::time::Duration>) -> io::Result<()> {
    let mut fds = [sys::poll_fd(wake_fd(), sys::POLLIN)];
    sys::poll(&mut fds, timeout).map(|_| ())
}

/// Returns the handlers to their defaults (for a child about to `exec`, or
/// to die the ordinary way).
pub fn restore_defaults() {
    for sig in HANDLED {
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_that_arrives_twice_is_counted_twice() {
        // The handler itself, as the kernel would run it for each delivery
        // (no handler is installed in the test process).
        on_signal(libc::SIGTTIN);
        on_signal(libc::SIGTTIN);
        on_signal(libc::SIGTTOU);
        let got = take();
        assert!(got.has(libc::SIGTTIN) && got.has(libc::SIGTTOU));
        assert_eq!(got.count(libc::SIGTTIN), 2);
        assert_eq!(got.count(libc::SIGTTOU), 1);
        assert_eq!(got.count(libc::SIGQUIT), 0);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.count(libc::SIGTTIN), 0);
    }
}
