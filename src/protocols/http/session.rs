//! One HTTP/1.1 connection: request heads in, responses out, in order.
//!
//! The session buffers what the client sends until a whole head is there
//! ([`head::head_end`] scans only new bytes, so a client trickling one byte
//! at a time costs linear work), answers it, drops it from the buffer, and
//! goes on with the next pipelined head. Each answer is appended to the
//! connection's output queue: the head as bytes, a body as a range of the
//! open file that the driver sends with `sendfile` after it, in the same
//! segment as the head's end. While the queue holds [`MAX_OUTPUT`] bytes or
//! [`MAX_QUEUED_FILES`] bodies the session answers nothing more and stops
//! reading: a client that pipelines without reading is held by TCP, not by
//! server memory.
//!
//! Deadlines, all from the driver's `now`:
//! - a head must arrive within `header_timeout` of its first byte (of the
//!   connection's start for the first request): else 408 and close;
//! - a keep-alive connection may wait `idle_timeout` for its next request,
//!   then closes without a word;
//! - output that moves nothing for the idle timeout (at most
//!   [`SEND_TIMEOUT`]) closes the connection at once (a client that never
//!   reads).
//!
//! After a malformed head the framing of what follows is unknown, so the
//! error says `Connection: close` and the session reads nothing more.
//!
//! Files are opened (one `openat2` and `fstat`) on the session's thread, as
//! nginx does on its event loop: a lookup in the dentry cache, not a read;
//! and once per turn of the thread's loop for all the requests it answers
//! for the same file (`files.rs`).
//! A directory listing reads a whole directory and runs as a computation
//! (`Request::Compute`), off an event loop.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::access_log::LogRequest;
use super::files::Opened;
use super::head::{self, Head, Method, Parse, TransferEncoding, Version};
use super::range::{self, RangeOutcome};
use super::response::{self, Framing};
use super::target::{self, Found};
use super::{date, listing, Shared};
use crate::root::VPath;
use crate::session::{Computed, ConnInfo, OutQueue, Output, Request, Session, Work};

/// Output bytes queued before the session stops answering and reading.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Response bodies (open files) queued before the session stops answering
/// and reading: each holds a descriptor until it is sent.
pub const MAX_QUEUED_FILES: usize = 8;

/// The largest request body on a GET or HEAD that is read and thrown away
/// so the connection can go on; a larger one gets 413 and the connection
/// closes (a static server has no use for bodies).
pub const MAX_DISCARD: u64 = 1 << 20;

/// Output that moves nothing for this long closes the connection at once:
/// the client does not read (nginx's `send_timeout` is 60 s too).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection closing with the client's bytes still coming (an
/// error, or a body left unread) keeps reading and dropping them once its
/// answer is out (nginx's `lingering_timeout` is 5 s; a client that reads
/// its answer closes long before).
pub const LINGER: Duration = Duration::from_secs(2);

/// Room made in the output buffer for a file response's head (about 250
/// bytes with every field), so that it is written without growing the
/// buffer field by field.
const HEAD_ROOM: usize = 512;

/// The most input buffer capacity a connection keeps between requests.
const RETAIN_INPUT: usize = 4 * 1024;

/// How long a drain keeps a kept-alive connection that is between requests
/// open: its client may already have sent the next request (it could not
/// know), which is answered with `Connection: close`; closing at once would
/// lose it. A client that sends nothing in this time is closed (and a
/// request racing that close is the same race as the idle timeout's).
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What methods a resource allows (the `Allow` of a 405).
const ALLOW: &str = "GET, HEAD";

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading and answering requests.
    Open,
    /// No more requests, after an error or with a body unread: what the
    /// client still sends is read and dropped until it closes or the
    /// instant passes ([`LINGER`] after the output was flushed, and while
    /// it is being sent), then the connection closes.
    Lingering(Instant),
    /// No more requests: close once the output is flushed.
    Closing,
    /// Close now, whatever is unsent.
    Gone,
}

/// What answering a request needs besides the answer itself: how the
/// response is framed, and what the access log keeps of the request.
struct Reply {
    framing: Framing,
    log: LogRequest,
}

impl Reply {
    /// The same, with the connection closing after the response.
    fn closing(self) -> Reply {
        Reply {
            framing: Framing {
                close: true,
                ..self.framing
            },
            ..self
        }
    }
}

/// The `Date` value, formatted once per second.
struct DateCache {
    secs: u64,
    text: [u8; date::IMF_FIXDATE_LEN],
}

/// One HTTP connection.
pub struct HttpSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Calendar time at `born`: the wall clock is `wall0 + (now - born)`.
    wall0: Duration,
    born: Instant,
    /// Bytes received and not yet answered.
    input: Vec<u8>,
    /// How much of `input` [`head::head_end`] has looked at.
    scanned: usize,
    /// Body bytes of the last request still to read and throw away.
    discard: u64,
    /// Since when that body has counted against the header timeout: from
    /// its head's first byte, or from when the answer before it was out.
    discard_since: Instant,
    out: OutQueue,
    requests: Option<Request>,
    phase: Phase,
    eof: bool,
    shutting_down: bool,
    /// Requests answered when the drain began: one answered after it
    /// closes the connection.
    served_at_drain: u64,
    /// A drain's grace for a connection that was between requests.
    drain_until: Option<Instant>,
    /// Requests answered on this connection.
    served: u64,
    /// Responses queued since the driver last asked
    /// ([`Session::take_finished_requests`]).
    finished: u32,
    /// When the head now being received began to count against the
    /// header timeout (`None`: no request under way).
    head_since: Option<Instant>,
    /// The last byte in or out.
    last_progress: Instant,
    /// A listing being computed, and how to answer with it.
    listing: Option<Reply>,
    date: DateCache,
    /// Buffers reused by every request: the percent-decoded target and the
    /// path it names (taken out while a request is answered).
    decoded: Vec<u8>,
    path: Option<VPath>,
}

impl HttpSession {
    pub(crate) fn new(shared: Arc<Shared>, info: &ConnInfo, now: Instant) -> HttpSession {
        HttpSession {
            shared,
            peer: info.peer,
            wall0: info.wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
            born: now,
            input: Vec::new(),
            scanned: 0,
            discard: 0,
            discard_since: now,
            out: OutQueue::default(),
            requests: None,
            phase: Phase::Open,
            eof: false,
            shutting_down: false,
            served_at_drain: 0,
            drain_until: None,
            served: 0,
            finished: 0,
            head_since: Some(now),
            last_progress: now,
            listing: None,
            date: DateCache {
                secs: u64::MAX,
                text: [b' '; date::IMF_FIXDATE_LEN],
            },
            decoded: Vec::new(),
            path: None,
        }
    }

    /// The calendar time at `now`, in seconds since the epoch.
    fn wall_secs(&self, now: Instant) -> u64 {
        (self.wall0 + now.saturating_duration_since(self.born)).as_secs()
    }

    /// The `Date` value for `now`.
    fn date(&mut self, now: Instant) -> [u8; date::IMF_FIXDATE_LEN] {
        let secs = self.wall_secs(now).min(date::MAX_SECS);
        if secs != self.date.secs {
            date::format(secs, &mut self.date.text);
            self.date.secs = secs;
        }
        self.date.text
    }

    fn output_full(&self) -> bool {
        self.out.len() >= MAX_OUTPUT || self.out.files() >= MAX_QUEUED_FILES
    }

    /// Answers every whole request buffered, in order, until the output is
    /// full or something waits.
    fn process(&mut self, now: Instant) {
        while self.phase == Phase::Open && self.listing.is_none() && !self.output_full() {
            if self.discard > 0 {
                let n = self.discard.min(self.input.len() as u64) as usize;
                self.input.drain(..n);
                self.discard -= n as u64;
                if self.discard > 0 {
                    break;
                }
                self.head_since = (!self.input.is_empty()).then_some(now);
                continue;
            }
            if self.input.is_empty() {
                break;
            }
            if !starts_a_request(self.input[0]) {
                // Not even the first byte of a request line (a TLS
                // handshake on this plain port, most often): answer now
                // rather than wait for a head that will never come.
                self.input.clear();
                self.refuse(400, now);
                break;
            }
            self.head_since.get_or_insert(now);
            let Some(end) = head::head_end(&self.input, self.scanned) else {
                self.scanned = self.input.len();
                break;
            };
            let input = std::mem::take(&mut self.input);
            let consumed = match head::parse(&input[..end]) {
                Parse::Complete { head, len } => {
                    self.respond(&head, &input[..len], now);
                    len
                }
                Parse::Partial => {
                    // head_end promised a decision; treat a broken promise
                    // as a malformed head rather than wait for ever.
                    self.refuse(400, now);
                    end
                }
                Parse::Error(e) => {
                    self.refuse(e.status(), now);
                    end
                }
            };
            self.input = input;
            self.input.drain(..consumed.min(self.input.len()));
            self.scanned = 0;
            self.served += 1;
            self.head_since = (!self.input.is_empty()).then_some(now);
        }
        if self.phase == Phase::Closing && !self.input.is_empty() && !self.eof {
            // Bytes behind the last answer (a pipelined request after
            // `Connection: close`): the client is pipelining, and what it
            // sends after the close would reset the connection under the
            // answer.
            self.linger(now);
        }
        if self.phase != Phase::Open {
            // Whatever follows a refused or final request is never read.
            self.input.clear();
        }
        if self.input.is_empty() && self.input.capacity() > RETAIN_INPUT {
            // Between requests a connection keeps a small buffer, not the
            // largest head (or pipeline) it ever received.
            self.input = Vec::new();
        }
        self.settle();
    }

    /// Closes a connection whose client has finished sending, once every
    /// whole request it sent has been answered.
    fn settle(&mut self) {
        if self.phase != Phase::Open || self.listing.is_some() {
            return;
        }
        if self.eof && !self.has_whole_head() {
            // A partial head (or body) the client can no longer finish is
            // dropped; the answers before it still go out.
            self.phase = Phase::Closing;
        } else if self.shutting_down
            && self.served > self.served_at_drain
            && self.input.is_empty()
            && self.out.is_empty()
        {
            self.phase = Phase::Closing;
        }
    }

    fn has_whole_head(&self) -> bool {
        !self.input.is_empty() && head::head_end(&self.input, 0).is_some()
    }

    /// A malformed head: its status, and the connection closes.
    fn refuse(&mut self, code: u16, now: Instant) {
        let date = self.date(now);
        let framing = Framing {
            close: true,
            http10: false,
            head_only: false,
        };
        let body = response::error(self.out.buf(), code, &date, framing, None, b"");
        self.finished += 1;
        self.log_raw(None, code, body, now);
        self.linger(now);
    }

    /// Answers one parsed request. `raw` is its head, for the access log.
    fn respond(&mut self, head: &Head<'_>, raw: &[u8], now: Instant) {
        let mut reply = Reply {
            framing: Framing {
                close: !head.keep_alive() || self.shutting_down,
                http10: head.version == Version::Http10,
                head_only: head.method == Method::Head,
            },
            log: self.log_request(raw),
        };

        // The body's framing first: it decides whether the connection can
        // go on after the answer.
        match head.transfer_encoding {
            Some(TransferEncoding::Chunked) => {
                // RFC 9112 §6.3: a server may refuse a body without a
                // length. A static server has no use for one.
                return self.finish_error(411, reply.closing(), None, now);
            }
            Some(TransferEncoding::Other) => {
                return self.finish_error(400, reply.closing(), None, now);
            }
            None => {}
        }
        if let Some(n) = head.content_length.filter(|&n| n > 0) {
            if n > MAX_DISCARD {
                return self.finish_error(413, reply.closing(), None, now);
            }
            if head.expect_continue {
                // The client waits for 100 before sending the body; the
                // answer comes now instead, and the connection closes so
                // the body that may follow is never mistaken for a request
                // (it lingers: the body may still come, and is dropped).
                reply = reply.closing();
            }
            self.discard = n;
            // Head and body together get the header timeout (a body sent
            // a byte at a time holds a blocking worker no longer than a
            // head sent so).
            self.discard_since = self.head_since.unwrap_or(now);
        }

        match head.method {
            Method::Get | Method::Head => {}
            Method::Other => return self.finish_error(501, reply, None, now),
            _ => return self.finish_error(405, reply, Some(ALLOW), now),
        }
        let mut path = self.path.take().unwrap_or_else(VPath::root);
        self.serve_path(head, &mut path, reply, now);
        self.path = Some(path);
    }

    /// A GET or HEAD of a target: the file, a directory's index or listing,
    /// a redirect, or why not. `path` is the reused buffer the target is
    /// resolved into.
    fn serve_path(&mut self, head: &Head<'_>, path: &mut VPath, reply: Reply, now: Instant) {
        let (trailing_slash, query) =
            match target::decode_into(head.target, &mut self.decoded, path) {
                Ok(Found::Path { reserved: true, .. }) => {
                    return self.finish_error(404, reply, None, now);
                }
                Ok(Found::Path { .. })
                    if !self.shared.config.dotfiles && super::is_hidden(path) =>
                {
                    return self.finish_error(404, reply, None, now);
                }
                Ok(Found::Path {
                    trailing_slash,
                    query,
                    ..
                }) => (trailing_slash, query),
                Ok(Found::Asterisk) | Err(_) => {
                    return self.finish_error(400, reply.closing(), None, now);
                }
            };
        let opened = super::files::open(&self.shared.root, path, now);
        match opened {
            Ok(file) => {
                if trailing_slash && !path.is_root() {
                    // `/file.txt/`: no such directory.
                    return self.finish_error(404, reply, None, now);
                }
                self.serve_file(head, path, file, reply, now);
            }
            Err(e) if e.kind() == ErrorKind::IsADirectory => {
                if !trailing_slash {
                    return self.redirect_to_dir(path, query, reply, now);
                }
                let index = path
                    .push("index.html")
                    .map(|()| super::files::open(&self.shared.root, path, now));
                match index {
                    Ok(Ok(file)) => self.serve_file(head, path, file, reply, now),
                    Ok(Err(e)) if e.kind() != ErrorKind::NotFound => {
                        self.finish_error(status_of(&e), reply, None, now);
                    }
                    Ok(Err(_)) if self.shared.config.autoindex => {
                        // `path` is DIR/index.html now: list DIR.
                        let dir = path.parent().unwrap_or_else(VPath::root);
                        self.start_listing(dir, reply);
                    }
                    _ => self.finish_error(404, reply, None, now),
                }
            }
            Err(e) => {
                let code = status_of(&e);
                if code == 500 {
                    crate::log::warn(format_args!("http: open {path}: {e}"));
                }
                self.finish_error(code, reply, None, now);
            }
        }
    }

    /// A file found: 200, 206, 304 or 416, by the request's conditionals
    /// and range (RFC 9110 §13.2.2's order).
    fn serve_file(
        &mut self,
        head: &Head<'_>,
        path: &VPath,
        file: Rc<Opened>,
        reply: Reply,
        now: Instant,
    ) {
        let mut file = file;
        let mut gzip = false;
        // The type is the named file's, whichever is sent.
        let ctype = file.content_type;
        let gzip_static = self.shared.config.gzip_static;
        if gzip_static && head.accept_encoding_gzip {
            if let Some(gz) = sidecar(path) {
                if let Ok(f) = super::files::open(&self.shared.root, &gz, now) {
                    file = f;
                    gzip = true;
                }
            }
        }
        let size = file.meta.size;
        let etag = file.etag();
        let modified = file.modified;

        let not_modified = match head.if_none_match {
            Some(inm) => range::if_none_match_matches(inm, etag),
            None => head
                .if_modified_since
                .is_some_and(|ims| range::not_modified_since(ims, modified)),
        };
        let outcome = if not_modified || head.method != Method::Get {
            RangeOutcome::Full
        } else {
            match head.range {
                Some(r)
                    if head
                        .if_range
                        .is_none_or(|ir| range::if_range_allows(ir, etag, modified)) =>
                {
                    range::range(r, size)
                }
                _ => RangeOutcome::Full,
            }
        };
        let (code, start, len) = if not_modified {
            (304, 0, 0)
        } else {
            match outcome {
                RangeOutcome::Full => (200, 0, size),
                RangeOutcome::Partial { start, end } => (206, start, end - start + 1),
                RangeOutcome::Unsatisfiable => (416, 0, 0),
            }
        };
        let date = self.date(now);
        if code == 416 {
            let mut extra = Vec::new();
            let _ = std::io::Write::write_fmt(
                &mut extra,
                format_args!("Content-Range: bytes */{size}\r\n"),
            );
            let body = response::error(self.out.buf(), 416, &date, reply.framing, None, &extra);
            return self.finish(416, body, reply, now);
        }
        let body = if code == 304 || reply.framing.head_only {
            0
        } else {
            len
        };
        let out = self.out.buf();
        // Room for the head and a body copied in, at once: a connection's
        // first response would otherwise grow the buffer field by field.
        let inline = if body > 0 && file.bytes().is_some() {
            body
        } else {
            0
        };
        out.reserve(HEAD_ROOM + usize::try_from(inline).unwrap_or(0));
        response::start(out, code, &date);
        if code != 304 {
            response::field(out, "Content-Type", ctype.as_bytes());
            response::field_number(out, "Content-Length", len);
            if code == 206 {
                response::content_range(out, start, start + len - 1, size);
            }
            if gzip {
                response::field(out, "Content-Encoding", b"gzip");
            }
        }
        response::field(out, "Last-Modified", &file.last_modified);
        response::field(out, "ETag", etag);
        if code != 304 {
            response::field(out, "Accept-Ranges", b"bytes");
        }
        if gzip_static {
            response::field(out, "Vary", b"Accept-Encoding");
        }
        response::end(out, reply.framing);
        if body > 0 {
            match file.bytes() {
                // A small file, read once this turn: copied from there.
                Some(bytes) => self
                    .out
                    .buf()
                    .extend_from_slice(&bytes[start as usize..(start + body) as usize]),
                None => self.out.push_shared_file(&file.file, start, body),
            }
        }
        self.finish(code, body, reply, now);
    }

    /// `/dir` is a directory: send the client to `/dir/`, so that relative
    /// links in its index resolve inside it.
    fn redirect_to_dir(&mut self, path: &VPath, query: Option<&[u8]>, reply: Reply, now: Instant) {
        let mut location = String::with_capacity(path.as_str().len() + 8);
        for c in path.components() {
            location.push('/');
            super::escape::percent_encode_segment(c, &mut location);
        }
        location.push('/');
        let mut extra = Vec::with_capacity(location.len() + 16);
        extra.extend_from_slice(b"Location: ");
        extra.extend_from_slice(location.as_bytes());
        if let Some(q) = query {
            extra.push(b'?');
            extra.extend_from_slice(q);
        }
        extra.extend_from_slice(b"\r\n");
        let date = self.date(now);
        let body = response::error(self.out.buf(), 301, &date, reply.framing, None, &extra);
        self.finish(301, body, reply, now);
    }

    /// An error response for a request whose head was understood.
    fn finish_error(&mut self, code: u16, reply: Reply, allow: Option<&str>, now: Instant) {
        let date = self.date(now);
        let body = response::error(self.out.buf(), code, &date, reply.framing, allow, b"");
        self.finish(code, body, reply, now);
    }

    /// After a response is queued: the log line, and the close it asked
    /// for.
    fn finish(&mut self, code: u16, body: u64, reply: Reply, now: Instant) {
        self.finished += 1;
        self.log_raw(Some(reply.log), code, body, now);
        if reply.framing.close {
            if code >= 400 || self.discard > 0 {
                // The client may still be sending what we refused, or the
                // body we do not read.
                self.linger(now);
            } else {
                self.phase = Phase::Closing;
            }
            self.discard = 0;
        }
    }

    /// Closes after the answer, but reads and drops what the client still
    /// sends for a while first (RFC 9112 §9.6, nginx's lingering close):
    /// closing with its bytes unread would reset the connection, and a
    /// reset can destroy the answer before the client reads it.
    fn linger(&mut self, now: Instant) {
        self.input.clear();
        self.phase = Phase::Lingering(now + LINGER);
    }

    /// A directory without an index, with `--autoindex`: its listing is
    /// read and rendered off the session's thread.
    fn start_listing(&mut self, path: VPath, reply: Reply) {
        let shared = Arc::clone(&self.shared);
        self.requests = Some(Request::Compute(Work::new(move || {
            let dotfiles = shared.config.dotfiles;
            Box::new(listing::render(&shared.root, &path, dotfiles)) as Computed
        })));
        self.listing = Some(reply);
    }

    /// What the access log keeps of a request head (nothing when it is off).
    fn log_request(&self, raw: &[u8]) -> LogRequest {
        if self.shared.config.access_log.is_none() {
            return LogRequest::default();
        }
        LogRequest::of(raw)
    }

    fn log_raw(&mut self, log: Option<LogRequest>, code: u16, body: u64, now: Instant) {
        if self.shared.config.access_log.is_none() {
            return;
        }
        let date = self.date(now);
        if let Some(sink) = &self.shared.config.access_log {
            sink.record(self.peer.ip(), &date, &log.unwrap_or_default(), code, body);
        }
    }

    /// The deadline for the request under way, or for the next one.
    fn request_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Open || self.listing.is_some() || !self.out.is_empty() {
            return None;
        }
        let header = self.shared.config.header_timeout;
        if self.discard > 0 {
            // A body trickling in counts like a head, on the same clock.
            return header.map(|t| self.discard_since + t);
        }
        match self.head_since {
            Some(since) if !self.input.is_empty() || self.served == 0 => header.map(|t| since + t),
            _ => self
                .shared
                .config
                .idle_timeout
                .map(|t| self.last_progress + t),
        }
    }

    /// Output that moves nothing for the idle timeout (at most
    /// [`SEND_TIMEOUT`]) ends the connection: the client is not reading.
    fn send_deadline(&self) -> Option<Instant> {
        let limit = self
            .shared
            .config
            .idle_timeout
            .map_or(SEND_TIMEOUT, |t| t.min(SEND_TIMEOUT));
        (!self.out.is_empty() && self.phase != Phase::Gone).then(|| self.last_progress + limit)
    }
}

impl Session for HttpSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.phase != Phase::Open {
            // Lingering: dropped. (Nothing else reads.)
            return;
        }
        self.input.extend_from_slice(data);
        self.last_progress = now;
        self.process(now);
    }

    fn handle_eof(&mut self, now: Instant) {
        self.eof = true;
        if matches!(self.phase, Phase::Lingering(_)) {
            self.phase = Phase::Closing;
        }
        self.process(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.send_deadline().is_some_and(|t| now >= t) {
            self.phase = Phase::Gone;
            return;
        }
        if self.phase == Phase::Open
            && self.drain_until.is_some_and(|t| now >= t)
            && self.input.is_empty()
            && self.out.is_empty()
            && self.discard == 0
        {
            // The drain's grace passed with nothing asked.
            self.phase = Phase::Closing;
            return;
        }
        if let Phase::Lingering(until) = self.phase {
            // While the answer is still going out, the send deadline rules.
            if now >= until && self.out.is_empty() {
                self.phase = Phase::Closing;
            }
            return;
        }
        if self.request_deadline().is_some_and(|t| now >= t) {
            if self.input.is_empty() && self.discard == 0 {
                // Nothing asked: a keep-alive connection that went quiet
                // (or one that never spoke) closes without a word.
                self.phase = Phase::Closing;
            } else {
                self.head_since = None;
                self.refuse(408, now);
                self.input.clear();
            }
        }
    }

    fn handle_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.served_at_drain = self.served;
        // The next request is answered (with close), then the connection
        // closes: one under way or about to come. A new connection may
        // send its first (its client could not know; the header timeout
        // bounds it); one between requests gets [`DRAIN_GRACE`].
        if self.phase == Phase::Open
            && self.served > 0
            && self.input.is_empty()
            && self.discard == 0
            && self.listing.is_none()
        {
            self.drain_until = Some(now + DRAIN_GRACE);
        }
        self.process(now);
    }

    fn handle_computed(&mut self, result: Computed, now: Instant) {
        let Some(pending) = self.listing.take() else {
            return;
        };
        let html = match result.downcast::<std::io::Result<Vec<u8>>>() {
            Ok(r) => *r,
            Err(_) => Err(std::io::Error::other("listing: unexpected result")),
        };
        let date = self.date(now);
        match html {
            Ok(html) => {
                let out = self.out.buf();
                response::start(out, 200, &date);
                response::field(out, "Content-Type", b"text/html; charset=utf-8");
                response::field_number(out, "Content-Length", html.len() as u64);
                response::end(out, pending.framing);
                let body = if pending.framing.head_only {
                    0
                } else {
                    out.extend_from_slice(&html);
                    html.len() as u64
                };
                self.finish(200, body, pending, now);
            }
            Err(e) => {
                let code = status_of(&e);
                let body = response::error(self.out.buf(), code, &date, pending.framing, None, b"");
                self.finish(code, body, pending, now);
            }
        }
        self.process(now);
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests.take()
    }

    fn poll_output(&self) -> Output<'_> {
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        if n > 0 {
            self.last_progress = now;
        }
        if self.out.is_empty() {
            if self.head_since.is_some() {
                // A head that arrived while a response was being sent is
                // timed from now: the client was reading, not stalling.
                self.head_since = Some(now);
            }
            if self.discard > 0 {
                // So is a body.
                self.discard_since = now;
            }
            if let Phase::Lingering(_) = self.phase {
                // The linger counts from the answer's end.
                self.phase = Phase::Lingering(now + LINGER);
            }
        }
        if !self.output_full() {
            self.process(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let linger = match self.phase {
            Phase::Lingering(until) if self.out.is_empty() => Some(until),
            _ => None,
        };
        let grace = self.drain_until.filter(|_| self.phase == Phase::Open);
        [self.request_deadline(), self.send_deadline(), linger, grace]
            .into_iter()
            .flatten()
            .min()
    }

    fn wants_read(&self) -> bool {
        match self.phase {
            Phase::Open => {
                !self.eof
                    && self.listing.is_none()
                    && !self.output_full()
                    && self.input.len() <= head::MAX_HEAD
            }
            Phase::Lingering(_) => !self.eof,
            Phase::Closing | Phase::Gone => false,
        }
    }

    fn wants_close(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Gone)
    }

    fn wants_close_now(&self) -> bool {
        self.phase == Phase::Gone
    }

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
    }
}

/// The status for a file-system error on a path a client named.
fn status_of(e: &std::io::Error) -> u16 {
    match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::NotADirectory
        | ErrorKind::InvalidInput
        | ErrorKind::IsADirectory
        | ErrorKind::InvalidFilename => 404,
        // The file's own permissions say no: 403. The root layer's refusal
        // of a path leading outside it (a symlink out) is reported as
        // absence, so a client learns nothing of what lies beyond.
        ErrorKind::PermissionDenied if e.raw_os_error() == Some(libc::EACCES) => 403,
        ErrorKind::PermissionDenied => 404,
        _ => match e.raw_os_error() {
            // Beneath-the-root refusals (a symlink out of it) and loops
            // look like absence from outside.
            Some(libc::EXDEV | libc::ELOOP | libc::ENAMETOOLONG) => 404,
            _ => 500,
        },
    }
}

/// `path.gz`, the precompressed sidecar of `path`.
fn sidecar(path: &VPath) -> Option<VPath> {
    let name = path.file_name()?;
    let parent = path.parent()?;
    parent.join(&format!("{name}.gz")).ok()
}

impl std::fmt::Debug for HttpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSession")
            .field("peer", &self.peer)
            .field("phase", &self.phase)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

/// Whether `b` can begin a request: a method's first character, or the
/// empty lines RFC 9112 §2.2 lets a client send before it.
fn starts_a_request(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~\r\n".contains(&b)
}
