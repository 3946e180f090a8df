//! `echo`: every byte received is sent back, in order (DESIGN.md §4.1).
//!
//! The smallest honest protocol: it proves a driver moves bytes both ways
//! without loss, applies back-pressure, and closes cleanly after a
//! half-close. When the client shuts its sending side, the session finishes
//! echoing what it has and then asks to close. The idle timeout counts from
//! the last byte that moved either way, so it also ends a client that sends
//! and never reads: such a connection is closed with its echo unsent.

use std::time::{Duration, Instant};

use crate::session::{ConnInfo, OutQueue, Output, Protocol, Session};

/// Output bytes an echo session holds before it stops reading: a client that
/// sends without reading is throttled by TCP, not by server memory.
pub const MAX_BUFFERED: usize = 256 * 1024;

/// The echo protocol's per-server settings.
#[derive(Clone, Debug)]
pub struct Echo {
    /// Close a connection on which nothing moved, in or out, for this long
    /// (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl Protocol for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn new_session(&self, _info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(EchoSession {
            out: OutQueue::default(),
            eof: false,
            timed_out: false,
            idle_timeout: self.idle_timeout,
            last_activity: now,
            finished: 0,
        })
    }
}

/// One echo connection.
pub struct EchoSession {
    /// Bytes to send back are `out[sent..]`.
    out: OutQueue,
    eof: bool,
    timed_out: bool,
    idle_timeout: Option<Duration>,
    /// The last input, or the last output the client took.
    last_activity: Instant,
    /// Chunks taken since the driver last asked: echo has no requests, so
    /// each read's bytes, echoed, count as one.
    finished: u32,
}

impl Session for EchoSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.out.buf().extend_from_slice(data);
        self.last_activity = now;
        self.finished += u32::from(!data.is_empty());
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.eof = true;
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self
            .idle_timeout
            .is_some_and(|t| now >= self.last_activity + t)
        {
            self.timed_out = true;
        }
    }

    fn poll_output(&self) -> Output<'_> {
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        self.last_activity = now;
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.idle_timeout.map(|t| self.last_activity + t)
    }

    fn wants_read(&self) -> bool {
        !self.eof && !self.timed_out && self.out.len() < MAX_BUFFERED
    }

    fn wants_close(&self) -> bool {
        self.timed_out || self.eof
    }

    fn wants_close_now(&self) -> bool {
        // Nothing moved for the whole idle timeout: whatever is unsent will
        // not be read.
        self.timed_out
    }

    fn mirrors_input(&self) -> bool {
        !self.eof && !self.timed_out
    }

    fn relayed(&mut self, received: usize, sent: usize, now: Instant) {
        if received + sent > 0 {
            self.last_activity = now;
        }
        self.finished += u32::from(received > 0);
    }

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(idle: Option<Duration>) -> (Box<dyn Session>, Instant) {
        let now = Instant::now();
        let info = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            wall: std::time::SystemTime::UNIX_EPOCH,
        };
        (Echo { idle_timeout: idle }.new_session(&info, now), now)
    }

    #[test]
    fn each_chunk_echoed_is_one_request() {
        let (mut s, now) = session(None);
        assert_eq!(s.take_finished_requests(), 0);
        s.handle_input(b"one", now);
        s.handle_input(b"", now);
        s.handle_input(b"two\n", now);
        assert_eq!(s.take_finished_requests(), 2);
        assert_eq!(s.take_finished_requests(), 0);
    }

    #[test]
    fn mirrors_until_its_input_ends_and_counts_relayed_chunks() {
        let (mut s, now) = session(Some(Duration::from_secs(10)));
        assert!(s.mirrors_input());
        let later = now + Duration::from_secs(5);
        s.relayed(65536, 0, later);
        s.relayed(0, 65536, later);
        s.relayed(100, 40, later);
        // Two reads relayed: two chunks; activity moved the idle deadline.
        assert_eq!(s.take_finished_requests(), 2);
        assert_eq!(s.poll_timeout(), Some(later + Duration::from_secs(10)));
        assert!(s.poll_output().is_nothing());
        s.handle_eof(later);
        assert!(!s.mirrors_input());
        assert!(s.wants_close());
    }

    #[test]
    fn echoes_in_order_across_partial_writes() {
        let (mut s, now) = session(None);
        s.handle_input(b"hello ", now);
        s.handle_input(b"world", now);
        assert_eq!(s.poll_output().bytes(), b"hello world");
        s.consume_output(3, now);
        assert_eq!(s.poll_output().bytes(), b"lo world");
        s.consume_output(8, now);
        assert!(s.poll_output().bytes().is_empty());
    }

    #[test]
    fn stops_reading_when_the_client_does_not() {
        let (mut s, now) = session(None);
        let chunk = vec![7u8; 64 * 1024];
        while s.wants_read() {
            s.handle_input(&chunk, now);
        }
        assert!(s.poll_output().bytes().len() >= MAX_BUFFERED);
        let n = s.poll_output().bytes().len();
        s.consume_output(n, now);
        assert!(s.wants_read());
    }

    #[test]
    fn closes_after_eof_with_the_echo_still_to_flush() {
        let (mut s, now) = session(None);
        s.handle_input(b"abc", now);
        assert!(!s.wants_close());
        s.handle_eof(now);
        assert!(!s.wants_read());
        // The driver flushes the output first, then closes.
        assert!(s.wants_close());
        assert_eq!(s.poll_output().bytes(), b"abc");
    }

    #[test]
    fn idle_timeout_moves_with_input_and_fires_on_the_fake_clock() {
        let (mut s, t0) = session(Some(Duration::from_secs(10)));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(5);
        s.handle_input(b"x", t1);
        s.consume_output(1, t1);
        s.handle_timeout(t0 + Duration::from_secs(10));
        assert!(!s.wants_close(), "input at t+5 moved the deadline");
        s.handle_timeout(t1 + Duration::from_secs(10));
        assert!(s.wants_close());
    }

    #[test]
    fn a_client_that_never_reads_is_closed_at_the_idle_deadline_with_output_unsent() {
        let (mut s, t0) = session(Some(Duration::from_secs(10)));
        while s.wants_read() {
            s.handle_input(&[1u8; 64 * 1024], t0);
        }
        // Some output is taken, then none.
        let t1 = t0 + Duration::from_secs(3);
        s.consume_output(100, t1);
        s.handle_timeout(t0 + Duration::from_secs(10));
        assert!(!s.wants_close_now(), "output taken at t+3 is activity");
        s.handle_timeout(t1 + Duration::from_secs(10));
        assert!(!s.poll_output().bytes().is_empty());
        assert!(s.wants_close_now(), "closed whatever it still owes");
    }
}
