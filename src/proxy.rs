//! The PROXY protocol (`--proxy-protocol`), versions 1 and 2, as HAProxy
//! and nginx's `stream` module send it: a load balancer in front of muse
//! opens each connection with a header naming the real client, and every
//! session, log line and address check must see that client, not the
//! balancer.
//!
//! [`Proxied`] wraps a protocol; each of its sessions ([`ProxySession`])
//! first reads the header, sans-IO like any session, under a deadline
//! (`--header-timeout`, or [`DEFAULT_TIMEOUT`]), then makes the real
//! protocol's session with the client's addresses and hands it everything
//! that came after the header. A connection whose first bytes are not a
//! valid header, or that sends too little in time, is closed without a
//! word: it did not come through the balancer. A `LOCAL` header (v2) or
//! `UNKNOWN` (v1), a balancer's own health check, keeps the connection's
//! own addresses.
//!
//! `--max-connections` is applied at accept, before the header.
//! `--max-per-ip` is applied to the client the header names: once it is
//! read, the session asks its driver to count the connection under that
//! address ([`Request::Readmit`]), and a client over its limit gets the
//! protocol's refusal (FTP's `421`, HTTP's `503`) and is closed. A `LOCAL`
//! connection (the balancer's health check) is not limited.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::session::{
    ChannelEvent, Companion, Computed, ConnInfo, Output, Placement, Protocol, Request, Session,
    Waker,
};

/// How long a client may take to send its header when `--header-timeout`
/// is 0 (the header always has a deadline: an empty connection must not
/// hold a blocking worker).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The v2 header's first twelve bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;

/// The longest v2 header accepted: the fixed 16 bytes and 1 KiB of
/// addresses and TLVs (HAProxy's are a few hundred bytes at most).
const V2_MAX: usize = 16 + 1024;

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not all of the header is there yet.
    Incomplete,
    /// Not a valid header.
    Invalid(&'static str),
    /// A whole header of `len` bytes, naming the client and the address it
    /// reached (`None`: the connection's own, for `LOCAL`/`UNKNOWN`).
    Complete {
        len: usize,
        addrs: Option<(SocketAddr, SocketAddr)>,
    },
}

/// Reads a PROXY header (v1 or v2) at the start of `buf`.
pub fn parse(buf: &[u8]) -> Header {
    if buf.is_empty() {
        return Header::Incomplete;
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Header::Invalid("not a PROXY header");
    }
    parse_v2(buf)
}

fn parse_v1(buf: &[u8]) -> Header {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Header::Invalid("a v1 header longer than 107 bytes");
        }
        let n = buf.len().min(6);
        if buf[..n] != b"PROXY "[..n] {
            return Header::Invalid("not a PROXY header");
        }
        return Header::Incomplete;
    };
    if end + 2 > V1_MAX {
        return Header::Invalid("a v1 header longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Header::Invalid("a v1 header that is not text");
    };
    let words: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Complete { len, addrs: None },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Option<IpAddr> {
                match *family {
                    "TCP4" => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
                    _ => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
                }
            };
            // Ports in decimal without a sign or leading zeros.
            let port = |s: &str| -> Option<u16> {
                (!s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0')))
                .then(|| s.parse().ok())
                .flatten()
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => Header::Complete {
                    len,
                    addrs: Some((SocketAddr::new(s, sp), SocketAddr::new(d, dp))),
                },
                _ => Header::Invalid("a v1 header with bad addresses"),
            }
        }
        _ => Header::Invalid("a malformed v1 header"),
    }
}

fn parse_v2(buf: &[u8]) -> Header {
    if buf.len() < 16 {
        return Header::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Header::Invalid("a v2 header of another version");
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Header::Invalid("a v2 header longer than 1 KiB");
    }
    if buf.len() < len {
        return Header::Incomplete;
    }
    let a = &buf[16..len];
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection.
        0 => Header::Complete { len, addrs: None },
        1 => match buf[13] {
            // TCP over IPv4.
            0x11 if a.len() >= 12 => {
                let s = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                let d = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
                let sp = u16::from_be_bytes([a[8], a[9]]);
                let dp = u16::from_be_bytes([a[10], a[11]]);
                Header::Complete {
                    len,
                    addrs: Some((SocketAddr::new(s.into(), sp), SocketAddr::new(d.into(), dp))),
                }
            }
            // TCP over IPv6.
            0x21 if a.len() >= 36 => {
                let s: [u8; 16] = a[0..16].try_into().expect("16 bytes");
                let d: [u8; 16] = a[16..32].try_into().expect("16 bytes");
                let sp = u16::from_be_bytes([a[32], a[33]]);
                let dp = u16::from_be_bytes([a[34], a[35]]);
                Header::Complete {
                    len,
                    addrs: Some((
                        SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                        SocketAddr::new(Ipv6Addr::from(d).into(), dp),
                    )),
                }
            }
            // Another family (UDP, Unix, unspecified): no address to use.
            0x00 | 0x12 | 0x22 | 0x31 | 0x32 => Header::Complete { len, addrs: None },
            _ => Header::Invalid("a v2 header with bad addresses"),
        },
        _ => Header::Invalid("a v2 header with an unknown command"),
    }
}

/// A protocol behind a PROXY-protocol balancer.
pub struct Proxied {
    inner: Arc<dyn Protocol>,
    timeout: Duration,
    per_ip: Option<usize>,
}

impl Proxied {
    /// `inner`, whose sessions each first read a PROXY header within
    /// `timeout`; at most `per_ip` connections from one real client.
    pub fn new(inner: Box<dyn Protocol>, timeout: Duration, per_ip: Option<usize>) -> Proxied {
        Proxied {
            inner: Arc::from(inner),
            timeout,
            per_ip,
        }
    }
}

impl Protocol for Proxied {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn start(&mut self, placement: Placement) -> std::io::Result<()> {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.start(placement),
            None => Err(std::io::Error::other("started after its first session")),
        }
    }

    fn enter_worker(&self, worker: usize) {
        self.inner.enter_worker(worker);
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(ProxySession {
            protocol: Arc::clone(&self.inner),
            info: *info,
            accepted: now,
            deadline: now + self.timeout,
            head: Vec::new(),
            waker: None,
            inner: None,
            refused: false,
            per_ip: self.per_ip,
            admitting: None,
            request: None,
            over_limit: Vec::new(),
            tls: false,
            draining: false,
        })
    }

    fn refusal(&self) -> &[u8] {
        self.inner.refusal()
    }

    fn stop(&self) {
        self.inner.stop();
    }

    fn wants_waker(&self) -> bool {
        self.inner.wants_waker()
    }

    fn open_service(&self) -> std::io::Result<crate::net::Stream> {
        self.inner.open_service()
    }

    fn companion(&self) -> Option<&dyn Companion> {
        self.inner.companion()
    }

    fn reload(&self) -> Result<Option<String>, String> {
        self.inner.reload()
    }
}

/// A connection through the balancer: its header first, then the real
/// session.
pub struct ProxySession {
    protocol: Arc<dyn Protocol>,
    /// The connection's own addresses, and when it was accepted.
    info: ConnInfo,
    accepted: Instant,
    deadline: Instant,
    /// What came before the header was whole.
    head: Vec<u8>,
    waker: Option<Waker>,
    inner: Option<Box<dyn Session>>,
    refused: bool,
    /// `--max-per-ip`, applied to the real client.
    per_ip: Option<usize>,
    /// The real client's addresses and the bytes after the header, while
    /// the driver counts the connection under that client.
    admitting: Option<(ConnInfo, Vec<u8>)>,
    /// The request for that.
    request: Option<Request>,
    /// The protocol's refusal, for a client over its limit.
    over_limit: Vec<u8>,
    /// The connection speaks TLS: the real session is told when made.
    tls: bool,
    /// The server drains: the real session is told when made.
    draining: bool,
}

impl ProxySession {
    /// Makes the real session for `info`, hands it `rest`.
    fn open(&mut self, info: ConnInfo, rest: &[u8], now: Instant) {
        let mut session = self.protocol.new_session(&info, now);
        if let Some(w) = self.waker.take() {
            session.set_waker(w);
        }
        if self.tls {
            session.handle_tls(now);
        }
        if !rest.is_empty() {
            session.handle_input(rest, now);
        }
        if self.draining {
            session.handle_shutdown(now);
        }
        self.inner = Some(session);
    }

    fn refuse(&mut self, why: &str) {
        if !self.refused {
            crate::log::info(format_args!("refusing {}: {why}", self.info.peer));
        }
        self.refused = true;
        self.head = Vec::new();
    }
}

/// The real session once the header is read; what a session says before.
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr, else $before:expr) => {
        match &mut $self.inner {
            Some($s) => $call,
            None => $before,
        }
    };
}

macro_rules! forward_ref {
    ($self:ident, $s:ident => $call:expr, else $before:expr) => {
        match &$self.inner {
            Some($s) => $call,
            None => $before,
        }
    };
}

impl Session for ProxySession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        if let Some(s) = &mut self.inner {
            return s.handle_input(data, now);
        }
        if self.refused {
            return;
        }
        if let Some((_, rest)) = &mut self.admitting {
            return rest.extend_from_slice(data);
        }
        self.head.extend_from_slice(data);
        match parse(&self.head) {
            Header::Incomplete => {}
            Header::Invalid(why) => self.refuse(why),
            Header::Complete { len, addrs } => {
                let (peer, local) = addrs.unwrap_or((self.info.peer, self.info.local));
                let info = ConnInfo {
                    peer,
                    local,
                    wall: self.info.wall + now.saturating_duration_since(self.accepted),
                };
                let rest = self.head.split_off(len);
                self.head = Vec::new();
                match self.per_ip.filter(|_| addrs.is_some()) {
                    Some(per_ip) => {
                        self.request = Some(Request::Readmit {
                            peer: peer.ip(),
                            per_ip,
                        });
                        self.admitting = Some((info, rest));
                    }
                    None => self.open(info, &rest, now),
                }
            }
        }
    }

    fn handle_admission(&mut self, admitted: bool, now: Instant) {
        let Some((info, rest)) = self.admitting.take() else {
            return forward!(self, s => s.handle_admission(admitted, now), else ());
        };
        if admitted {
            self.open(info, &rest, now);
        } else {
            crate::log::info(format_args!(
                "refusing {} (through {}): over --max-per-ip",
                info.peer, self.info.peer
            ));
            self.refused = true;
            self.over_limit = self.protocol.refusal().to_vec();
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        forward!(self, s => s.handle_eof(now), else self.refuse("closed before its header"));
    }

    fn handle_tls(&mut self, now: Instant) {
        // A TLS listener's connection: the header comes inside the TLS
        // stream, and the real session is told once it exists.
        forward!(self, s => s.handle_tls(now), else self.tls = true);
    }

    fn handle_urgent(&mut self, now: Instant) {
        forward!(self, s => s.handle_urgent(now), else ());
    }

    fn handle_channel(&mut self, event: ChannelEvent, now: Instant) {
        forward!(self, s => s.handle_channel(event, now), else ());
    }

    fn handle_timeout(&mut self, now: Instant) {
        forward!(self, s => s.handle_timeout(now), else if now >= self.deadline {
            self.refuse("no PROXY header in time");
        });
    }

    fn handle_shutdown(&mut self, now: Instant) {
        // Before the header, the drain waits for it (under the header's
        // deadline): the client connected before it could know, and the
        // real session, once made, hears of the drain at once.
        forward!(self, s => s.handle_shutdown(now), else self.draining = true);
    }

    fn handle_shutdown_expired(&mut self, now: Instant) {
        forward!(self, s => s.handle_shutdown_expired(now), else ());
    }

    fn set_waker(&mut self, waker: Waker) {
        forward!(self, s => s.set_waker(waker), else self.waker = Some(waker));
    }

    fn handle_wake(&mut self, now: Instant) {
        forward!(self, s => s.handle_wake(now), else ());
    }

    fn waiting(&self) -> bool {
        forward_ref!(self, s => s.waiting(), else false)
    }

    fn poll_service_output(&self) -> &[u8] {
        forward_ref!(self, s => s.poll_service_output(), else &[])
    }

    fn consume_service_output(&mut self, n: usize, now: Instant) {
        forward!(self, s => s.consume_service_output(n, now), else ());
    }

    fn service_done(&self) -> bool {
        forward_ref!(self, s => s.service_done(), else false)
    }

    fn handle_service_input(&mut self, data: &[u8], now: Instant) {
        forward!(self, s => s.handle_service_input(data, now), else ());
    }

    fn wants_service_input(&self) -> bool {
        forward_ref!(self, s => s.wants_service_input(), else true)
    }

    fn handle_service_eof(&mut self, now: Instant) {
        forward!(self, s => s.handle_service_eof(now), else ());
    }

    fn handle_computed(&mut self, result: Computed, now: Instant) {
        forward!(self, s => s.handle_computed(result, now), else ());
    }

    fn poll_request(&mut self) -> Option<Request> {
        forward!(self, s => s.poll_request(), else self.request.take())
    }

    fn poll_output(&self) -> Output<'_> {
        forward_ref!(self, s => s.poll_output(), else if self.over_limit.is_empty() {
            Output::Nothing
        } else {
            Output::Bytes { data: &self.over_limit, more: false }
        })
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        forward!(self, s => s.consume_output(n, now), else {
            self.over_limit.drain(..n.min(self.over_limit.len()));
        });
    }

    fn poll_timeout(&self) -> Option<Instant> {
        forward_ref!(self, s => s.poll_timeout(), else (!self.refused).then_some(self.deadline))
    }

    fn wants_read(&self) -> bool {
        forward_ref!(self, s => s.wants_read(), else !self.refused)
    }

    fn wants_close(&self) -> bool {
        forward_ref!(self, s => s.wants_close(), else self.refused)
    }

    fn wants_close_now(&self) -> bool {
        forward_ref!(self, s => s.wants_close_now(), else self.refused && self.over_limit.is_empty())
    }

    fn take_finished_requests(&mut self) -> u32 {
        // The header is no request: only the real session's count.
        forward!(self, s => s.take_finished_requests(), else 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlv: usize) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlv) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend(std::iter::repeat_n(0u8, tlv));
        h
    }

    #[test]
    fn version_1_headers() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
        assert_eq!(
            parse(h),
            Header::Complete {
                len: 45,
                addrs: Some((
                    "192.0.2.7:56324".parse().unwrap(),
                    "198.51.100.1:443".parse().unwrap()
                ))
            }
        );
        let h = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
        assert!(matches!(parse(h), Header::Complete { addrs: Some(_), .. }));
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n"),
            Header::Complete {
                len: 24,
                addrs: None
            }
        );
        // Whole or a byte at a time, the same answer.
        let h = b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n";
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Header::Incomplete, "{n}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1000\r\n",
            b"PROXY TCP4 10.0.0.1 ::1 1000 80\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 01000 80\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 70000 80\r\n",
            b"PROXY TCP9 a b 1 2\r\n",
            b"PROXYX",
        ] {
            assert!(matches!(parse(bad), Header::Invalid(_)), "{bad:?}");
        }
        let long = [b'P'; 200];
        assert!(matches!(parse(&long), Header::Invalid(_)));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend([b'1'; 120]);
        assert!(matches!(parse(&long), Header::Invalid(_)));
    }

    #[test]
    fn version_2_headers() {
        let addrs = [192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
        let h = v2(1, 0x11, &addrs, 5);
        assert_eq!(
            parse(&h),
            Header::Complete {
                len: 16 + 12 + 5,
                addrs: Some((
                    "192.0.2.7:56324".parse().unwrap(),
                    "198.51.100.1:443".parse().unwrap()
                ))
            }
        );
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Header::Incomplete, "{n}");
        }
        let mut a6 = [0u8; 36];
        a6[15] = 1;
        a6[31] = 2;
        a6[33] = 80;
        a6[35] = 81;
        assert_eq!(
            parse(&v2(1, 0x21, &a6, 0)),
            Header::Complete {
                len: 52,
                addrs: Some(("[::1]:80".parse().unwrap(), "[::2]:81".parse().unwrap()))
            }
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[], 0)),
            Header::Complete {
                len: 16,
                addrs: None
            }
        );
        assert!(matches!(
            parse(&v2(1, 0x11, &addrs[..8], 0)),
            Header::Invalid(_)
        ));
        assert!(matches!(parse(&v2(2, 0x11, &addrs, 0)), Header::Invalid(_)));
        assert!(matches!(
            parse(&v2(1, 0x11, &addrs, 2000)),
            Header::Invalid(_)
        ));
        let mut wrong = v2(1, 0x11, &addrs, 0);
        wrong[12] = 0x11;
        assert!(matches!(parse(&wrong), Header::Invalid(_)));
    }

    /// A protocol whose sessions echo their peer's address.
    struct Who;
    struct WhoSession(Vec<u8>);
    impl Protocol for Who {
        fn name(&self) -> &'static str {
            "who"
        }
        fn new_session(&self, info: &ConnInfo, _: Instant) -> Box<dyn Session> {
            Box::new(WhoSession(format!("{}|", info.peer).into_bytes()))
        }
        fn refusal(&self) -> &[u8] {
            b"busy\n"
        }
    }
    impl Session for WhoSession {
        fn handle_input(&mut self, data: &[u8], _: Instant) {
            self.0.extend_from_slice(data);
        }
        fn handle_eof(&mut self, _: Instant) {}
        fn poll_output(&self) -> Output<'_> {
            Output::Bytes {
                data: &self.0,
                more: false,
            }
        }
        fn consume_output(&mut self, n: usize, _: Instant) {
            self.0.drain(..n);
        }
        fn wants_read(&self) -> bool {
            true
        }
        fn wants_close(&self) -> bool {
            false
        }
    }

    fn session(t0: Instant) -> Box<dyn Session> {
        let p = Proxied::new(Box::new(Who), Duration::from_secs(5), None);
        let info = ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH,
        };
        p.new_session(&info, t0)
    }

    #[test]
    fn the_session_sees_the_real_client_and_what_followed_the_header() {
        let t0 = Instant::now();
        let mut s = session(t0);
        for b in b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 80\r" {
            s.handle_input(&[*b], t0);
            assert!(s.poll_output().is_nothing());
        }
        s.handle_input(b"\nhel", t0);
        s.handle_input(b"lo", t0);
        assert_eq!(s.poll_output().bytes(), b"192.0.2.7:4000|hello");
        assert!(!s.wants_close());
    }

    #[test]
    fn the_real_client_is_admitted_under_its_own_limit() {
        let t0 = Instant::now();
        let p = Proxied::new(Box::new(Who), Duration::from_secs(5), Some(3));
        let info = ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH,
        };
        let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 80\r\nhi";
        // Admitted: the session starts with what followed the header and
        // what came while the driver counted.
        let mut s = p.new_session(&info, t0);
        s.handle_input(header, t0);
        match s.poll_request() {
            Some(Request::Readmit { peer, per_ip }) => {
                assert_eq!(peer, "192.0.2.7".parse::<IpAddr>().unwrap());
                assert_eq!(per_ip, 3);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.poll_request().is_none());
        s.handle_input(b"!", t0);
        assert!(s.poll_output().is_nothing());
        s.handle_admission(true, t0);
        assert_eq!(s.poll_output().bytes(), b"192.0.2.7:4000|hi!");
        // Refused: the protocol's refusal, then the close.
        let mut s = p.new_session(&info, t0);
        s.handle_input(header, t0);
        assert!(s.poll_request().is_some());
        s.handle_admission(false, t0);
        assert!(!s.wants_read() && s.wants_close());
        assert!(!s.wants_close_now(), "the refusal goes out first");
        assert_eq!(s.poll_output().bytes(), b"busy\n");
        s.consume_output(5, t0);
        assert!(s.wants_close_now());
        // LOCAL (a health check) is not counted again.
        let mut s = p.new_session(&info, t0);
        s.handle_input(b"PROXY UNKNOWN\r\nok", t0);
        assert!(s.poll_request().is_none());
        assert_eq!(s.poll_output().bytes(), b"127.0.0.1:5000|ok");
    }

    #[test]
    fn the_real_sessions_requests_are_counted_and_the_header_is_not() {
        let t0 = Instant::now();
        let echo = crate::protocols::echo::Echo { idle_timeout: None };
        let p = Proxied::new(Box::new(echo), Duration::from_secs(5), None);
        let info = ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:7".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH,
        };
        let mut s = p.new_session(&info, t0);
        s.handle_input(b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 7", t0);
        assert_eq!(s.take_finished_requests(), 0, "a header only");
        // The header's end and a first chunk, then a second chunk.
        s.handle_input(b"\r\nhello", t0);
        s.handle_input(b"again", t0);
        assert_eq!(s.take_finished_requests(), 2);
        assert_eq!(s.take_finished_requests(), 0);
    }

    #[test]
    fn a_drain_waits_for_the_header_of_a_new_connection() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.handle_shutdown(t0);
        assert!(!s.wants_close() && s.wants_read());
        s.handle_input(b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 80\r\nhi", t0);
        assert_eq!(s.poll_output().bytes(), b"192.0.2.7:4000|hi");
    }

    #[test]
    fn no_header_or_a_late_one_is_refused() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.handle_input(b"GET / HTTP/1.1\r\n", t0);
        assert!(s.wants_close_now() && !s.wants_read());
        assert!(s.poll_output().is_nothing());
        let mut s = session(t0);
        s.handle_input(b"PROXY TCP4 1.2.3.4", t0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        s.handle_timeout(t0 + Duration::from_secs(4));
        assert!(!s.wants_close_now());
        s.handle_timeout(t0 + Duration::from_secs(5));
        assert!(s.wants_close_now());
        let mut s = session(t0);
        s.handle_eof(t0);
        assert!(s.wants_close_now());
    }
}
