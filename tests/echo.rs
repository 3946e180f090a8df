//! The echo protocol under every architecture, spoken by real TCP clients:
//! many concurrent clients, a large payload streamed while it is read back,
//! every byte value, half-close (full echo, then EOF), an IPv6 listener next
//! to an IPv4 one, and `--max-connections` refusing the connection over the
//! limit while the others keep working.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::thread;

const CLIENTS: usize = 50;
const ROUNDS: usize = 100;

/// A message that differs per client and per round, in content and length.
fn message(client: usize, round: usize) -> Vec<u8> {
    let mut msg = format!("client {client} round {round}: ").into_bytes();
    let len = (client * 7 + round * 13) % 200 + 1;
    msg.extend((0..len).map(|k| ((client * 31 + round * 17 + k) % 256) as u8));
    msg
}

arch_tests!(fifty_concurrent_clients, |arch| {
    let server = Server::serve_echo(arch, &[]);
    let addr = server.addr();
    // Under serial, prefork and thread-pool most clients wait in the backlog
    // for their turn; nothing here needs them to be served at the same time.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            thread::spawn(move || -> Result<(), String> {
                let mut stream = try_connect(addr).map_err(|e| format!("client {client}: {e}"))?;
                for round in 0..ROUNDS {
                    try_echo(&mut stream, &message(client, round))
                        .map_err(|e| format!("client {client} round {round}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|c| match c.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("a client thread panicked".to_string()),
        })
        .collect();
    if !failures.is_empty() {
        server.fail(&format!(
            "{} of {CLIENTS} clients failed:\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
});

arch_tests!(four_mib_streamed_while_reading, |arch| {
    const SIZE: usize = 4 << 20;
    let server = Server::serve_echo(arch, &[]);
    let mut reader = server.connect();
    let mut writer = reader.try_clone().expect("clone client socket");
    let payload = pseudo_random_bytes(0x004D_4942, SIZE);
    let sent = payload.clone();
    // One thread writes while this one reads: neither side's buffers have to
    // hold the whole payload.
    let writing = thread::spawn(move || -> Result<(), String> {
        for (i, chunk) in sent.chunks(64 * 1024).enumerate() {
            writer
                .write_all(chunk)
                .map_err(|e| format!("writing chunk {i} (at byte {}): {e}", i * 64 * 1024))?;
        }
        Ok(())
    });
    let back = try_read_exact(&mut reader, SIZE).unwrap_or_else(|e| server.fail(&e));
    match writing.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => server.fail(&e),
        Err(_) => server.fail("writer thread panicked"),
    }
    if let Some(at) = first_difference(&payload, &back) {
        server.fail(&format!(
            "4 MiB echo differs from what was sent at byte {at}"
        ));
    }
    // The connection is still usable afterwards.
    server.echo(&mut reader, b"after the big one");
});

arch_tests!(a_client_that_pauses_reading_gets_every_byte, |arch| {
    // The client stops reading long enough for the server's sends to block
    // (a blocking worker's send gives up every second to look at its
    // timers, then waits for the socket to take more: several seconds
    // here, as the buffers fill), then reads it all.
    // More than the sockets' buffers on both sides hold (loopback's grow
    // to several MiB each), so that the server's sends do block.
    const SIZE: usize = 48 << 20;
    let server = Server::serve_echo(arch, &[]);
    let mut reader = server.connect();
    let mut writer = reader.try_clone().expect("clone client socket");
    let payload = std::sync::Arc::new(pseudo_random_bytes(0x5041_5553, SIZE));
    let sent = std::sync::Arc::clone(&payload);
    let writing = thread::spawn(move || writer.write_all(&sent).map_err(|e| e.to_string()));
    thread::sleep(std::time::Duration::from_millis(4000));
    let back = try_read_exact(&mut reader, SIZE).unwrap_or_else(|e| server.fail(&e));
    match writing.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => server.fail(&format!("writing: {e}")),
        Err(_) => server.fail("writer thread panicked"),
    }
    if let Some(at) = first_difference(&payload, &back) {
        server.fail(&format!("the echo differs from what was sent at byte {at}"));
    }
    server.echo(&mut reader, b"after the pause");
});

/// The pipes open in process `pid`.
fn pipes_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
                })
                .count()
        })
        .unwrap_or(0)
}

// The architectures whose connections are non-blocking relay a stream
// through a pipe (`splice`); the blocking ones copy it.
arch_tests!(
    a_stream_is_relayed_through_a_pipe_that_goes_with_its_connection,
    [
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
        let server = Server::serve_echo(arch, &[]);
        let mut client = server.connect();
        server.echo(&mut client, b"small messages are copied\n");
        let pid = server.serving_process(&client);
        let before = pipes_of(pid);
        // 1 MiB in 64 KiB writes, each read back before the next: the first
        // is copied, the rest relayed.
        let payload = pseudo_random_bytes(0x5EA1, 1 << 20);
        for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
            client.write_all(chunk).expect("write a chunk");
            let back = try_read_exact(&mut client, chunk.len())
                .unwrap_or_else(|e| server.fail(&format!("chunk {i}: {e}")));
            if let Some(at) = first_difference(chunk, &back) {
                server.fail(&format!("chunk {i} came back different at byte {at}"));
            }
        }
        if wait_for(PROCESS_TIMEOUT, || {
            (pipes_of(pid) >= before + 2).then_some(())
        })
        .is_none()
        {
            server.fail(&format!(
                "no pipe opened for a streaming connection: {before} pipes before, {} after",
                pipes_of(pid)
            ));
        }
        // Small messages go through the pipe as well, in order.
        for round in 0..20 {
            server.echo(&mut client, format!("relayed {round}\n").as_bytes());
        }
        // A half-close: everything, then the end.
        client
            .write_all(&payload[..100_000])
            .expect("write the last bytes");
        half_close(&client);
        let back = try_read_to_eof(&mut client).unwrap_or_else(|e| server.fail(&e));
        if back != payload[..100_000] {
            server.fail(&format!(
                "the last bytes before a half-close came back as {} bytes, differing at {:?}",
                back.len(),
                first_difference(&payload[..100_000], &back)
            ));
        }
        drop(client);
        if wait_for(PROCESS_TIMEOUT, || (pipes_of(pid) == before).then_some(())).is_none() {
            server.fail(&format!(
                "the relay's pipe outlived its connection: {before} pipes before, {} after",
                pipes_of(pid)
            ));
        }
    }
);

arch_tests!(
    concurrent_streams_stay_relayed_to_their_end,
    [
        reactor,
        multi_reactor,
        reactor_pool,
        async_,
        uring,
        multi_uring
    ],
    |arch| {
        // Several streams at once, as a load generator sends them: each
        // stays relayed (its pipe open) to the end, whatever readiness
        // reports come with the wake-ups (io_uring's poll reports every
        // arrival of data with POLLPRI), and every byte comes back.
        const STREAMS: usize = 8;
        let server = Server::serve_echo(arch, &[]);
        let mut clients: Vec<_> = (0..STREAMS).map(|_| server.connect()).collect();
        for client in &mut clients {
            server.echo(client, b"hello\n");
        }
        let pid = server.serving_process(&clients[0]);
        let before = pipes_of(pid);
        let failures: Vec<String> = std::thread::scope(|scope| {
            let streams: Vec<_> = clients
                .iter_mut()
                .enumerate()
                .map(|(n, client)| {
                    scope.spawn(move || {
                        let payload = pseudo_random_bytes(0x57 + n as u64, 2 << 20);
                        for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
                            client.write_all(chunk).map_err(|e| format!("write: {e}"))?;
                            let back = try_read_exact(client, chunk.len())
                                .map_err(|e| format!("stream {n} chunk {i}: {e}"))?;
                            if let Some(at) = first_difference(chunk, &back) {
                                return Err(format!("stream {n} chunk {i} differs at {at}"));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            streams
                .into_iter()
                .filter_map(|s| s.join().expect("a stream thread").err())
                .collect()
        });
        if !failures.is_empty() {
            server.fail(&failures.join("; "));
        }
        let after = pipes_of(pid);
        if after < before + 2 * STREAMS {
            server.fail(&format!(
                "{STREAMS} streams ended with {after} pipes open, {before} before: \
                 some stopped being relayed"
            ));
        }
        for client in &mut clients {
            server.echo(client, b"still here\n");
        }
    }
);

arch_tests!(urgent_data_in_a_relayed_stream_is_echoed_in_line, |arch| {
    // The kernel's splice stops at the urgent mark; the server must still
    // echo the urgent byte, in line (SO_OOBINLINE), and what follows.
    let server = Server::serve_echo(arch, &[]);
    let mut client = server.connect();
    let payload = pseudo_random_bytes(0x0B5, 256 * 1024);
    for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
        client.write_all(chunk).expect("write a chunk");
        let back = try_read_exact(&mut client, chunk.len())
            .unwrap_or_else(|e| server.fail(&format!("chunk {i}: {e}")));
        if back != chunk {
            server.fail(&format!("chunk {i} came back different"));
        }
    }
    client.write_all(b"abc").expect("write");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
    // SAFETY: sends one byte from a valid buffer on our own socket.
    let sent = unsafe { libc::send(fd, b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
    assert_eq!(sent, 1, "send MSG_OOB");
    client.write_all(b"def").expect("write");
    let back = try_read_exact(&mut client, 7)
        .unwrap_or_else(|e| server.fail(&format!("after urgent data in a stream: {e}")));
    if back != b"abc!def" {
        server.fail(&format!(
            "urgent data in a stream came back as {:?}",
            String::from_utf8_lossy(&back)
        ));
    }
    server.echo(&mut client, b"and the connection goes on\n");
});

arch_tests!(
    a_stream_whose_client_stops_reading_ends_at_the_idle_timeout,
    |arch| {
        // A client streams and never reads: the server stops reading once what
        // it holds for the client is full (a pipe, or the session's buffer),
        // nothing moves, and the idle timeout closes the connection; the
        // client's writes then fail.
        let server = Server::serve_echo(arch, &["--idle-timeout", "1"]);
        let conn = server.connect();
        conn.set_write_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("write timeout");
        let chunk = vec![b'x'; 64 * 1024];
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let mut written = 0usize;
        let ended = loop {
            match (&conn).write(&chunk) {
                Ok(n) => written += n,
                Err(e) if is_timeout(&e) => {}
                Err(_) => break true,
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
        };
        if !ended {
            server.fail(&format!(
            "a client that never reads still had its connection {IO_TIMEOUT:?} later (--idle-timeout 1; {written} bytes written)"
        ));
        }
    }
);

arch_tests!(every_byte_value, |arch| {
    let server = Server::serve_echo(arch, &[]);
    let mut stream = server.connect();
    let ascending: Vec<u8> = (0..=255u8).collect();
    let descending: Vec<u8> = (0..=255u8).rev().collect();
    server.echo(&mut stream, &ascending);
    server.echo(&mut stream, &descending);
    for byte in 0..=255u8 {
        if let Err(e) = try_echo(&mut stream, &[byte]) {
            server.fail(&format!("single byte {byte:#04x}: {e}"));
        }
    }
    // Bytes that mean something to other protocols (CR LF, NUL, Telnet IAC)
    // in one write.
    server.echo(&mut stream, b"\r\n\0\xff\xf4\xff\xf2\r\n\r\n.\r\n\x1b\x7f");
    server.echo(&mut stream, &ascending.repeat(64));
});

arch_tests!(half_close_gets_full_echo_then_eof, |arch| {
    let server = Server::serve_echo(arch, &[]);

    // A small message, then our FIN: the echo, then the server's FIN.
    let mut small = server.connect();
    small.write_all(b"goodbye\n").expect("write");
    half_close(&small);
    let back = try_read_to_eof(&mut small)
        .unwrap_or_else(|e| server.fail(&format!("small half-close: {e}")));
    if back != b"goodbye\n" {
        server.fail(&format!(
            "small half-close: echoed {:?}",
            String::from_utf8_lossy(&back)
        ));
    }

    // Nothing at all, then our FIN: EOF at once.
    let mut empty = server.connect();
    half_close(&empty);
    let back = try_read_to_eof(&mut empty)
        .unwrap_or_else(|e| server.fail(&format!("empty half-close: {e}")));
    if !back.is_empty() {
        server.fail(&format!(
            "empty half-close: got {} unexpected bytes",
            back.len()
        ));
    }

    // 1 MiB written then FIN from another thread, while we read everything
    // up to EOF: the server must echo all of it before closing.
    const SIZE: usize = 1 << 20;
    let mut big = server.connect();
    let mut writer = big.try_clone().expect("clone client socket");
    let payload = pseudo_random_bytes(0xF1, SIZE);
    let sent = payload.clone();
    let writing = thread::spawn(move || -> Result<(), String> {
        writer
            .write_all(&sent)
            .map_err(|e| format!("writing 1 MiB: {e}"))?;
        writer
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown(Write): {e}"))
    });
    let back = try_read_to_eof(&mut big)
        .unwrap_or_else(|e| server.fail(&format!("1 MiB half-close: {e}")));
    match writing.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => server.fail(&e),
        Err(_) => server.fail("writer thread panicked"),
    }
    if let Some(at) = first_difference(&payload, &back) {
        server.fail(&format!(
            "1 MiB half-close: echoed {} bytes, first difference at byte {at}",
            back.len()
        ));
    }
});

arch_tests!(ipv4_and_ipv6_listeners, |arch| {
    if !ipv6_loopback_available() {
        eprintln!("skipping: this machine cannot bind [::1]:0");
        return;
    }
    let server = Server::serve_echo(arch, &["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let addrs = server.addrs().to_vec();
    let v4: Vec<_> = addrs.iter().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<_> = addrs.iter().filter(|a| a.is_ipv6()).collect();
    if v4.len() != 1 || v6.len() != 1 {
        server.fail(&format!(
            "expected one IPv4 and one IPv6 listener, got {addrs:?}"
        ));
    }
    for addr in &addrs {
        if !addr.ip().is_loopback() || addr.port() == 0 {
            server.fail(&format!(
                "listening line names {addr}, not a loopback address with a port"
            ));
        }
    }
    // One connection at a time (serial serves no other way), alternating
    // between the listeners; each ends with a half-close and the server's EOF.
    for round in 0..3 {
        for (i, addr) in addrs.iter().enumerate() {
            let mut stream = server.connect_to(*addr);
            for k in 0..3 {
                let msg = format!("listener {i} ({addr}) round {round} message {k}\n");
                server.echo(&mut stream, msg.as_bytes());
            }
            half_close(&stream);
            match try_read_to_eof(&mut stream) {
                Ok(rest) if rest.is_empty() => {}
                Ok(rest) => server.fail(&format!(
                    "{addr}: {} unexpected bytes before EOF",
                    rest.len()
                )),
                Err(e) => server.fail(&format!("{addr}: after half-close: {e}")),
            }
        }
    }
});

// Serial serves one connection at a time, so a connection limit means
// nothing there.
arch_tests!(
    max_connections_refuses_excess,
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
    ],
    |arch| {
        // The limit (2) is below every worker and thread count, so the
        // refusal is the limit's doing, not a lack of workers.
        let server = Server::serve_echo(arch, &["--max-connections", "2"]);
        let mut first = server.connect();
        server.echo(&mut first, b"first\n");
        let mut second = server.connect();
        server.echo(&mut second, b"second\n");

        let mut third = server.connect();
        if let Err(e) = try_expect_closed(&mut third) {
            server.fail(&format!("third connection with --max-connections 2: {e}"));
        }
        drop(third);

        // The two admitted connections are unaffected.
        for round in 0..3 {
            server.echo(&mut first, format!("first again {round}\n").as_bytes());
            server.echo(&mut second, format!("second again {round}\n").as_bytes());
        }

        // Once one of them closes, a new connection is admitted (the server
        // may take a moment to notice the close, so retry while refused).
        half_close(&first);
        let _ = try_read_to_eof(&mut first);
        drop(first);
        let admitted = wait_for(PROCESS_TIMEOUT, || {
            let mut stream = try_connect(server.addr()).ok()?;
            try_echo(&mut stream, b"new\n").ok()?;
            Some(stream)
        });
        let Some(mut fresh) = admitted else {
            server.fail("after one of two connections closed, no new connection was admitted");
        };
        server.echo(&mut second, b"second still\n");
        server.echo(&mut fresh, b"fresh still\n");
        let mut buf = [0u8; 1];
        // Nothing unexpected is waiting on the surviving connection.
        second.set_nonblocking(true).expect("nonblocking");
        match second.read(&mut buf) {
            Ok(0) => server.fail("the server closed the second connection"),
            Ok(n) => server.fail(&format!(
                "unexpected {n} extra bytes on the second connection"
            )),
            Err(_) => {}
        }
    }
);

/// Connects to `addr` from the local address `from` (another loopback
/// address, to look like a second client).
fn connect_from(from: &str, addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&from.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream
}

arch_tests!(
    max_per_ip_refuses_a_third_from_one_address,
    [
        process_per_connection,
        thread_per_connection,
        prefork_reactor,
        multi_reactor,
        async_
    ],
    |arch| {
        let server = Server::serve_echo(arch, &["--max-per-ip", "2"]);
        let mut a = server.connect();
        server.echo(&mut a, b"a\n");
        let mut b = server.connect();
        server.echo(&mut b, b"b\n");
        let mut third = server.connect();
        if let Err(e) = try_expect_closed(&mut third) {
            server.fail(&format!(
                "third connection from 127.0.0.1 with --max-per-ip 2: {e}"
            ));
        }
        // Another address is still welcome.
        let mut other = connect_from("127.0.0.2:0", server.addr());
        server.echo(&mut other, b"from 127.0.0.2\n");
        server.echo(&mut a, b"a still\n");
    }
);
