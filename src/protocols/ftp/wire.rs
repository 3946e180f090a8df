//! FTP's wire format: the pure parsing and formatting pieces the FTP session
//! uses (DESIGN.md §4.3). Nothing here does I/O or reads a clock.
//!
//! 1. [`LineReader`] buffers control-connection bytes, removes the Telnet
//!    layer RFC 959 puts under FTP (IAC sequences, the ABOR "Synch") and
//!    yields one [`Line`] per LF, refusing lines over [`MAX_LINE`].
//! 2. [`parse`] splits a line into a [`Verb`] and its raw argument.
//! 3. [`parse_port`], [`parse_eprt`] and [`parse_epsv_arg`] read data
//!    connection arguments; [`format_pasv`] and [`format_epsv`] write the
//!    passive replies' text.
//! 4. [`reply`] and [`reply_multi`] write control replies that can never
//!    carry an injected line; [`quote_path`] quotes a 257 pathname.
//! 5. [`list_line`], [`mlsx_facts`] and [`mdtm`] write directory listings
//!    and times, with a small civil-date conversion instead of a date crate.
//!
//! Errors carry the reply the session sends for them (`reply()` on
//! [`LineError`], [`CommandError`] and [`ArgError`]), as h11 does: a bad
//! line gets FTP's own refusal, never a silent close.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest command line accepted, in decoded bytes without the CRLF.
///
/// A line must fit a full Linux path (`PATH_MAX`, 4096) after a verb and
/// its space, so this is 4096 plus a little slack, like Pure-FTPd's
/// `MAXPATHLEN + 16`; vsftpd stops at 4096 (`VSFTP_MAX_COMMAND_LINE`).
/// RFC 959 sets no limit. Longer lines get `500` (RFC 959 lists "command
/// line too long" under 500) and are skipped up to their LF.
pub const MAX_LINE: usize = 4096 + 16;

/// Input buffer capacity kept between pushes. A larger push (a driver's read
/// buffer is smaller than this) is freed once decoded, so one burst does not
/// pin memory on an idle connection for its lifetime.
const RETAINED_CAPACITY: usize = 64 * 1024;

// Telnet bytes (RFC 854). Only IAC, the option verbs, IP and DM matter here;
// every other command byte after IAC is dropped.
const IAC: u8 = 255;
const DONT: u8 = 254;
const WILL: u8 = 251;
const IP: u8 = 244;
const DM: u8 = 242;
/// Lowest Telnet command byte; `IAC x` with `x` below it is not Telnet.
const FIRST_COMMAND: u8 = 240;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

/// One control-connection line, Telnet removed, CRLF stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line's bytes (at most [`MAX_LINE`]). Not necessarily UTF-8.
    pub bytes: Vec<u8>,
    /// The line contained Telnet IP or DM: the client's "Synch" before
    /// `ABOR` (RFC 959 §4.1.3), so a transfer in progress should stop.
    pub interrupt: bool,
}

/// Why the reader refused a line: the peer's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// More than [`MAX_LINE`] bytes without a LF; the rest of that line is
    /// skipped, and reading resumes after its LF.
    #[error("command line longer than {MAX_LINE} bytes")]
    TooLong,
}

impl LineError {
    /// The reply to send.
    pub fn reply(&self) -> (u16, &'static str) {
        match self {
            LineError::TooLong => (500, "Command line too long."),
        }
    }
}

/// Where the Telnet decoder is inside an IAC sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Telnet {
    /// Plain data.
    Data,
    /// Saw IAC; the next byte says what it was.
    Iac,
    /// Saw IAC WILL/WONT/DO/DONT; the next byte is the option, dropped.
    Option,
    /// Just decoded IAC IP. A bare DM byte here is the rest of a Synch whose
    /// urgent IAC the kernel took out of band (a driver without
    /// `SO_OOBINLINE`: BSD ftp sends `IAC IP IAC` as urgent data, then `DM`),
    /// so it is treated as DM rather than as the line's first byte.
    AfterIp,
}

/// Buffers control-connection bytes and yields decoded lines.
///
/// The driver [`push`](Self::push)es what it read, then calls
/// [`next_line`](Self::next_line) until it answers `None`. Done that way, the
/// reader holds at most [`MAX_LINE`] bytes of a partial line plus one push:
/// a line over the limit is reported once and its bytes are dropped as they
/// arrive. A session that stops taking lines (say, mid-transfer) should stop
/// reading too; [`buffered`](Self::buffered) says how much is held.
#[derive(Debug)]
pub struct LineReader {
    /// Pushed bytes; those before `pos` are decoded.
    raw: Vec<u8>,
    pos: usize,
    /// The decoded current line (never over `MAX_LINE`).
    line: Vec<u8>,
    telnet: Telnet,
    /// A CR was decoded and the next byte decides what it was: LF ends the
    /// line, NUL makes it a data CR (Telnet's encoding of a bare CR), and
    /// anything else keeps it as data too, which tolerates sloppy clients.
    cr: bool,
    interrupt: bool,
    /// The current line went over `MAX_LINE`; drop bytes until its LF.
    discarding: bool,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> Self {
        LineReader {
            raw: Vec::new(),
            pos: 0,
            line: Vec::new(),
            telnet: Telnet::Data,
            cr: false,
            interrupt: false,
            discarding: false,
        }
    }

    /// Appends bytes read from the control connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.raw.len() {
            self.raw.clear();
        } else if self.pos > 0 {
            // Lines were taken but not all input decoded: keep only the rest.
            self.raw.drain(..self.pos);
        }
        self.pos = 0;
        self.raw.extend_from_slice(data);
    }

    /// Bytes held: undecoded input plus the partial line. At most
    /// [`MAX_LINE`] once `next_line` has answered `None`.
    pub fn buffered(&self) -> usize {
        self.raw.len() - self.pos + self.line.len()
    }

    /// The next complete line, an error for an over-long one, or `None` when
    /// more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<Line, LineError>> {
        while self.pos < self.raw.len() {
            let b = self.raw[self.pos];
            self.pos += 1;
            let data = match self.telnet {
                Telnet::Data => self.data_or_iac(b),
                Telnet::AfterIp if b == DM => {
                    self.telnet = Telnet::Data;
                    None
                }
                Telnet::AfterIp => self.data_or_iac(b),
                Telnet::Iac => self.after_iac(b),
                Telnet::Option => {
                    self.telnet = Telnet::Data;
                    None
                }
            };
            if let Some(b) = data {
                if let Some(event) = self.decoded(b) {
                    return Some(event);
                }
            }
        }
        self.raw.clear();
        self.pos = 0;
        if self.raw.capacity() > RETAINED_CAPACITY {
            self.raw = Vec::new();
        }
        None
    }

    /// A byte outside any IAC sequence: data, or the start of one.
    fn data_or_iac(&mut self, b: u8) -> Option<u8> {
        if b == IAC {
            self.telnet = Telnet::Iac;
            None
        } else {
            self.telnet = Telnet::Data;
            Some(b)
        }
    }

    /// The byte after IAC; returns a data byte if the pair decodes to one.
    fn after_iac(&mut self, b: u8) -> Option<u8> {
        self.telnet = Telnet::Data;
        match b {
            IAC => Some(IAC),
            WILL..=DONT => {
                self.telnet = Telnet::Option;
                None
            }
            IP => {
                self.interrupt = true;
                self.telnet = Telnet::AfterIp;
                None
            }
            DM => {
                self.interrupt = true;
                None
            }
            // NOP, AO, AYT, EC, EL, GA, SB, SE, BRK: nothing an FTP server
            // acts on (FTP clients never negotiate, so SB never opens).
            FIRST_COMMAND..=IAC => None,
            // Not Telnet: keep the byte, lose the stray IAC. This also keeps
            // "ABOR" whole when the kernel took an urgent DM out of band,
            // leaving "IAC IP IAC ABOR".
            _ => Some(b),
        }
    }

    /// One decoded data byte: CR/LF handling and the length limit.
    fn decoded(&mut self, b: u8) -> Option<Result<Line, LineError>> {
        if self.discarding {
            if b == LF {
                self.discarding = false;
                self.interrupt = false;
            }
            return None;
        }
        if self.cr {
            self.cr = false;
            match b {
                LF => return Some(Ok(self.finish())),
                NUL => return self.store(CR),
                _ => {
                    if let Some(err) = self.store(CR) {
                        // Now discarding; `b` is not LF, so it would be
                        // dropped anyway.
                        return Some(err);
                    }
                }
            }
        }
        match b {
            CR => {
                self.cr = true;
                None
            }
            LF => Some(Ok(self.finish())),
            _ => self.store(b),
        }
    }

    fn store(&mut self, b: u8) -> Option<Result<Line, LineError>> {
        if self.line.len() >= MAX_LINE {
            self.line.clear();
            self.discarding = true;
            self.cr = false;
            return Some(Err(LineError::TooLong));
        }
        if self.line.len() == self.line.capacity() {
            // Grow by doubling as usual, but never past the limit, so a
            // maximal line holds MAX_LINE bytes, not the next power of two.
            let want = (self.line.capacity() * 2).clamp(64, MAX_LINE);
            self.line.reserve_exact(want - self.line.len());
        }
        self.line.push(b);
        None
    }

    fn finish(&mut self) -> Line {
        // One exact allocation per line; the reader keeps its own capacity.
        let line = Line {
            bytes: self.line.as_slice().to_vec(),
            interrupt: self.interrupt,
        };
        self.line.clear();
        self.interrupt = false;
        line
    }
}

/// The commands muse knows (DESIGN.md §4.3), aliases folded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    User,
    Pass,
    Acct,
    Syst,
    Feat,
    Opts,
    Pwd,
    Cwd,
    Cdup,
    Type,
    Mode,
    Stru,
    Port,
    Eprt,
    Pasv,
    Epsv,
    List,
    Nlst,
    Mlsd,
    Mlst,
    Retr,
    Stor,
    Appe,
    Stou,
    Rest,
    Size,
    Mdtm,
    Dele,
    Mkd,
    Rmd,
    Rnfr,
    Rnto,
    Noop,
    Stat,
    Help,
    Allo,
    Abor,
    Quit,
    Auth,
    Pbsz,
    Prot,
    Ccc,
    Site,
}

impl Verb {
    /// Every verb, in the order above (for HELP).
    pub const ALL: &'static [Verb] = &[
        Verb::User,
        Verb::Pass,
        Verb::Acct,
        Verb::Syst,
        Verb::Feat,
        Verb::Opts,
        Verb::Pwd,
        Verb::Cwd,
        Verb::Cdup,
        Verb::Type,
        Verb::Mode,
        Verb::Stru,
        Verb::Port,
        Verb::Eprt,
        Verb::Pasv,
        Verb::Epsv,
        Verb::List,
        Verb::Nlst,
        Verb::Mlsd,
        Verb::Mlst,
        Verb::Retr,
        Verb::Stor,
        Verb::Appe,
        Verb::Stou,
        Verb::Rest,
        Verb::Size,
        Verb::Mdtm,
        Verb::Dele,
        Verb::Mkd,
        Verb::Rmd,
        Verb::Rnfr,
        Verb::Rnto,
        Verb::Noop,
        Verb::Stat,
        Verb::Help,
        Verb::Allo,
        Verb::Abor,
        Verb::Quit,
        Verb::Auth,
        Verb::Pbsz,
        Verb::Prot,
        Verb::Ccc,
        Verb::Site,
    ];

    /// The canonical upper-case name (`PWD` for `XPWD` too).
    pub fn name(self) -> &'static str {
        match self {
            Verb::User => "USER",
            Verb::Pass => "PASS",
            Verb::Acct => "ACCT",
            Verb::Syst => "SYST",
            Verb::Feat => "FEAT",
            Verb::Opts => "OPTS",
            Verb::Pwd => "PWD",
            Verb::Cwd => "CWD",
            Verb::Cdup => "CDUP",
            Verb::Type => "TYPE",
            Verb::Mode => "MODE",
            Verb::Stru => "STRU",
            Verb::Port => "PORT",
            Verb::Eprt => "EPRT",
            Verb::Pasv => "PASV",
            Verb::Epsv => "EPSV",
            Verb::List => "LIST",
            Verb::Nlst => "NLST",
            Verb::Mlsd => "MLSD",
            Verb::Mlst => "MLST",
            Verb::Retr => "RETR",
            Verb::Stor => "STOR",
            Verb::Appe => "APPE",
            Verb::Stou => "STOU",
            Verb::Rest => "REST",
            Verb::Size => "SIZE",
            Verb::Mdtm => "MDTM",
            Verb::Dele => "DELE",
            Verb::Mkd => "MKD",
            Verb::Rmd => "RMD",
            Verb::Rnfr => "RNFR",
            Verb::Rnto => "RNTO",
            Verb::Noop => "NOOP",
            Verb::Stat => "STAT",
            Verb::Help => "HELP",
            Verb::Allo => "ALLO",
            Verb::Abor => "ABOR",
            Verb::Quit => "QUIT",
            Verb::Auth => "AUTH",
            Verb::Pbsz => "PBSZ",
            Verb::Prot => "PROT",
            Verb::Ccc => "CCC",
            Verb::Site => "SITE",
        }
    }

    /// Looks up an upper-case name, including the RFC 775 `X` aliases
    /// that old Windows and BSD clients still send.
    fn from_upper(name: &[u8]) -> Option<Verb> {
        Some(match name {
            b"XPWD" => Verb::Pwd,
            b"XCWD" => Verb::Cwd,
            b"XCUP" => Verb::Cdup,
            b"XMKD" => Verb::Mkd,
            b"XRMD" => Verb::Rmd,
            _ => {
                return Verb::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().as_bytes() == name)
            }
        })
    }
}

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    pub verb: Verb,
    /// Everything after the first space, as sent (`None` if empty). Raw
    /// bytes: paths are decoded (and confined) by the session's root.
    pub arg: Option<&'a [u8]>,
}

/// Why a line is not a command: the peer's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing before the first space.
    #[error("empty command")]
    Empty,
    /// Not a verb muse knows, printable-escaped and cut short for logs.
    #[error("unknown command {0:?}")]
    Unknown(String),
}

impl CommandError {
    /// The reply to send. The verb is not echoed: it is the peer's text.
    pub fn reply(&self) -> (u16, &'static str) {
        match self {
            CommandError::Empty => (500, "Syntax error, command unrecognized."),
            CommandError::Unknown(_) => (500, "Unknown command."),
        }
    }
}

/// Longest verb: every FTP verb, standard or extension, has at most four
/// letters (RFC 959 §5.3.1), so longer words are rejected before lookup.
const MAX_VERB: usize = 4;

/// How much of an unknown verb [`CommandError::Unknown`] keeps for logs.
const MAX_UNKNOWN_SHOWN: usize = 16;

/// Splits a line (CRLF already removed) into a verb and its argument.
///
/// The verb is the first word, case-insensitive ASCII letters. The argument
/// is everything after the first single space, inner and trailing spaces
/// kept: file names may contain them.
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let (word, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if word.is_empty() {
        return Err(CommandError::Empty);
    }
    let mut upper = [0u8; MAX_VERB];
    let known = word.len() <= MAX_VERB && word.iter().all(u8::is_ascii_alphabetic);
    let verb = known
        .then(|| {
            upper[..word.len()].copy_from_slice(word);
            upper.make_ascii_uppercase();
            Verb::from_upper(&upper[..word.len()])
        })
        .flatten();
    match verb {
        Some(verb) => Ok(Command {
            verb,
            arg: arg.filter(|a| !a.is_empty()),
        }),
        None => {
            let shown = &word[..word.len().min(MAX_UNKNOWN_SHOWN)];
            Err(CommandError::Unknown(shown.escape_ascii().to_string()))
        }
    }
}

/// Appends `CODE text\r\n`.
///
/// CR and LF are removed from `text`, so text that carries client input
/// (a file name, say) can never end the reply early and forge another one.
pub fn reply(out: &mut Vec<u8>, code: u16, text: &str) {
    push_code(out, code);
    out.push(b' ');
    push_line_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Appends an RFC 959 multi-line reply: `CODE-first`, then each of `lines`
/// indented by one space, then `CODE last`.
///
/// The indent means no inner line can start with `CODE ` and end the reply
/// for the client (RFC 959 §4.2); all text is stripped of CR and LF.
pub fn reply_multi(out: &mut Vec<u8>, code: u16, first: &str, lines: &[&str], last: &str) {
    push_code(out, code);
    out.push(b'-');
    push_line_text(out, first);
    out.extend_from_slice(b"\r\n");
    for line in lines {
        out.push(b' ');
        push_line_text(out, line);
        out.extend_from_slice(b"\r\n");
    }
    reply(out, code, last);
}

fn push_code(out: &mut Vec<u8>, code: u16) {
    debug_assert!((100..=999).contains(&code), "reply code {code}");
    let code = code.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
}

/// Appends `text` minus CR and LF: one line's worth, whatever it holds.
fn push_line_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| b != CR && b != LF));
}

/// Quotes a pathname for a 257 reply: `"` around it, embedded `"` doubled
/// (RFC 959 appendix II), so `a"b` becomes `"a""b"`.
pub fn quote_path(p: &str) -> String {
    let mut quoted = String::with_capacity(p.len() + 2);
    quoted.push('"');
    for c in p.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Why a data-connection argument was refused: the peer's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Malformed: wrong count, out of range, bad delimiter, not a number.
    #[error("syntax error in argument")]
    Syntax,
    /// EPRT with a well-formed address family other than 1 (IPv4) or 2 (IPv6).
    #[error("unsupported network protocol")]
    UnsupportedFamily,
}

impl ArgError {
    /// The reply to send (RFC 959 501; RFC 2428 522 names the families).
    pub fn reply(&self) -> (u16, &'static str) {
        match self {
            ArgError::Syntax => (501, "Syntax error in parameters or arguments."),
            ArgError::UnsupportedFamily => (522, "Network protocol not supported, use (1,2)."),
        }
    }
}

/// Reads `PORT h1,h2,h3,h4,p1,p2` (RFC 959), each a decimal 0..=255.
///
/// Spaces around the argument and around each number are tolerated; some
/// clients send them. Whether the address and port are allowed (the
/// client's own, port ≥ 1024: RFC 2577) is the session's decision.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddrV4, ArgError> {
    let mut n = [0u8; 6];
    let mut fields = trim(arg).split(|&b| b == b',');
    for slot in &mut n {
        let field = fields.next().ok_or(ArgError::Syntax)?;
        *slot = decimal(trim(field), 3)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or(ArgError::Syntax)?;
    }
    if fields.next().is_some() {
        return Err(ArgError::Syntax);
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Ok(SocketAddrV4::new(ip, u16::from_be_bytes([n[4], n[5]])))
}

/// Reads `EPRT |1|132.235.1.2|6275|` or `EPRT |2|::1|5282|` (RFC 2428).
///
/// The first character is the delimiter, any of ASCII 33..=126. Address
/// families other than 1 and 2 are [`ArgError::UnsupportedFamily`] (522).
/// As with PORT, which addresses are allowed is the session's decision.
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, ArgError> {
    let arg = trim(arg);
    let (&delim, rest) = arg.split_first().ok_or(ArgError::Syntax)?;
    if !(33..=126).contains(&delim) {
        return Err(ArgError::Syntax);
    }
    let mut fields = rest.split(|&b| b == delim);
    let (Some(family), Some(addr), Some(port), Some(b""), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ArgError::Syntax);
    };
    let port = decimal(port, 5)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(ArgError::Syntax)?;
    let addr = std::str::from_utf8(addr).map_err(|_| ArgError::Syntax)?;
    // std's parsers are strict: no zone ids, no octal, no trailing junk.
    let ip = match decimal(family, 3) {
        Some(1) => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| ArgError::Syntax)?),
        Some(2) => IpAddr::V6(addr.parse::<Ipv6Addr>().map_err(|_| ArgError::Syntax)?),
        Some(_) => return Err(ArgError::UnsupportedFamily),
        None => return Err(ArgError::Syntax),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The text of a 227 reply (the session adds the code):
/// `Entering Passive Mode (h1,h2,h3,h4,p1,p2).`
pub fn format_pasv(addr: SocketAddrV4) -> String {
    let [h1, h2, h3, h4] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("Entering Passive Mode ({h1},{h2},{h3},{h4},{p1},{p2}).")
}

/// The text of a 229 reply (the session adds the code):
/// `Entering Extended Passive Mode (|||port|)` (RFC 2428).
pub fn format_epsv(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// What an `EPSV` argument asks for (RFC 2428 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: a passive port in the control connection's family.
    None,
    /// `EPSV ALL`: from now on refuse PORT, EPRT and PASV.
    All,
    /// `EPSV n`: family `n`; the session answers 522 unless it is the
    /// control connection's.
    Proto(u8),
}

/// Reads an `EPSV` argument: none, `ALL` (any case), or a family number.
pub fn parse_epsv_arg(arg: Option<&[u8]>) -> Result<EpsvArg, ArgError> {
    let arg = trim(arg.unwrap_or_default());
    if arg.is_empty() {
        Ok(EpsvArg::None)
    } else if arg.eq_ignore_ascii_case(b"ALL") {
        Ok(EpsvArg::All)
    } else {
        decimal(arg, 3)
            .and_then(|v| u8::try_from(v).ok())
            .map(EpsvArg::Proto)
            .ok_or(ArgError::Syntax)
    }
}

/// `bytes` without surrounding ASCII whitespace.
fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// A decimal of 1..=`max_digits` ASCII digits (leading zeros allowed, no
/// sign); bounding the digits keeps the value far from overflow.
fn decimal(bytes: &[u8], max_digits: usize) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > max_digits || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// One directory entry, as [`list_line`] and [`mlsx_facts`] print it.
#[derive(Clone, Copy, Debug)]
pub struct ListEntry<'a> {
    /// The name to show (an entry name for LIST/MLSD, a path for MLST).
    pub name: &'a str,
    pub is_dir: bool,
    pub is_symlink: bool,
    pub size: u64,
    pub modified: SystemTime,
    /// `st_mode`; only the permission bits (0o7777) are used.
    pub mode: u32,
    pub nlink: u64,
    /// Not printed: listings say `ftp ftp` (see [`list_line`]).
    pub uid: u32,
    /// Not printed: listings say `ftp ftp` (see [`list_line`]).
    pub gid: u32,
}

/// What `ls -l` calls six months: half an average Gregorian year. Newer
/// times show the clock, older ones the year.
const SIX_MONTHS: i64 = 31_556_952 / 2;

/// How far in the future a time still shows the clock: clock skew between
/// the file system and the session's `now` should not flip a fresh upload
/// to the year form.
const FUTURE_SLACK: i64 = 60 * 60;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends one `ls -l` line, ending CRLF, in the shape lftp, curl and
/// FileZilla parse (the one vsftpd and ProFTPD send):
///
/// `drwxr-xr-x    2 ftp      ftp          4096 Nov 25 08:16 name`
///
/// Owner and group are always `ftp`, like vsftpd's `hide_ids`: numeric ids
/// tell a client nothing useful and something about the server. Dates are
/// UTC, `Mon DD HH:MM` within six months of `now`, else `Mon DD  YYYY`,
/// English month names whatever the locale, since clients parse them.
/// Symlinks get type `l` but no `-> target`, which would leak a path.
/// CR and LF are dropped from the name so it stays one line; a session
/// should rather skip such names, which no client can ask for anyway.
pub fn list_line(out: &mut Vec<u8>, e: &ListEntry, now: SystemTime) {
    let kind = if e.is_symlink {
        b'l'
    } else if e.is_dir {
        b'd'
    } else {
        b'-'
    };
    out.extend_from_slice(&mode_string(kind, e.mode));
    let when = unix_seconds(e.modified);
    let now = unix_seconds(now);
    let t = Civil::from_unix(when);
    let month = MONTHS[t.month as usize - 1];
    let mut text = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        " {:>4} ftp      ftp      {:>8} {} {:>2} ",
        e.nlink, e.size, month, t.day
    );
    let recent = when > now.saturating_sub(SIX_MONTHS) && when <= now.saturating_add(FUTURE_SLACK);
    let _ = if recent {
        write!(text, "{:02}:{:02} ", t.hour, t.minute)
    } else {
        write!(text, " {:>4} ", t.year)
    };
    out.extend_from_slice(text.as_bytes());
    push_line_text(out, e.name);
    out.extend_from_slice(b"\r\n");
}

/// `-rwxr-xr-x` from the entry type and `st_mode`, with set-id and sticky
/// bits as `ls` shows them (`s`/`S`, `t`/`T`).
fn mode_string(kind: u8, mode: u32) -> [u8; 10] {
    let mut s = *b"----------";
    s[0] = kind;
    // (bit, position, letter), then the special bit sharing each x column.
    let bits = [
        (0o400, 1, b'r'),
        (0o200, 2, b'w'),
        (0o040, 4, b'r'),
        (0o020, 5, b'w'),
        (0o004, 7, b'r'),
        (0o002, 8, b'w'),
    ];
    for (bit, at, letter) in bits {
        if mode & bit != 0 {
            s[at] = letter;
        }
    }
    let exec = [
        (0o100, 0o4000, 3, b's'),
        (0o010, 0o2000, 6, b's'),
        (0o001, 0o1000, 9, b't'),
    ];
    for (x, special, at, letter) in exec {
        s[at] = match (mode & x != 0, mode & special != 0) {
            (true, false) => b'x',
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (false, false) => b'-',
        };
    }
    s
}

/// Appends one RFC 3659 fact line, ending CRLF:
/// `type=file;size=123;modify=YYYYMMDDHHMMSS;perm=rlw;unix.mode=0644; name`.
///
/// `pathname` is what follows the facts: the entry name for MLSD, the full
/// path for MLST (whose reply line the session starts with one more space,
/// RFC 3659 §7.2). `perm` is the session's RFC 3659 §7.5.5 letters for this
/// user. Directories get `type=dir` and no size; symlinks are described by
/// `is_dir` as the session resolved them. A symlink the root layer could
/// not follow (out of the root, or dangling) is `type=OS.unix=slink` with
/// no size and no permission: nothing can be done with it. CR and LF are
/// dropped from the pathname, as in [`list_line`].
pub fn mlsx_facts(out: &mut Vec<u8>, e: &ListEntry, perm: &str, pathname: &str) {
    let mut text = String::with_capacity(96);
    let mut perm = perm;
    // Writing to a String cannot fail.
    let _ = if e.is_dir {
        write!(text, "type=dir;")
    } else if e.is_symlink {
        perm = "";
        write!(text, "type=OS.unix=slink;")
    } else {
        write!(text, "type=file;size={};", e.size)
    };
    let _ = write!(
        text,
        "modify={};perm={};unix.mode={:04o}; ",
        mdtm(e.modified),
        perm,
        e.mode & 0o7777
    );
    push_line_text(out, &text);
    push_line_text(out, pathname);
    out.extend_from_slice(b"\r\n");
}

/// A time as `YYYYMMDDHHMMSS` in UTC: the MDTM reply (RFC 3659 §3) and the
/// `modify` fact.
pub fn mdtm(t: SystemTime) -> String {
    let c = Civil::from_unix(unix_seconds(t));
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Whole seconds since the Unix epoch, rounded down (so a time just before
/// 1970 is -1, not 0), saturating far outside any real file time.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs.saturating_add(i64::from(d.subsec_nanos() > 0))
        }
    }
}

/// A UTC calendar date and time of day (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days` (public domain,
    /// howardhinnant.github.io/date_algorithms.html): count 400-year eras
    /// from 0000-03-01 so leap days fall at the end of each year, then
    /// read year, month and day off the day within the era. Exact for any
    /// `i64` seconds, no tables, no date crate.
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        // Shift the epoch from 1970-01-01 to 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
        let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month: month as u32,
            day: day as u32,
            hour: (of_day / 3_600) as u32,
            minute: (of_day / 60 % 60) as u32,
            second: (of_day % 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds `input` in chunks of `chunk` bytes, taking every line after
    /// each push, and checks the memory bound as it goes.
    fn read_chunked(input: &[u8], chunk: usize) -> Vec<Result<Line, LineError>> {
        let mut reader = LineReader::new();
        let mut events = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            reader.push(piece);
            while let Some(event) = reader.next_line() {
                events.push(event);
            }
            assert!(reader.buffered() <= MAX_LINE);
        }
        events
    }

    /// Reads `input` whole and then one byte at a time; both must agree.
    fn read(input: &[u8]) -> Vec<Result<Line, LineError>> {
        let whole = read_chunked(input, input.len());
        assert_eq!(whole, read_chunked(input, 1), "byte at a time differs");
        assert_eq!(whole, read_chunked(input, 7), "7-byte chunks differ");
        whole
    }

    fn line(bytes: &[u8]) -> Result<Line, LineError> {
        Ok(Line {
            bytes: bytes.to_vec(),
            interrupt: false,
        })
    }

    fn interrupted(bytes: &[u8]) -> Result<Line, LineError> {
        Ok(Line {
            bytes: bytes.to_vec(),
            interrupt: true,
        })
    }

    #[test]
    fn lines_end_at_crlf_or_bare_lf() {
        assert_eq!(
            read(b"USER bob\r\nPASS x\nNOOP\r\n\r\npartial"),
            vec![line(b"USER bob"), line(b"PASS x"), line(b"NOOP"), line(b"")]
        );
    }

    #[test]
    fn cr_nul_is_a_data_cr_and_stray_cr_is_kept() {
        assert_eq!(
            read(b"STOR a\r\0b\r\nSTOR c\rd\n"),
            vec![line(b"STOR a\rb"), line(b"STOR c\rd")]
        );
        // Only the CR right before LF is stripped.
        assert_eq!(read(b"X\r\r\n"), vec![line(b"X\r")]);
    }

    #[test]
    fn telnet_sequences_are_removed() {
        // IAC IAC is a data 0xFF; WILL/WONT/DO/DONT drop their option byte;
        // NOP, AYT, GA and friends drop alone.
        let input =
            b"RETR a\xff\xffb\r\nNO\xff\xfb\x01OP\xff\xfd\x03\r\n\xff\xf1\xff\xf6\xff\xf9QUIT\r\n";
        assert_eq!(
            read(input),
            vec![line(b"RETR a\xffb"), line(b"NOOP"), line(b"QUIT")]
        );
    }

    #[test]
    fn synch_marks_the_line_interrupted() {
        // BSD ftp's ABOR: IAC IP, IAC DM, then the command.
        assert_eq!(
            read(b"\xff\xf4\xff\xf2ABOR\r\nNOOP\r\n"),
            vec![interrupted(b"ABOR"), line(b"NOOP")]
        );
        // DM alone or IP alone also count.
        assert_eq!(read(b"\xff\xf2ABOR\r\n"), vec![interrupted(b"ABOR")]);
        assert_eq!(read(b"\xff\xf4ABOR\r\n"), vec![interrupted(b"ABOR")]);
    }

    #[test]
    fn synch_survives_out_of_band_bytes_taken_by_the_kernel() {
        // Urgent IAC removed from the stream: IAC IP, bare DM, ABOR.
        assert_eq!(read(b"\xff\xf4\xf2ABOR\r\n"), vec![interrupted(b"ABOR")]);
        // Urgent DM removed: IAC IP, lone IAC before 'A' (not Telnet).
        assert_eq!(read(b"\xff\xf4\xffABOR\r\n"), vec![interrupted(b"ABOR")]);
    }

    #[test]
    fn telnet_split_across_pushes() {
        let mut reader = LineReader::new();
        reader.push(b"AB\xff");
        assert_eq!(reader.next_line(), None);
        reader.push(b"\xf4");
        assert_eq!(reader.next_line(), None);
        reader.push(b"OR\xff");
        reader.push(b"\xfb");
        assert_eq!(reader.next_line(), None);
        reader.push(b"\x18\xff");
        assert_eq!(reader.next_line(), None);
        reader.push(b"\xff\r");
        assert_eq!(reader.next_line(), None);
        reader.push(b"\n");
        assert_eq!(reader.next_line(), Some(interrupted(b"ABOR\xff")));
        assert_eq!(reader.next_line(), None);
    }

    #[test]
    fn lines_taken_one_by_one_between_pushes() {
        let mut reader = LineReader::new();
        reader.push(b"A\r\nB\r\nC");
        assert_eq!(reader.next_line(), Some(line(b"A")));
        reader.push(b"D\r\n");
        assert_eq!(reader.next_line(), Some(line(b"B")));
        assert_eq!(reader.next_line(), Some(line(b"CD")));
        assert_eq!(reader.next_line(), None);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn too_long_once_then_recovers() {
        let mut input = vec![b'a'; MAX_LINE];
        input.extend_from_slice(b"\r\n"); // exactly the limit: fine
        input.extend(vec![b'b'; MAX_LINE * 3]);
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let events = read(&input);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].as_ref().unwrap().bytes.len(), MAX_LINE);
        assert_eq!(events[1], Err(LineError::TooLong));
        assert_eq!(events[2], line(b"NOOP"));
        assert_eq!(LineError::TooLong.reply().0, 500);
    }

    #[test]
    fn limit_counts_decoded_bytes_not_the_crlf() {
        // MAX_LINE data bytes, then CR NUL (a data CR) goes over.
        let mut input = vec![b'a'; MAX_LINE];
        input.extend_from_slice(b"\r\0\r\nOK\r\n");
        assert_eq!(read(&input), vec![Err(LineError::TooLong), line(b"OK")]);
        // Telnet doubling counts once: MAX_LINE 0xFF bytes fit.
        let mut input = b"\xff\xff".repeat(MAX_LINE);
        input.extend_from_slice(b"\r\n");
        assert_eq!(read(&input), vec![line(&[0xff; MAX_LINE])]);
    }

    #[test]
    fn memory_stays_bounded_without_newline() {
        let mut reader = LineReader::new();
        let chunk = vec![b'x'; 16 * 1024];
        let mut errors = 0;
        for _ in 0..64 {
            reader.push(&chunk); // 1 MiB in all
            while let Some(event) = reader.next_line() {
                assert_eq!(event, Err(LineError::TooLong));
                errors += 1;
            }
            assert!(reader.buffered() <= MAX_LINE);
            assert!(reader.line.capacity() <= MAX_LINE);
            assert!(reader.raw.capacity() <= RETAINED_CAPACITY);
        }
        assert_eq!(errors, 1);
        // One huge push is freed after decoding.
        reader.push(&vec![b'y'; 1 << 20]);
        assert_eq!(reader.next_line(), None);
        assert!(reader.raw.capacity() <= RETAINED_CAPACITY);
        reader.push(b"\nQUIT\r\n");
        assert_eq!(reader.next_line(), Some(line(b"QUIT")));
    }

    /// Parses `text` whole and byte by byte through the reader.
    fn parse_line(text: &[u8]) -> Result<(Verb, Option<Vec<u8>>), CommandError> {
        let mut input = text.to_vec();
        input.extend_from_slice(b"\r\n");
        let events = read(&input);
        assert_eq!(events.len(), 1);
        let line = events.into_iter().next().unwrap().unwrap();
        parse(&line.bytes).map(|c| (c.verb, c.arg.map(<[u8]>::to_vec)))
    }

    #[test]
    fn verbs_are_case_insensitive() {
        for text in [&b"user bob"[..], b"USER bob", b"uSeR bob"] {
            assert_eq!(parse_line(text), Ok((Verb::User, Some(b"bob".to_vec()))));
        }
        for verb in Verb::ALL {
            let lower = verb.name().to_ascii_lowercase();
            assert_eq!(parse(lower.as_bytes()).unwrap().verb, *verb);
        }
    }

    #[test]
    fn x_aliases() {
        let aliases = [
            (&b"XPWD"[..], Verb::Pwd),
            (b"xcwd /a", Verb::Cwd),
            (b"XCUP", Verb::Cdup),
            (b"XMKD d", Verb::Mkd),
            (b"XRMD d", Verb::Rmd),
        ];
        for (text, verb) in aliases {
            assert_eq!(parse_line(text).unwrap().0, verb);
        }
        assert_eq!(Verb::Pwd.name(), "PWD");
    }

    #[test]
    fn argument_is_everything_after_the_first_space() {
        assert_eq!(parse_line(b"PWD"), Ok((Verb::Pwd, None)));
        assert_eq!(parse_line(b"PWD "), Ok((Verb::Pwd, None)));
        assert_eq!(
            parse_line(b"STOR  my file  "),
            Ok((Verb::Stor, Some(b" my file  ".to_vec())))
        );
        assert_eq!(
            parse_line(b"RETR \xc3\xa9t\xe9"),
            Ok((Verb::Retr, Some(b"\xc3\xa9t\xe9".to_vec())))
        );
    }

    #[test]
    fn unknown_and_malformed_verbs() {
        assert_eq!(parse_line(b""), Err(CommandError::Empty));
        assert_eq!(parse_line(b" USER x"), Err(CommandError::Empty));
        assert_eq!(parse_line(b"FOO"), Err(CommandError::Unknown("FOO".into())));
        assert_eq!(
            parse_line(b"USERS x"),
            Err(CommandError::Unknown("USERS".into()))
        );
        assert_eq!(
            parse_line(b"US3R x"),
            Err(CommandError::Unknown("US3R".into()))
        );
        assert_eq!(
            parse_line(b"\x01\xfe"),
            Err(CommandError::Unknown("\\x01\\xfe".into()))
        );
        // Tab is not the separator.
        assert!(parse_line(b"USER\tbob").is_err());
        let long = parse(&[b'Z'; 100]).unwrap_err();
        assert_eq!(long, CommandError::Unknown("Z".repeat(MAX_UNKNOWN_SHOWN)));
        assert_eq!(long.reply().0, 500);
    }

    /// Runs an argument parser on `arg` whole, and on every prefix (a byte
    /// at a time) to be sure no prefix panics.
    fn arg<T>(f: impl Fn(&[u8]) -> T, arg: &[u8]) -> T {
        for end in 0..arg.len() {
            let _ = f(&arg[..end]);
        }
        f(arg)
    }

    #[test]
    fn port_valid() {
        let want = "132.235.1.2:6275".parse().unwrap();
        assert_eq!(arg(parse_port, b"132,235,1,2,24,131"), Ok(want));
        assert_eq!(arg(parse_port, b" 132, 235 ,1,2,24,131 "), Ok(want));
        assert_eq!(
            arg(parse_port, b"0,0,0,0,0,0"),
            Ok("0.0.0.0:0".parse().unwrap())
        );
        assert_eq!(
            arg(parse_port, b"255,255,255,255,255,255"),
            Ok("255.255.255.255:65535".parse().unwrap())
        );
        assert_eq!(
            arg(parse_port, b"010,0,0,1,4,001"),
            Ok("10.0.0.1:1025".parse().unwrap())
        );
    }

    #[test]
    fn port_invalid() {
        for bad in [
            &b""[..],
            b"1,2,3,4,5",
            b"1,2,3,4,5,6,7",
            b"1,2,3,4,5,256",
            b"256,2,3,4,5,6",
            b"1,2,3,4,5,-6",
            b"1,2,3,4,5,+6",
            b"1,2,3,4,5,0006",
            b"1,2,3,4,,6",
            b"1,2,3,4,5,6,",
            b"1.2.3.4,5,6",
            b"a,b,c,d,e,f",
            b"1,2,3,4,5 6",
            b"\xff\xfe",
        ] {
            assert_eq!(arg(parse_port, bad), Err(ArgError::Syntax), "{bad:?}");
        }
        assert_eq!(ArgError::Syntax.reply().0, 501);
    }

    #[test]
    fn eprt_valid() {
        assert_eq!(
            arg(parse_eprt, b"|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            arg(parse_eprt, b"|2|1080::8:800:200C:417A|5282|"),
            Ok("[1080::8:800:200c:417a]:5282".parse().unwrap())
        );
        assert_eq!(
            arg(parse_eprt, b" !2!::1!1025! "),
            Ok("[::1]:1025".parse().unwrap())
        );
        assert_eq!(
            arg(parse_eprt, b"~1~10.0.0.1~65535~"),
            Ok("10.0.0.1:65535".parse().unwrap())
        );
    }

    #[test]
    fn eprt_invalid() {
        for bad in [
            &b""[..],
            b"|",
            b"||||",
            b"|1|132.235.1.2|6275",
            b"|1|132.235.1.2|6275||",
            b"|1|132.235.1.2|65536|",
            b"|1|132.235.1.2||",
            b"|1|132.235.1.2|-1|",
            b"|1|::1|6275|",
            b"|2|132.235.1.2|6275|",
            b"|2|fe80::1%eth0|6275|",
            b"|1|1.2.3|6275|",
            b"|1|1.2.3.4.5|6275|",
            b"|x|1.2.3.4|6275|",
            b"|1|1.2.3.4|6275/",
            b" 1 1.2.3.4 6275 ",
            b"\x7f1\x7f1.2.3.4\x7f6275\x7f",
            b"\xff1\xff1.2.3.4\xff6275\xff",
            b":2:::1:6275:",
            b"|1|\xff|1|",
        ] {
            assert_eq!(arg(parse_eprt, bad), Err(ArgError::Syntax), "{bad:?}");
        }
        assert_eq!(
            arg(parse_eprt, b"|3|1.2.3.4|6275|"),
            Err(ArgError::UnsupportedFamily)
        );
        assert_eq!(ArgError::UnsupportedFamily.reply().0, 522);
    }

    #[test]
    fn passive_replies() {
        let addr = "192.168.1.10:50001".parse().unwrap();
        assert_eq!(
            format_pasv(addr),
            "Entering Passive Mode (192,168,1,10,195,81)."
        );
        // What a client computes back from it is what we meant.
        assert_eq!(arg(parse_port, b"192,168,1,10,195,81"), Ok(addr));
        assert_eq!(
            format_epsv(50001),
            "Entering Extended Passive Mode (|||50001|)"
        );
    }

    #[test]
    fn epsv_arguments() {
        let epsv = |a: &[u8]| parse_epsv_arg(Some(a));
        assert_eq!(parse_epsv_arg(None), Ok(EpsvArg::None));
        assert_eq!(arg(epsv, b""), Ok(EpsvArg::None));
        assert_eq!(arg(epsv, b"ALL"), Ok(EpsvArg::All));
        assert_eq!(arg(epsv, b"all"), Ok(EpsvArg::All));
        assert_eq!(arg(epsv, b"1"), Ok(EpsvArg::Proto(1)));
        assert_eq!(arg(epsv, b" 2 "), Ok(EpsvArg::Proto(2)));
        assert_eq!(arg(epsv, b"3"), Ok(EpsvArg::Proto(3)));
        for bad in [&b"256"[..], b"ALLX", b"-1", b"1 2", b"|||"] {
            assert_eq!(arg(epsv, bad), Err(ArgError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn replies_cannot_inject_lines() {
        let mut out = Vec::new();
        reply(&mut out, 550, "no such file: a\r\n500 x");
        assert_eq!(out, b"550 no such file: a500 x\r\n");
        let mut out = Vec::new();
        reply(&mut out, 226, "ok\n");
        assert_eq!(out, b"226 ok\r\n");
    }

    #[test]
    fn multi_line_replies() {
        let mut out = Vec::new();
        reply_multi(&mut out, 211, "Features:", &["MDTM", "211 x\r\n"], "End");
        assert_eq!(out, b"211-Features:\r\n MDTM\r\n 211 x\r\n211 End\r\n");
    }

    #[test]
    fn quoting_paths() {
        assert_eq!(quote_path("/a b"), r#""/a b""#);
        assert_eq!(quote_path(r#"/say "hi""#), r#""/say ""hi""""#);
        assert_eq!(quote_path(""), r#""""#);
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(mdtm(at(0)), "19700101000000");
        assert_eq!(mdtm(at(951_782_400)), "20000229000000");
        assert_eq!(mdtm(at(1_700_000_000)), "20231114221320");
        assert_eq!(mdtm(at(951_868_799)), "20000229235959");
        assert_eq!(mdtm(at(951_868_800)), "20000301000000");
        assert_eq!(mdtm(at(4_107_542_400)), "21000301000000"); // 2100 is not leap
        assert_eq!(mdtm(at(253_402_300_799)), "99991231235959");
        assert_eq!(
            mdtm(UNIX_EPOCH - Duration::from_millis(1)),
            "19691231235959"
        );
        assert_eq!(
            mdtm(UNIX_EPOCH - Duration::from_secs(86_400)),
            "19691231000000"
        );
        // Every day for 1000 years: consecutive days, valid months.
        let mut last = Civil::from_unix(-86_400);
        for day in 0..365_250 {
            let c = Civil::from_unix(day * 86_400);
            let next_day = c.day == last.day + 1 && c.month == last.month;
            let next_month = c.day == 1 && (c.month == last.month + 1 || c.month == 1);
            assert!(next_day || next_month, "{last:?} -> {c:?}");
            last = c;
        }
    }

    fn entry(name: &str) -> ListEntry<'_> {
        ListEntry {
            name,
            is_dir: false,
            is_symlink: false,
            size: 123,
            modified: at(1_700_000_000), // 2023-11-14 22:13:20 UTC
            mode: 0o100644,
            nlink: 1,
            uid: 1000,
            gid: 1000,
        }
    }

    fn listed(e: &ListEntry, now: SystemTime) -> String {
        let mut out = Vec::new();
        list_line(&mut out, e, now);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn list_lines() {
        let now = at(1_700_900_160 + 86_400); // 2023-11-26
        assert_eq!(
            listed(&entry("notes.txt"), now),
            "-rw-r--r--    1 ftp      ftp           123 Nov 14 22:13 notes.txt\r\n"
        );
        let dir = ListEntry {
            is_dir: true,
            size: 4096,
            nlink: 2,
            mode: 0o40755,
            modified: at(1_700_900_160), // 2023-11-25 08:16
            ..entry("pub")
        };
        assert_eq!(
            listed(&dir, now),
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 25 08:16 pub\r\n"
        );
        let old = ListEntry {
            modified: at(951_782_400), // 2000-02-29
            ..entry("old file")
        };
        assert_eq!(
            listed(&old, now),
            "-rw-r--r--    1 ftp      ftp           123 Feb 29  2000 old file\r\n"
        );
        let link = ListEntry {
            is_symlink: true,
            mode: 0o777,
            ..entry("latest")
        };
        assert_eq!(
            listed(&link, now),
            "lrwxrwxrwx    1 ftp      ftp           123 Nov 14 22:13 latest\r\n"
        );
        // Far future is shown with its year too; names cannot break lines.
        let future = ListEntry {
            modified: at(1_700_000_000 + 400 * 86_400),
            size: 12_345_678_901,
            ..entry("a\r\nb")
        };
        assert_eq!(
            listed(&future, at(1_700_000_000)),
            "-rw-r--r--    1 ftp      ftp      12345678901 Dec 18  2024 ab\r\n"
        );
    }

    #[test]
    fn permission_strings() {
        assert_eq!(&mode_string(b'-', 0o4755), b"-rwsr-xr-x");
        assert_eq!(&mode_string(b'-', 0o2644), b"-rw-r-Sr--");
        assert_eq!(&mode_string(b'd', 0o1777), b"drwxrwxrwt");
        assert_eq!(&mode_string(b'd', 0o1000), b"d--------T");
        assert_eq!(&mode_string(b'-', 0), b"----------");
    }

    #[test]
    fn mlsx_fact_lines() {
        let mut out = Vec::new();
        mlsx_facts(&mut out, &entry("notes.txt"), "adfrw", "notes.txt");
        assert_eq!(
            out,
            b"type=file;size=123;modify=20231114221320;perm=adfrw;unix.mode=0644; notes.txt\r\n"
        );
        let dir = ListEntry {
            is_dir: true,
            mode: 0o40755,
            ..entry("pub")
        };
        let mut out = Vec::new();
        mlsx_facts(&mut out, &dir, "el", "/pub dir");
        assert_eq!(
            out,
            b"type=dir;modify=20231114221320;perm=el;unix.mode=0755; /pub dir\r\n"
        );
        // A link that leads nowhere the client may go offers nothing.
        let link = ListEntry {
            is_symlink: true,
            mode: 0o120777,
            ..entry("out")
        };
        let mut out = Vec::new();
        mlsx_facts(&mut out, &link, "adfrw", "out");
        assert_eq!(
            out,
            b"type=OS.unix=slink;modify=20231114221320;perm=;unix.mode=0777; out\r\n"
        );
    }
}
