//! `--accept reuseport` and `--accept handoff` under each architecture of
//! the prefork family, seen from outside: many connections served (echo
//! and http), a killed worker replaced with connections still served,
//! SIGTTIN/SIGTTOU, a graceful stop with a connection in flight; hand-off
//! gives each worker its share (the serving process of each connection is
//! read from /proc), reuseport spreads connections over several workers;
//! and the combinations that make no sense are refused.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;

/// One test body under each prefork architecture with each new strategy
/// (`name::prefork_reuseport`, `name::prefork_reactor_handoff`, ...).
macro_rules! strategy_tests {
    ($name:ident, |$arch:ident, $accept:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($arch: &str, $accept: &str) $body

            #[test]
            fn prefork_reuseport() {
                run("prefork", "reuseport")
            }
            #[test]
            fn prefork_handoff() {
                run("prefork", "handoff")
            }
            #[test]
            fn prefork_threads_reuseport() {
                run("prefork-threads", "reuseport")
            }
            #[test]
            fn prefork_threads_handoff() {
                run("prefork-threads", "handoff")
            }
            #[test]
            fn prefork_reactor_reuseport() {
                run("prefork-reactor", "reuseport")
            }
            #[test]
            fn prefork_reactor_handoff() {
                run("prefork-reactor", "handoff")
            }
        }
    };
}

/// The worker count `Server::serve_echo` gives `arch` (see `common`).
fn workers(arch: &str) -> usize {
    if arch == "prefork-threads" {
        2
    } else {
        4
    }
}

fn serve(arch: &str, accept: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--accept", accept];
    args.extend_from_slice(extra);
    Server::serve_echo(arch, &args)
}

/// `n` connections one after the other, each echoed once and closed. (Under
/// `reuseport` a blocking worker holds one client per thread, and the
/// kernel does not know which are busy: connections held open at once may
/// wait behind each other, by design, so the blocking architectures are
/// given one at a time.)
fn one_by_one(server: &Server, n: usize, what: &str) {
    for i in 0..n {
        let mut c = server.connect();
        if let Err(e) = try_echo(&mut c, format!("{what}, connection {i}\n").as_bytes()) {
            server.fail(&format!("{what}: connection {i}: {e}"));
        }
    }
}

strategy_tests!(many_connections_are_served, |arch, accept| {
    let server = serve(arch, accept, &[]);
    server.wait_for_children(workers(arch), "after startup");
    one_by_one(&server, 60, "one by one");
    if arch == "prefork-reactor" {
        let mut conns: Vec<TcpStream> = (0..100).map(|_| server.connect()).collect();
        for round in 0..3 {
            for (i, c) in conns.iter_mut().enumerate() {
                let msg = format!("held connection {i}, round {round}\n");
                if let Err(e) = try_echo(c, msg.as_bytes()) {
                    server.fail(&format!("held connection {i}, round {round}: {e}"));
                }
            }
        }
    }
});

strategy_tests!(http_is_served, |arch, accept| {
    let root = TempRoot::new("muse-accept", &format!("{arch}-{accept}"));
    root.write("hello.txt", b"hello through the strategy\n");
    let server = Server::start(
        "http",
        arch,
        &with_sizing(arch, &["--accept", accept, "--root", root.root_str()]),
    );
    for i in 0..20 {
        let mut c = server.connect();
        c.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")
            .unwrap_or_else(|e| server.fail(&format!("request {i}: {e}")));
        let got = try_read_to_eof(&mut c).unwrap_or_else(|e| server.fail(&format!("{i}: {e}")));
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.")
                && got.contains(" 200 ")
                && got.ends_with("hello through the strategy\n"),
            "{arch} {accept}: request {i}: {got:?}"
        );
    }
});

strategy_tests!(a_killed_worker_is_replaced, |arch, accept| {
    let server = serve(arch, accept, &[]);
    let n = workers(arch);
    let before = server.wait_for_children(n, "after startup");
    one_by_one(&server, 10, "before the kill");
    let victim = before[0];
    // SAFETY: kill on a pid of our server's.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let replaced = wait_for(PROCESS_TIMEOUT, || {
        let now = server.children();
        (now.len() == n && !now.contains(&victim)).then_some(())
    });
    if replaced.is_none() {
        server.fail(&format!(
            "worker {victim} was not replaced within {PROCESS_TIMEOUT:?}; children: {:?}",
            server.children()
        ));
    }
    one_by_one(&server, 40, "after the kill");
});

strategy_tests!(ttin_and_ttou_change_the_pool, |arch, accept| {
    let server = serve(arch, accept, &[]);
    let n = workers(arch);
    let first = server.wait_for_children(n, "after startup");
    server.signal(libc::SIGTTIN);
    let more = server.wait_for_children(n + 1, "after SIGTTIN");
    let added = *more
        .iter()
        .find(|p| !first.contains(p))
        .expect("a new worker");
    one_by_one(&server, 30, "after SIGTTIN");
    // A connection held by the added worker keeps it draining after
    // SIGTTOU. Under reuseport the kernel's hash picks the worker, so
    // connections are tried until one lands there (those that land
    // elsewhere are closed at once, so that no blocking worker stays
    // busy); under handoff the least-loaded worker gets each, so as many
    // connections held at once as there are workers reach every one.
    let mut held = None;
    let mut others = Vec::new();
    for i in 0..200 {
        let mut c = server.connect();
        server.echo(
            &mut c,
            format!("looking for the new worker, {i}\n").as_bytes(),
        );
        if server.serving_process(&c) == added {
            held = Some(c);
            break;
        }
        if accept == "handoff" {
            others.push(c);
        }
    }
    let Some(mut held) = held else {
        server.fail(&format!("no connection went to the added worker {added}"))
    };
    drop(others);
    server.signal(libc::SIGTTOU);
    if accept == "reuseport" {
        // Connections that reach the retired socket's backlog before the
        // master closes it are reset (the documented cost): new ones are
        // made once it has.
        let closed = format!("worker {n}'s SO_REUSEPORT listeners closed");
        let seen = wait_for(PROCESS_TIMEOUT, || {
            server.stderr().contains(&closed).then_some(())
        });
        if seen.is_none() {
            server.fail(&format!("no {closed:?} after SIGTTOU"));
        }
    }
    // The retired position gets no new connection although its worker is
    // still there, draining (under reuseport, a connection hashed to its
    // socket would wait forever).
    one_by_one(&server, 40, "after SIGTTOU, the retired worker draining");
    server.echo(&mut held, b"still served while draining\n");
    drop(held);
    server.wait_for_children(n, "after SIGTTIN then SIGTTOU");
    server.signal(libc::SIGTTOU);
    server.wait_for_children(n - 1, "after a second SIGTTOU");
    one_by_one(&server, 40, "after the second SIGTTOU");
});

strategy_tests!(a_graceful_stop_finishes_connections, |arch, accept| {
    let mut server = serve(arch, accept, &["--shutdown-timeout", "30"]);
    server.wait_for_children(workers(arch), "after startup");
    let mut conn = server.connect();
    server.echo(&mut conn, b"before the stop\n");
    server.signal(libc::SIGTERM);
    for i in 0..3 {
        if let Err(e) = try_echo(&mut conn, format!("in flight {i}\n").as_bytes()) {
            server.fail(&format!("in-flight connection broken by SIGTERM: {e}"));
        }
    }
    drop(conn);
    match server.wait_exit(EXIT_TIMEOUT) {
        Some(status) if status.success() => {}
        other => server.fail(&format!("exit after SIGTERM: {other:?}")),
    }
    server.assert_group_gone(PROCESS_TIMEOUT);
});

/// The workers serving `conns`, each echoed once first so that its worker
/// has it.
fn serving(server: &Server, conns: &mut [TcpStream]) -> BTreeSet<i32> {
    conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            server.echo(c, format!("connection {i}\n").as_bytes());
            server.serving_process(c)
        })
        .collect()
}

arch_tests!(
    handoff_gives_each_worker_its_share,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let server = serve(arch, "handoff", &[]);
        let n = workers(arch);
        let pids = server.wait_for_children(n, "after startup");
        // Opened one at a time, each served before the next: each goes to
        // a worker with fewer open connections than the others, so as many
        // connections as workers land on every worker once.
        let mut conns = Vec::new();
        let mut seen = BTreeSet::new();
        for i in 0..n {
            conns.push(server.connect());
            seen.extend(serving(&server, &mut conns[i..]));
        }
        assert_eq!(
            seen.len(),
            n,
            "{arch}: {n} connections held at once were served by {seen:?} (workers {pids:?})"
        );
        assert!(
            seen.iter().all(|p| pids.contains(p)),
            "{arch}: {seen:?} {pids:?}"
        );
    }
);

#[test]
fn reuseport_spreads_connections_over_the_workers() {
    let server = serve("prefork-reactor", "reuseport", &[]);
    server.wait_for_children(4, "after startup");
    let mut conns: Vec<TcpStream> = (0..24).map(|_| server.connect()).collect();
    let seen = serving(&server, &mut conns);
    // Each connection's source port picks a socket: 24 of them all
    // hashing to one of four sockets is a chance of 4 in 4^24.
    assert!(seen.len() > 1, "all 24 connections went to {seen:?}");
}

#[test]
fn strategies_are_refused_where_they_cannot_work() {
    let run = run_cli(&[
        "serve",
        "echo",
        "--arch",
        "reactor",
        "--accept",
        "handoff",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("--accept handoff is for the prefork family"),
        "{run:?}"
    );
    let socket = std::env::temp_dir().join(format!("muse-accept-{}.sock", std::process::id()));
    let unix = format!("unix:{}", socket.display());
    let run = run_cli(&[
        "serve",
        "echo",
        "--arch",
        "prefork",
        "--accept",
        "reuseport",
        "--listen",
        &unix,
    ]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains("--accept reuseport binds a listener per worker"),
        "{run:?}"
    );
    assert!(!socket.exists(), "nothing was bound");
    let run = run_cli(&["serve", "echo", "--arch", "prefork", "--accept", "sideways"]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
}

#[test]
fn handoff_serves_a_unix_domain_listener() {
    let socket = std::env::temp_dir().join(format!("muse-handoff-{}.sock", std::process::id()));
    let unix = format!("unix:{}", socket.display());
    let server = Server::serve_echo(
        "prefork-reactor",
        &[
            "--accept",
            "handoff",
            "--listen",
            &unix,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    for i in 0..10 {
        let mut c = std::os::unix::net::UnixStream::connect(&socket)
            .unwrap_or_else(|e| server.fail(&format!("connect {unix}: {e}")));
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let msg = format!("over unix {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        std::io::Read::read_exact(&mut c, &mut got)
            .unwrap_or_else(|e| server.fail(&format!("read {unix}: {e}")));
        assert_eq!(got, msg.as_bytes());
    }
    one_by_one(&server, 5, "over TCP beside unix");
}

#[test]
fn handoff_keeps_the_per_address_limit_where_the_workers_admit() {
    // The peer address travels with each handed connection: the workers
    // count it as when they accept themselves.
    let server = serve("prefork-reactor", "handoff", &["--max-per-ip", "2"]);
    server.wait_for_children(4, "after startup");
    let mut a = server.connect();
    server.echo(&mut a, b"a\n");
    let mut b = server.connect();
    server.echo(&mut b, b"b\n");
    let mut third = server.connect();
    if let Err(e) = try_expect_closed(&mut third) {
        server.fail(&format!("third connection with --max-per-ip 2: {e}"));
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut other: TcpStream = socket.into();
    other.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    server.echo(&mut other, b"from 127.0.0.2\n");
    server.echo(&mut a, b"a still\n");
}
