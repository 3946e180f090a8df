//! The FTP load client: whole sessions (`sessions`: connect, `220`,
//! `USER anonymous`, `PASS`, `TYPE I`, `EPSV`, the data connection, `RETR`,
//! the data to its end, `150`/`125` and `226`, `QUIT`, `221`), or one login
//! and then the same file again and again (`download`).
//!
//! The control connection is [`Link::Main`], the data connection
//! [`Link::Side`] (opened on the port of the `229` reply). Replies are parsed
//! as they arrive (multi-line ones included) and checked code by code; the
//! data is checked byte for byte against the fixture pattern and its length.
//! Any other code or byte is a `mismatch`; a session that moves no byte for
//! [`FTP_STUCK_AFTER`] is `stalled`; after any error the client starts a new
//! session after [`RETRY_BACKOFF`] (and a new permit). Connections the server
//! has closed (the data at its end, the control after `221`) are reset
//! rather than closed, so that no TIME_WAIT is left: thousands of sessions a
//! second over loopback would otherwise use up the ports in seconds.
//!
//! A permit is one session (`download`: the login, after which the client
//! goes on by itself). A session's latency is its whole duration; a
//! download's is the transfer's, from its `EPSV`.
//!
//! Explicit FTPS ([`FtpShape::new`]'s `tls`, the `ftps-sessions` scenario):
//! after the `220`, `AUTH TLS`; at its `234` the client asks the loop to
//! start TLS on the control connection ([`Effect::StartTls`]) and waits for
//! the handshake (`handle_connected` again) before `USER`; after `230`,
//! `PBSZ 0` (`200`) and `PROT P` (`200`), then the dialogue above. The data
//! connection is plain TCP until the transfer's `150` (or `125`): then the
//! client starts TLS on it, as the server, which handshakes once it has
//! answered the transfer command, expects; the data comes over TLS, its end
//! being close_notify or the end of the TCP stream.
//!
//! [`Effect::StartTls`]: super::Effect::StartTls

use std::time::{Duration, Instant};

use super::{
    fixture_expected, fixture_window, Effects, ErrorKind, Link, LoadClient, READ_MAX, RETRY_BACKOFF,
};

/// The longest reply line kept (longer ones are cut: only a line's code
/// and a 229's port are read).
const FTP_LINE_MAX: usize = 512;

/// A client that moves no byte for this long in the middle of a session is
/// stuck: counted `stalled`, and started afresh.
pub const FTP_STUCK_AFTER: Duration = Duration::from_secs(3);

/// What the clients retrieve and how, prepared once.
#[derive(Debug)]
pub struct FtpShape {
    /// Log in once, retrieve again and again; else whole sessions.
    pub download: bool,
    /// The file's size.
    pub size: u64,
    /// [`fixture_window`] for reads of up to [`READ_MAX`].
    pattern: Vec<u8>,
    /// `RETR file\r\n`.
    retr: Vec<u8>,
    /// Explicit FTPS: `AUTH TLS`, `PBSZ 0`, `PROT P`, and TLS on every
    /// connection (see the module docs).
    pub tls: bool,
}

impl FtpShape {
    /// The shape for retrieving `file` of `size` bytes; `None` when the
    /// name does not fit on one command line.
    pub fn new(file: &str, size: u64, download: bool, tls: bool) -> Option<FtpShape> {
        if file.is_empty() || file.contains(['\r', '\n']) {
            return None;
        }
        Some(FtpShape {
            download,
            size,
            pattern: fixture_window(READ_MAX),
            retr: format!("RETR {file}\r\n").into_bytes(),
            tls,
        })
    }
}

/// An FTP command the clients send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    Auth,
    User,
    Pass,
    Pbsz,
    Prot,
    Type,
    Epsv,
    Retr,
    Quit,
}

impl Cmd {
    fn bytes(self, shape: &FtpShape) -> &[u8] {
        match self {
            Cmd::Auth => b"AUTH TLS\r\n",
            Cmd::User => b"USER anonymous\r\n",
            Cmd::Pass => b"PASS bench@\r\n",
            Cmd::Pbsz => b"PBSZ 0\r\n",
            Cmd::Prot => b"PROT P\r\n",
            Cmd::Type => b"TYPE I\r\n",
            Cmd::Epsv => b"EPSV\r\n",
            Cmd::Retr => &shape.retr,
            Cmd::Quit => b"QUIT\r\n",
        }
    }
}

/// FTP replies, parsed as their bytes arrive: a reply is one line
/// `NNN text`, or several, `NNN-text` ... `NNN text`. One line is kept (the
/// last complete reply's last line, until more bytes come).
pub struct Replies {
    line: Box<[u8]>,
    len: usize,
    /// The kept line is complete: the next byte starts a new one.
    complete: bool,
    /// Inside a multi-line reply: its code.
    multi: Option<[u8; 3]>,
}

impl Default for Replies {
    fn default() -> Self {
        Replies::new()
    }
}

impl Replies {
    /// A parser at the start of a connection.
    pub fn new() -> Replies {
        Replies {
            line: vec![0; FTP_LINE_MAX].into_boxed_slice(),
            len: 0,
            complete: false,
            multi: None,
        }
    }

    /// Back to the start of a connection.
    pub fn reset(&mut self) {
        self.len = 0;
        self.complete = false;
        self.multi = None;
    }

    /// The last complete reply's last line, without its line end.
    pub fn line(&self) -> &[u8] {
        let line = &self.line[..self.len];
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// Consumes `data` from `*pos` to the end of the next complete reply and
    /// returns its code; `None` when the data ends first. `Err` when the
    /// bytes are not FTP replies.
    #[allow(clippy::result_unit_err)]
    pub fn next(&mut self, data: &[u8], pos: &mut usize) -> Result<Option<u16>, ()> {
        while *pos < data.len() {
            if self.complete {
                self.len = 0;
                self.complete = false;
            }
            let rest = &data[*pos..];
            let (piece, eol) = match rest.iter().position(|&b| b == b'\n') {
                Some(k) => (&rest[..k], true),
                None => (rest, false),
            };
            *pos += piece.len() + usize::from(eol);
            let take = piece.len().min(FTP_LINE_MAX - self.len);
            self.line[self.len..self.len + take].copy_from_slice(&piece[..take]);
            self.len += take;
            if !eol {
                return Ok(None);
            }
            self.complete = true;
            let line = self.line();
            let code = match line.get(..3) {
                Some(c) if c.iter().all(u8::is_ascii_digit) => [c[0], c[1], c[2]],
                // Free text inside a multi-line reply.
                _ if self.multi.is_some() => continue,
                _ => return Err(()),
            };
            let sep = line.get(3).copied();
            let value = code.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
            match self.multi {
                Some(open) if open == code && sep != Some(b'-') => {
                    self.multi = None;
                    return Ok(Some(value));
                }
                Some(_) => {}
                None => match sep {
                    Some(b'-') => self.multi = Some(code),
                    Some(b' ') | None => return Ok(Some(value)),
                    Some(_) => return Err(()),
                },
            }
        }
        Ok(None)
    }
}

/// The port of a 229 reply: `... (|||PORT|)`, any delimiter (RFC 2428).
pub fn epsv_port(line: &[u8]) -> Option<u16> {
    let open = line.iter().position(|&b| b == b'(')?;
    let rest = &line[open + 1..];
    let d = *rest.first()?;
    if rest.get(1..3)? != [d, d] {
        return None;
    }
    let digits = &rest[3..];
    let end = digits.iter().position(|&b| b == d)?;
    std::str::from_utf8(&digits[..end])
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p != 0)
}

/// Where a client is in its dialogue: the reply it waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// No session; the next starts with a permit.
    Waiting,
    /// After an error, until the instant.
    Backoff(Instant),
    /// The control connection's handshake.
    Connecting,
    /// 220.
    Greeting,
    /// 234 (FTPS).
    Auth,
    /// The control connection's TLS handshake, after the 234 (FTPS).
    Securing,
    /// 331.
    User,
    /// 230.
    Pass,
    /// 200 to `PBSZ 0` (FTPS).
    Pbsz,
    /// 200 to `PROT P` (FTPS).
    Prot,
    /// 200.
    Type,
    /// 229.
    Epsv,
    /// The data connection's handshake (`RETR` goes once it is up).
    DataConnecting,
    /// 150 (or 125), then 226; and the data to its end.
    Retr,
    /// 221.
    Quit,
    /// The 221 came: the session is over.
    Closing,
}

/// One FTP client (see the module docs).
pub struct FtpClient<'a> {
    shape: &'a FtpShape,
    step: Step,
    /// The command being written, and how much of it is out.
    out: Option<Cmd>,
    out_off: usize,
    replies: Replies,
    /// The data connection is open (or opening).
    data_open: bool,
    /// The transfer: the preliminary reply came, the 226 came, the data
    /// ended (all three complete it, in any order); data bytes so far.
    prelim: bool,
    finished: bool,
    data_done: bool,
    got: u64,
    /// When the session (download: the transfer) started, or was due to.
    started: Instant,
    /// The last time a byte moved (for [`FTP_STUCK_AFTER`]).
    moved_at: Instant,
}

impl<'a> FtpClient<'a> {
    /// A client of `shape`, between sessions.
    pub fn new(shape: &'a FtpShape, now: Instant) -> FtpClient<'a> {
        FtpClient {
            shape,
            step: Step::Waiting,
            out: None,
            out_off: 0,
            replies: Replies::new(),
            data_open: false,
            prelim: false,
            finished: false,
            data_done: false,
            got: 0,
            started: now,
            moved_at: now,
        }
    }

    /// Queues a command (the dialogue is lock-step: one at a time).
    fn send(&mut self, cmd: Cmd) {
        self.out = Some(cmd);
        self.out_off = 0;
    }

    /// A new transfer: nothing of it has come yet.
    fn new_transfer(&mut self) {
        self.prelim = false;
        self.finished = false;
        self.data_done = false;
        self.got = 0;
    }

    fn close_data(&mut self, fx: &mut Effects) {
        if self.data_open {
            // The server closed first (the end of the data): a reset spares
            // it a TIME_WAIT that would hold its passive port for a minute.
            fx.close(Link::Side, self.data_done);
            self.data_open = false;
        }
    }

    /// Drops the session (the error is counted already) and waits a pause.
    fn restart(&mut self, now: Instant, fx: &mut Effects) {
        fx.close(Link::Main, false);
        self.close_data(fx);
        self.out = None;
        self.step = Step::Backoff(now + RETRY_BACKOFF);
    }

    /// Counts `kind` and drops the session.
    fn fail(&mut self, kind: ErrorKind, now: Instant, fx: &mut Effects) {
        fx.failed(kind);
        self.restart(now, fx);
    }

    /// Asks for a passive data connection (download: a transfer starts).
    fn epsv(&mut self, now: Instant) {
        if self.shape.download {
            self.started = now;
        }
        self.new_transfer();
        self.send(Cmd::Epsv);
        self.step = Step::Epsv;
    }

    /// The transfer is complete once the 1yz and the 226 have come and the
    /// data has ended: then QUIT (sessions) or the next transfer (download).
    fn transfer_progress(&mut self, now: Instant, fx: &mut Effects) -> Result<(), ErrorKind> {
        if !(self.prelim && self.finished && self.data_done) {
            return Ok(());
        }
        if self.got != self.shape.size {
            return Err(ErrorKind::Mismatch);
        }
        if self.shape.download {
            fx.answered(self.started);
            self.epsv(now);
        } else {
            self.send(Cmd::Quit);
            self.step = Step::Quit;
        }
        Ok(())
    }

    /// The dialogue: what each reply must be and what follows it.
    fn on_reply(&mut self, code: u16, now: Instant, fx: &mut Effects) -> Result<(), ErrorKind> {
        // A reply while a command is still going out answers nothing we sent.
        if self.out.is_some() && self.step != Step::Retr {
            return Err(ErrorKind::Mismatch);
        }
        match (self.step, code) {
            (Step::Greeting, 220) if self.shape.tls => {
                self.send(Cmd::Auth);
                self.step = Step::Auth;
            }
            (Step::Greeting, 220) => {
                self.send(Cmd::User);
                self.step = Step::User;
            }
            (Step::Auth, 234) => {
                // TLS from the byte after this reply's end.
                fx.start_tls(Link::Main);
                self.step = Step::Securing;
            }
            (Step::User, 331) => {
                self.send(Cmd::Pass);
                self.step = Step::Pass;
            }
            (Step::Pass, 230) if self.shape.tls => {
                self.send(Cmd::Pbsz);
                self.step = Step::Pbsz;
            }
            (Step::Pbsz, 200) => {
                self.send(Cmd::Prot);
                self.step = Step::Prot;
            }
            (Step::Pass, 230) | (Step::Prot, 200) => {
                self.send(Cmd::Type);
                self.step = Step::Type;
            }
            (Step::Type, 200) => self.epsv(now),
            (Step::Epsv, 229) => {
                let port = epsv_port(self.replies.line()).ok_or(ErrorKind::Mismatch)?;
                // No TCP_NODELAY: nothing is ever written on it.
                fx.open(Link::Side, Some(port), false);
                self.data_open = true;
                self.step = Step::DataConnecting;
            }
            (Step::Retr, 125 | 150) if !self.prelim => {
                self.prelim = true;
                if self.shape.tls {
                    // The server handshakes on the data connection now.
                    fx.start_tls(Link::Side);
                }
            }
            (Step::Retr, 226) if self.prelim && !self.finished => {
                self.finished = true;
                self.transfer_progress(now, fx)?;
            }
            (Step::Quit, 221) => {
                fx.answered(self.started);
                self.step = Step::Closing;
            }
            _ => return Err(ErrorKind::Mismatch),
        }
        Ok(())
    }

    fn control_input(
        &mut self,
        data: &[u8],
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), ErrorKind> {
        let mut pos = 0;
        // Anything after the 221 is of no interest; nothing may follow a
        // 234 before the handshake.
        while !matches!(self.step, Step::Closing | Step::Securing) {
            let Some(code) = self
                .replies
                .next(data, &mut pos)
                .map_err(|()| ErrorKind::Mismatch)?
            else {
                break;
            };
            self.on_reply(code, now, fx)?;
        }
        if self.step == Step::Securing && pos < data.len() {
            return Err(ErrorKind::Mismatch);
        }
        if self.step == Step::Closing {
            // The 221 came: the session is over, whether or not the server
            // has closed its side yet. The control connection is reset
            // rather than closed, as the data connection is: a client
            // closing first would hold its port in TIME_WAIT for a minute.
            fx.close(Link::Main, true);
            self.close_data(fx);
            self.step = Step::Waiting;
        }
        Ok(())
    }

    fn data_input(&mut self, data: &[u8], fx: &mut Effects) -> Result<(), ErrorKind> {
        let n = data.len();
        if self.got + n as u64 > self.shape.size
            || data != fixture_expected(&self.shape.pattern, self.got, n)
        {
            return Err(ErrorKind::Mismatch);
        }
        self.got += n as u64;
        fx.received(n);
        Ok(())
    }

    /// The data connection has ended: the file must be whole.
    fn data_over(&mut self, now: Instant, fx: &mut Effects) -> Result<(), ErrorKind> {
        if self.got != self.shape.size {
            return Err(ErrorKind::Mismatch);
        }
        self.data_done = true;
        self.close_data(fx);
        self.transfer_progress(now, fx)
    }

    /// In the middle of a session's dialogue (not connecting).
    fn talking(&self) -> bool {
        !matches!(
            self.step,
            Step::Waiting
                | Step::Backoff(_)
                | Step::Connecting
                | Step::Securing
                | Step::DataConnecting
        )
    }
}

impl LoadClient for FtpClient<'_> {
    fn handle_permit(&mut self, sent: Instant, now: Instant, fx: &mut Effects) {
        if self.step != Step::Waiting {
            return;
        }
        self.started = sent;
        self.moved_at = now;
        self.replies.reset();
        self.new_transfer();
        // No TCP_NODELAY: the dialogue is lock-step, each command going out
        // after the reply that acknowledged the one before, so Nagle never
        // holds one back (and clients such as ftplib do not set it either).
        fx.open(Link::Main, None, false);
        self.step = Step::Connecting;
    }

    fn handle_connected(&mut self, link: Link, now: Instant, _fx: &mut Effects) {
        match (link, self.step) {
            (Link::Main, Step::Connecting) => {
                self.step = Step::Greeting;
                self.moved_at = now;
            }
            (Link::Main, Step::Securing) => {
                self.send(Cmd::User);
                self.step = Step::User;
                self.moved_at = now;
            }
            // The data connection's TLS is up: the data follows.
            (Link::Side, Step::Retr) => self.moved_at = now,
            (Link::Side, Step::DataConnecting) => {
                self.step = Step::Retr;
                self.send(Cmd::Retr);
            }
            _ => {}
        }
    }

    fn handle_input(&mut self, link: Link, data: &[u8], now: Instant, fx: &mut Effects) {
        if !self.talking() {
            return;
        }
        self.moved_at = now;
        let done = match link {
            Link::Main => self.control_input(data, now, fx),
            Link::Side => self.data_input(data, fx),
        };
        if let Err(kind) = done {
            self.fail(kind, now, fx);
        }
    }

    fn handle_eof(&mut self, link: Link, now: Instant, fx: &mut Effects) {
        if !self.talking() {
            return;
        }
        let done = match link {
            // The server hung up on a session that was not over.
            Link::Main => Err(ErrorKind::Closed),
            Link::Side => self.data_over(now, fx),
        };
        if let Err(kind) = done {
            self.fail(kind, now, fx);
        }
    }

    fn handle_failure(&mut self, link: Link, _kind: ErrorKind, now: Instant, fx: &mut Effects) {
        if link == Link::Side {
            self.data_open = false;
        }
        self.restart(now, fx);
    }

    fn handle_timeout(&mut self, now: Instant, fx: &mut Effects) {
        match self.step {
            Step::Backoff(until) if now >= until => self.step = Step::Waiting,
            _ if self.talking()
                && now.saturating_duration_since(self.moved_at) >= FTP_STUCK_AFTER =>
            {
                self.fail(ErrorKind::Stalled, now, fx);
            }
            _ => {}
        }
    }

    fn poll_output(&self, link: Link) -> &[u8] {
        match (link, self.out) {
            (Link::Main, Some(cmd)) => &cmd.bytes(self.shape)[self.out_off..],
            _ => &[],
        }
    }

    fn consume_output(&mut self, link: Link, n: usize, _now: Instant) {
        if let (Link::Main, Some(cmd)) = (link, self.out) {
            self.out_off += n;
            if self.out_off >= cmd.bytes(self.shape).len() {
                self.out = None;
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.step {
            Step::Backoff(until) => Some(until),
            _ if self.talking() => Some(self.moved_at + FTP_STUCK_AFTER),
            _ => None,
        }
    }

    fn wants_permit(&self) -> bool {
        self.step == Step::Waiting
    }

    fn owes_answer(&self) -> bool {
        !matches!(self.step, Step::Waiting | Step::Backoff(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;
    use crate::bench::client::Effect;
    use crate::bench::scenario;

    #[test]
    fn ftp_replies_are_parsed_across_reads() {
        let mut r = Replies::new();
        let text = b"220-hello\r\n there\r\n220-more\r\n220 ready\r\n331 ok\r\n229 Entering (|||4242|)\r\n";
        // Every split of the stream into two reads gives the same replies.
        for cut in 0..text.len() {
            r.reset();
            let mut codes = Vec::new();
            for part in [&text[..cut], &text[cut..]] {
                let mut pos = 0;
                while let Some(code) = r.next(part, &mut pos).unwrap() {
                    codes.push(code);
                }
                assert_eq!(pos, part.len());
            }
            assert_eq!(codes, [220, 331, 229], "cut at {cut}");
            assert_eq!(epsv_port(r.line()), Some(4242));
        }
        r.reset();
        assert!(r.next(b"hello\r\n", &mut 0).is_err());
        r.reset();
        assert!(r.next(b"220x\r\n", &mut 0).is_err());
        assert_eq!(epsv_port(b"229 (!!!21!)"), Some(21));
        assert_eq!(epsv_port(b"229 (|||0|)"), None);
        assert_eq!(epsv_port(b"229 (||21|)"), None);
        assert_eq!(epsv_port(b"229 no port"), None);
    }

    #[test]
    fn fixture_window_is_the_fixture() {
        let p = fixture_window(READ_MAX);
        for off in [0u64, 1, 65_520, 65_521, 1 << 30, (1 << 30) + 77] {
            let got = fixture_expected(&p, off, 300);
            let want: Vec<u8> = (off..off + 300).map(scenario::fixture_byte).collect();
            assert_eq!(got, &want[..], "at {off}");
        }
    }

    /// Feeds `text` to the control link one byte at a time.
    fn say(c: &mut FtpClient, text: &[u8], now: Instant) -> Vec<Effect> {
        let mut all = Vec::new();
        for b in text {
            all.extend(effects(|fx| c.handle_input(Link::Main, &[*b], now, fx)));
        }
        all
    }

    /// Writes out whatever command is pending and returns it.
    fn sent(c: &mut FtpClient, now: Instant) -> Vec<u8> {
        let out = c.poll_output(Link::Main).to_vec();
        c.consume_output(Link::Main, out.len(), now);
        out
    }

    #[test]
    fn a_whole_session_byte_by_byte() {
        let shape = FtpShape::new("f.bin", 5, false, false).unwrap();
        let t0 = Instant::now();
        let mut c = FtpClient::new(&shape, t0);
        assert!(c.wants_permit());
        let fx = effects(|fx| c.handle_permit(t0, t0, fx));
        assert!(matches!(
            fx[..],
            [Effect::Open {
                link: Link::Main,
                ..
            }]
        ));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        assert!(say(&mut c, b"220-hi\r\n220 ok\r\n", t0).is_empty());
        assert_eq!(sent(&mut c, t0), b"USER anonymous\r\n");
        let _ = say(&mut c, b"331 pw\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"PASS bench@\r\n");
        let _ = say(&mut c, b"230 in\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"TYPE I\r\n");
        let _ = say(&mut c, b"200 I\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"EPSV\r\n");
        let fx = say(&mut c, b"229 (|||2121|)\r\n", t0);
        assert_eq!(
            fx,
            [Effect::Open {
                link: Link::Side,
                port: Some(2121),
                nodelay: false
            }]
        );
        let _ = effects(|fx| c.handle_connected(Link::Side, t0, fx));
        assert_eq!(sent(&mut c, t0), b"RETR f.bin\r\n");
        let _ = say(&mut c, b"150 here\r\n", t0);
        let data: Vec<u8> = (0..5).map(scenario::fixture_byte).collect();
        for b in &data {
            let fx = effects(|fx| c.handle_input(Link::Side, &[*b], t0, fx));
            assert_eq!(fx, [Effect::Received(1)]);
        }
        let fx = effects(|fx| c.handle_eof(Link::Side, t0, fx));
        assert_eq!(
            fx,
            [Effect::Close {
                link: Link::Side,
                reset: true
            }]
        );
        let _ = say(&mut c, b"226 done\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"QUIT\r\n");
        let fx = say(&mut c, b"221 bye\r\n", t0);
        assert_eq!(
            fx,
            [
                Effect::Answered { sent: t0 },
                Effect::Close {
                    link: Link::Main,
                    reset: true
                }
            ]
        );
        assert!(c.wants_permit() && !c.owes_answer());
    }

    #[test]
    fn an_ftps_session_starts_tls_after_234_and_after_150() {
        let shape = FtpShape::new("f.bin", 3, false, true).unwrap();
        let t0 = Instant::now();
        let mut c = FtpClient::new(&shape, t0);
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let _ = say(&mut c, b"220 ok\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"AUTH TLS\r\n");
        let fx = say(&mut c, b"234 go\r\n", t0);
        assert_eq!(fx, [Effect::StartTls(Link::Main)]);
        // Nothing goes out until the handshake is over.
        assert!(c.poll_output(Link::Main).is_empty());
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        for (cmd, reply) in [
            (&b"USER anonymous\r\n"[..], &b"331 pw\r\n"[..]),
            (b"PASS bench@\r\n", b"230 in\r\n"),
            (b"PBSZ 0\r\n", b"200 PBSZ=0\r\n"),
            (b"PROT P\r\n", b"200 P\r\n"),
            (b"TYPE I\r\n", b"200 I\r\n"),
            (b"EPSV\r\n", b"229 (|||2121|)\r\n"),
        ] {
            assert_eq!(sent(&mut c, t0), cmd);
            let _ = say(&mut c, reply, t0);
        }
        let _ = effects(|fx| c.handle_connected(Link::Side, t0, fx));
        assert_eq!(sent(&mut c, t0), b"RETR f.bin\r\n");
        let fx = say(&mut c, b"150 here\r\n", t0);
        assert_eq!(fx, [Effect::StartTls(Link::Side)]);
        let _ = effects(|fx| c.handle_connected(Link::Side, t0, fx));
        let data: Vec<u8> = (0..3).map(scenario::fixture_byte).collect();
        let _ = effects(|fx| c.handle_input(Link::Side, &data, t0, fx));
        let _ = effects(|fx| c.handle_eof(Link::Side, t0, fx));
        let _ = say(&mut c, b"226 done\r\n", t0);
        assert_eq!(sent(&mut c, t0), b"QUIT\r\n");
        let fx = say(&mut c, b"221 bye\r\n", t0);
        assert_eq!(fx[0], Effect::Answered { sent: t0 });
        // A byte behind the 234, before the handshake, is not FTPS.
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let _ = say(&mut c, b"220 ok\r\n", t0);
        let _ = sent(&mut c, t0);
        let fx = effects(|fx| c.handle_input(Link::Main, b"234 go\r\nX", t0, fx));
        assert_eq!(fx[0], Effect::StartTls(Link::Main));
        assert_eq!(fx[1], Effect::Failed(ErrorKind::Mismatch));
    }

    #[test]
    fn a_wrong_code_or_byte_is_a_mismatch_and_a_silence_a_stall() {
        let shape = FtpShape::new("f.bin", 5, true, false).unwrap();
        let t0 = Instant::now();
        let mut c = FtpClient::new(&shape, t0);
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let fx = say(&mut c, b"530 no\r\n", t0);
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Mismatch));
        assert!(!c.wants_permit());
        let until = c.poll_timeout().unwrap();
        let _ = effects(|fx| c.handle_timeout(until, fx));
        assert!(c.wants_permit());
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let stuck = c.poll_timeout().unwrap();
        assert_eq!(stuck, t0 + FTP_STUCK_AFTER);
        let fx = effects(|fx| c.handle_timeout(stuck, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Stalled));
    }
}
