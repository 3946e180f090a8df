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
        },
        Scenario {
            name: "stream",
            protocol: "echo",
            summary: "8 connections streaming 64 KiB writes (bulk throughput)",
            workload: Workload::Stream { chunk: 64 * 1024 },
            clients: 8,
            duration: secs(5),
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
        },
    ]
}

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
