//! Harness for muse's integration tests: tests are clients.
//!
//! [`Server`] starts the real `muse` binary in its own process group, reads its
//! `listening on ADDR` lines and talks to it over loopback TCP. Dropping a
//! `Server` SIGKILLs the whole group and reaps it, so no test leaves a process
//! or a bound port behind, even when it panics.
//!
//! [`arch_tests!`] turns one test body into one `#[test]` per architecture
//! (`name::reactor`, `name::prefork_threads`, ...), so a failure names the
//! architecture it happened under.
//!
//! Every wait here is bounded and fails with a message that includes the
//! server's stderr; nothing asserts that anything was fast.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Every `--arch` name, in the order `muse archs` documents them.
pub const ARCHS: [&str; 14] = [
    "serial",
    "process-per-connection",
    "thread-per-connection",
    "prefork",
    "thread-pool",
    "prefork-threads",
    "reactor",
    "prefork-reactor",
    "multi-reactor",
    "reactor-pool",
    "async",
    "uring",
    "multi-uring",
    "prefork-uring",
];

/// The architectures on io_uring. Where the build found io_uring
/// unavailable (see `build.rs`), their tests are reported as ignored.
pub const URING_FAMILY: [&str; 3] = ["uring", "multi-uring", "prefork-uring"];

/// Architectures with a master process supervising forked workers.
pub const PREFORK_FAMILY: [&str; 4] = [
    "prefork",
    "prefork-threads",
    "prefork-reactor",
    "prefork-uring",
];

/// How long a server may take to print its `listening on` lines.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Read and write timeout on every client socket: a server that stops
/// answering fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit once it has been told to.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long processes may take to appear or vanish (workers, children).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);
/// Step between two looks at something we are polling for.
pub const POLL_STEP: Duration = Duration::from_millis(10);

/// Most of the server's stderr kept for failure messages (the tail).
const STDERR_KEEP: usize = 64 * 1024;

/// Runs one test body under every architecture, or under the listed ones.
///
/// ```ignore
/// arch_tests!(echo_once, |arch| { let server = Server::serve_echo(arch, &[]); ... });
/// arch_tests!(workers, [prefork, prefork_threads], |arch| { ... });
/// ```
///
/// Each expands to `mod echo_once { #[test] fn serial() ...; #[test] fn reactor() ... }`.
/// Test names are the architecture with `-` written `_` (`async` is `async_`,
/// since `async` is a keyword).
macro_rules! arch_tests {
    ($name:ident, |$arch:ident| $body:block) => {
        arch_tests!(
            $name,
            [
                serial,
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
            |$arch| $body
        );
    };
    ($name:ident, [$($which:ident),+ $(,)?], |$arch:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($arch: &str) $body

            $(
                arch_test_fn!($which);
            )+
        }
    };
}

/// One test of [`arch_tests!`]: the io_uring architectures' are ignored
/// (with the reason `build.rs` printed) where io_uring is unavailable.
macro_rules! arch_test_fn {
    (uring) => {
        #[test]
        #[cfg_attr(
            uring_unavailable,
            ignore = "io_uring is unavailable here (see build.rs)"
        )]
        fn uring() {
            run("uring")
        }
    };
    (multi_uring) => {
        #[test]
        #[cfg_attr(
            uring_unavailable,
            ignore = "io_uring is unavailable here (see build.rs)"
        )]
        fn multi_uring() {
            run("multi-uring")
        }
    };
    (prefork_uring) => {
        #[test]
        #[cfg_attr(
            uring_unavailable,
            ignore = "io_uring is unavailable here (see build.rs)"
        )]
        fn prefork_uring() {
            run("prefork-uring")
        }
    };
    ($which:ident) => {
        #[test]
        fn $which() {
            run(&$crate::common::arch_name(stringify!($which)))
        }
    };
}

/// `prefork_threads` → `prefork-threads`, `async_` → `async`.
pub fn arch_name(test_name: &str) -> String {
    let name = test_name.trim_end_matches('_').replace('_', "-");
    assert!(
        ARCHS.contains(&name.as_str()),
        "unknown architecture {name}"
    );
    name
}

/// Worker and thread counts that keep each architecture small and quick.
/// Pairs whose flag a test already passes are left out.
fn sizing(arch: &str) -> &'static [(&'static str, &'static str)] {
    match arch {
        "prefork" | "prefork-reactor" | "prefork-uring" => &[("--workers", "4")],
        "prefork-threads" => &[("--workers", "2"), ("--threads", "4")],
        "thread-pool" => &[("--threads", "8")],
        "reactor-pool" => &[("--threads", "4")],
        "multi-reactor" | "multi-uring" => &[("--threads", "2")],
        _ => &[],
    }
}

/// Path of the binary under test.
pub fn muse_bin() -> &'static str {
    env!("CARGO_BIN_EXE_muse")
}

/// Orphaned server processes (workers whose master was killed) are
/// reparented to the nearest subreaper, else to PID 1. PID 1 does not reap
/// zombies in every container, so the test process makes itself a subreaper
/// and reaps, by PID, the orphans of the process group it is looking at.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    });
}

/// A running `muse serve` process group.
pub struct Server {
    arch: String,
    child: Child,
    pid: i32,
    addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Server {
    /// `muse serve echo --arch ARCH` with the architecture's small sizing and
    /// `extra` (which should normally not repeat a sizing flag: those are
    /// dropped from the sizing if present).
    pub fn serve_echo(arch: &str, extra: &[&str]) -> Server {
        Server::start("echo", arch, &with_sizing(arch, extra))
    }

    /// Like [`Server::serve_echo`], with `RLIMIT_NOFILE` (soft and hard) set to
    /// `limit` in the server process before it runs.
    pub fn serve_echo_with_fd_limit(arch: &str, extra: &[&str], limit: u64) -> Server {
        Server::launch("echo", arch, &with_sizing(arch, extra), Some(limit), &[])
    }

    /// `muse serve PROTOCOL --arch ARCH EXTRA...`; adds `--listen 127.0.0.1:0`
    /// if `extra` has no `--listen`. Returns once the server has printed one
    /// `listening on` line per listener.
    pub fn start(protocol: &str, arch: &str, extra: &[&str]) -> Server {
        Server::launch(protocol, arch, extra, None, &[])
    }

    /// Like [`Server::start`], with `env` added to the server's environment.
    pub fn start_with_env(
        protocol: &str,
        arch: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::launch(protocol, arch, extra, None, env)
    }

    fn launch(
        protocol: &str,
        arch: &str,
        extra: &[&str],
        fd_limit: Option<u64>,
        env: &[(&str, &str)],
    ) -> Server {
        become_subreaper();
        let mut args: Vec<String> = vec![
            "serve".into(),
            protocol.into(),
            "--arch".into(),
            arch.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut listeners = extra
            .iter()
            .filter(|a| **a == "--listen" || **a == "--tls-listen")
            .count();
        if !extra.contains(&"--listen") {
            args.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
            listeners += 1;
        }

        let mut cmd = Command::new(muse_bin());
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(env.iter().copied())
            .process_group(0);
        if let Some(limit) = fd_limit {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            // SAFETY: the closure only calls setrlimit, which is
            // async-signal-safe, on a value it owns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", muse_bin(), args.join(" ")));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        capture_stderr(
            child.stderr.take().expect("stderr is piped"),
            Arc::clone(&stderr),
        );

        // The reader keeps draining stdout after startup, so the server never
        // blocks on (or is killed by) a full or closed pipe.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = lines_tx.send(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        });

        let pid = child.id() as i32;
        let mut server = Server {
            arch: arch.to_string(),
            child,
            pid,
            addrs: Vec::new(),
            stderr,
            status: None,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut stdout_seen = String::new();
        // Every `listening on` line counts; those naming an IP address
        // (not `unix:PATH`) are kept for `connect`.
        let mut announced = 0;
        while announced < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    stdout_seen.push_str(&line);
                    if line.starts_with("listening on ") {
                        announced += 1;
                    }
                    if let Some(addr) = parse_listening_line(&line) {
                        server.addrs.push(addr);
                    }
                }
                Err(RecvTimeoutError::Timeout) => server.fail(&format!(
                    "`muse {}` printed {} of {listeners} `listening on` lines within {:?}; stdout so far: {stdout_seen:?}",
                    args.join(" "),
                    announced,
                    STARTUP_TIMEOUT
                )),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit(Duration::from_secs(5));
                    server.fail(&format!(
                        "`muse {}` closed stdout before listening (exit: {status:?}); stdout: {stdout_seen:?}",
                        args.join(" ")
                    ))
                }
            }
        }
        server
    }

    /// The architecture this server runs.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address, in the order the server printed them.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The server's (master's) pid, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What the server wrote to stderr so far (its last 64 KiB).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Fails the test with `msg`, naming the architecture and showing stderr.
    pub fn fail(&self, msg: &str) -> ! {
        // Give the stderr reader a moment to catch up with the last lines.
        thread::sleep(Duration::from_millis(50));
        let group: Vec<String> = self
            .group_processes()
            .into_iter()
            .map(describe_process)
            .collect();
        panic!(
            "[arch {}] {msg}\nserver pid {}; its process group now: [{}]\n----- muse stderr (tail) -----\n{}\n----- end of stderr -----",
            self.arch,
            self.pid,
            group.join("; "),
            self.stderr()
        )
    }

    /// Sends `sig` to the server (the master, not its group).
    pub fn signal(&self, sig: libc::c_int) {
        assert!(
            self.status.is_none(),
            "signal to a server that was already reaped"
        );
        // SAFETY: kill takes plain integers; the pid is our unreaped child.
        let rc = unsafe { libc::kill(self.pid, sig) };
        if rc != 0 {
            self.fail(&format!(
                "kill({}, {sig}): {}",
                self.pid,
                io::Error::last_os_error()
            ));
        }
    }

    /// Sends `sig` to the server's whole process group (master, workers,
    /// and any process they started).
    pub fn signal_group(&self, sig: libc::c_int) {
        assert!(
            self.status.is_none(),
            "signal to a server that was already reaped"
        );
        // SAFETY: kill takes plain integers; the group is our child's own.
        let rc = unsafe { libc::kill(-self.pid, sig) };
        if rc != 0 {
            self.fail(&format!(
                "kill(-{}, {sig}): {}",
                self.pid,
                io::Error::last_os_error()
            ));
        }
    }

    /// Waits up to `timeout` for the server to exit and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return self.status;
                }
                Ok(None) => {}
                Err(e) => self.fail(&format!("waitpid({}): {e}", self.pid)),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_STEP);
        }
    }

    /// Fails the test if the server has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.wait_exit(Duration::ZERO) {
            self.fail(&format!("server exited unexpectedly: {status}"));
        }
    }

    /// Pids whose parent is the server (zombies included: a child the
    /// server has not reaped yet is still its child).
    pub fn children(&self) -> Vec<i32> {
        all_processes()
            .into_iter()
            .filter(|p| p.ppid == self.pid)
            .map(|p| p.pid)
            .collect()
    }

    /// Pids in the server's process group, the server itself included until
    /// it is reaped. Zombies count. Orphans of the group that were reparented
    /// to this test process and have exited are reaped first (we are their
    /// parent now), so what remains is really left over.
    pub fn group_processes(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        for p in all_processes() {
            if p.pgrp == self.pid && p.ppid == me && p.pid != self.pid && p.state == 'Z' {
                // SAFETY: waitpid on a specific pid that is our zombie child;
                // a null status pointer is allowed.
                unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
        }
        all_processes()
            .into_iter()
            .filter(|p| p.pgrp == self.pid)
            .map(|p| p.pid)
            .collect()
    }

    /// Polls until no process of the server's group remains (the server
    /// must have been reaped with [`Server::wait_exit`] first).
    pub fn assert_group_gone(&self, timeout: Duration) {
        let gone = wait_for(timeout, || self.group_processes().is_empty().then_some(()));
        if gone.is_none() {
            let left: Vec<String> = self
                .group_processes()
                .into_iter()
                .map(describe_process)
                .collect();
            self.fail(&format!(
                "processes of the server's group still exist {timeout:?} after it exited: {}",
                left.join("; ")
            ));
        }
    }

    /// Polls until the server has exactly `n` children, and returns them.
    pub fn wait_for_children(&self, n: usize, why: &str) -> Vec<i32> {
        match wait_for(PROCESS_TIMEOUT, || {
            let kids = self.children();
            (kids.len() == n).then_some(kids)
        }) {
            Some(kids) => kids,
            None => {
                let kids: Vec<String> = self.children().into_iter().map(describe_process).collect();
                self.fail(&format!(
                    "{why}: expected {n} children within {PROCESS_TIMEOUT:?}, have {}: {}",
                    kids.len(),
                    kids.join("; ")
                ))
            }
        }
    }

    /// Connects to the first listener.
    pub fn connect(&self) -> TcpStream {
        self.connect_to(self.addr())
    }

    /// Connects to `addr`, failing the test with stderr on error.
    pub fn connect_to(&self, addr: SocketAddr) -> TcpStream {
        try_connect(addr).unwrap_or_else(|e| self.fail(&e))
    }

    /// Sends `msg` and expects exactly `msg` back.
    pub fn echo(&self, stream: &mut TcpStream, msg: &[u8]) {
        if let Err(e) = try_echo(stream, msg) {
            self.fail(&e);
        }
    }

    /// Fails the test, saying `what`, unless the server lets go of
    /// `client`'s connection within `within`: no socket of the server's is
    /// left for it (what it had queued is the kernel's to deliver or drop).
    pub fn expect_let_go(&self, client: &TcpStream, within: Duration, what: &str) {
        let (port, client) = (
            self.addr().port(),
            client.local_addr().expect("client local address").port(),
        );
        let let_go = wait_for(within, || {
            socket_inodes(port, client).is_empty().then_some(())
        });
        if let_go.is_none() {
            self.fail(what);
        }
    }

    /// The pid of the server process holding the server side of `client`'s
    /// connection (the server itself or one of its children). The connection
    /// must have been accepted already (e.g. after one echo).
    pub fn serving_process(&self, client: &TcpStream) -> i32 {
        let server_port = self.addr().port();
        let client_port = client.local_addr().expect("client local address").port();
        let found = wait_for(PROCESS_TIMEOUT, || {
            let mut candidates = self.children();
            candidates.push(self.pid);
            socket_inodes(server_port, client_port)
                .into_iter()
                .find_map(|inode| pids_holding_socket(inode, &candidates).into_iter().next())
        });
        found.unwrap_or_else(|| {
            self.fail(&format!(
                "no server process holds the server side of the connection from port {client_port} to port {server_port}"
            ))
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill takes plain integers; our unreaped child's pid is
            // its group's id and cannot have been reused.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.status = Some(status);
            }
        } else if !self.group_processes().is_empty() {
            // The group still has members, so its id is still theirs.
            // SAFETY: as above.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        // Reap orphans of the group that were reparented to us.
        let _ = wait_for(Duration::from_secs(5), || {
            self.group_processes().is_empty().then_some(())
        });
    }
}

fn capture_stderr(mut stderr: ChildStderr, sink: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = sink.lock().unwrap();
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEEP {
                        let excess = kept.len() - STDERR_KEEP;
                        kept.drain(..excess);
                    }
                }
            }
        }
    });
}

/// `listening on 127.0.0.1:PORT [more words]` → the address.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Adds the architecture's sizing flags that `extra` does not set itself.
pub fn with_sizing<'a>(arch: &str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&'a str> = Vec::new();
    for (flag, value) in sizing(arch) {
        if !extra.contains(flag) {
            args.extend([*flag, *value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// Polls `probe` every [`POLL_STEP`] until it returns `Some` or `timeout`
/// passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_STEP);
    }
}

// ---------------------------------------------------------------- clients

/// Connects with read and write timeouts of [`IO_TIMEOUT`] and Nagle off.
pub fn try_connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket options on connection to {addr}: {e}"))?;
    Ok(stream)
}

/// Reads exactly `n` bytes, or says how far it got.
pub fn try_read_exact(stream: &mut TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(format!(
                    "connection closed after {got} of {n} expected bytes"
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "no data for {IO_TIMEOUT:?} after {got} of {n} expected bytes"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "read failed after {got} of {n} expected bytes: {e}"
                ))
            }
        }
    }
    Ok(buf)
}

/// Sends `msg` and expects exactly `msg` back.
pub fn try_echo(stream: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    stream
        .write_all(msg)
        .map_err(|e| format!("sending {} bytes: {e}", msg.len()))?;
    let back = try_read_exact(stream, msg.len())?;
    match first_difference(msg, &back) {
        None => Ok(()),
        Some(at) => Err(format!(
            "echo of {} bytes differs at byte {at}: sent {:#04x}, got {:#04x}",
            msg.len(),
            msg[at],
            back[at]
        )),
    }
}

/// Reads until EOF.
pub fn try_read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "no EOF within {IO_TIMEOUT:?} (after {} bytes)",
                    out.len()
                ))
            }
            Err(e) => return Err(format!("read failed after {} bytes: {e}", out.len())),
        }
    }
}

/// Expects the server to close `stream` without echoing anything: EOF or
/// a reset. Sends a few bytes first, so that a connection the server wrongly
/// serves shows itself by echoing them.
pub fn try_expect_closed(stream: &mut TcpStream) -> Result<(), String> {
    let _ = stream.write_all(b"are you there?\n");
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(k) => {
                return Err(format!(
                    "connection was served: read {k} bytes ({:?})",
                    String::from_utf8_lossy(&buf[..k])
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "connection neither closed nor answered within {IO_TIMEOUT:?}"
                ))
            }
            Err(e) if is_reset(&e) => return Ok(()),
            Err(e) => return Err(format!("unexpected read error: {e}")),
        }
    }
}

/// Half-closes our side: the server sees EOF.
pub fn half_close(stream: &TcpStream) {
    stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// `len` pseudo-random bytes from `seed` (xorshift), so payloads have no
/// short period that could hide reordering.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// True if this machine can bind the IPv6 loopback.
pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------- /proc

/// The fields of `/proc/PID/stat` the tests need.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Parses `/proc/PID/stat`; `None` if the process is gone.
pub fn process_info(pid: i32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcessInfo {
        pid,
        comm,
        state,
        ppid,
        pgrp,
    })
}

/// Every process on the machine (thread-group leaders only).
pub fn all_processes() -> Vec<ProcessInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process_info)
        .collect()
}

/// `pid (comm) state S ppid P` for failure messages.
pub fn describe_process(pid: i32) -> String {
    match process_info(pid) {
        Some(p) => {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            format!(
                "{} ({}) state {} ppid {} wchan {wchan}",
                p.pid, p.comm, p.state, p.ppid
            )
        }
        None => format!("{pid} (gone)"),
    }
}

/// Inodes of the TCP sockets (IPv4 and IPv6) whose local port is
/// `local_port` and remote port is `remote_port`; unaccepted sockets
/// (inode 0) are left out.
pub fn socket_inodes(local_port: u16, remote_port: u16) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port(fields[1]) == Some(local_port) && port(fields[2]) == Some(remote_port) {
                if let Ok(inode) = fields[9].parse::<u64>() {
                    if inode != 0 {
                        inodes.insert(inode);
                    }
                }
            }
        }
    }
    inodes
}

/// Which of `candidates` have `socket:[inode]` open.
pub fn pids_holding_socket(inode: u64, candidates: &[i32]) -> Vec<i32> {
    let target = format!("socket:[{inode}]");
    candidates
        .iter()
        .copied()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .any(|link| link.to_str() == Some(target.as_str()))
        })
        .collect()
}

// ---------------------------------------------------------------- one-shot CLI runs

/// What a finished `muse` command produced.
#[derive(Debug)]
pub struct CliRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `muse ARGS` to completion (bounded by [`EXIT_TIMEOUT`]; on timeout
/// its process group is killed and the test fails).
pub fn run_cli(args: &[&str]) -> CliRun {
    run_cli_with(args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_with(args: &[&str], env: &[(&str, &str)]) -> CliRun {
    become_subreaper();
    let mut child = Command::new(muse_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start muse {}: {e}", args.join(" ")));
    let read_all = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as i32;
    let status = wait_for(EXIT_TIMEOUT, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        // SAFETY: kill takes plain integers; the child is unreaped.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.wait();
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        panic!(
            "`muse {}` did not exit within {EXIT_TIMEOUT:?}\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
    };
    // Anything the command left in its group must not keep our pipes open.
    // Only signal the group while it has members: once it has none, its id
    // may be reused by another test's server.
    if all_processes().iter().any(|p| p.pgrp == pid) {
        // SAFETY: as above; the group still exists, so its id is not reused.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    CliRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A fresh temp directory `base` holding a server's `root` (and, beside it,
/// whatever a test must keep out of the server's reach), removed when
/// dropped.
pub struct TempRoot {
    pub base: std::path::PathBuf,
    pub root: std::path::PathBuf,
}

impl TempRoot {
    /// `muse-PREFIX-test-PID-N-TAG` under the temp directory, empty.
    pub fn new(prefix: &str, tag: &str) -> TempRoot {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!(
            "muse-{prefix}-test-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        TempRoot { base, root }
    }

    pub fn root_str(&self) -> &str {
        self.root.to_str().expect("temp dir is UTF-8")
    }

    /// A path under the root (`""`: the root).
    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Writes a file under the root, making its directories.
    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(rel)).ok()
    }

    /// A sparse file of `len` zero bytes.
    pub fn sparse(&self, rel: &str, len: u64) {
        let f = std::fs::File::create(self.path(rel)).unwrap();
        f.set_len(len).unwrap();
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Turns a client error into a test failure that shows the server's stderr.
pub trait OrFail<T> {
    fn or_fail(self, server: &Server) -> T;
}

impl<T> OrFail<T> for Result<T, String> {
    fn or_fail(self, server: &Server) -> T {
        self.unwrap_or_else(|e| server.fail(&e))
    }
}
