//! The kv protocol (a Redis-compatible store) under every architecture,
//! spoken to over real TCP connections: exact reply bytes, a write seen by
//! every later connection, 1,000 pipelined commands answered in order, a
//! blocked pop woken by another connection's push (and one that times out),
//! `MULTI`/`EXEC` atomic under concurrent clients, `AUTH`, a protocol error
//! that closes, durability across `kill -9`, under the forking
//! architectures a store process that dies restarted by the server, and
//! `--maxmemory` (refusing writes with `noeviction`, evicting the least
//! recently used keys with `allkeys-lru`).

#[macro_use]
mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// kv runs on every architecture: [`arch_tests!`] with all eleven.
macro_rules! kv_tests {
    ($name:ident, |$arch:ident| $body:block) => {
        arch_tests!($name, |$arch| $body);
    };
}

/// Whether the architecture forks (its store runs in a process of its own).
fn forks(arch: &str) -> bool {
    matches!(
        arch,
        "process-per-connection" | "prefork" | "prefork-threads" | "prefork-reactor"
    )
}

fn serve(arch: &str, extra: &[&str]) -> Server {
    Server::start("kv", arch, &with_sizing(arch, extra))
}

/// Sends `request` and checks that the reply is exactly `want`.
fn expect(server: &Server, stream: &mut TcpStream, request: &str, want: &str) {
    stream.write_all(request.as_bytes()).expect("send");
    match try_read_exact(stream, want.len()) {
        Ok(got) if got == want.as_bytes() => {}
        Ok(got) => server.fail(&format!(
            "{request:?}: wanted {want:?}, got {:?}",
            String::from_utf8_lossy(&got)
        )),
        Err(e) => server.fail(&format!("{request:?}: wanted {want:?}: {e}")),
    }
}

/// One reply line, without its CRLF.
fn line(server: &Server, stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        got.extend(try_read_exact(stream, 1).or_fail(server));
    }
    got.truncate(got.len() - 2);
    String::from_utf8_lossy(&got).into_owned()
}

/// A bulk reply's text (`None` for the null bulk).
fn bulk(server: &Server, stream: &mut TcpStream) -> Option<String> {
    let head = line(server, stream);
    if head == "$-1" {
        return None;
    }
    let n: usize = head
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| server.fail(&format!("not a bulk: {head:?}")));
    let body = try_read_exact(stream, n + 2).or_fail(server);
    Some(String::from_utf8_lossy(&body[..n]).into_owned())
}

/// `GET key`, and its bulk reply (`None` for the null bulk).
fn bulk_reply(server: &Server, stream: &mut TcpStream, key: &str) -> Option<String> {
    stream
        .write_all(resp(&["GET", key]).as_bytes())
        .expect("send");
    bulk(server, stream)
}

/// A command in RESP.
fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\r\n", args.len());
    for a in args {
        s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s
}

kv_tests!(replies_are_redis_bytes, |arch| {
    let server = serve(arch, &[]);
    let mut c = server.connect();
    expect(&server, &mut c, "PING\r\n", "+PONG\r\n");
    // A wait longer than the clock can count is refused, not waited for.
    expect(
        &server,
        &mut c,
        &resp(&["BLPOP", "q", "1e20"]),
        "-ERR timeout is out of range\r\n",
    );
    expect(&server, &mut c, &resp(&["SET", "prez", "obama"]), "+OK\r\n");
    expect(&server, &mut c, "GET prez\r\n", "$5\r\nobama\r\n");
    expect(&server, &mut c, &resp(&["GET", "nobody"]), "$-1\r\n");
    expect(
        &server,
        &mut c,
        &resp(&["INCR", "prez"]),
        "-ERR value is not an integer or out of range\r\n",
    );
    expect(
        &server,
        &mut c,
        &resp(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n",
    );
    expect(
        &server,
        &mut c,
        &resp(&["NOSUCH", "a"]),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n",
    );
    expect(&server, &mut c, &resp(&["LPUSH", "l", "a", "b"]), ":2\r\n");
    expect(
        &server,
        &mut c,
        &resp(&["GET", "l"]),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    expect(
        &server,
        &mut c,
        &resp(&["LRANGE", "l", "0", "-1"]),
        "*2\r\n$1\r\nb\r\n$1\r\na\r\n",
    );
    expect(&server, &mut c, &resp(&["SELECT", "1"]), "+OK\r\n");
    expect(&server, &mut c, &resp(&["GET", "prez"]), "$-1\r\n");
    expect(
        &server,
        &mut c,
        &resp(&["SELECT", "16"]),
        "-ERR DB index is out of range\r\n",
    );
    // RESP3 after HELLO 3: the null is `_`, the hash a map.
    let hello = resp(&["HELLO", "3"]);
    c.write_all(hello.as_bytes()).expect("send");
    let head = try_read_exact(&mut c, 20).or_fail(&server);
    assert_eq!(&head[..], b"%7\r\n$6\r\nserver\r\n$5\r\n", "{arch}");
    let rest = b"redis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n";
    let got = try_read_exact(&mut c, rest.len()).or_fail(&server);
    assert_eq!(&got[..], &rest[..], "{arch}");
    // The id and the rest of the map.
    let mut tail = Vec::new();
    while !tail.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        tail.extend(try_read_exact(&mut c, 1).or_fail(&server));
    }
    expect(&server, &mut c, &resp(&["GET", "nobody"]), "_\r\n");
    expect(&server, &mut c, &resp(&["HSET", "h", "f", "v"]), ":1\r\n");
    expect(
        &server,
        &mut c,
        &resp(&["HGETALL", "h"]),
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    expect(&server, &mut c, "QUIT\r\n", "+OK\r\n");
    assert_eq!(try_read_to_eof(&mut c).or_fail(&server), b"");
});

kv_tests!(
    a_last_answer_larger_than_the_socket_arrives_whole_and_one_never_read_is_let_go,
    |arch| {
        // GET of an 8 MiB value and QUIT in one write: the answers are the
        // connection's last words, far more than the socket takes at once, so
        // they go out over many sends as the client reads, then the close.
        let server = serve(arch, &[]);
        let mut c = server.connect();
        let value: String = (0..8 * 1024 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        expect(&server, &mut c, &resp(&["SET", "big", &value]), "+OK\r\n");
        let asked = format!("{}{}", resp(&["GET", "big"]), resp(&["QUIT"]));
        c.write_all(asked.as_bytes()).expect("send");
        let got = try_read_to_eof(&mut c).or_fail(&server);
        let want = format!("${}\r\n{value}\r\n+OK\r\n", value.len());
        if got != want.as_bytes() {
            server.fail(&format!(
                "{arch}: got {} bytes, not the value and +OK ({} bytes) before the close",
                got.len(),
                want.len()
            ));
        }
        // The same last words to a client that never reads them: the idle
        // timeout lets the connection go with its answer unsent.
        let server = serve(arch, &["--idle-timeout", "1"]);
        let mut mute = server.connect();
        expect(
            &server,
            &mut mute,
            &resp(&["SET", "big", &value]),
            "+OK\r\n",
        );
        mute.write_all(asked.as_bytes()).expect("send");
        server.expect_let_go(
            &mute,
            Duration::from_secs(20),
            "a client that never reads its last answer was not let go",
        );
    }
);

kv_tests!(a_protocol_error_is_answered_then_closed, |arch| {
    let server = serve(arch, &[]);
    let mut c = server.connect();
    expect(
        &server,
        &mut c,
        "*1\r\n$x\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    assert_eq!(try_read_to_eof(&mut c).or_fail(&server), b"");
    let mut c = server.connect();
    expect(
        &server,
        &mut c,
        "*99999999\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    assert_eq!(try_read_to_eof(&mut c).or_fail(&server), b"");
});

kv_tests!(
    every_acknowledged_write_is_seen_by_later_connections,
    |arch| {
        let server = serve(arch, &[]);
        for i in 0..20 {
            let mut c = server.connect();
            let (k, v) = (format!("key{i}"), format!("value{i}"));
            expect(&server, &mut c, &resp(&["SET", &k, &v]), "+OK\r\n");
        }
        let mut c = server.connect();
        for i in 0..20 {
            let v = format!("value{i}");
            let want = format!("${}\r\n{v}\r\n", v.len());
            expect(&server, &mut c, &resp(&["GET", &format!("key{i}")]), &want);
        }
        expect(&server, &mut c, &resp(&["DBSIZE"]), ":20\r\n");
    }
);

kv_tests!(
    a_thousand_pipelined_commands_are_answered_in_order,
    |arch| {
        let server = serve(arch, &[]);
        let mut c = server.connect();
        let mut request = String::new();
        let mut want = String::new();
        for i in 1..=1000 {
            request.push_str(&resp(&["INCR", "n"]));
            want.push_str(&format!(":{i}\r\n"));
        }
        expect(&server, &mut c, &request, &want);
    }
);

arch_tests!(
    a_blocked_pop_is_woken_by_another_connections_push,
    // Not `serial`: it serves one client at a time, so a second client
    // waits for the first to leave.
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
        async_
    ],
    |arch| {
        let server = serve(arch, &[]);
        let mut waiting = server.connect();
        waiting
            .write_all(resp(&["BLPOP", "jobs", "0"]).as_bytes())
            .expect("send");
        // The pop is blocked once the server answers a later command on
        // another connection that sees it waiting.
        let mut other = server.connect();
        let blocked = wait_for(Duration::from_secs(10), || {
            other
                .write_all(resp(&["INFO", "clients"]).as_bytes())
                .expect("send");
            let info = bulk(&server, &mut other).unwrap_or_default();
            info.contains("blocked_clients:1").then_some(())
        });
        if blocked.is_none() {
            server.fail("the BLPOP never showed as blocked");
        }
        expect(
            &server,
            &mut other,
            &resp(&["RPUSH", "jobs", "j1"]),
            ":1\r\n",
        );
        expect(
            &server,
            &mut waiting,
            "",
            "*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n",
        );
        // The element went to the waiting client: the list is gone.
        expect(&server, &mut other, &resp(&["EXISTS", "jobs"]), ":0\r\n");
        // A pop that times out answers the null array, then the connection
        // goes on.
        expect(
            &server,
            &mut waiting,
            &resp(&["BRPOP", "none", "0.1"]),
            "*-1\r\n",
        );
        expect(&server, &mut waiting, "PING\r\n", "+PONG\r\n");
    }
);

arch_tests!(
    multi_exec_is_atomic_under_concurrent_clients,
    // Not `serial`: it serves one client at a time, so a second client
    // waits for the first to leave.
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
        async_
    ],
    |arch| {
        let server = serve(arch, &[]);
        let addr = server.addr();
        let writers: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut c = try_connect(addr).expect("connect");
                    for _ in 0..50 {
                        let tx = format!(
                            "{}{}{}{}",
                            resp(&["MULTI"]),
                            resp(&["INCR", "a"]),
                            resp(&["INCR", "b"]),
                            resp(&["EXEC"])
                        );
                        c.write_all(tx.as_bytes()).expect("send");
                        // +OK, two +QUEUED, then the EXEC array of two integers.
                        let mut got = Vec::new();
                        while got.iter().filter(|&&b| b == b'\n').count() < 6 {
                            got.extend(try_read_exact(&mut c, 1).expect("reply"));
                        }
                        let s = String::from_utf8_lossy(&got).into_owned();
                        assert!(
                            s.starts_with("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:"),
                            "{s:?}"
                        );
                    }
                })
            })
            .collect();
        let mut reader = server.connect();
        for _ in 0..50 {
            let tx = format!(
                "{}{}{}{}",
                resp(&["MULTI"]),
                resp(&["GET", "a"]),
                resp(&["GET", "b"]),
                resp(&["EXEC"])
            );
            reader.write_all(tx.as_bytes()).expect("send");
            for want in ["+OK", "+QUEUED", "+QUEUED", "*2"] {
                assert_eq!(line(&server, &mut reader), want, "{arch}");
            }
            let (a, b) = (bulk(&server, &mut reader), bulk(&server, &mut reader));
            assert_eq!(a, b, "{arch}: a and b differ inside EXEC");
        }
        for w in writers {
            if w.join().is_err() {
                server.fail("a writer failed");
            }
        }
        expect(
            &server,
            &mut reader,
            &resp(&["MGET", "a", "b"]),
            "*2\r\n$3\r\n150\r\n$3\r\n150\r\n",
        );
    }
);

kv_tests!(
    idle_clients_and_clients_that_never_read_are_closed,
    |arch| {
        let server = serve(arch, &["--idle-timeout", "1"]);
        // Idle: closed without a word once the timeout passes.
        let mut idle = server.connect();
        expect(&server, &mut idle, "PING\r\n", "+PONG\r\n");
        assert_eq!(try_read_to_eof(&mut idle).or_fail(&server), b"");
        // Never reads: 64 KiB values asked for 2,000 times (128 MiB of
        // replies, far past what the socket buffers and the session hold).
        let mut flood = server.connect();
        let value = "v".repeat(64 * 1024);
        expect(
            &server,
            &mut flood,
            &resp(&["SET", "big", &value]),
            "+OK\r\n",
        );
        let gets = resp(&["GET", "big"]).repeat(2_000);
        // The server stops reading once its buffers are full, so this
        // write may block: it runs on its own thread, and ends with the
        // connection.
        let mut writer = flood.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(gets.as_bytes());
        });
        // The server lets go of the connection.
        server.expect_let_go(
            &flood,
            Duration::from_secs(20),
            "a client that never reads was not closed",
        );
        // Reading now finds the end long before the 128 MiB asked for.
        let got = try_read_to_eof(&mut flood).map_or(0, |b| b.len());
        assert!(got < 2_000 * value.len(), "{arch}: {got} bytes");
        sender.join().expect("writer");
        // The server goes on.
        let mut c = server.connect();
        expect(&server, &mut c, "PING\r\n", "+PONG\r\n");
    }
);

kv_tests!(requirepass_guards_every_command, |arch| {
    let server = serve(arch, &["--requirepass", "s3cret"]);
    let mut c = server.connect();
    expect(
        &server,
        &mut c,
        &resp(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n",
    );
    expect(
        &server,
        &mut c,
        &resp(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    expect(&server, &mut c, &resp(&["AUTH", "s3cret"]), "+OK\r\n");
    expect(&server, &mut c, &resp(&["GET", "k"]), "$-1\r\n");
    // Once authenticated, the usual limits.
    let big = "v".repeat(20_000);
    let many: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut del = vec!["DEL"];
    del.extend(many.iter().map(String::as_str));
    expect(&server, &mut c, &resp(&["SET", "k", &big]), "+OK\r\n");
    expect(&server, &mut c, &resp(&del), ":0\r\n");
    // (serial serves one connection at a time)
    drop(c);
    // Before it, a client cannot make the server hold much: more than ten
    // arguments, or one over 16 KiB, is a protocol error and a close, as in
    // Redis.
    for (request, error) in [
        ("*11\r\n", "unauthenticated multibulk length"),
        (
            "*2\r\n$3\r\nGET\r\n$16385\r\n",
            "unauthenticated bulk length",
        ),
    ] {
        let mut c = server.connect();
        expect(
            &server,
            &mut c,
            request,
            &format!("-ERR Protocol error: {error}\r\n"),
        );
        assert_eq!(try_read_to_eof(&mut c).or_fail(&server), b"");
    }
});

kv_tests!(
    acknowledged_writes_survive_kill_9_with_fsync_always,
    |arch| {
        let dir = TempRoot::new("kv", arch);
        let data = dir.path("data");
        let data = data.to_str().expect("utf-8 path");
        let mut server = serve(arch, &["--data-dir", data, "--fsync", "always"]);
        let mut c = server.connect();
        for i in 0..100 {
            let (k, v) = (format!("k{i}"), format!("v{i}"));
            expect(&server, &mut c, &resp(&["SET", &k, &v]), "+OK\r\n");
        }
        expect(&server, &mut c, &resp(&["RPUSH", "q", "a", "b"]), ":2\r\n");
        expect(&server, &mut c, &resp(&["LPOP", "q"]), "$1\r\na\r\n");
        expect(
            &server,
            &mut c,
            &resp(&["INCRBYFLOAT", "f", "0.1"]),
            "$3\r\n0.1\r\n",
        );
        // A second server on the same directory is refused.
        let second = std::process::Command::new(muse_bin())
            .args(["serve", "kv", "--arch", arch, "--listen", "127.0.0.1:0"])
            .args(["--data-dir", data])
            .output()
            .expect("run muse");
        assert_eq!(second.status.code(), Some(1), "{arch}");
        assert!(String::from_utf8_lossy(&second.stderr).contains("another server holds"));
        // The whole process group, workers and store process included.
        server.signal_group(libc::SIGKILL);
        if server.wait_exit(Duration::from_secs(10)).is_none() {
            server.fail("did not die of SIGKILL");
        }
        server.assert_group_gone(Duration::from_secs(10));
        let server = serve(arch, &["--data-dir", data]);
        let mut c = server.connect();
        expect(&server, &mut c, &resp(&["DBSIZE"]), ":102\r\n");
        for i in 0..100 {
            let v = format!("v{i}");
            let want = format!("${}\r\n{v}\r\n", v.len());
            expect(&server, &mut c, &resp(&["GET", &format!("k{i}")]), &want);
        }
        expect(
            &server,
            &mut c,
            &resp(&["LRANGE", "q", "0", "-1"]),
            "*1\r\n$1\r\nb\r\n",
        );
        expect(&server, &mut c, &resp(&["GET", "f"]), "$3\r\n0.1\r\n");
    }
);

arch_tests!(
    kill_9_under_load_loses_no_acknowledged_write,
    [thread_pool, reactor, prefork_reactor, async_],
    |arch| {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        const WRITERS: usize = 3;
        const ROUNDS: usize = 3;
        let dir = TempRoot::new("kv-kill", arch);
        let data = dir.path("data");
        let data = data.to_str().expect("utf-8 path");
        // Per writer, the number of its writes acknowledged over all rounds.
        let mut acked = [0usize; WRITERS];
        let check = |server: &Server, acked: &[usize], every: usize| {
            let mut c = server.connect();
            for (w, &n) in acked.iter().enumerate() {
                for i in (0..n).step_by(every).chain(n.checked_sub(1)) {
                    let got = bulk_reply(server, &mut c, &format!("w{w}:{i}"));
                    if got.as_deref() != Some(i.to_string().as_str()) {
                        server.fail(&format!("w{w}:{i} was acknowledged, now {got:?}"));
                    }
                }
            }
        };
        for round in 0..ROUNDS {
            let mut server = serve(arch, &["--data-dir", data, "--fsync", "always"]);
            // Everything acknowledged before this round is still there.
            check(&server, &acked, 7);
            // Writers, one connection each, one SET at a time; each counts
            // its acknowledged writes until the connection breaks.
            let total = Arc::new(AtomicUsize::new(0));
            let addr = server.addr();
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let total = Arc::clone(&total);
                    let start = acked[w];
                    std::thread::spawn(move || {
                        let mut n = start;
                        let Ok(mut c) = try_connect(addr) else {
                            return n;
                        };
                        // Bounded: the server is killed long before this.
                        while n < start + 100_000 {
                            let v = n.to_string();
                            let req = resp(&["SET", &format!("w{w}:{n}"), &v]);
                            if c.write_all(req.as_bytes()).is_err() {
                                break;
                            }
                            match try_read_exact(&mut c, 5) {
                                Ok(got) if got == b"+OK\r\n" => {}
                                _ => break,
                            }
                            n += 1;
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                        n
                    })
                })
                .collect();
            let busy = wait_for(Duration::from_secs(20), || {
                (total.load(Ordering::Relaxed) >= 150).then_some(())
            });
            if busy.is_none() {
                server.fail(&format!("round {round}: the writers did not get going"));
            }
            server.signal_group(libc::SIGKILL);
            for (w, t) in writers.into_iter().enumerate() {
                acked[w] = t.join().expect("writer");
            }
            if server.wait_exit(Duration::from_secs(10)).is_none() {
                server.fail("did not die of SIGKILL");
            }
            server.assert_group_gone(Duration::from_secs(10));
        }
        // A last start checks every write of every round.
        let server = serve(arch, &["--data-dir", data]);
        check(&server, &acked, 1);
    }
);

arch_tests!(
    a_store_process_that_dies_is_restarted_with_its_log,
    [
        process_per_connection,
        prefork,
        prefork_threads,
        prefork_reactor
    ],
    |arch| {
        assert!(forks(arch));
        let dir = TempRoot::new("kv-store", arch);
        let data = dir.path("data");
        let data = data.to_str().expect("utf-8 path");
        let server = serve(arch, &["--data-dir", data, "--fsync", "always"]);
        let mut c = server.connect();
        expect(&server, &mut c, &resp(&["SET", "k", "v"]), "+OK\r\n");
        expect(&server, &mut c, &resp(&["RPUSH", "q", "a"]), ":1\r\n");
        // The store is the process that answers INFO; it is not the master.
        c.write_all(resp(&["INFO", "server"]).as_bytes())
            .expect("send");
        let info = bulk(&server, &mut c).unwrap_or_default();
        let store: i32 = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| server.fail(&format!("no process_id in {info:?}")));
        assert_ne!(store, server.pid(), "{arch}: the master does not serve kv");
        assert!(
            server.children().contains(&store),
            "{arch}: the store is the master's child"
        );
        // SAFETY: kill takes plain integers; `store` is a child of our server.
        unsafe { libc::kill(store, libc::SIGKILL) };
        // The connection that was served by the dead store is closed.
        if try_read_to_eof(&mut c).is_err() {
            server.fail("the client of a dead store was not closed");
        }
        // A new store replays the log; new connections see every
        // acknowledged write.
        let mut c = server.connect();
        expect(&server, &mut c, &resp(&["GET", "k"]), "$1\r\nv\r\n");
        expect(&server, &mut c, &resp(&["LPOP", "q"]), "$1\r\na\r\n");
        let logged = wait_for(Duration::from_secs(10), || {
            let err = server.stderr();
            (err.contains(&format!("kv store (pid {store}) was killed by signal 9"))
                && err.contains("kv store restarted"))
            .then_some(())
        });
        if logged.is_none() {
            server.fail("the store's death and restart were not logged");
        }
    }
);

arch_tests!(
    a_store_that_cannot_open_stops_the_server_before_it_listens,
    [process_per_connection, prefork_reactor],
    |arch| {
        let dir = TempRoot::new("kv-bad", arch);
        // A damaged record in the middle of the log (not a torn tail).
        dir.mkdir("data");
        dir.write("data/appendonly.muse", &[0xff; 64]);
        let out = std::process::Command::new(muse_bin())
            .args(["serve", "kv", "--arch", arch, "--listen", "127.0.0.1:0"])
            .args(["--data-dir", dir.path("data").to_str().expect("utf-8")])
            .output()
            .expect("run muse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{arch}: {err}");
        assert!(err.contains("the kv store process did not start"), "{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    }
);

arch_tests!(
    a_stop_closes_clients_then_the_store_and_leaves_no_process,
    [
        process_per_connection,
        prefork,
        prefork_threads,
        prefork_reactor
    ],
    |arch| {
        let mut server = serve(arch, &["--shutdown-timeout", "5"]);
        let mut c = server.connect();
        expect(&server, &mut c, &resp(&["SET", "k", "v"]), "+OK\r\n");
        server.signal(libc::SIGTERM);
        // The idle client is closed by the drain, then the server exits 0
        // and its store process with it.
        if try_read_to_eof(&mut c).is_err() {
            server.fail("the idle client was not closed by the drain");
        }
        match server.wait_exit(Duration::from_secs(10)) {
            Some(status) if status.success() => {}
            other => server.fail(&format!("exit after SIGTERM: {other:?}")),
        }
        server.assert_group_gone(Duration::from_secs(5));
    }
);

/// One field of `INFO section`, as text.
fn info_field(server: &Server, c: &mut TcpStream, section: &str, field: &str) -> String {
    c.write_all(resp(&["INFO", section]).as_bytes())
        .expect("send");
    let info = bulk(server, c).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| server.fail(&format!("no {field} in {info:?}")))
}

/// Waits (bounded) until no rewrite runs; fails the test otherwise.
fn wait_rewrite_done(server: &Server, c: &mut TcpStream) {
    let done = wait_for(Duration::from_secs(60), || {
        (info_field(server, c, "persistence", "aof_rewrite_in_progress") == "0").then_some(())
    });
    if done.is_none() {
        server.fail("the rewrite never ended");
    }
}

/// Keys of the rewrite test.
const KEYS: usize = 20_000;

arch_tests!(
    bgrewriteaof_shrinks_the_log_and_a_restart_sees_every_key,
    // Threads, one loop, and the forking ones (whose store runs in a
    // process of its own).
    [
        reactor,
        thread_pool,
        prefork_reactor,
        process_per_connection
    ],
    |arch| {
        let dir = TempRoot::new("kv-rewrite", arch);
        let data = dir.path("data");
        let data = data.to_str().expect("utf-8 path");
        let mut server = serve(arch, &["--data-dir", data, "--fsync", "always"]);
        let mut c = server.connect();
        // 20,000 keys, each written 10 times (in MSETs of 100): a log ten
        // times its snapshot, and a walk of twenty turns.
        for round in 0..10 {
            let mut request = String::new();
            for batch in 0..KEYS / 100 {
                let mut args = vec!["MSET".to_string()];
                for i in batch * 100..(batch + 1) * 100 {
                    args.push(format!("k{i}"));
                    args.push(format!("v{round}"));
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                request.push_str(&resp(&args));
            }
            expect(&server, &mut c, &request, &"+OK\r\n".repeat(KEYS / 100));
        }
        expect(
            &server,
            &mut c,
            &resp(&["RPUSH", "list", "a", "b", "c"]),
            ":3\r\n",
        );
        expect(
            &server,
            &mut c,
            &resp(&["HSET", "hash", "f", "v"]),
            ":1\r\n",
        );
        expect(&server, &mut c, &resp(&["SADD", "set", "m"]), ":1\r\n");
        expect(
            &server,
            &mut c,
            &resp(&["EXPIRE", "k0", "100000"]),
            ":1\r\n",
        );
        let before: u64 = info_field(&server, &mut c, "persistence", "aof_current_size")
            .parse()
            .unwrap_or(0);
        // A client writing while the rewrite runs; it stops once told.
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let progress = std::sync::Arc::new(AtomicU32::new(0));
        let addr = server.addr();
        let writer = {
            let (stop, progress) = (
                std::sync::Arc::clone(&stop),
                std::sync::Arc::clone(&progress),
            );
            std::thread::spawn(move || {
                let mut w = try_connect(addr).expect("connect");
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    // A bounded amount, so that the log's size after the
                    // rewrite does not depend on how long it takes.
                    if n >= 5000 {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let req = resp(&["SET", &format!("w{n}"), &format!("x{n}")]);
                    w.write_all(req.as_bytes()).expect("send");
                    assert_eq!(try_read_exact(&mut w, 5).expect("reply"), b"+OK\r\n");
                    let req = resp(&["INCR", "counter"]);
                    w.write_all(req.as_bytes()).expect("send");
                    let want = format!(":{}\r\n", n + 1);
                    assert_eq!(
                        try_read_exact(&mut w, want.len()).expect("reply"),
                        want.as_bytes()
                    );
                    n += 1;
                    progress.store(n, Ordering::Relaxed);
                }
                n
            })
        };
        wait_for(Duration::from_secs(10), || {
            (progress.load(Ordering::Relaxed) > 0).then_some(())
        });
        expect(
            &server,
            &mut c,
            &resp(&["BGREWRITEAOF"]),
            "+Background append only file rewriting started\r\n",
        );
        let at_start = progress.load(Ordering::Relaxed);
        wait_rewrite_done(&server, &mut c);
        let at_end = progress.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let written = match writer.join() {
            Ok(n) => n,
            Err(_) => server.fail("the writing client failed"),
        };
        // Not asserted (timing): about how many writes the client made
        // while the rewrite ran.
        eprintln!(
            "{arch}: the client wrote {} times during the rewrite",
            at_end - at_start
        );
        assert_eq!(
            info_field(&server, &mut c, "persistence", "aof_last_bgrewrite_status"),
            "ok",
            "{arch}"
        );
        assert_eq!(
            info_field(&server, &mut c, "persistence", "aof_rewrites"),
            "1"
        );
        // The size right after the rewrite: the snapshot (36 bytes a key)
        // plus what was written during it (at most 5,000 times 66 bytes),
        // far less than ten rounds of every key (about 160 bytes a key).
        let base: u64 = info_field(&server, &mut c, "persistence", "aof_base_size")
            .parse()
            .unwrap_or(u64::MAX);
        assert!(
            base < before / 2,
            "{arch}: {base} bytes after, {before} before"
        );

        // Restart on the same directory (after kill -9: every acknowledged
        // write was synced).
        server.signal_group(libc::SIGKILL);
        if server.wait_exit(Duration::from_secs(10)).is_none() {
            server.fail("did not die of SIGKILL");
        }
        server.assert_group_gone(Duration::from_secs(10));
        let server = serve(arch, &["--data-dir", data]);
        let mut c = server.connect();
        expect(
            &server,
            &mut c,
            &resp(&["DBSIZE"]),
            &format!(":{}\r\n", KEYS as u32 + 3 + written + 1),
        );
        for batch in 0..KEYS / 100 {
            let keys: Vec<String> = (batch * 100..(batch + 1) * 100)
                .map(|i| format!("k{i}"))
                .collect();
            let mut args = vec!["MGET"];
            args.extend(keys.iter().map(String::as_str));
            let want = format!("*100\r\n{}", "$2\r\nv9\r\n".repeat(100));
            expect(&server, &mut c, &resp(&args), &want);
        }
        for n in 0..written {
            let v = format!("x{n}");
            let want = format!("${}\r\n{v}\r\n", v.len());
            expect(&server, &mut c, &resp(&["GET", &format!("w{n}")]), &want);
        }
        let count = written.to_string();
        expect(
            &server,
            &mut c,
            &resp(&["GET", "counter"]),
            &format!("${}\r\n{count}\r\n", count.len()),
        );
        expect(
            &server,
            &mut c,
            &resp(&["LRANGE", "list", "0", "-1"]),
            "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
        );
        expect(
            &server,
            &mut c,
            &resp(&["HGET", "hash", "f"]),
            "$1\r\nv\r\n",
        );
        expect(&server, &mut c, &resp(&["SISMEMBER", "set", "m"]), ":1\r\n");
        c.write_all(resp(&["TTL", "k0"]).as_bytes()).expect("send");
        let ttl = line(&server, &mut c);
        let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap_or(-9);
        assert!((90_000..=100_000).contains(&ttl), "{arch}: TTL {ttl}");
        // A second rewrite while one runs is refused, or the first is done.
        expect(
            &server,
            &mut c,
            &resp(&["BGREWRITEAOF"]),
            "+Background append only file rewriting started\r\n",
        );
        c.write_all(resp(&["BGREWRITEAOF"]).as_bytes())
            .expect("send");
        let again = line(&server, &mut c);
        assert!(
            again == "+Background append only file rewriting started"
                || again == "-ERR Background append only file rewriting already in progress",
            "{arch}: {again:?}"
        );
        wait_rewrite_done(&server, &mut c);
    }
);

arch_tests!(
    the_log_is_rewritten_automatically_once_it_has_doubled,
    [reactor, prefork_reactor],
    |arch| {
        let dir = TempRoot::new("kv-autorewrite", arch);
        let data = dir.path("data");
        let data = data.to_str().expect("utf-8 path");
        let server = serve(arch, &["--data-dir", data]);
        let mut c = server.connect();
        expect(
            &server,
            &mut c,
            &resp(&["CONFIG", "SET", "auto-aof-rewrite-min-size", "4kb"]),
            "+OK\r\n",
        );
        // The same ten keys over and over, until the log is rewritten.
        let mut round = 0;
        let rewritten = wait_for(Duration::from_secs(60), || {
            let mut request = String::new();
            for i in 0..10 {
                request.push_str(&resp(&["SET", &format!("k{i}"), &format!("r{round}")]));
            }
            expect(&server, &mut c, &request, &"+OK\r\n".repeat(10));
            round += 1;
            // Stop writing once a rewrite runs or has run, so that what
            // it leaves is a snapshot of ten keys and a round or two.
            let running = info_field(&server, &mut c, "persistence", "aof_rewrite_in_progress");
            let done = info_field(&server, &mut c, "persistence", "aof_rewrites");
            (running == "1" || done != "0").then_some(())
        });
        if rewritten.is_none() {
            server.fail("no automatic rewrite");
        }
        wait_rewrite_done(&server, &mut c);
        let base: u64 = info_field(&server, &mut c, "persistence", "aof_base_size")
            .parse()
            .unwrap_or(u64::MAX);
        assert!(base < 4096, "{arch}: {base} bytes after the rewrite");
        assert_eq!(
            info_field(&server, &mut c, "persistence", "aof_last_bgrewrite_status"),
            "ok"
        );
        // Off: a percentage of 0.
        expect(
            &server,
            &mut c,
            &resp(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "0"]),
            "+OK\r\n",
        );
        expect(&server, &mut c, &resp(&["GET", "k9"]), &{
            let v = format!("r{}", round - 1);
            format!("${}\r\n{v}\r\n", v.len())
        });
    }
);

/// Redis's reply to a write refused at `--maxmemory`.
const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.";

/// The architectures the `--maxmemory` tests run on: one loop, a pool of
/// threads sharing the store, and forking ones whose store is a process
/// of its own (so the memory counted is the store process's).
macro_rules! maxmemory_tests {
    ($name:ident, |$arch:ident| $body:block) => {
        arch_tests!(
            $name,
            [
                reactor,
                thread_pool,
                multi_reactor,
                prefork_reactor,
                process_per_connection
            ],
            |$arch| $body
        );
    };
}

/// The bytes of each value the `--maxmemory` tests write.
const VALUE_BYTES: usize = 4000;

/// Sends `SET key{i} <value>` for `keys`, pipelined, and returns each
/// reply line.
fn set_batch(
    server: &Server,
    c: &mut TcpStream,
    keys: std::ops::Range<usize>,
    value: &str,
) -> Vec<String> {
    let mut request = String::new();
    for i in keys.clone() {
        request.push_str(&resp(&["SET", &format!("key{i}"), value]));
    }
    c.write_all(request.as_bytes()).expect("send");
    keys.map(|_| line(server, c)).collect()
}

/// A field of `INFO` (any section) as a number.
fn info_number(server: &Server, c: &mut TcpStream, section: &str, field: &str) -> u64 {
    c.write_all(resp(&["INFO", section]).as_bytes())
        .expect("send");
    let info = bulk(server, c).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| server.fail(&format!("no {field} in {info:?}")))
}

maxmemory_tests!(
    noeviction_refuses_writes_at_maxmemory_and_serves_reads_and_deletes,
    |arch| {
        const MAX: u64 = 2 << 20;
        let server = serve(
            arch,
            &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"],
        );
        let mut c = server.connect();
        let value = "v".repeat(VALUE_BYTES);
        // Fill until a write is refused (16 MB would be 8 times the limit).
        let mut written = 0;
        let mut refused = false;
        while !refused && written < 4000 {
            for reply in set_batch(&server, &mut c, written..written + 16, &value) {
                if reply == "+OK" && !refused {
                    written += 1;
                } else if reply == OOM {
                    refused = true;
                } else {
                    server.fail(&format!("a SET answered {reply:?}"));
                }
            }
        }
        if !refused {
            server.fail(&format!(
                "{written} values of {VALUE_BYTES} bytes were never refused"
            ));
        }
        // The limit counts what the keys take, give or take the server's
        // own few hundred kilobytes.
        let stored = (written * VALUE_BYTES) as u64;
        assert!(
            stored > MAX / 2 && stored < MAX,
            "{arch}: {written} values stored under a limit of {MAX}"
        );
        assert!(info_number(&server, &mut c, "memory", "used_memory") > MAX);
        // Reads still work, writes stay refused.
        let want = format!("${VALUE_BYTES}\r\n{value}\r\n");
        expect(&server, &mut c, &resp(&["GET", "key0"]), &want);
        expect(
            &server,
            &mut c,
            &resp(&["SET", "extra", "x"]),
            &format!("{OOM}\r\n"),
        );
        // Deleting keys frees room: after a few DELs a SET goes through.
        let mut deleted = 0;
        loop {
            let keys: Vec<String> = (deleted..deleted + 8).map(|i| format!("key{i}")).collect();
            let mut del = vec!["DEL"];
            del.extend(keys.iter().map(String::as_str));
            expect(&server, &mut c, &resp(&del), ":8\r\n");
            deleted += 8;
            c.write_all(resp(&["SET", "extra", "x"]).as_bytes())
                .expect("send");
            match line(&server, &mut c).as_str() {
                "+OK" => break,
                r if r == OOM => {}
                r => server.fail(&format!("SET after DEL answered {r:?}")),
            }
            if deleted > written / 2 {
                server.fail(&format!(
                    "deleting {deleted} of {written} keys made no room"
                ));
            }
        }
        expect(&server, &mut c, &resp(&["GET", "extra"]), "$1\r\nx\r\n");
    }
);

maxmemory_tests!(
    allkeys_lru_evicts_idle_keys_to_stay_near_maxmemory,
    |arch| {
        const MAX: u64 = 2 << 20;
        // Before each command the server evicts until it is back under the
        // limit, so what INFO sees above it is what that command holds: the
        // batch of pipelined requests buffered (16 of 4 KB, in a buffer of
        // at most twice that) and INFO's own few kilobytes. A quarter of a
        // megabyte covers that with room to spare.
        const MARGIN: u64 = 256 << 10;
        let server = serve(
            arch,
            &["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
        );
        let mut c = server.connect();
        let value = "v".repeat(VALUE_BYTES);
        expect(&server, &mut c, &resp(&["SET", "hot", &value]), "+OK\r\n");
        let read_hot = |c: &mut TcpStream, when: &str| {
            c.write_all(resp(&["GET", "hot"]).as_bytes()).expect("send");
            let got = bulk(&server, c);
            if got.as_deref() != Some(value.as_str()) {
                server.fail(&format!(
                    "{when}: the key read all along is gone ({:?} bytes)",
                    got.map(|v| v.len())
                ));
            }
        };
        // Write five times the limit, reading one key between batches.
        let total = 2500;
        for batch in 0..total / 16 {
            for reply in set_batch(&server, &mut c, batch * 16..batch * 16 + 16, &value) {
                if reply != "+OK" {
                    server.fail(&format!("batch {batch}: a SET answered {reply:?}"));
                }
            }
            read_hot(&mut c, &format!("after batch {batch}"));
            if batch % 16 == 0 {
                let used = info_number(&server, &mut c, "memory", "used_memory");
                assert!(
                    used <= MAX + MARGIN,
                    "{arch}: used_memory {used} after batch {batch}"
                );
            }
        }
        let written = (total / 16) * 16 + 1;
        c.write_all(resp(&["DBSIZE"]).as_bytes()).expect("send");
        let reply = line(&server, &mut c);
        let keys: u64 = reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| server.fail(&format!("DBSIZE answered {reply:?}")));
        assert!(
            keys > 100 && keys < written as u64 / 3,
            "{arch}: {keys} keys left of {written} written"
        );
        let evicted = info_number(&server, &mut c, "stats", "evicted_keys");
        assert_eq!(evicted + keys, written as u64, "{arch}");
        let used = info_number(&server, &mut c, "memory", "used_memory");
        assert!(used <= MAX + MARGIN, "{arch}: used_memory {used}");
        assert!(info_number(&server, &mut c, "memory", "used_memory_peak") >= used);
        // The key read all along is still there; the first written are not.
        read_hot(&mut c, "at the end");
        expect(
            &server,
            &mut c,
            &resp(&["EXISTS", "key0", "key1", "key2"]),
            ":0\r\n",
        );
    }
);

#[test]
fn bad_maxmemory_flags_are_usage_errors() {
    for (flag, value, words) in [
        ("--maxmemory", "12parsecs", "is not a memory size"),
        ("--maxmemory", "1.5mb", "is not a memory size"),
        ("--maxmemory-policy", "lru", "possible values"),
    ] {
        let out = std::process::Command::new(muse_bin())
            .args([
                "serve",
                "kv",
                "--arch",
                "reactor",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg(format!("{flag}={value}"))
            .output()
            .expect("run muse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(words) && err.contains(flag),
            "{flag} {value}: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    }
}
