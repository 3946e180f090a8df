//! The request parser of `kv`: RESP2 multibulk and inline commands, read
//! exactly as Redis 7 reads them (`networking.c`: `processMultibulkBuffer`,
//! `processInlineBuffer`, and `sds.c`: `sdssplitargs`). It never does I/O:
//! the session hands it the bytes it has, and it answers.
//!
//! 1. A request whose first byte is `*` is a multibulk: `*<n>\r\n`, then `n`
//!    times `$<len>\r\n<len bytes>\r\n`. A count of zero or below is an empty
//!    command that Redis skips ([`Parsed::Empty`]).
//! 2. Anything else is an inline command: one line up to LF (a CR before it
//!    dropped), split on blanks with `"double"` and `'single'` quotes. A blank
//!    line is skipped too.
//! 3. [`Parser::parse`] returns [`Parsed::Incomplete`] until a whole command
//!    is there. It keeps its progress, so a buffer that only grows at its end
//!    is examined once: a million-argument multibulk arriving one byte at a
//!    time costs linear work, not quadratic.
//! 4. After [`Parsed::Command`] the arguments are read with [`Parser::arg`] or
//!    [`Parser::args`] (multibulk arguments are slices of the caller's buffer,
//!    nothing is copied), then the caller drops `consumed` bytes and calls
//!    again for the next pipelined command.
//!
//! Redis's quirks are kept on purpose, since clients and tests written
//! against Redis see them:
//! - a line search stops at a NUL byte (Redis uses `strchr`), so a header or
//!   inline line with a NUL before its end never completes and eventually
//!   hits the line limit;
//! - the byte after a header's CR and the two bytes after a bulk are skipped
//!   without looking at them;
//! - numbers are `string2ll` numbers: no `+`, no leading zero, no spaces.
//!
//! The line limit is applied as Redis applies it when the bytes arrive one at
//! a time: a line (with its CR) longer than [`MAX_INLINE`] is refused however
//! the bytes were split, so the outcome never depends on read sizes.

use std::ops::Range;

use super::cmd::parse_i64;
use super::reply::fmt_i64;

/// Longest bulk accepted (Redis's default `proto-max-bulk-len`, 512 MiB).
pub const MAX_BULK: usize = 512 * 1024 * 1024;

/// Largest multibulk count accepted. Redis 6 refused counts above this;
/// Redis 7 lets counts go up to `i32::MAX` and relies on its 1 GiB query
/// buffer limit instead. The Redis 6 bound keeps one command's argument list
/// to a size a session can hold, with the same error words.
pub const MAX_MULTIBULK: usize = 1024 * 1024;

/// Longest inline line, or multibulk header line, without its end
/// (Redis's `PROTO_INLINE_MAX_SIZE`, 64 KiB).
pub const MAX_INLINE: usize = 64 * 1024;

/// Bulks at least this long report [`Parser::bulk_hint`] while they arrive
/// (Redis's `PROTO_MBULK_BIG_ARG`, the size above which Redis reserves the
/// whole bulk in its query buffer at once).
pub const BIG_ARG: usize = 32 * 1024;

/// The most argument slots reserved ahead from a multibulk count; more grow
/// as arguments arrive, so a large count alone allocates nothing (Redis
/// caps its first `argv` at 1024 likewise).
const RESERVE_ARGS: usize = 1024;

/// A request Redis would refuse with `-ERR Protocol error: ...` and then
/// close the connection. `Display` gives the words after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*` not followed by a valid count, or a count above [`MAX_MULTIBULK`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$` not followed by a valid length in `0..=MAX_BULK`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A multibulk argument's header line does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// No end to the `*<n>` line within [`MAX_INLINE`] bytes.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    /// No end to a `$<len>` line within [`MAX_INLINE`] bytes.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// No LF within [`MAX_INLINE`] bytes of an inline command.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// A quote left open, or a closing quote followed by something other
    /// than a blank.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Before `AUTH` (with a password set), a count above
    /// [`MAX_UNAUTHENTICATED_ARGS`].
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// Before `AUTH`, a length above [`MAX_UNAUTHENTICATED_BULK`].
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// The most arguments a command may have before the client authenticated
/// (with a password set): `AUTH`/`HELLO` need few, and a client that has not
/// proved who it is cannot make the server buffer a million of them.
/// Redis's limit (since CVE-2021-32675).
pub const MAX_UNAUTHENTICATED_ARGS: usize = 10;

/// The longest argument before the client authenticated, likewise.
pub const MAX_UNAUTHENTICATED_BULK: usize = 16 * 1024;

impl ProtocolError {
    /// The error's words, without the leading `-ERR ` (as `Display`). A
    /// non-ASCII byte in [`ProtocolError::ExpectedDollar`] shows as the
    /// character of that code point; [`ProtocolError::write_reply`] gives
    /// Redis's raw byte.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Appends the whole error reply exactly as Redis sends it:
    /// `-ERR <words>\r\n`, the byte of `ExpectedDollar` raw, CR or LF in it
    /// turned into a space.
    pub fn write_reply(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"-ERR ");
        match *self {
            ProtocolError::ExpectedDollar(b) => {
                out.extend_from_slice(b"Protocol error: expected '$', got '");
                out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
                out.push(b'\'');
            }
            _ => out.extend_from_slice(self.to_string().as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// What [`Parser::parse`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Parsed {
    /// No whole command yet; call again once more bytes have arrived.
    Incomplete,
    /// A command, whose arguments the parser now gives; it took the first
    /// `consumed` bytes of the buffer.
    Command {
        /// Bytes of the buffer the command took.
        consumed: usize,
    },
    /// Nothing to run (a blank inline line, or a multibulk count of zero or
    /// below); drop `consumed` bytes and go on, as Redis does.
    Empty {
        /// Bytes of the buffer to drop.
        consumed: usize,
    },
}

/// What the parser is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing of the command read yet.
    Start,
    /// Looking for the LF ending an inline command.
    Inline,
    /// Looking for the CR ending `*<n>`.
    Count,
    /// Looking for the CR ending `$<len>`; `left` bulks to go, this one included.
    BulkHeader { left: usize },
    /// Waiting for `len` bytes and the two after them.
    BulkData { left: usize, len: usize },
    /// The last call returned a command; the next one starts afresh.
    Done,
}

/// Where the arguments of the last command live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Multibulk: ranges of the caller's buffer.
    Buffer,
    /// Inline: ranges of the parser's own unquoted bytes.
    Unquoted,
}

/// The resumable state of the command being parsed, and the arguments of
/// the last command parsed.
///
/// Call [`Parser::parse`] with the bytes received so far. On `Incomplete`,
/// call it again later with the same buffer grown at its end; on `Command`,
/// read the arguments, then drop `consumed` bytes from the front and call
/// again; on `Empty`, drop `consumed` bytes and call again. After an error
/// every later call returns the same error.
#[derive(Debug, Clone)]
pub struct Parser {
    step: Step,
    /// Offset of the next unparsed byte of the current command.
    pos: usize,
    /// How far the current line search has looked (an offset).
    scanned: usize,
    /// The current line search met a NUL: like Redis's `strchr`, it will
    /// never find the line's end.
    stuck: bool,
    /// Length of the buffer at the last call.
    seen: usize,
    /// The arguments so far, as ranges of the buffer or of `unquoted`.
    spans: Vec<Range<usize>>,
    source: Source,
    /// The inline command's arguments, unquoted, end to end.
    unquoted: Vec<u8>,
    failed: Option<ProtocolError>,
    /// Apply the limits of a client that has not authenticated.
    unauthenticated: bool,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new()
    }
}

/// The outcome of looking for a line's end.
enum Line {
    /// The end byte is at this offset.
    End(usize),
    /// Not there yet.
    Wait,
    /// The line is over the limit.
    TooLong,
}

impl Parser {
    /// A parser at the start of a connection.
    pub fn new() -> Parser {
        Parser {
            step: Step::Start,
            pos: 0,
            scanned: 0,
            stuck: false,
            seen: 0,
            spans: Vec::new(),
            source: Source::Buffer,
            unquoted: Vec::new(),
            failed: None,
            unauthenticated: false,
        }
    }

    /// Whether the next commands come from a client that must still
    /// authenticate: their counts and lengths are held to
    /// [`MAX_UNAUTHENTICATED_ARGS`] and [`MAX_UNAUTHENTICATED_BULK`].
    pub fn set_unauthenticated(&mut self, on: bool) {
        self.unauthenticated = on;
    }

    /// Parses the next command at the start of `buf`.
    ///
    /// On [`Parsed::Command`] the arguments are available until the next
    /// call, then the caller drops `consumed` bytes from the front of its
    /// buffer. On [`Parsed::Incomplete`] the parser keeps what it has read:
    /// the next call must get the same bytes, possibly with more at the end
    /// (a shorter buffer makes it start the command over). On
    /// [`Parsed::Empty`] the caller drops `consumed` bytes and goes on.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.step == Step::Done || buf.len() < self.seen {
            self.restart();
        }
        self.seen = buf.len();
        let parsed = self.advance(buf);
        match parsed {
            Ok(Parsed::Incomplete) => {}
            Ok(_) => self.step = Step::Done,
            Err(e) => self.failed = Some(e),
        }
        parsed
    }

    /// Number of arguments of the last command (the command name included).
    /// Only meaningful after [`Parsed::Command`].
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the last command had no arguments (never true after
    /// [`Parsed::Command`]).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i` of the last command. `buf` is the buffer given to the
    /// call that returned [`Parsed::Command`], before its bytes were
    /// dropped: multibulk arguments are slices of it, inline arguments are
    /// held by the parser.
    ///
    /// # Panics
    /// If `i >= self.len()`, or `buf` is shorter than the command.
    pub fn arg<'a>(&'a self, buf: &'a [u8], i: usize) -> &'a [u8] {
        let span = self.spans[i].clone();
        match self.source {
            Source::Buffer => &buf[span],
            Source::Unquoted => &self.unquoted[span],
        }
    }

    /// All arguments of the last command, in order (see [`Parser::arg`]).
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        (0..self.spans.len()).map(move |i| self.arg(buf, i))
    }

    /// While [`Parsed::Incomplete`] inside a bulk of at least [`BIG_ARG`]
    /// bytes: how many more bytes the current command needs at least (the
    /// rest of that bulk and the two bytes after it), so the caller can
    /// reserve room for them once.
    pub fn bulk_hint(&self) -> Option<usize> {
        match self.step {
            Step::BulkData { len, .. } if len >= BIG_ARG => {
                Some((self.pos + len + 2).saturating_sub(self.seen))
            }
            _ => None,
        }
    }

    /// Forgets the command in progress, keeping the allocations.
    fn restart(&mut self) {
        self.step = Step::Start;
        self.pos = 0;
        self.scanned = 0;
        self.stuck = false;
        self.spans.clear();
        self.unquoted.clear();
    }

    /// Moves to the next line search, starting at `pos`.
    fn next_line(&mut self, pos: usize, step: Step) {
        self.pos = pos;
        self.scanned = pos;
        self.stuck = false;
        self.step = step;
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        loop {
            match self.step {
                Step::Start => match buf.first() {
                    None => return Ok(Parsed::Incomplete),
                    Some(b'*') => self.next_line(0, Step::Count),
                    Some(_) => self.next_line(0, Step::Inline),
                },
                Step::Inline => {
                    let lf = match self.find_line(buf, b'\n') {
                        Line::End(lf) => lf,
                        Line::Wait => return Ok(Parsed::Incomplete),
                        Line::TooLong => return Err(ProtocolError::TooBigInline),
                    };
                    let mut line = &buf[self.pos..lf];
                    if let [rest @ .., b'\r'] = line {
                        line = rest;
                    }
                    self.source = Source::Unquoted;
                    split_args(line, &mut self.unquoted, &mut self.spans)?;
                    let consumed = lf + 1;
                    return Ok(if self.spans.is_empty() {
                        Parsed::Empty { consumed }
                    } else {
                        Parsed::Command { consumed }
                    });
                }
                Step::Count => {
                    let cr = match self.find_line(buf, b'\r') {
                        Line::End(cr) if cr + 1 < buf.len() => cr,
                        Line::End(_) | Line::Wait => return Ok(Parsed::Incomplete),
                        Line::TooLong => return Err(ProtocolError::TooBigMbulkCount),
                    };
                    let n = parse_i64(&buf[self.pos + 1..cr])
                        .filter(|&n| n <= MAX_MULTIBULK as i64)
                        .ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if n <= 0 {
                        return Ok(Parsed::Empty { consumed: cr + 2 });
                    }
                    if self.unauthenticated && n > MAX_UNAUTHENTICATED_ARGS as i64 {
                        return Err(ProtocolError::UnauthenticatedMultibulkLength);
                    }
                    let left = n as usize;
                    self.source = Source::Buffer;
                    self.spans.reserve(left.min(RESERVE_ARGS));
                    self.next_line(cr + 2, Step::BulkHeader { left });
                }
                Step::BulkHeader { left } => {
                    let cr = match self.find_line(buf, b'\r') {
                        Line::End(cr) if cr + 1 < buf.len() => cr,
                        Line::End(_) | Line::Wait => return Ok(Parsed::Incomplete),
                        Line::TooLong => return Err(ProtocolError::TooBigBulkCount),
                    };
                    let first = buf[self.pos];
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedDollar(first));
                    }
                    let len = parse_i64(&buf[self.pos + 1..cr])
                        .filter(|&len| (0..=MAX_BULK as i64).contains(&len))
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if self.unauthenticated && len > MAX_UNAUTHENTICATED_BULK as i64 {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.pos = cr + 2;
                    self.step = Step::BulkData {
                        left,
                        len: len as usize,
                    };
                }
                Step::BulkData { left, len } => {
                    if buf.len() - self.pos < len + 2 {
                        return Ok(Parsed::Incomplete);
                    }
                    self.spans.push(self.pos..self.pos + len);
                    // Redis skips the two bytes after a bulk unread.
                    let next = self.pos + len + 2;
                    if left == 1 {
                        return Ok(Parsed::Command { consumed: next });
                    }
                    self.next_line(next, Step::BulkHeader { left: left - 1 });
                }
                Step::Done => unreachable!("parse restarts a finished command"),
            }
        }
    }

    /// Looks for `end` in the line starting at `pos`, from where the last
    /// look stopped. Like Redis's `strchr`, the search stops for good at a
    /// NUL. The end must lie within `MAX_INLINE + 1` bytes of the line's
    /// start; once more bytes than that are there without it, the line is
    /// too long, which is what Redis finds when the bytes come one by one.
    fn find_line(&mut self, buf: &[u8], end: u8) -> Line {
        let start = self.pos;
        let to = buf.len().min(start + MAX_INLINE + 1);
        if !self.stuck && self.scanned < to {
            let from = self.scanned;
            match buf[from..to].iter().position(|&b| b == end || b == 0) {
                Some(i) if buf[from + i] == end => {
                    // Found again at once if the caller must wait for the LF.
                    self.scanned = from + i;
                    return Line::End(from + i);
                }
                Some(i) => {
                    self.stuck = true;
                    self.scanned = from + i;
                }
                None => self.scanned = to,
            }
        }
        if buf.len() - start > MAX_INLINE {
            Line::TooLong
        } else {
            Line::Wait
        }
    }
}

/// Whether C's `isspace` holds for `b` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of a hex digit, if `b` is one.
fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line into arguments as Redis's `sdssplitargs` does,
/// appending their bytes to `out` and their ranges of `out` to `spans`.
///
/// Blanks (`isspace`) separate arguments, though inside an unquoted one
/// only space, tab, CR and LF end it. `"..."` takes the escapes `\n \r \t
/// \b \a`, `\xHH`, and `\` before any other byte stands for that byte;
/// `'...'` takes only `\'`. A quote may start mid-argument (`a"b c"` is
/// `ab c`), and a closing quote must be followed by a blank or the end.
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    // The C code reads a NUL past the end; the line itself holds none,
    // since the search for its LF would have stopped there.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let hex_byte = |i: usize| Some(hex_value(at(i))? * 16 + hex_value(at(i + 1))?);
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(());
        }
        let start = out.len();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_double {
                if let (b'\\', b'x', Some(byte)) = (c, at(p + 1), hex_byte(p + 2)) {
                    out.push(byte);
                    p += 3;
                } else {
                    match (c, at(p + 1)) {
                        (b'\\', next) if next != 0 => {
                            p += 1;
                            out.push(match next {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                        }
                        (b'"', next) => {
                            if next != 0 && !is_space(next) {
                                return Err(ProtocolError::UnbalancedQuotes);
                            }
                            done = true;
                        }
                        (0, _) => return Err(ProtocolError::UnbalancedQuotes),
                        _ => out.push(c),
                    }
                }
            } else if in_single {
                match (c, at(p + 1)) {
                    (b'\\', b'\'') => {
                        p += 1;
                        out.push(b'\'');
                    }
                    (b'\'', next) => {
                        if next != 0 && !is_space(next) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        done = true;
                    }
                    (0, _) => return Err(ProtocolError::UnbalancedQuotes),
                    _ => out.push(c),
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        spans.push(start..out.len());
    }
}

/// Appends `args` as a RESP multibulk request (`*<n>\r\n` and one
/// `$<len>\r\n<bytes>\r\n` each), the form [`Parser`] reads back.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = [0u8; 20];
    out.push(b'*');
    out.extend_from_slice(fmt_i64(&mut digits, args.len() as i64));
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(fmt_i64(&mut digits, arg.len() as i64));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a session sees for one command.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Command(Vec<Vec<u8>>),
        Empty,
        Error(ProtocolError),
    }

    /// Feeds `input` as a session does, the bytes arriving in chunks ending
    /// at `cuts` (then the rest), consuming after each command. Returns the
    /// events and whether the parser was left wanting more.
    fn feed(input: &[u8], cuts: &[usize]) -> (Vec<Event>, bool) {
        let mut parser = Parser::new();
        let mut events = Vec::new();
        let mut buf = Vec::new();
        let mut arrived = 0;
        let ends = cuts
            .iter()
            .copied()
            .filter(|&c| c <= input.len())
            .chain([input.len()]);
        for end in ends {
            if end < arrived {
                continue;
            }
            buf.extend_from_slice(&input[arrived..end]);
            arrived = end;
            loop {
                match parser.parse(&buf) {
                    Ok(Parsed::Incomplete) => break,
                    Ok(Parsed::Command { consumed }) => {
                        assert!(consumed <= buf.len());
                        assert!(!parser.is_empty());
                        let args = parser.args(&buf).map(<[u8]>::to_vec).collect();
                        events.push(Event::Command(args));
                        buf.drain(..consumed);
                    }
                    Ok(Parsed::Empty { consumed }) => {
                        assert!(consumed <= buf.len() && consumed > 0);
                        events.push(Event::Empty);
                        buf.drain(..consumed);
                    }
                    Err(e) => {
                        assert_eq!(parser.parse(&buf), Err(e), "errors stay");
                        events.push(Event::Error(e));
                        return (events, false);
                    }
                }
            }
        }
        let wanting = !buf.is_empty();
        (events, wanting)
    }

    /// Feeds `input` whole.
    fn whole(input: &[u8]) -> (Vec<Event>, bool) {
        feed(input, &[])
    }

    /// Feeds `input` one byte at a time.
    fn bytewise(input: &[u8]) -> (Vec<Event>, bool) {
        let cuts: Vec<usize> = (0..input.len()).collect();
        feed(input, &cuts)
    }

    /// The events of `input`, checked to be the same whole and byte-wise.
    fn events(input: &[u8]) -> (Vec<Event>, bool) {
        let got = whole(input);
        assert_eq!(bytewise(input), got, "{:?}", String::from_utf8_lossy(input));
        got
    }

    fn command(args: &[&str]) -> Event {
        Event::Command(args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    /// The single error `input` gives, whole and byte-wise.
    fn error(input: &[u8]) -> ProtocolError {
        match events(input) {
            (ev, false) => match ev.last() {
                Some(Event::Error(e)) => *e,
                _ => panic!("no error: {ev:?}"),
            },
            other => panic!("no error: {other:?}"),
        }
    }

    /// Splits one inline line (with its CRLF added).
    fn split(line: &str) -> Result<Vec<Vec<u8>>, ProtocolError> {
        split_bytes(line.as_bytes())
    }

    fn split_bytes(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\n");
        match events(&input) {
            (ev, false) if ev == [Event::Empty] => Ok(Vec::new()),
            (ev, false) => match &ev[..] {
                [Event::Command(args)] => Ok(args.clone()),
                [Event::Error(e)] => Err(*e),
                _ => panic!("{ev:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn bytes(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn error_words() {
        let cases = [
            (
                ProtocolError::InvalidMultibulkLength,
                "Protocol error: invalid multibulk length",
            ),
            (
                ProtocolError::InvalidBulkLength,
                "Protocol error: invalid bulk length",
            ),
            (
                ProtocolError::ExpectedDollar(b'x'),
                "Protocol error: expected '$', got 'x'",
            ),
            (
                ProtocolError::TooBigMbulkCount,
                "Protocol error: too big mbulk count string",
            ),
            (
                ProtocolError::TooBigBulkCount,
                "Protocol error: too big bulk count string",
            ),
            (
                ProtocolError::TooBigInline,
                "Protocol error: too big inline request",
            ),
            (
                ProtocolError::UnbalancedQuotes,
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (e, words) in cases {
            assert_eq!(e.to_string(), words);
            assert_eq!(e.message(), words);
            let mut out = Vec::new();
            e.write_reply(&mut out);
            assert_eq!(out, format!("-ERR {words}\r\n").as_bytes());
        }
    }

    #[test]
    fn expected_dollar_reply_bytes_as_redis() {
        let reply = |b: u8| {
            let mut out = Vec::new();
            ProtocolError::ExpectedDollar(b).write_reply(&mut out);
            out
        };
        assert_eq!(
            reply(b'\r'),
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        assert_eq!(
            reply(b'\n'),
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        assert_eq!(
            reply(0xff),
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
    }

    #[test]
    fn multibulk_command() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        let mut p = Parser::new();
        assert_eq!(
            p.parse(input),
            Ok(Parsed::Command {
                consumed: input.len()
            })
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p.arg(input, 0), b"ECHO");
        assert_eq!(p.arg(input, 1), b"hello");
        assert_eq!(events(input), (vec![command(&["ECHO", "hello"])], false));
    }

    #[test]
    fn binary_and_empty_bulks() {
        let input = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n";
        let want = Event::Command(vec![b"SET".to_vec(), b"".to_vec(), b"\r\n\0\xff".to_vec()]);
        assert_eq!(events(input), (vec![want], false));
    }

    #[test]
    fn pipelined_commands_and_leftover() {
        let input = b"*1\r\n$4\r\nPING\r\nPING\r\n\r\n*0\r\n*-5\r\nECHO 'a b'\n*1\r\n$4\r\nPI";
        let want = vec![
            command(&["PING"]),
            command(&["PING"]),
            Event::Empty,
            Event::Empty,
            Event::Empty,
            command(&["ECHO", "a b"]),
        ];
        assert_eq!(events(input), (want, true));
    }

    #[test]
    fn empty_multibulk_is_consumed() {
        let mut p = Parser::new();
        assert_eq!(
            p.parse(b"*0\r\nPING\r\n"),
            Ok(Parsed::Empty { consumed: 4 })
        );
        assert_eq!(p.parse(b"*-1\r\n"), Ok(Parsed::Empty { consumed: 5 }));
        assert_eq!(
            p.parse(b"*-9223372036854775808\r\n"),
            Ok(Parsed::Empty { consumed: 23 })
        );
    }

    #[test]
    fn bytes_after_header_cr_and_bulk_are_skipped_unread() {
        // Redis never looks at them.
        assert_eq!(
            events(b"*1\rX$4\rXPINGxy*1\r\n$4\r\nPING\r\n"),
            (vec![command(&["PING"]), command(&["PING"])], false)
        );
    }

    #[test]
    fn incomplete_until_the_last_byte() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let mut p = Parser::new();
        for n in 0..input.len() {
            assert_eq!(p.parse(&input[..n]), Ok(Parsed::Incomplete), "{n}");
        }
        assert_eq!(
            p.parse(input),
            Ok(Parsed::Command {
                consumed: input.len()
            })
        );
        assert_eq!(p.args(input).collect::<Vec<_>>(), [&b"GET"[..], b"k"]);
    }

    #[test]
    fn shorter_buffer_starts_over() {
        let mut p = Parser::new();
        assert_eq!(p.parse(b"*1\r\n$4\r\nPI"), Ok(Parsed::Incomplete));
        assert_eq!(p.parse(b"PING\r\n"), Ok(Parsed::Command { consumed: 6 }));
        assert_eq!(p.arg(b"PING\r\n", 0), b"PING");
    }

    #[test]
    fn invalid_multibulk_length() {
        for input in [
            &b"*\r\n"[..],
            b"*x\r\n",
            b"*01\r\n",
            b"*+1\r\n",
            b"*-0\r\n",
            b"*1 \r\n",
            b"* 1\r\n",
            b"*1\n\r\n",
            b"*1048577\r\n",
            b"*2147483648\r\n",
            b"*99999999999999999999\r\n",
            b"*-\r\n",
        ] {
            assert_eq!(
                error(input),
                ProtocolError::InvalidMultibulkLength,
                "{input:?}"
            );
        }
        assert_eq!(
            events(b"*1048576\r\n$4\r\nPING\r\n"),
            (vec![], true),
            "the largest count is accepted"
        );
    }

    #[test]
    fn invalid_bulk_length() {
        for input in [
            &b"*1\r\n$\r\n"[..],
            b"*1\r\n$-1\r\n",
            b"*1\r\n$04\r\n",
            b"*1\r\n$ 4\r\n",
            b"*1\r\n$4 \r\n",
            b"*1\r\n$+4\r\n",
            b"*1\r\n$536870913\r\n",
            b"*2\r\n$4\r\nECHO\r\n$x\r\n",
        ] {
            assert_eq!(error(input), ProtocolError::InvalidBulkLength, "{input:?}");
        }
        assert_eq!(events(b"*1\r\n$536870912\r\n"), (vec![], true));
    }

    #[test]
    fn expected_dollar() {
        assert_eq!(error(b"*1\r\nx\r\n"), ProtocolError::ExpectedDollar(b'x'));
        assert_eq!(error(b"*1\r\n\r\n"), ProtocolError::ExpectedDollar(b'\r'));
        assert_eq!(error(b"*1\r\n\n\r\n"), ProtocolError::ExpectedDollar(b'\n'));
        assert_eq!(
            error(b"*1\r\n\xff\r\n"),
            ProtocolError::ExpectedDollar(0xff)
        );
        assert_eq!(
            error(b"*2\r\n$4\r\nECHO\r\n:1\r\n"),
            ProtocolError::ExpectedDollar(b':')
        );
        // Only once the header's line is complete, as in Redis.
        assert_eq!(events(b"*1\r\nx"), (vec![], true));
        assert_eq!(events(b"*1\r\nxyz\r"), (vec![], true));
    }

    #[test]
    fn header_lines_at_the_limit() {
        let line = |prefix: &[u8], fill: usize, end: &[u8]| {
            let mut v = prefix.to_vec();
            v.resize(prefix.len() + fill, b'1');
            v.extend_from_slice(end);
            v
        };
        // A CR at offset MAX_INLINE of the line is still found.
        let ok = line(b"*", MAX_INLINE - 1, b"\r\n");
        assert_eq!(error(&ok), ProtocolError::InvalidMultibulkLength);
        let waiting = line(b"*", MAX_INLINE - 1, b"\r");
        assert_eq!(events(&waiting), (vec![], true));
        let long = line(b"*", MAX_INLINE, b"\r\n");
        assert_eq!(error(&long), ProtocolError::TooBigMbulkCount);
        assert_eq!(
            error(&line(b"*", MAX_INLINE, b"")),
            ProtocolError::TooBigMbulkCount
        );
        assert_eq!(events(&line(b"*", MAX_INLINE - 1, b"")), (vec![], true));

        let ok = line(b"*1\r\n$", MAX_INLINE - 1, b"\r\n");
        assert_eq!(error(&ok), ProtocolError::InvalidBulkLength);
        let long = line(b"*1\r\n$", MAX_INLINE, b"\r\n");
        assert_eq!(error(&long), ProtocolError::TooBigBulkCount);
        let long = line(b"*1\r\nx", MAX_INLINE, b"");
        assert_eq!(error(&long), ProtocolError::TooBigBulkCount);
    }

    #[test]
    fn nul_stops_the_line_search_as_strchr_does() {
        assert_eq!(events(b"*1\0\r\n$4\r\nPING\r\n"), (vec![], true));
        assert_eq!(events(b"*1\r\n$4\0\r\nPING\r\n"), (vec![], true));
        assert_eq!(events(b"PI\0NG\r\nPING\r\n"), (vec![], true));
        // ... until the bytes after the line's start pass the limit.
        let mut input = b"*1\0\r\n".to_vec();
        input.resize(MAX_INLINE + 1, b'\r');
        assert_eq!(error(&input), ProtocolError::TooBigMbulkCount);
        let mut input = b"GET a\0\r\n".to_vec();
        input.resize(MAX_INLINE + 1, b'\n');
        assert_eq!(error(&input), ProtocolError::TooBigInline);
        // A NUL inside a bulk is data.
        assert_eq!(
            events(b"*1\r\n$3\r\n\0\0\0\r\n"),
            (vec![Event::Command(vec![vec![0, 0, 0]])], false)
        );
    }

    #[test]
    fn inline_line_at_the_limit() {
        let mut input = vec![b'x'; MAX_INLINE];
        input.push(b'\n');
        assert_eq!(
            events(&input),
            (vec![Event::Command(vec![vec![b'x'; MAX_INLINE]])], false)
        );
        // The CR counts towards the limit, as when Redis reads byte by byte.
        let mut input = vec![b'x'; MAX_INLINE];
        input.extend_from_slice(b"\r\n");
        assert_eq!(error(&input), ProtocolError::TooBigInline);
        let mut input = vec![b'x'; MAX_INLINE + 1];
        input.push(b'\n');
        assert_eq!(error(&input), ProtocolError::TooBigInline);
        assert_eq!(events(&vec![b'x'; MAX_INLINE]), (vec![], true));
    }

    #[test]
    fn inline_line_ends() {
        assert_eq!(events(b"PING\n"), (vec![command(&["PING"])], false));
        assert_eq!(events(b"PING\r\r\n"), (vec![command(&["PING"])], false));
        assert_eq!(
            events(b"ECHO a\rb\r\n"),
            (vec![command(&["ECHO", "a", "b"])], false)
        );
        assert_eq!(events(b"PING\r"), (vec![], true));
        assert_eq!(
            events(b"\r\n\n   \r\n\x0b\x0cPING\r\n"),
            (
                vec![Event::Empty, Event::Empty, Event::Empty, command(&["PING"])],
                false
            )
        );
        let mut p = Parser::new();
        assert_eq!(p.parse(b"\n"), Ok(Parsed::Empty { consumed: 1 }));
        assert_eq!(
            p.parse(b"SET  k\t v \r\nX"),
            Ok(Parsed::Command { consumed: 12 })
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p.arg(b"", 2), b"v");
    }

    #[test]
    fn inline_splitting_as_sdssplitargs() {
        // Each case checked against redis-server 7.0.15 with RPUSH and LRANGE.
        assert_eq!(split("SET k v"), Ok(bytes(&["SET", "k", "v"])));
        assert_eq!(split("  \t a  "), Ok(bytes(&["a"])));
        assert_eq!(split("a\"b c\""), Ok(bytes(&["ab c"])));
        assert_eq!(split("a'b c' d"), Ok(bytes(&["ab c", "d"])));
        assert_eq!(split(r#""\x41\x4g\q""#), Ok(bytes(&["Ax4gq"])));
        assert_eq!(split(r#""\x4""#), Ok(bytes(&["x4"])));
        assert_eq!(
            split_bytes(br#""\xff\x00\xAb""#),
            Ok(vec![vec![0xff, 0x00, 0xab]])
        );
        assert_eq!(
            split(r#""\n\r\t\b\a\\\"\z""#),
            Ok(bytes(&["\n\r\t\x08\x07\\\"z"]))
        );
        assert_eq!(split(r"'a\'b' 'c\\d'"), Ok(bytes(&["a'b", r"c\\d"])));
        assert_eq!(split(r"'\n'"), Ok(bytes(&[r"\n"])));
        assert_eq!(split(r#""" ''"#), Ok(bytes(&["", ""])));
        // Vertical tab and form feed are blanks between arguments, and
        // after a closing quote, but not inside an unquoted argument.
        assert_eq!(split("a\x0bb"), Ok(bytes(&["a\x0bb"])));
        assert_eq!(split("x\x0c"), Ok(bytes(&["x\x0c"])));
        assert_eq!(split("\"a b\"\x0b"), Ok(bytes(&["a b"])));
        assert_eq!(split("\"a\"\x0cx"), Ok(bytes(&["a", "x"])));
        assert_eq!(
            split_bytes(b"ECHO \xff"),
            Ok(vec![b"ECHO".to_vec(), vec![0xff]])
        );
    }

    #[test]
    fn unbalanced_quotes() {
        for line in [
            "ECHO \"abc",
            "ECHO 'abc",
            "ECHO \"a\"b",
            "ECHO 'a'x",
            "ECHO \"\\",
            "ECHO \"\\\"",
            "ECHO 'a\\'",
            "\"",
        ] {
            assert_eq!(
                split(line),
                Err(ProtocolError::UnbalancedQuotes),
                "{line:?}"
            );
        }
    }

    #[test]
    fn bulk_hint_for_large_bulks() {
        let mut buf = b"*2\r\n$3\r\nSET\r\n$40000\r\n".to_vec();
        let mut p = Parser::new();
        assert_eq!(p.parse(&buf), Ok(Parsed::Incomplete));
        assert_eq!(p.bulk_hint(), Some(40002));
        buf.extend_from_slice(&[b'v'; 1000]);
        assert_eq!(p.parse(&buf), Ok(Parsed::Incomplete));
        assert_eq!(p.bulk_hint(), Some(39002));
        buf.extend_from_slice(&[b'v'; 39000]);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            p.parse(&buf),
            Ok(Parsed::Command {
                consumed: buf.len()
            })
        );
        assert_eq!(p.bulk_hint(), None);
        assert_eq!(p.arg(&buf, 1).len(), 40000);

        let mut p = Parser::new();
        assert_eq!(p.parse(b"*1\r\n$100\r\nab"), Ok(Parsed::Incomplete));
        assert_eq!(p.bulk_hint(), None, "small bulks give no hint");
        let mut p = Parser::new();
        assert_eq!(p.parse(b"*1\r\n$536870912\r\n"), Ok(Parsed::Incomplete));
        assert_eq!(p.bulk_hint(), Some(MAX_BULK + 2));
    }

    #[test]
    fn a_huge_count_reserves_little() {
        let mut p = Parser::new();
        assert_eq!(p.parse(b"*1048576\r\n"), Ok(Parsed::Incomplete));
        assert!(p.spans.capacity() <= RESERVE_ARGS);
    }

    #[test]
    fn many_arguments_one_byte_at_a_time_is_linear() {
        // Quadratic re-reading of 1.4 MB one byte at a time would take hours.
        let n = 200_000;
        let mut input = Vec::new();
        let args: Vec<&[u8]> = vec![b"a"; n];
        encode_command(&mut input, &args);
        let mut p = Parser::new();
        for len in 0..input.len() {
            assert_eq!(p.parse(&input[..len]), Ok(Parsed::Incomplete));
        }
        assert_eq!(
            p.parse(&input),
            Ok(Parsed::Command {
                consumed: input.len()
            })
        );
        assert_eq!(p.len(), n);

        // The same for a long inline line and a large bulk.
        let mut line = vec![b'x'; MAX_INLINE - 1];
        line.push(b'\n');
        let mut p = Parser::new();
        for len in 0..line.len() {
            assert_eq!(p.parse(&line[..len]), Ok(Parsed::Incomplete));
        }
        assert_eq!(
            p.parse(&line),
            Ok(Parsed::Command {
                consumed: line.len()
            })
        );
    }

    #[test]
    fn encode_command_form() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        out.clear();
        encode_command(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
    }

    /// Quotes `arg` for an inline line in one of the forms Redis accepts.
    fn quote(arg: &[u8], form: u8) -> Vec<u8> {
        // LF would end the line and NUL would stop the search for its end.
        let raw_ok = !arg.iter().any(|&b| b == b'\n' || b == 0);
        let bare = raw_ok
            && !arg.is_empty()
            && !arg.iter().any(|&b| is_space(b) || b == b'"' || b == b'\'');
        match form % 3 {
            0 if bare => arg.to_vec(),
            1 if raw_ok => {
                let mut q = vec![b'\''];
                for &b in arg {
                    if b == b'\'' {
                        q.push(b'\\');
                    }
                    q.push(b);
                }
                // A backslash before the closing quote would escape it.
                if q.last() == Some(&b'\\') {
                    return quote(arg, 2);
                }
                q.push(b'\'');
                q
            }
            _ => {
                let mut q = vec![b'"'];
                for &b in arg {
                    match b {
                        b'"' | b'\\' => q.extend_from_slice(&[b'\\', b]),
                        b'\n' => q.extend_from_slice(b"\\n"),
                        b'\t' => q.extend_from_slice(b"\\t"),
                        0x20..=0x7e => q.push(b),
                        _ => q.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                    }
                }
                q.push(b'"');
                q
            }
        }
    }

    /// Sorted cut points within `0..=len`.
    fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
        let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
        c.sort_unstable();
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn multibulk_round_trip(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
                1..4,
            ),
            raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut input = Vec::new();
            for args in &commands {
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                encode_command(&mut input, &refs);
            }
            let want: Vec<Event> = commands.iter().cloned().map(Event::Command).collect();
            let (got, wanting) = feed(&input, &cuts(input.len(), &raw_cuts));
            prop_assert_eq!(&got, &want);
            prop_assert!(!wanting);
            prop_assert_eq!(bytewise(&input), (want, false));
        }

        #[test]
        fn inline_round_trip(
            args in prop::collection::vec(
                prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), Just(b'\n'), any::<u8>()], 0..20),
                1..8,
            ),
            forms in prop::collection::vec(any::<u8>(), 8),
            crlf in any::<bool>(),
        ) {
            let mut line = Vec::new();
            for (arg, form) in args.iter().zip(&forms) {
                let mut quoted = quote(arg, *form);
                if line.is_empty() && quoted.first() == Some(&b'*') {
                    // A line that begins with `*` is a multibulk header,
                    // not an inline command: the first word is quoted.
                    quoted = quote(arg, 2);
                }
                if !line.is_empty() {
                    line.push(b' ');
                }
                line.extend(quoted);
            }
            line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            prop_assert_eq!(events(&line), (vec![Event::Command(args)], false));
        }

        #[test]
        fn any_bytes_same_whole_and_bytewise(
            input in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'"'), Just(b'\''),
                    Just(b'\\'), Just(b'0'), Just(b'1'), Just(b'2'), Just(b' '),
                ],
                0..200,
            ),
            raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let got = events(&input);
            prop_assert_eq!(feed(&input, &cuts(input.len(), &raw_cuts)), got);
        }

        #[test]
        fn corrupted_multibulk_same_whole_and_bytewise(
            args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..3),
            raw_cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut input = Vec::new();
            encode_command(&mut input, &refs);
            encode_command(&mut input, &refs);
            for (at, byte) in flips {
                let at = at % input.len();
                input[at] = byte;
            }
            let got = events(&input);
            prop_assert_eq!(feed(&input, &cuts(input.len(), &raw_cuts)), got);
        }
    }
}
