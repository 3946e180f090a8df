//! Hot restart (`SIGUSR2`): under a bounded load loop of clients, the
//! server starts its successor on the same sockets, drains and exits, and
//! not one connection is refused nor one request fails; echo under every
//! architecture, http and kv under a spread of them, kv's data surviving
//! through its data directory. A successor that cannot start leaves the old
//! server serving.

#[macro_use]
mod common;
#[path = "common/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use load::*;

arch_tests!(echo_survives_a_hot_restart_under_load, |arch| {
    let mut server = Server::serve_echo(arch, &[]);
    let new_pid = restart_under_load(&mut server, echo_request);
    // The new server is the one answering now.
    echo_request(server.addr(), 0).unwrap_or_else(|e| server.fail(&e));
    assert!(new_pid != server.pid());
});

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
