//! The HTTP/1.1 load client: `GET /file` again and again on a keep-alive
//! connection (`depth` requests pipelined), or on a new connection per
//! request (`close`), every response verified: status 200, `Content-Length`
//! equal to the file's size, and every body byte against the fixture
//! pattern. Other headers (`Date`, `Server`, `ETag`, `Last-Modified`, ...)
//! are read past, whatever they say; a chunked body is refused (the servers
//! measured send `Content-Length` for files).
//!
//! Connection management follows RFC 9112 §9: a response that says
//! `Connection: close` (or an HTTP/1.0 response without `keep-alive`) is the
//! connection's last; the server must then close it, and any byte after the
//! response is a mismatch. The client then opens a new connection and sends
//! again whatever requests of its pipeline went unanswered, with their
//! original send times (a server that closes every hundredth connection
//! costs it latency, not errors). A server that closes while a response is
//! owed, without having announced it, is `closed`. A long-lived connection
//! that fails is given up, as echo's are; a per-request client tries again
//! after [`RETRY_BACKOFF`].
//!
//! [`HeadParser`] reads a response head as its bytes arrive, one line at a
//! time, into one fixed buffer: no allocation per response.

use std::time::{Duration, Instant};

use super::{
    fixture_expected, fixture_window, Effects, ErrorKind, Link, LoadClient, SendTimes, READ_MAX,
    RETRY_BACKOFF,
};
use crate::bench::scenario::HttpLoad;

/// The longest head line kept. Longer lines are cut: only the status line
/// and the `Content-Length`, `Connection` and `Transfer-Encoding` headers
/// are read, and none of them is long.
const HEAD_LINE_MAX: usize = 1024;

/// The most bytes a response head may have: nginx's default for request
/// heads is 1 KiB growing to 8 KiB buffers; a static file's response head is
/// a few hundred bytes. More is not a file server speaking.
const HEAD_MAX: usize = 64 * 1024;

/// How long a server that announced the end of a connection may take to
/// close it before that counts as a mismatch.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// What every HTTP client of a run sends and expects, prepared once.
#[derive(Debug)]
pub struct HttpShape {
    request_len: usize,
    /// The request repeated `depth` times (a pipeline is one write).
    batch: Vec<u8>,
    depth: usize,
    /// The file's size.
    size: u64,
    /// One request per connection.
    close: bool,
    /// [`fixture_window`] for reads of up to [`READ_MAX`].
    pattern: Vec<u8>,
}

impl HttpShape {
    /// The shape for `load`.
    pub fn new(load: &HttpLoad) -> Result<HttpShape, &'static str> {
        if load.file.is_empty() || load.file.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err("the HTTP file needs a plain name");
        }
        let depth = if load.close { 1 } else { load.depth.max(1) };
        let request = load.request();
        Ok(HttpShape {
            request_len: request.len(),
            batch: request.repeat(depth),
            depth,
            size: load.size,
            close: load.close,
            pattern: fixture_window(READ_MAX),
        })
    }
}

/// What a response head said, as far as the client cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `HTTP/1.x`: x.
    pub minor: u8,
    /// `Content-Length`, if given.
    pub length: Option<u64>,
    /// `Transfer-Encoding` was given (a chunked body).
    pub chunked: bool,
    /// `Connection: close` was given.
    pub close: bool,
    /// `Connection: keep-alive` was given.
    pub keep_alive: bool,
}

impl Head {
    /// Whether the connection goes on after this response (RFC 9112 §9.3).
    pub fn persists(&self) -> bool {
        !self.close && (self.minor >= 1 || self.keep_alive)
    }
}

/// Why a response head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadHead {
    /// The status line is not `HTTP/1.x NNN ...`.
    StatusLine,
    /// A header line without a colon, or folded.
    HeaderLine,
    /// Two different `Content-Length`s, or one that is not a number.
    Length,
    /// More than [`HEAD_MAX`] bytes.
    TooLong,
}

/// Reads a response head as its bytes arrive: [`HeadParser::feed`] until it
/// returns the head.
pub struct HeadParser {
    line: Box<[u8]>,
    len: usize,
    /// Head bytes so far.
    seen: usize,
    /// The status line has been read.
    status_done: bool,
    head: Head,
}

impl Default for HeadParser {
    fn default() -> Self {
        HeadParser::new()
    }
}

impl HeadParser {
    /// A parser at the start of a response.
    pub fn new() -> HeadParser {
        HeadParser {
            line: vec![0; HEAD_LINE_MAX].into_boxed_slice(),
            len: 0,
            seen: 0,
            status_done: false,
            head: Head::default(),
        }
    }

    /// Back to the start of a response.
    pub fn reset(&mut self) {
        self.len = 0;
        self.seen = 0;
        self.status_done = false;
        self.head = Head::default();
    }

    /// Whether any byte of a head has been read.
    pub fn started(&self) -> bool {
        self.seen > 0
    }

    /// Consumes `data` from `*pos` up to the end of the head (its empty
    /// line) and returns the head; `None` when the data ends first.
    pub fn feed(&mut self, data: &[u8], pos: &mut usize) -> Result<Option<Head>, BadHead> {
        while *pos < data.len() {
            let rest = &data[*pos..];
            let (piece, eol) = match rest.iter().position(|&b| b == b'\n') {
                Some(k) => (&rest[..k], true),
                None => (rest, false),
            };
            let used = piece.len() + usize::from(eol);
            *pos += used;
            self.seen += used;
            if self.seen > HEAD_MAX {
                return Err(BadHead::TooLong);
            }
            let take = piece.len().min(HEAD_LINE_MAX - self.len);
            self.line[self.len..self.len + take].copy_from_slice(&piece[..take]);
            self.len += take;
            if !eol {
                return Ok(None);
            }
            let len = std::mem::take(&mut self.len);
            let line = &self.line[..len];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !self.status_done {
                self.head.status_line(line)?;
                self.status_done = true;
            } else if line.is_empty() {
                let head = self.head;
                self.reset();
                return Ok(Some(head));
            } else {
                self.head.header_line(line)?;
            }
        }
        Ok(None)
    }
}

impl Head {
    /// `HTTP/1.x NNN reason`.
    fn status_line(&mut self, line: &[u8]) -> Result<(), BadHead> {
        let rest = line.strip_prefix(b"HTTP/1.").ok_or(BadHead::StatusLine)?;
        match rest {
            [minor @ b'0'..=b'9', b' ', a, b, c, tail @ ..]
                if [a, b, c].iter().all(|d| d.is_ascii_digit())
                    && (tail.is_empty() || tail[0] == b' ') =>
            {
                self.minor = minor - b'0';
                self.status = [a, b, c]
                    .iter()
                    .fold(0u16, |v, d| v * 10 + u16::from(**d - b'0'));
                Ok(())
            }
            _ => Err(BadHead::StatusLine),
        }
    }

    /// `Name: value`; only the names that matter are looked at.
    fn header_line(&mut self, line: &[u8]) -> Result<(), BadHead> {
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold (RFC 9112 §5.2): no server of files sends it.
            return Err(BadHead::HeaderLine);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(BadHead::HeaderLine)?;
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(BadHead::Length)?;
            if self.length.is_some_and(|l| l != n) {
                return Err(BadHead::Length);
            }
            self.length = Some(n);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = true;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No connection: the next permit opens one.
    Closed,
    Connecting,
    Open,
    /// A per-request client after an error, until the instant.
    Backoff(Instant),
    /// A long-lived connection that failed.
    Dead,
}

/// One HTTP client (see the module docs).
pub struct HttpClient<'a> {
    shape: &'a HttpShape,
    state: State,
    /// Requests issued and not yet fully written; the first has `sent_off`
    /// bytes out.
    queued: usize,
    sent_off: usize,
    /// Send (or intended send) times of the requests whose answers are
    /// not complete.
    flight: SendTimes,
    parser: HeadParser,
    /// Inside a body: bytes of it verified so far.
    in_body: bool,
    got: u64,
    /// The response being read is the connection's last.
    last: bool,
    /// The last response was the connection's last: the server must close
    /// it (by the instant); nothing more may come.
    closing: Option<Instant>,
}

impl<'a> HttpClient<'a> {
    /// A client of `shape`; `now` fills its ring of send times.
    pub fn new(shape: &'a HttpShape, now: Instant) -> HttpClient<'a> {
        HttpClient {
            shape,
            state: State::Closed,
            queued: 0,
            sent_off: 0,
            flight: SendTimes::new(shape.depth, now),
            parser: HeadParser::new(),
            in_body: false,
            got: 0,
            last: false,
            closing: None,
        }
    }

    /// Opens a new connection; the requests in flight go again on it.
    fn connect(&mut self, fx: &mut Effects) {
        fx.open(Link::Main, None, true);
        self.state = State::Connecting;
        self.queued = self.flight.len();
        self.sent_off = 0;
        self.parser.reset();
        self.in_body = false;
        self.got = 0;
        self.last = false;
        self.closing = None;
    }

    /// An error (counted already): close, and give up (long-lived) or
    /// pause (per request).
    fn fail(&mut self, now: Instant, fx: &mut Effects) {
        fx.close(Link::Main, false);
        self.closing = None;
        self.state = if self.shape.close {
            self.flight.clear();
            self.queued = 0;
            State::Backoff(now + RETRY_BACKOFF)
        } else {
            State::Dead
        };
    }

    /// Verifies `data`: heads, then bodies, response after response.
    fn check(&mut self, data: &[u8], now: Instant, fx: &mut Effects) -> Result<(), ErrorKind> {
        let mut pos = 0;
        while pos < data.len() {
            if self.flight.is_empty() || self.closing.is_some() {
                // Bytes nothing asked for.
                return Err(ErrorKind::Mismatch);
            }
            if !self.in_body {
                let Some(head) = self
                    .parser
                    .feed(data, &mut pos)
                    .map_err(|_| ErrorKind::Mismatch)?
                else {
                    break;
                };
                if head.status != 200 || head.chunked || head.length != Some(self.shape.size) {
                    return Err(ErrorKind::Mismatch);
                }
                self.last = !head.persists() || self.shape.close;
                self.in_body = true;
                self.got = 0;
            }
            let left = self.shape.size - self.got;
            let take = (left as usize).min(data.len() - pos);
            let body = &data[pos..pos + take];
            if body != fixture_expected(&self.shape.pattern, self.got, take) {
                return Err(ErrorKind::Mismatch);
            }
            pos += take;
            self.got += take as u64;
            fx.received(take);
            if self.got == self.shape.size {
                self.in_body = false;
                fx.answered(self.flight.pop());
                if self.last {
                    self.closing = Some(now + CLOSE_LIMIT);
                }
            } else {
                // Only the end of `data` stops a body short.
                debug_assert_eq!(pos, data.len());
            }
        }
        Ok(())
    }

    /// In the middle of a response.
    fn mid_response(&self) -> bool {
        self.in_body || self.parser.started()
    }
}

impl LoadClient for HttpClient<'_> {
    fn handle_start(&mut self, _now: Instant, fx: &mut Effects) {
        if !self.shape.close {
            self.connect(fx);
        }
    }

    fn handle_permit(&mut self, sent: Instant, _now: Instant, fx: &mut Effects) {
        if self.state == State::Closed {
            self.connect(fx);
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
        if let Err(kind) = self.check(data, now, fx) {
            fx.failed(kind);
            self.fail(now, fx);
        }
    }

    fn handle_eof(&mut self, _link: Link, now: Instant, fx: &mut Effects) {
        if self.state != State::Open {
            return;
        }
        let announced = self.closing.is_some();
        if self.mid_response() || (!self.flight.is_empty() && !announced) {
            fx.failed(ErrorKind::Closed);
            self.fail(now, fx);
            return;
        }
        // The server closed first, as announced (or an idle keep-alive
        // connection): a reset spares it the TIME_WAIT.
        fx.close(Link::Main, true);
        self.closing = None;
        self.state = State::Closed;
        if !self.flight.is_empty() {
            // Pipelined requests the last response left unanswered.
            self.connect(fx);
        }
    }

    fn handle_failure(&mut self, _link: Link, _kind: ErrorKind, now: Instant, fx: &mut Effects) {
        self.fail(now, fx);
    }

    fn handle_timeout(&mut self, now: Instant, fx: &mut Effects) {
        match (self.state, self.closing) {
            (State::Backoff(until), _) if now >= until => self.state = State::Closed,
            (State::Open, Some(limit)) if now >= limit => {
                fx.failed(ErrorKind::Mismatch);
                self.fail(now, fx);
            }
            _ => {}
        }
    }

    fn poll_output(&self, _link: Link) -> &[u8] {
        if self.closing.is_some() {
            // This connection answers nothing more.
            return &[];
        }
        &self.shape.batch[self.sent_off..self.queued * self.shape.request_len]
    }

    fn consume_output(&mut self, _link: Link, n: usize, _now: Instant) {
        let done = self.sent_off + n;
        self.queued -= done / self.shape.request_len;
        self.sent_off = done % self.shape.request_len;
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.state, self.closing) {
            (State::Backoff(until), _) => Some(until),
            (_, Some(limit)) => Some(limit),
            _ => None,
        }
    }

    fn wants_permit(&self) -> bool {
        match self.state {
            State::Closed => true,
            State::Connecting | State::Open => {
                !self.shape.close && self.closing.is_none() && self.flight.len() < self.shape.depth
            }
            State::Backoff(_) | State::Dead => false,
        }
    }

    fn owes_answer(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open)
            && (!self.flight.is_empty() || self.closing.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;
    use crate::bench::client::Effect;
    use crate::bench::scenario;

    const NGINX_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"659200-400\"\r\nAccept-Ranges: bytes\r\n\r\n";

    /// Feeds `text` whole, then one byte at a time; both must agree.
    fn parse(text: &[u8]) -> Result<Option<(Head, usize)>, BadHead> {
        let mut p = HeadParser::new();
        let mut pos = 0;
        let whole = p.feed(text, &mut pos).map(|h| h.map(|h| (h, pos)));
        let mut p = HeadParser::new();
        let mut bytewise = Ok(None);
        for i in 0..text.len() {
            let mut at = 0;
            match p.feed(&text[i..i + 1], &mut at) {
                Ok(Some(h)) => {
                    bytewise = Ok(Some((h, i + 1)));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    bytewise = Err(e);
                    break;
                }
            }
        }
        assert_eq!(whole, bytewise, "whole and byte by byte differ");
        whole
    }

    #[test]
    fn heads_are_parsed_whole_and_byte_by_byte() {
        let (head, end) = parse(NGINX_HEAD).unwrap().unwrap();
        assert_eq!(end, NGINX_HEAD.len());
        assert_eq!(
            head,
            Head {
                status: 200,
                minor: 1,
                length: Some(1024),
                chunked: false,
                close: false,
                keep_alive: true
            }
        );
        assert!(head.persists());
        // What follows the head is left for the body.
        let mut text = NGINX_HEAD.to_vec();
        text.extend_from_slice(b"body");
        assert_eq!(parse(&text).unwrap().unwrap().1, NGINX_HEAD.len());
        // Bare LF line ends, HTTP/1.0, close, odd case and spacing.
        let (h, _) =
            parse(b"HTTP/1.0 404 Not Found\ncontent-LENGTH:  7 \nCONNECTION: Keep-Alive\n\n")
                .unwrap()
                .unwrap();
        assert_eq!((h.status, h.minor, h.length), (404, 0, Some(7)));
        assert!(h.persists());
        let (h, _) = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(!h.persists(), "1.0 closes unless it says keep-alive");
        let (h, _) = parse(b"HTTP/1.1 200\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close && !h.persists());
        let (h, _) = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked);
        // Incomplete.
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"), Ok(None));
    }

    #[test]
    fn bad_heads_are_refused() {
        for (text, why) in [
            (&b"HTTP/2 200 OK\r\n\r\n"[..], BadHead::StatusLine),
            (b"HTTP/1.1 20 OK\r\n\r\n", BadHead::StatusLine),
            (b"HTTP/1.1 200OK\r\n\r\n", BadHead::StatusLine),
            (b"SSH-2.0-OpenSSH\r\n\r\n", BadHead::StatusLine),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", BadHead::HeaderLine),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
                BadHead::HeaderLine,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                BadHead::Length,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                BadHead::Length,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                BadHead::Length,
            ),
        ] {
            assert_eq!(parse(text), Err(why), "{}", String::from_utf8_lossy(text));
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= HEAD_MAX {
            huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse(&huge), Err(BadHead::TooLong));
    }

    fn load(size: u64, depth: usize, close: bool) -> HttpLoad {
        HttpLoad {
            file: "f.bin".into(),
            size,
            depth,
            close,
            idle: 0,
            slow: 0,
        }
    }

    fn response(size: u64, extra: &str) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: {size}\r\n{extra}\r\n")
            .into_bytes();
        r.extend((0..size).map(scenario::fixture_byte));
        r
    }

    /// Feeds `data` one byte at a time and returns every effect.
    fn feed_bytewise(c: &mut HttpClient, data: &[u8], now: Instant) -> Vec<Effect> {
        let mut all = Vec::new();
        for b in data {
            all.extend(effects(|fx| c.handle_input(Link::Main, &[*b], now, fx)));
        }
        all
    }

    fn connected(shape: &HttpShape, t0: Instant) -> HttpClient<'_> {
        let mut c = HttpClient::new(shape, t0);
        let fx = effects(|fx| c.handle_start(t0, fx));
        assert!(matches!(fx[..], [Effect::Open { .. }]));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        c
    }

    #[test]
    fn keep_alive_pipeline_byte_by_byte() {
        let shape = HttpShape::new(&load(300, 2, false)).unwrap();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let mut c = connected(&shape, t0);
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_permit(t1, t0, fx));
        assert!(!c.wants_permit());
        let out = c.poll_output(Link::Main).to_vec();
        assert_eq!(out, load(300, 2, false).request().repeat(2));
        c.consume_output(Link::Main, out.len(), t0);
        let mut two = response(300, "");
        two.extend(response(300, "Connection: keep-alive\r\n"));
        let fx = feed_bytewise(&mut c, &two, t0);
        let answered: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Answered { sent } => Some(*sent),
                _ => None,
            })
            .collect();
        assert_eq!(answered, [t0, t1]);
        let body: usize = fx
            .iter()
            .map(|e| match e {
                Effect::Received(n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(body, 600);
        assert!(!fx.iter().any(|e| matches!(e, Effect::Failed(_))), "{fx:?}");
        // Whole, too.
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let fx = effects(|fx| c.handle_input(Link::Main, &response(300, ""), t0, fx));
        assert_eq!(fx.last(), Some(&Effect::Answered { sent: t0 }));
    }

    #[test]
    fn wrong_status_length_or_byte_is_a_mismatch() {
        let shape = HttpShape::new(&load(10, 1, false)).unwrap();
        let t0 = Instant::now();
        let mut bad_byte = response(10, "");
        *bad_byte.last_mut().unwrap() ^= 1;
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
        for bad in [
            not_found,
            response(11, ""),
            bad_byte,
            response(10, "Transfer-Encoding: chunked\r\n"),
            [response(10, ""), b"H".to_vec()].concat(),
        ] {
            let mut c = connected(&shape, t0);
            let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            let fx = effects(|fx| c.handle_input(Link::Main, &bad, t0, fx));
            assert!(
                fx.contains(&Effect::Failed(ErrorKind::Mismatch)),
                "{}: {fx:?}",
                String::from_utf8_lossy(&bad)
            );
            assert!(!c.wants_permit(), "a long-lived connection is given up");
        }
    }

    #[test]
    fn an_announced_close_reconnects_and_resends_the_rest() {
        let shape = HttpShape::new(&load(4, 3, false)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, t0);
        for _ in 0..3 {
            let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        }
        let n = c.poll_output(Link::Main).len();
        c.consume_output(Link::Main, n, t0);
        let fx =
            effects(|fx| c.handle_input(Link::Main, &response(4, "Connection: close\r\n"), t0, fx));
        assert!(fx.contains(&Effect::Answered { sent: t0 }));
        assert!(c.poll_output(Link::Main).is_empty(), "nothing more on it");
        assert!(c.owes_answer());
        let fx = effects(|fx| c.handle_eof(Link::Main, t0, fx));
        assert_eq!(
            fx,
            [
                Effect::Close {
                    link: Link::Main,
                    reset: true
                },
                Effect::Open {
                    link: Link::Main,
                    port: None,
                    nodelay: true
                }
            ]
        );
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        assert_eq!(
            c.poll_output(Link::Main),
            &load(4, 3, false).request().repeat(2)[..],
            "the two unanswered requests go again"
        );
        // A close nobody announced, with responses owed.
        let fx = effects(|fx| c.handle_eof(Link::Main, t0, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Closed));
    }

    #[test]
    fn one_request_per_connection() {
        let shape = HttpShape::new(&load(5, 8, true)).unwrap();
        let t0 = Instant::now();
        let mut c = HttpClient::new(&shape, t0);
        assert!(effects(|fx| c.handle_start(t0, fx)).is_empty());
        for round in 0..2 {
            assert!(c.wants_permit(), "round {round}");
            let fx = effects(|fx| c.handle_permit(t0, t0, fx));
            assert!(matches!(fx[..], [Effect::Open { .. }]));
            assert!(!c.wants_permit(), "one at a time");
            let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
            let req = c.poll_output(Link::Main).to_vec();
            assert!(req.windows(17).any(|w| w == b"Connection: close"));
            c.consume_output(Link::Main, req.len(), t0);
            // The server need not say it: the client asked.
            let fx = feed_bytewise(&mut c, &response(5, ""), t0);
            assert!(fx.contains(&Effect::Answered { sent: t0 }));
            let fx = effects(|fx| c.handle_eof(Link::Main, t0, fx));
            assert_eq!(
                fx,
                [Effect::Close {
                    link: Link::Main,
                    reset: true
                }]
            );
        }
        // A server that never closes is caught.
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let _ = effects(|fx| c.handle_input(Link::Main, &response(5, ""), t0, fx));
        let limit = c.poll_timeout().unwrap();
        let fx = effects(|fx| c.handle_timeout(limit, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Mismatch));
        // Then it pauses and goes on.
        let until = c.poll_timeout().unwrap();
        let _ = effects(|fx| c.handle_timeout(until, fx));
        assert!(c.wants_permit());
    }
}
