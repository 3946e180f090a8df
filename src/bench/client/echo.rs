//! The echo load client: request/response on one connection, `depth`
//! requests in flight (1: strict request/response; more: pipelining), the
//! answers checked byte for byte as they arrive. With `per_request` the
//! client is a slot that connects for every request and closes after its
//! answer (the `connect` scenario: latency includes the handshake).
//!
//! A long-lived connection that fails is given up (not replaced), as a
//! user whose connection broke; a per-request slot tries again after
//! [`RETRY_BACKOFF`].

use std::time::Instant;

use super::{Effects, ErrorKind, Link, LoadClient, SendTimes, RETRY_BACKOFF};

/// What every echo client of a run sends and expects, prepared once.
#[derive(Debug)]
pub struct EchoShape {
    /// One request's length.
    pub request_len: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// The request repeated `depth` times: any run of queued requests is one
    /// contiguous slice of it, so a pipeline is written in one call.
    pub batch: Vec<u8>,
    /// The bytes each answer must be.
    pub answer: Vec<u8>,
    /// A new connection per request.
    pub per_request: bool,
}

impl EchoShape {
    /// The shape for `request` answered by `answer`, `depth` deep.
    pub fn new(request: &[u8], answer: &[u8], depth: usize, per_request: bool) -> EchoShape {
        let depth = depth.max(1);
        EchoShape {
            request_len: request.len(),
            depth,
            batch: request.repeat(depth),
            answer: answer.to_vec(),
            per_request,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No connection (a per-request slot between requests, or a long-lived
    /// connection not opened yet).
    Closed,
    Connecting,
    Open,
    /// A per-request slot after an error, until the instant.
    Backoff(Instant),
    /// A long-lived connection that failed.
    Dead,
}

/// One echo client (see the module docs).
pub struct EchoClient<'a> {
    shape: &'a EchoShape,
    state: State,
    /// Requests issued and not yet fully written; the first has `sent_off`
    /// bytes out.
    queued: usize,
    sent_off: usize,
    /// Bytes of the oldest owed answer received and checked so far.
    ans_off: usize,
    /// Send (or intended send) times of the requests whose answers are
    /// not complete.
    flight: SendTimes,
}

impl<'a> EchoClient<'a> {
    /// A client of `shape`; `now` fills its ring of send times.
    pub fn new(shape: &'a EchoShape, now: Instant) -> EchoClient<'a> {
        EchoClient {
            shape,
            state: State::Closed,
            queued: 0,
            sent_off: 0,
            ans_off: 0,
            flight: SendTimes::new(shape.depth, now),
        }
    }

    /// An error: close, and give up (long-lived) or pause (per request).
    fn fail(&mut self, now: Instant, fx: &mut Effects) {
        fx.close(Link::Main, false);
        self.state = if self.shape.per_request {
            State::Backoff(now + RETRY_BACKOFF)
        } else {
            State::Dead
        };
    }

    /// Checks `data` against the answers owed, completing them in order.
    fn check(&mut self, data: &[u8], fx: &mut Effects) -> Result<(), ()> {
        let answer = &self.shape.answer[..];
        let owed = self.flight.len() * answer.len() - self.ans_off;
        if data.len() > owed {
            return Err(());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let take = rest.len().min(answer.len() - self.ans_off);
            if rest[..take] != answer[self.ans_off..self.ans_off + take] {
                return Err(());
            }
            rest = &rest[take..];
            self.ans_off += take;
            if self.ans_off == answer.len() {
                self.ans_off = 0;
                fx.answered(self.flight.pop());
            }
        }
        Ok(())
    }
}

impl LoadClient for EchoClient<'_> {
    fn handle_start(&mut self, _now: Instant, fx: &mut Effects) {
        if !self.shape.per_request {
            fx.open(Link::Main, None, true);
            self.state = State::Connecting;
        }
    }

    fn handle_permit(&mut self, sent: Instant, _now: Instant, fx: &mut Effects) {
        if self.shape.per_request && self.state == State::Closed {
            self.flight.clear();
            self.queued = 0;
            self.sent_off = 0;
            self.ans_off = 0;
            fx.open(Link::Main, None, true);
            self.state = State::Connecting;
        }
        self.flight.push(sent);
        self.queued += 1;
    }

    fn handle_connected(&mut self, _link: Link, _now: Instant, _fx: &mut Effects) {
        if self.state == State::Connecting {
            self.state = State::Open;
        }
    }

    fn handle_input(&mut self, _link: Link, data: &[u8], now: Instant, fx: &mut Effects) {
        if self.state != State::Open {
            return;
        }
        if self.check(data, fx).is_err() {
            fx.failed(ErrorKind::Mismatch);
            self.fail(now, fx);
            return;
        }
        fx.received(data.len());
        if self.shape.per_request && self.flight.is_empty() {
            fx.close(Link::Main, false);
            self.state = State::Closed;
        }
    }

    fn handle_eof(&mut self, _link: Link, now: Instant, fx: &mut Effects) {
        if self.state == State::Open {
            fx.failed(ErrorKind::Closed);
            self.fail(now, fx);
        }
    }

    fn handle_failure(&mut self, _link: Link, _kind: ErrorKind, now: Instant, fx: &mut Effects) {
        self.fail(now, fx);
    }

    fn handle_timeout(&mut self, now: Instant, _fx: &mut Effects) {
        if let State::Backoff(until) = self.state {
            if now >= until {
                self.state = State::Closed;
            }
        }
    }

    fn poll_output(&self, _link: Link) -> &[u8] {
        &self.shape.batch[self.sent_off..self.queued * self.shape.request_len]
    }

    fn consume_output(&mut self, _link: Link, n: usize, _now: Instant) {
        let done = self.sent_off + n;
        self.queued -= done / self.shape.request_len;
        self.sent_off = done % self.shape.request_len;
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Backoff(until) => Some(until),
            _ => None,
        }
    }

    fn wants_permit(&self) -> bool {
        match self.state {
            State::Closed => self.shape.per_request,
            State::Open => !self.shape.per_request && self.flight.len() < self.shape.depth,
            _ => false,
        }
    }

    fn owes_answer(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open) && !self.flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;
    use crate::bench::client::Effect;

    #[test]
    fn a_pipeline_is_answered_in_order_across_any_split() {
        let shape = EchoShape::new(b"abcd", b"abcd", 3, false);
        let t0 = Instant::now();
        let stamps = [t0, t0 + RETRY_BACKOFF, t0 + 2 * RETRY_BACKOFF];
        let mut c = EchoClient::new(&shape, t0);
        assert_eq!(
            effects(|fx| c.handle_start(t0, fx)),
            [Effect::Open {
                link: Link::Main,
                port: None,
                nodelay: true
            }]
        );
        assert!(!c.wants_permit(), "not before it is connected");
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let mut fx = Effects::new();
        for s in stamps {
            assert!(c.wants_permit());
            c.handle_permit(s, t0, &mut fx);
        }
        assert!(!c.wants_permit(), "the pipeline is full");
        assert_eq!(c.poll_output(Link::Main), b"abcdabcdabcd");
        c.consume_output(Link::Main, 5, t0);
        assert_eq!(c.poll_output(Link::Main), b"bcdabcd");
        c.consume_output(Link::Main, 7, t0);
        // One byte at a time: each answer completes with its own stamp.
        let mut got = Vec::new();
        for b in b"abcdabcdabcd" {
            for e in effects(|fx| c.handle_input(Link::Main, &[*b], t0, fx)) {
                if let Effect::Answered { sent } = e {
                    got.push(sent);
                }
            }
        }
        assert_eq!(got, stamps);
        assert!(!c.owes_answer());
        // One byte more than owed is a mismatch; the connection is given up.
        let fx = effects(|fx| c.handle_input(Link::Main, b"a", t0, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Mismatch));
        assert!(!c.wants_permit());
    }

    #[test]
    fn a_per_request_slot_reconnects_and_backs_off() {
        let shape = EchoShape::new(b"xy", b"xy", 1, true);
        let t0 = Instant::now();
        let mut c = EchoClient::new(&shape, t0);
        assert!(effects(|fx| c.handle_start(t0, fx)).is_empty());
        assert!(c.wants_permit());
        let fx = effects(|fx| c.handle_permit(t0, t0, fx));
        assert!(matches!(fx[..], [Effect::Open { .. }]));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        c.consume_output(Link::Main, 2, t0);
        let fx = effects(|fx| c.handle_input(Link::Main, b"xy", t0, fx));
        assert_eq!(
            fx,
            [
                Effect::Answered { sent: t0 },
                Effect::Received(2),
                Effect::Close {
                    link: Link::Main,
                    reset: false
                }
            ]
        );
        assert!(c.wants_permit());
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_failure(Link::Main, ErrorKind::Connect, t0, fx));
        assert!(!c.wants_permit());
        let until = c.poll_timeout().expect("a pause");
        let _ = effects(|fx| c.handle_timeout(until, fx));
        assert!(c.wants_permit());
    }
}
