//! TLS listeners (`--tls-listen`): HTTPS with keep-alive and ranges under
//! every architecture, kv over TLS, and what goes wrong: a plain client on
//! a TLS listener, a TLS client on a plain one, garbage instead of a
//! ClientHello, a handshake that stalls, a certificate replaced on SIGHUP,
//! and bad certificate files (exit 1, naming the file, before listening).
//! Certificates are made here (rcgen); the client is rustls.

#[macro_use]
mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use tls::{connect, Certs, Tls};

const PAGE: &[u8] = b"<!DOCTYPE html><title>secure</title>\n";

/// One HTTP response read from `tls`: its head (lowercased) and body.
fn response(tls: &mut Tls) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(0) => return Err(format!("closed within the head: {buf:?}")),
            Ok(_) => buf.push(byte[0]),
            Err(e) => return Err(format!("reading the head: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length: {head:?}"))?;
    let body = tls::read_exact(tls, len).map_err(|e| format!("reading the body: {e}"))?;
    Ok((head, body))
}

/// An http server with a plain and a TLS listener over a root holding
/// `index.html` and a 2 MiB `big.bin`.
fn https(arch: &str, dir: &TempRoot, certs: &Certs, extra: &[&str]) -> Server {
    let tls_args = certs.args();
    let mut args = vec![
        "--root",
        dir.root_str(),
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ];
    args.extend(tls_args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    Server::start("http", arch, &with_sizing(arch, &args))
}

fn fixture(tag: &str) -> (TempRoot, Certs) {
    let dir = TempRoot::new("tls", tag);
    dir.write("index.html", PAGE);
    dir.write("big.bin", &pseudo_random_bytes(7, 2 << 20));
    let certs = Certs::new(&dir.base);
    (dir, certs)
}

arch_tests!(https_keep_alive_ranges_and_large_bodies, |arch| {
    let (dir, certs) = fixture(arch);
    let server = https(arch, &dir, &certs, &[]);
    let s = &server;
    let tls_addr = s.addrs()[1];
    let client = certs.client(&[b"http/1.1"]);
    let mut c = connect(tls_addr, &client).or_fail(s);
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for i in 0..3 {
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let (head, body) = response(&mut c).or_fail(s);
        if !head.starts_with("http/1.1 200 ") || body != PAGE {
            s.fail(&format!("request {i} over one TLS connection: {head:?}"));
        }
    }
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000-1999\r\n\r\n")
        .unwrap();
    let (head, body) = response(&mut c).or_fail(s);
    let big = pseudo_random_bytes(7, 2 << 20);
    if !head.starts_with("http/1.1 206 ") || body != big[1000..2000] {
        s.fail(&format!("a range over TLS: {head:?}"));
    }
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (head, body) = response(&mut c).or_fail(s);
    if !head.starts_with("http/1.1 200 ") || first_difference(&big, &body).is_some() {
        s.fail(&format!(
            "2 MiB over TLS: {head:?}, {} bytes, first difference at {:?}",
            body.len(),
            first_difference(&big, &body)
        ));
    }
    // The plain listener beside it still speaks plain HTTP (once the TLS
    // client has gone: `serial` serves one client at a time).
    drop(c);
    let mut plain = std::net::TcpStream::connect(s.addr()).unwrap();
    plain
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = try_read_to_eof(&mut plain).or_fail(s);
    assert!(got.ends_with(PAGE));
});

arch_tests!(kv_over_tls, |arch| {
    let dir = TempRoot::new("tls-kv", arch);
    let certs = Certs::new(&dir.base);
    let tls_args = certs.args();
    let mut args = vec!["--tls-listen", "127.0.0.1:0"];
    args.extend(tls_args.iter().map(String::as_str));
    let server = Server::start("kv", arch, &with_sizing(arch, &args));
    let s = &server;
    let client = certs.client(&[]);
    let mut c = connect(s.addrs()[1], &client).or_fail(s);
    c.write_all(b"SET greeting hello\r\nGET greeting\r\nPING\r\n")
        .unwrap();
    let want = b"+OK\r\n$5\r\nhello\r\n+PONG\r\n";
    let got = tls::read_exact(&mut c, want.len()).unwrap_or_default();
    assert_eq!(got, want, "{arch}: {}", String::from_utf8_lossy(&got));
    // Large requests in whole records, each answered before the next is
    // sent: the server must read a request's last bytes although nothing
    // arrives after them (a read that rustls sized small is not a sign the
    // socket is empty).
    let value = "v".repeat(1 << 20);
    let set = format!(
        "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{value}\r\n",
        value.len()
    );
    for i in 0..8 {
        c.write_all(set.as_bytes()).unwrap();
        let got = tls::read_exact(&mut c, 5).unwrap_or_else(|e| s.fail(&format!("SET {i}: {e}")));
        assert_eq!(got, b"+OK\r\n", "{arch}: SET {i}");
    }
    // The same keyspace on the plain listener (once the TLS client has
    // gone: `serial` serves one client at a time).
    drop(c);
    let mut plain = s.connect();
    plain.write_all(b"GET greeting\r\n").unwrap();
    assert_eq!(
        try_read_exact(&mut plain, 11).or_fail(s),
        b"$5\r\nhello\r\n"
    );
});

arch_tests!(
    wrong_clients_get_a_clear_end_and_the_server_goes_on,
    |arch| {
        let (dir, certs) = fixture(arch);
        let server = https(arch, &dir, &certs, &[]);
        let s = &server;
        let (plain_addr, tls_addr) = (s.addrs()[0], s.addrs()[1]);
        let client = certs.client(&[b"http/1.1"]);

        // A plain client on the TLS listener: a TLS alert, then the end.
        let mut c = std::net::TcpStream::connect(tls_addr).unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let got = try_read_to_eof(&mut c).unwrap_or_default();
        if got.first() != Some(&0x15) {
            s.fail(&format!(
                "a plain request on the TLS port got {got:?}, not an alert"
            ));
        }

        // A TLS client on the plain listener: its handshake fails at once.
        match connect(plain_addr, &client) {
            Ok(_) => s.fail("a TLS handshake succeeded on the plain port"),
            Err(e) if e.contains("timed out") || e.contains("WouldBlock") => {
                s.fail(&format!("a TLS client on the plain port waited: {e}"))
            }
            Err(_) => {}
        }

        // Garbage instead of a ClientHello: closed.
        let mut c = std::net::TcpStream::connect(tls_addr).unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.write_all(&pseudo_random_bytes(3, 600)).unwrap();
        let _ = try_read_to_eof(&mut c);

        // Through it all, TLS clients are served.
        let mut c = connect(tls_addr, &client).or_fail(s);
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let (head, body) = response(&mut c).or_fail(s);
        assert!(head.starts_with("http/1.1 200 ") && body == PAGE, "{head}");
    }
);

arch_tests!(a_stalled_handshake_is_timed_out, |arch| {
    // One thread or worker where the architecture has them: the stalled
    // client holds it until its handshake deadline, then the next
    // client is served.
    let (dir, certs) = fixture(arch);
    let one: &[&str] = match arch {
        "thread-pool" | "multi-reactor" | "reactor-pool" | "async" => &["--threads", "1"],
        "prefork" | "prefork-reactor" => &["--workers", "1"],
        "prefork-threads" => &["--workers", "1", "--threads", "1"],
        _ => &[],
    };
    let mut extra = vec!["--tls-handshake-timeout", "1"];
    extra.extend_from_slice(one);
    let server = https(arch, &dir, &certs, &extra);
    let s = &server;
    let tls_addr = s.addrs()[1];
    let mut stalled = std::net::TcpStream::connect(tls_addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    match stalled.read(&mut buf) {
        Ok(0) => {}
        Err(e) if is_reset(&e) => {}
        other => s.fail(&format!("a silent TLS client: {other:?}, not closed")),
    }
    let logged = wait_for(Duration::from_secs(10), || {
        s.stderr().contains("no TLS handshake within").then_some(())
    });
    if logged.is_none() {
        s.fail("the handshake timeout is not in the log");
    }
    let client = certs.client(&[b"http/1.1"]);
    let mut c = connect(tls_addr, &client).or_fail(s);
    c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (head, _) = response(&mut c).or_fail(s);
    assert!(head.starts_with("http/1.1 200 "), "{head}");
});

arch_tests!(
    sighup_replaces_the_certificate_without_dropping_a_connection,
    [reactor, prefork, thread_per_connection],
    |arch| {
        let (dir, certs) = fixture(arch);
        let server = https(arch, &dir, &certs, &[]);
        let s = &server;
        let tls_addr = s.addrs()[1];
        let old_client = certs.client(&[b"http/1.1"]);
        let mut before = connect(tls_addr, &old_client).or_fail(s);

        // A broken file is refused and the loaded certificate kept.
        std::fs::write(&certs.cert, b"not a certificate").unwrap();
        server.signal(libc::SIGHUP);
        if wait_for(Duration::from_secs(10), || {
            s.stderr().contains("tls: cannot reload").then_some(())
        })
        .is_none()
        {
            s.fail("no warning for a certificate file that does not parse");
        }
        connect(tls_addr, &old_client).or_fail(s);

        let new = Certs::new(&dir.base);
        server.signal(libc::SIGHUP);
        if wait_for(Duration::from_secs(10), || {
            s.stderr().contains("tls: reloaded").then_some(())
        })
        .is_none()
        {
            s.fail("no line saying the certificate was reloaded");
        }
        // New connections get the new certificate (a prefork master
        // forwards HUP to its workers: give each a moment).
        let new_client = new.client(&[b"http/1.1"]);
        let switched = wait_for(Duration::from_secs(10), || {
            connect(tls_addr, &new_client).ok().and_then(|_| {
                // Every worker: several connections in a row succeed.
                (0..8)
                    .all(|_| connect(tls_addr, &new_client).is_ok())
                    .then_some(())
            })
        });
        if switched.is_none() {
            s.fail("new connections do not get the new certificate");
        }
        if connect(tls_addr, &old_client).is_ok() {
            s.fail("a new connection still gets the old certificate");
        }
        // The connection from before goes on.
        before
            .write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let (head, body) = response(&mut before).or_fail(s);
        assert!(head.starts_with("http/1.1 200 ") && body == PAGE, "{head}");
    }
);

#[test]
fn bad_certificate_files_exit_1_naming_the_file_before_listening() {
    let dir = TempRoot::new("tls", "bad");
    let certs = Certs::new(&dir.base);
    let other = TempRoot::new("tls", "other");
    let other_certs = Certs::new(&other.base);
    let missing = dir.base.join("missing.pem");
    let garbage = dir.base.join("garbage.pem");
    std::fs::write(&garbage, b"-----BEGIN NOTHING-----\n").unwrap();
    let cert = certs.cert.to_str().unwrap();
    let key = certs.key.to_str().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (missing.to_str().unwrap(), key, missing.to_str().unwrap()),
        (cert, missing.to_str().unwrap(), missing.to_str().unwrap()),
        (garbage.to_str().unwrap(), key, garbage.to_str().unwrap()),
        // A key that is not the certificate's.
        (cert, other_certs.key.to_str().unwrap(), "does not match"),
    ];
    for (cert, key, named) in cases {
        let run = run_cli(&[
            "serve",
            "http",
            "--root",
            dir.root_str(),
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]);
        assert_eq!(run.status.code(), Some(1), "{run:?}");
        assert!(run.stderr.contains(named), "{named}: {run:?}");
        assert!(!run.stdout.contains("listening on"), "{run:?}");
    }
    // Half the pair is a mistake too.
    let run = run_cli(&[
        "serve",
        "kv",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("--tls-key"), "{run:?}");
}

#[test]
fn https_through_every_accept_strategy_of_the_prefork_family() {
    for strategy in ["shared", "reuseport", "handoff"] {
        let (dir, certs) = fixture(strategy);
        let server = https(
            "prefork-reactor",
            &dir,
            &certs,
            &["--workers", "2", "--accept", strategy],
        );
        let s = &server;
        let client = certs.client(&[b"http/1.1"]);
        for _ in 0..4 {
            let mut c = connect(s.addrs()[1], &client).or_fail(s);
            c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let (head, body) = response(&mut c).or_fail(s);
            assert!(
                head.starts_with("http/1.1 200 ") && body == PAGE,
                "{strategy}: {head}"
            );
        }
    }
}

#[test]
fn tls_only_servers_have_no_plain_listener_and_require_tls_refuses_one() {
    let dir = TempRoot::new("tls", "only");
    let certs = Certs::new(&dir.base);
    let tls_args = certs.args();
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    // --tls-listen alone: one listener, TLS (no plain default beside it).
    let mut cmd = std::process::Command::new(muse_bin());
    cmd.args([
        "serve",
        "kv",
        "--arch",
        "reactor",
        "--tls-listen",
        "127.0.0.1:0",
    ])
    .args(&tls_args)
    .args(["--require-tls"])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr = parse_listening_line(&line).expect("a listening line");
    assert!(line.contains("(kv, reactor, tls)"), "{line}");
    let mut c = connect(addr, &certs.client(&[])).unwrap();
    c.write_all(b"PING\r\n").unwrap();
    assert_eq!(tls::read_exact(&mut c, 7).unwrap(), b"+PONG\r\n");
    let _ = child.kill();
    let _ = child.wait();
    // --require-tls with a plain listener: refused before listening.
    let mut args = vec![
        "serve",
        "kv",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--require-tls",
    ];
    args.extend(&tls_args);
    let run = run_cli(&args);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("plain listener"), "{run:?}");
    assert!(!run.stdout.contains("listening on"), "{run:?}");
}

#[test]
fn a_hot_restart_keeps_the_tls_listener_tls() {
    let (dir, certs) = fixture("hot");
    let mut server = https("reactor", &dir, &certs, &[]);
    let s_addr = server.addrs()[1];
    let client = certs.client(&[b"http/1.1"]);
    let get = |server: &Server| {
        let mut c = connect(s_addr, &client).or_fail(server);
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let (head, body) = response(&mut c).or_fail(server);
        assert!(head.starts_with("http/1.1 200 ") && body == PAGE, "{head}");
    };
    get(&server);
    server.signal(libc::SIGUSR2);
    if wait_for(Duration::from_secs(30), || {
        server.stderr().contains("drains and exits").then_some(())
    })
    .is_none()
    {
        server.fail("no hand-over after USR2");
    }
    if !server
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success())
    {
        server.fail("the old server did not exit 0");
    }
    // The successor serves TLS on the inherited listener.
    get(&server);
}
