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
    /// Counts the store's replies as they pass, for `--max-requests`.
    replies: ReplyCounter,
    /// Replies passed since the driver last asked.
    finished: u32,
}

/// Counts whole top-level values in a RESP2/RESP3 stream fed in pieces of
/// any size (the store's replies, one per command), without keeping them:
/// a header line is kept only up to [`ReplyCounter::HEADER`] bytes (the
/// type and a length), and bulk bodies are skipped by count.
#[derive(Debug, Default)]
pub struct ReplyCounter {
    /// Values still to come before the current top-level one is whole
    /// (0: between replies).
    owed: u64,
    /// The start of the header line being read.
    line: Vec<u8>,
    /// Bulk bytes (and their CRLF) still to skip.
    skip: u64,
}

impl ReplyCounter {
    /// The most of a header line kept: a type byte and any length.
    const HEADER: usize = 24;

    /// Takes the next bytes of the stream; returns how many top-level
    /// values they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> u32 {
        let mut done = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                data = &data[n..];
                self.skip -= n as u64;
                if self.skip == 0 {
                    done += self.value_done();
                }
                continue;
            }
            let end = data.iter().position(|&b| b == b'\n');
            let piece = &data[..end.unwrap_or(data.len())];
            let room = Self::HEADER.saturating_sub(self.line.len());
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            let Some(end) = end else {
                break;
            };
            data = &data[end + 1..];
            done += self.header();
        }
        done
    }

    /// A whole header line was read.
    fn header(&mut self) -> u32 {
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let Some((&kind, rest)) = line.split_first() else {
            return 0;
        };
        let n: i64 = std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.owed == 0 {
            self.owed = 1;
        }
        match kind {
            // Bulk strings, errors and verbatim strings: a body follows.
            b'$' | b'!' | b'=' if n >= 0 => {
                self.skip = n as u64 + 2;
                0
            }
            // Aggregates take the place of their elements; a map's and an
            // attribute's count pairs, and an attribute also precedes the
            // value it describes.
            b'*' | b'~' | b'>' if n > 0 => {
                self.owed += n as u64 - 1;
                0
            }
            b'%' if n > 0 => {
                self.owed += 2 * n as u64 - 1;
                0
            }
            b'|' => {
                self.owed += 2 * n.max(0) as u64;
                0
            }
            // Lines, nulls and empty aggregates are whole.
            _ => self.value_done(),
        }
    }

    fn value_done(&mut self) -> u32 {
        self.owed = self.owed.saturating_sub(1);
        u32::from(self.owed == 0)
    }
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
            replies: ReplyCounter::default(),
            finished: 0,
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
        self.finished += self.replies.feed(data);
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

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
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
    fn replies_are_counted_whole_however_the_stream_is_cut() {
        // RESP2 and RESP3: simple, error, integer, bulk (with CRLF inside
        // its body), null bulk, nested and empty arrays, a map, an
        // attribute before its value, a null, a push.
        let stream: &[u8] = b"+OK\r\n-ERR no\r\n:42\r\n$5\r\na\r\nbc\r\n$-1\r\n\
            *2\r\n*1\r\n+x\r\n$1\r\ny\r\n*0\r\n*-1\r\n%1\r\n+k\r\n:1\r\n\
            |1\r\n+ttl\r\n:3\r\n+v\r\n_\r\n>2\r\n+m\r\n+n\r\n";
        let want = 12;
        let mut whole = ReplyCounter::default();
        assert_eq!(whole.feed(stream), want);
        for cut in 1..stream.len() {
            let mut c = ReplyCounter::default();
            let n = c.feed(&stream[..cut]) + c.feed(&stream[cut..]);
            assert_eq!(n, want, "cut at {cut}");
        }
        let mut bytes = ReplyCounter::default();
        let n: u32 = stream.iter().map(|b| bytes.feed(&[*b])).sum();
        assert_eq!(n, want, "byte at a time");
        // A long simple string is not kept, only skipped through.
        let mut long = ReplyCounter::default();
        let mut line = vec![b'+'];
        line.extend(std::iter::repeat_n(b'x', 10_000));
        line.extend_from_slice(b"\r\n");
        assert_eq!(long.feed(&line), 1);
        assert!(long.line.capacity() <= 64);
    }

    #[test]
    fn the_relay_counts_the_stores_replies() {
        let t0 = Instant::now();
        let mut r = relay(t0);
        r.handle_service_input(b"+OK\r\n$3\r\nab", t0);
        assert_eq!(r.take_finished_requests(), 1);
        r.handle_service_input(b"c\r\n:1\r\n", t0);
        assert_eq!(r.take_finished_requests(), 2);
        assert_eq!(r.take_finished_requests(), 0);
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
