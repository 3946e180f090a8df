//! The load generator's sans-IO seam: [`LoadClient`], the mirror of the
//! server's `Session` (`src/session.rs`). A load client is one simulated
//! user of a protocol. It never touches a socket or the clock: the load loop
//! (`load.rs`) hands it bytes read, connection events and `now`; the client
//! answers with the bytes to send on each of its connections and, through
//! [`Effects`], with a verdict per completed request and the connections it
//! wants opened or closed. Echo, FTP, HTTP, calc and kv are implementations (the
//! modules below); one evented loop runs them all.
//!
//! # Loop contract
//!
//! A client has at most [`LINKS`] connections at once, named by [`Link`]:
//! the main one and a side one (FTP's data connection). The loop owns their
//! sockets. For each client it:
//!
//! 1. before the load starts, calls [`LoadClient::handle_start`] (a client
//!    with a long-lived connection opens it here, so that the handshakes are
//!    over before anything is measured);
//! 2. once the load runs, gives the client a *permit* with
//!    [`LoadClient::handle_permit`] whenever [`LoadClient::wants_permit`] is
//!    true: at once in a closed loop, or at the request's intended send time
//!    in an open loop (`--rate`). A permit is one request (or one FTP
//!    session); its `sent` time is where the request's latency counts from.
//!    The pacing is the loop's, the same for every protocol;
//! 3. reports a finished handshake with [`LoadClient::handle_connected`]
//!    (and again when a TLS handshake that the client asked for with
//!    [`Effect::StartTls`] is over),
//!    bytes read with [`LoadClient::handle_input`], the server's end of
//!    stream with [`LoadClient::handle_eof`], a failure it saw itself (a
//!    connect that failed or timed out, a socket error) with
//!    [`LoadClient::handle_failure`] (the link is closed and the error
//!    counted by then), and the client's own deadline with
//!    [`LoadClient::handle_timeout`];
//! 4. after any `handle_*` call, carries out the [`Effect`]s the call pushed,
//!    in order (counting verdicts, opening and closing links), grants the
//!    permits now due, writes [`LoadClient::poll_output`] for each open link
//!    (telling the client what went with [`LoadClient::consume_output`]),
//!    and sleeps no later than [`LoadClient::poll_timeout`];
//! 5. when the timed phase ends, asks [`LoadClient::owes_answer`] of each
//!    client that completed nothing and erred nothing in it: one still
//!    waiting for the server is counted `stalled`.
//!
//! A client accepts every byte it is given: it checks each one against what
//! it must be (a byte that differs, or one more than was owed, is a
//! [`ErrorKind::Mismatch`]), and after an error it closes its links and
//! decides itself what comes next (give up, or start again after a pause).
//! Effects are pushed into a buffer the loop owns and reuses, and a client's
//! own buffers are allocated when it is made, so that the steady state
//! allocates nothing.

pub mod calc;
pub mod echo;
pub mod ftp;
pub mod http;
pub mod kv;
pub mod stream;

use std::time::{Duration, Instant};

/// How long a client that failed waits before it starts again (a slot
/// that connects per request, an FTP session), so that a dead server does
/// not turn it into a busy loop.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// The most bytes the loop hands a client in one `handle_input` (its read
/// buffer): larger than a loopback segment (64 KiB), so that a read that
/// returns less has emptied the socket, and a connection whose end had
/// already come is seen to be over without one more read.
pub const READ_MAX: usize = 256 * 1024;

/// How many connections a client has at most at once.
pub const LINKS: usize = 2;

/// One of a client's connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Link {
    /// The connection every client has (echo's, FTP's control connection,
    /// HTTP's).
    Main,
    /// A second connection beside it (FTP's data connection).
    Side,
}

impl Link {
    /// Both links, in the order the loop serves them.
    pub const ALL: [Link; LINKS] = [Link::Main, Link::Side];

    /// The link's index in `0..LINKS`.
    pub fn index(self) -> usize {
        match self {
            Link::Main => 0,
            Link::Side => 1,
        }
    }
}

/// Errors by kind, as the report counts them (`model::Errors`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorKind {
    /// A connection could not be established.
    Connect,
    /// An answer differed from what was expected.
    Mismatch,
    /// The server closed a connection while an answer was owed.
    Closed,
    /// Any other socket error.
    Io,
    /// A client that moved no byte for too long in the middle of a
    /// dialogue (it starts afresh).
    Stalled,
    /// A TLS handshake failed, or TLS records could not be read.
    Tls,
}

/// Something a client's `handle_*` call asks of the loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Effect {
    /// A request was answered in full and correctly; its latency counts from
    /// `sent` (the permit's time).
    Answered {
        /// When the request was sent, or was due to be (open loop).
        sent: Instant,
    },
    /// Payload bytes received and verified: the run's byte count (echoed
    /// bytes, FTP data, HTTP bodies).
    Received(usize),
    /// The client found an error (a mismatch, a close while an answer was
    /// owed, a stall). It closes what it no longer wants itself.
    Failed(ErrorKind),
    /// Open `link` to the server: its address, or `port` on the server's
    /// host (FTP's passive data port). Answered by `handle_connected` or by
    /// `handle_failure` with [`ErrorKind::Connect`].
    Open {
        /// Which link.
        link: Link,
        /// Another port on the server's host, if not the server's own.
        port: Option<u16>,
        /// Set TCP_NODELAY (requests that must not wait for Nagle).
        nodelay: bool,
    },
    /// Start TLS on the open `link` now, in the middle of its stream, the
    /// client being the TLS client (explicit FTPS: the control connection
    /// after `234`, a data connection after `PROT P`'s `150`). Only in a
    /// run whose TLS is the clients' to start (`LoadTls::explicit`). The
    /// loop makes the link's TLS connection with the run's configuration
    /// (so that it resumes a session when the configuration allows) and
    /// runs the handshake, under a connect's limit; until it is over the
    /// client gets no input and its output for the link waits. Answered by
    /// `handle_connected(link)` once it is over, or by `handle_failure` with
    /// [`ErrorKind::Tls`] (or [`ErrorKind::Connect`] at the limit).
    StartTls(Link),
    /// Close `link` (nothing happens if it is not open).
    Close {
        /// Which link.
        link: Link,
        /// Reset rather than close (SO_LINGER 0): for a connection whose
        /// dialogue is over, so that neither side keeps a TIME_WAIT that
        /// thousands of connections a second would run out of ports with.
        reset: bool,
    },
}

/// The effects of one `handle_*` call, in the order they were pushed. The
/// loop owns it and reuses its buffer.
#[derive(Debug, Default)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// An empty buffer with room for a burst of effects.
    pub fn new() -> Effects {
        Effects(Vec::with_capacity(64))
    }

    /// Pushes an effect.
    pub fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }

    /// A request answered, latency from `sent`.
    pub fn answered(&mut self, sent: Instant) {
        self.push(Effect::Answered { sent });
    }

    /// `n` payload bytes verified.
    pub fn received(&mut self, n: usize) {
        if n > 0 {
            self.push(Effect::Received(n));
        }
    }

    /// An error the client found.
    pub fn failed(&mut self, kind: ErrorKind) {
        self.push(Effect::Failed(kind));
    }

    /// Open `link`.
    pub fn open(&mut self, link: Link, port: Option<u16>, nodelay: bool) {
        self.push(Effect::Open {
            link,
            port,
            nodelay,
        });
    }

    /// Start TLS on `link` ([`Effect::StartTls`]).
    pub fn start_tls(&mut self, link: Link) {
        self.push(Effect::StartTls(link));
    }

    /// Close `link`.
    pub fn close(&mut self, link: Link, reset: bool) {
        self.push(Effect::Close { link, reset });
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The effects pushed so far, in order.
    pub fn as_slice(&self) -> &[Effect] {
        &self.0
    }

    /// Moves the pending effects into `into` (emptied first), keeping both
    /// buffers' capacity: the loop works through `into` while the client's
    /// answers to them go into `self`.
    pub fn take_into(&mut self, into: &mut Vec<Effect>) {
        into.clear();
        std::mem::swap(&mut self.0, into);
    }

    /// Forgets everything pending.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One simulated client of a protocol. See the module documentation for the
/// order in which the loop calls these methods.
pub trait LoadClient {
    /// Before the load starts (and before the shared clock is set): open
    /// the connections that live through the run.
    fn handle_start(&mut self, now: Instant, fx: &mut Effects) {
        let _ = (now, fx);
    }

    /// One request may go now; its latency counts from `sent` (`now` in a
    /// closed loop; the intended send time, perhaps earlier, in an open
    /// one). Only called while [`LoadClient::wants_permit`].
    fn handle_permit(&mut self, sent: Instant, now: Instant, fx: &mut Effects);

    /// `link`'s handshake is over (whether it succeeded shows on the first
    /// read or write: a refused connect is then counted `connect`).
    fn handle_connected(&mut self, link: Link, now: Instant, fx: &mut Effects);

    /// Bytes read from `link`.
    fn handle_input(&mut self, link: Link, data: &[u8], now: Instant, fx: &mut Effects);

    /// The server closed its side of `link`: nothing more will be read from
    /// it. The client closes the link (or keeps writing to it).
    fn handle_eof(&mut self, link: Link, now: Instant, fx: &mut Effects);

    /// The loop saw `link` fail (`kind`: a failed or timed-out connect, a
    /// socket error). The link is closed and the error counted already.
    fn handle_failure(&mut self, link: Link, kind: ErrorKind, now: Instant, fx: &mut Effects);

    /// `now` has reached [`LoadClient::poll_timeout`] (or passed it).
    /// Spurious calls are allowed.
    fn handle_timeout(&mut self, now: Instant, fx: &mut Effects) {
        let _ = (now, fx);
    }

    /// Bytes waiting to be written to `link` (only asked of open links).
    #[must_use]
    fn poll_output(&self, link: Link) -> &[u8];

    /// The loop wrote the first `n` bytes of [`LoadClient::poll_output`]
    /// at `now`.
    fn consume_output(&mut self, link: Link, n: usize, now: Instant);

    /// When the client wants [`LoadClient::handle_timeout`].
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Whether the client would start a request now if allowed (a free
    /// place in its pipeline, no session under way).
    #[must_use]
    fn wants_permit(&self) -> bool;

    /// Whether the client is waiting for the server (a request sent and not
    /// answered, a dialogue under way): asked at the end of the run.
    #[must_use]
    fn owes_answer(&self) -> bool;
}

/// The fixture pattern (`scenario::fixture_pattern`), one period plus
/// `read` bytes, so that the bytes expected for a read of up to `read`
/// bytes at any offset are one slice of it ([`fixture_expected`]).
pub fn fixture_window(read: usize) -> Vec<u8> {
    let period = crate::bench::scenario::fixture_pattern();
    period
        .iter()
        .cycle()
        .take(period.len() + read)
        .copied()
        .collect()
}

/// A fixture's bytes at `offset`, `len` of them (at most the `read` that
/// [`fixture_window`] was made for).
pub fn fixture_expected(window: &[u8], offset: u64, len: usize) -> &[u8] {
    let at = (offset % crate::bench::scenario::FIXTURE_PERIOD as u64) as usize;
    &window[at..at + len]
}

/// A test harness: records effects, drives a client by hand.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Runs `f` with a fresh effect buffer and returns what it pushed.
    pub fn effects(f: impl FnOnce(&mut Effects)) -> Vec<Effect> {
        let mut fx = Effects::new();
        f(&mut fx);
        fx.0
    }
}

/// The send (or intended send) times of a client's requests in flight,
/// oldest first: a ring as deep as the client's pipeline, so issuing and
/// answering requests allocates nothing.
#[derive(Debug)]
pub struct SendTimes {
    times: Box<[Instant]>,
    head: usize,
    len: usize,
}

impl SendTimes {
    /// Room for `depth` requests in flight (at least one); `now` fills it.
    pub fn new(depth: usize, now: Instant) -> SendTimes {
        SendTimes {
            times: vec![now; depth.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A request issued at `sent`. The caller keeps within the depth.
    pub fn push(&mut self, sent: Instant) {
        debug_assert!(self.len < self.times.len(), "more in flight than the depth");
        let slot = (self.head + self.len) % self.times.len();
        self.times[slot] = sent;
        self.len += 1;
    }

    /// The oldest request was answered: its send time.
    pub fn pop(&mut self) -> Instant {
        debug_assert!(self.len > 0, "an answer with nothing in flight");
        let sent = self.times[self.head];
        self.head = (self.head + 1) % self.times.len();
        self.len -= 1;
        sent
    }

    /// None in flight any more (the connection they were on is gone).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}
