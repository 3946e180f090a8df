//! A small blocking FTP client for the integration tests.
//!
//! It speaks just enough RFC 959 (plus EPSV/EPRT from RFC 2428 and the
//! RFC 3659 listing commands) to drive `muse serve ftp` the way real clients
//! do: one control connection, a data connection per transfer set up in
//! passive (PASV, EPSV) or active (PORT, EPRT) mode, multi-line replies.
//!
//! Every read, write and accept is bounded by [`IO_TIMEOUT`], so a server
//! that stops answering fails the test instead of hanging it. Errors are
//! `String`s describing what was sent and what came back; tests turn them
//! into failures that also show the server's stderr.
//!
//! Everything the client receives (replies and downloaded data) is kept in
//! [`Ftp::transcript`], so a test can check that some content (a secret
//! outside the root) never reached the client by any path.

#![allow(dead_code)]

use crate::common::{is_reset, is_timeout, wait_for, IO_TIMEOUT};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// One (possibly multi-line) reply: its code and its full text, every line
/// included, line ends normalised to `\n`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// The text of every line, without the code and its separator on the
    /// first and last lines.
    pub fn lines(&self) -> Vec<&str> {
        self.text.lines().collect()
    }

    /// 1xx.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        (400..600).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text.trim_end())
    }
}

/// How a data connection is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PASV: the server listens, the client connects.
    Pasv,
    /// EPSV: the same with the RFC 2428 reply.
    Epsv,
    /// PORT: the client listens, the server connects.
    Port,
    /// EPRT: the same with the RFC 2428 command.
    Eprt,
}

/// Every mode, for tests that try them all.
pub const MODES: [Mode; 4] = [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt];

/// A data connection being set up: connected already (passive) or waiting
/// for the server to connect (active).
pub enum Data {
    Connected(TcpStream),
    Listening(TcpListener),
}

impl Data {
    /// The data stream; in active mode, waits (bounded) for the server's
    /// connection.
    pub fn into_stream(self) -> Result<TcpStream, String> {
        match self {
            Data::Connected(s) => Ok(s),
            Data::Listening(l) => accept_timeout(&l),
        }
    }
}

/// Accepts one connection on `listener` within [`IO_TIMEOUT`]; the stream has
/// the usual timeouts.
pub fn accept_timeout(listener: &TcpListener) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set_nonblocking on data listener: {e}"))?;
    let mut last_err = None;
    let got = wait_for(IO_TIMEOUT, || match listener.accept() {
        Ok((s, _)) => Some(s),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => {
            last_err = Some(e.to_string());
            None
        }
    });
    let stream = got.ok_or_else(|| {
        format!(
            "the server did not connect to our data listener {} within {IO_TIMEOUT:?}{}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            last_err
                .map(|e| format!(" (accept: {e})"))
                .unwrap_or_default()
        )
    })?;
    configure(&stream)?;
    Ok(stream)
}

/// Blocking mode, read/write timeouts, Nagle off.
pub fn configure(stream: &TcpStream) -> Result<(), String> {
    stream
        .set_nonblocking(false)
        .and_then(|_| stream.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))
}

/// Connects to `addr` with the usual timeouts.
pub fn connect_stream(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    configure(&stream)?;
    Ok(stream)
}

/// Reads until EOF (a reset after some data counts as the end too, and is
/// reported as an error only if nothing at all was read).
pub fn read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "data connection: no EOF within {IO_TIMEOUT:?} (after {} bytes)",
                    out.len()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "data connection: read failed after {} bytes: {e}",
                    out.len()
                ))
            }
        }
    }
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN, so the peer
/// sees an error, not an end of file.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a value
    // of the size we pass.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Parses `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).` (parentheses
/// optional).
pub fn parse_227(text: &str) -> Option<SocketAddr> {
    let body = text.get(4..)?;
    let start = body.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u16> = body[start..]
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .next()?
        .split(',')
        .map(|n| n.parse().ok())
        .collect::<Option<Vec<u16>>>()?;
    if numbers.len() != 6 || numbers.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = Ipv4Addr::new(
        numbers[0] as u8,
        numbers[1] as u8,
        numbers[2] as u8,
        numbers[3] as u8,
    );
    Some(SocketAddr::new(
        IpAddr::V4(ip),
        numbers[4] * 256 + numbers[5],
    ))
}

/// Parses `229 Entering Extended Passive Mode (|||port|)`.
pub fn parse_229(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let rest = &text[open + 1..];
    let delim = rest.chars().next()?;
    let fields: Vec<&str> = rest.split(delim).collect();
    // "", "", "", "port", ")..."
    if fields.len() < 5 {
        return None;
    }
    fields[3].parse().ok()
}

/// `PORT h1,h2,h3,h4,p1,p2` for `addr` (IPv4 only).
pub fn port_command(addr: SocketAddr) -> String {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("PORT needs an IPv4 address, got {addr}");
    };
    let o = ip.octets();
    format!(
        "PORT {},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        addr.port() >> 8,
        addr.port() & 0xff
    )
}

/// `EPRT |1|ip|port|` (or `|2|` for IPv6).
pub fn eprt_command(addr: SocketAddr) -> String {
    let family = if addr.is_ipv4() { 1 } else { 2 };
    format!("EPRT |{family}|{}|{}|", addr.ip(), addr.port())
}

/// The quoted path of a `257 "/path" ...` reply (`""` inside stands for `"`).
pub fn parse_257(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let start = first.find('"')? + 1;
    let mut out = String::new();
    let mut chars = first[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// One control connection.
pub struct Ftp {
    addr: SocketAddr,
    ctrl: TcpStream,
    reader: BufReader<TcpStream>,
    /// Every byte received: replies and downloaded data.
    pub transcript: Vec<u8>,
}

impl Ftp {
    /// Connects and expects a 220 greeting.
    pub fn connect(addr: SocketAddr) -> Result<Ftp, String> {
        let (ftp, greeting) = Ftp::connect_any(addr)?;
        if greeting.code != 220 {
            return Err(format!("greeting: expected 220, got {greeting}"));
        }
        Ok(ftp)
    }

    /// Connects from the local address `from` (a loopback address other
    /// than 127.0.0.1, to look like another client) and expects a 220.
    pub fn connect_from(from: SocketAddr, addr: SocketAddr) -> Result<Ftp, String> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| format!("socket: {e}"))?;
        sock.bind(&from.into())
            .map_err(|e| format!("bind to {from}: {e}"))?;
        sock.connect_timeout(&addr.into(), IO_TIMEOUT)
            .map_err(|e| format!("connect from {from} to {addr}: {e}"))?;
        let ctrl: TcpStream = sock.into();
        configure(&ctrl)?;
        let (ftp, greeting) = Ftp::with_stream(addr, ctrl)?;
        if greeting.code != 220 {
            return Err(format!("greeting: expected 220, got {greeting}"));
        }
        Ok(ftp)
    }

    /// Connects through a pretend balancer: sends `header` (a PROXY
    /// header) first, then expects a 220.
    pub fn connect_proxied(addr: SocketAddr, header: &[u8]) -> Result<Ftp, String> {
        let mut ctrl = connect_stream(addr)?;
        ctrl.write_all(header)
            .map_err(|e| format!("sending the PROXY header: {e}"))?;
        let (ftp, greeting) = Ftp::with_stream(addr, ctrl)?;
        if greeting.code != 220 {
            return Err(format!("greeting: expected 220, got {greeting}"));
        }
        Ok(ftp)
    }

    /// Connects and returns the greeting, whatever its code.
    pub fn connect_any(addr: SocketAddr) -> Result<(Ftp, Reply), String> {
        Ftp::with_stream(addr, connect_stream(addr)?)
    }

    fn with_stream(addr: SocketAddr, ctrl: TcpStream) -> Result<(Ftp, Reply), String> {
        let reader = BufReader::new(
            ctrl.try_clone()
                .map_err(|e| format!("clone control socket: {e}"))?,
        );
        let mut ftp = Ftp {
            addr,
            ctrl,
            reader,
            transcript: Vec::new(),
        };
        let greeting = ftp
            .reply()
            .map_err(|e| format!("reading the greeting: {e}"))?;
        Ok((ftp, greeting))
    }

    /// The control connection (for socket-level tricks).
    pub fn control(&self) -> &TcpStream {
        &self.ctrl
    }

    /// The server's control address.
    pub fn server_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends raw bytes on the control connection, as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.ctrl
            .write_all(bytes)
            .map_err(|e| format!("sending {:?}: {e}", String::from_utf8_lossy(bytes)))
    }

    /// Sends `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes)
    }

    /// Sends `data` as TCP urgent data (MSG_OOB): the last byte is marked
    /// urgent.
    pub fn send_urgent(&mut self, data: &[u8]) -> Result<(), String> {
        // SAFETY: send on a descriptor we own from a buffer of the given size.
        let n = unsafe {
            libc::send(
                self.ctrl.as_raw_fd(),
                data.as_ptr() as *const libc::c_void,
                data.len(),
                libc::MSG_OOB,
            )
        };
        if n != data.len() as isize {
            return Err(format!(
                "send(MSG_OOB) of {} bytes returned {n}: {}",
                data.len(),
                io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Reads one line of a reply (through `\n`), bounded.
    fn read_line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Err(if line.is_empty() {
                "the server closed the control connection".to_string()
            } else {
                format!(
                    "the server closed the control connection in the middle of a line: {:?}",
                    String::from_utf8_lossy(&line)
                )
            }),
            Ok(_) => {
                self.transcript.extend_from_slice(&line);
                if !line.ends_with(b"\n") {
                    return Err(format!(
                        "control connection closed after {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                String::from_utf8(line.clone()).map_err(|_| {
                    format!(
                        "reply line is not UTF-8: {:?}",
                        String::from_utf8_lossy(&line)
                    )
                })
            }
            Err(e) if is_timeout(&e) => Err(format!(
                "no reply within {IO_TIMEOUT:?} (partial line {:?})",
                String::from_utf8_lossy(&line)
            )),
            Err(e) => Err(format!("reading a reply: {e}")),
        }
    }

    /// Reads one reply; a multi-line reply (`123-` ... `123 `) is read to
    /// its last line.
    pub fn reply(&mut self) -> Result<Reply, String> {
        let first = self.read_line()?;
        let code = parse_code(&first)
            .ok_or_else(|| format!("reply line without a 3-digit code: {first:?}"))?;
        let mut text = first.clone();
        text.push('\n');
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let line = self
                    .read_line()
                    .map_err(|e| format!("in multi-line reply {text:?}: {e}"))?;
                text.push_str(&line);
                text.push('\n');
                if line.starts_with(&end) || line == end.trim_end() {
                    break;
                }
            }
        } else if first.as_bytes().get(3).is_some_and(|&b| b != b' ') {
            return Err(format!("malformed reply line {first:?}"));
        }
        Ok(Reply { code, text })
    }

    /// Sends `line` and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Result<Reply, String> {
        self.send_line(line)?;
        self.reply().map_err(|e| format!("{line}: {e}"))
    }

    /// Sends raw bytes (a whole command line, CRLF included) and reads the
    /// reply.
    pub fn cmd_raw(&mut self, bytes: &[u8]) -> Result<Reply, String> {
        self.send_raw(bytes)?;
        self.reply()
            .map_err(|e| format!("{:?}: {e}", String::from_utf8_lossy(bytes)))
    }

    /// Sends `line` and expects reply `code`.
    pub fn expect(&mut self, line: &str, code: u16) -> Result<Reply, String> {
        let reply = self.cmd(line)?;
        if reply.code != code {
            return Err(format!("{line}: expected {code}, got {reply}"));
        }
        Ok(reply)
    }

    /// Sends `line` and expects one of `codes`.
    pub fn expect_one_of(&mut self, line: &str, codes: &[u16]) -> Result<Reply, String> {
        let reply = self.cmd(line)?;
        if !codes.contains(&reply.code) {
            return Err(format!("{line}: expected one of {codes:?}, got {reply}"));
        }
        Ok(reply)
    }

    /// USER then PASS; expects 331 then 230 (or 230 straight after USER).
    pub fn login(&mut self, user: &str, pass: &str) -> Result<(), String> {
        let reply = self.cmd(&format!("USER {user}"))?;
        match reply.code {
            230 => return Ok(()),
            331 => {}
            _ => return Err(format!("USER {user}: expected 331, got {reply}")),
        }
        let reply = self.cmd(&format!("PASS {pass}"))?;
        if reply.code != 230 {
            return Err(format!("PASS for {user}: expected 230, got {reply}"));
        }
        Ok(())
    }

    /// Anonymous login.
    pub fn login_anonymous(&mut self) -> Result<(), String> {
        self.login("anonymous", "test@example.com")
    }

    /// PASV → the advertised address.
    pub fn pasv(&mut self) -> Result<SocketAddr, String> {
        let reply = self.expect("PASV", 227)?;
        parse_227(&reply.text).ok_or_else(|| format!("PASV: cannot parse {reply}"))
    }

    /// EPSV → the advertised port.
    pub fn epsv(&mut self) -> Result<u16, String> {
        let reply = self.expect("EPSV", 229)?;
        parse_229(&reply.text).ok_or_else(|| format!("EPSV: cannot parse {reply}"))
    }

    /// Binds a listener on the control connection's local address (the
    /// loopback), port 0, and sends PORT (or EPRT) for it.
    pub fn port_listener(&mut self, extended: bool) -> Result<TcpListener, String> {
        let ip = self
            .ctrl
            .local_addr()
            .map_err(|e| format!("control connection address: {e}"))?
            .ip();
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind data listener on {ip}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("data listener address: {e}"))?;
        let line = if extended {
            eprt_command(addr)
        } else {
            port_command(addr)
        };
        self.expect(&line, 200)?;
        Ok(listener)
    }

    /// Sets up a data connection in `mode`. Passive modes connect at once
    /// (before the transfer command, as curl and ftplib do).
    pub fn open_data(&mut self, mode: Mode) -> Result<Data, String> {
        match mode {
            Mode::Pasv => {
                let addr = self.pasv()?;
                Ok(Data::Connected(connect_stream(addr).map_err(|e| {
                    format!("passive data connection (PASV): {e}")
                })?))
            }
            Mode::Epsv => {
                let port = self.epsv()?;
                let addr = SocketAddr::new(self.addr.ip(), port);
                Ok(Data::Connected(connect_stream(addr).map_err(|e| {
                    format!("passive data connection (EPSV): {e}")
                })?))
            }
            Mode::Port => Ok(Data::Listening(self.port_listener(false)?)),
            Mode::Eprt => Ok(Data::Listening(self.port_listener(true)?)),
        }
    }

    /// Sets up a data connection, sends `line`, expects a 1xx reply and
    /// returns the data stream with that reply.
    pub fn start_transfer(&mut self, line: &str, mode: Mode) -> Result<(TcpStream, Reply), String> {
        let data = self.open_data(mode)?;
        let reply = self.cmd(line)?;
        if !reply.is_preliminary() {
            return Err(format!("{line} ({mode:?}): expected 150, got {reply}"));
        }
        let stream = data
            .into_stream()
            .map_err(|e| format!("{line} ({mode:?}): {e}"))?;
        Ok((stream, reply))
    }

    /// Reads the final reply of a transfer and expects 226.
    pub fn finish_transfer(&mut self, line: &str) -> Result<Reply, String> {
        let reply = self
            .reply()
            .map_err(|e| format!("{line}: after the data: {e}"))?;
        if reply.code != 226 {
            return Err(format!("{line}: expected 226 after the data, got {reply}"));
        }
        Ok(reply)
    }

    /// A download-style command (RETR, LIST, ...): its data, to EOF.
    pub fn transfer_in(&mut self, line: &str, mode: Mode) -> Result<Vec<u8>, String> {
        let (mut stream, _) = self.start_transfer(line, mode)?;
        let data = read_to_eof(&mut stream).map_err(|e| format!("{line} ({mode:?}): {e}"))?;
        drop(stream);
        self.transcript.extend_from_slice(&data);
        self.finish_transfer(line)?;
        Ok(data)
    }

    /// An upload-style command (STOR, APPE, STOU): sends `data`, closes the
    /// data connection, expects 226. Returns the 1xx and the 226 replies.
    pub fn transfer_out(
        &mut self,
        line: &str,
        data: &[u8],
        mode: Mode,
    ) -> Result<(Reply, Reply), String> {
        let (mut stream, first) = self.start_transfer(line, mode)?;
        stream
            .write_all(data)
            .map_err(|e| format!("{line} ({mode:?}): writing {} bytes: {e}", data.len()))?;
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("{line}: shutdown of the data connection: {e}"))?;
        // Wait for the server to close its side, so the 226 is not read
        // before the server saw all the data (and nothing it sends is lost).
        let _ = read_to_eof(&mut stream);
        drop(stream);
        let last = self.finish_transfer(line)?;
        Ok((first, last))
    }

    pub fn retr(&mut self, path: &str, mode: Mode) -> Result<Vec<u8>, String> {
        self.transfer_in(&format!("RETR {path}"), mode)
    }

    pub fn stor(&mut self, path: &str, data: &[u8], mode: Mode) -> Result<(), String> {
        self.transfer_out(&format!("STOR {path}"), data, mode)
            .map(|_| ())
    }

    pub fn appe(&mut self, path: &str, data: &[u8], mode: Mode) -> Result<(), String> {
        self.transfer_out(&format!("APPE {path}"), data, mode)
            .map(|_| ())
    }

    fn listing(&mut self, verb: &str, path: Option<&str>) -> Result<String, String> {
        let line = match path {
            Some(p) => format!("{verb} {p}"),
            None => verb.to_string(),
        };
        let data = self.transfer_in(&line, Mode::Pasv)?;
        String::from_utf8(data).map_err(|e| format!("{line}: listing is not UTF-8: {e}"))
    }

    pub fn list(&mut self, path: Option<&str>) -> Result<String, String> {
        self.listing("LIST", path)
    }

    pub fn nlst(&mut self, path: Option<&str>) -> Result<String, String> {
        self.listing("NLST", path)
    }

    pub fn mlsd(&mut self, path: Option<&str>) -> Result<String, String> {
        self.listing("MLSD", path)
    }

    /// PWD → the quoted path.
    pub fn pwd(&mut self) -> Result<String, String> {
        let reply = self.expect("PWD", 257)?;
        parse_257(&reply.text).ok_or_else(|| format!("PWD: no quoted path in {reply}"))
    }

    /// NOOP → 200.
    pub fn noop(&mut self) -> Result<(), String> {
        self.expect("NOOP", 200).map(|_| ())
    }

    /// QUIT → 221, then the server closes.
    pub fn quit(mut self) -> Result<(), String> {
        self.expect("QUIT", 221)?;
        self.expect_closed()
    }

    /// Expects EOF (or a reset) on the control connection, with nothing
    /// more sent.
    pub fn expect_closed(&mut self) -> Result<(), String> {
        let mut rest = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => break,
                Err(e) if is_timeout(&e) => {
                    return Err(format!(
                        "control connection not closed within {IO_TIMEOUT:?}{}",
                        if rest.is_empty() {
                            String::new()
                        } else {
                            format!(" (got {:?})", String::from_utf8_lossy(&rest))
                        }
                    ))
                }
                Err(e) => return Err(format!("waiting for the close: {e}")),
            }
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "expected the control connection to close, got {:?} first",
                String::from_utf8_lossy(&rest)
            ))
        }
    }
}

/// The 3-digit code at the start of a reply line.
fn parse_code(line: &str) -> Option<u16> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// RFC 3659 facts of one MLSD/MLST line: lowercase fact names → values, and
/// the name (the part after the first space).
pub fn parse_mlsx_line(line: &str) -> Option<(Vec<(String, String)>, String)> {
    let line = line.trim_start_matches(' ');
    let (facts, name) = line.split_once(' ')?;
    let facts = facts
        .split(';')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k.to_ascii_lowercase(), v.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((facts, name.to_string()))
}

/// One `ls -l` line: its type character, size field and name (everything
/// after the eighth field, spaces included).
pub fn parse_ls_line(line: &str) -> Option<(char, u64, String, Vec<String>)> {
    let mut fields = Vec::new();
    let mut rest = line;
    for _ in 0..8 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        fields.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    // Exactly one separator before the name; names may start with spaces,
    // but ours do not.
    let name = rest.trim_start().to_string();
    if name.is_empty() {
        return None;
    }
    let kind = fields[0].chars().next()?;
    let size = fields[4].parse().ok()?;
    Some((kind, size, name, fields))
}
