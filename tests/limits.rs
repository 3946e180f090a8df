//! Resource limits: a server started with a small `RLIMIT_NOFILE` survives
//! clients opening more connections than it has descriptors (it keeps
//! serving the connections it has and does not die), and once those clients
//! go away it accepts and serves new connections again.

#[macro_use]
mod common;

use common::*;

/// Descriptors the server may have: room for its own needs (listener,
/// epoll, signal pipe, a runtime's handful) but far fewer than [`FLOOD`].
const FD_LIMIT: u64 = 64;
/// Connections opened at once, more than the server has descriptors.
const FLOOD: usize = 100;

/// Sizes each architecture so that one process would accept more
/// connections than it has descriptors: more pool threads than descriptors,
/// and a single worker where workers each have their own limit. (Serial,
/// prefork and process-per-connection never hold many connections in one
/// process; for them this checks that a flood does no harm.)
fn flood_sizing(arch: &str) -> &'static [&'static str] {
    match arch {
        "thread-pool" => &["--threads", "100"],
        "prefork-threads" => &["--workers", "1", "--threads", "100"],
        "prefork-reactor" => &["--workers", "1"],
        _ => &[],
    }
}

arch_tests!(survives_running_out_of_descriptors, |arch| {
    let mut server = Server::serve_echo_with_fd_limit(arch, flood_sizing(arch), FD_LIMIT);
    let mut first = server.connect();
    server.echo(&mut first, b"first, before the flood\n");

    // The kernel completes these handshakes into the listen backlog whether
    // or not the server can accept them.
    let flood: Vec<_> = (0..FLOOD).map(|_| server.connect()).collect();

    // Keep the server's accept loops in the out-of-descriptors state for
    // about a second (some twenty retries each), then check that it still
    // serves and still runs.
    for round in 0..20 {
        server.echo(
            &mut first,
            format!("first, during the flood {round}\n").as_bytes(),
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.assert_running();

    // One log line per episode and process, not one per retry: at most one
    // process accepts here under every sizing above, plus a margin of one
    // for an episode that ended and began again while the flood drained.
    let pauses = server.stderr().matches("pausing accepts").count();
    if pauses > 2 {
        server.fail(&format!(
            "{pauses} \"pausing accepts\" lines for one flood: log once per episode"
        ));
    }

    drop(flood);
    drop(first);

    // New connections are served once descriptors are free again. Under
    // the serial-like architectures the backlog drains in turn first.
    for i in 0..3 {
        let mut conn = server.connect();
        if let Err(e) = try_echo(&mut conn, format!("after the flood {i}\n").as_bytes()) {
            server.fail(&format!("connection {i} after the flood closed: {e}"));
        }
    }
    server.assert_running();
});
