//! The request head (RFC 9112 §2–§3, §5–§6): request line and header
//! fields, parsed from the bytes buffered on a connection without copying,
//! with the headers the static-file server acts on already interpreted.
//!
//! Two calls, check-then-parse as in mini-redis's `Frame::check`:
//!
//! 1. [`head_end`] looks only at the bytes that arrived since its last
//!    call and says whether [`parse`] now has something to decide, so a
//!    client trickling one byte at a time costs O(n) in all, not O(n²).
//! 2. [`parse`] reads the head and answers [`Parse::Complete`] with the
//!    head and its length (the body or the next pipelined request starts
//!    there), [`Parse::Partial`], or [`Parse::Error`].
//!
//! The limits are named constants, and a [`HeadError`] carries the status
//! to answer with (h11's `error_status_hint`). After any error the request
//! framing is unknown, so the session sends that status with
//! `Connection: close` and closes: there is no resynchronizing.
//!
//! The grammar is applied strictly where leniency has let requests be
//! smuggled past other servers (obs-fold, whitespace before a colon, bare
//! CR, both `Content-Length` and `Transfer-Encoding`), and leniently only
//! where RFC 9112 asks for it (empty lines before the request line, a bare
//! LF as line end).

use std::fmt;

/// Longest request line, in bytes without its line end: 8 KiB, nginx's
/// `large_client_header_buffers` size, which long query strings fit in.
/// Longer gets 414 (RFC 9112 §3 ¶6).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Largest whole head, request line and fields with every line end: 32 KiB,
/// nginx's default total (four 8 KiB buffers), roomy for big cookies while
/// bounding what one connection may make us buffer. Larger gets 431
/// (RFC 6585 §5).
pub const MAX_HEAD: usize = 32 * 1024;

/// Most header field lines: 100, Apache's `LimitRequestFields`; real
/// browsers send about 20. More gets 431.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of empty lines accepted before the request line. RFC 9112 §2.2
/// asks a server to ignore at least one (clients have sent a stray CRLF
/// after a body); 64 bytes is plenty for that and no more.
pub const MAX_LEADING_EMPTY: usize = 64;

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// The request method (RFC 9110 §9). Methods are case-sensitive: `get` is
/// [`Method::Other`]. A static-file server answers 405 to the known ones it
/// does not allow and 501 to `Other` (RFC 9110 §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Post,
    Put,
    Delete,
    Patch,
    Trace,
    Connect,
    /// Any other valid token.
    Other,
}

impl Method {
    fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"OPTIONS" => Method::Options,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// The protocol version of the request line. `HTTP/1.2` .. `HTTP/1.9` are
/// read as 1.1, the highest minor version we implement (RFC 9110 §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Http10,
    Http11,
}

/// The `Connection` options the server acts on (RFC 9110 §7.6.1), from every
/// `Connection` line, compared case-insensitively; other options are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// `close`: the client wants the connection closed after the response.
    pub close: bool,
    /// `keep-alive`: an HTTP/1.0 client asks to keep it open.
    pub keep_alive: bool,
}

/// How the body is framed when `Transfer-Encoding` is present (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferEncoding {
    /// `chunked` is the final coding (once): the body is chunked.
    Chunked,
    /// Known codings, but `chunked` is not the last: the body's length
    /// cannot be known, so the session answers 400 and closes (§6.3 ¶4).
    Other,
}

/// A parsed request head. Byte fields borrow from the buffer given to
/// [`parse`]; values are trimmed of surrounding whitespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: Method,
    /// The request target, raw (see `target::decode`).
    pub target: &'a [u8],
    pub version: Version,
    /// The `Host` value. Always one for HTTP/1.1 (else 400); at most one
    /// for HTTP/1.0. May be empty (RFC 9110 §7.2).
    pub host: Option<&'a [u8]>,
    pub connection: Connection,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    /// `Accept-Encoding` allows `gzip` (or `x-gzip`) with a non-zero
    /// weight, or `*` with a non-zero weight and gzip not named.
    pub accept_encoding_gzip: bool,
    pub content_length: Option<u64>,
    pub transfer_encoding: Option<TransferEncoding>,
    /// `Expect: 100-continue` (RFC 9110 §10.1.1); other expectations are
    /// ignored.
    pub expect_continue: bool,
}

impl Head<'_> {
    /// Whether the connection stays open after the response, by the
    /// request alone (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive` and no `close`.
    pub fn keep_alive(&self) -> bool {
        !self.connection.close && (self.version == Version::Http11 || self.connection.keep_alive)
    }

    /// Whether a body follows the head (RFC 9112 §6.3): a chunked (or
    /// otherwise transfer-coded) one, or a non-zero `Content-Length`.
    pub fn has_body(&self) -> bool {
        self.transfer_encoding.is_some() || self.content_length.is_some_and(|n| n > 0)
    }
}

/// What [`parse`] made of the buffered bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Not a whole head yet, and nothing wrong so far that the limits see.
    Partial,
    /// A whole head: the first `len` bytes of the buffer (with any empty
    /// lines before it and the empty line that ends it).
    Complete { head: Head<'a>, len: usize },
    /// A bad head: answer [`HeadError::status`] and close.
    Error(HeadError),
}

/// Why a head is refused; each carries the status to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More than [`MAX_LEADING_EMPTY`] bytes of empty lines first. 400.
    TooManyEmptyLines,
    /// Request line longer than [`MAX_REQUEST_LINE`]. 414.
    RequestLineTooLong,
    /// Head larger than [`MAX_HEAD`]. 431.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] field lines. 431.
    TooManyHeaders,
    /// Not `method SP target SP version` with single spaces. 400.
    RequestLine,
    /// The method is not a token. 400.
    Method,
    /// The target is empty or has a space, control or other bad byte. 400.
    Target,
    /// Not `HTTP/d.d`. 400.
    MalformedVersion,
    /// A major version other than 1. 505.
    Version,
    /// A CR not followed by LF. 400 (RFC 9112 §2.2).
    BareCr,
    /// A field line starting with whitespace (obs-fold). 400 (§5.2).
    ObsFold,
    /// Whitespace between a field name and its colon. 400 (§5.1).
    SpaceBeforeColon,
    /// A field line without a colon, or a name that is not a token. 400.
    FieldName,
    /// A control character (NUL, CR, DEL, ...) in a field value. 400.
    FieldValue,
    /// HTTP/1.1 without `Host`. 400 (§3.2).
    MissingHost,
    /// More than one `Host`. 400 (§3.2).
    DuplicateHost,
    /// A `Host` with bytes no host or port has. 400 (§3.2).
    InvalidHost,
    /// A `Content-Length` that is not a decimal number that fits u64. 400.
    ContentLength,
    /// `Content-Length` lines with different values. 400 (RFC 9110 §8.6).
    ContentLengthConflict,
    /// Both `Content-Length` and `Transfer-Encoding`: a smuggling attempt
    /// (§6.3 ¶3). 400.
    LengthAndTransferEncoding,
    /// `Transfer-Encoding` that is empty, has `chunked` twice, or comes in
    /// HTTP/1.0 (§6.1 ¶16). 400.
    TransferEncoding,
    /// A transfer coding we do not know. 501 (§6.1 ¶14).
    UnknownTransferCoding,
    /// A header that must appear once (`Range`, `If-Range`,
    /// `If-None-Match`, `If-Modified-Since`) came twice. 400: which one
    /// the client meant is not ours to guess.
    DuplicateField(&'static str),
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::RequestLineTooLong => 414,
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Version => 505,
            HeadError::UnknownTransferCoding => 501,
            _ => 400,
        }
    }

    /// A short reason, fit for the response body or a log line.
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::TooManyEmptyLines => "too many empty lines before the request",
            HeadError::RequestLineTooLong => "request line too long",
            HeadError::HeadTooLarge => "request header too large",
            HeadError::TooManyHeaders => "too many header fields",
            HeadError::RequestLine => "malformed request line",
            HeadError::Method => "malformed method",
            HeadError::Target => "malformed request target",
            HeadError::MalformedVersion => "malformed HTTP version",
            HeadError::Version => "HTTP version not supported",
            HeadError::BareCr => "CR without LF",
            HeadError::ObsFold => "folded header line",
            HeadError::SpaceBeforeColon => "whitespace before colon in header",
            HeadError::FieldName => "malformed header field",
            HeadError::FieldValue => "control character in header value",
            HeadError::MissingHost => "missing Host header",
            HeadError::DuplicateHost => "more than one Host header",
            HeadError::InvalidHost => "malformed Host header",
            HeadError::ContentLength => "malformed Content-Length",
            HeadError::ContentLengthConflict => "conflicting Content-Length headers",
            HeadError::LengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            HeadError::TransferEncoding => "malformed Transfer-Encoding",
            HeadError::UnknownTransferCoding => "unknown transfer coding",
            HeadError::DuplicateField(name) => name,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::DuplicateField(name) => write!(f, "more than one {name} header"),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for HeadError {}

/// Says whether [`parse`] has something to decide in `buf`, looking only at
/// the bytes from `scanned_from` on. `scanned_from` is the length `buf` had
/// at the last call that returned `None` (0 at first, and again after the
/// caller drops a parsed head from the front of its buffer).
///
/// `Some(n)`: call `parse(&buf[..n])`; it is never `Partial` — the head
/// ends at `n` (`Complete` with `len == n`, or `Error`), or `buf` went over
/// a limit (`Error`). `None`: nothing to decide yet; read more.
///
/// Fed the same bytes, one at a time or all at once, the outcome of
/// `parse(&buf[..n])` at the first `Some(n)` is the outcome of `parse` on
/// all of them (the tests check this for every case).
pub fn head_end(buf: &[u8], scanned_from: usize) -> Option<usize> {
    let start = leading_empty(buf);
    if start > MAX_LEADING_EMPTY {
        return Some(start);
    }
    // The request line is judged once, when its window is first full.
    let window = start + MAX_REQUEST_LINE + 2;
    if buf.len() >= window && scanned_from < window && request_line_too_long(&buf[start..window]) {
        return Some(window);
    }
    let from = scanned_from.min(buf.len()).max(start);
    if let Some(end) = find_end(buf, from) {
        return Some(end);
    }
    (buf.len() > MAX_HEAD).then_some(buf.len())
}

/// Parses the head at the front of `buf` (RFC 9112 §2.1):
///
/// ```text
/// *( [CR] LF )  method SP request-target SP HTTP-version [CR] LF
/// *( field-name ":" OWS field-value OWS [CR] LF )
/// [CR] LF
/// ```
///
/// The limits come first (414, 431), so a head that is too big gets the
/// same answer however it arrives; then the request line; then each field
/// line in order; then the rules between fields (Host, framing). See
/// [`HeadError`] for every refusal. Costs O(`buf.len()`): use [`head_end`]
/// to decide when to call it.
pub fn parse(buf: &[u8]) -> Parse<'_> {
    let start = leading_empty(buf);
    if start > MAX_LEADING_EMPTY {
        return Parse::Error(HeadError::TooManyEmptyLines);
    }
    let window = start + MAX_REQUEST_LINE + 2;
    if buf.len() >= window && request_line_too_long(&buf[start..window]) {
        return Parse::Error(HeadError::RequestLineTooLong);
    }
    match find_end(buf, start) {
        None if buf.len() > MAX_HEAD => Parse::Error(HeadError::HeadTooLarge),
        None => Parse::Partial,
        Some(end) if end > MAX_HEAD => Parse::Error(HeadError::HeadTooLarge),
        Some(end) => match parse_head(&buf[start..end]) {
            Ok(head) => Parse::Complete { head, len: end },
            Err(e) => Parse::Error(e),
        },
    }
}

/// Bytes of empty lines (`CRLF` or bare `LF`) at the front, counting stops
/// past [`MAX_LEADING_EMPTY`].
fn leading_empty(buf: &[u8]) -> usize {
    let mut i = 0;
    while i <= MAX_LEADING_EMPTY {
        match &buf[i..] {
            [LF, ..] => i += 1,
            [CR, LF, ..] => i += 2,
            _ => break,
        }
    }
    i
}

/// `window` holds the first `MAX_REQUEST_LINE + 2` bytes from the request
/// line's start: the line is too long if no LF is there, or the LF is last
/// without a CR before it.
fn request_line_too_long(window: &[u8]) -> bool {
    match window.iter().position(|&b| b == LF) {
        None => true,
        Some(j) => {
            let len = if j > 0 && window[j - 1] == CR {
                j - 1
            } else {
                j
            };
            len > MAX_REQUEST_LINE
        }
    }
}

/// The end of the first empty line after a non-empty one, looking at LFs
/// from `from` on (`from` at least the request line's start, so the empty
/// lines before it never match: the byte there is not an empty line).
fn find_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = buf[i..].iter().position(|&b| b == LF) {
        let lf = i + off;
        let empty =
            (lf >= 1 && buf[lf - 1] == LF) || (lf >= 2 && buf[lf - 1] == CR && buf[lf - 2] == LF);
        if empty {
            return Some(lf + 1);
        }
        i = lf + 1;
    }
    None
}

/// The lines of a head, line ends removed; a CR anywhere but before the
/// LF is an error.
fn lines(head: &[u8]) -> impl Iterator<Item = Result<&[u8], HeadError>> {
    head.split(|&b| b == LF).map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&CR) {
            Err(HeadError::BareCr)
        } else {
            Ok(line)
        }
    })
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A request target byte: visible ASCII, or a byte of a non-ASCII
/// character sent raw (not valid URI syntax, but browsers and curl send
/// them; `target::decode` then requires UTF-8). No space, no control.
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// field-value bytes (RFC 9110 §5.5): visible, space, tab, obs-text.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// Bytes of a host and port (RFC 3986 §3.2.2): reg-name, IP literal, `:`.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'%'
        )
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The non-empty elements of a comma list (RFC 9110 §5.6.1), trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<(Method, &[u8], Version), HeadError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::RequestLine);
    };
    if method.is_empty() || target.is_empty() || version.is_empty() || version.contains(&b' ') {
        return Err(HeadError::RequestLine);
    }
    if !is_token(method) {
        return Err(HeadError::Method);
    }
    if !target.iter().all(|&b| is_target_byte(b)) {
        return Err(HeadError::Target);
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Version::Http10,
                (b'1', _) => Version::Http11,
                _ => return Err(HeadError::Version),
            }
        }
        _ => return Err(HeadError::MalformedVersion),
    };
    Ok((Method::from_token(method), target, version))
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1`, `1.000`.
fn qvalue(s: &[u8]) -> Option<u16> {
    let (int, frac) = match s {
        [d] => (*d, &[][..]),
        [d, b'.', frac @ ..] if frac.len() <= 3 => (*d, frac),
        _ => return None,
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match int {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// One `Accept-Encoding` element: (coding, weight), or `None` if malformed.
fn weighted_coding(element: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = element.split(|&b| b == b';').map(trim_ows);
    let coding = parts.next()?;
    let mut q = 1000;
    for param in parts {
        let eq = param.iter().position(|&b| b == b'=')?;
        if trim_ows(&param[..eq]).eq_ignore_ascii_case(b"q") {
            q = qvalue(trim_ows(&param[eq + 1..]))?;
        }
    }
    Some((coding, q))
}

/// Content-Length = 1*DIGIT (RFC 9110 §8.6), fitting u64.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() {
        return Err(HeadError::ContentLength);
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(HeadError::ContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HeadError::ContentLength)
    })
}

/// The transfer codings we know (RFC 9112 §7, IANA registry); any other
/// is 501. `identity` was withdrawn (RFC 7230) and is unknown too.
fn is_known_coding(coding: &[u8]) -> bool {
    [
        &b"chunked"[..],
        b"gzip",
        b"x-gzip",
        b"deflate",
        b"compress",
        b"x-compress",
    ]
    .iter()
    .any(|k| coding.eq_ignore_ascii_case(k))
}

/// Sets a field that may appear once.
fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    name: &'static str,
) -> Result<(), HeadError> {
    if slot.is_some() {
        return Err(HeadError::DuplicateField(name));
    }
    *slot = Some(value);
    Ok(())
}

/// Parses a whole head (from the request line to the empty line).
fn parse_head(head: &[u8]) -> Result<Head<'_>, HeadError> {
    let mut lines = lines(head);
    let request_line = lines.next().ok_or(HeadError::RequestLine)??;
    let (method, target, version) = parse_request_line(request_line)?;
    let mut h = Head {
        method,
        target,
        version,
        host: None,
        connection: Connection::default(),
        if_modified_since: None,
        if_none_match: None,
        range: None,
        if_range: None,
        accept_encoding_gzip: false,
        content_length: None,
        transfer_encoding: None,
        expect_continue: false,
    };
    let mut hosts = 0usize;
    let mut fields = 0usize;
    // Accept-Encoding: gzip named (allowed?), `*` (allowed?).
    let (mut gzip, mut star) = (None, None);
    // Transfer-Encoding: seen, how many codings, how many `chunked`, is
    // the last one chunked, any unknown coding.
    let mut te = false;
    let (mut codings, mut chunked, mut last_chunked, mut te_unknown) = (0, 0, false, false);

    for line in lines {
        let line = line?;
        if line.is_empty() {
            break;
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(HeadError::TooManyHeaders);
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(HeadError::ObsFold);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::FieldName)?;
        let name = &line[..colon];
        if matches!(name.last(), Some(b' ' | b'\t')) {
            return Err(HeadError::SpaceBeforeColon);
        }
        if !is_token(name) {
            return Err(HeadError::FieldName);
        }
        let value = trim_ows(&line[colon + 1..]);
        if !value.iter().all(|&b| is_value_byte(b)) {
            return Err(HeadError::FieldValue);
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            hosts += 1;
            if !value.iter().all(|&b| is_host_byte(b)) {
                return Err(HeadError::InvalidHost);
            }
            h.host.get_or_insert(value);
        } else if is("connection") {
            for option in list(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    h.connection.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    h.connection.keep_alive = true;
                }
            }
        } else if is("content-length") {
            let n = content_length(value)?;
            if h.content_length.is_some_and(|old| old != n) {
                return Err(HeadError::ContentLengthConflict);
            }
            h.content_length = Some(n);
        } else if is("transfer-encoding") {
            te = true;
            for element in list(value) {
                let coding = trim_ows(element.split(|&b| b == b';').next().unwrap_or(element));
                codings += 1;
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                chunked += usize::from(last_chunked);
                te_unknown |= !is_known_coding(coding);
            }
        } else if is("if-modified-since") {
            set_once(&mut h.if_modified_since, value, "If-Modified-Since")?;
        } else if is("if-none-match") {
            set_once(&mut h.if_none_match, value, "If-None-Match")?;
        } else if is("range") {
            set_once(&mut h.range, value, "Range")?;
        } else if is("if-range") {
            set_once(&mut h.if_range, value, "If-Range")?;
        } else if is("accept-encoding") {
            for (coding, q) in list(value).filter_map(weighted_coding) {
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    gzip = Some(q > 0);
                } else if coding == b"*" {
                    star = Some(q > 0);
                }
            }
        } else if is("expect") {
            h.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    if hosts > 1 {
        return Err(HeadError::DuplicateHost);
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(HeadError::MissingHost);
    }
    h.accept_encoding_gzip = gzip.or(star).unwrap_or(false);
    if te {
        if h.content_length.is_some() {
            return Err(HeadError::LengthAndTransferEncoding);
        }
        if version == Version::Http10 || codings == 0 || chunked > 1 {
            return Err(HeadError::TransferEncoding);
        }
        if te_unknown {
            return Err(HeadError::UnknownTransferCoding);
        }
        h.transfer_encoding = Some(if last_chunked {
            TransferEncoding::Chunked
        } else {
            TransferEncoding::Other
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` as a session would, `next()` bytes at a time:
    /// `head_end` on each new buffer, `parse` at its first `Some`.
    fn fed(input: &[u8], mut next: impl FnMut() -> usize) -> Parse<'_> {
        let (mut len, mut scanned) = (0, 0);
        while len < input.len() {
            len = (len + next().max(1)).min(input.len());
            let buf = &input[..len];
            if let Some(end) = head_end(buf, scanned) {
                assert!(end <= len);
                let p = parse(&buf[..end]);
                assert_ne!(p, Parse::Partial, "head_end said {end} for {input:?}");
                if let Parse::Complete { len, .. } = p {
                    assert_eq!(len, end);
                }
                return p;
            }
            scanned = len;
        }
        Parse::Partial
    }

    /// `parse` of all of `input`, checked against one byte at a time and
    /// against pseudo-random chunks.
    #[track_caller]
    fn outcome(input: &[u8]) -> Parse<'_> {
        let whole = parse(input);
        assert_eq!(fed(input, || 1), whole, "one byte at a time: {input:?}");
        assert_eq!(fed(input, || input.len()), whole, "whole: {input:?}");
        let mut state = 0x9e37_79b9_u32 ^ input.len() as u32;
        let chunks = fed(input, || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % 97) as usize
        });
        assert_eq!(chunks, whole, "chunks: {input:?}");
        whole
    }

    #[track_caller]
    fn head(input: &[u8]) -> Head<'_> {
        match outcome(input) {
            Parse::Complete { head, len } => {
                assert_eq!(len, input.len(), "{input:?}");
                head
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[track_caller]
    fn error(input: &[u8]) -> HeadError {
        match outcome(input) {
            Parse::Error(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn req(fields: &str) -> Vec<u8> {
        format!("GET /x HTTP/1.1\r\nHost: h\r\n{fields}\r\n").into_bytes()
    }

    #[test]
    fn simple_get() {
        let h = head(b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, b"/index.html?q=1");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.host, Some(&b"example.com"[..]));
        assert_eq!(h.connection, Connection::default());
        assert!(h.keep_alive());
        assert!(!h.has_body());
        assert_eq!(
            (h.if_modified_since, h.if_none_match, h.range, h.if_range),
            (None, None, None, None)
        );
        assert!(!h.accept_encoding_gzip && !h.expect_continue);
        assert_eq!((h.content_length, h.transfer_encoding), (None, None));
    }

    #[test]
    fn methods_and_versions() {
        let methods = [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("OPTIONS", Method::Options),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("PATCH", Method::Patch),
            ("TRACE", Method::Trace),
            ("CONNECT", Method::Connect),
            ("get", Method::Other),
            ("PROPFIND", Method::Other),
            ("X-!#$%&'*+-.^_`|~9", Method::Other),
        ];
        for (name, want) in methods {
            let input = format!("{name} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(head(input.as_bytes()).method, want, "{name}");
        }
        let versions = [
            ("HTTP/1.0", Version::Http10),
            ("HTTP/1.1", Version::Http11),
            ("HTTP/1.2", Version::Http11),
            ("HTTP/1.9", Version::Http11),
        ];
        for (text, want) in versions {
            let input = format!("GET / {text}\r\nHost: h\r\n\r\n");
            assert_eq!(head(input.as_bytes()).version, want, "{text}");
        }
        for text in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1", "HTTP/9.9"] {
            let input = format!("GET / {text}\r\nHost: h\r\n\r\n");
            let e = error(input.as_bytes());
            assert_eq!((e, e.status()), (HeadError::Version, 505), "{text}");
        }
        for text in [
            "HTTP/1.10",
            "HTTP/1",
            "http/1.1",
            "HTTP/1.x",
            "HTTP/11",
            "HTTPS/1.1",
            "HTTP/1.1 ",
            "HTTP/1.1\t",
            "",
        ] {
            let input = format!("GET / {text}\r\nHost: h\r\n\r\n");
            assert_eq!(
                error(input.as_bytes()),
                if text.ends_with(' ') || text.is_empty() {
                    HeadError::RequestLine
                } else {
                    HeadError::MalformedVersion
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn request_line_shape() {
        let cases: &[(&[u8], HeadError)] = &[
            (b"GET /\r\nHost: h\r\n\r\n", HeadError::RequestLine),
            (
                b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (
                b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (
                b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (
                b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (
                b"GET\t/\tHTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (
                b"GET / a HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::RequestLine,
            ),
            (b"GET\r\n\r\n", HeadError::RequestLine),
            (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", HeadError::Method),
            (b"G\0T / HTTP/1.1\r\nHost: h\r\n\r\n", HeadError::Method),
            (b"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", HeadError::Target),
            (b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", HeadError::Target),
            (
                b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Target,
            ),
            (b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", HeadError::BareCr),
            (b"GET / HTTP/1.1\rHost: h\r\n\r\n", HeadError::BareCr),
            (b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", HeadError::BareCr),
        ];
        for (input, want) in cases {
            assert_eq!(error(input), *want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(want.status(), 400);
        }
        // Raw UTF-8 in a target passes here (decode checks it).
        assert_eq!(
            head("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes()).target,
            "/caf\u{e9}".as_bytes()
        );
        assert_eq!(head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").target, b"*");
    }

    #[test]
    fn line_ends_and_leading_empty_lines() {
        for input in [
            &b"GET / HTTP/1.1\nHost: h\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET / HTTP/1.1\nHost: h\r\n\n",
            b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\n\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let h = head(input);
            assert_eq!((h.target, h.host), (&b"/"[..], Some(&b"h"[..])));
        }
        let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY / 2);
        many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        head(&many);
        let mut too_many = b"\r\n".repeat(MAX_LEADING_EMPTY / 2 + 1);
        too_many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(error(&too_many), HeadError::TooManyEmptyLines);
        assert_eq!(error(&b"\n".repeat(10_000)), HeadError::TooManyEmptyLines);
        // A lone CR is not an empty line.
        assert_eq!(
            error(b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BareCr
        );
    }

    #[test]
    fn partial_heads() {
        for input in [
            &b""[..],
            b"\r",
            b"\r\n",
            b"\r\n\r\n",
            b"G",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r",
            b"GET / HTTP/1.1\nHost: h\n\r",
        ] {
            assert_eq!(outcome(input), Parse::Partial, "{input:?}");
        }
    }

    #[test]
    fn complete_head_leaves_what_follows() {
        let input = b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n";
        let Parse::Complete { head, len } = parse(input) else {
            panic!()
        };
        assert_eq!(head.target, b"/a");
        assert_eq!(&input[len..], b"GET /b HTTP/1.1\r\n");
        assert_eq!(head_end(input, 0), Some(len));
        assert_eq!(fed(input, || 1), parse(input));
    }

    #[test]
    fn limits() {
        // Request line: exactly MAX_REQUEST_LINE is fine, one more is 414,
        // whether the head is complete or still arriving.
        let line = |len: usize| {
            let mut l = b"GET /".to_vec();
            l.resize(len - " HTTP/1.1".len(), b'a');
            l.extend_from_slice(b" HTTP/1.1");
            assert_eq!(l.len(), len);
            l
        };
        let mut ok = line(MAX_REQUEST_LINE);
        ok.extend_from_slice(b"\r\nHost: h\r\n\r\n");
        assert_eq!(head(&ok).target.len(), MAX_REQUEST_LINE - 13);
        let mut ok_lf = line(MAX_REQUEST_LINE);
        ok_lf.extend_from_slice(b"\nHost: h\n\n");
        head(&ok_lf);
        // (Still arriving, it is judged once MAX_REQUEST_LINE + 2 bytes are in.)
        for end in [
            &b"\r\nHost: h\r\n\r\n"[..],
            b"\nHost: h\n\n",
            b"\r\n",
            b"\r",
            b"x",
        ] {
            let mut long = line(MAX_REQUEST_LINE + 1);
            long.extend_from_slice(end);
            let e = error(&long);
            assert_eq!((e, e.status()), (HeadError::RequestLineTooLong, 414));
        }
        let e = error(&vec![b'A'; MAX_REQUEST_LINE * 3]);
        assert_eq!((e, e.status()), (HeadError::RequestLineTooLong, 414));

        // Whole head: MAX_HEAD bytes is fine, one more is 431.
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        let room = MAX_HEAD - big.len() - "X: \r\n\r\n".len();
        big.extend_from_slice(b"X: ");
        big.resize(big.len() + room, b'v');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(big.len(), MAX_HEAD);
        head(&big);
        let mut over = big.clone();
        over.insert(30, b'v');
        let e = error(&over);
        assert_eq!((e, e.status()), (HeadError::HeadTooLarge, 431));
        // Still arriving and already too big.
        let mut arriving = over[..MAX_HEAD - 4].to_vec();
        assert_eq!(outcome(&arriving), Parse::Partial);
        arriving.extend_from_slice(b"vvvvv");
        assert_eq!(error(&arriving), HeadError::HeadTooLarge);
        let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
        while endless.len() <= MAX_HEAD * 2 {
            endless.extend_from_slice(b"X-Many: yes\r\n");
        }
        assert_eq!(error(&endless), HeadError::HeadTooLarge);

        // Field count.
        let fields = "X: y\r\n".repeat(MAX_HEADERS - 1);
        head(&req(&fields));
        let fields = "X: y\r\n".repeat(MAX_HEADERS);
        let e = error(&req(&fields));
        assert_eq!((e, e.status()), (HeadError::TooManyHeaders, 431));
    }

    #[test]
    fn field_syntax() {
        let cases: &[(&str, HeadError)] = &[
            (" folded: x\r\n", HeadError::ObsFold),
            ("X: a\r\n  continued\r\n", HeadError::ObsFold),
            ("X: a\r\n\tcontinued\r\n", HeadError::ObsFold),
            ("X : a\r\n", HeadError::SpaceBeforeColon),
            ("X\t: a\r\n", HeadError::SpaceBeforeColon),
            ("Content-Length : 5\r\n", HeadError::SpaceBeforeColon),
            ("no colon\r\n", HeadError::FieldName),
            ("nocolon\r\n", HeadError::FieldName),
            (": empty name\r\n", HeadError::FieldName),
            ("X Y: a\r\n", HeadError::FieldName),
            ("X(: a\r\n", HeadError::FieldName),
            ("X\0: a\r\n", HeadError::FieldName),
            ("X: a\0b\r\n", HeadError::FieldValue),
            ("X: a\x7fb\r\n", HeadError::FieldValue),
            ("X: a\x01b\r\n", HeadError::FieldValue),
            ("X: a\rb\r\n", HeadError::BareCr),
            ("X: ab\r\r\n", HeadError::BareCr),
        ];
        for (fields, want) in cases {
            assert_eq!(error(&req(fields)), *want, "{fields:?}");
        }
        // Values: trimmed, tabs and obs-text allowed, empty allowed.
        let mut input = req("Range: \t bytes=0-1 \t\r\nX: ?\r\nY:\r\nZ: a\tb\r\n");
        let at = input.iter().position(|&b| b == b'?').unwrap();
        input[at] = 0xff;
        let h = head(&input);
        assert_eq!(h.range, Some(&b"bytes=0-1"[..]));
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nX: caf\u{e9}\r\n\r\n".as_bytes());
        assert_eq!(h.host, Some(&b"h"[..]));
    }

    #[test]
    fn host_rules() {
        assert_eq!(error(b"GET / HTTP/1.1\r\n\r\n"), HeadError::MissingHost);
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            HeadError::DuplicateHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            HeadError::DuplicateHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HeadError::InvalidHost
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            HeadError::InvalidHost
        );
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!((h.version, h.host), (Version::Http10, None));
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nHOST:\r\n\r\n").host,
            Some(&b""[..])
        );
        for host in [
            "example.com:8080",
            "[::1]:80",
            "127.0.0.1",
            "xn--bcher-kva.example",
        ] {
            let input = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
            assert_eq!(head(input.as_bytes()).host, Some(host.as_bytes()));
        }
    }

    #[test]
    fn connection_and_keep_alive() {
        let cases = [
            ("HTTP/1.1", "", false, false, true),
            ("HTTP/1.1", "Connection: close\r\n", true, false, false),
            ("HTTP/1.1", "Connection: CLOSE\r\n", true, false, false),
            (
                "HTTP/1.1",
                "Connection: Upgrade, Close\r\n",
                true,
                false,
                false,
            ),
            ("HTTP/1.1", "Connection: keep-alive\r\n", false, true, true),
            (
                "HTTP/1.1",
                "Connection: x\r\nConnection: close\r\n",
                true,
                false,
                false,
            ),
            ("HTTP/1.1", "Connection: closed\r\n", false, false, true),
            ("HTTP/1.0", "", false, false, false),
            ("HTTP/1.0", "Connection: Keep-Alive\r\n", false, true, true),
            (
                "HTTP/1.0",
                "Connection: ,, keep-alive ,\r\n",
                false,
                true,
                true,
            ),
            (
                "HTTP/1.0",
                "Connection: keep-alive, close\r\n",
                true,
                true,
                false,
            ),
        ];
        for (version, fields, close, keep, alive) in cases {
            let input = format!("GET / {version}\r\nHost: h\r\n{fields}\r\n");
            let h = head(input.as_bytes());
            assert_eq!(
                (h.connection.close, h.connection.keep_alive, h.keep_alive()),
                (close, keep, alive),
                "{version} {fields:?}"
            );
        }
    }

    #[test]
    fn conditionals_and_range_are_raw_and_single() {
        let input = req(concat!(
            "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT \r\n",
            "if-none-match: \"a\", W/\"b\"\r\n",
            "RANGE: bytes=0-99\r\n",
            "If-Range: \"a\"\r\n",
        ));
        let h = head(&input);
        assert_eq!(
            h.if_modified_since,
            Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..])
        );
        assert_eq!(h.if_none_match, Some(&b"\"a\", W/\"b\""[..]));
        assert_eq!(h.range, Some(&b"bytes=0-99"[..]));
        assert_eq!(h.if_range, Some(&b"\"a\""[..]));
        for (fields, name) in [
            ("Range: bytes=0-1\r\nRange: bytes=2-3\r\n", "Range"),
            ("If-Range: \"a\"\r\nIf-Range: \"a\"\r\n", "If-Range"),
            (
                "If-None-Match: *\r\nIf-None-Match: \"x\"\r\n",
                "If-None-Match",
            ),
            (
                "If-Modified-Since: a\r\nIf-Modified-Since: b\r\n",
                "If-Modified-Since",
            ),
        ] {
            let e = error(&req(fields));
            assert_eq!((e, e.status()), (HeadError::DuplicateField(name), 400));
            assert!(e.to_string().contains(name));
        }
    }

    #[test]
    fn accept_encoding() {
        let cases = [
            ("", false),
            ("Accept-Encoding: gzip\r\n", true),
            ("Accept-Encoding: GZIP\r\n", true),
            ("Accept-Encoding: x-gzip\r\n", true),
            ("Accept-Encoding: br, gzip;q=0.5, deflate\r\n", true),
            ("Accept-Encoding: gzip;q=0\r\n", false),
            ("Accept-Encoding: gzip ; Q=0.000\r\n", false),
            ("Accept-Encoding: gzip;q=0.001\r\n", true),
            ("Accept-Encoding: gzip;q=1.000\r\n", true),
            ("Accept-Encoding: gzip;q=1.5\r\n", false),
            ("Accept-Encoding: gzip;q=2\r\n", false),
            ("Accept-Encoding: gzip;q=0.0000\r\n", false),
            ("Accept-Encoding: gzip;q=\r\n", false),
            ("Accept-Encoding: br\r\n", false),
            ("Accept-Encoding: identity\r\n", false),
            ("Accept-Encoding: *\r\n", true),
            ("Accept-Encoding: *;q=0\r\n", false),
            ("Accept-Encoding: *, gzip;q=0\r\n", false),
            ("Accept-Encoding: gzip;q=0, *\r\n", false),
            ("Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n", true),
            ("Accept-Encoding: gzipped\r\n", false),
        ];
        for (fields, want) in cases {
            assert_eq!(head(&req(fields)).accept_encoding_gzip, want, "{fields:?}");
        }
    }

    #[test]
    fn body_framing() {
        let ok = [
            ("Content-Length: 0\r\n", Some(0), None),
            ("Content-Length: 42\r\n", Some(42), None),
            ("Content-Length: 007\r\n", Some(7), None),
            (
                "Content-Length: 18446744073709551615\r\n",
                Some(u64::MAX),
                None,
            ),
            ("Content-Length: 5\r\ncontent-length: 5\r\n", Some(5), None),
            (
                "Transfer-Encoding: chunked\r\n",
                None,
                Some(TransferEncoding::Chunked),
            ),
            (
                "Transfer-Encoding: gzip, Chunked\r\n",
                None,
                Some(TransferEncoding::Chunked),
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                None,
                Some(TransferEncoding::Chunked),
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                None,
                Some(TransferEncoding::Other),
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                None,
                Some(TransferEncoding::Other),
            ),
        ];
        for (fields, length, coding) in ok {
            let input = req(fields);
            let h = head(&input);
            assert_eq!((h.content_length, h.transfer_encoding), (length, coding));
            assert_eq!(h.has_body(), coding.is_some() || length.unwrap_or(0) > 0);
        }
        let bad: &[(&str, HeadError, u16)] = &[
            ("Content-Length: \r\n", HeadError::ContentLength, 400),
            ("Content-Length: -1\r\n", HeadError::ContentLength, 400),
            ("Content-Length: +1\r\n", HeadError::ContentLength, 400),
            ("Content-Length: 1 2\r\n", HeadError::ContentLength, 400),
            ("Content-Length: 5, 5\r\n", HeadError::ContentLength, 400),
            ("Content-Length: 0x10\r\n", HeadError::ContentLength, 400),
            (
                "Content-Length: 18446744073709551616\r\n",
                HeadError::ContentLength,
                400,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                HeadError::ContentLengthConflict,
                400,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                HeadError::LengthAndTransferEncoding,
                400,
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                HeadError::LengthAndTransferEncoding,
                400,
            ),
            (
                "Transfer-Encoding: foo\r\nContent-Length: 5\r\n",
                HeadError::LengthAndTransferEncoding,
                400,
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                HeadError::TransferEncoding,
                400,
            ),
            ("Transfer-Encoding: \r\n", HeadError::TransferEncoding, 400),
            ("Transfer-Encoding: ,\r\n", HeadError::TransferEncoding, 400),
            (
                "Transfer-Encoding: identity\r\n",
                HeadError::UnknownTransferCoding,
                501,
            ),
            (
                "Transfer-Encoding: foo, chunked\r\n",
                HeadError::UnknownTransferCoding,
                501,
            ),
            (
                "Transfer-Encoding: chunkedx\r\n",
                HeadError::UnknownTransferCoding,
                501,
            ),
        ];
        for (fields, want, status) in bad {
            let e = error(&req(fields));
            assert_eq!((e, e.status()), (*want, *status), "{fields:?}");
        }
        assert_eq!(
            error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::TransferEncoding
        );
    }

    #[test]
    fn expect() {
        assert!(head(&req("Expect: 100-continue\r\n")).expect_continue);
        assert!(head(&req("expect: 100-Continue\r\n")).expect_continue);
        assert!(!head(&req("Expect: 200-ok\r\n")).expect_continue);
        assert!(!head(&req("")).expect_continue);
    }

    #[test]
    fn every_error_has_a_reason_and_a_status() {
        let all = [
            HeadError::TooManyEmptyLines,
            HeadError::RequestLineTooLong,
            HeadError::HeadTooLarge,
            HeadError::TooManyHeaders,
            HeadError::RequestLine,
            HeadError::Method,
            HeadError::Target,
            HeadError::MalformedVersion,
            HeadError::Version,
            HeadError::BareCr,
            HeadError::ObsFold,
            HeadError::SpaceBeforeColon,
            HeadError::FieldName,
            HeadError::FieldValue,
            HeadError::MissingHost,
            HeadError::DuplicateHost,
            HeadError::InvalidHost,
            HeadError::ContentLength,
            HeadError::ContentLengthConflict,
            HeadError::LengthAndTransferEncoding,
            HeadError::TransferEncoding,
            HeadError::UnknownTransferCoding,
            HeadError::DuplicateField("Range"),
        ];
        for e in all {
            assert!(!e.reason().is_empty());
            assert!([400, 414, 431, 501, 505].contains(&e.status()));
            assert!(!e.to_string().contains('\n'));
        }
    }

    /// Mutations of valid heads: random bytes from an alphabet rich in
    /// the characters that matter, inserted, replaced, deleted, truncated.
    /// Whole, byte-at-a-time and chunked feeding always agree (`outcome`
    /// checks that), and nothing panics.
    #[test]
    fn mutated_heads_agree_however_fed() {
        let seeds: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\nHEAD /a%20b?x=1 HTTP/1.0\nConnection: keep-alive\n\n",
            b"GET /f HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nIf-Range: \"x\"\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip;q=0.5\r\n\r\nGET / HTTP/1.1\r\n",
        ];
        let alphabet = b"\r\n\r\n :\t\0\x7f\xffAZaz09/%,;=\"-.HTTP";
        let mut state = 0x1234_5678_u32;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        let (mut complete, mut errors, mut partial) = (0, 0, 0);
        for round in 0..6000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + rand() % 4 {
                let at = rand() % (input.len() + 1);
                let byte = alphabet[rand() % alphabet.len()];
                match rand() % 4 {
                    0 => input.insert(at, byte),
                    1 if at < input.len() => input[at] = byte,
                    2 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.truncate(at),
                }
            }
            match outcome(&input) {
                Parse::Complete { len, .. } => {
                    assert!(len <= input.len());
                    complete += 1;
                }
                Parse::Error(_) => errors += 1,
                Parse::Partial => partial += 1,
            }
        }
        // The mutations reach all three outcomes.
        assert!(complete > 100 && errors > 100 && partial > 100);
    }
}
