//! A small HTTP/1.1 client for the integration tests: raw requests out,
//! responses parsed strictly (status line, header fields, a body framed by
//! `Content-Length` or by the end of the connection), every read bounded by
//! [`IO_TIMEOUT`](super::IO_TIMEOUT).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::IO_TIMEOUT;

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response says the connection closes after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [", self.status)?;
        for (n, v) in &self.headers {
            write!(f, "{n}: {v}; ")?;
        }
        write!(f, "] body {} bytes", self.body.len())
    }
}

/// A connection to the server, with the bytes read but not yet parsed.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| format!("socket options: {e}"))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("sending {} bytes: {e}", bytes.len()))
    }

    /// `GET path` with a Host header and `extra` header lines (each ending
    /// in CRLF), then its response.
    pub fn get(&mut self, path: &str, extra: &str) -> Result<Response, String> {
        self.request("GET", path, extra)
    }

    pub fn request(&mut self, method: &str, path: &str, extra: &str) -> Result<Response, String> {
        self.send(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").as_bytes())?;
        self.response(method == "HEAD")
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) => Err(format!(
                "read: {e} (after {} unparsed bytes)",
                self.buf.len()
            )),
        }
    }

    /// Reads one response. `head_only`: it answers a HEAD (no body whatever
    /// Content-Length says).
    pub fn response(&mut self, head_only: bool) -> Result<Response, String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed before a whole response head ({:?})",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8(self.buf[..end - 4].to_vec())
            .map_err(|_| "response head is not UTF-8".to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (version, code) = (parts.next(), parts.next());
        if version != Some("HTTP/1.1") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = code
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("bad header line {l:?}"))?;
            headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
        }
        self.buf.drain(..end);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let bodiless = head_only || status == 304 || (100..200).contains(&status);
        if bodiless {
            return Ok(resp);
        }
        match resp.header("content-length") {
            Some(len) => {
                let len: usize = len
                    .parse()
                    .map_err(|_| format!("bad Content-Length {len:?}"))?;
                while self.buf.len() < len {
                    if self.fill()? == 0 {
                        return Err(format!(
                            "connection closed after {} of {len} body bytes",
                            self.buf.len()
                        ));
                    }
                }
                resp.body = self.buf.drain(..len).collect();
            }
            None => {
                while self.fill()? > 0 {}
                resp.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(resp)
    }

    /// Expects the server to close the connection with nothing more to say.
    pub fn expect_closed(&mut self) -> Result<(), String> {
        loop {
            match self.fill() {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "unexpected bytes before the close: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ))
                    };
                }
                Ok(_) => {}
                Err(e) if e.contains("reset") => return Ok(()),
                Err(e) => return Err(format!("connection not closed: {e}")),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    Conn::connect(addr)?.get(path, "")
}
