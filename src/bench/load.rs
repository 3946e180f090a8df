//! The bench's load generator: drives one server with a scenario's
//! [`Workload`] from several threads and measures what comes back.
//!
//! [`run`] first opens whatever the workload holds beside the measuring
//! connections (the idle connections of `Idle`, the staller of `Slow`) from
//! the calling thread, then starts `threads` load threads, each with its own
//! mio `Poll` and its share of the measuring connections. One load thread:
//!
//! 1. Starts non-blocking connects for all its connections and waits (at most
//!    `CONNECT_TIMEOUT`) until each is up or has failed (`errors.connect`).
//!    (`Connect` has nothing to do here: its slots connect in the loop.)
//! 2. Reports at the gate and waits for the shared clock: the calling
//!    thread sets it once every thread is connected, so all threads warm up
//!    and measure over the same window.
//! 3. Runs its event loop until the clock's end: wait (a poll with a timeout,
//!    never longer than `POLL_TICK`) for readiness or the nearest deadline;
//!    let each ready connection write and read until it would block, checking
//!    every byte it reads against what it must be; start the requests and
//!    connects that are due; add the answers completed to the shared progress
//!    counter once per turn. An answer completed inside the timed window
//!    counts, and its latency goes into the thread's histogram.
//! 4. Samples its own CPU time (`RUSAGE_THREAD`) as the timed window opens and
//!    when the loop ends, counts its connections that owed an answer and got
//!    none in the window (`stalled`), and returns what it measured.
//!
//! The calling thread merges the threads' results, checks which idle
//! connections the server kept, and closes everything.
//!
//! Every socket is registered once, edge-triggered, for both directions.
//! Buffers are allocated per connection or per thread before the run (the
//! request repeated `depth` times, the expected answer, a read scratch, a
//! ring of send times), so the steady state allocates nothing. Reads are
//! verified in place as they arrive; nothing is copied.
//!
//! FTP (`FtpSessions`, `FtpDownload`) runs on its own loop of the same
//! shape (`FtpWorker`): each client is a state machine over a control and
//! a data connection (tokens `2i`, `2i + 1`), replies parsed as they arrive
//! (multi-line ones included) and checked code by code, the data checked
//! byte for byte against the fixture pattern and its length. Any other code
//! or byte is a `mismatch`; a failed connect is `connect`; a session that
//! moves no byte for `FTP_STUCK_AFTER` is `stalled`; after any error the
//! client starts a new session after `RETRY_BACKOFF`. Connections the
//! server has closed (the data at its end, the control after 221) are
//! closed with a reset, so that no TIME_WAIT is left: thousands of sessions
//! a second over loopback would otherwise use up the ports in seconds.
//!
//! Open loop (`rate`): each measuring connection's k-th request has an
//! intended send time `start + phase + k / r`, where r is the connection's
//! share of the rate and `phase` staggers the connections evenly over one
//! period. A request is sent when due and a slot in its pipeline is free;
//! its latency counts from the intended time, so a server that falls behind
//! shows it in the tail instead of slowing the load down (coordinated
//! omission). A timerfd wakes the thread at due times with microsecond
//! precision, which an epoll timeout (milliseconds) cannot.

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

use crate::bench::model::{Errors, Latency, LoadResult};
use crate::bench::scenario::{self, Workload};

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
}

/// How long a load thread waits for its measuring connections. Loopback
/// connects take microseconds; a server whose backlog is full drops SYNs and
/// would otherwise keep us waiting through the kernel's retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the idle connections and the staller may take to open, in all.
/// Together with [`CONNECT_TIMEOUT`] this bounds a run at warm-up + duration
/// + 10 s (and a few poll ticks) whatever the server does.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `Connect`: one connection attempt's limit. Long enough for one SYN
/// retransmission (1 s) to succeed; a server that needs more is counted as
/// refusing.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// `Connect`: the pause after a failed attempt before the slot tries again,
/// so a dead server does not turn the slot into a busy loop.
const RETRY_BACKOFF: Duration = Duration::from_millis(10);

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

/// Per-thread read buffer. Answers are verified straight out of it.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Per-thread read buffer of the FTP clients: larger than a loopback
/// segment (64 KiB), so that a read that returns less than this has emptied
/// the socket, and a data connection whose end had already come is seen to
/// be over without one more read.
const FTP_SCRATCH_SIZE: usize = 256 * 1024;

/// Idle connections being established at once: firing thousands of SYNs at
/// a listener with a short backlog gets most of them dropped and retried a
/// second later; a window keeps the handshakes flowing.
const CONNECT_WINDOW: usize = 256;

/// Write/read rounds a connection gets per turn before the others get theirs
/// (it is driven again on the next turn without waiting for an event).
const MAX_ROUNDS: usize = 64;

/// `Stream`: unacknowledged bytes per connection at most (rounded to chunks,
/// at least [`STREAM_MIN_CHUNKS`]), so memory and queues stay bounded.
const STREAM_WINDOW_BYTES: usize = 256 * 1024;
const STREAM_MIN_CHUNKS: usize = 4;

/// `Stream`: each chunk starts with its index (8 bytes, mixed with the
/// connection's id), so dropped, repeated or reordered chunks are caught even
/// where the rest of the pattern would line up.
const STAMP: usize = 8;

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
    let (idle, stall) = match &spec.workload {
        Workload::Idle { idle, .. } => (*idle, None),
        Workload::Slow { exchange } => (0, Some(&exchange.request[..exchange.request.len() / 2])),
        _ => (0, None),
    };
    raise_fd_limit(idle + spec.clients + 256);

    // The idle connections and the staller go first: they are what the
    // measuring connections are up against.
    let extras = Extras::open(spec.addr, idle, stall)?;

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

/// What the measuring connections do, reduced to what the loop needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Request/response on long-lived connections (`RequestResponse`, and
    /// the measuring side of `Idle` and `Slow`).
    Rr,
    /// Bulk writes echoed back.
    Stream,
    /// A connection per request.
    Connect,
    /// FTP sessions or downloads (the details are in [`Plan::ftp`]).
    Ftp,
}

/// Everything the load threads share, read-only, prepared before the run.
struct Plan {
    addr: SocketAddr,
    mode: Mode,
    /// Requests in flight per connection.
    depth: usize,
    request_len: usize,
    /// The request repeated `depth` times: any run of queued requests is one
    /// contiguous slice of it, so a pipeline is written in one call.
    batch: Vec<u8>,
    /// The bytes each answer must be.
    answer: Vec<u8>,
    /// `Stream`: bytes per chunk, and chunks unacknowledged at most.
    chunk: usize,
    window: usize,
    /// Open loop: nanoseconds between one connection's intended sends.
    period_ns: Option<u64>,
    /// Measuring connections over all threads (for the open-loop phases).
    clients: usize,
    /// The histogram's upper bound in microseconds (longer waits saturate).
    hist_high: u64,
    progress: Option<Arc<AtomicU64>>,
    /// `Ftp`: what the clients retrieve and how.
    ftp: Option<FtpPlan>,
}

impl Plan {
    fn new(spec: &LoadSpec) -> io::Result<Plan> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let (mode, exchange, depth) = match &spec.workload {
            Workload::RequestResponse { exchange, depth } => (Mode::Rr, Some(exchange), *depth),
            Workload::Stream { .. } => (Mode::Stream, None, 1),
            Workload::Connect { exchange } => (Mode::Connect, Some(exchange), 1),
            Workload::Idle { exchange, .. } | Workload::Slow { exchange } => {
                (Mode::Rr, Some(exchange), 1)
            }
            Workload::FtpSessions { .. } | Workload::FtpDownload { .. } => (Mode::Ftp, None, 1),
        };
        let ftp = match &spec.workload {
            Workload::FtpSessions { file, size } | Workload::FtpDownload { file, size } => {
                if file.is_empty() || file.contains(['\r', '\n']) {
                    return Err(invalid("the FTP file needs a one-line name"));
                }
                Some(FtpPlan {
                    download: matches!(spec.workload, Workload::FtpDownload { .. }),
                    size: *size,
                    pattern: ftp_pattern(),
                    retr: format!("RETR {file}\r\n").into_bytes(),
                })
            }
            _ => None,
        };
        let depth = depth.max(1);
        let (request, answer) = match exchange {
            Some(x) if x.request.is_empty() || x.answer_len() == 0 => {
                return Err(invalid("the exchange needs a request and an answer"))
            }
            Some(x) => (x.request.clone(), x.answer().to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        let chunk = match spec.workload {
            Workload::Stream { chunk: 0 } => return Err(invalid("stream chunk must be positive")),
            Workload::Stream { chunk } => chunk,
            _ => 0,
        };
        let window = STREAM_WINDOW_BYTES
            .checked_div(chunk)
            .map_or(0, |w| w.max(STREAM_MIN_CHUNKS));
        let period_ns = match spec.rate {
            // Bulk streaming has no requests to schedule, nor has a
            // client downloading one file after another.
            _ if mode == Mode::Stream => None,
            _ if ftp.as_ref().is_some_and(|f| f.download) => None,
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
            mode,
            depth,
            request_len: request.len(),
            batch: request.repeat(depth),
            answer,
            chunk,
            window,
            period_ns,
            clients: spec.clients,
            hist_high: u64::try_from(longest.as_micros())
                .unwrap_or(u64::MAX)
                .max(2),
            progress: spec.progress.clone(),
            ftp,
        })
    }

    /// Slots in a connection's ring of send times.
    fn ring(&self) -> usize {
        match self.mode {
            Mode::Rr => self.depth,
            // A window's worth of chunks can straddle one more chunk.
            Mode::Stream => self.window + 1,
            Mode::Connect | Mode::Ftp => 1,
        }
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
    _staller: Option<TcpStream>,
    errors: Errors,
}

impl Extras {
    fn open(addr: SocketAddr, idle: usize, stall: Option<&[u8]>) -> io::Result<Extras> {
        let mut extras = Extras {
            idle: Vec::new(),
            _staller: None,
            errors: Errors::default(),
        };
        if idle == 0 && stall.is_none() {
            return Ok(extras);
        }
        let mut poll = Poll::new()?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        if let Some(half) = stall {
            let mut opened = open_many(&mut poll, addr, 1, deadline)?;
            match opened.pop() {
                None => extras.errors.connect += 1,
                Some(mut staller) => {
                    // A fresh socket's send buffer takes a partial request at
                    // once; if it somehow does not, the staller simply stalls
                    // earlier.
                    if !half.is_empty() {
                        if let Err(e) = staller.write(half) {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                extras.errors.io += 1;
                            }
                        }
                    }
                    extras._staller = Some(staller);
                }
            }
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
            let attempt = open(addr).and_then(|mut s| {
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
fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
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

/// Error kinds, as [`Errors`] counts them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Connect,
    Mismatch,
    Closed,
    Io,
    /// An FTP session that moved no byte for [`FTP_STUCK_AFTER`].
    Stalled,
}

/// What a socket error means for the loop.
enum Outcome {
    /// Wait for the next readiness edge.
    Block,
    /// Try again now (EINTR).
    Retry,
    Fail(Kind),
}

fn classify(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::WouldBlock => Outcome::Block,
        io::ErrorKind::Interrupted => Outcome::Retry,
        // EPIPE: the server shut its side down.
        io::ErrorKind::BrokenPipe => Outcome::Fail(Kind::Closed),
        _ => Outcome::Fail(Kind::Io),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Open,
    /// `Connect`: between attempts, until `next_at`.
    Waiting,
    /// Given up on (a measuring connection that failed is not replaced).
    Failed,
}

/// One measuring connection (for `Connect`, one slot that connects again
/// and again). Every buffer it needs is allocated here, before the run.
struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// Global index over all measuring connections.
    id: usize,
    /// Readiness not yet used up: set by an event, cleared when the socket
    /// would block (edge-triggered: the next edge sets it again).
    can_read: bool,
    can_write: bool,
    /// The server closed its side: read to the end, a short read is not a
    /// drain then.
    peer_closed: bool,
    /// Listed to be driven again next turn.
    again: bool,

    // Request/response.
    /// Requests sent or queued whose answers are not complete.
    inflight: usize,
    /// Requests queued and not yet fully written; the first has `sent_off`
    /// bytes out.
    queued: usize,
    sent_off: usize,
    /// Bytes of the oldest owed answer received and checked so far.
    ans_off: usize,
    /// Send (or intended send) times of the requests in flight, oldest at
    /// `head` (`Stream`: of the chunks, by chunk index).
    times: Box<[Instant]>,
    head: usize,
    /// Requests issued so far: the open-loop schedule's k.
    issued: u64,
    /// This connection's offset in the open-loop schedule.
    phase_ns: u64,

    // Stream.
    /// One chunk: a pattern with the chunk's stamp in front.
    out: Box<[u8]>,
    /// Bytes written and bytes echoed back and checked.
    sent: u64,
    echoed: u64,

    /// `Connect`: Waiting, when to start the next attempt; Connecting, when
    /// to give up on this one.
    next_at: Instant,
    /// Answers completed in the timed window.
    measured: u64,
    /// Errors this connection (slot) has had.
    errors: u64,
}

impl Conn {
    fn new(plan: &Plan, id: usize, stream: Option<TcpStream>, phase: Phase) -> Conn {
        let now = Instant::now();
        let out = if plan.mode == Mode::Stream {
            (0..plan.chunk)
                .map(|i| ((i * 7 + id * 13 + 1) % 251) as u8)
                .collect()
        } else {
            Box::default()
        };
        let phase_ns = plan.period_ns.map_or(0, |p| {
            (u128::from(p) * id as u128 / plan.clients.max(1) as u128) as u64
        });
        Conn {
            stream,
            phase,
            id,
            can_read: false,
            can_write: false,
            peer_closed: false,
            again: false,
            inflight: 0,
            queued: 0,
            sent_off: 0,
            ans_off: 0,
            times: vec![now; plan.ring()].into_boxed_slice(),
            head: 0,
            issued: 0,
            phase_ns,
            out,
            sent: 0,
            echoed: 0,
            next_at: now,
            measured: 0,
            errors: 0,
        }
    }

    /// Queues one request sent (or intended) at `at`.
    fn issue(&mut self, at: Instant) {
        let slot = (self.head + self.inflight) % self.times.len();
        self.times[slot] = at;
        self.inflight += 1;
        self.queued += 1;
        self.issued += 1;
    }

    /// Open loop: when the next request is due.
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

    /// Closes the socket (deregistering it first).
    fn close(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
    }

    /// The chunk stamp for chunk `index`.
    fn stamp(&self, index: u64) -> [u8; STAMP] {
        (index ^ ((self.id as u64) << 40)).to_le_bytes()
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
    let mut arrival = Arrival { gate, done: false };
    let mut poll = Poll::new()?;
    let histogram = new_histogram(plan.hist_high)?;
    let mut errors = Errors::default();
    if let Some(ftp) = &plan.ftp {
        let clients = (0..count)
            .map(|k| FtpClient::new(plan, first + k))
            .collect();
        let Some(clock) = arrival.arrive() else {
            return Err(io::Error::other("the load never started"));
        };
        let worker = FtpWorker {
            plan,
            ftp,
            clock,
            poll,
            tally: Tally {
                clock,
                histogram,
                requests: 0,
                bytes: 0,
                errors,
                unflushed: 0,
            },
            next_scan: clock.start,
            again: Vec::with_capacity(count),
            again_work: Vec::with_capacity(count),
        };
        return worker.run(clients);
    }
    let conns = if plan.mode == Mode::Connect {
        (0..count)
            .map(|k| Conn::new(plan, first + k, None, Phase::Waiting))
            .collect()
    } else {
        connect_all(&mut poll, plan, first, count, &mut errors)?
    };
    let Some(clock) = arrival.arrive() else {
        return Err(io::Error::other("the load never started"));
    };
    let worker = Worker {
        plan,
        clock,
        poll,
        scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
        tally: Tally {
            clock,
            histogram,
            requests: 0,
            bytes: 0,
            errors,
            unflushed: 0,
        },
        soonest: clock.start,
        again: Vec::with_capacity(count),
        again_work: Vec::with_capacity(count),
    };
    worker.run(conns)
}

/// Connects a thread's measuring connections, all at once, within
/// [`CONNECT_TIMEOUT`]; failures are counted and left `Failed`.
fn connect_all(
    poll: &mut Poll,
    plan: &Plan,
    first: usize,
    count: usize,
    errors: &mut Errors,
) -> io::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(count);
    let mut pending = 0;
    for k in 0..count {
        let attempt = open(plan.addr).and_then(|mut s| {
            poll.registry()
                .register(&mut s, Token(k), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        let conn = match attempt {
            Ok(s) => {
                pending += 1;
                Conn::new(plan, first + k, Some(s), Phase::Connecting)
            }
            Err(_) => {
                errors.connect += 1;
                Conn::new(plan, first + k, None, Phase::Failed)
            }
        };
        conns.push(conn);
    }
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    while pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some((deadline - now).min(POLL_TICK))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let Some(c) = conns.get_mut(event.token().0) else {
                continue;
            };
            if c.phase != Phase::Connecting {
                continue;
            }
            match c.stream.as_ref().and_then(established) {
                None => continue,
                Some(true) => {
                    c.phase = Phase::Open;
                    // Whatever readiness the handshake's edge carried is
                    // found out by trying.
                    c.can_read = true;
                    c.can_write = true;
                }
                Some(false) => {
                    errors.connect += 1;
                    c.close(poll.registry());
                    c.phase = Phase::Failed;
                }
            }
            pending -= 1;
        }
    }
    for c in conns.iter_mut().filter(|c| c.phase == Phase::Connecting) {
        errors.connect += 1;
        c.close(poll.registry());
        c.phase = Phase::Failed;
    }
    Ok(conns)
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

    fn received(&mut self, n: usize, now: Instant) {
        if self.clock.timed(now) {
            self.bytes += n as u64;
        }
    }

    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Connect => self.errors.connect += 1,
            Kind::Mismatch => self.errors.mismatch += 1,
            Kind::Closed => self.errors.closed += 1,
            Kind::Io => self.errors.io += 1,
            Kind::Stalled => self.errors.stalled += 1,
        }
    }
}

/// What driving a connection came to.
enum Step {
    /// It would block; the next event moves it on.
    Wait,
    /// It spent its rounds; drive it again next turn.
    Again,
    /// `Connect`: the answer is complete.
    Done,
    Fail(Kind),
}

/// A load thread after the gate.
struct Worker<'a> {
    plan: &'a Plan,
    clock: Clock,
    poll: Poll,
    scratch: Box<[u8]>,
    tally: Tally,
    /// No connection has anything due before this (open-loop sends,
    /// `Connect` attempts and timeouts): `service` skips its scan until then.
    /// Lowered whenever a connection gets an earlier deadline.
    soonest: Instant,
    /// Connections to drive again next turn, and the list being worked
    /// through (two, swapped, so neither reallocates).
    again: Vec<usize>,
    again_work: Vec<usize>,
}

impl Worker<'_> {
    fn run(mut self, mut conns: Vec<Conn>) -> io::Result<ThreadReport> {
        let plan = self.plan;
        let clock = self.clock;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut timer = Timer::new(self.poll.registry())?;
        let scheduled = plan.mode == Mode::Connect || plan.period_ns.is_some();

        // Closed loop: fill every pipeline now; each answer then sends the
        // next request. (Open loop and `Connect` start from `service`.)
        if !scheduled {
            let now = Instant::now();
            for (i, c) in conns.iter_mut().enumerate() {
                if c.phase == Phase::Open {
                    self.refill(c, now);
                    self.drive(i, c);
                }
            }
        }

        let mut cpu_start = None;
        loop {
            let now = Instant::now();
            if cpu_start.is_none() && now >= clock.measure_from {
                cpu_start = Some(thread_cpu());
            }
            if now >= clock.end || ABORT.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let mut wake = if cpu_start.is_some() {
                clock.end
            } else {
                clock.measure_from
            };
            if scheduled {
                if let Some(at) = self.service(&mut conns, now) {
                    wake = wake.min(at);
                }
            }
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
                let i = event.token().0;
                if let Some(c) = conns.get_mut(i) {
                    note_readiness(c, event);
                    self.drive(i, c);
                }
            }
            let mut work = mem::take(&mut self.again_work);
            mem::swap(&mut work, &mut self.again);
            for &i in &work {
                if let Some(c) = conns.get_mut(i) {
                    c.again = false;
                    self.drive(i, c);
                }
            }
            work.clear();
            self.again_work = work;
            if self.tally.unflushed > 0 {
                if let Some(progress) = &plan.progress {
                    progress.fetch_add(self.tally.unflushed, Ordering::Relaxed);
                }
                self.tally.unflushed = 0;
            }
        }
        let cpu_seconds = cpu_start.map_or(0.0, |start| (thread_cpu() - start).max(0.0));

        // Stalled: owed an answer, not failed, and got none in the window.
        // (In open loop a connection may have had nothing due; it owes
        // nothing then and is not counted.)
        let stalled = conns
            .iter()
            .filter(|c| {
                c.measured == 0
                    && match plan.mode {
                        Mode::Rr => c.phase == Phase::Open && c.inflight > 0,
                        Mode::Stream => c.phase == Phase::Open && c.sent > c.echoed,
                        Mode::Connect => {
                            c.errors == 0 && matches!(c.phase, Phase::Connecting | Phase::Open)
                        }
                        // FTP runs on its own worker.
                        Mode::Ftp => false,
                    }
            })
            .count() as u64;
        Ok(ThreadReport {
            histogram: self.tally.histogram,
            requests: self.tally.requests,
            bytes: self.tally.bytes,
            errors: self.tally.errors,
            stalled,
            cpu_seconds,
        })
    }

    /// Starts what is due (open-loop requests, `Connect` attempts), times
    /// out connects, and returns the next time something will be due.
    fn service(&mut self, conns: &mut [Conn], now: Instant) -> Option<Instant> {
        if now < self.soonest {
            return Some(self.soonest);
        }
        // Anything the scan makes due is found by the scan itself.
        self.soonest = self.clock.end;
        let plan = self.plan;
        let mut next: Option<Instant> = None;
        for (i, c) in conns.iter_mut().enumerate() {
            let wake = match (plan.mode, c.phase) {
                (Mode::Rr, Phase::Open) => {
                    let before = c.issued;
                    self.refill(c, now);
                    if c.issued != before {
                        self.drive(i, c);
                    }
                    match plan.period_ns {
                        Some(p) if c.phase == Phase::Open && c.inflight < plan.depth => {
                            Some(c.due(p, &self.clock))
                        }
                        _ => None,
                    }
                }
                (Mode::Connect, Phase::Waiting) => {
                    let (at, sent) = match plan.period_ns {
                        Some(p) => {
                            let due = c.due(p, &self.clock);
                            (due.max(c.next_at), due)
                        }
                        None => (c.next_at, now),
                    };
                    if at <= now {
                        self.start_attempt(i, c, now, sent);
                    }
                    Some(c.next_at.max(at))
                }
                (Mode::Connect, Phase::Connecting) => {
                    if now >= c.next_at {
                        self.fail(c, Kind::Connect, now);
                    }
                    Some(c.next_at)
                }
                _ => None,
            };
            if let Some(w) = wake {
                next = Some(next.map_or(w, |n| n.min(w)));
            }
        }
        if let Some(n) = next {
            self.wake_by(n);
        }
        Some(self.soonest)
    }

    /// Something is due at `at`: make sure `service` looks by then.
    fn wake_by(&mut self, at: Instant) {
        self.soonest = self.soonest.min(at);
    }

    /// `Connect`: opens the slot's next connection for a request sent (or
    /// intended) at `sent`; latency then includes the handshake.
    fn start_attempt(&mut self, i: usize, c: &mut Conn, now: Instant, sent: Instant) {
        c.inflight = 0;
        c.queued = 0;
        c.sent_off = 0;
        c.ans_off = 0;
        c.head = 0;
        c.peer_closed = false;
        c.issue(sent);
        let attempt = open(self.plan.addr).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match attempt {
            Ok(s) => {
                c.stream = Some(s);
                c.phase = Phase::Connecting;
                c.next_at = now + ATTEMPT_TIMEOUT;
                self.wake_by(c.next_at);
            }
            Err(_) => self.fail(c, Kind::Connect, now),
        }
    }

    /// Issues the requests a connection may send now: closed loop, enough
    /// to fill its pipeline; open loop, those due while a slot is free,
    /// stamped with their intended times.
    fn refill(&mut self, c: &mut Conn, now: Instant) {
        if self.plan.mode != Mode::Rr {
            return;
        }
        match self.plan.period_ns {
            None => {
                while c.inflight < self.plan.depth {
                    c.issue(now);
                }
            }
            Some(p) => {
                while c.inflight < self.plan.depth {
                    let due = c.due(p, &self.clock);
                    if due > now {
                        self.wake_by(due);
                        break;
                    }
                    c.issue(due);
                }
            }
        }
    }

    /// Moves connection `i` forward until it would block.
    fn drive(&mut self, i: usize, c: &mut Conn) {
        if c.phase == Phase::Connecting {
            match c.stream.as_ref().and_then(established) {
                None => return,
                Some(false) => {
                    self.fail(c, Kind::Connect, Instant::now());
                    return;
                }
                Some(true) => {
                    c.phase = Phase::Open;
                    c.can_read = true;
                    c.can_write = true;
                }
            }
        }
        if c.phase != Phase::Open {
            return;
        }
        let Some(mut stream) = c.stream.take() else {
            return;
        };
        let step = match self.plan.mode {
            Mode::Stream => self.pump_stream(c, &mut stream),
            Mode::Rr | Mode::Connect | Mode::Ftp => self.pump_rr(c, &mut stream),
        };
        c.stream = Some(stream);
        match step {
            Step::Wait => {}
            Step::Again => {
                if !c.again {
                    c.again = true;
                    self.again.push(i);
                }
            }
            Step::Done => {
                // The next attempt starts on the next turn's `service`.
                c.close(self.poll.registry());
                c.phase = Phase::Waiting;
                c.next_at = Instant::now();
                self.wake_by(c.next_at);
            }
            Step::Fail(kind) => self.fail(c, kind, Instant::now()),
        }
    }

    /// Counts an error and stops using the connection: a measuring
    /// connection is given up; a `Connect` slot tries again after a pause.
    fn fail(&mut self, c: &mut Conn, kind: Kind, now: Instant) {
        self.tally.count(kind);
        c.errors += 1;
        c.close(self.poll.registry());
        if self.plan.mode == Mode::Connect {
            c.phase = Phase::Waiting;
            c.next_at = now + RETRY_BACKOFF;
            self.wake_by(c.next_at);
        } else {
            c.phase = Phase::Failed;
        }
    }

    /// Request/response: writes queued requests, reads and checks answers,
    /// sends more as answers complete.
    fn pump_rr(&mut self, c: &mut Conn, stream: &mut TcpStream) -> Step {
        let plan = self.plan;
        let len = plan.request_len;
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            if c.can_write && c.queued > 0 {
                let pending = &plan.batch[c.sent_off..c.queued * len];
                match stream.write(pending) {
                    Ok(0) => return Step::Fail(Kind::Closed),
                    Ok(n) => {
                        moved = true;
                        // A short write means the send buffer is full.
                        c.can_write = n == pending.len();
                        let done = c.sent_off + n;
                        c.queued -= done / len;
                        c.sent_off = done % len;
                    }
                    Err(e) => match classify(&e) {
                        Outcome::Block => c.can_write = false,
                        Outcome::Retry => moved = true,
                        Outcome::Fail(kind) => return Step::Fail(kind),
                    },
                }
            }
            if c.can_read {
                match stream.read(&mut self.scratch) {
                    Ok(0) => return Step::Fail(Kind::Closed),
                    Ok(n) => {
                        moved = true;
                        // A short read drained the socket (unless the peer
                        // closed: then read on to the end of stream).
                        c.can_read = n == self.scratch.len() || c.peer_closed;
                        let now = Instant::now();
                        if let Err(kind) =
                            check_answers(c, &self.scratch[..n], &plan.answer, &mut self.tally, now)
                        {
                            return Step::Fail(kind);
                        }
                        self.tally.received(n, now);
                        if plan.mode == Mode::Connect && c.inflight == 0 {
                            return Step::Done;
                        }
                        self.refill(c, now);
                    }
                    Err(e) => match classify(&e) {
                        Outcome::Block => c.can_read = false,
                        Outcome::Retry => moved = true,
                        Outcome::Fail(kind) => return Step::Fail(kind),
                    },
                }
            }
            if !moved {
                return Step::Wait;
            }
        }
        Step::Again
    }

    /// Stream: writes chunks while the window allows, reads and checks the
    /// echo.
    fn pump_stream(&mut self, c: &mut Conn, stream: &mut TcpStream) -> Step {
        let chunk = self.plan.chunk;
        let limit = (self.plan.window * chunk) as u64;
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            let unacked = c.sent - c.echoed;
            if c.can_write && unacked < limit {
                let off = (c.sent % chunk as u64) as usize;
                if off == 0 {
                    // A new chunk: the previous one is wholly in the kernel,
                    // so its stamp may be overwritten.
                    let index = c.sent / chunk as u64;
                    let stamp = c.stamp(index);
                    let k = STAMP.min(chunk);
                    c.out[..k].copy_from_slice(&stamp[..k]);
                    let slot = (index % c.times.len() as u64) as usize;
                    c.times[slot] = Instant::now();
                }
                let room = (limit - unacked) as usize;
                let end = chunk.min(off + room);
                match stream.write(&c.out[off..end]) {
                    Ok(0) => return Step::Fail(Kind::Closed),
                    Ok(n) => {
                        moved = true;
                        c.can_write = n == end - off;
                        c.sent += n as u64;
                    }
                    Err(e) => match classify(&e) {
                        Outcome::Block => c.can_write = false,
                        Outcome::Retry => moved = true,
                        Outcome::Fail(kind) => return Step::Fail(kind),
                    },
                }
            }
            if c.can_read {
                match stream.read(&mut self.scratch) {
                    Ok(0) => return Step::Fail(Kind::Closed),
                    Ok(n) => {
                        moved = true;
                        c.can_read = n == self.scratch.len() || c.peer_closed;
                        let now = Instant::now();
                        if let Err(kind) =
                            check_stream(c, &self.scratch[..n], chunk, &mut self.tally, now)
                        {
                            return Step::Fail(kind);
                        }
                        self.tally.received(n, now);
                    }
                    Err(e) => match classify(&e) {
                        Outcome::Block => c.can_read = false,
                        Outcome::Retry => moved = true,
                        Outcome::Fail(kind) => return Step::Fail(kind),
                    },
                }
            }
            if !moved {
                return Step::Wait;
            }
        }
        Step::Again
    }
}

/// Records an event's readiness on its connection.
fn note_readiness(c: &mut Conn, event: &Event) {
    if event.is_readable() || event.is_read_closed() || event.is_error() {
        c.can_read = true;
    }
    if event.is_writable() || event.is_write_closed() || event.is_error() {
        c.can_write = true;
    }
    if event.is_read_closed() {
        c.peer_closed = true;
    }
}

/// Checks `data`, just read, against the answers owed, completing them in
/// order. More bytes than owed, or any byte that differs, is a mismatch.
fn check_answers(
    c: &mut Conn,
    data: &[u8],
    answer: &[u8],
    tally: &mut Tally,
    now: Instant,
) -> Result<(), Kind> {
    let owed = c.inflight * answer.len() - c.ans_off;
    if data.len() > owed {
        return Err(Kind::Mismatch);
    }
    let mut rest = data;
    while !rest.is_empty() {
        let take = rest.len().min(answer.len() - c.ans_off);
        if rest[..take] != answer[c.ans_off..c.ans_off + take] {
            return Err(Kind::Mismatch);
        }
        rest = &rest[take..];
        c.ans_off += take;
        if c.ans_off == answer.len() {
            c.ans_off = 0;
            let sent = c.times[c.head];
            c.head = (c.head + 1) % c.times.len();
            c.inflight -= 1;
            tally.answered(&mut c.measured, sent, now);
        }
    }
    Ok(())
}

/// Checks echoed stream bytes against what was sent at their position: the
/// chunk's stamp, then the connection's pattern.
fn check_stream(
    c: &mut Conn,
    data: &[u8],
    chunk: usize,
    tally: &mut Tally,
    now: Instant,
) -> Result<(), Kind> {
    if data.len() as u64 > c.sent - c.echoed {
        return Err(Kind::Mismatch);
    }
    let stamped = STAMP.min(chunk);
    let mut rest = data;
    while !rest.is_empty() {
        let index = c.echoed / chunk as u64;
        let off = (c.echoed % chunk as u64) as usize;
        let take = rest.len().min(chunk - off);
        let piece = &rest[..take];
        let mut k = 0;
        if off < stamped {
            let stamp = c.stamp(index);
            k = (stamped - off).min(take);
            if piece[..k] != stamp[off..off + k] {
                return Err(Kind::Mismatch);
            }
        }
        // Past the stamp, `out` holds the pattern every chunk shares.
        if piece[k..] != c.out[off + k..off + take] {
            return Err(Kind::Mismatch);
        }
        rest = &rest[take..];
        c.echoed += take as u64;
        if off + take == chunk {
            let sent = c.times[(index % c.times.len() as u64) as usize];
            tally.answered(&mut c.measured, sent, now);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FTP
// ---------------------------------------------------------------------------

/// FTP: the longest reply line kept (longer ones are cut: only a line's
/// code and a 229's port are read).
const FTP_LINE_MAX: usize = 512;

/// FTP: a client that moves no byte for this long in the middle of a
/// session is stuck: counted `stalled`, and started afresh.
const FTP_STUCK_AFTER: Duration = Duration::from_secs(3);

/// FTP: what the clients retrieve and how, prepared before the run.
struct FtpPlan {
    /// `FtpDownload` (log in once, retrieve again and again); else
    /// `FtpSessions`.
    download: bool,
    /// The file's size.
    size: u64,
    /// The fixture pattern, long enough that the bytes expected for any
    /// read (at most [`FTP_SCRATCH_SIZE`]) at any offset are one slice of it.
    pattern: Vec<u8>,
    /// `RETR file\r\n`.
    retr: Vec<u8>,
}

/// [`scenario::fixture_pattern`], one period plus a read's worth.
fn ftp_pattern() -> Vec<u8> {
    let period = scenario::fixture_pattern();
    period
        .iter()
        .cycle()
        .take(period.len() + FTP_SCRATCH_SIZE)
        .copied()
        .collect()
}

/// The fixture's bytes expected at `offset`, `len` (at most
/// [`FTP_SCRATCH_SIZE`]) of them.
fn ftp_expected(pattern: &[u8], offset: u64, len: usize) -> &[u8] {
    let at = (offset % scenario::FIXTURE_PERIOD as u64) as usize;
    &pattern[at..at + len]
}

/// An FTP command the clients send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    User,
    Pass,
    Type,
    Epsv,
    Retr,
    Quit,
}

impl Cmd {
    fn bytes(self, ftp: &FtpPlan) -> &[u8] {
        match self {
            Cmd::User => b"USER anonymous\r\n",
            Cmd::Pass => b"PASS bench@\r\n",
            Cmd::Type => b"TYPE I\r\n",
            Cmd::Epsv => b"EPSV\r\n",
            Cmd::Retr => &ftp.retr,
            Cmd::Quit => b"QUIT\r\n",
        }
    }
}

/// FTP replies, parsed as their bytes arrive: a reply is one line
/// `NNN text`, or several, `NNN-text` ... `NNN text`. One line is kept (the
/// last complete reply's last line, until more bytes come).
struct Replies {
    line: Box<[u8]>,
    len: usize,
    /// The kept line is complete: the next byte starts a new one.
    complete: bool,
    /// Inside a multi-line reply: its code.
    multi: Option<[u8; 3]>,
}

impl Replies {
    fn new() -> Replies {
        Replies {
            line: vec![0; FTP_LINE_MAX].into_boxed_slice(),
            len: 0,
            complete: false,
            multi: None,
        }
    }

    fn reset(&mut self) {
        self.len = 0;
        self.complete = false;
        self.multi = None;
    }

    /// The last complete reply's last line, without its line end.
    fn line(&self) -> &[u8] {
        let line = &self.line[..self.len];
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// Consumes `data` from `*pos` to the end of the next complete reply and
    /// returns its code; `None` when the data ends first. `Err` when the
    /// bytes are not FTP replies.
    fn next(&mut self, data: &[u8], pos: &mut usize) -> Result<Option<u16>, ()> {
        while *pos < data.len() {
            if self.complete {
                self.len = 0;
                self.complete = false;
            }
            let rest = &data[*pos..];
            let (piece, eol) = match rest.iter().position(|&b| b == b'\n') {
                Some(k) => (&rest[..k], true),
                None => (rest, false),
            };
            *pos += piece.len() + usize::from(eol);
            let take = piece.len().min(FTP_LINE_MAX - self.len);
            self.line[self.len..self.len + take].copy_from_slice(&piece[..take]);
            self.len += take;
            if !eol {
                return Ok(None);
            }
            self.complete = true;
            let line = self.line();
            let code = match line.get(..3) {
                Some(c) if c.iter().all(u8::is_ascii_digit) => [c[0], c[1], c[2]],
                // Free text inside a multi-line reply.
                _ if self.multi.is_some() => continue,
                _ => return Err(()),
            };
            let sep = line.get(3).copied();
            let value = code.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
            match self.multi {
                Some(open) if open == code && sep != Some(b'-') => {
                    self.multi = None;
                    return Ok(Some(value));
                }
                Some(_) => {}
                None => match sep {
                    Some(b'-') => self.multi = Some(code),
                    Some(b' ') | None => return Ok(Some(value)),
                    Some(_) => return Err(()),
                },
            }
        }
        Ok(None)
    }
}

/// The port of a 229 reply: `... (|||PORT|)`, any delimiter (RFC 2428).
fn epsv_port(line: &[u8]) -> Option<u16> {
    let open = line.iter().position(|&b| b == b'(')?;
    let rest = &line[open + 1..];
    let d = *rest.first()?;
    if rest.get(1..3)? != [d, d] {
        return None;
    }
    let digits = &rest[3..];
    let end = digits.iter().position(|&b| b == d)?;
    std::str::from_utf8(&digits[..end])
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p != 0)
}

/// Where an FTP client is in its dialogue: the reply it waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FtpStep {
    /// No connection; the next session starts at `next_at`.
    Waiting,
    /// The control connection's handshake.
    Connecting,
    /// 220.
    Greeting,
    /// 331.
    User,
    /// 230.
    Pass,
    /// 200.
    Type,
    /// 229.
    Epsv,
    /// The data connection's handshake (`RETR` goes once it is up).
    DataConnecting,
    /// 150 (or 125), then 226; and the data to its end.
    Retr,
    /// 221.
    Quit,
    /// The session is over (221): waiting for the server to close.
    Closing,
}

/// One FTP client: a control connection and, during a transfer, a data
/// connection (tokens `2i` and `2i + 1`). Its buffers are allocated here,
/// before the run.
struct FtpClient {
    ctrl: Option<TcpStream>,
    data: Option<TcpStream>,
    step: FtpStep,
    /// Readiness not yet used up (see [`Conn`]).
    ctrl_read: bool,
    ctrl_write: bool,
    ctrl_closed: bool,
    data_read: bool,
    data_closed: bool,
    /// The data connection has had a readiness edge: its connect is over.
    data_seen: bool,
    /// The command being written, and how much of it is out.
    out: Option<Cmd>,
    out_off: usize,
    replies: Replies,
    /// The transfer: the preliminary reply came, the 226 came, the data
    /// ended (all three complete it, in any order); data bytes so far.
    prelim: bool,
    finished: bool,
    data_done: bool,
    got: u64,
    /// When the session (download: the transfer) started, or was due to.
    started: Instant,
    /// Waiting: when to start; connecting: when to give up.
    next_at: Instant,
    /// The last time a byte moved (for [`FTP_STUCK_AFTER`]).
    moved_at: Instant,
    /// Open loop: sessions started, and this client's offset.
    issued: u64,
    phase_ns: u64,
    /// Sessions or downloads completed, and data bytes, in the window.
    measured: u64,
    window_bytes: u64,
    errors: u64,
    again: bool,
}

impl FtpClient {
    fn new(plan: &Plan, id: usize) -> FtpClient {
        let now = Instant::now();
        FtpClient {
            ctrl: None,
            data: None,
            step: FtpStep::Waiting,
            ctrl_read: false,
            ctrl_write: false,
            ctrl_closed: false,
            data_read: false,
            data_closed: false,
            data_seen: false,
            out: None,
            out_off: 0,
            replies: Replies::new(),
            prelim: false,
            finished: false,
            data_done: false,
            got: 0,
            started: now,
            next_at: now,
            moved_at: now,
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

    /// Open loop: when the next session is due.
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

    // Closing a socket takes it out of the epoll set (no descriptor is
    // duplicated here), so sockets are dropped without an EPOLL_CTL_DEL.
    fn close_data(&mut self) {
        if let Some(s) = self.data.take() {
            // The server closed first (the end of the data): a reset now
            // spares it a TIME_WAIT that would hold its passive port for a
            // minute. Thousands of sessions a second from one address would
            // otherwise run loopback out of ports in seconds.
            if self.data_done {
                abort_on_close(&s);
            }
        }
        self.data_read = false;
        self.data_closed = false;
        self.data_seen = false;
    }

    fn close(&mut self) {
        self.ctrl = None;
        self.close_data();
        self.ctrl_read = false;
        self.ctrl_write = false;
        self.ctrl_closed = false;
        self.out = None;
        self.out_off = 0;
    }

    /// A new transfer: nothing of it has come yet.
    fn new_transfer(&mut self) {
        self.prelim = false;
        self.finished = false;
        self.data_done = false;
        self.got = 0;
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

/// A load thread driving FTP clients.
struct FtpWorker<'a> {
    plan: &'a Plan,
    ftp: &'a FtpPlan,
    clock: Clock,
    poll: Poll,
    tally: Tally,
    /// `service` looks at the clients again no later than this.
    next_scan: Instant,
    again: Vec<usize>,
    again_work: Vec<usize>,
}

impl FtpWorker<'_> {
    fn run(mut self, mut clients: Vec<FtpClient>) -> io::Result<ThreadReport> {
        let clock = self.clock;
        let mut scratch = vec![0u8; FTP_SCRATCH_SIZE].into_boxed_slice();
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut timer = Timer::new(self.poll.registry())?;
        let mut cpu_start = None;
        loop {
            let now = Instant::now();
            if cpu_start.is_none() && now >= clock.measure_from {
                cpu_start = Some(thread_cpu());
            }
            if now >= clock.end || ABORT.load(Ordering::Relaxed) {
                break;
            }
            if now >= self.next_scan {
                self.service(&mut clients, now, &mut scratch);
            }
            let mut wake = if cpu_start.is_some() {
                clock.end
            } else {
                clock.measure_from
            };
            wake = wake.min(self.next_scan);
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
                let (i, data) = (event.token().0 / 2, event.token().0 % 2 == 1);
                let Some(c) = clients.get_mut(i) else {
                    continue;
                };
                let r = event.is_readable() || event.is_read_closed() || event.is_error();
                let w = event.is_writable() || event.is_write_closed() || event.is_error();
                if data {
                    c.data_read |= r;
                    c.data_seen |= r || w;
                    c.data_closed |= event.is_read_closed();
                } else {
                    c.ctrl_read |= r;
                    c.ctrl_write |= w;
                    c.ctrl_closed |= event.is_read_closed();
                }
                self.drive(i, c, &mut scratch);
            }
            let mut work = mem::take(&mut self.again_work);
            mem::swap(&mut work, &mut self.again);
            for &i in &work {
                if let Some(c) = clients.get_mut(i) {
                    c.again = false;
                    self.drive(i, c, &mut scratch);
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
        // Stalled: mid-session, without an error, and nothing at all done in
        // the window.
        let stalled = clients
            .iter()
            .filter(|c| {
                c.errors == 0
                    && c.measured == 0
                    && c.window_bytes == 0
                    && c.step != FtpStep::Waiting
            })
            .count() as u64;
        for c in &mut clients {
            c.close();
        }
        Ok(ThreadReport {
            histogram: self.tally.histogram,
            requests: self.tally.requests,
            bytes: self.tally.bytes,
            errors: self.tally.errors,
            stalled,
            cpu_seconds,
        })
    }

    /// Starts the sessions that are due, gives up on connects and sessions
    /// that take too long; sets `next_scan`.
    fn service(&mut self, clients: &mut [FtpClient], now: Instant, scratch: &mut [u8]) {
        self.next_scan = now + POLL_TICK;
        for (i, c) in clients.iter_mut().enumerate() {
            match c.step {
                FtpStep::Waiting => {
                    let (at, sent) = match self.plan.period_ns {
                        Some(p) => {
                            let due = c.due(p, &self.clock);
                            (due.max(c.next_at), due)
                        }
                        None => (c.next_at, now),
                    };
                    if at <= now {
                        self.start(i, c, now, sent);
                        self.drive(i, c, scratch);
                    } else {
                        self.wake_by(at);
                    }
                }
                FtpStep::Connecting | FtpStep::DataConnecting => {
                    if now >= c.next_at {
                        self.restart(c, Kind::Connect, now);
                    } else {
                        self.wake_by(c.next_at);
                    }
                }
                _ => {
                    if now.saturating_duration_since(c.moved_at) >= FTP_STUCK_AFTER {
                        self.restart(c, Kind::Stalled, now);
                    }
                }
            }
        }
    }

    fn wake_by(&mut self, at: Instant) {
        self.next_scan = self.next_scan.min(at);
    }

    /// Opens a session's control connection; `sent` is when the session
    /// started (open loop: was due), from which its latency counts.
    fn start(&mut self, i: usize, c: &mut FtpClient, now: Instant, sent: Instant) {
        c.issued += 1;
        c.started = sent;
        c.moved_at = now;
        c.replies.reset();
        c.new_transfer();
        // No TCP_NODELAY: the dialogue is lock-step, each command going out
        // after the reply that acknowledged the one before, so Nagle never
        // holds one back (and clients such as ftplib do not set it either).
        let attempt = TcpStream::connect(self.plan.addr).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(2 * i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match attempt {
            Ok(s) => {
                c.ctrl = Some(s);
                c.step = FtpStep::Connecting;
                c.next_at = now + ATTEMPT_TIMEOUT;
                self.wake_by(c.next_at);
            }
            Err(_) => self.restart(c, Kind::Connect, now),
        }
    }

    /// Counts an error, drops the session and starts a new one after a
    /// pause.
    fn restart(&mut self, c: &mut FtpClient, kind: Kind, now: Instant) {
        self.tally.count(kind);
        c.errors += 1;
        c.close();
        c.step = FtpStep::Waiting;
        c.next_at = now + RETRY_BACKOFF;
        self.wake_by(c.next_at);
    }

    /// A session ended well (the 221 came): the next one starts now (closed
    /// loop) or when due. The control connection is reset rather than
    /// closed, as the data connection is: a client closing first would hold
    /// its port in TIME_WAIT for a minute, and thousands of sessions a second
    /// would run out of ports in seconds.
    fn session_over(&mut self, i: usize, c: &mut FtpClient, now: Instant) {
        if let Some(ctrl) = &c.ctrl {
            abort_on_close(ctrl);
        }
        c.close();
        c.step = FtpStep::Waiting;
        c.next_at = now;
        match self.plan.period_ns {
            None => self.start(i, c, now, now),
            Some(p) => {
                let due = c.due(p, &self.clock);
                if due <= now {
                    self.start(i, c, now, due);
                } else {
                    self.wake_by(due);
                }
            }
        }
    }

    /// Queues a command (the dialogue is lock-step: one at a time).
    fn send(c: &mut FtpClient, cmd: Cmd) {
        c.out = Some(cmd);
        c.out_off = 0;
    }

    /// Moves client `i` forward until it would block.
    fn drive(&mut self, i: usize, c: &mut FtpClient, scratch: &mut [u8]) {
        for _ in 0..MAX_ROUNDS {
            match self.step_once(i, c, scratch) {
                Ok(true) => {}
                Ok(false) => return,
                Err(kind) => {
                    self.restart(c, kind, Instant::now());
                    return;
                }
            }
        }
        if !c.again {
            c.again = true;
            self.again.push(i);
        }
    }

    /// One round of connects, writes and reads; whether anything moved.
    fn step_once(&mut self, i: usize, c: &mut FtpClient, scratch: &mut [u8]) -> Result<bool, Kind> {
        let mut moved = false;
        match c.step {
            // A connect ends with the socket's first readiness edge, either
            // way: asking the kernel which (SO_ERROR, getpeername) would
            // cost two system calls a connection, and a failed connect shows
            // anyway as the error of the first read.
            // (A readable edge alone says that there is something to read.)
            FtpStep::Connecting => {
                if !(c.ctrl_read || c.ctrl_write) {
                    return Ok(false);
                }
                c.step = FtpStep::Greeting;
                c.ctrl_write = true;
                c.moved_at = Instant::now();
                moved = true;
            }
            FtpStep::DataConnecting if c.data_seen => {
                c.step = FtpStep::Retr;
                Self::send(c, Cmd::Retr);
                moved = true;
            }
            _ => {}
        }
        let Some(ctrl) = c.ctrl.as_mut() else {
            return Ok(moved);
        };
        if let (true, Some(cmd)) = (c.ctrl_write, c.out) {
            let pending = &cmd.bytes(self.ftp)[c.out_off..];
            match ctrl.write(pending) {
                Ok(0) => return Err(Kind::Closed),
                Ok(n) => {
                    moved = true;
                    c.ctrl_write = n == pending.len();
                    c.out_off += n;
                    if c.out_off == cmd.bytes(self.ftp).len() {
                        c.out = None;
                    }
                }
                Err(e) => match classify(&e) {
                    Outcome::Block => c.ctrl_write = false,
                    Outcome::Retry => moved = true,
                    Outcome::Fail(kind) => return Err(kind),
                },
            }
        }
        if c.ctrl_read {
            match ctrl.read(scratch) {
                // The server hung up on a session that was not over.
                Ok(0) => return Err(Kind::Closed),
                Ok(n) => {
                    moved = true;
                    c.ctrl_read = n == scratch.len() || c.ctrl_closed;
                    let now = Instant::now();
                    c.moved_at = now;
                    let mut pos = 0;
                    // Anything after the 221 is of no interest.
                    while c.step != FtpStep::Closing {
                        let Some(code) = c
                            .replies
                            .next(&scratch[..n], &mut pos)
                            .map_err(|()| Kind::Mismatch)?
                        else {
                            break;
                        };
                        self.on_reply(i, c, code, now)?;
                    }
                    if c.step == FtpStep::Closing {
                        // The 221 came: the session is over, whether or not
                        // the server has closed its side yet.
                        self.session_over(i, c, now);
                        return Ok(true);
                    }
                }
                Err(e) => match classify(&e) {
                    Outcome::Block => c.ctrl_read = false,
                    Outcome::Retry => moved = true,
                    Outcome::Fail(_) if c.step == FtpStep::Greeting && refused(&e) => {
                        return Err(Kind::Connect)
                    }
                    Outcome::Fail(kind) => return Err(kind),
                },
            }
        }
        if let (true, Some(data)) = (c.data_read, c.data.as_mut()) {
            if c.step == FtpStep::DataConnecting {
                return Ok(moved);
            }
            match data.read(scratch) {
                Ok(0) => {
                    moved = true;
                    self.data_over(c)?;
                }
                Ok(n) => {
                    moved = true;
                    if c.got + n as u64 > self.ftp.size
                        || scratch[..n] != *ftp_expected(&self.ftp.pattern, c.got, n)
                    {
                        return Err(Kind::Mismatch);
                    }
                    c.got += n as u64;
                    let now = Instant::now();
                    c.moved_at = now;
                    if self.clock.timed(now) {
                        c.window_bytes += n as u64;
                    }
                    self.tally.received(n, now);
                    let drained = n < scratch.len();
                    if drained && c.data_closed && c.got == self.ftp.size {
                        // The server's FIN had come before this read emptied
                        // the socket: nothing follows, and the read that
                        // would return 0 can be spared.
                        self.data_over(c)?;
                    } else {
                        c.data_read = !drained || c.data_closed;
                    }
                }
                Err(e) => match classify(&e) {
                    Outcome::Block => c.data_read = false,
                    Outcome::Retry => moved = true,
                    Outcome::Fail(_) if c.got == 0 && refused(&e) => return Err(Kind::Connect),
                    Outcome::Fail(kind) => return Err(kind),
                },
            }
        }
        Ok(moved)
    }

    /// The data connection has ended: the file must be whole.
    fn data_over(&mut self, c: &mut FtpClient) -> Result<(), Kind> {
        if c.got != self.ftp.size {
            return Err(Kind::Mismatch);
        }
        c.data_done = true;
        c.close_data();
        self.transfer_progress(c, Instant::now())
    }

    /// The dialogue: what each reply must be and what follows it.
    fn on_reply(
        &mut self,
        i: usize,
        c: &mut FtpClient,
        code: u16,
        now: Instant,
    ) -> Result<(), Kind> {
        // A reply while a command is still going out answers nothing we sent.
        if c.out.is_some() && c.step != FtpStep::Retr {
            return Err(Kind::Mismatch);
        }
        match (c.step, code) {
            (FtpStep::Greeting, 220) => {
                Self::send(c, Cmd::User);
                c.step = FtpStep::User;
            }
            (FtpStep::User, 331) => {
                Self::send(c, Cmd::Pass);
                c.step = FtpStep::Pass;
            }
            (FtpStep::Pass, 230) => {
                Self::send(c, Cmd::Type);
                c.step = FtpStep::Type;
            }
            (FtpStep::Type, 200) => self.epsv(c, now),
            (FtpStep::Epsv, 229) => {
                let port = epsv_port(c.replies.line()).ok_or(Kind::Mismatch)?;
                let addr = SocketAddr::new(self.plan.addr.ip(), port);
                // No TCP_NODELAY: nothing is ever written on it.
                let mut s = TcpStream::connect(addr).map_err(|_| Kind::Connect)?;
                self.poll
                    .registry()
                    .register(
                        &mut s,
                        Token(2 * i + 1),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(|_| Kind::Io)?;
                c.data = Some(s);
                c.data_read = false;
                c.step = FtpStep::DataConnecting;
                c.next_at = now + ATTEMPT_TIMEOUT;
                self.wake_by(c.next_at);
            }
            (FtpStep::Retr, 125 | 150) if !c.prelim => c.prelim = true,
            (FtpStep::Retr, 226) if c.prelim && !c.finished => {
                c.finished = true;
                self.transfer_progress(c, now)?;
            }
            (FtpStep::Quit, 221) => {
                self.tally.answered(&mut c.measured, c.started, now);
                c.step = FtpStep::Closing;
            }
            _ => return Err(Kind::Mismatch),
        }
        Ok(())
    }

    /// Asks for a passive data connection (download: a transfer starts).
    fn epsv(&mut self, c: &mut FtpClient, now: Instant) {
        if self.ftp.download {
            c.started = now;
        }
        c.new_transfer();
        Self::send(c, Cmd::Epsv);
        c.step = FtpStep::Epsv;
    }

    /// The transfer is complete once the 1yz and the 226 have come and the
    /// data has ended: then QUIT (sessions) or the next transfer (download).
    fn transfer_progress(&mut self, c: &mut FtpClient, now: Instant) -> Result<(), Kind> {
        if !(c.prelim && c.finished && c.data_done) {
            return Ok(());
        }
        if c.got != self.ftp.size {
            return Err(Kind::Mismatch);
        }
        if self.ftp.download {
            self.tally.answered(&mut c.measured, c.started, now);
            self.epsv(c, now);
        } else {
            Self::send(c, Cmd::Quit);
            c.step = FtpStep::Quit;
        }
        Ok(())
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
    use crate::bench::scenario::{Exchange, Expect};
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
    fn ftp_replies_are_parsed_across_reads() {
        let mut r = Replies::new();
        let text = b"220-hello\r\n there\r\n220-more\r\n220 ready\r\n331 ok\r\n229 Entering (|||4242|)\r\n";
        // Every split of the stream into two reads gives the same replies.
        for cut in 0..text.len() {
            r.reset();
            let mut codes = Vec::new();
            for part in [&text[..cut], &text[cut..]] {
                let mut pos = 0;
                while let Some(code) = r.next(part, &mut pos).unwrap() {
                    codes.push(code);
                }
                assert_eq!(pos, part.len());
            }
            assert_eq!(codes, [220, 331, 229], "cut at {cut}");
            assert_eq!(epsv_port(r.line()), Some(4242));
        }
        r.reset();
        assert!(r.next(b"hello\r\n", &mut 0).is_err());
        r.reset();
        assert!(r.next(b"220x\r\n", &mut 0).is_err());
        assert_eq!(epsv_port(b"229 (!!!21!)"), Some(21));
        assert_eq!(epsv_port(b"229 (|||0|)"), None);
        assert_eq!(epsv_port(b"229 (||21|)"), None);
        assert_eq!(epsv_port(b"229 no port"), None);
    }

    #[test]
    fn ftp_pattern_is_the_fixture() {
        let p = ftp_pattern();
        for off in [0u64, 1, 65_520, 65_521, 1 << 30, (1 << 30) + 77] {
            let got = ftp_expected(&p, off, 300);
            let want: Vec<u8> = (off..off + 300).map(scenario::fixture_byte).collect();
            assert_eq!(got, &want[..], "at {off}");
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
