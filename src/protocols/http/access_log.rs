//! The access log (`--access-log FILE|-`): one line per response in the
//! combined log format that Apache and nginx write and log tools read:
//!
//! ```text
//! 127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET /a.txt HTTP/1.1" 200 1234 "-" "curl/8.5.0"
//! ```
//!
//! Each line is formatted into a per-thread buffer and written with one
//! `write(2)` to a descriptor opened with `O_APPEND`, so lines from the
//! threads and worker processes of one server never interleave (as nginx
//! does without `buffer=`). It is off by default, so that benchmarks
//! measure serving. Bytes a client chose (the request line, `Referer`,
//! `User-Agent`) are written with `"`, `\` and anything unprintable escaped
//! as `\xHH`, so a request cannot forge a log line.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

/// Where log lines go.
#[derive(Debug)]
pub struct AccessLog {
    file: Option<File>,
}

/// The longest piece of a client's bytes a log line keeps: a request line
/// or header may be kilobytes, and the log is for people.
const MAX_FIELD: usize = 1024;

impl AccessLog {
    /// Opens `path` for appending (created if missing), or stdout for `-`.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        if path == Path::new("-") {
            return Ok(AccessLog { file: None });
        }
        let file = File::options()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))?;
        Ok(AccessLog { file: Some(file) })
    }

    /// Writes the line for one response. `date` is the response's IMF-fixdate.
    pub fn record(&self, ip: IpAddr, date: &[u8], req: &LogRequest, code: u16, bytes: u64) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            format_line(&mut line, ip, date, req, code, bytes);
            let _ = match &self.file {
                Some(f) => (&*f).write_all(&line),
                None => io::stdout().lock().write_all(&line),
            };
        });
    }
}

/// What the access log keeps of a request head until its response is known.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// The request line, without its line end.
    pub line: Vec<u8>,
    /// The `Referer` value.
    pub referer: Vec<u8>,
    /// The `User-Agent` value.
    pub user_agent: Vec<u8>,
}

impl LogRequest {
    /// Picks the request line, `Referer` and `User-Agent` out of a raw head
    /// (already parsed and found well formed).
    pub fn of(raw: &[u8]) -> LogRequest {
        let mut lines = raw
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .skip_while(|l| l.is_empty());
        let mut req = LogRequest {
            line: cap(lines.next().unwrap_or_default()).to_vec(),
            ..LogRequest::default()
        };
        for l in lines {
            let Some(colon) = l.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"referer") {
                req.referer = cap(value).to_vec();
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                req.user_agent = cap(value).to_vec();
            }
        }
        req
    }
}

fn cap(b: &[u8]) -> &[u8] {
    &b[..b.len().min(MAX_FIELD)]
}

/// One combined-format line, newline included.
fn format_line(
    out: &mut Vec<u8>,
    ip: IpAddr,
    date: &[u8],
    req: &LogRequest,
    code: u16,
    bytes: u64,
) {
    let _ = write!(out, "{} - - [", ip.to_canonical());
    clf_date(out, date);
    out.extend_from_slice(b"] \"");
    quoted(out, &req.line);
    let _ = write!(out, "\" {code} {bytes} \"");
    quoted(out, &req.referer);
    out.extend_from_slice(b"\" \"");
    quoted(out, &req.user_agent);
    out.extend_from_slice(b"\"\n");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `06/Nov/1994:08:49:37 +0000`.
fn clf_date(out: &mut Vec<u8>, imf: &[u8]) {
    if imf.len() != super::date::IMF_FIXDATE_LEN {
        out.push(b'-');
        return;
    }
    out.extend_from_slice(&imf[5..7]);
    out.push(b'/');
    out.extend_from_slice(&imf[8..11]);
    out.push(b'/');
    out.extend_from_slice(&imf[12..16]);
    out.push(b':');
    out.extend_from_slice(&imf[17..25]);
    out.extend_from_slice(b" +0000");
}

/// Client bytes inside a quoted field: `-` when empty; `"`, `\` and bytes
/// outside printable ASCII as `\xHH`.
fn quoted(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_empty() {
        out.push(b'-');
        return;
    }
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{c:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_combined_log_line() {
        let raw = b"\r\nGET /a%20b.txt?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nreferer:  http://e/ \r\n\r\n";
        let req = LogRequest::of(raw);
        let mut out = Vec::new();
        format_line(
            &mut out,
            "127.0.0.1".parse().unwrap(),
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            &req,
            200,
            1234,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a%20b.txt?x=1 HTTP/1.1\" 200 1234 \"http://e/\" \"curl/8\"\n"
        );
    }

    #[test]
    fn client_bytes_cannot_forge_a_line() {
        let req = LogRequest {
            line: b"GET /\" 200 0 \"-\" \"-\"\n1.2.3.4 x HTTP/1.1".to_vec(),
            referer: Vec::new(),
            user_agent: "é\\".as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        format_line(&mut out, "::1".parse().unwrap(), b"bad", &req, 400, 0);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.starts_with("::1 - - [-] \"GET /\\x22 200"), "{text}");
        assert!(text.ends_with("\"-\" \"\\xC3\\xA9\\x5C\"\n"), "{text}");
    }

    #[test]
    fn long_fields_are_capped() {
        let mut raw = b"GET /".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 5000));
        raw.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(LogRequest::of(&raw).line.len(), MAX_FIELD);
    }
}
