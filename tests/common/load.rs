//! A bounded load loop for tests of restarts: a few clients make requests
//! on new connections until told to stop, counting what failed; and
//! [`restart_under_load`], which sends `USR2` under it and follows the
//! handover.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::{
    process_info, try_connect, try_echo, try_read_exact, try_read_to_eof, wait_for, Server,
};

/// Failures kept with their message (the rest are counted).
pub const MAX_KEPT_FAILURES: usize = 5;
/// Clients of the load loop.
pub const CLIENTS: usize = 3;
/// The most requests each client makes: the loop stops by itself.
pub const MAX_REQUESTS: u64 = 20_000;
/// How long the handover may take, at most.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests to see served before the restart, and again after the old
/// server has gone.
pub const SEEN: u64 = 30;

/// One request on a new connection; `Err` says what went wrong.
pub type Request = fn(SocketAddr, u64) -> Result<(), String>;

/// A bounded loop of clients making requests until told to stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, request: Request) -> Load {
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
                            Err(e) => {
                                let mut failures = failures.lock().unwrap();
                                // The first few say what went wrong; the
                                // count says how often.
                                if failures.len() < MAX_KEPT_FAILURES {
                                    failures.push(e);
                                } else {
                                    failures.push(String::new());
                                }
                            }
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

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now have been served.
    pub fn wait_for_more(&self, server: &Server, n: u64, what: &str) {
        let target = self.done() + n;
        if wait_for(HANDOVER_TIMEOUT, || (self.done() >= target).then_some(())).is_none() {
            let failures = self.failures.lock().unwrap().clone();
            server.fail(&format!(
                "{what}: {} requests served, {target} expected; {} failures, the first: {:?}",
                self.done(),
                failures.len(),
                &failures[..failures.len().min(MAX_KEPT_FAILURES)]
            ));
        }
    }

    /// Stops the loop; every failure it saw.
    pub fn finish(self) -> Vec<String> {
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
pub fn restart_under_load(server: &mut Server, request: Request) -> i32 {
    let addr = server.addr();
    restart_under_load_at(server, addr, request)
}

/// [`restart_under_load`], with the load sent to `addr` (a balancer in
/// front of `server`).
pub fn restart_under_load_at(server: &mut Server, addr: SocketAddr, request: Request) -> i32 {
    let load = Load::start(addr, request);
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

/// An echo of one line on a new connection.
pub fn echo_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut conn = try_connect(addr)?;
    try_echo(&mut conn, format!("request {n}\n").as_bytes())
}

/// The page [`http_request`] fetches.
pub const PAGE: &[u8] = b"<!DOCTYPE html><title>hot</title>\n";

/// `GET /index.html` on a new connection, which must return [`PAGE`].
pub fn http_request(addr: SocketAddr, _n: u64) -> Result<(), String> {
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

/// `SET` then `GET` of a key of its own, on one new connection.
pub fn kv_request(addr: SocketAddr, n: u64) -> Result<(), String> {
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
