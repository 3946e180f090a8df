//! Writing response heads into a connection's output buffer: the status
//! line, header fields and short error bodies, with nothing allocated per
//! response (numbers are formatted into the buffer itself).

use std::io::Write as _;

/// The reason phrase for `code` (RFC 9110 §15).
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// `HTTP/1.1 <code> <reason>`, then `Server` and `Date`: how every response
/// starts. (An HTTP/1.0 client is answered as 1.1, the version we
/// implement, which RFC 9110 §2.5 allows.)
pub fn start(out: &mut Vec<u8>, code: u16, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    number(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\nServer: muse\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

/// One header field line.
pub fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// One header field line with a number for its value.
pub fn field_number(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    number(out, value);
    out.extend_from_slice(b"\r\n");
}

/// `Content-Range: bytes START-END/SIZE` (206).
pub fn content_range(out: &mut Vec<u8>, start: u64, end: u64, size: u64) {
    let _ = write!(out, "Content-Range: bytes {start}-{end}/{size}\r\n");
}

/// How a response is framed for the request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// The connection closes after this response.
    pub close: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
    /// The request was HEAD: the head without the body.
    pub head_only: bool,
}

/// The `Connection` field a response needs, then the empty line that ends
/// the head. An HTTP/1.0 client that asked to keep the connection is told
/// it is kept.
pub fn end(out: &mut Vec<u8>, framing: Framing) {
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete error (or other bodiless-by-nature) response: a short
/// plain-text body saying the status, unless `head_only` (a HEAD request
/// gets the same head without the body). `allow`: the `Allow` value of a
/// 405. `extra`: more header lines, already formatted. Returns the body's
/// length as sent (0 for `head_only`).
pub fn error(
    out: &mut Vec<u8>,
    code: u16,
    date: &[u8],
    framing: Framing,
    allow: Option<&str>,
    extra: &[u8],
) -> u64 {
    let reason = reason(code);
    // "404 Not Found\n"
    let body_len = 3 + 1 + reason.len() + 1;
    start(out, code, date);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    field_number(out, "Content-Length", body_len as u64);
    if let Some(allow) = allow {
        field(out, "Allow", allow.as_bytes());
    }
    out.extend_from_slice(extra);
    end(out, framing);
    if framing.head_only {
        return 0;
    }
    number(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    body_len as u64
}

/// Appends `n` in decimal.
pub fn number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn an_error_response_says_its_length_right() {
        for code in [400, 404, 405, 408, 411, 413, 414, 416, 431, 500, 501, 505] {
            let mut out = Vec::new();
            let framing = Framing {
                close: true,
                http10: false,
                head_only: false,
            };
            error(&mut out, code, b"DATE", framing, None, b"");
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{code}: {text:?}");
            assert!(head.contains("Connection: close"));
            assert!(body.starts_with(&code.to_string()));
        }
    }

    #[test]
    fn the_refusal_says_its_length_right() {
        let text = std::str::from_utf8(super::super::REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
