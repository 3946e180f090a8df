//! The bench's load generator: drives one server with a scenario's
//! [`Workload`] from several threads and measures what comes back.
//!
//! What a simulated client says and expects is a [`LoadClient`] (the sans-IO
//! seam in `client.rs`: echo, stream, FTP, HTTP, calc and kv implement it); this file
//! is the one evented loop that runs any of them, and owns every socket.
//!
//! [`run`] first opens whatever the workload holds beside the measuring
//! clients (the idle connections of an `idle` scenario, the stallers of a
//! `slow` one) from the calling thread, then starts `threads` load threads,
//! each with its own mio `Poll` and its share of the clients. One load
//! thread:
//!
//! 1. Makes its clients and calls their `handle_start`: the connections that
//!    live through the run are opened now, and the thread waits (at most
//!    `CONNECT_TIMEOUT`) until each is up or has failed (`errors.connect`).
//! 2. Reports at the gate and waits for the shared clock: the calling
//!    thread sets it once every thread is connected, so all threads warm up
//!    and measure over the same window.
//! 3. Runs its event loop until the clock's end: wait (a poll with a timeout,
//!    never longer than `POLL_TICK`) for readiness or the nearest deadline;
//!    let each ready connection write what its client has to send and read
//!    until it would block, handing every byte read to the client; carry out
//!    what the client asks (verdicts counted, connections opened and closed);
//!    give the clients their permits (closed loop: whenever they want one;
//!    open loop: on the schedule below); at the nearest deadline (a client's
//!    timeout, a handshake's limit, a scheduled request) look at every
//!    client; add the answers completed to the shared progress counter once
//!    per turn. An answer completed inside the timed window counts, and its
//!    latency goes into the thread's histogram.
//! 4. Samples its own CPU time (`RUSAGE_THREAD`) as the timed window opens and
//!    when the loop ends, counts its clients that owed an answer and got
//!    none, nor any byte, in the window without an error (`stalled`), and
//!    returns what it measured.
//!
//! The calling thread merges the threads' results, checks which idle
//! connections the server kept, and closes everything.
//!
//! Every socket is registered once, edge-triggered, for both directions;
//! client `i`'s link `l` has the token `i * LINKS + l`. A connect is over at
//! the socket's first readiness edge: asking the kernel which way it went
//! would cost system calls per connection, and a failed connect shows anyway
//! as the error of the first read or write (counted `connect` while nothing
//! has been read). A read shorter than the buffer after the server's FIN has
//! been seen is the end of the stream: the client is told without one more
//! read. Buffers are allocated before the run (per thread: the read buffer
//! and the effect buffers; per client: whatever it needs), so the steady
//! state allocates nothing. Reads are handed to the clients in place.
//!
//! Open loop (`rate`): each client's k-th permit has an intended time
//! `start + phase + k / r`, where r is the client's share of the rate and
//! `phase` staggers the clients evenly over one period. A permit is given
//! when due and the client wants one (a free place in its pipeline, no
//! session under way); its latency counts from the intended time, so a
//! server that falls behind shows it in the tail instead of slowing the load
//! down (coordinated omission). A timerfd wakes the thread at due times with
//! microsecond precision, which an epoll timeout (milliseconds) cannot.
//!
//! TLS (`LoadSpec::tls`) lives here, beneath the clients, which see only
//! plaintext: every link gets a rustls `ClientConnection` (one
//! `ClientConfig` per run, trusting the run's certificate alone, for the name
//! `localhost`). Once the TCP connect is up, the TLS handshake runs
//! non-blocking on the link's readiness edges, under the connect's limit;
//! only when it is over is the client told `handle_connected`. A handshake
//! that fails (the server closes, resets or answers what is not TLS) counts
//! a `tls` error. Then the client's output is encrypted one record at a time,
//! the next only once the last is sent, and the ciphertext read is
//! decrypted and handed over as plaintext; close_notify, or the end of the
//! TCP stream, is the client's end of stream. A plain run takes one branch
//! more per pump, nothing else.
//!
//! Explicit TLS (`LoadTls::explicit`, FTPS): links open as plain TCP, and a
//! client says when one switches to TLS ([`Effect::StartTls`]: the control
//! connection after `234`, a data connection after `150`). The loop makes
//! the link's `ClientConnection` then, from the same per-run configuration
//! (whose session cache lets a data connection resume the session of a
//! control connection before it), and the handshake runs as above, under a
//! connect's limit (past it, a `tls` error), with the client told
//! `handle_connected` once more when it is over.

use std::io::{self, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection};

use crate::bench::client::calc::{CalcClient, CalcShape};
use crate::bench::client::echo::{EchoClient, EchoShape};
use crate::bench::client::ftp::{FtpClient, FtpShape};
use crate::bench::client::http::{HttpClient, HttpShape};
use crate::bench::client::kv::{KvClient, KvShape};
use crate::bench::client::stream::{StreamClient, StreamShape};
use crate::bench::client::{Effect, Effects, ErrorKind, Link, LoadClient, LINKS, READ_MAX};
use crate::bench::model::{Errors, Latency, LoadResult};
use crate::bench::scenario::Workload;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// What the connections do.
    pub workload: Workload,
    /// Measuring connections.
    pub clients: usize,
    /// Load threads.
    pub threads: usize,
    /// Warm-up, not counted.
    pub warmup: Duration,
    /// The timed phase.
    pub duration: Duration,
    /// Open loop: requests per second over all connections.
    pub rate: Option<f64>,
    /// Requests answered so far (warm-up included), for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
    /// TLS beneath the clients: every connection of the run speaks it.
    pub tls: Option<LoadTls>,
}

/// TLS for a run's connections (see "TLS" in the module docs).
#[derive(Clone, Debug)]
pub struct LoadTls {
    /// The server's certificate (DER): the one certificate trusted, for
    /// the name `localhost`.
    pub cert: Vec<u8>,
    /// Resume sessions on new connections; off, every connection pays a
    /// full handshake.
    pub resume: bool,
    /// The ALPN protocol offered, if any.
    pub alpn: Option<Vec<u8>>,
    /// Links open as plain TCP and the clients start TLS on them
    /// ([`Effect::StartTls`]: explicit FTPS); otherwise every link speaks
    /// TLS from its first byte.
    pub explicit: bool,
}

/// The most plaintext encrypted at once: one TLS record. The next is
/// encrypted only once this one's ciphertext is sent, so a link holds at
/// most a record's worth of ciphertext.
const TLS_RECORD: usize = 16 * 1024;

/// How long a load thread waits for its measuring connections. Loopback
/// connects take microseconds; a server whose backlog is full drops SYNs and
/// would otherwise keep us waiting through the kernel's retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the idle connections and the staller may take to open, in all.
/// Together with [`CONNECT_TIMEOUT`] this bounds a run at warm-up + duration
/// + 10 s (and a few poll ticks) whatever the server does.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection attempt's limit once the load runs. Long enough for one SYN
/// retransmission (1 s) to succeed; a server that needs more is counted as
/// refusing.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest single poll wait: the loop looks at the clock at least this often
/// even when nothing happens.
const POLL_TICK: Duration = Duration::from_millis(100);

/// Set to end every load run early (the bench was interrupted): load threads
/// notice within a [`POLL_TICK`], close their connections and return what
/// they measured so far.
pub static ABORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a load thread waits for the clock after reporting at the gate.
/// The calling thread always sets it within [`CONNECT_TIMEOUT`] and a second;
/// this only bounds the wait should that ever fail.
const GATE_WAIT: Duration = Duration::from_secs(30);

/// Events fetched per poll call.
const EVENTS_CAPACITY: usize = 1024;

/// Idle connections being established at once: firing thousands of SYNs at
/// a listener with a short backlog gets most of them dropped and retried a
/// second later; a window keeps the handshakes flowing.
const CONNECT_WINDOW: usize = 256;

/// Write/read rounds a client gets per turn before the others get theirs
/// (it is driven again on the next turn without waiting for an event).
const MAX_ROUNDS: usize = 64;

/// The poll token of a load thread's timerfd.
const TIMER: Token = Token(usize::MAX);

/// Latency histogram precision (significant figures).
const SIGFIGS: u8 = 3;

/// Raises this process's soft limit on open files to the hard limit, or to
/// at least `needed` where the hard limit is unbounded. Returns the soft
/// limit in force afterwards (0 if it cannot be read). Processes started
/// afterwards inherit it.
pub fn raise_fd_limit(needed: usize) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let needed = needed as libc::rlim_t;
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        lim.rlim_cur.max(needed)
    } else {
        lim.rlim_max
    };
    if target > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return target;
        }
    }
    lim.rlim_cur
}

/// Runs the load and returns what it measured.
pub fn run(spec: &LoadSpec) -> io::Result<LoadResult> {
    let plan = Plan::new(spec)?;
    let beside = spec.workload.beside();
    raise_fd_limit(beside.idle + beside.stallers + spec.clients + 256);

    // The idle connections and the stallers go first: they are what the
    // measuring clients are up against.
    let extras = Extras::open(spec.addr, beside.idle, beside.stallers, &beside.stall)?;

    let threads = spec.threads.clamp(1, spec.clients.max(1));
    let gate = Gate::default();
    let (clock, joined) = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(threads);
        let mut first = 0;
        let mut spawn_error = None;
        for t in 0..threads {
            let count = spec.clients / threads + usize::from(t < spec.clients % threads);
            let (plan, gate) = (&plan, &gate);
            let spawned = thread::Builder::new()
                .name(format!("muse-load-{t}"))
                .spawn_scoped(scope, move || load_thread(plan, first, count, gate));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
            first += count;
        }
        let clock = match spawn_error {
            // Release the threads already started with an empty window.
            Some(_) => gate.open(
                handles.len(),
                Instant::now(),
                Duration::ZERO,
                Duration::ZERO,
            ),
            None => gate.open(
                threads,
                Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1),
                spec.warmup,
                spec.duration,
            ),
        };
        let joined: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("load thread panicked")))
            })
            .collect();
        match spawn_error {
            Some(e) => Err(e),
            None => Ok((clock, joined)),
        }
    })?;

    let mut histogram = new_histogram(plan.hist_high)?;
    let mut result = LoadResult {
        requests: 0,
        bytes: 0,
        seconds: clock.end.duration_since(clock.measure_from).as_secs_f64(),
        latency: Latency::default(),
        errors: extras.errors.clone(),
        client_cpu_seconds: 0.0,
        client_threads: threads,
        idle_held: extras.held(),
        histogram: None,
    };
    for report in joined {
        let report = report?;
        histogram
            .add(&report.histogram)
            .map_err(|e| io::Error::other(format!("merging histograms: {e:?}")))?;
        result.requests += report.requests;
        result.bytes += report.bytes;
        result.errors.add(&report.errors);
        result.errors.stalled += report.stalled;
        result.client_cpu_seconds += report.cpu_seconds;
    }
    if !histogram.is_empty() {
        result.latency = Latency {
            p50_us: histogram.value_at_quantile(0.50) as f64,
            p99_us: histogram.value_at_quantile(0.99) as f64,
            p999_us: histogram.value_at_quantile(0.999) as f64,
            max_us: histogram.max() as f64,
        };
    }
    result.histogram = Some(histogram);
    Ok(result)
}

fn new_histogram(high: u64) -> io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, high, SIGFIGS)
        .map_err(|e| io::Error::other(format!("latency histogram: {e:?}")))
}

/// What the clients of a run are, prepared once and shared read-only by
/// the load threads.
enum Shape {
    Echo(EchoShape),
    Stream(StreamShape),
    Ftp(FtpShape),
    Http(HttpShape),
    Calc(CalcShape),
    Kv(KvShape),
}

/// Everything the load threads share, read-only, prepared before the run.
struct Plan {
    addr: SocketAddr,
    shape: Shape,
    /// Open loop: nanoseconds between one client's intended permits.
    period_ns: Option<u64>,
    /// Measuring clients over all threads (for the open-loop phases).
    clients: usize,
    /// The histogram's upper bound in microseconds (longer waits saturate).
    hist_high: u64,
    progress: Option<Arc<AtomicU64>>,
    /// TLS: the client configuration every link shares, and the name the
    /// server's certificate is checked for.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// The clients start TLS themselves ([`LoadTls::explicit`]).
    explicit_tls: bool,
}

/// The run's TLS client configuration: trusts `tls.cert` alone.
fn client_config(tls: &LoadTls) -> io::Result<Arc<ClientConfig>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(tls.cert.clone()))
        .map_err(|e| invalid(format!("the run's certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS client: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !tls.resume {
        config.resumption = Resumption::disabled();
    }
    config.alpn_protocols = tls.alpn.iter().cloned().collect();
    Ok(Arc::new(config))
}

impl Plan {
    fn new(spec: &LoadSpec) -> io::Result<Plan> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let echo = |x: &crate::bench::scenario::Exchange, depth: usize, per_request: bool| {
            if x.request.is_empty() || x.answer_len() == 0 {
                Err(invalid("the exchange needs a request and an answer"))
            } else {
                Ok(Shape::Echo(EchoShape::new(
                    &x.request,
                    x.answer(),
                    depth,
                    per_request,
                )))
            }
        };
        let explicit_tls = spec.tls.as_ref().is_some_and(|t| t.explicit);
        let ftp = |file: &str, size: u64, download: bool| {
            FtpShape::new(file, size, download, explicit_tls)
                .map(Shape::Ftp)
                .ok_or_else(|| invalid("the FTP file needs a one-line name"))
        };
        let shape = match &spec.workload {
            Workload::RequestResponse { exchange, depth } => echo(exchange, *depth, false)?,
            Workload::Connect { exchange } => echo(exchange, 1, true)?,
            Workload::Idle { exchange, .. } | Workload::Slow { exchange } => {
                echo(exchange, 1, false)?
            }
            Workload::Stream { chunk: 0 } => return Err(invalid("stream chunk must be positive")),
            Workload::Stream { chunk } => Shape::Stream(StreamShape::new(*chunk)),
            Workload::FtpSessions { file, size } => ftp(file, *size, false)?,
            Workload::FtpDownload { file, size } => ftp(file, *size, true)?,
            Workload::Http(load) => Shape::Http(HttpShape::new(load).map_err(invalid)?),
            Workload::Calc(load) => {
                Shape::Calc(CalcShape::new(load, spec.clients).map_err(|e| invalid(&e))?)
            }
            Workload::Kv(load) => Shape::Kv(KvShape::new(load).map_err(invalid)?),
        };
        // Bulk streaming has no requests to schedule, nor has a client
        // downloading one file after another.
        let paced = match &shape {
            Shape::Stream(_) => false,
            Shape::Ftp(f) => !f.download,
            Shape::Echo(_) | Shape::Http(_) | Shape::Calc(_) | Shape::Kv(_) => true,
        };
        let period_ns = match spec.rate {
            _ if !paced => None,
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => {
                let ns = spec.clients.max(1) as f64 / r * 1e9;
                // Capped at ~11 days per request: "never", without overflow.
                Some(ns.clamp(1.0, 1e15) as u64)
            }
            Some(_) => return Err(invalid("the rate must be a positive number")),
        };
        let longest = spec.warmup + spec.duration + Duration::from_secs(60);
        Ok(Plan {
            addr: spec.addr,
            shape,
            period_ns,
            clients: spec.clients,
            hist_high: u64::try_from(longest.as_micros())
                .unwrap_or(u64::MAX)
                .max(2),
            progress: spec.progress.clone(),
            tls: match &spec.tls {
                Some(tls) => Some((
                    client_config(tls)?,
                    ServerName::try_from("localhost").map_err(|e| invalid(&e.to_string()))?,
                )),
                None => None,
            },
            explicit_tls,
        })
    }
}

/// The phase boundaries all threads share.
#[derive(Clone, Copy, Debug)]
struct Clock {
    /// Warm-up starts: the load begins, open-loop schedules count from here.
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Clock {
    fn timed(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// Where the load threads meet once connected: the calling thread waits for
/// them (bounded), then sets the clock for all.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    turn: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    clock: Option<Clock>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arrive(&self) {
        self.lock().arrived += 1;
        self.turn.notify_all();
    }

    fn wait_clock(&self) -> Option<Clock> {
        let deadline = Instant::now() + GATE_WAIT;
        let mut state = self.lock();
        while state.clock.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .turn
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.clock
    }

    /// Waits until `threads` have arrived or `deadline` passes, then starts
    /// the clock for everyone.
    fn open(&self, threads: usize, deadline: Instant, warmup: Duration, run: Duration) -> Clock {
        let mut state = self.lock();
        while state.arrived < threads {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .turn
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let start = Instant::now();
        let measure_from = start + warmup;
        let clock = Clock {
            start,
            measure_from,
            end: measure_from + run,
        };
        state.clock = Some(clock);
        self.turn.notify_all();
        clock
    }
}

/// A load thread's place at the gate: reports arrival even if the thread
/// fails or panics before it gets there, so the calling thread never waits
/// for it in vain.
struct Arrival<'a> {
    gate: &'a Gate,
    done: bool,
}

impl Arrival<'_> {
    fn arrive(&mut self) -> Option<Clock> {
        self.done = true;
        self.gate.arrive();
        self.gate.wait_clock()
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.gate.arrive();
        }
    }
}

/// The connections that are not measuring: idle ones and the staller.
struct Extras {
    idle: Vec<TcpStream>,
    /// Held open, never read, until the run ends.
    _stallers: Vec<TcpStream>,
    errors: Errors,
}

impl Extras {
    /// Opens `stallers` connections that each send `stall` and then nothing
    /// more, and `idle` that send nothing at all.
    fn open(addr: SocketAddr, idle: usize, stallers: usize, stall: &[u8]) -> io::Result<Extras> {
        let mut extras = Extras {
            idle: Vec::new(),
            _stallers: Vec::new(),
            errors: Errors::default(),
        };
        if idle == 0 && stallers == 0 {
            return Ok(extras);
        }
        let mut poll = Poll::new()?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        if stallers > 0 {
            let mut opened = open_many(&mut poll, addr, stallers, deadline)?;
            extras.errors.connect += (stallers - opened.len()) as u64;
            for staller in &mut opened {
                // A fresh socket's send buffer takes a partial request at
                // once; if it somehow does not, the staller simply stalls
                // earlier.
                if !stall.is_empty() {
                    if let Err(e) = staller.write(stall) {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            extras.errors.io += 1;
                        }
                    }
                }
            }
            extras._stallers = opened;
        }
        if idle > 0 {
            extras.idle = open_many(&mut poll, addr, idle, deadline)?;
            extras.errors.connect += (idle - extras.idle.len()) as u64;
        }
        Ok(extras)
    }

    /// Idle connections the server has not closed: a read that would block
    /// means open; end of stream or an error means closed. Whatever the
    /// server sent is read first (a refusal followed by a close must count
    /// as closed).
    fn held(&self) -> usize {
        let mut buf = [0u8; 4096];
        self.idle
            .iter()
            .filter(|s| {
                // mio reads through a shared reference, as std does.
                let mut s: &TcpStream = s;
                for _ in 0..64 {
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                    }
                }
                // Still talking: certainly not closed.
                true
            })
            .count()
    }
}

/// Opens `n` connections, [`CONNECT_WINDOW`] handshakes at a time, until
/// `deadline`; returns those that came up (deregistered from `poll`).
fn open_many(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    deadline: Instant,
) -> io::Result<Vec<TcpStream>> {
    let mut attempts: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    let mut up = Vec::with_capacity(n);
    let mut in_flight = 0;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    loop {
        while attempts.len() < n && in_flight < CONNECT_WINDOW {
            let token = Token(attempts.len());
            let attempt = open(addr, attempts.len()).and_then(|mut s| {
                poll.registry()
                    .register(&mut s, token, Interest::WRITABLE)?;
                Ok(s)
            });
            // A socket that cannot even be created (out of descriptors,
            // ports) is a failed connect; the caller counts those.
            attempts.push(attempt.ok());
            in_flight += usize::from(attempts.last().is_some_and(Option::is_some));
        }
        let now = Instant::now();
        if (in_flight == 0 && attempts.len() == n) || now >= deadline {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some((deadline - now).min(POLL_TICK))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let Some(slot) = attempts.get_mut(event.token().0) else {
                continue;
            };
            let Some(verdict) = slot.as_ref().and_then(established) else {
                continue;
            };
            in_flight -= 1;
            if let Some(mut stream) = slot.take() {
                let _ = poll.registry().deregister(&mut stream);
                if verdict {
                    up.push(stream);
                }
            }
        }
    }
    Ok(up)
}

/// A non-blocking connect with TCP_NODELAY (set before the handshake ends,
/// which Linux allows, so no request ever waits for Nagle).
fn open(addr: SocketAddr, client: usize) -> io::Result<TcpStream> {
    let stream = connect_from(addr, client)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Loopback source addresses the clients are spread over, 127.0.0.1 to
/// 127.0.0.16. A connection from one address to the server needs a local
/// port that none of that address's recent connections holds in TIME_WAIT
/// (reusable after a second), and Linux gives `connect` the even half of
/// the ephemeral range: about 14,000 new connections a second from one
/// address, measured as exactly that rate for every server once the first
/// run of echo `connect` had filled the ports. Spread over 16 addresses, a
/// scenario that opens a connection per request measures the server.
const LOOPBACK_SOURCES: usize = 16;

/// A non-blocking connect to `addr`; to an IPv4 loopback address, from the
/// loopback source address of `client` (all of a client's connections come
/// from one address, as an FTP server expects of its data connections).
fn connect_from(addr: SocketAddr, client: usize) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = addr else {
        return TcpStream::connect(addr);
    };
    if !to.ip().is_loopback() {
        return TcpStream::connect(addr);
    }
    let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (client % LOOPBACK_SOURCES) as u8);
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking(),
        Some(socket2::Protocol::TCP),
    )?;
    crate::sys::set_bind_address_no_port(&socket)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Whether a connect in progress has finished: `Some(true)` up,
/// `Some(false)` failed, `None` still going.
fn established(stream: &TcpStream) -> Option<bool> {
    match stream.take_error() {
        Ok(Some(_)) | Err(_) => Some(false),
        Ok(None) => match stream.peer_addr() {
            Ok(_) => Some(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(_) => Some(false),
        },
    }
}

/// Whether `e`, from a socket's first read, means that its connect failed.
fn refused(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable
    )
}

/// What a socket error means for the loop.
enum Outcome {
    /// Wait for the next readiness edge.
    Block,
    /// Try again now (EINTR).
    Retry,
    Fail(ErrorKind),
}

fn classify(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::WouldBlock => Outcome::Block,
        io::ErrorKind::Interrupted => Outcome::Retry,
        // EPIPE: the server shut its side down.
        io::ErrorKind::BrokenPipe => Outcome::Fail(ErrorKind::Closed),
        _ => Outcome::Fail(ErrorKind::Io),
    }
}

/// What one load thread measured.
struct ThreadReport {
    histogram: Histogram<u64>,
    requests: u64,
    bytes: u64,
    errors: Errors,
    stalled: u64,
    cpu_seconds: f64,
}

/// One load thread, start to end (see the module docs).
fn load_thread(plan: &Plan, first: usize, count: usize, gate: &Gate) -> io::Result<ThreadReport> {
    let now = Instant::now();
    let ids = first..first + count;
    match &plan.shape {
        Shape::Echo(s) => run_clients(plan, gate, first, ids.map(|_| EchoClient::new(s, now))),
        Shape::Stream(s) => run_clients(
            plan,
            gate,
            first,
            ids.map(|id| StreamClient::new(s, id, now)),
        ),
        Shape::Ftp(s) => run_clients(plan, gate, first, ids.map(|_| FtpClient::new(s, now))),
        Shape::Http(s) => run_clients(plan, gate, first, ids.map(|_| HttpClient::new(s, now))),
        Shape::Calc(s) => run_clients(plan, gate, first, ids.map(|id| CalcClient::new(s, id, now))),
        Shape::Kv(s) => run_clients(plan, gate, first, ids.map(|id| KvClient::new(s, id, now))),
    }
}

/// Steps 1 to 4 of the module docs for one thread's `clients`.
fn run_clients<C: LoadClient>(
    plan: &Plan,
    gate: &Gate,
    first: usize,
    clients: impl Iterator<Item = C>,
) -> io::Result<ThreadReport> {
    let mut arrival = Arrival { gate, done: false };
    let mut worker = Worker::new(plan)?;
    let mut slots: Vec<Slot<C>> = clients
        .enumerate()
        .map(|(k, client)| Slot::new(client, plan, first + k))
        .collect();
    worker.set_up(&mut slots)?;
    let Some(clock) = arrival.arrive() else {
        return Err(io::Error::other("the load never started"));
    };
    worker.run(slots, clock)
}

/// A load thread's counts.
struct Tally {
    clock: Clock,
    histogram: Histogram<u64>,
    requests: u64,
    bytes: u64,
    errors: Errors,
    /// Answers completed since the progress counter was last updated.
    unflushed: u64,
}

impl Tally {
    /// One complete, correct answer to a request sent at `sent`.
    fn answered(&mut self, measured: &mut u64, sent: Instant, now: Instant) {
        self.unflushed += 1;
        if self.clock.timed(now) {
            self.requests += 1;
            *measured += 1;
            let us = now.saturating_duration_since(sent).as_micros();
            self.histogram
                .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
        }
    }

    /// Payload bytes; whether they fell in the timed window.
    fn received(&mut self, n: usize, now: Instant) -> bool {
        let timed = self.clock.timed(now);
        if timed {
            self.bytes += n as u64;
        }
        timed
    }

    fn count(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.errors.connect += 1,
            ErrorKind::Mismatch => self.errors.mismatch += 1,
            ErrorKind::Closed => self.errors.closed += 1,
            ErrorKind::Io => self.errors.io += 1,
            ErrorKind::Stalled => self.errors.stalled += 1,
            ErrorKind::Tls => self.errors.tls += 1,
        }
    }
}

/// One of a client's connections, as the loop holds it.
#[derive(Default)]
struct LinkState {
    stream: Option<TcpStream>,
    /// The handshake is under way: when to give up on it.
    connecting: Option<Instant>,
    /// Readiness not yet used up: set by an event, cleared when the socket
    /// would block (edge-triggered: the next edge sets it again).
    can_read: bool,
    can_write: bool,
    /// The server's FIN has been seen: a short read is then the end.
    peer_closed: bool,
    /// The end of stream was handed to the client: nothing more to read.
    ended: bool,
    /// A byte has been read: an error now is not a failed connect.
    heard: bool,
    /// Bumped at every open, so that a link closed and opened again inside
    /// one client call is not taken for the one before.
    generation: u32,
    /// A TLS run: the link's TLS connection (its handshake is under way
    /// while `connecting` is set).
    tls: Option<Box<ClientConnection>>,
    /// The TCP connection was up before the TLS handshake under way began
    /// ([`Effect::StartTls`]): no readiness edge need start it.
    upgrading: bool,
}

/// One client and what the loop keeps for it.
struct Slot<C> {
    client: C,
    links: [LinkState; LINKS],
    /// Permits given so far: the open-loop schedule's k.
    issued: u64,
    /// This client's offset in the open-loop schedule.
    phase_ns: u64,
    /// Answers completed, and payload bytes received, in the timed window.
    measured: u64,
    window_bytes: u64,
    /// Errors this client has had.
    errors: u64,
    /// Listed to be driven again next turn.
    again: bool,
}

impl<C> Slot<C> {
    fn new(client: C, plan: &Plan, id: usize) -> Slot<C> {
        Slot {
            client,
            links: Default::default(),
            issued: 0,
            phase_ns: plan.period_ns.map_or(0, |p| {
                (u128::from(p) * id as u128 / plan.clients.max(1) as u128) as u64
            }),
            measured: 0,
            window_bytes: 0,
            errors: 0,
            again: false,
        }
    }

    /// Open loop: when the next permit is due.
    fn due(&self, period_ns: u64, clock: &Clock) -> Instant {
        let ns = self
            .issued
            .saturating_mul(period_ns)
            .saturating_add(self.phase_ns);
        clock
            .start
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or(clock.end)
    }
}

/// The client and link a token names.
fn split_token(token: Token) -> (usize, Link) {
    let link = if token.0.is_multiple_of(LINKS) {
        Link::Main
    } else {
        Link::Side
    };
    (token.0 / LINKS, link)
}

/// A load thread's loop: owns the sockets, runs the clients.
struct Worker<'a> {
    plan: &'a Plan,
    /// The shared clock (before the gate: an empty window).
    clock: Clock,
    /// Past the gate: permits are given.
    running: bool,
    poll: Poll,
    scratch: Box<[u8]>,
    tally: Tally,
    /// What the client being served asks; and the batch being carried out
    /// (two, swapped, so neither reallocates).
    fx: Effects,
    fx_work: Vec<Effect>,
    /// Handshakes under way.
    connecting: usize,
    /// No client has anything due before this (timeouts, handshake limits,
    /// open-loop permits): `service` is skipped until then. Lowered
    /// whenever something gets an earlier deadline.
    soonest: Instant,
    /// Clients to drive again next turn, and the list being worked through
    /// (two, swapped, so neither reallocates).
    again: Vec<usize>,
    again_work: Vec<usize>,
}

impl<'a> Worker<'a> {
    fn new(plan: &'a Plan) -> io::Result<Worker<'a>> {
        let now = Instant::now();
        let empty = Clock {
            start: now,
            measure_from: now,
            end: now,
        };
        Ok(Worker {
            plan,
            clock: empty,
            running: false,
            poll: Poll::new()?,
            scratch: vec![0; READ_MAX].into_boxed_slice(),
            tally: Tally {
                clock: empty,
                histogram: new_histogram(plan.hist_high)?,
                requests: 0,
                bytes: 0,
                errors: Errors::default(),
                unflushed: 0,
            },
            fx: Effects::new(),
            fx_work: Vec::with_capacity(64),
            connecting: 0,
            soonest: now,
            again: Vec::new(),
            again_work: Vec::new(),
        })
    }

    /// Step 1: the clients open their long-lived connections, and the
    /// handshakes finish (or fail) within [`CONNECT_TIMEOUT`].
    fn set_up<C: LoadClient>(&mut self, slots: &mut [Slot<C>]) -> io::Result<()> {
        self.again = Vec::with_capacity(slots.len());
        self.again_work = Vec::with_capacity(slots.len());
        let now = Instant::now();
        for (i, s) in slots.iter_mut().enumerate() {
            s.client.handle_start(now, &mut self.fx);
            self.settle(i, s, now);
        }
        let deadline = now + CONNECT_TIMEOUT;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while self.connecting > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some((deadline - now).min(POLL_TICK)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                let (i, link) = split_token(event.token());
                if let Some(s) = slots.get_mut(i) {
                    self.on_event(i, s, link, event);
                }
            }
        }
        let now = Instant::now();
        for (i, s) in slots.iter_mut().enumerate() {
            for link in Link::ALL {
                if s.links[link.index()].connecting.is_some() {
                    self.fail(i, s, link, ErrorKind::Connect, now);
                }
            }
        }
        Ok(())
    }

    /// Steps 3 and 4: the loop, from the gate to the clock's end.
    fn run<C: LoadClient>(
        mut self,
        mut slots: Vec<Slot<C>>,
        clock: Clock,
    ) -> io::Result<ThreadReport> {
        self.clock = clock;
        self.tally.clock = clock;
        self.running = true;
        self.soonest = clock.end;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut timer = Timer::new(self.poll.registry())?;

        // Closed loop: every client takes its permits now (each answer then
        // brings the next); open loop: the first are scheduled.
        let now = Instant::now();
        for (i, s) in slots.iter_mut().enumerate() {
            self.settle(i, s, now);
            self.drive(i, s);
        }

        let mut cpu_start = None;
        loop {
            let now = Instant::now();
            if cpu_start.is_none() && now >= clock.measure_from {
                cpu_start = Some(thread_cpu());
            }
            if now >= clock.end || ABORT.load(Ordering::Relaxed) {
                break;
            }
            if now >= self.soonest {
                self.service(&mut slots, now);
            }
            let mut wake = if cpu_start.is_some() {
                clock.end
            } else {
                clock.measure_from
            };
            wake = wake.min(self.soonest);
            let timeout = timer.wait_until(wake, !self.again.is_empty());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                if event.token() == TIMER {
                    continue;
                }
                let (i, link) = split_token(event.token());
                if let Some(s) = slots.get_mut(i) {
                    self.on_event(i, s, link, event);
                    self.drive(i, s);
                }
            }
            let mut work = mem::take(&mut self.again_work);
            mem::swap(&mut work, &mut self.again);
            for &i in &work {
                if let Some(s) = slots.get_mut(i) {
                    s.again = false;
                    self.drive(i, s);
                }
            }
            work.clear();
            self.again_work = work;
            if self.tally.unflushed > 0 {
                if let Some(progress) = &self.plan.progress {
                    progress.fetch_add(self.tally.unflushed, Ordering::Relaxed);
                }
                self.tally.unflushed = 0;
            }
        }
        let cpu_seconds = cpu_start.map_or(0.0, |start| (thread_cpu() - start).max(0.0));

        // Stalled: owed an answer, had no error, and got nothing at all in
        // the window. (In open loop a client may have had nothing due; it
        // owes nothing then and is not counted.)
        let stalled = slots
            .iter()
            .filter(|s| {
                s.measured == 0 && s.window_bytes == 0 && s.errors == 0 && s.client.owes_answer()
            })
            .count() as u64;
        // Closing a socket takes it out of the epoll set (no descriptor is
        // duplicated here).
        drop(slots);
        Ok(ThreadReport {
            histogram: self.tally.histogram,
            requests: self.tally.requests,
            bytes: self.tally.bytes,
            errors: self.tally.errors,
            stalled,
            cpu_seconds,
        })
    }

    /// Something is due at `at`: make sure `service` looks by then.
    fn wake_by(&mut self, at: Instant) {
        self.soonest = self.soonest.min(at);
    }

    /// At the nearest deadline: fails the handshakes that took too long,
    /// gives the clients whose timeout has come their `handle_timeout`,
    /// grants the open-loop permits due, and finds the next deadline.
    fn service<C: LoadClient>(&mut self, slots: &mut [Slot<C>], now: Instant) {
        // Anything the scan makes due is found by the scan itself.
        self.soonest = self.clock.end;
        for (i, s) in slots.iter_mut().enumerate() {
            for link in Link::ALL {
                let l = &s.links[link.index()];
                let kind = if l.upgrading {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Connect
                };
                match l.connecting {
                    Some(limit) if now >= limit => self.fail(i, s, link, kind, now),
                    Some(limit) => self.wake_by(limit),
                    None => {}
                }
            }
            if s.client.poll_timeout().is_some_and(|t| t <= now) {
                s.client.handle_timeout(now, &mut self.fx);
            }
            self.settle(i, s, now);
            self.drive(i, s);
        }
    }

    /// Records an event's readiness on its link; a first edge ends the
    /// handshake.
    fn on_event<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, link: Link, event: &Event) {
        let l = &mut s.links[link.index()];
        if l.stream.is_none() {
            // Closed since the event was queued.
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            l.can_read = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            l.can_write = true;
        }
        if event.is_read_closed() {
            l.peer_closed = true;
        }
        if l.connecting.is_some() {
            if l.tls.is_some() {
                self.handshake(i, s, link);
                return;
            }
            l.connecting = None;
            self.connecting -= 1;
            let now = Instant::now();
            s.client.handle_connected(link, now, &mut self.fx);
            self.settle(i, s, now);
        }
    }

    /// A TLS link whose TCP handshake is over: moves the TLS handshake on
    /// as far as the socket allows; once it is over, the client hears that
    /// the link is up. It is bounded by the connect's limit.
    fn handshake<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, link: Link) {
        let l = &mut s.links[link.index()];
        let (Some(stream), Some(tls)) = (l.stream.as_mut(), l.tls.as_mut()) else {
            return;
        };
        let step = handshake_step(stream, tls, &mut l.can_read, &mut l.can_write);
        let now = Instant::now();
        match step {
            Ok(false) => {}
            Ok(true) => {
                l.connecting = None;
                l.upgrading = false;
                self.connecting -= 1;
                s.client.handle_connected(link, now, &mut self.fx);
                self.settle(i, s, now);
            }
            Err(kind) => self.fail(i, s, link, kind, now),
        }
    }

    /// Carries out what the client asked, then grants the permits due
    /// (past the gate), until the client asks nothing more; notes its next
    /// deadline.
    fn settle<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, now: Instant) {
        loop {
            self.apply(i, s, now);
            if !self.running || !s.client.wants_permit() {
                break;
            }
            let sent = match self.plan.period_ns {
                None => now,
                Some(p) => {
                    let due = s.due(p, &self.clock);
                    if due > now {
                        self.wake_by(due);
                        break;
                    }
                    due
                }
            };
            s.issued += 1;
            s.client.handle_permit(sent, now, &mut self.fx);
        }
        if let Some(t) = s.client.poll_timeout() {
            self.wake_by(t);
        }
    }

    /// Carries out the pending effects, in order (and those that the
    /// client's answers to them push).
    fn apply<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, now: Instant) {
        while !self.fx.is_empty() {
            let mut work = mem::take(&mut self.fx_work);
            self.fx.take_into(&mut work);
            for effect in work.drain(..) {
                match effect {
                    Effect::Answered { sent } => self.tally.answered(&mut s.measured, sent, now),
                    Effect::Received(n) => {
                        if self.tally.received(n, now) {
                            s.window_bytes += n as u64;
                        }
                    }
                    Effect::Failed(kind) => {
                        self.tally.count(kind);
                        s.errors += 1;
                    }
                    Effect::Open {
                        link,
                        port,
                        nodelay,
                    } => self.open_link(i, s, link, port, nodelay, now),
                    Effect::StartTls(link) => self.start_tls(s, link, now),
                    Effect::Close { link, reset } => self.close_link(s, link, reset),
                }
            }
            self.fx_work = work;
        }
    }

    /// Starts a non-blocking connect for `link` (TCP_NODELAY, if asked, set
    /// before the handshake ends, which Linux allows).
    fn open_link<C: LoadClient>(
        &mut self,
        i: usize,
        s: &mut Slot<C>,
        link: Link,
        port: Option<u16>,
        nodelay: bool,
        now: Instant,
    ) {
        self.close_link(s, link, false);
        let tls = match &self.plan.tls {
            None => None,
            Some(_) if self.plan.explicit_tls => None,
            Some((config, name)) => match ClientConnection::new(Arc::clone(config), name.clone()) {
                Ok(c) => Some(Box::new(c)),
                Err(_) => {
                    self.tally.count(ErrorKind::Tls);
                    s.errors += 1;
                    s.client
                        .handle_failure(link, ErrorKind::Tls, now, &mut self.fx);
                    return;
                }
            },
        };
        let addr = port.map_or(self.plan.addr, |p| SocketAddr::new(self.plan.addr.ip(), p));
        let token = Token(i * LINKS + link.index());
        let attempt = connect_from(addr, i).and_then(|mut stream| {
            if nodelay {
                stream.set_nodelay(true)?;
            }
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match attempt {
            Ok(stream) => {
                let limit = now
                    + if self.running {
                        ATTEMPT_TIMEOUT
                    } else {
                        CONNECT_TIMEOUT
                    };
                let l = &mut s.links[link.index()];
                l.stream = Some(stream);
                l.tls = tls;
                l.connecting = Some(limit);
                l.generation = l.generation.wrapping_add(1);
                self.connecting += 1;
                self.wake_by(limit);
            }
            // A socket that cannot even be created (out of descriptors,
            // ports) is a failed connect.
            Err(_) => {
                self.tally.count(ErrorKind::Connect);
                s.errors += 1;
                s.client
                    .handle_failure(link, ErrorKind::Connect, now, &mut self.fx);
            }
        }
    }

    /// [`Effect::StartTls`]: gives the open `link` its TLS connection and
    /// puts it back to connecting; the next pump (the client is driven
    /// after every batch of effects) starts the handshake. Where TLS cannot
    /// start (no link, TLS already, not an explicit TLS run), a `tls` error.
    fn start_tls<C: LoadClient>(&mut self, s: &mut Slot<C>, link: Link, now: Instant) {
        let l = &s.links[link.index()];
        let tls = match &self.plan.tls {
            Some((config, name))
                if self.plan.explicit_tls
                    && l.stream.is_some()
                    && l.connecting.is_none()
                    && l.tls.is_none() =>
            {
                ClientConnection::new(Arc::clone(config), name.clone()).ok()
            }
            _ => None,
        };
        let Some(tls) = tls else {
            self.close_link(s, link, false);
            self.tally.count(ErrorKind::Tls);
            s.errors += 1;
            s.client
                .handle_failure(link, ErrorKind::Tls, now, &mut self.fx);
            return;
        };
        let limit = now
            + if self.running {
                ATTEMPT_TIMEOUT
            } else {
                CONNECT_TIMEOUT
            };
        let l = &mut s.links[link.index()];
        l.tls = Some(Box::new(tls));
        l.connecting = Some(limit);
        l.upgrading = true;
        self.connecting += 1;
        self.wake_by(limit);
    }

    /// Closes `link` if it is open (with a reset, if asked).
    fn close_link<C>(&mut self, s: &mut Slot<C>, link: Link, reset: bool) {
        let l = &mut s.links[link.index()];
        if let Some(stream) = l.stream.take() {
            if reset {
                abort_on_close(&stream);
            }
            if l.connecting.take().is_some() {
                self.connecting -= 1;
            }
        }
        let generation = l.generation;
        *l = LinkState {
            generation,
            ..LinkState::default()
        };
    }

    /// The loop saw `link` fail: close it, count `kind`, tell the client.
    fn fail<C: LoadClient>(
        &mut self,
        i: usize,
        s: &mut Slot<C>,
        link: Link,
        kind: ErrorKind,
        now: Instant,
    ) {
        self.close_link(s, link, false);
        self.tally.count(kind);
        s.errors += 1;
        s.client.handle_failure(link, kind, now, &mut self.fx);
        self.settle(i, s, now);
    }

    /// Moves client `i` forward until it would block, or until it has had
    /// [`MAX_ROUNDS`] (then it is driven again next turn).
    fn drive<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for link in Link::ALL {
                moved |= self.pump(i, s, link);
            }
            if !moved {
                return;
            }
        }
        if !s.again {
            s.again = true;
            self.again.push(i);
        }
    }

    /// One write and one read on `link`; whether anything moved.
    fn pump<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, link: Link) -> bool {
        let k = link.index();
        if s.links[k].stream.is_none() {
            return false;
        }
        if s.links[k].connecting.is_some() {
            if !s.links[k].upgrading {
                return false;
            }
            // A TLS handshake the client asked for: it moved if it ended.
            self.handshake(i, s, link);
            return s.links[k].connecting.is_none();
        }
        if s.links[k].tls.is_some() {
            return self.pump_tls(i, s, link);
        }
        let mut moved = false;
        if s.links[k].can_write {
            let out = s.client.poll_output(link);
            if !out.is_empty() {
                let l = &mut s.links[k];
                let Some(stream) = l.stream.as_mut() else {
                    return moved;
                };
                let len = out.len();
                match stream.write(out) {
                    Ok(0) => {
                        self.fail(i, s, link, ErrorKind::Closed, Instant::now());
                        return true;
                    }
                    Ok(n) => {
                        moved = true;
                        // A short write means the send buffer is full.
                        l.can_write = n == len;
                        s.client.consume_output(link, n, Instant::now());
                    }
                    Err(e) => match classify(&e) {
                        Outcome::Block => l.can_write = false,
                        Outcome::Retry => moved = true,
                        Outcome::Fail(kind) => {
                            let kind = if !l.heard && refused(&e) {
                                ErrorKind::Connect
                            } else {
                                kind
                            };
                            self.fail(i, s, link, kind, Instant::now());
                            return true;
                        }
                    },
                }
            }
        }
        let l = &mut s.links[k];
        if !l.can_read || l.ended {
            return moved;
        }
        let Some(stream) = l.stream.as_mut() else {
            return moved;
        };
        let generation = l.generation;
        match stream.read(&mut self.scratch) {
            Ok(0) => {
                l.ended = true;
                l.can_read = false;
                let now = Instant::now();
                s.client.handle_eof(link, now, &mut self.fx);
                self.settle(i, s, now);
                true
            }
            Ok(n) => {
                l.heard = true;
                // A short read drained the socket; if the FIN had come
                // before it, nothing follows.
                let drained = n < self.scratch.len();
                let at_end = drained && l.peer_closed;
                l.can_read = !drained;
                let now = Instant::now();
                s.client
                    .handle_input(link, &self.scratch[..n], now, &mut self.fx);
                self.settle(i, s, now);
                let l = &mut s.links[k];
                if at_end && l.stream.is_some() && l.generation == generation && !l.ended {
                    l.ended = true;
                    l.can_read = false;
                    s.client.handle_eof(link, now, &mut self.fx);
                    self.settle(i, s, now);
                }
                true
            }
            Err(e) => match classify(&e) {
                Outcome::Block => {
                    l.can_read = false;
                    moved
                }
                Outcome::Retry => true,
                Outcome::Fail(kind) => {
                    let kind = if !l.heard && refused(&e) {
                        ErrorKind::Connect
                    } else {
                        kind
                    };
                    self.fail(i, s, link, kind, Instant::now());
                    true
                }
            },
        }
    }
}
impl Worker<'_> {
    /// [`Worker::pump`] for a TLS link: sends what rustls holds, then
    /// encrypts one record of the client's output (only once the last is
    /// sent); reads ciphertext, and hands the client the plaintext it
    /// decrypts to. Whether anything moved.
    fn pump_tls<C: LoadClient>(&mut self, i: usize, s: &mut Slot<C>, link: Link) -> bool {
        let k = link.index();
        let mut moved = false;
        let now = Instant::now();
        {
            let l = &mut s.links[k];
            let (Some(stream), Some(tls)) = (l.stream.as_mut(), l.tls.as_mut()) else {
                return false;
            };
            if l.can_write {
                if !tls.wants_write() {
                    let out = s.client.poll_output(link);
                    if !out.is_empty() {
                        let n = out.len().min(TLS_RECORD);
                        match tls.writer().write(&out[..n]) {
                            Ok(n) => {
                                moved = n > 0;
                                s.client.consume_output(link, n, now);
                            }
                            Err(_) => {
                                self.fail(i, s, link, ErrorKind::Tls, now);
                                return true;
                            }
                        }
                    }
                }
                match flush_tls(stream, tls, &mut l.can_write) {
                    Ok(sent) => moved |= sent,
                    Err(e) => {
                        let kind = match classify(&e) {
                            Outcome::Fail(kind) => kind,
                            _ => ErrorKind::Io,
                        };
                        self.fail(i, s, link, kind, now);
                        return true;
                    }
                }
            }
            if !l.can_read || l.ended {
                return moved;
            }
        }
        let l = &mut s.links[k];
        let (Some(stream), Some(tls)) = (l.stream.as_mut(), l.tls.as_mut()) else {
            return moved;
        };
        let mut eof = false;
        match tls.read_tls(stream) {
            Ok(0) => eof = true,
            Ok(_) => {
                l.heard = true;
                // Ciphertext read is progress even when it completes no
                // record yet (a record is larger than one read_tls): the
                // socket may hold the rest with no edge to come.
                moved = true;
                if tls.process_new_packets().is_err() {
                    // The alert, if it goes.
                    let _ = tls.write_tls(stream);
                    self.fail(i, s, link, ErrorKind::Tls, now);
                    return true;
                }
            }
            Err(e) => match classify(&e) {
                Outcome::Block => l.can_read = false,
                Outcome::Retry => moved = true,
                Outcome::Fail(kind) => {
                    self.fail(i, s, link, kind, now);
                    return true;
                }
            },
        }
        let generation = l.generation;
        loop {
            let l = &mut s.links[k];
            if l.generation != generation {
                return true;
            }
            let Some(tls) = l.tls.as_mut() else {
                return true;
            };
            match tls.reader().read(&mut self.scratch) {
                // close_notify: the end of the stream.
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    moved = true;
                    s.client
                        .handle_input(link, &self.scratch[..n], now, &mut self.fx);
                    self.settle(i, s, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The connection ended without close_notify.
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let l = &mut s.links[k];
        if eof && l.stream.is_some() && l.generation == generation && !l.ended {
            l.ended = true;
            l.can_read = false;
            s.client.handle_eof(link, now, &mut self.fx);
            self.settle(i, s, now);
            moved = true;
        }
        moved
    }
}

/// Sends what `tls` holds until it is all sent or the socket would block;
/// whether anything was sent.
fn flush_tls(
    stream: &mut TcpStream,
    tls: &mut ClientConnection,
    can_write: &mut bool,
) -> io::Result<bool> {
    let mut sent = false;
    while *can_write && tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::BrokenPipe.into()),
            Ok(_) => sent = true,
            Err(e) => match classify(&e) {
                Outcome::Block => *can_write = false,
                Outcome::Retry => {}
                Outcome::Fail(_) => return Err(e),
            },
        }
    }
    Ok(sent)
}

/// Moves a TLS handshake on until it is over (`Ok(true)`) or the socket
/// would block (`Ok(false)`). A connect refused is a `connect` error; a
/// server that closes, resets or answers what is not TLS, a `tls` error.
fn handshake_step(
    stream: &mut TcpStream,
    tls: &mut ClientConnection,
    can_read: &mut bool,
    can_write: &mut bool,
) -> Result<bool, ErrorKind> {
    let failed = |e: &io::Error| {
        if refused(e) {
            ErrorKind::Connect
        } else {
            ErrorKind::Tls
        }
    };
    loop {
        flush_tls(stream, tls, can_write).map_err(|e| failed(&e))?;
        if !tls.is_handshaking() {
            return Ok(true);
        }
        if !*can_read {
            return Ok(false);
        }
        match tls.read_tls(stream) {
            Ok(0) => return Err(ErrorKind::Tls),
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    let _ = tls.write_tls(stream);
                    return Err(ErrorKind::Tls);
                }
            }
            Err(e) => match classify(&e) {
                Outcome::Block => *can_read = false,
                Outcome::Retry => {}
                Outcome::Fail(_) => return Err(failed(&e)),
            },
        }
    }
}

/// Makes closing `stream` reset the connection (SO_LINGER 0): no
/// TIME_WAIT on either side. Only for connections whose dialogue is over.
fn abort_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid descriptor and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A timerfd: wakes the poll at a due time with microsecond precision.
struct Timer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    fn new(registry: &Registry) -> io::Result<Timer> {
        // SAFETY: timerfd_create has no memory arguments; the result is
        // checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), TIMER, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Fires once `after` from now, for the deadline `at`. Re-arming resets
    /// the expiry count, so the descriptor never needs reading; a new expiry
    /// is a new edge.
    /// How long a loop may wait in `poll` to wake at `wake`: not at all if
    /// it has queued work or `wake` has passed; otherwise until `wake`, at
    /// most [`POLL_TICK`], with this timer armed for a wake-up finer than
    /// `poll`'s millisecond timeout.
    fn wait_until(&mut self, wake: Instant, busy: bool) -> Duration {
        let now = Instant::now();
        if busy || wake <= now {
            return Duration::ZERO;
        }
        let left = wake - now;
        if left < POLL_TICK {
            self.arm(wake, left);
        }
        left.min(POLL_TICK)
    }

    fn arm(&mut self, at: Instant, after: Duration) {
        if self.armed == Some(at) {
            return;
        }
        // A zero it_value would disarm the timer.
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        // If it could not be armed, the poll's own timeout (milliseconds)
        // still wakes the loop.
        self.armed = (r == 0).then_some(at);
    }
}

/// CPU seconds (user + system) the calling thread has used.
fn thread_cpu() -> f64 {
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::{self, Exchange, Expect};
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::AtomicBool;
    use std::thread::JoinHandle;

    /// How a test server treats each connection.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Echoes every byte.
        Echo,
        /// Echoes, but flips the first byte of every n-th read's echo
        /// (counting the reads of all connections).
        Corrupt(u64),
        /// Reads and never answers.
        Swallow,
        /// Echoes the first half of the first read, then nothing more.
        Half,
        /// Closes every connection on its first bytes.
        Hangup,
        /// Sends a refusal as soon as it accepts, then closes.
        Refuse,
    }

    /// A server on 127.0.0.1:0: a thread per connection (or, `serial`, one
    /// connection at a time on the accepting thread). Dropping it stops the
    /// accept loop; connection threads end when their client closes.
    struct TestServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        accept: Option<JoinHandle<()>>,
    }

    impl TestServer {
        fn start(behaviour: Behaviour) -> TestServer {
            TestServer::with(behaviour, false)
        }

        fn with(behaviour: Behaviour, serial: bool) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = stop.clone();
            // Reads over all connections, for `Corrupt`.
            let reads = Arc::new(AtomicU64::new(0));
            let accept = thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let reads = reads.clone();
                    if serial {
                        serve(conn, behaviour, &reads);
                    } else {
                        thread::spawn(move || serve(conn, behaviour, &reads));
                    }
                }
            });
            TestServer {
                addr,
                stop,
                accept: Some(accept),
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag.
            let _ = std::net::TcpStream::connect(self.addr);
            if let Some(h) = self.accept.take() {
                let _ = h.join();
            }
        }
    }

    fn serve(mut conn: std::net::TcpStream, behaviour: Behaviour, all_reads: &AtomicU64) {
        // A backstop: no server thread outlives a stuck client for long.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = conn.set_nodelay(true);
        if let Behaviour::Refuse = behaviour {
            let _ = conn.write_all(b"busy\r\n");
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut reads = 0u64;
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            reads += 1;
            let reply: &[u8] = match behaviour {
                Behaviour::Echo => &buf[..n],
                Behaviour::Corrupt(every) => {
                    if (all_reads.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every) {
                        buf[0] ^= 0xff;
                    }
                    &buf[..n]
                }
                Behaviour::Swallow => &[],
                Behaviour::Half if reads == 1 => &buf[..n / 2],
                Behaviour::Half => &[],
                Behaviour::Hangup | Behaviour::Refuse => {
                    let _ = conn.shutdown(Shutdown::Both);
                    return;
                }
            };
            if conn.write_all(reply).is_err() {
                return;
            }
        }
    }

    fn echo(size: usize) -> Exchange {
        Exchange {
            request: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
            expect: Expect::Echo,
        }
    }

    fn spec(addr: SocketAddr, workload: Workload, clients: usize) -> LoadSpec {
        LoadSpec {
            addr,
            workload,
            clients,
            threads: 2,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            rate: None,
            progress: None,
            tls: None,
        }
    }

    fn rr(depth: usize) -> Workload {
        Workload::RequestResponse {
            exchange: echo(64),
            depth,
        }
    }

    /// Runs `spec` and checks the invariants every run must keep.
    fn run_ok(spec: &LoadSpec) -> LoadResult {
        let r = run(spec).expect("local failure");
        assert!(r.seconds > 0.0);
        assert_eq!(r.client_threads, spec.threads.clamp(1, spec.clients.max(1)));
        let h = r.histogram.as_ref().expect("histogram");
        assert_eq!(h.len(), r.requests);
        r
    }

    /// A result for failure messages, without the histogram's buckets.
    fn show(r: &LoadResult) -> String {
        let mut r = r.clone();
        r.histogram = None;
        format!("{r:?}")
    }

    fn assert_clean(r: &LoadResult) {
        assert!(r.requests > 0, "{}", show(r));
        assert!(r.bytes > 0, "{}", show(r));
        assert_eq!(r.errors.total(), 0, "{}", show(r));
        assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
    }

    #[test]
    fn rr_against_echo_is_clean_and_reports_progress() {
        let server = TestServer::start(Behaviour::Echo);
        let progress = Arc::new(AtomicU64::new(0));
        let mut s = spec(server.addr, rr(1), 8);
        s.progress = Some(progress.clone());
        let r = run_ok(&s);
        assert_clean(&r);
        assert_eq!(r.bytes, r.requests * 64);
        // Warm-up answers count for progress, not for the result.
        assert!(progress.load(Ordering::Relaxed) >= r.requests);
        assert!(r.client_cpu_seconds >= 0.0);
    }

    #[test]
    fn pipeline_against_echo_is_clean() {
        let server = TestServer::start(Behaviour::Echo);
        let r = run_ok(&spec(server.addr, rr(16), 4));
        assert_clean(&r);
    }

    #[test]
    fn stream_against_echo_is_clean() {
        let server = TestServer::start(Behaviour::Echo);
        let r = run_ok(&spec(server.addr, Workload::Stream { chunk: 64 * 1024 }, 3));
        assert_clean(&r);
        // Odd chunk sizes split stamps and chunks across reads.
        let r = run_ok(&spec(server.addr, Workload::Stream { chunk: 1000 }, 2));
        assert_clean(&r);
    }

    #[test]
    fn connect_against_echo_is_clean() {
        let server = TestServer::start(Behaviour::Echo);
        let r = run_ok(&spec(
            server.addr,
            Workload::Connect { exchange: echo(64) },
            4,
        ));
        assert_clean(&r);
    }

    #[test]
    fn idle_connections_are_held() {
        let server = TestServer::start(Behaviour::Echo);
        let workload = Workload::Idle {
            idle: 50,
            exchange: echo(64),
        };
        let r = run_ok(&spec(server.addr, workload, 4));
        assert_clean(&r);
        assert_eq!(r.idle_held, 50);
    }

    #[test]
    fn idle_connections_refused_are_not_held() {
        let server = TestServer::start(Behaviour::Refuse);
        let workload = Workload::Idle {
            idle: 20,
            exchange: echo(64),
        };
        let r = run_ok(&spec(server.addr, workload, 2));
        assert_eq!(r.idle_held, 0, "{}", show(&r));
        assert_eq!(r.requests, 0, "{}", show(&r));
        // The measuring connections got a wrong answer or a close.
        assert_eq!(
            r.errors.mismatch + r.errors.closed + r.errors.io,
            2,
            "{}",
            show(&r)
        );
    }

    #[test]
    fn slow_client_does_not_hurt_a_threaded_server() {
        let server = TestServer::start(Behaviour::Echo);
        let workload = Workload::Slow { exchange: echo(64) };
        let r = run_ok(&spec(server.addr, workload, 4));
        assert_clean(&r);
    }

    #[test]
    fn slow_client_blocks_a_serial_server() {
        let server = TestServer::with(Behaviour::Echo, true);
        let workload = Workload::Slow { exchange: echo(64) };
        let r = run_ok(&spec(server.addr, workload, 3));
        assert_eq!(r.requests, 0, "{}", show(&r));
        assert_eq!(r.errors.stalled, 3, "{}", show(&r));
    }

    #[test]
    fn open_loop_runs_on_schedule() {
        let server = TestServer::start(Behaviour::Echo);
        for workload in [
            rr(1),
            rr(4),
            Workload::Connect { exchange: echo(64) },
            Workload::Idle {
                idle: 5,
                exchange: echo(64),
            },
        ] {
            let mut s = spec(server.addr, workload, 4);
            s.rate = Some(2000.0);
            let r = run_ok(&s);
            assert_clean(&r);
        }
        // Stream ignores the rate.
        let mut s = spec(server.addr, Workload::Stream { chunk: 4096 }, 2);
        s.rate = Some(10.0);
        assert_clean(&run_ok(&s));
    }

    #[test]
    fn open_loop_with_nothing_due_is_not_stalled() {
        // One request per connection every 10 s: most connections have
        // nothing due in the window, which is not a stall.
        let server = TestServer::start(Behaviour::Echo);
        let mut s = spec(server.addr, rr(1), 4);
        s.rate = Some(0.4);
        let r = run_ok(&s);
        assert_eq!(r.errors.total(), 0, "{}", show(&r));
    }

    #[test]
    fn corruption_is_a_mismatch() {
        let server = TestServer::start(Behaviour::Corrupt(5));
        for workload in [
            rr(1),
            rr(8),
            Workload::Stream { chunk: 16 * 1024 },
            Workload::Connect { exchange: echo(64) },
        ] {
            let r = run_ok(&spec(server.addr, workload, 4));
            assert!(r.errors.mismatch > 0, "{}", show(&r));
        }
    }

    #[test]
    fn a_server_that_never_answers_is_stalled() {
        for behaviour in [Behaviour::Swallow, Behaviour::Half] {
            let server = TestServer::start(behaviour);
            for workload in [rr(1), Workload::Stream { chunk: 4096 }] {
                let r = run_ok(&spec(server.addr, workload, 4));
                assert_eq!(r.requests, 0, "{}", show(&r));
                assert_eq!(r.errors.stalled, 4, "{}", show(&r));
            }
            let r = run_ok(&spec(
                server.addr,
                Workload::Connect { exchange: echo(64) },
                4,
            ));
            assert_eq!(r.requests, 0, "{}", show(&r));
            assert!(r.errors.stalled > 0, "{}", show(&r));
        }
    }

    #[test]
    fn a_server_that_hangs_up_is_closed() {
        let server = TestServer::start(Behaviour::Hangup);
        let r = run_ok(&spec(server.addr, rr(1), 4));
        assert_eq!(r.requests, 0, "{}", show(&r));
        assert_eq!(r.errors.closed + r.errors.io, 4, "{}", show(&r));
        assert_eq!(r.errors.stalled, 0, "{}", show(&r));
    }

    #[test]
    fn a_server_that_never_accepts_is_stalled_not_hung() {
        // The kernel completes handshakes into the backlog; nothing more.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let r = run_ok(&spec(addr, rr(1), 4));
        assert_eq!(r.requests, 0, "{}", show(&r));
        assert_eq!(r.errors.stalled, 4, "{}", show(&r));
        drop(listener);
    }

    #[test]
    fn no_server_is_connect_errors() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let r = run_ok(&spec(addr, rr(1), 4));
        assert_eq!(r.requests, 0);
        assert_eq!(r.errors.connect, 4, "{}", show(&r));
        let r = run_ok(&spec(addr, Workload::Connect { exchange: echo(64) }, 2));
        assert!(r.errors.connect > 0, "{}", show(&r));
        let idle = Workload::Idle {
            idle: 10,
            exchange: echo(64),
        };
        let r = run_ok(&spec(addr, idle, 2));
        assert_eq!(r.errors.connect, 12, "{}", show(&r));
        assert_eq!(r.idle_held, 0);
    }

    /// A certificate for `localhost`: its DER, and a rustls server
    /// configuration that serves it.
    fn tls_pair() -> (Vec<u8>, Arc<rustls::ServerConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = made.cert.der().to_vec();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(der.clone())], key)
            .unwrap();
        (der, Arc::new(config))
    }

    /// A TLS echo server on 127.0.0.1:0, a thread per connection; counts
    /// the connections that resumed a session. Threads end with the test
    /// process.
    fn tls_echo_server(config: Arc<rustls::ServerConfig>) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let resumed = Arc::new(AtomicU64::new(0));
        let counter = resumed.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (config, counter) = (config.clone(), counter.clone());
                thread::spawn(move || {
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut stream = rustls::StreamOwned::new(tls, conn);
                    let mut buf = [0u8; 4096];
                    let mut first = true;
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if first {
                                    first = false;
                                    if stream.conn.handshake_kind()
                                        == Some(rustls::HandshakeKind::Resumed)
                                    {
                                        counter.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, resumed)
    }

    fn tls(cert: &[u8], resume: bool) -> Option<LoadTls> {
        Some(LoadTls {
            cert: cert.to_vec(),
            resume,
            alpn: None,
            explicit: false,
        })
    }

    #[test]
    fn tls_request_response_and_connect_are_clean() {
        let (cert, config) = tls_pair();
        let (addr, resumed) = tls_echo_server(config.clone());
        let mut s = spec(addr, rr(1), 4);
        s.tls = tls(&cert, true);
        let r = run_ok(&s);
        assert_clean(&r);
        assert_eq!(r.bytes, r.requests * 64);
        s.workload = rr(16);
        assert_clean(&run_ok(&s));
        // A connection per request, with and without resumption.
        s.workload = Workload::Connect { exchange: echo(64) };
        assert_clean(&run_ok(&s));
        assert!(resumed.load(Ordering::Relaxed) > 0);
        // A server of its own, so that no late connection of the run
        // before is counted.
        let (addr, resumed) = tls_echo_server(config);
        s.addr = addr;
        s.tls = tls(&cert, false);
        assert_clean(&run_ok(&s));
        assert_eq!(resumed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tls_against_a_plain_server_is_tls_errors_not_a_hang() {
        let (cert, _) = tls_pair();
        for behaviour in [Behaviour::Echo, Behaviour::Hangup, Behaviour::Refuse] {
            let server = TestServer::start(behaviour);
            let mut s = spec(server.addr, rr(1), 2);
            s.tls = tls(&cert, true);
            let r = run_ok(&s);
            assert_eq!(r.requests, 0, "{}", show(&r));
            assert!(r.errors.tls >= 2, "{}", show(&r));
            assert_eq!(r.errors.stalled, 0, "{}", show(&r));
        }
    }

    #[test]
    fn tls_to_no_server_is_connect_errors() {
        let (cert, _) = tls_pair();
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let mut s = spec(addr, rr(1), 2);
        s.tls = tls(&cert, true);
        let r = run_ok(&s);
        assert_eq!(r.requests, 0);
        assert_eq!(r.errors.connect, 2, "{}", show(&r));
    }

    #[test]
    fn more_threads_than_clients() {
        let server = TestServer::start(Behaviour::Echo);
        let mut s = spec(server.addr, rr(1), 2);
        s.threads = 8;
        let r = run_ok(&s);
        assert_eq!(r.client_threads, 2);
        assert_clean(&r);
    }

    #[test]
    fn bad_specs_are_refused() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut s = spec(addr, Workload::Stream { chunk: 0 }, 1);
        assert!(run(&s).is_err());
        s.workload = rr(1);
        s.rate = Some(-1.0);
        assert!(run(&s).is_err());
    }

    /// How the tiny FTP server misbehaves, if it does.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum FtpFault {
        None,
        /// Flips one byte in the middle of every file sent.
        WrongByte,
        /// Answers `PASS` with 530.
        WrongCode,
        /// Sends one byte fewer than the file has.
        Short,
        /// Answers `EPSV` with a port nobody listens on.
        DeadPort,
    }

    /// A tiny FTP server on 127.0.0.1:0, a thread per session: enough of
    /// RFC 959/2428 to serve one file of `size` fixture bytes anonymously
    /// (a multi-line greeting, USER, PASS, TYPE, EPSV, RETR, QUIT). Its
    /// threads end with the test process.
    fn ftp_server(size: u64, fault: FtpFault) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let period = scenario::fixture_pattern();
        let mut file: Vec<u8> = period.iter().cycle().take(size as usize).copied().collect();
        if fault == FtpFault::WrongByte {
            file[size as usize / 2] ^= 0x01;
        }
        if fault == FtpFault::Short {
            file.pop();
        }
        let file = Arc::new(file);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let file = file.clone();
                thread::spawn(move || {
                    let _ = ftp_session(conn, &file, fault);
                });
            }
        });
        addr
    }

    fn ftp_session(conn: std::net::TcpStream, file: &[u8], fault: FtpFault) -> io::Result<()> {
        use std::io::BufRead;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = conn.try_clone()?;
        let mut lines = io::BufReader::new(conn);
        out.write_all(b"220-tiny FTP\r\n  for the bench tests\r\n220 ready\r\n")?;
        let mut passive: Option<TcpListener> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end();
            let verb = cmd.split(' ').next().unwrap_or("");
            match verb {
                "USER" => out.write_all(b"331 any password\r\n")?,
                "PASS" if fault == FtpFault::WrongCode => out.write_all(b"530 no\r\n")?,
                "PASS" => out.write_all(b"230-welcome\r\n230 in\r\n")?,
                "TYPE" => out.write_all(b"200 binary\r\n")?,
                "EPSV" => {
                    let l = TcpListener::bind("127.0.0.1:0")?;
                    let port = l.local_addr()?.port();
                    if fault == FtpFault::DeadPort {
                        drop(l);
                    } else {
                        passive = Some(l);
                    }
                    write!(out, "229 Entering Extended Passive Mode (|||{port}|)\r\n")?;
                }
                "RETR" => {
                    let Some(l) = passive.take() else {
                        out.write_all(b"425 no data connection\r\n")?;
                        continue;
                    };
                    let (mut data, _) = l.accept()?;
                    out.write_all(b"150 here it comes\r\n")?;
                    data.write_all(file)?;
                    drop(data);
                    out.write_all(b"226 done\r\n")?;
                }
                "QUIT" => {
                    out.write_all(b"221 bye\r\n")?;
                    return Ok(());
                }
                _ => out.write_all(b"502 no\r\n")?,
            }
        }
    }

    fn sessions(size: u64) -> Workload {
        Workload::FtpSessions {
            file: "f.bin".into(),
            size,
        }
    }

    fn download(size: u64) -> Workload {
        Workload::FtpDownload {
            file: "f.bin".into(),
            size,
        }
    }

    #[test]
    fn ftp_sessions_against_a_tiny_server_are_clean() {
        // Not a multiple of the pattern's period, nor of a read.
        let size = 64 * 1024 + 123;
        let addr = ftp_server(size, FtpFault::None);
        let progress = Arc::new(AtomicU64::new(0));
        let mut s = spec(addr, sessions(size), 4);
        s.progress = Some(progress.clone());
        let r = run_ok(&s);
        assert_clean(&r);
        assert!(progress.load(Ordering::Relaxed) >= r.requests);
        // An empty file is a session too.
        let addr = ftp_server(0, FtpFault::None);
        let r = run_ok(&spec(addr, sessions(0), 2));
        assert!(r.requests > 0, "{}", show(&r));
        assert_eq!(r.errors.total(), 0, "{}", show(&r));
    }

    #[test]
    fn ftp_download_against_a_tiny_server_is_clean() {
        let size = 3 * 1024 * 1024 + 5;
        let addr = ftp_server(size, FtpFault::None);
        let r = run_ok(&spec(addr, download(size), 1));
        assert_clean(&r);
        let r = run_ok(&spec(addr, download(size), 3));
        assert_clean(&r);
    }

    #[test]
    fn ftp_open_loop_sessions_are_clean() {
        let addr = ftp_server(1000, FtpFault::None);
        let mut s = spec(addr, sessions(1000), 4);
        s.rate = Some(200.0);
        assert_clean(&run_ok(&s));
        // A download ignores the rate.
        let mut s = spec(addr, download(1000), 1);
        s.rate = Some(1.0);
        assert_clean(&run_ok(&s));
    }

    #[test]
    fn ftp_faults_are_mismatches() {
        let size = 100_000;
        for fault in [FtpFault::WrongByte, FtpFault::WrongCode, FtpFault::Short] {
            let addr = ftp_server(size, fault);
            for workload in [sessions(size), download(size)] {
                let r = run_ok(&spec(addr, workload, 2));
                assert_eq!(r.requests, 0, "{}", show(&r));
                assert!(r.errors.mismatch > 0, "{}", show(&r));
                assert_eq!(r.errors.total(), r.errors.mismatch, "{}", show(&r));
            }
        }
    }

    #[test]
    fn ftp_without_a_server_is_connect_errors() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let r = run_ok(&spec(addr, sessions(10), 2));
        assert_eq!(r.requests, 0);
        assert!(r.errors.connect > 0, "{}", show(&r));
        assert_eq!(r.errors.total(), r.errors.connect, "{}", show(&r));
    }

    #[test]
    fn ftp_a_refused_data_connection_is_a_connect_error() {
        let addr = ftp_server(10, FtpFault::DeadPort);
        for workload in [sessions(10), download(10)] {
            let r = run_ok(&spec(addr, workload, 2));
            assert_eq!(r.requests, 0, "{}", show(&r));
            assert!(r.errors.connect > 0, "{}", show(&r));
            assert_eq!(r.errors.total(), r.errors.connect, "{}", show(&r));
        }
    }

    #[test]
    fn ftp_a_server_that_never_greets_is_stalled() {
        // The kernel completes handshakes into the backlog; nothing more.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let r = run_ok(&spec(addr, sessions(10), 3));
        assert_eq!(r.requests, 0, "{}", show(&r));
        assert_eq!(r.errors.stalled, 3, "{}", show(&r));
        drop(listener);
    }
}
