//! One FTP control connection as a sans-IO state machine (DESIGN.md §4.3).
//!
//! The session reads command lines, answers with replies, and asks its
//! driver for the data connection ([`Request::Listen`] for PASV/EPSV,
//! [`Request::Connect`] for PORT/EPRT) and for the transfer over it
//! ([`Request::SendFile`], [`Request::SendBytes`], [`Request::ReceiveFile`]).
//! It never touches a socket or the clock: the driver owns the data
//! connection, so a slow data reader stalls only its own transfer, and every
//! instant comes in as an argument. Files are reached only through the
//! user's [`Root`]; directory listings and password checks, which take
//! milliseconds to seconds, run as [`Request::Compute`] work off the event
//! loop (see [`listing`](super::listing)).
//!
//! A transfer command goes: `150` at once; the job is handed to the driver
//! as soon as the data connection is up; `226` when the driver reports
//! `Done`, `425`/`426`/`45x` when it fails. `ABOR` (with or without Telnet
//! IP/Synch) stops it: `426` then `226`. While a transfer runs, `ABOR` and
//! `STAT` are answered at once, and `NOOP` too when nothing waits before it;
//! every other line waits its turn, in order, and is answered after the
//! transfer (at most [`MAX_DEFERRED`] of them; then the session stops
//! reading). `QUIT` and the end of input wait for the transfer too.
//!
//! Deadlines, all on the driver's clock: the idle timeout counts from the
//! last complete command (or output the client took), not from any byte;
//! a login has [`LOGIN_TIMEOUT`]; a data connection that moves nothing for
//! the data timeout is aborted with `426`; and once a session has said its
//! last words it waits at most [`CLOSE_LINGER`] for them to be read, then
//! closes whatever it still owes.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::drivers::channel::same_ip;
use crate::gate::{Gate, Permit};
use crate::protocols::ftp::listing::{self, Batch, Format, Listing, Opened};
use crate::protocols::ftp::users::{Perms, User, Users};
use crate::protocols::ftp::wire::{self, Command, EpsvArg, LineError, LineReader, Verb};
use crate::protocols::ftp::FtpConfig;
use crate::root::{Kind, Root, Upload, VPath};
use crate::session::{
    ChannelEvent, ChannelId, Computed, ConnInfo, OutQueue, Output, Request, Session, Transform,
    Work,
};

/// Failed logins before the connection is closed (with `421`).
pub const MAX_LOGIN_FAILURES: u32 = 3;
/// How long the session stops listening after a failed login: slows
/// password guessing to a few tries per second per connection.
pub const LOGIN_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// How long a connection may take to log in, whatever it sends meanwhile:
/// a client that trickles bytes or NOOPs before login holds a place (a
/// thread, in the blocking architectures) for no longer than this.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a password check that found the login gate full tries again.
/// It holds nothing meanwhile (no thread, no hash memory).
pub const LOGIN_RETRY: Duration = Duration::from_millis(20);
/// Commands received during a transfer and kept for after it; more means a
/// client that does not wait for replies, and the session stops reading
/// (the rest wait in the kernel's buffers, and TCP slows the client).
pub const MAX_DEFERRED: usize = 16;
/// Reply bytes buffered before the session stops reading (a client that
/// sends commands without reading replies).
pub const MAX_OUTPUT: usize = 64 * 1024;
/// How long a transfer waits for its data connection (the client's connect
/// in passive mode, ours in active mode) before giving up with `425`.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a transfer's progress is looked at, for a data timeout of
/// `timeout`: a quarter of it, so that a stall ends between the timeout and
/// a quarter more (looking once per timeout let it run to twice as long).
fn check_step(timeout: Duration) -> Duration {
    timeout / 4
}
/// How long last words (`221`, `421`) wait to be read before the connection
/// is closed with them unsent: a client that never reads cannot keep it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// The reply sent to a connection refused at `--max-connections`.
pub const REFUSAL: &[u8] = b"421 Too many connections; try again later.\r\n";

enum Login {
    NeedUser,
    NeedPass(String),
    In(LoggedIn),
}

struct LoggedIn {
    name: String,
    perms: Perms,
    /// The user's home as a root: the server's own when the home is `/`
    /// (no directory to open per login).
    root: Arc<Root>,
}

/// What the control connection is doing. Orthogonal to it: a transfer may
/// be under way ([`FtpSession::transfer`]) and a computation may be
/// ([`FtpSession::awaiting`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading and answering commands.
    Commands,
    /// A failed login: no command is read until then.
    Penalty(Instant),
    /// Last words queued: the connection closes once they are sent, or at
    /// this instant, sent or not.
    Closing(Instant),
    /// The linger passed with output unsent: close now.
    Gone,
}

/// The computation the session waits for (at most one), or its wait for
/// a permit to start one.
enum Awaiting {
    /// A password check: commands wait for its answer.
    Login,
    /// A password check waiting for a place at the login gate.
    Gate {
        name: String,
        password: Vec<u8>,
        retry_at: Instant,
    },
    /// The first batch of a listing (opening the directory decides between
    /// `150` and `550`); commands wait.
    ListOpen { verb: Verb, path: VPath },
    /// A later batch of the listing under way.
    ListMore,
    /// `STAT path` lines; commands wait.
    Stat,
}

/// What the data connection is doing.
#[derive(Debug, PartialEq, Eq)]
enum Data {
    None,
    /// PASV/EPSV asked; waiting for the driver to say where it listens.
    Binding(ChannelId, PassiveStyle),
    /// Listening for the client, who is accepted once a transfer command
    /// gives the channel a job (see `Request::Listen`).
    Passive(ChannelId),
    /// PORT/EPRT given: connect when a transfer starts.
    Active(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PassiveStyle {
    Pasv,
    Epsv,
}

/// Why a transfer is being aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abort {
    /// The client's `ABOR`.
    Client,
    /// The data connection never came up.
    NoConnection,
    /// The data connection moved nothing for the data timeout.
    Stalled,
}

/// A transfer under way (150 sent).
struct Transfer {
    id: ChannelId,
    what: &'static str,
    path: String,
    /// The data connection is up.
    connected: bool,
    upload: Option<Upload>,
    started: Instant,
    aborting: Option<Abort>,
    /// The next look at the channel's progress, the byte count seen at the
    /// last one, and when that count last moved (the data timeout).
    check_at: Option<Instant>,
    seen: u64,
    moved_at: Instant,
    /// A listing's next batch, once the last chunk is sent.
    listing: Option<Box<Listing>>,
}

/// The FTP protocol's session.
pub struct FtpSession {
    root: Arc<Root>,
    users: Arc<Users>,
    config: Arc<FtpConfig>,
    gate: Gate,
    info: ConnInfo,
    lines: LineReader,
    /// Lines read during a transfer, answered after it (an over-long line
    /// as its error).
    deferred: VecDeque<Result<Vec<u8>, LineError>>,
    /// The client closed its sending side: finish what is owed, then close.
    input_ended: bool,
    /// The server is shutting down: close at the next clean boundary.
    shutting_down: bool,
    out: OutQueue,
    requests: VecDeque<Request>,
    phase: Phase,
    awaiting: Option<Awaiting>,
    login: Login,
    login_by: Instant,
    failures: u32,
    cwd: VPath,
    ascii: bool,
    /// `REST`'s offset, for the very next command only.
    rest: Option<u64>,
    rename_from: Option<VPath>,
    epsv_all: bool,
    data: Data,
    transfer: Option<Transfer>,
    next_id: ChannelId,
    /// The last complete command, transfer end or output taken: the idle
    /// clock's start.
    last_activity: Instant,
    /// Commands answered (or being answered) since the driver last asked
    /// ([`Session::take_finished_requests`]): one per command line, however
    /// many replies it gets (a transfer's `150` and `226` are one).
    finished: u32,
    /// The control connection speaks TLS ([`Session::handle_tls`]).
    tls: bool,
    /// `AUTH TLS` was answered `234`: no command is read until the switch.
    tls_pending: bool,
    /// `PBSZ` was sent (RFC 4217: before `PROT`).
    pbsz: bool,
    /// `PROT P`: data connections speak TLS.
    protect_data: bool,
}

impl FtpSession {
    /// A session for a new control connection; the greeting is queued.
    pub fn new(
        root: Arc<Root>,
        users: Arc<Users>,
        config: Arc<FtpConfig>,
        gate: Gate,
        info: ConnInfo,
        now: Instant,
    ) -> FtpSession {
        let mut s = FtpSession {
            root,
            users,
            config,
            gate,
            info,
            lines: LineReader::new(),
            deferred: VecDeque::new(),
            input_ended: false,
            shutting_down: false,
            out: OutQueue::with_capacity(256),
            requests: VecDeque::new(),
            phase: Phase::Commands,
            awaiting: None,
            login: Login::NeedUser,
            login_by: now + LOGIN_TIMEOUT,
            failures: 0,
            cwd: VPath::root(),
            ascii: false,
            rest: None,
            rename_from: None,
            epsv_all: false,
            data: Data::None,
            transfer: None,
            next_id: 0,
            last_activity: now,
            finished: 0,
            tls: false,
            tls_pending: false,
            pbsz: false,
            protect_data: false,
        };
        s.reply(220, "muse FTP server ready.");
        s
    }

    fn reply(&mut self, code: u16, text: &str) {
        wire::reply(self.out.buf(), code, text);
    }

    /// Last words: the session reads no more and closes once they are sent
    /// (or at the linger's end). A transfer still under way is aborted.
    fn close_with(&mut self, code: u16, text: &str, now: Instant) {
        if matches!(self.phase, Phase::Closing(_) | Phase::Gone) {
            return;
        }
        self.reply(code, text);
        self.phase = Phase::Closing(now + CLOSE_LINGER);
        self.awaiting = None;
        self.abort_data();
    }

    fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_) | Phase::Gone)
    }

    fn new_id(&mut self) -> ChannelId {
        self.next_id += 1;
        self.next_id
    }

    /// Drops whatever data connection is set up, and a running transfer.
    fn abort_data(&mut self) {
        match std::mem::replace(&mut self.data, Data::None) {
            Data::Binding(id, _) | Data::Passive(id) => {
                self.requests.push_back(Request::Abort { id })
            }
            Data::None | Data::Active(_) => {}
        }
        if let Some(t) = self.transfer.take() {
            self.requests.push_back(Request::Abort { id: t.id });
            if let Some(up) = t.upload {
                self.user_root().0.discard_upload(up);
            }
        }
    }

    /// Whether commands are taken from the input now.
    fn taking_commands(&self) -> bool {
        self.phase == Phase::Commands
            && !self.tls_pending
            && !matches!(
                self.awaiting,
                Some(
                    Awaiting::Login
                        | Awaiting::Gate { .. }
                        | Awaiting::ListOpen { .. }
                        | Awaiting::Stat
                )
            )
    }

    /// Answers the commands held (deferred ones first once a transfer has
    /// ended, then complete lines), as long as the session may: it stops
    /// while its output is full and goes on when the driver takes it
    /// (`consume_output`), and stops at anything that waits.
    fn process_lines(&mut self, now: Instant) {
        loop {
            if !self.taking_commands() || self.out.len() > MAX_OUTPUT {
                break;
            }
            if self.transfer.is_none() {
                match self.deferred.pop_front() {
                    Some(Ok(line)) => {
                        self.command_line(&line, now);
                        continue;
                    }
                    Some(Err(e)) => {
                        let (code, text) = e.reply();
                        self.finished += 1;
                        self.reply(code, text);
                        continue;
                    }
                    None => {}
                }
            } else if self.deferred.len() >= MAX_DEFERRED {
                // Back-pressure: the rest stays in the reader (and then in
                // the kernel) until the transfer ends.
                break;
            }
            match self.lines.next_line() {
                None => break,
                Some(Err(e)) => {
                    self.last_activity = now;
                    if self.transfer.is_some() {
                        // Answered in its turn, after the transfer.
                        self.deferred.push_back(Err(e));
                        continue;
                    }
                    let (code, text) = e.reply();
                    self.finished += 1;
                    self.reply(code, text);
                }
                Some(Ok(line)) => {
                    self.last_activity = now;
                    self.command_line(&line.bytes, now);
                }
            }
        }
        self.settle(now);
    }

    /// Closes a session whose input has ended once nothing is left to do.
    fn settle(&mut self, now: Instant) {
        if self.is_closing() || self.transfer.is_some() || self.awaiting.is_some() {
            return;
        }
        if self.shutting_down {
            return self.close_with(421, "Server shutting down.", now);
        }
        if self.input_ended && self.deferred.is_empty() && self.phase == Phase::Commands {
            // Every complete line has been answered; a partial one is
            // dropped, as the client can no longer finish it.
            self.phase = Phase::Closing(now + CLOSE_LINGER);
            self.abort_data();
        }
    }

    fn command_line(&mut self, line: &[u8], now: Instant) {
        let cmd = match wire::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                if self.transfer.is_some() {
                    self.deferred.push_back(Ok(line.to_vec()));
                    return;
                }
                let (code, text) = e.reply();
                self.finished += 1;
                return self.reply(code, text);
            }
        };
        if self.transfer.is_some() {
            let now_ok = match cmd.verb {
                Verb::Abor | Verb::Stat => true,
                Verb::Noop => self.deferred.is_empty(),
                _ => false,
            };
            if !now_ok {
                self.deferred.push_back(Ok(line.to_vec()));
                return;
            }
        }
        self.finished += 1;
        self.command(cmd, now);
    }

    fn arg_str<'a>(&mut self, cmd: &Command<'a>) -> Option<&'a str> {
        match cmd.arg.map(std::str::from_utf8) {
            Some(Ok(s)) => Some(s),
            Some(Err(_)) => {
                self.reply(501, "Arguments must be UTF-8.");
                None
            }
            None => Some(""),
        }
    }

    fn command(&mut self, cmd: Command<'_>, now: Instant) {
        use Verb::*;
        // REST applies to the very next command only (RFC 959 §4.1.3),
        // setting up the data connection aside: clients put PASV, EPSV,
        // PORT, EPRT or TYPE between REST and the transfer it is for.
        let sets_up = matches!(cmd.verb, Rest | Pasv | Epsv | Port | Eprt | Type);
        let rest = if sets_up { None } else { self.rest.take() };
        let logged_in = matches!(self.login, Login::In(_));
        if !logged_in
            && !matches!(
                cmd.verb,
                User | Pass | Quit | Feat | Syst | Auth | Pbsz | Prot | Ccc | Help | Noop
            )
        {
            return self.reply(530, "Please login with USER and PASS.");
        }
        if !matches!(cmd.verb, Rnfr | Rnto) {
            // RNFR must be followed at once by RNTO.
            self.rename_from = None;
        }
        match cmd.verb {
            User => self.user(&cmd),
            Pass => self.pass(&cmd, now),
            Quit => self.close_with(221, "Goodbye.", now),
            Noop => self.reply(200, "NOOP ok."),
            Syst => self.reply(215, "UNIX Type: L8"),
            Feat => {
                let mut features = vec![
                    "EPRT",
                    "EPSV",
                    "MDTM",
                    "MLST type*;size*;modify*;perm*;unix.mode*;",
                    "PASV",
                    "REST STREAM",
                    "SIZE",
                    "TVFS",
                    "UTF8",
                ];
                if self.config.tls {
                    features.extend(["AUTH TLS", "PBSZ", "PROT"]);
                }
                let out = self.out.buf();
                wire::reply_multi(out, 211, "Features:", &features, "End");
            }
            Help => {
                let out = self.out.buf();
                wire::reply_multi(
                    out,
                    214,
                    "The following commands are recognized.",
                    &[
                        "ABOR ALLO APPE AUTH CCC  CDUP CWD  DELE EPRT EPSV FEAT HELP LIST",
                        "MDTM MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT",
                        "PWD  QUIT REST RETR RMD  RNFR RNTO SIZE STAT STOR STOU STRU SYST",
                        "TYPE USER XCUP XCWD XMKD XPWD XRMD",
                    ],
                    "Help OK.",
                );
            }
            Auth => self.auth(&cmd),
            Pbsz => self.pbsz(&cmd),
            Prot => self.prot(&cmd),
            Ccc => self.reply(533, "CCC refused: the control connection stays encrypted."),
            Acct => self.reply(202, "ACCT not needed."),
            Allo => self.reply(202, "ALLO not needed."),
            Site => self.reply(502, "SITE commands are not implemented."),
            Opts => {
                let Some(arg) = self.arg_str(&cmd) else {
                    return;
                };
                let upper = arg.to_ascii_uppercase();
                if upper == "UTF8 ON" || upper == "UTF-8 ON" {
                    self.reply(200, "Always in UTF8 mode.");
                } else if upper.starts_with("MLST") {
                    self.reply(200, "MLST OPTS type;size;modify;perm;unix.mode;");
                } else {
                    self.reply(501, "Option not understood.");
                }
            }
            Type => {
                let Some(arg) = self.arg_str(&cmd) else {
                    return;
                };
                match arg.to_ascii_uppercase().as_str() {
                    "" => self.reply(501, "TYPE needs an argument."),
                    "A" | "A N" => {
                        self.ascii = true;
                        self.reply(200, "Switching to ASCII mode.");
                    }
                    "I" | "L 8" | "L8" => {
                        self.ascii = false;
                        self.reply(200, "Switching to Binary mode.");
                    }
                    _ => self.reply(504, "Type not supported."),
                }
            }
            Mode => self.only_value(
                &cmd,
                "S",
                "Mode set to S.",
                "Only stream mode is supported.",
            ),
            Stru => self.only_value(
                &cmd,
                "F",
                "Structure set to F.",
                "Only file structure is supported.",
            ),
            Pwd => {
                let text = format!(
                    "{} is the current directory.",
                    wire::quote_path(self.cwd.as_str())
                );
                self.reply(257, &text);
            }
            Cwd => self.cwd(&cmd),
            Cdup => {
                let parent = self.cwd.parent().unwrap_or_else(VPath::root);
                self.cwd = parent;
                self.reply(250, "Directory successfully changed.");
            }
            Port | Eprt => self.port(&cmd),
            Pasv => self.passive(PassiveStyle::Pasv),
            Epsv => match wire::parse_epsv_arg(cmd.arg) {
                Ok(EpsvArg::All) => {
                    self.epsv_all = true;
                    self.reply(200, "EPSV ALL ok.");
                }
                Ok(EpsvArg::Proto(p)) if (p == 1) != self.info.local.is_ipv4() => {
                    self.reply(522, "Network protocol not supported, use (1,2)");
                }
                Ok(_) => self.passive(PassiveStyle::Epsv),
                Err(e) => {
                    let (code, text) = e.reply();
                    self.reply(code, text);
                }
            },
            Rest => {
                let Some(arg) = self.arg_str(&cmd) else {
                    return;
                };
                match arg.trim().parse::<u64>() {
                    Ok(n) => {
                        self.rest = Some(n);
                        let text = format!("Restart position accepted ({n}).");
                        self.reply(350, &text);
                    }
                    Err(_) => self.reply(501, "REST needs a byte offset."),
                }
            }
            Retr => self.retr(&cmd, rest.unwrap_or(0), now),
            Stor => self.store(&cmd, Store::Replace, rest.unwrap_or(0), now),
            Appe => self.store(&cmd, Store::Append, 0, now),
            Stou => self.store(&cmd, Store::Unique, 0, now),
            List | Nlst | Mlsd => self.list(&cmd),
            Mlst => self.mlst(&cmd),
            Size => self.size(&cmd),
            Mdtm => self.mdtm(&cmd),
            Dele => self.modify(&cmd, Change::Delete),
            Mkd => self.modify(&cmd, Change::Mkdir),
            Rmd => self.modify(&cmd, Change::Rmdir),
            Rnfr => self.rnfr(&cmd),
            Rnto => self.rnto(&cmd),
            Stat => self.stat(&cmd),
            Abor => self.abor(),
        }
    }

    /// Answers a command (MODE, STRU) of which one value is supported.
    fn only_value(&mut self, cmd: &Command<'_>, value: &str, ok: &str, refusal: &str) {
        let Some(arg) = self.arg_str(cmd) else {
            return;
        };
        if arg.is_empty() {
            let text = format!("{} needs an argument.", cmd.verb.name());
            self.reply(501, &text);
        } else if arg.eq_ignore_ascii_case(value) {
            self.reply(200, ok);
        } else {
            self.reply(504, refusal);
        }
    }

    /// `AUTH TLS` (or `SSL`, its old name): `234`, then the control
    /// connection switches to TLS right after that reply
    /// ([`OutQueue::push_start_tls`]); nothing more is read until it has.
    fn auth(&mut self, cmd: &Command<'_>) {
        let Some(arg) = self.arg_str(cmd) else {
            return;
        };
        if !self.config.tls {
            return self.reply(502, "TLS is not available on this server.");
        }
        if self.tls {
            return self.reply(503, "Already using TLS.");
        }
        if matches!(self.login, Login::In(_)) {
            return self.reply(503, "AUTH must come before login.");
        }
        match arg.to_ascii_uppercase().as_str() {
            "TLS" | "TLS-C" | "SSL" | "TLS-P" => {
                self.reply(234, "AUTH TLS successful.");
                self.out.push_start_tls();
                self.tls_pending = true;
                // A USER before AUTH does not carry over (RFC 4217 §4).
                self.login = Login::NeedUser;
            }
            _ => self.reply(504, "AUTH TLS or AUTH SSL only."),
        }
    }

    /// `PBSZ`: only 0 makes sense over TLS (RFC 4217 §9).
    fn pbsz(&mut self, cmd: &Command<'_>) {
        let Some(arg) = self.arg_str(cmd) else {
            return;
        };
        if !self.tls {
            return self.reply(503, "PBSZ needs AUTH TLS first.");
        }
        if arg.parse::<u64>().is_err() {
            return self.reply(501, "PBSZ takes a number.");
        }
        self.pbsz = true;
        self.reply(200, "PBSZ=0");
    }

    /// `PROT P` (data connections in TLS) or `PROT C` (in clear).
    fn prot(&mut self, cmd: &Command<'_>) {
        let Some(arg) = self.arg_str(cmd) else {
            return;
        };
        if !self.tls {
            return self.reply(503, "PROT needs AUTH TLS first.");
        }
        if !self.pbsz {
            return self.reply(503, "PROT needs PBSZ first.");
        }
        match arg.to_ascii_uppercase().as_str() {
            "P" => {
                self.protect_data = true;
                self.reply(200, "PROT now Private.");
            }
            "C" if self.config.require_tls => {
                self.reply(536, "PROT C refused: data connections must be encrypted.")
            }
            "C" => {
                self.protect_data = false;
                self.reply(200, "PROT now Clear.");
            }
            "S" | "E" => self.reply(536, "PROT S and E are not supported."),
            _ => self.reply(504, "PROT P or PROT C."),
        }
    }

    fn user(&mut self, cmd: &Command<'_>) {
        let Some(name) = self.arg_str(cmd) else {
            return;
        };
        if name.is_empty() {
            return self.reply(501, "USER needs a name.");
        }
        if self.config.require_tls && !self.tls {
            return self.reply(530, "TLS required: send AUTH TLS first.");
        }
        if matches!(self.login, Login::In(_)) {
            return self.reply(530, "Already logged in.");
        }
        let text = if self.users.is_anonymous(name) {
            "Anonymous login ok, send your complete email address as your password."
        } else {
            "Please specify the password."
        };
        self.login = Login::NeedPass(name.to_string());
        self.reply(331, text);
    }

    fn pass(&mut self, cmd: &Command<'_>, now: Instant) {
        let name = match &self.login {
            Login::NeedPass(name) => name.clone(),
            Login::In(_) => return self.reply(230, "Already logged in."),
            Login::NeedUser => return self.reply(503, "Login with USER first."),
        };
        if self.users.is_anonymous(&name) {
            // No password to check: answered at once.
            let user = self.users.get(&name).cloned();
            return self.log_in(user, now);
        }
        let password = cmd.arg.unwrap_or(b"").to_vec();
        self.check_password(name, password, now);
    }

    /// Starts an argon2 check (unknown names get one too, so that the time
    /// taken tells nothing) where the driver may block; the answer comes to
    /// `handle_computed`. Checks are bounded per server and per address by
    /// the login gate: without a place, the session waits (holding nothing)
    /// and tries again, so one address flooding bad logins delays only
    /// itself.
    fn check_password(&mut self, name: String, password: Vec<u8>, now: Instant) {
        let Some(permit) = self.gate.try_acquire(self.info.peer.ip()) else {
            self.awaiting = Some(Awaiting::Gate {
                name,
                password,
                retry_at: now + LOGIN_RETRY,
            });
            return;
        };
        let users = Arc::clone(&self.users);
        self.awaiting = Some(Awaiting::Login);
        self.requests
            .push_back(Request::Compute(Work::new(move || -> Computed {
                let user = users.authenticate(&name, &password).cloned();
                drop::<Permit>(permit);
                Box::new(user)
            })));
    }

    /// Logs `user` in (`None`: the name or password was wrong).
    fn log_in(&mut self, user: Option<User>, now: Instant) {
        let Some(user) = user else {
            return self.login_failed(now);
        };
        let home = match VPath::resolve(&VPath::root(), user.home.as_bytes()) {
            Ok(h) => h,
            Err(_) => return self.login_failed(now),
        };
        let home_root = if home.is_root() {
            Ok(Arc::clone(&self.root))
        } else {
            self.root.subroot(&home).map(Arc::new)
        };
        match home_root {
            Ok(root) => {
                self.login = Login::In(LoggedIn {
                    name: user.name.clone(),
                    perms: user.perms,
                    root,
                });
                self.cwd = VPath::root();
                self.reply(230, "Login successful.");
            }
            Err(e) => {
                crate::log::warn(format_args!(
                    "ftp: home {} of {} unavailable: {e}",
                    user.home, user.name
                ));
                self.login = Login::NeedUser;
                self.reply(530, "Login incorrect: home directory unavailable.");
            }
        }
    }

    fn login_failed(&mut self, now: Instant) {
        self.failures += 1;
        self.login = Login::NeedUser;
        if self.failures >= MAX_LOGIN_FAILURES {
            crate::log::info(format_args!(
                "ftp: {} failed to log in {} times; closing",
                self.info.peer, self.failures
            ));
            return self.close_with(421, "Too many failed logins.", now);
        }
        self.reply(530, "Login incorrect.");
        self.phase = Phase::Penalty(now + LOGIN_FAILURE_DELAY);
    }

    fn user_root(&self) -> (&Root, Perms) {
        match &self.login {
            Login::In(u) => (&u.root, u.perms),
            _ => (&self.root, Perms::default()),
        }
    }

    /// Resolves the argument as a path, answering 553 (and returning None)
    /// when it is not one.
    fn path_arg(&mut self, cmd: &Command<'_>) -> Option<VPath> {
        let arg = cmd.arg.unwrap_or(b"");
        if arg.is_empty() {
            self.reply(501, "A path is needed.");
            return None;
        }
        match VPath::resolve(&self.cwd, arg) {
            Ok(p) => Some(p),
            Err(e) => {
                let text = format!("Bad file name: {e}.");
                self.reply(553, &text);
                None
            }
        }
    }

    fn fs_error(&mut self, code: u16, e: &io::Error) {
        use std::io::ErrorKind::*;
        let text = match e.kind() {
            NotFound => "No such file or directory.",
            PermissionDenied => "Permission denied.",
            AlreadyExists => "File exists.",
            DirectoryNotEmpty => "Directory not empty.",
            NotADirectory => "Not a directory.",
            IsADirectory => "Is a directory.",
            ReadOnlyFilesystem => "Read-only file system.",
            InvalidFilename => "File name too long.",
            StorageFull => return self.reply(452, "Insufficient storage space."),
            QuotaExceeded => return self.reply(552, "Disk quota exceeded."),
            FileTooLarge => return self.reply(552, "File too large."),
            InvalidInput if e.to_string().starts_with("restart position") => {
                // RFC 3659 §5.4: the restart marker does not fit the file.
                return self.reply(554, "Restart position past the end of the file.");
            }
            _ if crate::root::is_not_plain_file(e) => "Not a plain file.",
            _ => {
                crate::log::warn(format_args!("ftp: {}: {e}", self.info.peer));
                "Operation failed."
            }
        };
        self.reply(code, text);
    }

    fn cwd(&mut self, cmd: &Command<'_>) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, _) = self.user_root();
        match root.stat(&path) {
            Ok(m) if matches!(m.kind, Kind::Dir) => {
                self.cwd = path;
                self.reply(250, "Directory successfully changed.");
            }
            Ok(_) => self.reply(550, "Not a directory."),
            Err(e) => self.fs_error(550, &e),
        }
    }

    fn port(&mut self, cmd: &Command<'_>) {
        if self.epsv_all {
            return self.reply(503, "EPSV ALL in effect: use EPSV.");
        }
        let arg = cmd.arg.unwrap_or(b"");
        let addr = if cmd.verb == Verb::Port {
            wire::parse_port(arg).map(SocketAddr::V4)
        } else {
            wire::parse_eprt(arg)
        };
        let addr = match addr {
            Ok(addr) => addr,
            Err(e) => {
                let (code, text) = e.reply();
                return self.reply(code, text);
            }
        };
        // RFC 2577: data connections only to the client itself, never to a
        // privileged port (the FTP bounce attack).
        if !same_ip(addr.ip(), self.info.peer.ip()) || addr.port() < 1024 {
            crate::log::warn(format_args!(
                "ftp: {} asked for a data connection to {addr}; refused",
                self.info.peer
            ));
            return self.reply(
                500,
                "Illegal PORT command: only your own address, ports 1024 and up.",
            );
        }
        self.abort_data();
        self.data = Data::Active(addr);
        self.reply(200, "PORT command successful. Consider using PASV.");
    }

    fn passive(&mut self, style: PassiveStyle) {
        if style == PassiveStyle::Pasv && self.epsv_all {
            return self.reply(503, "EPSV ALL in effect: use EPSV.");
        }
        let local = self.info.local.ip().to_canonical();
        if style == PassiveStyle::Pasv && !local.is_ipv4() && self.config.masquerade.is_none() {
            return self.reply(522, "PASV needs IPv4; use EPSV.");
        }
        self.abort_data();
        let id = self.new_id();
        self.requests.push_back(Request::Listen {
            id,
            ip: self.info.local.ip(),
            ports: self.config.passive_ports,
            allow_from: Some(self.info.peer.ip()),
        });
        self.data = Data::Binding(id, style);
    }

    /// Whether a data connection is set up for a transfer; if not, `425`
    /// (before anything is opened or created).
    fn data_ready(&mut self) -> bool {
        match self.data {
            Data::Passive(_) | Data::Active(_) => true,
            Data::None | Data::Binding(..) => {
                self.reply(425, "Use PORT or PASV first.");
                false
            }
        }
    }

    fn start_transfer(
        &mut self,
        what: &'static str,
        path: String,
        job: Request,
        upload: Option<Upload>,
        opening: &str,
        now: Instant,
    ) {
        if self.config.require_tls && !self.protect_data {
            if let Some(up) = upload {
                self.user_root().0.discard_upload(up);
            }
            return self.reply(521, "Data connections must be encrypted: send PROT P.");
        }
        let id = match std::mem::replace(&mut self.data, Data::None) {
            Data::Passive(id) => id,
            Data::Active(addr) => {
                let id = self.new_id();
                self.requests.push_back(Request::Connect { id, addr });
                id
            }
            other => {
                self.data = other;
                if let Some(up) = upload {
                    self.user_root().0.discard_upload(up);
                }
                return self.reply(425, "Use PORT or PASV first.");
            }
        };
        self.reply(150, opening);
        if self.protect_data {
            // TLS on the data connection, its handshake before the job.
            self.requests.push_back(Request::Secure { id });
        }
        // The driver holds the job until the data connection is up (and a
        // passive one is accepted only once it has a job).
        self.requests.push_back(with_id(job, id));
        self.transfer = Some(Transfer {
            id,
            what,
            path,
            connected: false,
            upload,
            started: now,
            aborting: None,
            check_at: None,
            moved_at: now,
            seen: 0,
            listing: None,
        });
    }

    fn retr(&mut self, cmd: &Command<'_>, rest: u64, now: Instant) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (_, perms) = self.user_root();
        if !perms.read {
            return self.reply(550, "Permission denied.");
        }
        if !self.data_ready() {
            return;
        }
        let (root, _) = self.user_root();
        let (file, meta) = match root.open_read(&path) {
            Ok(x) => x,
            Err(e) => return self.fs_error(550, &e),
        };
        let offset = rest.min(meta.size);
        let transform = if self.ascii {
            Transform::LfToCrlf
        } else {
            Transform::None
        };
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        let opening = format!(
            "Opening {mode} mode data connection for {} ({} bytes).",
            path, meta.size
        );
        let job = Request::SendFile {
            id: 0,
            file,
            offset,
            end: Some(meta.size),
            transform,
        };
        self.start_transfer("RETR", path.to_string(), job, None, &opening, now);
    }

    fn store(&mut self, cmd: &Command<'_>, how: Store, rest: u64, now: Instant) {
        let path = if how == Store::Unique && cmd.arg.is_none_or(|a| a.is_empty()) {
            match self.cwd.join("upload") {
                Ok(p) => p,
                Err(_) => return self.reply(553, "Bad file name."),
            }
        } else {
            let Some(p) = self.path_arg(cmd) else { return };
            p
        };
        let (_, perms) = self.user_root();
        let allowed = match how {
            Store::Append => perms.append || perms.write,
            _ => perms.write,
        };
        if !allowed {
            return self.reply(550, "Permission denied.");
        }
        // Nothing is created or opened until a data connection is set up.
        if !self.data_ready() {
            return;
        }
        let (root, _) = self.user_root();
        let transform = if self.ascii {
            Transform::CrlfToLf
        } else {
            Transform::None
        };
        let opened = match how {
            Store::Replace if rest > 0 => root
                .open_write_at(&path, rest)
                .map(|f| (path.clone(), f, None)),
            Store::Replace => root.create_upload(&path).and_then(|up| {
                let f = up.try_clone_file()?;
                Ok((path.clone(), f, Some(up)))
            }),
            Store::Append => root.open_append(&path).map(|f| (path.clone(), f, None)),
            Store::Unique => root.create_unique(&path).map(|(p, f)| (p, f, None)),
        };
        let (path, file, upload) = match opened {
            Ok(x) => x,
            Err(e) => return self.fs_error(553, &e),
        };
        let opening = if how == Store::Unique {
            format!("FILE: {}", path.file_name().unwrap_or(""))
        } else {
            format!("Ok to send data for {path}.")
        };
        let job = Request::ReceiveFile {
            id: 0,
            file,
            transform,
        };
        let what = match how {
            Store::Replace => "STOR",
            Store::Append => "APPE",
            Store::Unique => "STOU",
        };
        self.start_transfer(what, path.to_string(), job, upload, &opening, now);
    }

    fn list(&mut self, cmd: &Command<'_>) {
        let (_, perms) = self.user_root();
        if !perms.list {
            return self.reply(550, "Permission denied.");
        }
        // `LIST -la dir`: options are accepted and ignored, as ls-style
        // servers do; what is left is the path.
        let arg = cmd.arg.unwrap_or(b"");
        let arg = strip_list_options(arg);
        let path = if arg.is_empty() {
            self.cwd.clone()
        } else {
            match VPath::resolve(&self.cwd, arg) {
                Ok(p) => p,
                Err(e) => {
                    let text = format!("Bad file name: {e}.");
                    return self.reply(553, &text);
                }
            }
        };
        if !self.data_ready() {
            return;
        }
        let format = match cmd.verb {
            Verb::Nlst => Format::Names,
            Verb::Mlsd => Format::Facts(perms),
            _ => Format::Long,
        };
        let root = self.user_root_arc();
        let dir_only = cmd.verb == Verb::Mlsd;
        let p = path.clone();
        self.awaiting = Some(Awaiting::ListOpen {
            verb: cmd.verb,
            path,
        });
        self.requests
            .push_back(Request::Compute(Work::new(move || -> Computed {
                Box::new(listing::open(&root, &p, format, dir_only))
            })));
    }

    /// The first batch of a listing is made: `150` and its chunk, or the
    /// error.
    fn listing_opened(&mut self, verb: Verb, path: VPath, opened: Opened, now: Instant) {
        let Batch { chunk, rest } = match opened {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory && verb == Verb::Mlsd => {
                return self.reply(501, "MLSD needs a directory.")
            }
            Err(e) => return self.fs_error(550, &e),
        };
        let what = match verb {
            Verb::Nlst => "NLST",
            Verb::Mlsd => "MLSD",
            _ => "LIST",
        };
        let more = rest.is_some();
        let job = Request::SendBytes {
            id: 0,
            data: chunk,
            more,
        };
        self.start_transfer(
            what,
            path.to_string(),
            job,
            None,
            "Here comes the directory listing.",
            now,
        );
        if let Some(t) = &mut self.transfer {
            t.listing = rest;
        }
    }

    /// The user's root, shared, for work done off the session.
    fn user_root_arc(&self) -> Arc<Root> {
        match &self.login {
            Login::In(u) => Arc::clone(&u.root),
            _ => Arc::clone(&self.root),
        }
    }

    fn mlst(&mut self, cmd: &Command<'_>) {
        let path = if cmd.arg.is_none_or(|a| a.is_empty()) {
            self.cwd.clone()
        } else {
            let Some(p) = self.path_arg(cmd) else { return };
            p
        };
        let (root, perms) = self.user_root();
        match root.stat(&path) {
            Ok(meta) => {
                let name = path.file_name().unwrap_or("/").to_string();
                let e = listing::entry(&name, &meta);
                let perm = perms.mlst_perm(matches!(meta.kind, Kind::Dir));
                let mut facts = Vec::new();
                wire::mlsx_facts(&mut facts, &e, &perm, path.as_str());
                let facts = String::from_utf8_lossy(&facts);
                let line = facts.trim_end();
                let first = format!("Listing {path}");
                let out = self.out.buf();
                wire::reply_multi(out, 250, &first, &[line.trim_start()], "End");
            }
            Err(e) => self.fs_error(550, &e),
        }
    }

    fn size(&mut self, cmd: &Command<'_>) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, _) = self.user_root();
        match root.stat(&path) {
            Ok(m) if matches!(m.kind, Kind::File) => {
                let text = m.size.to_string();
                self.reply(213, &text);
            }
            Ok(_) => self.reply(550, "Not a plain file."),
            Err(e) => self.fs_error(550, &e),
        }
    }

    fn mdtm(&mut self, cmd: &Command<'_>) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, _) = self.user_root();
        match root.stat(&path) {
            Ok(m) if matches!(m.kind, Kind::File) => {
                let text = wire::mdtm(m.modified);
                self.reply(213, &text);
            }
            Ok(_) => self.reply(550, "Not a plain file."),
            Err(e) => self.fs_error(550, &e),
        }
    }

    fn modify(&mut self, cmd: &Command<'_>, change: Change) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, perms) = self.user_root();
        let allowed = match change {
            Change::Delete => perms.delete,
            Change::Mkdir | Change::Rmdir => perms.mkdir,
        };
        if !allowed {
            return self.reply(550, "Permission denied.");
        }
        let result = match change {
            Change::Delete => root.remove_file(&path),
            Change::Mkdir => root.mkdir(&path),
            Change::Rmdir => root.rmdir(&path),
        };
        match (result, change) {
            (Ok(()), Change::Mkdir) => {
                let text = format!("{} created.", wire::quote_path(path.as_str()));
                self.reply(257, &text);
            }
            (Ok(()), Change::Delete) => self.reply(250, "Delete operation successful."),
            (Ok(()), Change::Rmdir) => self.reply(250, "Remove directory operation successful."),
            (Err(e), _) => self.fs_error(550, &e),
        }
    }

    fn rnfr(&mut self, cmd: &Command<'_>) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, perms) = self.user_root();
        if !perms.rename {
            return self.reply(550, "Permission denied.");
        }
        match root.stat(&path) {
            Ok(_) => {
                self.rename_from = Some(path);
                self.reply(350, "Ready for RNTO.");
            }
            Err(e) => self.fs_error(550, &e),
        }
    }

    fn rnto(&mut self, cmd: &Command<'_>) {
        let Some(from) = self.rename_from.take() else {
            return self.reply(503, "RNFR required first.");
        };
        let Some(to) = self.path_arg(cmd) else { return };
        let (root, _) = self.user_root();
        match root.rename(&from, &to) {
            Ok(()) => self.reply(250, "Rename successful."),
            Err(e) => self.fs_error(553, &e),
        }
    }

    fn stat(&mut self, cmd: &Command<'_>) {
        if cmd.arg.is_none_or(|a| a.is_empty()) || self.transfer.is_some() {
            let user = match &self.login {
                Login::In(u) => u.name.clone(),
                _ => "(not logged in)".to_string(),
            };
            let lines = [
                format!("Connected to {}", self.info.local),
                format!("Logged in as {user}"),
                format!("TYPE: {}", if self.ascii { "ASCII" } else { "BINARY" }),
                match &self.transfer {
                    Some(t) => format!("{} {} in progress", t.what, t.path),
                    None => "No data connection".to_string(),
                },
            ];
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let out = self.out.buf();
            wire::reply_multi(out, 211, "muse FTP server status:", &refs, "End of status");
            return;
        }
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (_, perms) = self.user_root();
        if !perms.list {
            return self.reply(550, "Permission denied.");
        }
        let root = self.user_root_arc();
        self.awaiting = Some(Awaiting::Stat);
        self.requests
            .push_back(Request::Compute(Work::new(move || -> Computed {
                Box::new(listing::stat_lines(&root, &path))
            })));
    }

    fn stat_listed(&mut self, listed: io::Result<(Vec<u8>, usize)>) {
        let (body, more) = match listed {
            Ok(x) => x,
            Err(e) => return self.fs_error(550, &e),
        };
        let text = String::from_utf8_lossy(&body);
        let mut lines: Vec<&str> = text.lines().collect();
        let note = format!("... and {more} more entries: use LIST for them all.");
        if more > 0 {
            lines.push(&note);
        }
        let out = self.out.buf();
        wire::reply_multi(out, 213, "Status follows:", &lines, "End of status");
    }

    fn abor(&mut self) {
        match &mut self.transfer {
            Some(t) if t.aborting.is_none() => {
                t.aborting = Some(Abort::Client);
                let id = t.id;
                self.requests.push_back(Request::Abort { id });
            }
            Some(_) => {}
            None => {
                self.abort_data();
                self.reply(226, "No transfer to abort.");
            }
        }
    }

    /// Aborts the transfer under way for `why` (not the client's ABOR).
    fn abort_transfer(&mut self, why: Abort) {
        if let Some(t) = &mut self.transfer {
            if t.aborting.is_none() {
                t.aborting = Some(why);
                let id = t.id;
                self.requests.push_back(Request::Abort { id });
            }
        }
    }

    fn on_channel(&mut self, event: ChannelEvent, now: Instant) {
        let id = event.id();
        // The data connection being set up.
        match (&self.data, &event) {
            (Data::Binding(bid, style), ChannelEvent::Listening { addr, .. }) if *bid == id => {
                let style = *style;
                self.data = Data::Passive(id);
                let text = match style {
                    PassiveStyle::Epsv => wire::format_epsv(addr.port()),
                    PassiveStyle::Pasv => {
                        let ip = self.config.masquerade.unwrap_or(addr.ip()).to_canonical();
                        match ip {
                            IpAddr::V4(v4) => {
                                wire::format_pasv(std::net::SocketAddrV4::new(v4, addr.port()))
                            }
                            IpAddr::V6(_) => {
                                self.requests.push_back(Request::Abort { id });
                                self.data = Data::None;
                                return self.reply(522, "PASV needs IPv4; use EPSV.");
                            }
                        }
                    }
                };
                let code = if style == PassiveStyle::Epsv {
                    229
                } else {
                    227
                };
                return self.reply(code, &text);
            }
            (Data::Binding(bid, _), ChannelEvent::Failed { .. }) if *bid == id => {
                self.data = Data::None;
                return self.reply(425, "Cannot open a passive data connection.");
            }
            (Data::Passive(pid), ChannelEvent::Failed { .. } | ChannelEvent::Closed { .. })
                if *pid == id =>
            {
                self.data = Data::None;
                return;
            }
            _ => {}
        }
        // The transfer under way.
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.id != id {
            return;
        }
        match event {
            ChannelEvent::Connected { .. } => {
                t.connected = true;
                t.moved_at = now;
                t.check_at = self.config.data_timeout.map(|d| now + check_step(d));
            }
            ChannelEvent::Listening { .. } => {}
            ChannelEvent::Progress { bytes, .. } => {
                // A listing whose next batch is being made is not stalled.
                let making = matches!(self.awaiting, Some(Awaiting::ListMore));
                if bytes != t.seen || making {
                    t.seen = bytes;
                    t.moved_at = now;
                }
                let timeout = self.config.data_timeout;
                if timeout.is_some_and(|d| now >= t.moved_at + d) && t.aborting.is_none() {
                    // Nothing moved for a whole data timeout.
                    self.abort_transfer(Abort::Stalled);
                } else {
                    t.check_at = timeout.map(|d| now + check_step(d));
                }
            }
            ChannelEvent::Sent { .. } => {
                // A listing chunk is out: make the next one.
                if let Some(rest) = t.listing.take() {
                    self.awaiting = Some(Awaiting::ListMore);
                    self.requests
                        .push_back(Request::Compute(Work::new(move || -> Computed {
                            Box::new(rest.next_batch())
                        })));
                }
            }
            ChannelEvent::Done { bytes, .. } => {
                let mut t = self.transfer.take().expect("checked above");
                let committed = match t.upload.take() {
                    Some(up) => self
                        .user_root()
                        .0
                        .commit_upload(up)
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                match committed {
                    Ok(()) => {
                        self.log_transfer(&t, bytes, now, "ok");
                        self.reply(226, "Transfer complete.");
                    }
                    Err(e) => {
                        self.log_transfer(&t, bytes, now, "failed to store");
                        crate::log::warn(format_args!("ftp: storing {}: {e}", t.path));
                        self.reply(451, "Could not store the file.");
                    }
                }
            }
            ChannelEvent::Failed { bytes, error, .. } => {
                let mut t = self.transfer.take().expect("checked above");
                let upload = t.upload.take();
                if let Some(up) = upload {
                    self.user_root().0.discard_upload(up);
                }
                self.log_transfer(&t, bytes, now, "failed");
                use std::io::ErrorKind::*;
                match error {
                    _ if !t.connected => self.reply(425, "Cannot open data connection."),
                    PermissionDenied if self.protect_data => self.reply(
                        522,
                        "Data connection refused: it must resume the control connection's TLS session.",
                    ),
                    InvalidData if self.protect_data => {
                        self.reply(426, "TLS failed on the data connection; transfer aborted.")
                    }
                    StorageFull => self.reply(452, "Insufficient storage space."),
                    QuotaExceeded => self.reply(552, "Disk quota exceeded."),
                    FileTooLarge => self.reply(552, "File too large."),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                    | WriteZero | TimedOut => {
                        self.reply(426, "Connection closed; transfer aborted.")
                    }
                    _ => self.reply(451, "Local error in processing; transfer aborted."),
                }
            }
            ChannelEvent::Aborted { bytes, .. } => self.end_aborted(bytes, now),
            ChannelEvent::Closed { .. } => self.end_aborted(0, now),
        }
    }

    /// The transfer was stopped: by ABOR (`426` then `226`), or because its
    /// data connection never came or stalled.
    fn end_aborted(&mut self, bytes: u64, now: Instant) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        if let Some(up) = t.upload.take() {
            self.user_root().0.discard_upload(up);
        }
        match t.aborting {
            Some(Abort::NoConnection) => {
                self.log_transfer(&t, bytes, now, "no data connection");
                self.reply(425, "Cannot open data connection.");
            }
            Some(Abort::Stalled) => {
                self.log_transfer(&t, bytes, now, "data connection timed out");
                self.reply(426, "Data connection timed out; transfer aborted.");
            }
            Some(Abort::Client) | None => {
                self.log_transfer(&t, bytes, now, "aborted");
                self.reply(426, "Connection closed; transfer aborted.");
                self.reply(226, "Abort successful.");
            }
        }
    }

    fn log_transfer(&self, t: &Transfer, bytes: u64, now: Instant, how: &str) {
        let user = match &self.login {
            Login::In(u) => u.name.as_str(),
            _ => "-",
        };
        crate::log::info(format_args!(
            "ftp transfer: user={user} peer={} {} path={} bytes={bytes} seconds={:.3} {how}",
            self.info.peer,
            t.what,
            t.path,
            now.saturating_duration_since(t.started).as_secs_f64()
        ));
    }

    /// The idle deadline, while it runs: not during a transfer (which has
    /// its own deadlines), a computation, or the last words' linger.
    fn idle_deadline(&self) -> Option<Instant> {
        if self.transfer.is_some() || self.awaiting.is_some() || self.is_closing() {
            return None;
        }
        self.config.idle_timeout.map(|t| self.last_activity + t)
    }

    /// The login deadline, until logged in.
    fn login_deadline(&self) -> Option<Instant> {
        match self.login {
            Login::In(_) => None,
            _ if self.is_closing() => None,
            _ => Some(self.login_by),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Replace,
    Append,
    Unique,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Delete,
    Mkdir,
    Rmdir,
}

/// Gives a job request the channel id chosen when the data connection was.
fn with_id(job: Request, id: ChannelId) -> Request {
    match job {
        Request::SendFile {
            file,
            offset,
            end,
            transform,
            ..
        } => Request::SendFile {
            id,
            file,
            offset,
            end,
            transform,
        },
        Request::SendBytes { data, more, .. } => Request::SendBytes { id, data, more },
        Request::ReceiveFile {
            file, transform, ..
        } => Request::ReceiveFile {
            id,
            file,
            transform,
        },
        other => other,
    }
}

/// Skips leading `ls` options (`-la`, `-a -l`) in a LIST argument.
fn strip_list_options(mut arg: &[u8]) -> &[u8] {
    loop {
        while arg.first() == Some(&b' ') {
            arg = &arg[1..];
        }
        if arg.first() == Some(&b'-') {
            let end = arg.iter().position(|&b| b == b' ').unwrap_or(arg.len());
            arg = &arg[end..];
        } else {
            return arg;
        }
    }
}

impl Session for FtpSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.lines.push(data);
        self.process_lines(now);
    }

    fn handle_eof(&mut self, now: Instant) {
        // End of input is not an abort: a transfer under way finishes (and
        // is answered), and every complete line already read is answered,
        // then the session closes (RFC 959: as QUIT would).
        self.input_ended = true;
        self.process_lines(now);
    }

    fn handle_tls(&mut self, now: Instant) {
        self.tls = true;
        self.tls_pending = false;
        // Whatever arrived behind `AUTH TLS` in clear is not a command
        // (a client must wait for the `234`).
        self.lines = LineReader::new();
        self.process_lines(now);
    }

    fn handle_urgent(&mut self, _now: Instant) {
        // The Synch of an ABOR: the command itself follows in line.
    }

    fn handle_channel(&mut self, event: ChannelEvent, now: Instant) {
        self.on_channel(event, now);
        if self.transfer.is_none() {
            self.last_activity = now;
        }
        self.process_lines(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Closing(by) = self.phase {
            if now >= by {
                self.phase = Phase::Gone;
            }
            return;
        }
        if let Phase::Penalty(until) = self.phase {
            if now >= until {
                self.phase = Phase::Commands;
            }
        }
        if let Some(t) = &mut self.transfer {
            if t.aborting.is_none() {
                if !t.connected && now >= t.started + DATA_CONNECT_TIMEOUT {
                    self.abort_transfer(Abort::NoConnection);
                } else if t.check_at.is_some_and(|at| now >= at) {
                    // Answered at once by `Progress`, which compares.
                    t.check_at = None;
                    let id = t.id;
                    self.requests.push_back(Request::Progress { id });
                }
            }
        }
        if let Some(Awaiting::Gate { retry_at, .. }) = &self.awaiting {
            if now >= *retry_at {
                if let Some(Awaiting::Gate { name, password, .. }) = self.awaiting.take() {
                    self.check_password(name, password, now);
                }
            }
        }
        if self.login_deadline().is_some_and(|t| now >= t) {
            crate::log::info(format_args!(
                "ftp: {} did not log in within {:?}; closing",
                self.info.peer, LOGIN_TIMEOUT
            ));
            return self.close_with(421, "Login timeout.", now);
        }
        if self.idle_deadline().is_some_and(|t| now >= t) {
            return self.close_with(421, "Timeout.", now);
        }
        self.process_lines(now);
    }

    fn handle_shutdown(&mut self, now: Instant) {
        // At the next clean boundary: now if nothing is under way, else
        // once the transfer or computation ends.
        self.shutting_down = true;
        self.settle(now);
    }

    fn handle_shutdown_expired(&mut self, now: Instant) {
        if self.is_closing() {
            return;
        }
        if self.transfer.is_some() {
            self.reply(426, "Server shutting down; transfer aborted.");
        }
        self.close_with(421, "Server shutting down.", now);
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    fn poll_output(&self) -> Output<'_> {
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        if n > 0 && !self.is_closing() {
            // A client reading its replies is not idle.
            self.last_activity = now;
        }
        if self.out.len() <= MAX_OUTPUT {
            // Go on with commands held while the output was full.
            self.process_lines(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let transfer = self.transfer.as_ref().filter(|t| t.aborting.is_none());
        let connect = transfer
            .filter(|t| !t.connected)
            .map(|t| t.started + DATA_CONNECT_TIMEOUT);
        let progress = transfer.and_then(|t| t.check_at);
        let phase = match self.phase {
            Phase::Penalty(at) | Phase::Closing(at) => Some(at),
            Phase::Commands | Phase::Gone => None,
        };
        let retry = match &self.awaiting {
            Some(Awaiting::Gate { retry_at, .. }) => Some(*retry_at),
            _ => None,
        };
        [
            self.idle_deadline(),
            self.login_deadline(),
            phase,
            connect,
            progress,
            retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_computed(&mut self, result: Computed, now: Instant) {
        let Some(awaiting) = self.awaiting.take() else {
            return;
        };
        match awaiting {
            Awaiting::Login => {
                let user = result.downcast::<Option<User>>().map_or(None, |u| *u);
                self.log_in(user, now);
            }
            Awaiting::ListOpen { verb, path } => {
                if let Ok(opened) = result.downcast::<Opened>() {
                    self.listing_opened(verb, path, *opened, now);
                }
            }
            Awaiting::ListMore => {
                let Ok(batch) = result.downcast::<Batch>() else {
                    return;
                };
                let Batch { chunk, rest } = *batch;
                // An ABOR may have ended the transfer meanwhile.
                if let Some(t) = &mut self.transfer {
                    t.listing = rest;
                    let more = t.listing.is_some();
                    let id = t.id;
                    self.requests.push_back(Request::SendBytes {
                        id,
                        data: chunk,
                        more,
                    });
                }
            }
            Awaiting::Stat => {
                if let Ok(listed) = result.downcast::<io::Result<(Vec<u8>, usize)>>() {
                    self.stat_listed(*listed);
                }
            }
            Awaiting::Gate { .. } => {}
        }
        self.last_activity = now;
        self.process_lines(now);
    }

    fn wants_read(&self) -> bool {
        !self.input_ended
            && self.taking_commands()
            && self.out.len() <= MAX_OUTPUT
            && (self.transfer.is_none() || self.deferred.len() < MAX_DEFERRED)
            && self.lines.buffered() <= wire::MAX_LINE
    }

    fn wants_close(&self) -> bool {
        self.is_closing() && self.requests.is_empty()
    }

    fn wants_close_now(&self) -> bool {
        self.phase == Phase::Gone
    }

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
    }
}
