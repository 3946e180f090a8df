//! Bench scenarios as data. A scenario names a protocol and a [`Workload`]:
//! what each load connection sends, what it expects back, and how many
//! connections do what. The runner and the load generator know nothing of
//! any particular scenario; a protocol adds its scenarios to [`ALL`].

use std::time::Duration;

/// One request and the answer that proves it was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The bytes sent.
    pub request: Vec<u8>,
    /// What must come back.
    pub expect: Expect,
}

/// How the load generator recognises a complete, correct answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The request itself, byte for byte (echo).
    Echo,
    /// Exactly these bytes.
    Exact(Vec<u8>),
}

impl Exchange {
    /// The answer's length in bytes.
    pub fn answer_len(&self) -> usize {
        match &self.expect {
            Expect::Echo => self.request.len(),
            Expect::Exact(b) => b.len(),
        }
    }

    /// The bytes that must come back.
    pub fn answer(&self) -> &[u8] {
        match &self.expect {
            Expect::Echo => &self.request,
            Expect::Exact(b) => b,
        }
    }
}

/// What the load connections do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every connection sends the request and waits for the whole answer,
    /// keeping `depth` requests in flight (1: strict request/response;
    /// more: pipelining). Latency is per request.
    RequestResponse {
        /// The request and its answer.
        exchange: Exchange,
        /// Requests in flight per connection.
        depth: usize,
    },
    /// Every connection sends `chunk`-byte writes as fast as the server
    /// takes them and reads the echo back (bulk throughput). A "request" is
    /// one chunk echoed in full; latency is the chunk's round trip.
    Stream {
        /// Bytes per write.
        chunk: usize,
    },
    /// A new connection per request: connect, exchange once, close. Latency
    /// includes the connect.
    Connect {
        /// The request and its answer.
        exchange: Exchange,
    },
    /// `idle` extra connections are opened first and held open without a
    /// byte, while the measuring connections do request/response. The
    /// report says how many idle connections the server kept.
    Idle {
        /// Idle connections to hold.
        idle: usize,
        /// The measuring connections' request and answer.
        exchange: Exchange,
    },
    /// One extra connection sends the first half of a request and then
    /// stalls for the whole run, while the measuring connections do
    /// request/response: shows who is blocked by one slow client.
    Slow {
        /// The measuring connections' request and answer (the staller sends
        /// half of it).
        exchange: Exchange,
    },
    /// FTP: every connection runs whole sessions, one after another:
    /// connect, `220`, `USER anonymous`, `PASS`, `TYPE I`, `EPSV`, connect
    /// the data port, `RETR file`, the data to its end (checked against
    /// [`fixture_byte`], `size` bytes), `150`/`125` and `226`, `QUIT`, `221`,
    /// close. A "request" is one whole session; latency is its duration.
    FtpSessions {
        /// The file retrieved (a fixture of the scenario).
        file: String,
        /// Its size in bytes.
        size: u64,
    },
    /// FTP: every connection logs in once, then retrieves `file` again and
    /// again (`EPSV`, `RETR`). A "request" is one complete download; its
    /// latency is the download's duration; bytes are the data received.
    FtpDownload {
        /// The file retrieved (a fixture of the scenario).
        file: String,
        /// Its size in bytes.
        size: u64,
    },
    /// HTTP: every client fetches one file again and again (see
    /// [`HttpLoad`]). A "request" is one response, verified: status 200,
    /// `Content-Length`, every body byte; bytes are the bodies received.
    Http(HttpLoad),
    /// calc: every client sends one expression line at a time and checks
    /// the answer (see [`CalcLoad`]). A "request" is one answer.
    Calc(CalcLoad),
    /// kv: every client sends `SET` and `GET` of its own keys by turns and
    /// checks each reply (see [`KvLoad`]). A "request" is one reply.
    Kv(KvLoad),
}

/// What the kv clients send, and how the server keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLoad {
    /// Bytes per value.
    pub value_size: usize,
    /// Commands in flight per connection (more than 1: pipelining).
    pub depth: usize,
    /// Keys per client (`key:<client>:<0..keys>`): the keyspace is
    /// `clients * keys` values of `value_size` bytes.
    pub keys: u64,
    /// The server logs every write and syncs it before replying: muse with
    /// `--data-dir DIR --fsync always`, a spawned peer with
    /// `$MUSE_BENCH_DATA_DIR` (see `target.rs`), DIR fresh for every run.
    pub durable: bool,
}

/// What the calc clients send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalcLoad {
    /// The measured clients' expression.
    pub expr: String,
    /// How many of the clients (the last ones) send `beside_expr` instead:
    /// their answers are checked but not measured (`mixed`: heavy work
    /// beside the cheap clients whose latency is the figure).
    pub heavy_beside: usize,
    /// What the clients beside the measured ones send.
    pub beside_expr: String,
}

/// What the HTTP clients fetch and how, and what they are up against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLoad {
    /// The file fetched (a fixture of the scenario): `GET /file`.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Requests in flight per connection (more than 1: pipelining).
    pub depth: usize,
    /// One request per connection (`Connection: close`; the server closes
    /// after the response). Latency then includes the handshake.
    pub close: bool,
    /// Idle keep-alive connections held open beside the measuring clients.
    pub idle: usize,
    /// Slowloris connections beside the measuring clients: each sends half
    /// a request head, then nothing more.
    pub slow: usize,
}

impl HttpLoad {
    /// The request every client sends.
    pub fn request(&self) -> Vec<u8> {
        format!(
            "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: muse-bench\r\n{}\r\n",
            self.file,
            if self.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        )
        .into_bytes()
    }
}

/// The connections a workload holds open beside its measuring clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Beside {
    /// Connections that never send a byte.
    pub idle: usize,
    /// Connections that send [`Beside::stall`] and then nothing.
    pub stallers: usize,
    /// What each staller sends: the first half of a request.
    pub stall: Vec<u8>,
}

impl Workload {
    /// Whether the figure that matters is bytes per second (bulk data), not
    /// requests per second.
    pub fn is_bulk(&self) -> bool {
        match self {
            Workload::FtpDownload { .. } => true,
            Workload::Http(h) => h.size >= 1 << 20,
            _ => false,
        }
    }

    /// The idle connections and stallers beside the measuring clients.
    pub fn beside(&self) -> Beside {
        let half = |r: &[u8]| r[..r.len() / 2].to_vec();
        match self {
            Workload::Idle { idle, .. } => Beside {
                idle: *idle,
                ..Beside::default()
            },
            Workload::Slow { exchange } => Beside {
                idle: 0,
                stallers: 1,
                stall: half(&exchange.request),
            },
            Workload::Http(h) => Beside {
                idle: h.idle,
                stallers: h.slow,
                stall: if h.slow > 0 {
                    half(&h.request())
                } else {
                    Vec::new()
                },
            },
            _ => Beside::default(),
        }
    }
}

/// The period of the fixture files' byte pattern: a prime, so that data
/// shifted by anything but a multiple of it is caught.
pub const FIXTURE_PERIOD: usize = 65_521;

/// The fixture pattern's first [`FIXTURE_PERIOD`] bytes: a fixture file's
/// byte at offset `i` is `pattern[i % FIXTURE_PERIOD]` (xorshift noise, so
/// that no short run of bytes repeats).
pub fn fixture_pattern() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..FIXTURE_PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A fixture file's byte at `offset` (slow: for tests and small checks).
pub fn fixture_byte(offset: u64) -> u8 {
    fixture_pattern()[(offset % FIXTURE_PERIOD as u64) as usize]
}

/// A named scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The `--scenario` name.
    pub name: &'static str,
    /// The protocol it drives.
    pub protocol: &'static str,
    /// One line for `--help` and the report.
    pub summary: &'static str,
    /// What the connections do.
    pub workload: Workload,
    /// Measuring connections unless `--clients` says otherwise.
    pub clients: usize,
    /// The timed phase unless `--duration` says otherwise.
    pub duration: Duration,
    /// The files the server must serve, by name and size: the runner writes
    /// them (the [`fixture_pattern`]) into a fresh directory and gives it to
    /// every server as its root.
    pub fixture: Vec<(&'static str, u64)>,
    /// The connections speak TLS (the bench makes a certificate for the run
    /// and serves it): how.
    pub tls: Option<TlsLoad>,
}

/// How a TLS scenario's connections use TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsLoad {
    /// The client resumes TLS sessions (tickets or session IDs) when it
    /// connects again; off, every connection pays a full handshake.
    pub resume: bool,
    /// The ALPN protocol offered (`http/1.1` for HTTP), if any.
    pub alpn: Option<&'static str>,
    /// Explicit TLS (FTPS): the connections start plain and switch to TLS
    /// as the protocol says (`AUTH TLS`, `PROT P`); the server keeps its
    /// plain listener. Otherwise TLS from the first byte.
    pub explicit: bool,
}

/// A 64-byte echo request whose bytes vary, so that a server returning
/// stale or shifted data is caught.
fn echo_request(size: usize) -> Exchange {
    Exchange {
        request: (0..size)
            .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36])
            .collect(),
        expect: Expect::Echo,
    }
}

/// Every scenario muse knows.
pub fn all() -> Vec<Scenario> {
    let secs = Duration::from_secs;
    vec![
        Scenario {
            name: "rr",
            protocol: "echo",
            summary: "50 connections, 64-byte request/response, one at a time",
            workload: Workload::RequestResponse {
                exchange: echo_request(64),
                depth: 1,
            },
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "pipeline",
            protocol: "echo",
            summary: "50 connections, 16 pipelined 64-byte requests each",
            workload: Workload::RequestResponse {
                exchange: echo_request(64),
                depth: 16,
            },
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "stream",
            protocol: "echo",
            summary: "8 connections streaming 64 KiB writes (bulk throughput)",
            workload: Workload::Stream { chunk: 64 * 1024 },
            clients: 8,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "connect",
            protocol: "echo",
            summary: "a new connection per 64-byte request, 16 at a time",
            workload: Workload::Connect {
                exchange: echo_request(64),
            },
            clients: 16,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "idle",
            protocol: "echo",
            summary: "5,000 idle connections held open while 10 measure request/response",
            workload: Workload::Idle {
                idle: 5000,
                exchange: echo_request(64),
            },
            clients: 10,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "slow",
            protocol: "echo",
            summary: "one client stalls mid-request while 10 measure request/response",
            workload: Workload::Slow {
                exchange: echo_request(64),
            },
            clients: 10,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "sessions",
            protocol: "ftp",
            summary: "16 clients, each a whole session at a time: login, EPSV, RETR 64 KiB, quit",
            workload: Workload::FtpSessions {
                file: "64k.bin".into(),
                size: SESSION_FILE,
            },
            clients: 16,
            duration: secs(5),
            fixture: vec![("64k.bin", SESSION_FILE)],
            tls: None,
        },
        Scenario {
            name: "ftps-sessions",
            protocol: "ftp",
            summary: "sessions over explicit FTPS: AUTH TLS, login, PBSZ 0, PROT P, EPSV, RETR 64 KiB over TLS, quit",
            workload: Workload::FtpSessions {
                file: "64k.bin".into(),
                size: SESSION_FILE,
            },
            clients: 16,
            duration: secs(5),
            fixture: vec![("64k.bin", SESSION_FILE)],
            // The data connection resumes the control connection's
            // session where the server allows it.
            tls: Some(TlsLoad {
                resume: true,
                alpn: None,
                explicit: true,
            }),
        },
        Scenario {
            name: "download",
            protocol: "ftp",
            summary: "1 client logged in once, retrieving a 1 GiB file again and again",
            workload: Workload::FtpDownload {
                file: "1g.bin".into(),
                size: DOWNLOAD_FILE,
            },
            clients: 1,
            duration: secs(5),
            fixture: vec![("1g.bin", DOWNLOAD_FILE)],
            tls: None,
        },
        Scenario {
            name: "get",
            protocol: "http",
            summary: "50 keep-alive connections, GET of a 1 KiB file, one at a time",
            workload: http(HTTP_SMALL, 1, false, 0, 0),
            clients: 50,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: None,
        },
        Scenario {
            name: "large",
            protocol: "http",
            summary: "8 keep-alive connections, GET of a 1 MiB file (bulk throughput)",
            workload: http(HTTP_LARGE, 1, false, 0, 0),
            clients: 8,
            duration: secs(5),
            fixture: vec![HTTP_LARGE],
            tls: None,
        },
        Scenario {
            name: "close",
            protocol: "http",
            summary: "a new connection per 1 KiB GET (Connection: close), 16 at a time",
            workload: http(HTTP_SMALL, 1, true, 0, 0),
            clients: 16,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: None,
        },
        Scenario {
            name: "pipeline",
            protocol: "http",
            summary: "50 keep-alive connections, 16 pipelined 1 KiB GETs each",
            workload: http(HTTP_SMALL, 16, false, 0, 0),
            clients: 50,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: None,
        },
        Scenario {
            name: "idle",
            protocol: "http",
            summary: "10,000 idle keep-alive connections held open while 10 measure 1 KiB GETs",
            workload: http(HTTP_SMALL, 1, false, 10_000, 0),
            clients: 10,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: None,
        },
        Scenario {
            name: "slow",
            protocol: "http",
            summary: "100 slowloris clients send half a request head while 10 measure 1 KiB GETs",
            workload: http(HTTP_SMALL, 1, false, 0, 100),
            clients: 10,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: None,
        },
        Scenario {
            name: "https-get",
            protocol: "http",
            summary: "50 keep-alive TLS connections, GET of a 1 KiB file, one at a time",
            workload: http(HTTP_SMALL, 1, false, 0, 0),
            clients: 50,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: Some(TlsLoad {
                resume: true,
                alpn: Some("http/1.1"),
                explicit: false,
            }),
        },
        Scenario {
            name: "handshake",
            protocol: "http",
            summary: "a new TLS connection per 1 KiB GET, 16 at a time, a full handshake each (no resumption)",
            workload: http(HTTP_SMALL, 1, true, 0, 0),
            clients: 16,
            duration: secs(5),
            fixture: vec![HTTP_SMALL],
            tls: Some(TlsLoad {
                resume: false,
                alpn: Some("http/1.1"),
                explicit: false,
            }),
        },
        Scenario {
            name: "cheap",
            protocol: "calc",
            summary: "50 connections, a small expression at a time",
            workload: calc(CALC_CHEAP, 0),
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "heavy",
            protocol: "calc",
            summary: "8 connections, 3 ** 200000 at a time (a few ms of CPU each)",
            workload: calc(CALC_HEAVY, 0),
            clients: 8,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "mixed",
            protocol: "calc",
            summary: "4 connections computing 3 ** 200000 while 10 measure small expressions",
            workload: calc(CALC_CHEAP, 4),
            clients: 14,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "getset",
            protocol: "kv",
            summary: "50 connections, SET and GET of a 64-byte value by turns, one at a time",
            workload: kv(KV_SMALL, 1, 1000, false),
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "pipeline",
            protocol: "kv",
            summary: "50 connections, 16 pipelined SETs and GETs of 64-byte values each",
            workload: kv(KV_SMALL, 16, 1000, false),
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "large",
            protocol: "kv",
            summary: "16 connections, SET and GET of a 16 KiB value by turns, one at a time",
            // 100 keys a client: a 26 MB keyspace, where 1,000 would make
            // the server hold a quarter of a gigabyte.
            workload: kv(KV_LARGE, 1, 100, false),
            clients: 16,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "durable",
            protocol: "kv",
            summary: "50 connections, getset with every write logged and synced before its reply",
            workload: kv(KV_SMALL, 1, 1000, true),
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: None,
        },
        Scenario {
            name: "kv-tls",
            protocol: "kv",
            summary: "50 TLS connections, SET and GET of a 64-byte value by turns, one at a time",
            workload: kv(KV_SMALL, 1, 1000, false),
            clients: 50,
            duration: secs(5),
            fixture: Vec::new(),
            tls: Some(TlsLoad {
                resume: true,
                alpn: None,
                explicit: false,
            }),
        },
    ]
}

impl Scenario {
    /// Whether the server must keep every write on disk before replying
    /// (kv `durable`): the bench gives it a fresh data directory per run.
    pub fn durable(&self) -> bool {
        matches!(&self.workload, Workload::Kv(k) if k.durable)
    }
}

/// `kv`: the small value (`getset`, `pipeline`, `durable`) and the large.
const KV_SMALL: usize = 64;
const KV_LARGE: usize = 16 * 1024;

/// A kv workload.
fn kv(value_size: usize, depth: usize, keys: u64, durable: bool) -> Workload {
    Workload::Kv(KvLoad {
        value_size,
        depth,
        keys,
        durable,
    })
}

/// `calc cheap`: a small expression with every operator (about a
/// microsecond to answer).
const CALC_CHEAP: &str = "(7 - 3) * 12 / 5 + 2 ** 64 % 1000003 - -1";
/// `calc heavy`: 95,425 digits, a few milliseconds of CPU to compute and
/// write out.
const CALC_HEAVY: &str = "3 ** 200000";

/// A calc workload: `expr` for the measured clients, `heavy_beside`
/// clients sending [`CALC_HEAVY`] beside them.
fn calc(expr: &str, heavy_beside: usize) -> Workload {
    Workload::Calc(CalcLoad {
        expr: expr.to_string(),
        heavy_beside,
        beside_expr: CALC_HEAVY.to_string(),
    })
}

/// `http`: the small file and the large one.
const HTTP_SMALL: (&str, u64) = ("1k.bin", 1024);
const HTTP_LARGE: (&str, u64) = ("1m.bin", 1 << 20);

/// An HTTP workload fetching `file`.
fn http(file: (&str, u64), depth: usize, close: bool, idle: usize, slow: usize) -> Workload {
    Workload::Http(HttpLoad {
        file: file.0.to_string(),
        size: file.1,
        depth,
        close,
        idle,
        slow,
    })
}

/// The protocols that have scenarios, in the order `--help` lists them.
pub const PROTOCOLS: &[&str] = &["echo", "ftp", "http", "calc", "kv"];

/// `ftp sessions`: the file each session retrieves.
const SESSION_FILE: u64 = 64 * 1024;
/// `ftp download`: the large file.
const DOWNLOAD_FILE: u64 = 1 << 30;

/// The scenario named `name` for `protocol`.
pub fn find(protocol: &str, name: &str) -> Option<Scenario> {
    all()
        .into_iter()
        .find(|s| s.protocol == protocol && s.name == name)
}

/// The names of `protocol`'s scenarios.
pub fn names(protocol: &str) -> Vec<&'static str> {
    all()
        .into_iter()
        .filter(|s| s.protocol == protocol)
        .map(|s| s.name)
        .collect()
}
