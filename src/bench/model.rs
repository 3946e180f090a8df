//! The bench's results as plain data: what the load generator measured,
//! what was sampled from the server's processes, and the report they make.
//! Serialised as the `--json` document (see [`SCHEMA_VERSION`]).

use std::collections::BTreeMap;

use serde::Serialize;

/// The version of the `--json` document. Bumped on any change a reader
/// could notice (a field renamed, removed or given a new meaning); new
/// fields may appear without a bump.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors the load generator saw, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Connections that could not be established.
    pub connect: u64,
    /// Answers that differed from what was expected (corruption, stale or
    /// shifted bytes).
    pub mismatch: u64,
    /// Connections the server closed while an answer was owed.
    pub closed: u64,
    /// Other socket errors (resets, ...).
    pub io: u64,
    /// Connections that got no answer at all during the timed phase.
    pub stalled: u64,
    /// TLS handshakes that failed, and TLS records that could not be read.
    pub tls: u64,
}

impl Errors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.mismatch + self.closed + self.io + self.stalled + self.tls
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.mismatch += other.mismatch;
        self.closed += other.closed;
        self.io += other.io;
        self.stalled += other.stalled;
        self.tls += other.tls;
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// What the load generator measured in one timed phase.
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    /// Requests answered correctly in the timed phase.
    pub requests: u64,
    /// Payload bytes received back in the timed phase.
    pub bytes: u64,
    /// The timed phase's length in seconds.
    pub seconds: f64,
    /// Latency of the answered requests (open loop: from the intended send
    /// time).
    pub latency: Latency,
    /// Errors by kind.
    pub errors: Errors,
    /// CPU seconds the load generator itself used in the timed phase.
    pub client_cpu_seconds: f64,
    /// The load generator's threads.
    pub client_threads: usize,
    /// Idle connections still open at the end (idle scenario), else 0.
    pub idle_held: usize,
    /// Latency histogram (microseconds), for merging and the report; not
    /// serialised.
    #[serde(skip)]
    pub histogram: Option<hdrhistogram::Histogram<u64>>,
}

impl LoadResult {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Whether the load generator, not the server, was the limit: its
    /// threads were busy nearly all the time.
    pub fn client_saturated(&self) -> bool {
        let capacity = self.seconds * self.client_threads as f64;
        capacity > 0.0 && self.client_cpu_seconds / capacity > CLIENT_SATURATION
    }
}

/// The share of its threads' time above which the load generator counts as
/// the bottleneck.
pub const CLIENT_SATURATION: f64 = 0.9;

/// One process of the server, as sampled from /proc.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessShare {
    /// Its pid.
    pub pid: i32,
    /// CPU seconds it used in the timed phase.
    pub cpu_seconds: f64,
}

/// What was sampled from the server's processes during the timed phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerStats {
    /// CPU seconds (user + system) over every process of the server,
    /// including children that exited and were reaped.
    pub cpu_seconds: f64,
    /// The largest sum of resident memory over its processes, in KiB.
    pub peak_rss_kib: u64,
    /// The most processes seen at once.
    pub peak_processes: usize,
    /// The most threads seen at once (over all processes).
    pub peak_threads: usize,
    /// For multi-process servers: each worker's CPU seconds (the master
    /// excluded), to show how evenly connections spread.
    pub workers: Vec<ProcessShare>,
}

/// One measured run of one server.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Which repetition (0-based).
    pub repeat: usize,
    /// The load side.
    pub load: LoadResult,
    /// The server side (absent for `--against` servers, which muse did not
    /// start and cannot see).
    pub server: Option<ServerStats>,
}

/// The architecture family, for grouping and colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// serial
    Serial,
    /// process-per-connection, prefork
    Processes,
    /// thread-per-connection, thread-pool
    Threads,
    /// prefork-threads
    Hybrid,
    /// reactor, prefork-reactor, multi-reactor, reactor-pool
    Evented,
    /// async
    Async,
    /// uring, multi-uring, prefork-uring
    Proactor,
    /// a server that is not muse
    Baseline,
}

/// Every run of one server, with the summary the table shows.
#[derive(Clone, Debug, Serialize)]
pub struct ServerResult {
    /// `muse/ARCH` or the baseline's name.
    pub name: String,
    /// The family.
    pub family: Family,
    /// The runs in the order they happened.
    pub runs: Vec<Run>,
    /// Median requests per second over the runs.
    pub median_rate: f64,
    /// Smallest and largest requests per second over the runs.
    pub rate_range: (f64, f64),
    /// Median p99 latency over the runs, in microseconds.
    pub median_p99_us: f64,
    /// Median, over the runs with a server CPU figure, of requests /
    /// server CPU seconds: requests per server CPU-second. None when no run
    /// has one (a server muse did not start).
    pub median_efficiency: Option<f64>,
}

/// The figure the servers are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ranking {
    /// Requests per second: what the servers can answer.
    Rate,
    /// Requests per server CPU-second, when the load generator was the
    /// limit in most runs and requests per second measure it instead.
    Efficiency,
}

/// The whole bench.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The protocol.
    pub protocol: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's one-line summary.
    pub summary: String,
    /// Measuring connections.
    pub clients: usize,
    /// Timed phase per run, seconds.
    pub duration_seconds: f64,
    /// Open-loop rate in requests/s, if any.
    pub rate: Option<f64>,
    /// Runs per server.
    pub repeat: usize,
    /// The machine's CPU count.
    pub cpus: usize,
    /// The run-to-run spread the bench saw (median over servers of
    /// (max - min) / median rate): differences smaller than this are ties.
    pub noise: f64,
    /// What "best" means in `servers`.
    pub ranked_by: Ranking,
    /// Servers, best first.
    pub servers: Vec<ServerResult>,
    /// Anything the reader must know (a saturated load generator, a server
    /// that failed to start, ...).
    pub notes: Vec<String>,
    /// Extra facts by name, for forward compatibility.
    pub extra: BTreeMap<String, String>,
}
