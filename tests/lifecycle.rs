//! Process lifecycle, seen from outside: graceful stop on SIGTERM/SIGINT with
//! a connection in flight (exit 0, nothing of the process group left), the
//! forced stop at `--shutdown-timeout`, prefork-family supervision (a killed
//! worker is replaced without disturbing open connections, SIGTTIN/SIGTTOU
//! change the worker count, workers die with a SIGKILLed master), and
//! process-per-connection forking one child per connection and reaping it.

#[macro_use]
mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

/// How long leftover processes may take to vanish after the master exits.
const GROUP_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection, echoes, sends `sig`, keeps echoing on the same
/// connection, half-closes it, and expects a clean exit with no process of
/// the group left behind.
fn stop_with_connection_in_flight(arch: &str, sig: libc::c_int, sig_name: &str) {
    let mut server = Server::serve_echo(arch, &["--shutdown-timeout", "30"]);
    let mut conn = server.connect();
    server.echo(&mut conn, b"before the signal\n");
    server.signal(sig);
    for i in 0..5 {
        let msg = format!("in flight after {sig_name}, message {i}\n");
        if let Err(e) = try_echo(&mut conn, msg.as_bytes()) {
            server.fail(&format!("in-flight connection broken by {sig_name}: {e}"));
        }
    }
    half_close(&conn);
    match try_read_to_eof(&mut conn) {
        Ok(rest) if rest.is_empty() => {}
        Ok(rest) => server.fail(&format!("{} unexpected bytes before EOF", rest.len())),
        Err(e) => server.fail(&format!("after half-close during shutdown: {e}")),
    }
    drop(conn);
    let Some(status) = server.wait_exit(EXIT_TIMEOUT) else {
        server.fail(&format!(
            "still running {EXIT_TIMEOUT:?} after {sig_name} and the last connection closing"
        ));
    };
    if status.code() != Some(0) {
        server.fail(&format!(
            "exit status after {sig_name} is {status}, expected 0"
        ));
    }
    server.assert_group_gone(GROUP_GONE_TIMEOUT);
}

arch_tests!(sigterm_finishes_in_flight_connection, |arch| {
    stop_with_connection_in_flight(arch, libc::SIGTERM, "SIGTERM");
});

arch_tests!(
    sigint_finishes_in_flight_connection,
    [
        serial,
        process_per_connection,
        prefork,
        thread_pool,
        reactor,
        async_
    ],
    |arch| {
        stop_with_connection_in_flight(arch, libc::SIGINT, "SIGINT");
    }
);

arch_tests!(sigterm_exits_at_shutdown_timeout, |arch| {
    // The client never closes: the server must give up on it after
    // --shutdown-timeout and still exit 0.
    let mut server = Server::serve_echo(arch, &["--shutdown-timeout", "1"]);
    let mut conn = server.connect();
    server.echo(&mut conn, b"and then silence\n");
    server.signal(libc::SIGTERM);
    let Some(status) = server.wait_exit(EXIT_TIMEOUT) else {
        server.fail(&format!(
            "still running {EXIT_TIMEOUT:?} after SIGTERM with --shutdown-timeout 1 and an idle connection"
        ));
    };
    if status.code() != Some(0) {
        server.fail(&format!(
            "exit status after the shutdown timeout is {status}, expected 0"
        ));
    }
    server.assert_group_gone(GROUP_GONE_TIMEOUT);
    if let Err(e) = try_expect_closed(&mut conn) {
        server.fail(&format!("the idle connection after the server exited: {e}"));
    }
});

const WORKERS: usize = 4;

arch_tests!(
    killed_worker_is_replaced,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let server = Server::serve_echo(arch, &["--workers", "4"]);
        let workers = server.wait_for_children(WORKERS, "after startup");

        let mut conns: Vec<_> = (0..2).map(|_| server.connect()).collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            server.echo(conn, format!("connection {i} before\n").as_bytes());
        }
        let serving: Vec<i32> = conns.iter().map(|c| server.serving_process(c)).collect();
        for pid in &serving {
            if !workers.contains(pid) {
                server.fail(&format!(
                    "connection served by pid {pid}, which is not one of the workers {workers:?}"
                ));
            }
        }
        let Some(&victim) = workers.iter().find(|w| !serving.contains(w)) else {
            server.fail(&format!(
                "every worker {workers:?} serves a test connection"
            ));
        };

        // SAFETY: kill takes plain integers; victim is a live child of the server.
        unsafe { libc::kill(victim, libc::SIGKILL) };
        let replaced = wait_for(PROCESS_TIMEOUT, || {
            let now = server.children();
            let fresh = now.iter().any(|p| !workers.contains(p));
            (now.len() == WORKERS && !now.contains(&victim) && fresh).then_some(now)
        });
        if replaced.is_none() {
            let now: Vec<String> = server
                .children()
                .into_iter()
                .map(describe_process)
                .collect();
            server.fail(&format!(
                "after SIGKILL of worker {victim}, expected it replaced ({WORKERS} workers, one new) within {PROCESS_TIMEOUT:?}; workers were {workers:?}, now: {}",
                now.join("; ")
            ));
        }

        for round in 0..5 {
            for (i, conn) in conns.iter_mut().enumerate() {
                if let Err(e) = try_echo(
                    conn,
                    format!("connection {i} after, round {round}\n").as_bytes(),
                ) {
                    server.fail(&format!(
                        "connection {i} (served by {}) broke after worker {victim} was killed: {e}",
                        serving[i]
                    ));
                }
            }
        }
        let mut fresh = server.connect();
        server.echo(&mut fresh, b"a new connection after the respawn\n");
    }
);

arch_tests!(
    ttin_adds_and_ttou_removes_a_worker,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let server = Server::serve_echo(arch, &["--workers", "4"]);
        server.wait_for_children(WORKERS, "after startup");
        server.signal(libc::SIGTTIN);
        server.wait_for_children(WORKERS + 1, "after SIGTTIN");
        server.signal(libc::SIGTTOU);
        server.wait_for_children(WORKERS, "after SIGTTIN then SIGTTOU");
        let mut conn = server.connect();
        server.echo(&mut conn, b"still serving\n");
    }
);

arch_tests!(
    a_worker_that_ignores_the_stop_is_killed_and_the_log_says_so,
    [prefork, prefork_reactor],
    |arch| {
        let mut server = Server::serve_echo(arch, &["--workers", "2", "--shutdown-timeout", "1"]);
        let workers = server.wait_for_children(2, "after startup");
        // A stopped worker cannot act on TERM: only the master's KILL ends it.
        // SAFETY: kill on a pid of our server's.
        unsafe { libc::kill(workers[0], libc::SIGSTOP) };
        server.signal(libc::SIGTERM);
        match server.wait_exit(EXIT_TIMEOUT) {
            Some(status) if status.success() => {}
            other => server.fail(&format!("exit after SIGTERM: {other:?}")),
        }
        let err = server.stderr();
        assert!(
            err.contains("worker(s) still running past the shutdown timeout; killing them"),
            "{arch}: {err}"
        );
        server.assert_group_gone(PROCESS_TIMEOUT);
    }
);

arch_tests!(
    workers_over_max_worker_memory_are_recycled_without_a_failed_connection,
    [prefork, prefork_reactor],
    |arch| {
        // 1 MiB: every worker passes it at once, so each is recycled at
        // every look of the master (twice a second), under a client.
        let server = Server::serve_echo(arch, &["--workers", "2", "--max-worker-memory", "1"]);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..120 {
            let mut c = server.connect();
            server.echo(&mut c, format!("connection {i}\n").as_bytes());
            seen.extend(server.children());
            std::thread::sleep(Duration::from_millis(20));
        }
        // More workers came and went than the two asked for.
        assert!(seen.len() > 2, "{arch}: workers seen {seen:?}");
        let err = server.stderr();
        assert!(
            err.contains("over --max-worker-memory 1 MiB; recycling it"),
            "{arch}: {err}"
        );
    }
);

arch_tests!(
    workers_exit_when_master_is_killed,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let mut server = Server::serve_echo(arch, &["--workers", "4"]);
        let workers = server.wait_for_children(WORKERS, "after startup");
        let mut conn = server.connect();
        server.echo(&mut conn, b"hello\n");
        drop(conn);
        server.signal(libc::SIGKILL);
        if server.wait_exit(EXIT_TIMEOUT).is_none() {
            server.fail("master did not die from SIGKILL");
        }
        // Workers notice their master is gone and exit on their own.
        let left = wait_for(PROCESS_TIMEOUT, || {
            let left = server.group_processes();
            left.is_empty().then_some(())
        });
        if left.is_none() {
            let left: Vec<String> = server
                .group_processes()
                .into_iter()
                .map(describe_process)
                .collect();
            server.fail(&format!(
                "{PROCESS_TIMEOUT:?} after SIGKILL of the master (workers were {workers:?}), still alive: {}",
                left.join("; ")
            ));
        }
    }
);

#[test]
fn process_per_connection_forks_a_child_per_connection_and_reaps_it() {
    let server = Server::serve_echo("process-per-connection", &[]);
    let mut conns: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        server.echo(conn, format!("connection {i}\n").as_bytes());
    }
    let serving: Vec<i32> = conns.iter().map(|c| server.serving_process(c)).collect();
    let children = server.children();
    for (i, pid) in serving.iter().enumerate() {
        if *pid == server.pid() || !children.contains(pid) {
            server.fail(&format!(
                "connection {i} is served by pid {pid}, not by a child of the server (children: {children:?})"
            ));
        }
    }
    let distinct: std::collections::BTreeSet<_> = serving.iter().collect();
    if distinct.len() != serving.len() {
        server.fail(&format!("three connections share children: {serving:?}"));
    }

    // Short-lived connections too: each gets a child that must be reaped.
    for i in 0..10 {
        let mut conn = server.connect();
        server.echo(&mut conn, format!("short-lived {i}\n").as_bytes());
        half_close(&conn);
        let _ = try_read_to_eof(&mut conn);
    }
    for conn in &conns {
        half_close(conn);
    }
    for conn in &mut conns {
        let _ = try_read_to_eof(conn);
    }
    drop(conns);

    let reaped = wait_for(PROCESS_TIMEOUT, || {
        server.children().is_empty().then_some(())
    });
    if reaped.is_none() {
        let left: Vec<String> = server
            .children()
            .into_iter()
            .map(describe_process)
            .collect();
        server.fail(&format!(
            "{PROCESS_TIMEOUT:?} after every client closed, the server still has children: {}",
            left.join("; ")
        ));
    }
    let mut conn = server.connect();
    server.echo(&mut conn, b"still serving\n");
}

/// A prefork worker that stops making progress (here: frozen with
/// SIGSTOP, so its heartbeat stops) is killed at `--worker-timeout` and
/// replaced; the server goes on serving.
#[test]
fn hung_worker_is_killed_and_replaced() {
    let server = Server::serve_echo("prefork", &["--workers", "1", "--worker-timeout", "2"]);
    let workers = server.wait_for_children(1, "after startup");
    // SAFETY: kill takes plain integers; the pid is a live worker of the server.
    unsafe { libc::kill(workers[0], libc::SIGSTOP) };
    let replaced = wait_for(Duration::from_secs(20), || {
        let now = server.children();
        (now.len() == 1 && !now.contains(&workers[0])).then_some(now)
    });
    if replaced.is_none() {
        server.fail(&format!(
            "worker {} was not replaced after its heartbeat stopped",
            workers[0]
        ));
    }
    if !server.stderr().contains("has not made progress") {
        server.fail("the master did not say why it killed the worker");
    }
    let mut fresh = server.connect();
    server.echo(&mut fresh, b"served by the replacement\n");
}

arch_tests!(
    sigterm_exits_at_shutdown_timeout_with_a_client_that_never_reads,
    |arch| {
        // The client sends far more than the server will buffer and never reads
        // a byte: every server thread that writes to it is stuck on a full
        // socket. The server must still exit at --shutdown-timeout.
        let mut server = Server::serve_echo(arch, &["--shutdown-timeout", "1"]);
        let conn = server.connect();
        conn.set_write_timeout(Some(Duration::from_secs(2)))
            .expect("write timeout");
        let chunk = vec![b'x'; 1 << 20];
        let mut stuck = false;
        for _ in 0..256 {
            if (&conn).write_all(&chunk).is_err() {
                // Two seconds without progress: the server stopped reading.
                stuck = true;
                break;
            }
        }
        if !stuck {
            server.fail("256 MiB went in without the server ever stopping to read");
        }
        server.signal(libc::SIGTERM);
        let Some(status) = server.wait_exit(EXIT_TIMEOUT) else {
            server.fail(&format!(
            "still running {EXIT_TIMEOUT:?} after SIGTERM with --shutdown-timeout 1 and a client that never reads"
        ));
        };
        if status.code() != Some(0) {
            server.fail(&format!("exit status {status}, expected 0"));
        }
        server.assert_group_gone(GROUP_GONE_TIMEOUT);
        drop(conn);
    }
);

arch_tests!(
    sigterm_exits_at_shutdown_timeout_with_a_slow_reader_of_a_file,
    |arch| {
        // A client that takes a large file a little at a time, never
        // stalling a whole second: the server must still stop sending at
        // --shutdown-timeout (a blocking worker's send used to go on for as
        // long as the reader kept taking bytes).
        let dir = TempRoot::new("slowreader", arch);
        dir.write("big.bin", &vec![b'z'; 8 << 20]);
        let mut server = Server::start(
            "http",
            arch,
            &with_sizing(arch, &["--root", dir.root_str(), "--shutdown-timeout", "1"]),
        );
        let conn = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        conn.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        conn.connect(&server.addr().into()).expect("connect");
        let mut conn = std::net::TcpStream::from(conn);
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reading = {
            let stop = std::sync::Arc::clone(&stop);
            let mut conn = conn.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Bounded: 30 s at most, whatever the server does.
                for _ in 0..600 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    match std::io::Read::read(&mut conn, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        server.signal(libc::SIGTERM);
        let exited = server.wait_exit(EXIT_TIMEOUT);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = reading.join();
        if exited.is_none() {
            server.fail(&format!(
                "still running {EXIT_TIMEOUT:?} after SIGTERM with --shutdown-timeout 1 and a slow reader"
            ));
        }
        server.assert_group_gone(GROUP_GONE_TIMEOUT);
    }
);
