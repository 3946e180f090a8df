//! Hot restart (`SIGUSR2`): under a bounded load loop of clients, the
//! server starts its successor on the same sockets, drains and exits, and
//! not one connection is refused nor one request fails; echo under every
//! architecture, http and kv under a spread of them, kv's data surviving
//! through its data directory. A successor that cannot start leaves the old
//! server serving.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// Clients of the load loop.
const CLIENTS: usize = 3;
/// The most requests each client makes: the loop stops by itself.
const MAX_REQUESTS: u64 = 20_000;
/// How long the handover may take, at most.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests to see served before the restart, and again after the old
/// server has gone.
const SEEN: u64 = 30;

/// One request on a new connection; `Err` says what went wrong.
type Request = fn(SocketAddr, u64) -> Result<(), String>;

/// A bounded loop of clients making requests until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, request: Request) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..CLIENTS as u64)
            .map(|c| {
                let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
                thread::spawn(move || {
                    for i in 0..MAX_REQUESTS {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match request(addr, c * MAX_REQUESTS + i) {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now have been served.
    fn wait_for_more(&self, server: &Server, n: u64, what: &str) {
        let target = self.done() + n;
        if wait_for(HANDOVER_TIMEOUT, || (self.done() >= target).then_some(())).is_none() {
            server.fail(&format!(
                "{what}: {} requests served, {target} expected; failures: {:?}",
                self.done(),
                self.failures.lock().unwrap()
            ));
        }
    }

    /// Stops the loop; every failure it saw.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = self.failures.lock().unwrap();
        failures.clone()
    }
}

/// Sends `USR2` under load and follows the handover: the old server exits
/// 0, the new one (same process group) keeps serving, nothing failed.
/// Returns the new server's pid.
fn restart_under_load(server: &mut Server, request: Request) -> i32 {
    let load = Load::start(server.addr(), request);
    load.wait_for_more(server, SEEN, "before the restart");
    server.signal(libc::SIGUSR2);
    let new_pid = wait_for(HANDOVER_TIMEOUT, || {
        let log = server.stderr();
        let at = log.find("hot restart: the new server (pid ")?;
        let rest = &log[at + "hot restart: the new server (pid ".len()..];
        let line = rest.lines().next()?;
        if !line.contains("drains and exits") {
            return None;
        }
        rest.split(')').next()?.parse::<i32>().ok()
    })
    .unwrap_or_else(|| server.fail("no \"drains and exits\" line after USR2"));
    match server.wait_exit(HANDOVER_TIMEOUT) {
        Some(status) if status.success() => {}
        Some(status) => server.fail(&format!("the old server exited with {status}")),
        None => server.fail("the old server did not exit after handing over"),
    }
    load.wait_for_more(server, SEEN, "after the old server exited");
    let served = load.done();
    let failures = load.finish();
    if !failures.is_empty() {
        server.fail(&format!(
            "{} of {} requests failed across the hot restart: {:?}",
            failures.len(),
            served + failures.len() as u64,
            &failures[..failures.len().min(5)]
        ));
    }
    if process_info(new_pid).is_none() {
        server.fail(&format!("the new server (pid {new_pid}) is not running"));
    }
    new_pid
}

fn echo_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut conn = try_connect(addr)?;
    try_echo(&mut conn, format!("request {n}\n").as_bytes())
}

arch_tests!(echo_survives_a_hot_restart_under_load, |arch| {
    let mut server = Server::serve_echo(arch, &[]);
    let new_pid = restart_under_load(&mut server, echo_request);
    // The new server is the one answering now.
    echo_request(server.addr(), 0).unwrap_or_else(|e| server.fail(&e));
    assert!(new_pid != server.pid());
});

const PAGE: &[u8] = b"<!DOCTYPE html><title>hot</title>\n";

fn http_request(addr: SocketAddr, _n: u64) -> Result<(), String> {
    let mut conn = try_connect(addr)?;
    conn.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let got = try_read_to_eof(&mut conn)?;
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200 ") || !got.ends_with(PAGE) {
        return Err(format!("unexpected response: {text:?}"));
    }
    Ok(())
}

arch_tests!(
    http_survives_a_hot_restart_under_load,
    [
        thread_pool,
        reactor,
        multi_reactor,
        prefork_reactor,
        process_per_connection,
        async_
    ],
    |arch| {
        let root = TempRoot::new("hot", "http");
        root.write("index.html", PAGE);
        let mut server = Server::start(
            "http",
            arch,
            &with_sizing(arch, &["--root", root.root_str()]),
        );
        restart_under_load(&mut server, http_request);
    }
);

/// `SET` then `GET` of a key of its own, on one new connection.
fn kv_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut conn = try_connect(addr)?;
    let value = format!("v{n}");
    let cmd = format!("SET k{n} {value}\r\nGET k{n}\r\n");
    conn.write_all(cmd.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let want = format!("+OK\r\n${}\r\n{value}\r\n", value.len());
    let got = try_read_exact(&mut conn, want.len())?;
    if got != want.as_bytes() {
        return Err(format!(
            "expected {want:?}, got {:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    Ok(())
}

/// `GET key` on a new connection: the bulk reply's value, or `None`.
fn kv_get(addr: SocketAddr, key: &str) -> Result<Option<String>, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    conn.write_all(format!("GET {key}\r\nQUIT\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    conn.read_to_end(&mut got)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&got).into_owned();
    match text.split("\r\n").collect::<Vec<_>>().as_slice() {
        ["$-1", ..] => Ok(None),
        [len, value, ..] if len.starts_with('$') => Ok(Some(value.to_string())),
        _ => Err(format!("unexpected reply {text:?}")),
    }
}

arch_tests!(
    kv_survives_a_hot_restart_under_load,
    [
        thread_per_connection,
        reactor,
        multi_reactor,
        prefork,
        async_
    ],
    |arch| {
        let mut server = Server::start("kv", arch, &with_sizing(arch, &[]));
        restart_under_load(&mut server, kv_request);
    }
);

arch_tests!(
    kv_hands_its_data_directory_over_in_a_hot_restart,
    [reactor, prefork_reactor],
    |arch| {
        let dir = TempRoot::new("hot", "kv");
        let data = dir.path("data");
        let data = data.to_str().unwrap();
        let mut server = Server::start(
            "kv",
            arch,
            &with_sizing(arch, &["--data-dir", data, "--shutdown-timeout", "5"]),
        );
        kv_request(server.addr(), 1_000_000_000).unwrap_or_else(|e| server.fail(&e));
        restart_under_load(&mut server, kv_request);
        // A key written before the restart, and one written during it, are
        // read from the new server's store.
        match kv_get(server.addr(), "k1000000000") {
            Ok(Some(v)) if v == "v1000000000" => {}
            other => server.fail(&format!(
                "the key written before the restart reads {other:?}"
            )),
        }
        match kv_get(server.addr(), "k0") {
            Ok(Some(v)) if v == "v0" => {}
            other => server.fail(&format!("the first key written under load reads {other:?}")),
        }
    }
);

arch_tests!(
    a_successor_that_cannot_start_leaves_the_old_server_serving,
    [reactor, prefork, process_per_connection],
    |arch| {
        let root = TempRoot::new("hot", "gone");
        root.write("index.html", PAGE);
        let mut server = Server::start(
            "http",
            arch,
            &with_sizing(arch, &["--root", root.root_str()]),
        );
        http_request(server.addr(), 0).unwrap_or_else(|e| server.fail(&e));
        // The old server holds its root open; the new one finds no root.
        let moved = root.base.join("moved");
        std::fs::rename(&root.root, &moved).unwrap();
        server.signal(libc::SIGUSR2);
        if wait_for(HANDOVER_TIMEOUT, || {
            server.stderr().contains("hot restart failed").then_some(())
        })
        .is_none()
        {
            server.fail("no \"hot restart failed\" line");
        }
        let log = server.stderr();
        if !log.contains("before it was ready; still serving") {
            server.fail("the failure does not say the old server goes on");
        }
        server.assert_running();
        for i in 0..5 {
            http_request(server.addr(), i).unwrap_or_else(|e| server.fail(&e));
        }
        // And a later restart, with the root back, succeeds.
        std::fs::rename(&moved, &root.root).unwrap();
        restart_under_load(&mut server, http_request);
    }
);
