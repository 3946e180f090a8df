//! echo_load: a bounded, closed-loop echo load generator.
//!
//! Each connection sends one `--size`-byte message, waits for the whole echo,
//! checks it byte for byte, and sends the next one. Connections are spread
//! over `--threads` threads, each running its own `mio::Poll`; all buffers are
//! allocated per connection before the run, so the hot loop never allocates.
//!
//! Timeline: connect (bounded by `CONNECT_TIMEOUT`), `--warmup` seconds not
//! counted, then `--duration` seconds measured. Every wait is a poll with a
//! timeout, so the run ends on time even if the server hangs.
//!
//! Output: one line of `key=value` pairs on stdout, for example
//! `rps=123456 errors=0 connections=50 size=64 duration=5.00 p50_us=41.0 p99_us=120.0 ...`.
//! Exit code 0 when every connection connected and every echo matched, 1 when
//! any error was counted or no echo at all completed in the measured window,
//! 2 on bad arguments. `stalled=` counts healthy connections that completed
//! nothing in the window (expected under `serial`, which serves one at a time).
//!
//! Usage:
//! `cargo run --release --example echo_load -- --addr 127.0.0.1:PORT
//!  [--connections 50] [--size 64] [--duration 5] [--warmup 1] [--threads 2]`

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// How long all connections together may take to be established. Loopback
/// connects take microseconds; a server whose backlog is full drops SYNs and
/// would otherwise keep us waiting for the kernel's two-minute retry budget.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest single poll wait: short enough to notice the end of a phase
/// promptly even when no events arrive.
const POLL_TICK: Duration = Duration::from_millis(100);

/// Events fetched per poll call.
const EVENTS_CAPACITY: usize = 1024;

/// Largest message we agree to send, to keep preallocated buffers sane.
const MAX_SIZE: usize = 64 << 20;

const USAGE: &str = "usage: echo_load --addr HOST:PORT [--connections 50] [--size 64] \
[--duration 5] [--warmup 1] [--threads 2]";

struct Config {
    addr: SocketAddr,
    connections: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    threads: usize,
}

fn parse_args() -> Result<Config, String> {
    let mut addr = None;
    let mut config = Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 7007)),
        connections: 50,
        size: 64,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => {
                addr = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad --addr {value:?} (want IP:PORT)"))?,
                )
            }
            "--connections" => config.connections = parse_count(&flag, &value)?,
            "--size" => config.size = parse_count(&flag, &value)?,
            "--threads" => config.threads = parse_count(&flag, &value)?,
            "--duration" => config.duration = parse_seconds(&flag, &value)?,
            "--warmup" => config.warmup = parse_seconds(&flag, &value)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    config.addr = addr.ok_or("--addr is required")?;
    if config.size > MAX_SIZE {
        return Err(format!("--size must be at most {MAX_SIZE}"));
    }
    if config.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    config.threads = config.threads.min(config.connections);
    Ok(config)
}

fn parse_count(flag: &str, value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} must be a positive integer, got {value:?}")),
    }
}

fn parse_seconds(flag: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{flag} must be seconds between 0 and 86400, got {value:?}"
        )),
    }
}

/// Latency histogram in nanoseconds: log2 major buckets, each split into 16
/// linear sub-buckets, so any recorded value is off by at most 1/16 (6.25%).
/// Fixed size, no allocation, cheap to merge.
struct Histogram {
    counts: [u64; Histogram::BUCKETS],
    max: u64,
}

impl Histogram {
    const SUB_BITS: u32 = 4;
    const SUB: u64 = 1 << Self::SUB_BITS;
    const BUCKETS: usize = ((64 - Self::SUB_BITS + 1) as usize) * Self::SUB as usize;

    fn new() -> Self {
        Histogram {
            counts: [0; Self::BUCKETS],
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < Self::SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - Self::SUB_BITS;
        let major = (msb - Self::SUB_BITS + 1) as u64;
        (major * Self::SUB + ((v >> shift) & (Self::SUB - 1))) as usize
    }

    /// Largest value that falls into bucket `i`.
    fn upper_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::SUB {
            return i;
        }
        let major = i / Self::SUB;
        let sub = i % Self::SUB;
        let shift = major - 1;
        let lower = (Self::SUB + sub) << shift;
        lower + ((1u64 << shift) - 1)
    }

    fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.max = self.max.max(nanos);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Value at quantile `q` (0..=1), as the upper bound of its bucket, never
    /// above the largest value recorded.
    fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper_bound(i).min(self.max);
            }
        }
        self.max
    }
}

/// Errors by kind; the sum is what `errors=` reports.
#[derive(Default, Clone, Copy)]
struct ErrorCounts {
    connect: u64,
    mismatch: u64,
    closed: u64,
    io: u64,
}

impl ErrorCounts {
    fn total(&self) -> u64 {
        self.connect + self.mismatch + self.closed + self.io
    }

    fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.mismatch += o.mismatch;
        self.closed += o.closed;
        self.io += o.io;
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum State {
    Connecting,
    Writing,
    Reading,
    /// Connected and waiting for the measurement clock to start.
    Ready,
    Failed,
}

struct Connection {
    stream: TcpStream,
    state: State,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    read: usize,
    seq: u64,
    sent_at: Instant,
    /// Requests completed inside the measured window.
    measured: u64,
}

impl Connection {
    fn new(stream: TcpStream, id: usize, size: usize) -> Self {
        // A per-connection pattern, so bytes crossing between connections are
        // caught; the sequence number stamped in front catches stale replies.
        let request = (0..size)
            .map(|i| (id.wrapping_mul(131).wrapping_add(i * 7) % 251) as u8)
            .collect();
        Connection {
            stream,
            state: State::Connecting,
            request,
            response: vec![0; size],
            written: 0,
            read: 0,
            seq: 0,
            sent_at: Instant::now(),
            measured: 0,
        }
    }

    fn start_request(&mut self, now: Instant) {
        self.seq = self.seq.wrapping_add(1);
        let stamp = self.seq.to_le_bytes();
        let n = stamp.len().min(self.request.len());
        self.request[..n].copy_from_slice(&stamp[..n]);
        self.written = 0;
        self.read = 0;
        self.sent_at = now;
        self.state = State::Writing;
    }
}

/// What one thread measured.
struct ThreadReport {
    histogram: Box<Histogram>,
    completed: u64,
    errors: ErrorCounts,
    stalled: u64,
}

/// Phase boundaries shared by all threads, set once every thread is connected.
#[derive(Clone, Copy)]
struct Clock {
    measure_from: Instant,
    end: Instant,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Runs one thread's share of the connections through connect, warm-up and
/// measurement.
fn run_thread(
    config: &Config,
    first_id: usize,
    count: usize,
    barrier: &Barrier,
    clock: &Mutex<Option<Clock>>,
) -> io::Result<ThreadReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut histogram = Box::new(Histogram::new());
    let mut errors = ErrorCounts::default();
    let mut completed = 0u64;

    // 1. Start every connect at once (non-blocking), then wait for them.
    let mut conns: Vec<Connection> = Vec::with_capacity(count);
    for i in 0..count {
        match TcpStream::connect(config.addr) {
            Ok(mut stream) => {
                let token = Token(conns.len());
                poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                conns.push(Connection::new(stream, first_id + i, config.size));
            }
            Err(_) => errors.connect += 1,
        }
    }
    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut pending = conns.len();
    while pending > 0 {
        let now = Instant::now();
        if now >= connect_deadline {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some((connect_deadline - now).min(POLL_TICK))) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if conn.state != State::Connecting {
                continue;
            }
            if let Ok(Some(_)) | Err(_) = conn.stream.take_error() {
                conn.state = State::Failed;
                errors.connect += 1;
                pending -= 1;
                continue;
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    let _ = conn.stream.set_nodelay(true);
                    conn.state = State::Ready;
                    pending -= 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(_) => {
                    conn.state = State::Failed;
                    errors.connect += 1;
                    pending -= 1;
                }
            }
        }
    }
    for conn in conns.iter_mut().filter(|c| c.state == State::Connecting) {
        conn.state = State::Failed;
        errors.connect += 1;
    }

    // 2. Wait until every thread is connected; the main thread then sets the
    //    shared clock, so all threads warm up and measure over the same window.
    barrier.wait();
    barrier.wait();
    let clock = clock
        .lock()
        .map_err(|_| io::Error::other("clock lock poisoned"))?
        .expect("clock is set between the two barrier waits");

    // 3. Send the first request on every connection; from here on each
    //    completed echo immediately starts the next request (closed loop).
    let now = Instant::now();
    for conn in conns.iter_mut().filter(|c| c.state == State::Ready) {
        conn.start_request(now);
        drive(conn, &clock, &mut histogram, &mut completed, &mut errors);
    }

    // 4. Event loop until the end of the window, whatever the server does.
    loop {
        let now = Instant::now();
        if now >= clock.end {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some((clock.end - now).min(POLL_TICK))) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if let Some(conn) = conns.get_mut(event.token().0) {
                drive(conn, &clock, &mut histogram, &mut completed, &mut errors);
            }
        }
    }

    let stalled = conns
        .iter()
        .filter(|c| c.state != State::Failed && c.measured == 0)
        .count() as u64;
    Ok(ThreadReport {
        histogram,
        completed,
        errors,
        stalled,
    })
}

/// Moves one connection forward until the socket would block. Edge-triggered
/// readiness means we must drain: write until done or `WouldBlock`, read until
/// the whole echo is in or `WouldBlock`.
fn drive(
    conn: &mut Connection,
    clock: &Clock,
    histogram: &mut Histogram,
    completed: &mut u64,
    errors: &mut ErrorCounts,
) {
    loop {
        match conn.state {
            State::Writing => match conn.stream.write(&conn.request[conn.written..]) {
                Ok(0) => {
                    errors.closed += 1;
                    conn.state = State::Failed;
                }
                Ok(n) => {
                    conn.written += n;
                    if conn.written == conn.request.len() {
                        conn.state = State::Reading;
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => {}
                Err(_) => {
                    errors.io += 1;
                    conn.state = State::Failed;
                }
            },
            State::Reading => match conn.stream.read(&mut conn.response[conn.read..]) {
                Ok(0) => {
                    errors.closed += 1;
                    conn.state = State::Failed;
                }
                Ok(n) => {
                    conn.read += n;
                    if conn.read == conn.response.len() {
                        let now = Instant::now();
                        if conn.response != conn.request {
                            errors.mismatch += 1;
                            conn.state = State::Failed;
                            continue;
                        }
                        if now >= clock.measure_from && now < clock.end {
                            let nanos = now.duration_since(conn.sent_at).as_nanos();
                            histogram.record(u64::try_from(nanos).unwrap_or(u64::MAX));
                            *completed += 1;
                            conn.measured += 1;
                        }
                        conn.start_request(now);
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => {}
                Err(_) => {
                    errors.io += 1;
                    conn.state = State::Failed;
                }
            },
            State::Failed => {
                // Stop watching it; the socket closes when the run ends.
                return;
            }
            State::Connecting | State::Ready => return,
        }
    }
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("echo_load: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = Arc::new(config);
    let barrier = Arc::new(Barrier::new(config.threads + 1));
    let clock = Arc::new(Mutex::new(None));

    // Spread connections as evenly as possible over the threads.
    let mut handles = Vec::with_capacity(config.threads);
    let mut first_id = 0;
    for t in 0..config.threads {
        let count = config.connections / config.threads
            + usize::from(t < config.connections % config.threads);
        let (config, barrier, clock) = (config.clone(), barrier.clone(), clock.clone());
        let spawned = thread::Builder::new()
            .name(format!("echo-load-{t}"))
            .spawn(move || run_thread(&config, first_id, count, &barrier, &clock));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The others are waiting on the barrier for this thread; we
                // cannot recover them cleanly, so stop here.
                eprintln!("echo_load: cannot start thread: {e}");
                std::process::exit(1);
            }
        }
        first_id += count;
    }

    barrier.wait();
    let started = Instant::now();
    let measure_from = started + config.warmup;
    let end = measure_from + config.duration;
    *clock.lock().expect("clock lock") = Some(Clock { measure_from, end });
    let cpu_start = cpu_seconds();
    barrier.wait();

    let mut histogram = Histogram::new();
    let mut completed = 0u64;
    let mut errors = ErrorCounts::default();
    let mut stalled = 0u64;
    let mut failed_threads = 0u64;
    for h in handles {
        match h.join() {
            Ok(Ok(report)) => {
                histogram.merge(&report.histogram);
                completed += report.completed;
                errors.add(&report.errors);
                stalled += report.stalled;
            }
            Ok(Err(e)) => {
                eprintln!("echo_load: worker thread failed: {e}");
                failed_threads += 1;
            }
            Err(_) => {
                eprintln!("echo_load: worker thread panicked");
                failed_threads += 1;
            }
        }
    }
    let finished = Instant::now();
    let window = finished.min(end).saturating_duration_since(measure_from);
    let window_secs = window.as_secs_f64().max(1e-9);
    let wall = finished.duration_since(started).as_secs_f64().max(1e-9);
    let client_cpu_pct = 100.0 * (cpu_seconds() - cpu_start) / wall;
    let us = |nanos: u64| nanos as f64 / 1000.0;
    let total_errors = errors.total() + failed_threads;

    println!(
        "rps={:.0} errors={} connections={} size={} duration={:.2} p50_us={:.1} p90_us={:.1} \
         p99_us={:.1} max_us={:.1} requests={} threads={} stalled={} connect_errors={} \
         mismatches={} closed={} io_errors={} client_cpu_pct={:.0}",
        completed as f64 / window_secs,
        total_errors,
        config.connections,
        config.size,
        window.as_secs_f64(),
        us(histogram.quantile(0.50)),
        us(histogram.quantile(0.90)),
        us(histogram.quantile(0.99)),
        us(histogram.max),
        completed,
        config.threads,
        stalled,
        errors.connect,
        errors.mismatch,
        errors.closed,
        errors.io,
        client_cpu_pct,
    );
    if total_errors > 0 {
        ExitCode::FAILURE
    } else if completed == 0 {
        // Nothing failed, yet nothing came back: a hung server is not a pass.
        eprintln!("echo_load: no echo completed in the measured window");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev_upper = None;
        for i in 0..Histogram::BUCKETS {
            let upper = Histogram::upper_bound(i);
            if let Some(p) = prev_upper {
                assert_eq!(
                    Histogram::index(p + 1),
                    i,
                    "bucket {i} starts right after {p}"
                );
            }
            assert_eq!(Histogram::index(upper), i);
            prev_upper = Some(upper);
            if upper == u64::MAX {
                break;
            }
        }
        for v in [0, 1, 15, 16, 17, 1000, 123_456, 1 << 40, u64::MAX] {
            let ub = Histogram::upper_bound(Histogram::index(v));
            assert!(ub >= v && (ub - v) as f64 <= v as f64 / 16.0 + 1.0);
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((500_000..=532_000).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), 1_000_000);
    }
}
