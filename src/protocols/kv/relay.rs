//! A worker's side of a kv connection under the forking architectures: the
//! client's bytes go to the store process over the session's service
//! stream, and the store's replies come back to the client, in order.
//!
//! The store process runs a whole [`KvSession`](super::session::KvSession)
//! for each stream, so everything that belongs to a connection (its
//! database, `MULTI`, `WATCH`, `AUTH`, RESP3, a blocked pop, the idle
//! timeout) lives there, beside the one keyspace, and behaves exactly as
//! under the threaded architectures. The relay only moves bytes, with a
//! bound each way:
//!
//! - at most [`MAX_TO_STORE`] bytes of the client's input wait for the
//!   store, then the client is not read (back-pressure reaching the client);
//! - at most [`MAX_OUTPUT`] bytes of replies wait for the client, then the
//!   store stream is not read (back-pressure reaching the store, whose
//!   session then stops running the client's commands).
//!
//! The stream opens with one line, `SECRET PEER LOCAL`: the secret proves
//! the stream comes from a worker of this server (the store listens on a
//! Unix socket in the abstract namespace, which any local user could reach),
//! and the client's addresses let `CLIENT LIST` and the store's log lines
//! name the real client.
//!
//! Endings: the client's end of stream half-closes the store stream once
//! its bytes are through; the store answers what it got and closes, and the
//! relay closes after the last reply. `QUIT`, a protocol error or the idle
//! timeout close the store's side first, with the same result. A store
//! process that dies closes its streams, and the relay closes its client
//! (as a client of a crashed Redis sees). A client that stops reading is
//! closed once its replies have not moved for the idle timeout.

use std::time::{Duration, Instant};

use crate::session::{ConnInfo, OutQueue, Output, Session};

/// The most client input held for the store before the client is no longer
/// read: a few socket buffers' worth, so pipelining flows at full speed.
pub const MAX_TO_STORE: usize = 64 * 1024;

/// The most reply bytes held for the client before the store stream is no
/// longer read.
pub const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    No,
    /// Once the replies are flushed.
    AfterFlush,
    /// At once: the client does not read.
    Now,
}

/// One client connection relayed to the store process.
pub struct RelaySession {
    /// What waits to go to the store: the opening line, then client bytes.
    to_store: Vec<u8>,
    out: OutQueue,
    /// The client closed its sending side.
    eof: bool,
    /// The server drains: the client is read no more once it has sent
    /// something.
    draining: bool,
    /// Whether the client has sent anything.
    heard: bool,
    closing: Closing,
    idle_timeout: Option<Duration>,
    /// When replies last moved to the client (or began to wait).
    last_progress: Instant,
}

impl RelaySession {
    /// A relay for the client `info`, opening with `secret`.
    pub fn new(
        secret: &[u8],
        info: &ConnInfo,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> RelaySession {
        let mut to_store = Vec::with_capacity(secret.len() + 64);
        to_store.extend_from_slice(secret);
        to_store.extend_from_slice(format!(" {} {}\r\n", info.peer, info.local).as_bytes());
        RelaySession {
            to_store,
            out: OutQueue::default(),
            eof: false,
            draining: false,
            heard: false,
            closing: Closing::No,
            idle_timeout,
            last_progress: now,
        }
    }

    fn reading_stopped(&self) -> bool {
        // A drain lets a client that has sent nothing yet send its first
        // commands (it connected before it could know).
        self.eof || (self.draining && self.heard) || self.closing != Closing::No
    }
}

impl Session for RelaySession {
    fn handle_input(&mut self, data: &[u8], _now: Instant) {
        self.heard = true;
        self.to_store.extend_from_slice(data);
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.eof = true;
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(idle) = self.idle_timeout {
            if !self.out.is_empty() && now >= self.last_progress + idle {
                self.closing = Closing::Now;
            }
        }
    }

    fn handle_shutdown(&mut self, _now: Instant) {
        // Stop reading the client and half-close the store stream: the
        // store answers every command it has, then closes, and so do we.
        self.draining = true;
    }

    fn poll_service_output(&self) -> &[u8] {
        &self.to_store
    }

    fn consume_service_output(&mut self, n: usize, _now: Instant) {
        self.to_store.drain(..n);
    }

    fn service_done(&self) -> bool {
        self.reading_stopped()
    }

    fn handle_service_input(&mut self, data: &[u8], now: Instant) {
        if self.out.is_empty() {
            self.last_progress = now;
        }
        self.out.buf().extend_from_slice(data);
    }

    fn wants_service_input(&self) -> bool {
        self.out.len() < MAX_OUTPUT && self.closing != Closing::Now
    }

    fn handle_service_eof(&mut self, _now: Instant) {
        if self.closing == Closing::No {
            self.closing = Closing::AfterFlush;
        }
    }

    fn poll_output(&self) -> Output<'_> {
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        if n > 0 {
            self.last_progress = now;
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.idle_timeout {
            Some(idle) if !self.out.is_empty() => Some(self.last_progress + idle),
            _ => None,
        }
    }

    fn wants_read(&self) -> bool {
        !self.reading_stopped() && self.to_store.len() < MAX_TO_STORE
    }

    fn wants_close(&self) -> bool {
        self.closing != Closing::No
    }

    fn wants_close_now(&self) -> bool {
        self.closing == Closing::Now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn relay(t0: Instant) -> RelaySession {
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:6380".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH,
        };
        RelaySession::new(b"s3", &info, Some(Duration::from_secs(5)), t0)
    }

    #[test]
    fn the_stream_opens_with_the_secret_and_the_clients_addresses() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_input(b"PING\r\n", t0);
        assert_eq!(
            r.poll_service_output(),
            b"s3 127.0.0.1:40000 127.0.0.1:6380\r\nPING\r\n"
        );
        let n = r.poll_service_output().len();
        r.consume_service_output(n, t0);
        assert!(r.poll_service_output().is_empty());
        assert!(!r.service_done());
    }

    #[test]
    fn both_directions_are_bounded() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_input(&vec![b'x'; MAX_TO_STORE], t0);
        assert!(!r.wants_read(), "the client is read no more");
        let n = r.poll_service_output().len();
        r.consume_service_output(n, t0);
        assert!(r.wants_read());
        r.handle_service_input(&vec![b'+'; MAX_OUTPUT], t0);
        assert!(!r.wants_service_input(), "the store is read no more");
        r.consume_output(MAX_OUTPUT / 2, t0);
        assert!(r.wants_service_input());
    }

    #[test]
    fn replies_that_do_not_move_close_the_client_at_the_idle_timeout() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        assert_eq!(
            r.poll_timeout(),
            None,
            "an idle relay leaves it to the store"
        );
        r.handle_service_input(b"+OK\r\n", t0);
        let at = r.poll_timeout().expect("a deadline while replies wait");
        assert_eq!(at, t0 + Duration::from_secs(5));
        r.handle_timeout(at - Duration::from_millis(1));
        assert!(!r.wants_close_now());
        r.handle_timeout(at);
        assert!(r.wants_close_now());
    }

    #[test]
    fn the_clients_end_half_closes_the_store_stream_and_its_end_closes_the_client() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_input(b"GET a\r\n", t0);
        r.handle_eof(t0);
        assert!(!r.wants_read());
        assert!(r.service_done());
        assert!(!r.wants_close(), "the store still owes its replies");
        r.handle_service_input(b"$-1\r\n", t0);
        r.handle_service_eof(t0);
        assert!(r.wants_close());
        assert!(!r.wants_close_now());
        assert_eq!(r.poll_output().bytes(), b"$-1\r\n");
    }

    #[test]
    fn a_drain_stops_reading_and_half_closes() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_input(b"GET a\r\n", t0);
        r.handle_shutdown(t0);
        assert!(!r.wants_read());
        assert!(r.service_done());
    }

    #[test]
    fn a_drain_lets_a_new_client_send_its_first_commands() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_shutdown(t0);
        assert!(r.wants_read(), "nothing heard yet");
        assert!(!r.service_done());
        r.handle_input(b"GET a\r\n", t0);
        assert!(!r.wants_read());
        assert!(r.service_done());
    }
}
