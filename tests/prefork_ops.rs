//! Prefork-family operations seen from outside: a rolling restart on
//! SIGUSR1 under load (every worker replaced, no request failed), a roll
//! stopped by a worker that cannot boot (the old workers keep serving),
//! the boot-error halt (exit 1), and `--max-requests` recycling workers
//! under load without a failed request, and the bound a worker keeps with
//! one kept-alive client.
//!
//! The load is HTTP over keep-alive connections. A worker that drains
//! closes a keep-alive connection at a request boundary; a request that
//! went out on a *reused* connection just as that happened gets no byte of
//! response, and is sent again on a new connection, as HTTP clients do
//! (RFC 9112 §9.3.1). A new connection is always answered (a drain lets
//! it send its first request), so any other failure (a new connection
//! closed unanswered, an error, a partial or wrong response) fails the
//! test.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BODY: &[u8] = b"served by some worker of the prefork family\n";
/// The longest a test's load runs, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// How long a roll may take to be logged complete (a bound, not a speed).
const ROLL_TIMEOUT: Duration = Duration::from_secs(60);

/// One GET of `/f.txt`: `Ok(true)` if the server said it closes the
/// connection after it, `Ok(false)` to keep it; `Err(None)` if the
/// connection ended before any byte of the response; `Err(Some(why))`
/// for anything else.
fn get(conn: &mut TcpStream) -> Result<bool, Option<String>> {
    if conn
        .write_all(b"GET /f.txt HTTP/1.1\r\nHost: test\r\n\r\n")
        .is_err()
    {
        return Err(None);
    }
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(None),
            Err(e) if buf.is_empty() && !is_timeout(&e) => return Err(None),
            Ok(0) => return Err(Some(format!("closed within the head: {buf:?}"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(Some(format!("reading the head: {e}"))),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Err(Some(format!("not a 200: {head:?}")));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Some(format!("no content-length: {head:?}")))?;
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(0) => return Err(Some("closed within the body".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(Some(format!("reading the body: {e}"))),
        }
    }
    if &buf[head_end..] != BODY {
        return Err(Some(format!("wrong body: {:?}", &buf[head_end..])));
    }
    Ok(head.contains("\r\nconnection: close"))
}

/// What one load client saw.
#[derive(Debug, Default)]
struct Load {
    served: usize,
    /// Requests sent again after a connection closed without answering.
    resent: usize,
    failures: Vec<String>,
}

/// Sends up to `max` requests until `stop`, over keep-alive connections
/// (a new one when the server closes, and every `fresh_every`th request
/// when nonzero). Bounded in count and by [`LOAD_LIMIT`].
fn load(addr: SocketAddr, max: usize, fresh_every: usize, stop: &AtomicBool) -> Load {
    let deadline = Instant::now() + LOAD_LIMIT;
    let mut out = Load::default();
    let mut conn: Option<TcpStream> = None;
    for _ in 0..3 * max {
        if out.served >= max || stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match try_connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    out.failures.push(e);
                    continue;
                }
            },
        };
        match get(&mut c) {
            Ok(close) => {
                out.served += 1;
                let fresh = fresh_every > 0 && out.served % fresh_every == 0;
                if !close && !fresh {
                    conn = Some(c);
                }
            }
            Err(None) if reused => out.resent += 1,
            Err(None) => out
                .failures
                .push("a new connection closed without a response".into()),
            Err(Some(why)) => out.failures.push(why),
        }
    }
    out
}

fn http_server(arch: &str, extra: &[&str], env: &[(&str, &str)]) -> (Server, TempRoot) {
    let root = TempRoot::new("prefork-ops", arch);
    root.write("f.txt", BODY);
    let mut args = vec!["--root", root.root_str()];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with_env("http", arch, &with_sizing(arch, &args), env);
    (server, root)
}

/// The workers `--workers` asks for under the test sizing.
fn workers_of(arch: &str) -> usize {
    if arch == "prefork-threads" {
        2
    } else {
        4
    }
}

fn wait_for_log(server: &Server, text: &str, timeout: Duration) {
    if wait_for(timeout, || server.stderr().contains(text).then_some(())).is_none() {
        server.fail(&format!("no {text:?} in the log within {timeout:?}"));
    }
}

arch_tests!(
    usr1_replaces_every_worker_one_at_a_time_without_a_failed_request,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let (server, _root) = http_server(arch, &[], &[]);
        let n = workers_of(arch);
        let old = server.wait_for_children(n, "after startup");
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..2)
            .map(|i| {
                let (addr, stop) = (server.addr(), Arc::clone(&stop));
                // One client keeps its connection, one opens a new one
                // every third request.
                thread::spawn(move || load(addr, 5000, 3 * i, &stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        server.signal(libc::SIGUSR1);
        wait_for_log(&server, "rolling restart complete", ROLL_TIMEOUT);
        let replaced = wait_for(PROCESS_TIMEOUT, || {
            let now = server.children();
            (now.len() == n && now.iter().all(|p| !old.contains(p))).then_some(now)
        });
        // Some load after the roll too.
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let loads: Vec<Load> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        if replaced.is_none() {
            server.fail(&format!(
                "after the roll, expected {n} workers none of which among the old {old:?}; have {:?}",
                server.children()
            ));
        }
        for (i, l) in loads.iter().enumerate() {
            if !l.failures.is_empty() || l.served == 0 {
                server.fail(&format!("client {i}: {l:?}"));
            }
        }
        let err = server.stderr();
        assert!(
            err.contains(&format!(
                "rolling restart complete: {n} workers replaced in"
            )),
            "{arch}: {err}"
        );
        let mut conn = server.connect();
        assert!(get(&mut conn).is_ok(), "{arch}: after the roll");
    }
);

#[test]
fn a_usr1_during_a_roll_is_ignored_and_the_roll_completes() {
    let (server, _root) = http_server("prefork", &[], &[]);
    let old = server.wait_for_children(4, "after startup");
    server.signal(libc::SIGUSR1);
    wait_for_log(
        &server,
        "rolling restart: replacing 4 workers",
        ROLL_TIMEOUT,
    );
    server.signal(libc::SIGUSR1);
    // A roll can be over in milliseconds: the second USR1 is either
    // ignored (it came during the first roll) or starts a second roll,
    // which completes too.
    let outcome = wait_for(ROLL_TIMEOUT, || {
        let err = server.stderr();
        if err.contains("rolling restart already under way (") && err.contains("USR1 ignored") {
            return err
                .contains("rolling restart complete")
                .then_some("ignored");
        }
        (err.matches("rolling restart complete").count() == 2).then_some("two rolls")
    });
    if outcome.is_none() {
        server.fail("the second USR1 was neither ignored nor a second complete roll");
    }
    let now = wait_for(PROCESS_TIMEOUT, || {
        let now = server.children();
        (now.len() == 4 && now.iter().all(|p| !old.contains(p))).then_some(now)
    });
    if now.is_none() {
        server.fail("the old workers did not all go");
    }
}

arch_tests!(
    a_roll_whose_new_worker_cannot_boot_stops_and_the_old_workers_keep_serving,
    [prefork, prefork_reactor],
    |arch| {
        let fault = TempRoot::new("prefork-ops-fault", arch);
        let flag = fault.base.join("no-boot");
        let flag_str = flag.to_str().unwrap().to_string();
        let (server, _root) = http_server(arch, &[], &[("MUSE_FAULT_WORKER_BOOT", &flag_str)]);
        let n = workers_of(arch);
        let mut old = server.wait_for_children(n, "after startup");
        // Every worker past its boot before the fault is armed (one still
        // booting would fail, and its position would halt the server).
        wait_for_log(&server, &format!("{n} workers ready"), ROLL_TIMEOUT);
        let mut conn = server.connect();
        if let Err(e) = get(&mut conn) {
            server.fail(&format!("before the roll: {e:?}"));
        }
        std::fs::write(&flag, b"").unwrap();
        server.signal(libc::SIGUSR1);
        wait_for_log(&server, "rolling restart stopped", ROLL_TIMEOUT);
        let err = server.stderr();
        assert!(
            err.contains(&format!(
                "failing to boot (fault injection: {flag_str} exists)"
            )),
            "{arch}: {err}"
        );
        assert!(
            err.contains("0 of 4 workers replaced, the old ones left keep serving"),
            "{arch}: {err}"
        );
        assert!(!err.contains("rolling restart complete"), "{arch}: {err}");
        // The failed new worker is reaped; the old ones are all there.
        let mut now = server.wait_for_children(n, "after the stopped roll");
        now.sort();
        old.sort();
        if now != old {
            server.fail(&format!("workers were {old:?}, now {now:?}"));
        }
        // Still serving, on the old connection and on new ones.
        if let Err(e) = get(&mut conn) {
            server.fail(&format!("the old connection after the stopped roll: {e:?}"));
        }
        for i in 0..10 {
            let mut c = server.connect();
            if let Err(e) = get(&mut c) {
                server.fail(&format!("new connection {i} after the stopped roll: {e:?}"));
            }
        }
        // The fault gone, a roll goes through.
        std::fs::remove_file(&flag).unwrap();
        server.signal(libc::SIGUSR1);
        wait_for_log(&server, "rolling restart complete", ROLL_TIMEOUT);
    }
);

#[test]
fn workers_that_never_boot_halt_the_server_with_exit_1() {
    let fault = TempRoot::new("prefork-ops-fault", "halt");
    let flag = fault.base.join("no-boot");
    std::fs::write(&flag, b"").unwrap();
    let flag_str = flag.to_str().unwrap().to_string();
    let mut server = Server::start_with_env(
        "echo",
        "prefork",
        &["--workers", "2"],
        &[("MUSE_FAULT_WORKER_BOOT", &flag_str)],
    );
    let status = server.wait_exit(EXIT_TIMEOUT);
    match status {
        Some(s) if s.code() == Some(1) => {}
        other => server.fail(&format!("expected exit 1, got {other:?}")),
    }
    let err = server.stderr();
    assert!(
        err.contains("failed to boot 5 times in a row; stopping"),
        "{err}"
    );
    assert!(err.contains("(boot failure 1 of 5 in a row)"), "{err}");
    server.assert_group_gone(PROCESS_TIMEOUT);
}

arch_tests!(
    max_requests_recycles_workers_without_a_failed_request,
    [prefork, prefork_threads, prefork_reactor],
    |arch| {
        let (server, _root) = http_server(
            arch,
            &["--max-requests", "20", "--max-requests-jitter", "5"],
            &[],
        );
        let n = workers_of(arch);
        let first = server.wait_for_children(n, "after startup");
        let never = AtomicBool::new(false);
        // About 200 requests: over keep-alive connections, then each on a
        // new connection.
        let kept = load(server.addr(), 120, 0, &never);
        let fresh = load(server.addr(), 80, 1, &never);
        for (what, l) in [("keep-alive", &kept), ("new connections", &fresh)] {
            if !l.failures.is_empty() || l.served == 0 {
                server.fail(&format!("{what}: {l:?}"));
            }
        }
        assert_eq!(
            kept.served + fresh.served,
            200,
            "{arch}: {kept:?} {fresh:?}"
        );
        wait_for_log(&server, "requests; recycling it", PROCESS_TIMEOUT);
        let err = server.stderr();
        for line in err.lines().filter(|l| l.contains("requests; recycling it")) {
            // "worker N (pid P) reached its limit of L requests; recycling it"
            let limit: u64 = line
                .split("limit of ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| server.fail(&format!("no limit in {line:?}")));
            assert!((20..=25).contains(&limit), "{arch}: {line}");
        }
        for line in err
            .lines()
            .filter(|l| l.contains("requests in all (limit "))
        {
            // "worker N (pid P) answered S requests in all (limit L) and
            // exited with code 0": S may pass L by what its clients had
            // sent before they learnt (the test below shows the bound).
            assert!(line.ends_with("and exited with code 0"), "{arch}: {line}");
        }
        assert!(
            !err.contains("restarting in"),
            "{arch}: a recycle counted as a crash: {err}"
        );
        // Replaced, and serving: the worker count is back at its target.
        let now = server.wait_for_children(n, "after the recycles");
        assert!(
            now.iter().any(|p| !first.contains(p)),
            "{arch}: {first:?} {now:?}"
        );
    }
);

arch_tests!(
    a_worker_with_one_kept_alive_client_answers_its_max_requests_and_one_more_with_close,
    [prefork, prefork_threads, prefork_reactor, prefork_uring],
    |arch| {
        // One client, one request at a time, over keep-alive: a worker
        // counts its answers after they went out, so the limit-th says
        // keep-alive; the client's next request comes on the same
        // connection and the worker's drain answers it with
        // `Connection: close`, then the next request goes on a new
        // connection to the next worker. That bound, exactly: the limit
        // plus one (README, `--max-requests`).
        const LIMIT: usize = 4;
        const RETIRED: usize = 3;
        let limit = LIMIT.to_string();
        let (server, _root) = http_server(arch, &["--workers", "1", "--max-requests", &limit], &[]);
        server.wait_for_children(1, "after startup");
        // Per worker, in order: its connections, and on each, per answer,
        // whether it said the connection closes.
        let mut workers: Vec<(i32, Vec<Vec<bool>>)> = Vec::new();
        let mut kept: Option<TcpStream> = None;
        for i in 0..RETIRED * (LIMIT + 2) + 2 {
            if workers.len() > RETIRED && workers[RETIRED].1[0].len() == 2 {
                break;
            }
            let fresh = kept.is_none();
            let mut conn = match kept.take() {
                Some(conn) => conn,
                None => {
                    let conn = server.connect();
                    // Its worker, asked as soon as one holds it, before the
                    // request (an answer that closes leaves none to ask).
                    let pid = server.serving_process(&conn);
                    match workers.last_mut() {
                        Some((last, conns)) if *last == pid => conns.push(Vec::new()),
                        _ => workers.push((pid, vec![Vec::new()])),
                    }
                    conn
                }
            };
            match get(&mut conn) {
                Ok(close) => {
                    let conns = &mut workers.last_mut().expect("pushed").1;
                    conns.last_mut().expect("pushed").push(close);
                    if !close {
                        kept = Some(conn);
                    }
                }
                Err(e) => server.fail(&format!(
                    "request {i} on a {} connection: {e:?}; answers so far {workers:?}",
                    if fresh { "new" } else { "kept-alive" }
                )),
            }
        }
        let mut to_close = vec![false; LIMIT + 1];
        to_close[LIMIT] = true;
        let mut expected = vec![vec![to_close.clone()]; RETIRED];
        expected.push(vec![vec![false; 2]]);
        let mut seen: Vec<Vec<Vec<bool>>> = workers.iter().map(|(_, c)| c.clone()).collect();
        if arch == "prefork-uring" {
            // As its accept is cancelled, a prefork-uring worker takes the
            // connections then waiting for one (drivers/proactor.rs), and
            // its drain answers the first request of each, with close: a
            // client that reconnects at once after the last answer can
            // land there. Nothing more.
            for conns in &mut seen {
                if conns.len() == 2 && conns[0] == to_close && conns[1] == [true] {
                    conns.pop();
                }
            }
        }
        assert_eq!(
            seen, expected,
            "{arch}: per worker, its connections' answers (true: said close): {workers:?}"
        );
        // And each retired worker's own count, final at its exit, is what
        // its clients saw.
        for (pid, conns) in &workers[..RETIRED] {
            let answered: usize = conns.iter().map(Vec::len).sum();
            wait_for_log(
                &server,
                &format!(
                    "(pid {pid}) answered {answered} requests in all (limit {LIMIT}) and exited with code 0"
                ),
                PROCESS_TIMEOUT,
            );
        }
        let err = server.stderr();
        assert!(
            !err.contains("restarting in"),
            "{arch}: a recycle counted as a crash: {err}"
        );
    }
);
