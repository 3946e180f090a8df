//! Where a server listens, beyond `HOST:PORT`: `--listen unix:PATH` (a
//! socket file with `--unix-mode`, a stale file replaced, a live one
//! refused, the file removed at exit) for echo, kv and http under every
//! kind of architecture; ftp refusing it; and inherited listening sockets,
//! from systemd's socket activation (`systemd-socket-activate`, as
//! `LISTEN_FDS` and as `--listen fd://3`).

#[macro_use]
mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Connects to the socket file at `path`, with timeouts.
fn unix_connect(server: &Server, path: &Path) -> UnixStream {
    let s = UnixStream::connect(path)
        .unwrap_or_else(|e| server.fail(&format!("connect {}: {e}", path.display())));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends `request` and reads until `want` has arrived (or fails).
fn exchange(server: &Server, s: &mut UnixStream, request: &[u8], want: &[u8]) -> Vec<u8> {
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => server.fail(&format!(
                "read: {e}; got {:?}",
                String::from_utf8_lossy(&got)
            )),
        }
    }
    if !got.windows(want.len()).any(|w| w == want) {
        server.fail(&format!(
            "wanted {:?} in {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        ));
    }
    got
}

arch_tests!(
    a_unix_listener_serves_echo_kv_and_http,
    [
        serial,
        process_per_connection,
        thread_pool,
        prefork,
        reactor,
        prefork_reactor,
        multi_reactor,
        async_
    ],
    |arch| {
        let dir = TempRoot::new("unix-listen", arch);
        dir.write("index.html", b"<p>over a socket file</p>\n");
        for (protocol, request, want) in [
            ("echo", &b"hello, unix\n"[..], &b"hello, unix\n"[..]),
            ("kv", b"SET k v\r\nGET k\r\n", b"+OK\r\n$1\r\nv\r\n"),
            (
                "http",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"<p>over a socket file</p>\n",
            ),
        ] {
            let path = dir.path(&format!("{protocol}.sock"));
            let spec = format!("unix:{}", path.display());
            let mut extra = vec!["--listen", &spec, "--unix-mode", "600"];
            if protocol == "http" {
                extra.extend(["--root", dir.root_str()]);
            }
            let mut server = Server::start(protocol, arch, &with_sizing(arch, &extra));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{arch} {protocol}");
            let mut s = unix_connect(&server, &path);
            exchange(&server, &mut s, request, want);
            drop(s);
            server.signal(libc::SIGTERM);
            match server.wait_exit(Duration::from_secs(20)) {
                Some(status) if status.success() => {}
                other => server.fail(&format!("{protocol}: exit after SIGTERM: {other:?}")),
            }
            assert!(!path.exists(), "{arch} {protocol}: the socket file stays");
        }
    }
);

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let dir = TempRoot::new("unix-stale", "echo");
    let path = dir.path("echo.sock");
    // A socket file nobody listens on any more (a server killed).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let spec = format!("unix:{}", path.display());
    let server = Server::start("echo", "reactor", &["--listen", &spec]);
    let mut s = unix_connect(&server, &path);
    exchange(&server, &mut s, b"ping", b"ping");
    // A second server on the same, live, file is refused, and leaves it.
    let second = run_cli(&["serve", "echo", "--arch", "reactor", "--listen", &spec]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        second.stderr.contains("another server listens there"),
        "{second:?}"
    );
    exchange(&server, &mut s, b"still", b"still");
    // A path that is not a socket is never removed.
    let file = dir.path("plain");
    std::fs::write(&file, b"data").unwrap();
    let third = run_cli(&[
        "serve",
        "echo",
        "--listen",
        &format!("unix:{}", file.display()),
    ]);
    assert_eq!(third.status.code(), Some(1), "{third:?}");
    assert!(third.stderr.contains("is not a socket"), "{third:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

#[test]
fn a_port_in_use_is_refused_by_the_architectures_that_share_it() {
    // They bind with SO_REUSEPORT, which would join another server's
    // listener on the port (the kernel splitting clients between them)
    // and take one address given twice.
    let server = Server::start("echo", "reactor", &[]);
    let taken = server.addr().to_string();
    for arch in ["multi-reactor", "multi-uring", "prefork-reactor"] {
        if arch == "multi-uring" && cfg!(uring_unavailable) {
            continue;
        }
        let mut args = vec!["serve", "echo", "--arch", arch, "--listen", &taken];
        if arch == "prefork-reactor" {
            args.extend(["--accept", "reuseport"]);
        }
        let out = run_cli(&args);
        assert_eq!(out.status.code(), Some(1), "{arch}: {out:?}");
        assert!(out.stderr.contains("cannot listen on"), "{arch}: {out:?}");
        assert!(!out.stdout.contains("listening on"), "{arch}: {out:?}");
    }
    let mut conn = server.connect();
    assert_eq!(try_echo(&mut conn, b"still mine").or_fail(&server), ());
    // One free port given twice.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().to_string();
    drop(free);
    let out = run_cli(&[
        "serve",
        "echo",
        "--arch",
        "multi-reactor",
        "--listen",
        &port,
        "--listen",
        &port,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot listen on"), "{out:?}");
}

#[test]
fn ftp_refuses_a_unix_listener() {
    let out = run_cli(&["serve", "ftp", "--listen", "unix:/tmp/muse-never.sock"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("need IP addresses"), "{out:?}");
    assert!(!out.stdout.contains("listening on"));
    assert!(!Path::new("/tmp/muse-never.sock").exists());
    // Nor a TLS one (FTPS).
    let dir = TempRoot::new("ftps-unix", "ftp");
    let out = run_cli(&[
        "serve",
        "ftp",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "unix:/tmp/muse-never-tls.sock",
        "--tls-cert",
        dir.root_str(),
        "--tls-key",
        dir.root_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("need IP addresses"), "{out:?}");
    assert!(!out.stdout.contains("listening on"));
    assert!(!Path::new("/tmp/muse-never-tls.sock").exists());
}

/// Runs `muse serve echo ARGS` under `systemd-socket-activate` on a free
/// loopback port; the first connection starts muse, which must serve it
/// and later ones on the inherited socket.
fn socket_activated(arch: &str, args: &[&str]) {
    socket_activated_named(arch, args, None)
}

/// [`socket_activated`], the socket named `fdname` (`LISTEN_FDNAMES`),
/// which muse must log.
fn socket_activated_named(arch: &str, args: &[&str], fdname: Option<&str>) {
    // A free port: bound and released (the race with other tests is a
    // few microseconds long).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut activate = Command::new("systemd-socket-activate");
    if let Some(name) = fdname {
        activate.arg(format!("--fdname={name}"));
    }
    let mut child = activate
        .args(["-l", &listen, muse_bin(), "serve", "echo", "--arch", arch])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package)");
    let pid = child.id() as i32;
    let guard = KillOnDrop(pid);
    // Wait for it to listen (it binds before anything else), then connect:
    // that connection is what starts muse.
    let mut first = None;
    for _ in 0..200 {
        if let Ok(s) = std::net::TcpStream::connect(&listen) {
            first = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut first = first.expect("systemd-socket-activate never listened");
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("listening on {listen} (echo, {arch})"),
        "{args:?}"
    );
    first.write_all(b"first").unwrap();
    let mut got = [0u8; 5];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
    for i in 0..4 {
        let mut c = std::net::TcpStream::connect(&listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let msg = format!("n{i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
    }
    drop(first);
    // muse is the process systemd-socket-activate became: TERM stops it.
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    if let Some(name) = fdname {
        let want = format!("socket activation: fd 3 named \"{name}\"");
        assert!(stderr.contains(&want), "{want:?} not in {stderr:?}");
    }
}

/// Kills the process if the test fails before it stops it.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill on a pid this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn systemd_socket_activation_serves_on_the_inherited_socket() {
    socket_activated("reactor", &[]);
    socket_activated("prefork", &["--workers", "2"]);
    socket_activated_named("thread-pool", &[], Some("web"));
}

#[test]
fn an_inherited_socket_named_by_fd() {
    socket_activated("multi-reactor", &["--threads", "2", "--listen", "fd://3"]);
    socket_activated("thread-pool", &["--threads", "4", "--listen", "fd://3"]);
}

#[test]
fn a_listen_fds_that_is_not_a_count_is_an_error_not_a_default_port() {
    // `exec` keeps the shell's pid, so LISTEN_PID names the server.
    for value in ["abc", "-1", "99999999999", "2147483647", "1025"] {
        let out = Command::new("sh")
            .args([
                "-c",
                r#"LISTEN_PID=$$ LISTEN_FDS="$1" exec "$0" serve echo --arch reactor"#,
                muse_bin(),
                value,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "LISTEN_FDS={value}: {stderr}");
        assert!(
            stderr.contains("LISTEN_FDS"),
            "LISTEN_FDS={value}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening on"),
            "LISTEN_FDS={value}"
        );
    }
}
