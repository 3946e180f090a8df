//! Log lines on stderr, one per event, prefixed with the process id so that
//! lines from a master and its workers can be told apart. stdout is kept for
//! the `listening on` lines that scripts and tests read.

use std::fmt::Arguments;
use std::io::Write;

fn line(level: &str, args: Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "muse[{}] {level}: {args}", std::process::id());
}

/// Something an operator may want to know.
pub fn info(args: Arguments<'_>) {
    line("info", args);
}

/// Something went wrong but the server goes on.
pub fn warn(args: Arguments<'_>) {
    line("warn", args);
}
