//! Tests of the session/driver seam under every driver: a fake protocol
//! ("courier") asks its driver for side channels, active and passive, and
//! streams files through them (plain, converted, received, aborted), asks
//! for a computation that blocks until the test lets it go, and panics on
//! request. Each test runs the real architectures in this
//! process, on 127.0.0.1:0, with a shutdown switch the test flips itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::archs::Arch;
use crate::server::{Config, Server};
use crate::session::{
    ChannelEvent, Computed, ConnInfo, Output, Protocol, Request, Session, Transform, Work,
};
use crate::shutdown::Shutdown;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The fake protocol: line commands on the control connection.
///
/// - `SEND PORT [END]` / `SENDA PORT [END]`: connect to the client's PORT
///   and send the source file (as is / LF→CRLF), up to byte END if given;
///   reply `DONE n`.
/// - `PASV`: listen; reply `PORT p`; send the source file once connected.
/// - `RECV`: listen; reply `PORT p`; receive into `received`; reply `GOT n`.
/// - `BIG`: listen; reply `PORT p`; send the (large) big file.
/// - `ABORT`: abort the channel; reply `ABORTED n urgent=BOOL` or `CLOSED`.
/// - `WORK`: a computation that says it started, then waits (at most 30 s)
///   until the test lets it go; reply `WORKED true` (`false`: it timed out).
/// - `CHUNKS N`: listen; reply `PORT p`; send N chunks of [`CHUNK`] bytes
///   (chunk `i` is all `b'a' + i % 26`), each made by a computation once
///   the previous one is sent (`SendBytes` with `more`), as FTP streams a
///   listing; reply `DONE n`.
/// - `PROGRESS`: ask how many bytes the channel has moved; reply
///   `PROGRESS n` (or `CLOSED`).
/// - `PANIC`: panic inside the session.
struct Courier {
    source: PathBuf,
    big: PathBuf,
    received: PathBuf,
    gate: Gate,
}

/// What a `WORK` computation reports to and waits on.
#[derive(Clone)]
struct Gate {
    started: Sender<()>,
    release: Arc<Mutex<Receiver<()>>>,
}

struct CourierSession {
    source: PathBuf,
    big: PathBuf,
    received: PathBuf,
    gate: Gate,
    peer: SocketAddr,
    input: Vec<u8>,
    out: Vec<u8>,
    requests: Vec<Request>,
    urgent: bool,
    eof: bool,
    /// Chunks of a `CHUNKS` transfer still to make, and the next one's number.
    chunks_left: u32,
    next_chunk: u32,
}

/// The size of one `CHUNKS` chunk.
const CHUNK: usize = 100_000;

impl Protocol for Courier {
    fn name(&self) -> &'static str {
        "courier"
    }

    fn new_session(&self, info: &ConnInfo, _now: Instant) -> Box<dyn Session> {
        Box::new(CourierSession {
            source: self.source.clone(),
            big: self.big.clone(),
            received: self.received.clone(),
            gate: self.gate.clone(),
            peer: info.peer,
            input: Vec::new(),
            out: Vec::new(),
            requests: Vec::new(),
            urgent: false,
            eof: false,
            chunks_left: 0,
            next_chunk: 0,
        })
    }
}

impl CourierSession {
    /// Asks for the next `CHUNKS` chunk to be made off the session.
    fn make_chunk(&mut self) {
        let i = self.next_chunk;
        self.next_chunk += 1;
        self.chunks_left -= 1;
        self.requests
            .push(Request::Compute(Work::new(move || -> Computed {
                Box::new(vec![b'a' + (i % 26) as u8; CHUNK])
            })));
    }

    fn command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        let open = |p: &PathBuf| File::open(p).expect("test file");
        match verb {
            "SEND" | "SENDA" => {
                let port: u16 = arg.unwrap().parse().unwrap();
                let end = words.next().map(|e| e.parse().unwrap());
                let transform = if verb == "SENDA" {
                    Transform::LfToCrlf
                } else {
                    Transform::None
                };
                self.requests.push(Request::Connect {
                    id: 1,
                    addr: SocketAddr::new(self.peer.ip(), port),
                });
                self.requests.push(Request::SendFile {
                    id: 1,
                    file: open(&self.source),
                    offset: 0,
                    end,
                    transform,
                });
            }
            "PASV" | "BIG" | "RECV" => {
                self.requests.push(Request::Listen {
                    id: 1,
                    ip: LOCALHOST,
                    ports: (0, 0),
                    allow_from: Some(self.peer.ip()),
                });
                // The job goes with the request: the driver accepts the
                // connection once there is one.
                self.requests.push(match verb {
                    "PASV" => Request::SendFile {
                        id: 1,
                        file: open(&self.source),
                        offset: 0,
                        end: None,
                        transform: Transform::None,
                    },
                    "BIG" => Request::SendFile {
                        id: 1,
                        file: open(&self.big),
                        offset: 0,
                        end: None,
                        transform: Transform::None,
                    },
                    _ => Request::ReceiveFile {
                        id: 1,
                        file: File::create(&self.received).expect("test file"),
                        transform: Transform::None,
                    },
                });
            }
            "CHUNKS" => {
                self.requests.push(Request::Listen {
                    id: 1,
                    ip: LOCALHOST,
                    ports: (0, 0),
                    allow_from: Some(self.peer.ip()),
                });
                self.chunks_left = arg.unwrap().parse().unwrap();
                self.next_chunk = 0;
                self.make_chunk();
            }
            "PROGRESS" => self.requests.push(Request::Progress { id: 1 }),
            "ABORT" => self.requests.push(Request::Abort { id: 1 }),
            "WORK" => {
                let gate = self.gate.clone();
                self.requests.push(Request::Compute(Work::new(move || {
                    let _ = gate.started.send(());
                    let release = gate.release.lock().expect("gate");
                    Box::new(release.recv_timeout(Duration::from_secs(30)).is_ok())
                })));
            }
            "PANIC" => panic!("the courier was asked to panic"),
            _ => self.out.extend_from_slice(b"ERR\n"),
        }
    }
}

impl Session for CourierSession {
    fn handle_input(&mut self, data: &[u8], _now: Instant) {
        self.input.extend_from_slice(data);
        while let Some(end) = self.input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=end).collect();
            // The urgent byte arrives in line; keep only printable text.
            let line: String = String::from_utf8_lossy(&line)
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect();
            self.command(&line);
        }
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.eof = true;
    }

    fn handle_urgent(&mut self, _now: Instant) {
        self.urgent = true;
    }

    fn handle_channel(&mut self, event: ChannelEvent, _now: Instant) {
        let line = match event {
            ChannelEvent::Listening { addr, .. } => format!("PORT {}\n", addr.port()),
            ChannelEvent::Connected { .. } => return,
            ChannelEvent::Done { bytes, .. } => format!("DONE {bytes}\n"),
            ChannelEvent::Failed { error, .. } => format!("FAILED {error:?}\n"),
            ChannelEvent::Aborted { bytes, .. } => {
                format!("ABORTED {bytes} urgent={}\n", self.urgent)
            }
            ChannelEvent::Closed { .. } => "CLOSED\n".to_string(),
            ChannelEvent::Sent { .. } => return self.make_chunk(),
            ChannelEvent::Progress { bytes, .. } => format!("PROGRESS {bytes}\n"),
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    fn handle_computed(&mut self, result: Computed, _now: Instant) {
        let result = match result.downcast::<Vec<u8>>() {
            Ok(chunk) => {
                let more = self.chunks_left > 0;
                return self.requests.push(Request::SendBytes {
                    id: 1,
                    data: *chunk,
                    more,
                });
            }
            Err(other) => other,
        };
        let released = result.downcast::<bool>().expect("WORK returns a bool");
        self.out
            .extend_from_slice(format!("WORKED {released}\n").as_bytes());
    }

    fn poll_request(&mut self) -> Option<Request> {
        if self.requests.is_empty() {
            None
        } else {
            Some(self.requests.remove(0))
        }
    }

    fn poll_output(&self) -> Output<'_> {
        if self.out.is_empty() {
            Output::Nothing
        } else {
            Output::Bytes {
                data: &self.out,
                more: false,
            }
        }
    }

    fn consume_output(&mut self, n: usize, _now: Instant) {
        self.out.drain(..n);
    }

    fn wants_read(&self) -> bool {
        !self.eof
    }

    fn wants_close(&self) -> bool {
        self.eof
    }
}

/// A server running in a background thread, stopped on drop.
struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    dir: PathBuf,
    source: Vec<u8>,
    big_len: u64,
    /// Says when a `WORK` computation has started.
    work_started: Receiver<()>,
    /// Lets one `WORK` computation finish.
    release: Sender<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.begin(Some(Instant::now()));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(arch: Arch) -> Running {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("muse-courier-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Text with bare LFs and one CRLF, long enough to take several reads.
    let mut source = Vec::new();
    for i in 0..40_000 {
        source.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    source.extend_from_slice(b"windows line\r\nend");
    std::fs::write(dir.join("source"), &source).unwrap();
    let big_len = 512 << 20;
    File::create(dir.join("big"))
        .unwrap()
        .set_len(big_len)
        .unwrap();
    let (started, work_started) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let protocol = Courier {
        source: dir.join("source"),
        big: dir.join("big"),
        received: dir.join("received"),
        gate: Gate {
            started,
            release: Arc::new(Mutex::new(released)),
        },
    };
    let config = Config {
        arch,
        listen: vec![crate::net::ListenAddr::Ip(SocketAddr::new(LOCALHOST, 0))],
        tls_listen: Vec::new(),
        unix_mode: 0o666,
        workers: 1,
        threads: 2,
        max_connections: 64,
        max_per_ip: 64,
        shutdown_timeout: Duration::from_secs(5),
        worker_timeout: Duration::from_secs(60),
        max_worker_memory: None,
        max_requests: None,
        accept: crate::accept::Strategy::Shared,
    };
    let server = Arc::new(Server::bind(config, Box::new(protocol)).unwrap());
    let addr = server
        .listeners
        .iter()
        .next()
        .unwrap()
        .local_addr()
        .unwrap();
    let shutdown = Shutdown::new().unwrap();
    let ctx = server.ctx(0, shutdown.clone());
    let thread = std::thread::spawn(move || server.serve_in_process(&ctx));
    Running {
        addr,
        shutdown,
        thread: Some(thread),
        dir,
        source,
        big_len,
        work_started,
        release,
    }
}

struct Control {
    stream: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Control {
    fn connect(addr: SocketAddr) -> Control {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let lines = BufReader::new(stream.try_clone().unwrap());
        Control { stream, lines }
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.lines.read_line(&mut s).unwrap();
        s.trim_end().to_string()
    }

    fn port(&mut self) -> u16 {
        let l = self.line();
        l.strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("wanted PORT, got {l:?}"))
            .parse()
            .unwrap()
    }
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

fn to_crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::drivers::channel::lf_to_crlf(b, &mut out);
    out
}

fn active_send(arch: Arch) {
    let server = start(arch);
    let mut c = Control::connect(server.addr);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    c.send(&format!("SEND {}", listener.local_addr().unwrap().port()));
    let (data, _) = listener.accept().unwrap();
    let got = read_all(data);
    assert_eq!(got.len(), server.source.len());
    assert!(got == server.source, "active download differs");
    assert_eq!(c.line(), format!("DONE {}", server.source.len()));
    // The same in ASCII mode: LF becomes CRLF, the CRLF stays.
    c.send(&format!("SENDA {}", listener.local_addr().unwrap().port()));
    let (data, _) = listener.accept().unwrap();
    let want = to_crlf(&server.source);
    let got = read_all(data);
    assert!(got == want, "ASCII download differs");
    assert_eq!(c.line(), format!("DONE {}", want.len()));
    // Up to a given end (the size announced when the file was opened), in
    // both modes; an end past the file's end stops at the end of file.
    let cut = server.source.len() / 3 + 7;
    for (verb, end, want) in [
        ("SEND", cut, server.source[..cut].to_vec()),
        ("SENDA", cut, to_crlf(&server.source[..cut])),
        ("SEND", server.source.len() + 99, server.source.clone()),
    ] {
        c.send(&format!(
            "{verb} {} {end}",
            listener.local_addr().unwrap().port()
        ));
        let (data, _) = listener.accept().unwrap();
        let got = read_all(data);
        assert!(got == want, "{verb} to {end} differs: {} bytes", got.len());
        assert_eq!(c.line(), format!("DONE {}", want.len()));
    }
}

fn passive_send_and_receive(arch: Arch) {
    let server = start(arch);
    let mut c = Control::connect(server.addr);
    c.send("PASV");
    let port = c.port();
    let got = read_all(TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(got == server.source, "passive download differs");
    assert_eq!(c.line(), format!("DONE {}", server.source.len()));

    c.send("RECV");
    let port = c.port();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    data.write_all(&upload).unwrap();
    drop(data);
    assert_eq!(c.line(), format!("DONE {}", upload.len()));
    let stored = std::fs::read(server.dir.join("received")).unwrap();
    assert!(stored == upload, "upload stored differs");
}

/// Starts sending the big file and reads its first KiB, then stops
/// reading: the transfer stalls once the socket buffers are full. The data
/// connection is returned so that it stays open.
fn stalled_big_transfer(server: &Running) -> (Control, TcpStream) {
    let mut c = Control::connect(server.addr);
    c.send("BIG");
    let port = c.port();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    data.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut first = [0u8; 1024];
    data.read_exact(&mut first).unwrap();
    (c, data)
}

fn abort_with_urgent_data(arch: Arch) {
    let server = start(arch);
    let (mut c, _data) = stalled_big_transfer(&server);
    // Telnet IP, then the Synch as urgent data, then the command (RFC 959 ABOR).
    c.stream.write_all(&[255, 244]).unwrap();
    socket2::SockRef::from(&c.stream)
        .send_out_of_band(&[255])
        .unwrap();
    c.send("ABORT");
    let reply = c.line();
    let rest: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(rest.first(), Some(&"ABORTED"), "reply {reply:?}");
    let sent: u64 = rest[1].parse().unwrap();
    assert!(
        sent >= 1024 && sent < server.big_len,
        "sent {sent} of {}",
        server.big_len
    );
    assert_eq!(
        rest[2], "urgent=true",
        "the driver reported the urgent data"
    );
    // The control connection goes on working after the abort.
    c.send("ABORT");
    assert_eq!(c.line(), "CLOSED");
}

/// A stalled transfer's progress, asked twice, stands still; asked of a
/// channel that is gone, it says so.
fn progress_of_a_stalled_transfer(arch: Arch) {
    let server = start(arch);
    let (mut c, _data) = stalled_big_transfer(&server);
    // The sender fills the socket buffers, then stops: wait until two
    // answers agree (bounded).
    let progress = |c: &mut Control| -> u64 {
        c.send("PROGRESS");
        let l = c.line();
        l.strip_prefix("PROGRESS ")
            .unwrap_or_else(|| panic!("wanted PROGRESS, got {l:?}"))
            .parse()
            .unwrap()
    };
    let mut last = progress(&mut c);
    let mut steady = false;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(20));
        let now = progress(&mut c);
        assert!(now >= last && now >= 1024 && now < server.big_len, "{now}");
        if now == last {
            steady = true;
            break;
        }
        last = now;
    }
    assert!(
        steady,
        "the transfer stood still once the client stopped reading"
    );
    c.send("ABORT");
    assert!(c.line().starts_with("ABORTED "));
    c.send("PROGRESS");
    assert_eq!(c.line(), "CLOSED");
}

/// A listing-like transfer in chunks, each made by a computation once the
/// previous one is sent: the bytes arrive whole and in order.
fn chunked_send(arch: Arch) {
    let server = start(arch);
    let mut c = Control::connect(server.addr);
    c.send("CHUNKS 7");
    let port = c.port();
    let got = read_all(TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert_eq!(got.len(), 7 * CHUNK);
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        let want = b'a' + (i % 26) as u8;
        assert!(chunk.iter().all(|&b| b == want), "chunk {i} differs");
    }
    assert_eq!(c.line(), format!("DONE {}", 7 * CHUNK));
    // One chunk only: `more` is false from the start.
    c.send("CHUNKS 1");
    let port = c.port();
    let got = read_all(TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert_eq!(got.len(), CHUNK);
    assert_eq!(c.line(), format!("DONE {CHUNK}"));
}

fn a_computation_stalls_no_other_client(arch: Arch) {
    let server = start(arch);
    let mut a = Control::connect(server.addr);
    a.send("WORK");
    server
        .work_started
        .recv_timeout(Duration::from_secs(30))
        .expect("the computation started");
    // While it waits, another client is served, data connection and all.
    let mut b = Control::connect(server.addr);
    b.send("PASV");
    let port = b.port();
    let got = read_all(TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(got == server.source, "passive download differs");
    assert_eq!(b.line(), format!("DONE {}", server.source.len()));
    // Only now is it let go: it was still waiting (not timed out).
    server.release.send(()).unwrap();
    assert_eq!(a.line(), "WORKED true");
    // The connection goes on as before.
    a.send("ABORT");
    assert_eq!(a.line(), "CLOSED");
}

fn panics_are_contained(arch: Arch) {
    let server = start(arch);
    // More panics than the pool has threads: a pool that lost a thread per
    // panic would have none left.
    for _ in 0..3 {
        let mut c = Control::connect(server.addr);
        c.send("PANIC");
        let mut rest = Vec::new();
        let n = c.stream.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "a panicking session's connection is closed");
    }
    // Two clients at once (the pool has two threads) are both served.
    let mut a = Control::connect(server.addr);
    let mut b = Control::connect(server.addr);
    for c in [&mut a, &mut b] {
        c.send("ABORT");
    }
    assert_eq!(a.line(), "CLOSED");
    assert_eq!(b.line(), "CLOSED");
}

macro_rules! for_each_in_process_arch {
    ($($test:ident),*) => {
        $(
            mod $test {
                use super::*;
                #[test] fn serial() { $test(Arch::Serial) }
                #[test] fn thread_per_connection() { $test(Arch::ThreadPerConnection) }
                #[test] fn thread_pool() { $test(Arch::ThreadPool) }
                #[test] fn reactor() { $test(Arch::Reactor) }
                #[test] fn multi_reactor() { $test(Arch::MultiReactor) }
                #[test] fn reactor_pool() { $test(Arch::ReactorPool) }
                #[test] fn async_tasks() { $test(Arch::Async) }
                #[test]
                #[cfg_attr(uring_unavailable, ignore = "io_uring is unavailable here (see build.rs)")]
                fn uring() { $test(Arch::Uring) }
                #[test]
                #[cfg_attr(uring_unavailable, ignore = "io_uring is unavailable here (see build.rs)")]
                fn multi_uring() { $test(Arch::MultiUring) }
            }
        )*
    };
}

for_each_in_process_arch!(
    active_send,
    passive_send_and_receive,
    abort_with_urgent_data,
    progress_of_a_stalled_transfer,
    chunked_send
);

/// Every architecture but serial, which serves one client at a time by
/// design.
mod computations {
    use super::*;
    #[test]
    fn thread_per_connection() {
        a_computation_stalls_no_other_client(Arch::ThreadPerConnection)
    }
    #[test]
    fn thread_pool() {
        a_computation_stalls_no_other_client(Arch::ThreadPool)
    }
    #[test]
    fn reactor() {
        a_computation_stalls_no_other_client(Arch::Reactor)
    }
    #[test]
    fn multi_reactor() {
        a_computation_stalls_no_other_client(Arch::MultiReactor)
    }
    #[test]
    fn reactor_pool() {
        a_computation_stalls_no_other_client(Arch::ReactorPool)
    }
    #[test]
    fn async_tasks() {
        a_computation_stalls_no_other_client(Arch::Async)
    }
    #[test]
    #[cfg_attr(
        uring_unavailable,
        ignore = "io_uring is unavailable here (see build.rs)"
    )]
    fn uring() {
        a_computation_stalls_no_other_client(Arch::Uring)
    }
}

mod panics {
    use super::*;
    #[test]
    fn thread_pool() {
        panics_are_contained(Arch::ThreadPool)
    }
    #[test]
    fn thread_per_connection() {
        panics_are_contained(Arch::ThreadPerConnection)
    }
    #[test]
    fn reactor() {
        panics_are_contained(Arch::Reactor)
    }
    #[test]
    fn reactor_pool() {
        panics_are_contained(Arch::ReactorPool)
    }
    #[test]
    fn async_tasks() {
        panics_are_contained(Arch::Async)
    }
    #[test]
    fn multi_reactor() {
        panics_are_contained(Arch::MultiReactor)
    }
    // The proactor runs a session where the bytes are received, as well
    // as where it serves it: both places contain a panic.
    #[test]
    #[cfg_attr(
        uring_unavailable,
        ignore = "io_uring is unavailable here (see build.rs)"
    )]
    fn uring() {
        panics_are_contained(Arch::Uring)
    }
    #[test]
    #[cfg_attr(
        uring_unavailable,
        ignore = "io_uring is unavailable here (see build.rs)"
    )]
    fn multi_uring() {
        panics_are_contained(Arch::MultiUring)
    }
}

#[test]
fn a_worker_at_its_request_limit_drains_and_marks_itself_retiring() {
    use std::sync::atomic::Ordering;
    let board = crate::scoreboard::Scoreboard::new().unwrap();
    let ctx = crate::drivers::Ctx {
        protocol: Arc::new(crate::protocols::echo::Echo { idle_timeout: None }),
        shutdown: Shutdown::new().unwrap(),
        board,
        slot: 3,
        max_connections: 8,
        max_per_ip: 8,
        // Told with SIGCHLD, which this process ignores.
        master: crate::sys::getpid(),
    };
    let slot = board.slot(3);
    // No limit: counted, never retiring.
    ctx.count_requests(5);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 5);
    assert!(!ctx.shutdown.is_draining());
    slot.request_limit.store(8, Ordering::Relaxed);
    ctx.count_requests(0);
    ctx.count_requests(2);
    assert!(!ctx.shutdown.is_draining() && !slot.retiring.load(Ordering::Relaxed));
    ctx.count_requests(1);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 8);
    assert!(slot.retiring.load(Ordering::Relaxed));
    assert!(ctx.shutdown.is_draining());
    assert_eq!(ctx.shutdown.deadline(), None, "a drain like QUIT's");
    // Its slot freed, the next worker there starts from nothing.
    board.release_slot(3);
    assert_eq!(slot.requests.load(Ordering::Relaxed), 0);
    assert!(!slot.retiring.load(Ordering::Relaxed) && !slot.ready.load(Ordering::Relaxed));
    ctx.ready();
    assert!(slot.ready.load(Ordering::Relaxed));
}
