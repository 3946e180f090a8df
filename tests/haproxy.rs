//! Scale-out behind a real balancer: HAProxy (Debian's package) in front
//! of two muse backends on loopback ports, with `send-proxy-v2`. http and
//! kv are served through it; the backends see the real client (kv's
//! `CLIENT LIST` names the test's own port, not HAProxy's); and a hot
//! restart of one backend under load fails no request.

#[allow(unused_macros)]
mod common;
#[path = "common/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use load::*;

/// A running HAProxy, killed and reaped on drop.
struct Haproxy {
    child: Child,
    /// The frontend's address.
    addr: SocketAddr,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago (HAProxy cannot report a port 0
/// choice back).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts HAProxy in TCP mode balancing round-robin over `backends`, each
/// sent a PROXY v2 header (health checks too), and waits until it accepts.
fn haproxy(dir: &Path, backends: &[SocketAddr]) -> Haproxy {
    let port = free_port();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!("    server muse{i} {a} send-proxy-v2 check check-send-proxy inter 500ms\n")
        })
        .collect();
    let config = format!(
        "global\n    maxconn 512\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch\n\
         frontend front\n    bind 127.0.0.1:{port}\n    default_backend muse\n\
         backend muse\n    balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (Debian's haproxy package)");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut proxy = Haproxy { child, addr };
    let up = wait_for(STARTUP_TIMEOUT, || {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("haproxy exited: {status}");
        }
        TcpStream::connect(addr).ok()
    });
    assert!(up.is_some(), "haproxy did not listen on {addr}");
    proxy
}

/// `CLIENT LIST` through the balancer: the line must name this client's
/// own address, which only the PROXY header carries to the backend.
fn kv_sees_the_real_client(backends: &[&Server], front: SocketAddr) {
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"CLIENT LIST\r\nQUIT\r\n").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    let me = format!("addr={} ", c.local_addr().unwrap());
    if !text.contains(&me) {
        backends[0].fail(&format!(
            "CLIENT LIST through HAProxy: {text:?} lacks {me:?}"
        ));
    }
}

#[test]
fn http_and_kv_behind_haproxy_survive_a_backend_hot_restart() {
    let dir = TempRoot::new("haproxy", "fleet");
    dir.write("index.html", PAGE);
    let root = dir.root_str();
    let mut a = Server::start(
        "http",
        "prefork-reactor",
        &["--proxy-protocol", "--root", root, "--workers", "2"],
    );
    let b = Server::start("http", "reactor", &["--proxy-protocol", "--root", root]);
    let front = haproxy(&dir.base, &[a.addr(), b.addr()]);
    for n in 0..10 {
        http_request(front.addr, n).unwrap_or_else(|e| a.fail(&e));
    }
    // Under load through HAProxy, backend a restarts: nothing fails.
    restart_under_load_at(&mut a, front.addr, http_request);
    drop(front);

    let kv_a = Server::start("kv", "multi-reactor", &["--proxy-protocol"]);
    let mut kv_b = Server::start("kv", "prefork", &["--proxy-protocol", "--workers", "2"]);
    let front = haproxy(&dir.base, &[kv_a.addr(), kv_b.addr()]);
    for _ in 0..2 {
        // Round-robin: one connection to each backend.
        kv_sees_the_real_client(&[&kv_a, &kv_b], front.addr);
    }
    restart_under_load_at(&mut kv_b, front.addr, kv_request);
}
