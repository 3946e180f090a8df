//! The command-line contract: `muse archs` lists the architectures,
//! `--help` works for `serve` and `archs`, and bad arguments exit with code 2
//! and a message on stderr (before anything listens).

#[macro_use]
#[allow(unused_macros)]
mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn archs_lists_every_architecture() {
    let run = run_cli(&["archs"]);
    assert_eq!(run.status.code(), Some(0), "muse archs failed: {run:?}");
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut listed = names.clone();
    listed.sort_unstable();
    let mut expected = ARCHS.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected, "muse archs printed:\n{}", run.stdout);
    for line in &lines {
        assert!(
            line.split_whitespace().count() > 1,
            "no description after the name in {line:?}"
        );
    }
}

/// Where io_uring is unavailable (here: made so by the fault switch), an
/// io_uring architecture refuses to start, with exit 1 and the reason,
/// before it listens.
#[test]
fn an_io_uring_architecture_without_io_uring_exits_1_with_the_reason() {
    for arch in URING_FAMILY {
        let run = run_cli_with(
            &["serve", "echo", "--arch", arch, "--listen", "127.0.0.1:0"],
            &[("MUSE_FAULT_URING_UNAVAILABLE", "1")],
        );
        assert_eq!(run.status.code(), Some(1), "{arch}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("{arch} cannot run here: io_uring is unavailable")),
            "{arch}: stderr does not give the reason:\n{}",
            run.stderr
        );
        assert!(
            !run.stdout.contains("listening on"),
            "{arch} listened before refusing: {}",
            run.stdout
        );
    }
}

#[test]
fn serve_help_exits_zero() {
    let run = run_cli(&["serve", "--help"]);
    assert_eq!(run.status.code(), Some(0), "muse serve --help: {run:?}");
    assert!(
        run.stdout.contains("--arch"),
        "serve help does not mention --arch:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("--listen"),
        "serve help does not mention --listen:\n{}",
        run.stdout
    );
}

#[test]
fn archs_help_exits_zero() {
    let run = run_cli(&["archs", "--help"]);
    assert_eq!(run.status.code(), Some(0), "muse archs --help: {run:?}");
    assert!(
        !run.stdout.trim().is_empty(),
        "muse archs --help printed nothing"
    );
}

/// Every bad invocation still names a loopback port-0 listener, so that a
/// server that wrongly accepted it binds nothing anyone else uses.
fn assert_usage_error(args: &[&str]) {
    let run = run_cli(args);
    assert_eq!(
        run.status.code(),
        Some(2),
        "`muse {}` should exit 2; got {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        run.status,
        run.stdout,
        run.stderr
    );
    assert!(
        !run.stderr.trim().is_empty(),
        "`muse {}` exited 2 without a message on stderr",
        args.join(" ")
    );
    assert!(
        !run.stdout.contains("listening on"),
        "`muse {}` started listening: {}",
        args.join(" "),
        run.stdout
    );
}

#[test]
fn unknown_arch_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "carrier-pigeon",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn unknown_protocol_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "gopher",
        "--arch",
        "serial",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "serial",
        "--listen",
        "127.0.0.1:0",
        "--frobnicate",
    ]);
}

#[test]
fn zero_workers_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "prefork",
        "--workers",
        "0",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn a_worker_memory_limit_whose_bytes_would_overflow_is_a_usage_error() {
    // 2^44 MiB is 2^64 bytes: once taken as 0, every worker recycled.
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "prefork",
        "--max-worker-memory",
        "17592186044416",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn a_worker_timeout_shorter_than_a_heartbeat_is_a_usage_error() {
    // An idle worker beats once a second: 0 killed healthy workers forever.
    for t in ["0", "0.5", "1.9"] {
        assert_usage_error(&[
            "serve",
            "echo",
            "--arch",
            "prefork",
            "--worker-timeout",
            t,
            "--listen",
            "127.0.0.1:0",
        ]);
    }
}

#[test]
fn non_numeric_workers_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "prefork",
        "--workers",
        "many",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn zero_threads_is_a_usage_error() {
    assert_usage_error(&[
        "serve",
        "echo",
        "--arch",
        "thread-pool",
        "--threads",
        "0",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn bad_listen_address_is_a_usage_error() {
    assert_usage_error(&["serve", "echo", "--arch", "serial", "--listen", "nonsense"]);
}

#[test]
fn a_flag_of_another_protocol_is_a_usage_error_naming_whose_it_is() {
    for (protocol, flag, value, owners) in [
        ("echo", "--root", Some("/tmp"), "ftp and http"),
        ("kv", "--autoindex", None, "http"),
        ("calc", "--fsync", Some("always"), "kv"),
        ("http", "--max-digits", Some("5"), "calc"),
        ("ftp", "--requirepass", Some("x"), "kv"),
        ("http", "--users", Some("/nonexistent"), "ftp"),
        ("kv", "--header-timeout", Some("5"), "http"),
    ] {
        let mut args = vec!["serve", protocol, "--listen", "127.0.0.1:0", flag];
        args.extend(value);
        assert_usage_error(&args);
        let run = run_cli(&args);
        assert!(
            run.stderr.contains(&format!(
                "{flag} is for {owners}; {protocol} does not read it"
            )),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_flag_the_architecture_does_not_read_is_warned_about_and_the_server_runs() {
    let server = Server::start(
        "echo",
        "reactor",
        &["--workers", "3", "--threads", "2", "--max-requests", "5"],
    );
    let mut c = server.connect();
    c.write_all(b"ping\n").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping\n");
    let warned = |stderr: &str| {
        ["--workers", "--threads", "--max-requests"]
            .iter()
            .all(|flag| stderr.contains(&format!("{flag} does nothing under reactor")))
    };
    // The warnings come before `listening on`; the reader of the
    // server's stderr may not have caught up yet.
    let seen = wait_for(Duration::from_secs(5), || {
        warned(&server.stderr()).then_some(())
    });
    assert!(seen.is_some(), "warnings missing: {}", server.stderr());
}
