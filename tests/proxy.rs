//! `--proxy-protocol`: behind a balancer that opens each connection with a
//! PROXY header (v1 or v2), sessions and logs see the real client; a
//! connection without a valid header is closed without an answer.

#[macro_use]
mod common;
#[path = "common/ftp.rs"]
mod ftp_client;

use common::*;
use ftp_client::{port_command, read_to_eof, Ftp};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// A v2 header for a TCP/IPv4 client `src:sport` that reached `dst:dport`.
fn v2(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(src);
    h.extend(dst);
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h
}

arch_tests!(
    sessions_and_logs_see_the_client_the_header_names,
    [thread_pool, reactor, prefork, prefork_reactor, async_],
    |arch| {
        // kv: CLIENT LIST names the client of the header.
        let server = Server::start("kv", arch, &with_sizing(arch, &["--proxy-protocol"]));
        let mut c = server.connect();
        c.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 6380\r\nCLIENT LIST\r\n")
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\n\r\n") {
            got.extend(try_read_exact(&mut c, 1).or_fail(&server));
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("addr=203.0.113.9:40000 laddr=127.0.0.1:6380"),
            "{arch}: {text}"
        );
        // v2, and what follows the header in the same segment.
        let mut c = server.connect();
        let mut req = v2([198, 51, 100, 7], 5555, [127, 0, 0, 1], 6380);
        req.extend(b"PING\r\n");
        c.write_all(&req).unwrap();
        assert_eq!(try_read_exact(&mut c, 7).or_fail(&server), b"+PONG\r\n");
        // No header: closed without an answer.
        let mut c = server.connect();
        c.write_all(b"PING\r\n").unwrap();
        assert_eq!(try_read_to_eof(&mut c).unwrap_or_default(), b"");
        drop(server);

        // http: the access log names the client of the header.
        let dir = TempRoot::new("proxy-http", arch);
        dir.write("a.txt", b"hello\n");
        let log = dir.path("access.log");
        let log_arg = log.to_str().unwrap().to_string();
        let extra = [
            "--proxy-protocol",
            "--root",
            dir.root_str(),
            "--access-log",
            &log_arg,
        ];
        let mut server = Server::start("http", arch, &with_sizing(arch, &extra));
        let mut c = server.connect();
        c.write_all(
            b"PROXY TCP4 192.0.2.44 127.0.0.1 61000 80\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let body = try_read_to_eof(&mut c).or_fail(&server);
        assert!(
            body.ends_with(b"hello\n"),
            "{arch}: {}",
            String::from_utf8_lossy(&body)
        );
        server.signal(libc::SIGTERM);
        server.wait_exit(Duration::from_secs(20));
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(logged.starts_with("192.0.2.44 "), "{arch}: {logged:?}");
    }
);

#[test]
fn a_header_that_never_comes_is_timed_out() {
    let server = Server::start(
        "echo",
        "thread-pool",
        &[
            "--proxy-protocol",
            "--header-timeout",
            "1",
            "--threads",
            "1",
        ],
    );
    // Half a header, then nothing: the one thread is freed at the deadline
    // and serves the next client.
    let mut slow = server.connect();
    slow.write_all(b"PROXY TCP4 10.1.2.3").unwrap();
    assert_eq!(try_read_to_eof(&mut slow).unwrap_or_default(), b"");
    let mut c = server.connect();
    c.write_all(b"PROXY UNKNOWN\r\nhi").unwrap();
    assert_eq!(try_read_exact(&mut c, 2).or_fail(&server), b"hi");
}

arch_tests!(
    max_per_ip_counts_the_client_the_header_names,
    // Every architecture that serves two clients at once (`serial` serves
    // one: the first client would hold it).
    [
        process_per_connection,
        thread_per_connection,
        prefork,
        thread_pool,
        prefork_threads,
        reactor,
        prefork_reactor,
        multi_reactor,
        reactor_pool,
        async_,
        uring,
        multi_uring,
        prefork_uring,
    ],
    |arch| {
        // Every connection comes from 127.0.0.1 (the balancer); the limit
        // of 1 applies to each real client.
        let extra = ["--proxy-protocol", "--max-per-ip", "1"];
        let server = Server::start("echo", arch, &with_sizing(arch, &extra));
        let mut first = server.connect();
        first
            .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 7007\r\none")
            .unwrap();
        assert_eq!(try_read_exact(&mut first, 3).or_fail(&server), b"one");
        let mut other = server.connect();
        other
            .write_all(b"PROXY TCP4 192.0.2.2 127.0.0.1 4001 7007\r\ntwo")
            .unwrap();
        assert_eq!(try_read_exact(&mut other, 3).or_fail(&server), b"two");
        let mut second = server.connect();
        second
            .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 4002 7007\r\nthree")
            .unwrap();
        assert_eq!(
            try_read_to_eof(&mut second).unwrap_or_default(),
            b"",
            "{arch}: a second connection from 192.0.2.1 is refused"
        );
        let logged = wait_for(Duration::from_secs(10), || {
            server
                .stderr()
                .contains("refusing 192.0.2.1:4002")
                .then_some(())
        });
        if logged.is_none() {
            server.fail("the refusal does not name the real client");
        }
        // Once the first has gone, 192.0.2.1 may connect again.
        drop(first);
        let mut admitted = false;
        for _ in 0..50 {
            let mut again = server.connect();
            again
                .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 4003 7007\r\nfour")
                .unwrap();
            if try_read_exact(&mut again, 4).is_ok_and(|got| got == b"four") {
                admitted = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !admitted {
            server.fail("192.0.2.1 is still refused after its connection closed");
        }
        assert_eq!(try_echo(&mut other, b"still").or_fail(&server), ());
        drop(server);

        // A protocol with a refusal says it before the close.
        refused_with(
            arch,
            "kv",
            &[],
            b"PING\r\n",
            b"+PONG\r\n",
            b"-ERR max number of clients reached\r\n",
        );
        let dir = TempRoot::new("proxy-per-ip", arch);
        refused_with(
            arch,
            "http",
            &["--root", dir.root_str()],
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nServer: muse\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 1\r\n\
Connection: close\r\n\r\n503 Service Unavailable\n",
        );
    }
);

/// Under `--proxy-protocol --max-per-ip 1`, a `protocol` server admits a
/// first connection from 192.0.2.1 (its `request` answered up to `ends`,
/// and kept open) and gives a second from the same client exactly
/// `refusal`, then the close.
fn refused_with(
    arch: &str,
    protocol: &str,
    extra: &[&str],
    request: &[u8],
    ends: &[u8],
    refusal: &[u8],
) {
    let mut args = vec!["--proxy-protocol", "--max-per-ip", "1"];
    args.extend_from_slice(extra);
    let server = Server::start(protocol, arch, &with_sizing(arch, &args));
    let header = |port: u16| {
        let mut h = format!("PROXY TCP4 192.0.2.1 127.0.0.1 {port} 80\r\n").into_bytes();
        h.extend_from_slice(request);
        h
    };
    // The first is counted under 192.0.2.1 once it is answered.
    let mut first = server.connect();
    first.write_all(&header(4000)).unwrap();
    let mut got = Vec::new();
    while !got.ends_with(ends) {
        got.extend(try_read_exact(&mut first, 1).or_fail(&server));
    }
    let mut second = server.connect();
    second.write_all(&header(4001)).unwrap();
    let said = try_read_to_eof(&mut second).or_fail(&server);
    if said != refusal {
        server.fail(&format!(
            "{protocol} under {arch}: a second connection from 192.0.2.1 got {:?}, not the refusal {:?}",
            String::from_utf8_lossy(&said),
            String::from_utf8_lossy(refusal)
        ));
    }
    drop(first);
}

/// A connection to `addr` from the local address 127.0.0.`host`.
fn connect_from_host(host: u8, addr: SocketAddr) -> Result<std::net::TcpStream, String> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let connect = || -> std::io::Result<std::net::TcpStream> {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        sock.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, host], 0))))?;
        sock.connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)?;
        let stream: std::net::TcpStream = sock.into();
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(stream)
    };
    connect().map_err(|e| format!("connect from 127.0.0.{host} to {addr}: {e}"))
}

arch_tests!(
    ftp_checks_data_connections_against_the_client_the_header_names,
    [thread_pool, reactor, prefork],
    |arch| {
        // The balancer is 127.0.0.1; the header says the client is
        // 127.0.0.2, which is where data connections must come from and go.
        let dir = TempRoot::new("proxy-ftp", arch);
        dir.write("f.txt", b"through the balancer\n");
        let extra = ["--proxy-protocol", "--root", dir.root_str()];
        let server = Server::start("ftp", arch, &with_sizing(arch, &extra));
        let s = &server;
        let header = format!(
            "PROXY TCP4 127.0.0.2 127.0.0.1 40000 {}\r\n",
            s.addr().port()
        );
        let mut ftp = Ftp::connect_proxied(s.addr(), header.as_bytes()).or_fail(s);
        ftp.login_anonymous().or_fail(s);
        ftp.expect("TYPE I", 200).or_fail(s);

        // PASV: a connection from the balancer's address is not the
        // client's; one from 127.0.0.2 is served.
        let addr = ftp.pasv().or_fail(s);
        let mut stranger = connect_from_host(1, addr).or_fail(s);
        let mut client = connect_from_host(2, addr).or_fail(s);
        let reply = ftp.cmd("RETR f.txt").or_fail(s);
        if !reply.is_preliminary() {
            s.fail(&format!("RETR: {reply}"));
        }
        let got = read_to_eof(&mut client).or_fail(s);
        ftp.finish_transfer("RETR f.txt").or_fail(s);
        assert_eq!(got, b"through the balancer\n");
        let mut buf = [0u8; 64];
        if let Ok(n @ 1..) = stranger.read(&mut buf) {
            s.fail(&format!("the connection from 127.0.0.1 received {n} bytes"));
        }

        // PORT: to the balancer's address is a bounce; to the client's, fine.
        let bounce = TcpListener::bind("127.0.0.1:0").unwrap();
        let line = port_command(bounce.local_addr().unwrap());
        let reply = ftp.cmd(&line).or_fail(s);
        if reply.code == 200 {
            s.fail(&format!("PORT to 127.0.0.1 (not the client): {reply}"));
        }
        let home = TcpListener::bind("127.0.0.2:0").unwrap();
        let line = port_command(home.local_addr().unwrap());
        ftp.expect(&line, 200).or_fail(s);
        let reply = ftp.cmd("RETR f.txt").or_fail(s);
        if !reply.is_preliminary() {
            s.fail(&format!("RETR over PORT: {reply}"));
        }
        let (mut data, _) = home.accept().unwrap();
        let got = read_to_eof(&mut data).or_fail(s);
        ftp.finish_transfer("RETR f.txt").or_fail(s);
        assert_eq!(got, b"through the balancer\n");
        ftp.quit().or_fail(s);
    }
);
