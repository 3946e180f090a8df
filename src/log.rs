//! Log lines on stderr, one per event, prefixed with the process id so that
//! lines from a master and its workers can be told apart. stdout is kept for
//! the `listening on` lines that scripts and tests read.
//!
//! Each line is formatted first and written with one `write(2)`: stderr is
//! unbuffered, and writing the pieces of a format one by one would cost a
//! system call each (and let lines from several threads interleave).

use std::fmt::{Arguments, Write as _};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// This process's id, read once (0: not yet); reset in forked children.
static PID: AtomicU32 = AtomicU32::new(0);

fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Forgets the cached process id (a forked child has its own).
pub fn after_fork() {
    PID.store(0, Ordering::Relaxed);
}

fn line(level: &str, args: Arguments<'_>) {
    let mut text = String::with_capacity(160);
    let _ = writeln!(text, "muse[{}] {level}: {args}", pid());
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Something an operator may want to know.
pub fn info(args: Arguments<'_>) {
    line("info", args);
}

/// Something went wrong but the server goes on.
pub fn warn(args: Arguments<'_>) {
    line("warn", args);
}

/// Something went wrong and the server stops.
pub fn error(args: Arguments<'_>) {
    line("error", args);
}
