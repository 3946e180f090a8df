//! The calc load client: one expression line at a time on a long-lived
//! connection, each answer checked byte for byte against the answer
//! computed once, before the run, by muse's own evaluator (which the tests
//! check against Python's integers).
//!
//! A client is an echo client ([`EchoClient`]) whose request is the line
//! and whose answer is the integer and CRLF. A *measured* client reports
//! its answers (latency, throughput); a client *beside* them (the heavy
//! ones of `mixed`) loads the server just the same and has its answers
//! checked, but only its errors and bytes reach the report: the figure is
//! the cheap clients' latency with heavy work going on.

use std::time::Instant;

use super::echo::{EchoClient, EchoShape};
use super::{Effect, Effects, ErrorKind, Link, LoadClient};
use crate::bench::scenario::CalcLoad;
use crate::protocols::calc::expr::{calculate, Limits, DEFAULT_MAX_DIGITS};

/// What every calc client of a run sends and expects, prepared once.
#[derive(Debug)]
pub struct CalcShape {
    /// The measured clients' line and answer.
    measured: EchoShape,
    /// The line and answer of the clients beside them.
    beside: EchoShape,
    /// Clients with an id below this are measured.
    measured_below: usize,
}

/// `expr` as a request line and its answer line.
fn exchange(expr: &str) -> Result<EchoShape, String> {
    let limits = Limits {
        max_digits: DEFAULT_MAX_DIGITS,
        budget: u64::MAX,
    };
    let answer = calculate(expr.as_bytes(), limits).map_err(|e| format!("{expr}: {e}"))?;
    let request = format!("{expr}\n");
    Ok(EchoShape::new(
        request.as_bytes(),
        format!("{answer}\r\n").as_bytes(),
        1,
        false,
    ))
}

impl CalcShape {
    /// The shape of `load` for a run of `clients` (the last
    /// `load.heavy_beside` of them beside the measured ones). Fails if an
    /// expression has no answer within the default limits.
    pub fn new(load: &CalcLoad, clients: usize) -> Result<CalcShape, String> {
        Ok(CalcShape {
            measured: exchange(&load.expr)?,
            beside: exchange(&load.beside_expr)?,
            measured_below: clients.saturating_sub(load.heavy_beside),
        })
    }
}

/// One calc client (see the module docs).
pub struct CalcClient<'a> {
    inner: EchoClient<'a>,
    measured: bool,
    /// The inner client's effects, for a client beside the measured ones
    /// (its answers are dropped, the rest passed on).
    scratch: Effects,
}

impl<'a> CalcClient<'a> {
    /// Client `id` of `shape`.
    pub fn new(shape: &'a CalcShape, id: usize, now: Instant) -> CalcClient<'a> {
        let measured = id < shape.measured_below;
        let echo = if measured {
            &shape.measured
        } else {
            &shape.beside
        };
        CalcClient {
            inner: EchoClient::new(echo, now),
            measured,
            scratch: Effects::new(),
        }
    }

    /// Runs `f` on the inner client, passing on its effects (without the
    /// answers, for a client beside the measured ones).
    fn with(&mut self, fx: &mut Effects, f: impl FnOnce(&mut EchoClient<'a>, &mut Effects)) {
        if self.measured {
            return f(&mut self.inner, fx);
        }
        f(&mut self.inner, &mut self.scratch);
        for effect in self.scratch.as_slice() {
            if !matches!(effect, Effect::Answered { .. }) {
                fx.push(*effect);
            }
        }
        self.scratch.clear();
    }
}

impl LoadClient for CalcClient<'_> {
    fn handle_start(&mut self, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_start(now, fx));
    }

    fn handle_permit(&mut self, sent: Instant, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_permit(sent, now, fx));
    }

    fn handle_connected(&mut self, link: Link, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_connected(link, now, fx));
    }

    fn handle_input(&mut self, link: Link, data: &[u8], now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_input(link, data, now, fx));
    }

    fn handle_eof(&mut self, link: Link, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_eof(link, now, fx));
    }

    fn handle_failure(&mut self, link: Link, kind: ErrorKind, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_failure(link, kind, now, fx));
    }

    fn handle_timeout(&mut self, now: Instant, fx: &mut Effects) {
        self.with(fx, |c, fx| c.handle_timeout(now, fx));
    }

    fn poll_output(&self, link: Link) -> &[u8] {
        self.inner.poll_output(link)
    }

    fn consume_output(&mut self, link: Link, n: usize, now: Instant) {
        self.inner.consume_output(link, n, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn wants_permit(&self) -> bool {
        self.inner.wants_permit()
    }

    fn owes_answer(&self) -> bool {
        // Only a measured client's silence is a stall worth reporting.
        self.measured && self.inner.owes_answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;

    fn load(heavy_beside: usize) -> CalcLoad {
        CalcLoad {
            expr: "2 ** 64 - 1".into(),
            heavy_beside,
            beside_expr: "3 ** 5".into(),
        }
    }

    #[test]
    fn measured_clients_report_answers_and_the_others_only_bytes() {
        let shape = CalcShape::new(&load(1), 2).unwrap();
        let t0 = Instant::now();
        for (id, line, answer, counted) in [
            (
                0,
                &b"2 ** 64 - 1\n"[..],
                &b"18446744073709551615\r\n"[..],
                true,
            ),
            (1, b"3 ** 5\n", b"243\r\n", false),
        ] {
            let mut c = CalcClient::new(&shape, id, t0);
            let _ = effects(|fx| c.handle_start(t0, fx));
            let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
            let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            assert_eq!(c.poll_output(Link::Main), line);
            c.consume_output(Link::Main, line.len(), t0);
            assert!(c.owes_answer() == counted);
            let fx = effects(|fx| c.handle_input(Link::Main, answer, t0, fx));
            assert_eq!(
                fx.iter().any(|e| matches!(e, Effect::Answered { .. })),
                counted,
                "{fx:?}"
            );
            assert!(fx.contains(&Effect::Received(answer.len())));
            let bad = effects(|fx| {
                c.handle_permit(t0, t0, fx);
                c.handle_input(Link::Main, b"0\r\n", t0, fx)
            });
            assert!(bad.contains(&Effect::Failed(ErrorKind::Mismatch)));
        }
    }

    #[test]
    fn an_expression_without_an_answer_is_refused() {
        let mut bad = load(0);
        bad.expr = "1 / 0".into();
        assert!(CalcShape::new(&bad, 1).is_err());
    }
}
