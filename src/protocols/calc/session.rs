//! One calc connection: expression lines in, one answer line each, in order.
//!
//! A line ends with LF (a CR before it is dropped, so CRLF works too; the
//! last line may end at the client's end of stream instead). The answer is
//! the integer, or `ERR <reason>`, then CRLF, and the session goes on.
//! `QUIT` (any case) is answered `BYE` and closes the connection. A line
//! that is empty or only blanks gets no answer at all: typing Enter at an
//! interactive client (`nc`) costs nothing, and a client that pipelines
//! counts only the lines it meant.
//!
//! A line whose evaluation fits [`INLINE_BUDGET`] is answered on the
//! session's own thread. One that does not (the evaluator stops before the
//! operation that would pass the budget, having spent at most the budget)
//! is evaluated again, unbounded, as a [`Request::Compute`]: on an event
//! loop it runs on a pool thread and the loop serves its other clients
//! meanwhile. A session has at most one computation under way; the lines
//! after it wait, so answers leave in order. A computation first takes a
//! place at the server's [`ComputeGate`]; when none is free the session
//! holds only the parsed line and tries again every [`COMPUTE_RETRY`].
//!
//! Back-pressure: while [`MAX_OUTPUT`] bytes of answers are unsent the
//! session answers nothing more and stops reading; it also stops reading
//! while [`MAX_INPUT`] bytes of lines wait for their turn (behind a
//! computation). The idle timeout counts from the last byte that moved
//! either way, a computation under way counting as movement.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::expr::{self, CalcError, Cost, Expr, Limits, MAX_LINE};
use super::{CalcConfig, ComputeGate};
use crate::gate::WaitTurn;
use crate::session::{Computed, OutQueue, Output, Request, Session, Work};

/// Answer bytes queued before the session stops answering and reading. One
/// answer may pass it (a 100,000-digit result is ~100 KB); the next waits.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Input bytes held (lines waiting behind a computation, or an unfinished
/// line) before the session stops reading: room for a longest line and
/// many short pipelined ones.
pub const MAX_INPUT: usize = 64 * 1024;

/// The cost ([`Cost`] units, about a nanosecond each) a line may take on
/// the session's thread: 100 µs or so, a few thousand digits multiplied.
/// An event loop's other clients wait at most this long for one line.
pub const INLINE_BUDGET: Cost = 100_000;

/// How often a session waiting at the [`ComputeGate`] tries again. A place
/// given back stays free until a waiting session looks (a newcomer lets the
/// waiting go first), so this is short next to a computation's few
/// milliseconds; each look is a scan of a few shared slots.
pub const COMPUTE_RETRY: Duration = Duration::from_millis(2);

/// What the session waits for before it answers more lines.
#[derive(Debug)]
enum Pending {
    /// A computation is under way.
    Computing,
    /// The gate was full: try again at `retry_at`.
    Waiting { expr: Expr, retry_at: Instant },
}

/// One calc connection (see the module documentation). A driver calls
/// `handle_input`/`handle_eof`/`handle_timeout`/`handle_computed`, then
/// drains `poll_request`, `poll_output` (+ `consume_output`) and
/// `poll_timeout`, as `session.rs` says.
pub struct CalcSession {
    config: CalcConfig,
    gate: ComputeGate,
    peer: IpAddr,
    /// Bytes received and not yet answered.
    input: Vec<u8>,
    /// Inside a line over [`MAX_LINE`], already answered: drop through its
    /// end.
    discarding: bool,
    out: OutQueue,
    pending: Option<Pending>,
    /// This session's turn in the line at the gate, while it waits there.
    turn: Option<WaitTurn>,
    request: Option<Request>,
    eof: bool,
    quit: bool,
    timed_out: bool,
    last_activity: Instant,
    /// Answers queued since the driver last asked
    /// ([`Session::take_finished_requests`]).
    finished: u32,
}

impl CalcSession {
    /// A session for a client at `peer`.
    pub fn new(config: CalcConfig, gate: ComputeGate, peer: IpAddr, now: Instant) -> CalcSession {
        CalcSession {
            config,
            gate,
            peer,
            input: Vec::new(),
            discarding: false,
            out: OutQueue::default(),
            pending: None,
            turn: None,
            request: None,
            eof: false,
            quit: false,
            timed_out: false,
            last_activity: now,
            finished: 0,
        }
    }

    fn output_full(&self) -> bool {
        self.out.len() >= MAX_OUTPUT
    }

    fn answer(&mut self, result: Result<String, CalcError>) {
        self.finished += 1;
        let out = self.out.buf();
        match result {
            Ok(n) => out.extend_from_slice(n.as_bytes()),
            Err(e) => {
                out.extend_from_slice(b"ERR ");
                out.extend_from_slice(e.to_string().as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Answers the lines held, in order, until one waits for a computation,
    /// the output is full, or no whole line is left.
    fn process(&mut self, now: Instant) {
        let input = std::mem::take(&mut self.input);
        let mut start = 0;
        while !self.quit && !self.timed_out && self.pending.is_none() && !self.output_full() {
            let rest = &input[start..];
            let Some(i) = rest.iter().position(|b| *b == b'\n') else {
                if self.discarding {
                    start = input.len();
                } else if rest.len() > MAX_LINE + 1 {
                    // CR included: a line this long is over whatever ends it.
                    self.answer(Err(CalcError::LineTooLong));
                    self.discarding = true;
                    start = input.len();
                } else if self.eof && !rest.is_empty() {
                    start = input.len();
                    self.answer_line(rest, now);
                }
                break;
            };
            let line = &rest[..i];
            start += i + 1;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            self.answer_line(line.strip_suffix(b"\r").unwrap_or(line), now);
        }
        self.input = input;
        self.input.drain(..start);
    }

    fn answer_line(&mut self, line: &[u8], now: Instant) {
        let blank = |b: &u8| *b == b' ' || *b == b'\t';
        let trimmed = line.iter().position(|b| !blank(b)).map_or(&line[..0], |s| {
            &line[s..line.iter().rposition(|b| !blank(b)).unwrap_or(s) + 1]
        });
        if trimmed.is_empty() {
            return;
        }
        if trimmed.eq_ignore_ascii_case(b"QUIT") {
            self.out.buf().extend_from_slice(b"BYE\r\n");
            self.finished += 1;
            self.quit = true;
            return;
        }
        // Columns count from the line's first byte, blanks included.
        let parsed = match expr::parse(line) {
            Ok(e) => e,
            Err(e) => return self.answer(Err(e)),
        };
        let inline = Limits {
            max_digits: self.config.max_digits,
            budget: INLINE_BUDGET,
        };
        match expr::evaluate(&parsed, inline) {
            Err(CalcError::OverBudget) => self.start_computation(parsed, now),
            answer => self.answer(answer),
        }
    }

    /// Runs `expr` as a computation if the gate has a place; else waits.
    fn start_computation(&mut self, expr: Expr, now: Instant) {
        let Some(permit) = self.gate.try_acquire_in_turn(self.peer, &mut self.turn) else {
            self.pending = Some(Pending::Waiting {
                expr,
                retry_at: now + COMPUTE_RETRY,
            });
            return;
        };
        let limits = Limits {
            max_digits: self.config.max_digits,
            budget: u64::MAX,
        };
        self.request = Some(Request::Compute(Work::new(move || -> Computed {
            let answer = expr::evaluate(&expr, limits);
            // The place is given back when the work ends, wherever it ran.
            drop(permit);
            Box::new(answer)
        })));
        self.pending = Some(Pending::Computing);
    }
}

impl Session for CalcSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.input.extend_from_slice(data);
        self.last_activity = now;
        self.process(now);
    }

    fn handle_eof(&mut self, now: Instant) {
        self.eof = true;
        self.process(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.pending.take() {
            Some(Pending::Waiting { expr, retry_at }) if now >= retry_at => {
                self.start_computation(expr, now);
            }
            other => self.pending = other,
        }
        if self.pending.is_none()
            && self
                .config
                .idle_timeout
                .is_some_and(|t| now >= self.last_activity + t)
        {
            self.timed_out = true;
        }
    }

    fn handle_shutdown(&mut self, now: Instant) {
        // The lines already received are answered; then the connection
        // closes, as after the client's end of stream.
        self.eof = true;
        self.process(now);
    }

    fn handle_computed(&mut self, result: Computed, now: Instant) {
        if !matches!(self.pending, Some(Pending::Computing)) {
            return;
        }
        self.pending = None;
        let answer = match result.downcast::<Result<String, CalcError>>() {
            Ok(answer) => *answer,
            Err(_) => Err(CalcError::OverBudget),
        };
        self.answer(answer);
        self.last_activity = now;
        self.process(now);
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.request.take()
    }

    fn poll_output(&self) -> Output<'_> {
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        if n > 0 {
            self.last_activity = now;
        }
        if !self.output_full() {
            self.process(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.pending {
            Some(Pending::Waiting { retry_at, .. }) => Some(*retry_at),
            Some(Pending::Computing) => None,
            None => self.config.idle_timeout.map(|t| self.last_activity + t),
        }
    }

    fn wants_read(&self) -> bool {
        !self.eof
            && !self.quit
            && !self.timed_out
            && !self.output_full()
            && self.input.len() < MAX_INPUT
    }

    fn wants_close(&self) -> bool {
        self.timed_out || self.quit || (self.eof && self.pending.is_none() && self.input.is_empty())
    }

    fn wants_close_now(&self) -> bool {
        // Nothing moved for the whole idle timeout: what is unsent will not
        // be read.
        self.timed_out
    }

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ConnInfo, Protocol};

    fn calc(max_digits: u32, idle: Option<Duration>) -> super::super::Calc {
        super::super::Calc::new(CalcConfig {
            max_digits,
            idle_timeout: idle,
        })
        .unwrap()
    }

    #[test]
    fn each_answer_is_one_request_and_a_blank_line_none() {
        let proto = calc(100, None);
        let (mut s, now) = session(&proto);
        s.handle_input(b"1+1\r\n\r\n2*3\r\n(\r\nQUIT\r\n", now);
        let out = drain(&mut *s, now);
        assert_eq!(out.lines().count(), 4, "{out}");
        assert_eq!(s.take_finished_requests(), 4, "two answers, an error, BYE");
        assert_eq!(s.take_finished_requests(), 0);
    }

    fn session(proto: &super::super::Calc) -> (Box<dyn Session>, Instant) {
        let now = Instant::now();
        let info = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            wall: std::time::SystemTime::UNIX_EPOCH,
        };
        (proto.new_session(&info, now), now)
    }

    /// Takes all output, running any computation in place (as a blocking
    /// driver does).
    fn drain(s: &mut dyn Session, now: Instant) -> String {
        let mut got = Vec::new();
        for _ in 0..100_000 {
            if let Some(Request::Compute(work)) = s.poll_request() {
                s.handle_computed(work.run(), now);
                continue;
            }
            let data = s.poll_output().bytes().to_vec();
            if data.is_empty() {
                break;
            }
            got.extend_from_slice(&data);
            s.consume_output(data.len(), now);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn answers_each_line_in_order_whole_or_byte_by_byte() {
        let input = "1 + 2\r\n\r\n   \n2 ** 100\n1 / 0\nfoo\n3 ** 200000 % 1000\n-7 % 2\n";
        let want = "3\r\n1267650600228229401496703205376\r\nERR division by zero\r\n\
                    ERR syntax error at column 1\r\n1\r\n1\r\n";
        let proto = calc(100_000, None);
        let (mut s, now) = session(&proto);
        s.handle_input(input.as_bytes(), now);
        assert_eq!(drain(&mut *s, now), want);
        let (mut s, now) = session(&proto);
        let mut got = String::new();
        for b in input.as_bytes() {
            s.handle_input(&[*b], now);
            got += &drain(&mut *s, now);
        }
        assert_eq!(got, want);
        assert!(!s.wants_close());
        s.handle_eof(now);
        assert!(s.wants_close());
    }

    #[test]
    fn a_heavy_line_is_a_computation_and_the_lines_after_it_wait() {
        let proto = calc(100_000, None);
        let (mut s, now) = session(&proto);
        s.handle_input(b"1 + 1\n3 ** 200000 % 7\n2 + 2\n", now);
        assert_eq!(s.poll_output().bytes(), b"2\r\n");
        let Some(Request::Compute(work)) = s.poll_request() else {
            panic!("no computation");
        };
        assert!(s.poll_request().is_none(), "one at a time");
        s.consume_output(3, now);
        assert!(s.poll_output().is_nothing(), "2 + 2 waits its turn");
        assert_eq!(proto.gate.held(), 1);
        s.handle_computed(work.run(), now);
        assert_eq!(proto.gate.held(), 0, "the place is given back");
        assert_eq!(s.poll_output().bytes(), b"2\r\n4\r\n");
    }

    #[test]
    fn a_full_gate_is_waited_for_on_the_clock() {
        let proto = calc(100_000, None);
        let places: Vec<_> = (0..ComputeGate::default_places())
            .map(|_| proto.gate.try_acquire("10.0.0.1".parse().unwrap()).unwrap())
            .collect();
        let (mut s, t0) = session(&proto);
        s.handle_input(b"3 ** 200000 % 7\n", t0);
        assert!(s.poll_request().is_none());
        assert_eq!(s.poll_timeout(), Some(t0 + COMPUTE_RETRY));
        s.handle_timeout(t0 + COMPUTE_RETRY);
        assert!(s.poll_request().is_none(), "still full");
        drop(places);
        let t1 = t0 + COMPUTE_RETRY * 2;
        s.handle_timeout(t1);
        assert!(matches!(s.poll_request(), Some(Request::Compute(_))));
    }

    #[test]
    fn stops_reading_while_answers_are_unsent() {
        let proto = calc(100_000, None);
        let (mut s, now) = session(&proto);
        let line = b"2 ** 1000\n".repeat(100);
        let mut fed = 0;
        while s.wants_read() && fed < 1000 {
            s.handle_input(&line, now);
            fed += 1;
        }
        assert!(fed < 1000, "it stopped reading");
        assert!(s.poll_output().bytes().len() >= MAX_OUTPUT);
        let answers = drain(&mut *s, now);
        assert_eq!(answers.lines().count(), fed * 100);
        assert!(s.wants_read());
    }

    #[test]
    fn quit_says_bye_and_closes_and_long_lines_are_refused() {
        let proto = calc(100_000, None);
        let (mut s, now) = session(&proto);
        let mut input = "7".repeat(MAX_LINE + 10).into_bytes();
        input.extend_from_slice(b"\n1+1\nquit\n2+2\n");
        s.handle_input(&input, now);
        assert_eq!(drain(&mut *s, now), "ERR line too long\r\n2\r\nBYE\r\n");
        assert!(s.wants_close());
        assert!(!s.wants_read());
    }

    #[test]
    fn the_idle_timeout_fires_on_the_fake_clock() {
        let proto = calc(100_000, Some(Duration::from_secs(10)));
        let (mut s, t0) = session(&proto);
        s.handle_input(b"1\n", t0 + Duration::from_secs(5));
        let _ = drain(&mut *s, t0 + Duration::from_secs(5));
        s.handle_timeout(t0 + Duration::from_secs(10));
        assert!(!s.wants_close());
        s.handle_timeout(t0 + Duration::from_secs(15));
        assert!(s.wants_close());
    }
}
