//! One FTP control connection as a sans-IO state machine (DESIGN.md §4.3).
//!
//! The session reads command lines, answers with replies, and asks its
//! driver for the data connection ([`Request::Listen`] for PASV/EPSV,
//! [`Request::Connect`] for PORT/EPRT) and for the transfer over it
//! ([`Request::SendFile`], [`Request::SendBytes`], [`Request::ReceiveFile`]).
//! It never touches a socket: the driver owns the data connection, so a
//! slow data reader stalls only its own transfer, never a reactor. Files are
//! reached only through the user's [`Root`].
//!
//! A transfer command goes: `150` at once; the job is handed to the driver
//! as soon as the data connection is up; `226` when the driver reports
//! `Done`, `425`/`426` when it fails. `ABOR` (with or without Telnet
//! IP/Synch) stops it: `426` then `226`. While a transfer runs, only `ABOR`,
//! `STAT`, `NOOP` and `QUIT` are answered; other commands wait their turn.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::drivers::channel::same_ip;
use crate::protocols::ftp::users::{Perms, User, Users};
use crate::protocols::ftp::wire::{self, Command, EpsvArg, LineReader, ListEntry, Verb};
use crate::protocols::ftp::FtpConfig;
use crate::root::{Kind, Meta, Root, Upload, VPath};
use crate::session::{
    ChannelEvent, ChannelId, Computed, ConnInfo, Outbox, Request, Session, Transform, Work,
};

/// Failed logins before the connection is closed (with `421`).
pub const MAX_LOGIN_FAILURES: u32 = 3;
/// How long the session stops listening after a failed login: slows
/// password guessing to a few tries per second per connection.
pub const LOGIN_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Commands received during a transfer and kept for after it; more means a
/// client that does not wait for replies, and the session stops reading.
const MAX_DEFERRED: usize = 16;
/// Reply bytes buffered before the session stops reading (a client that
/// sends commands without reading replies).
const MAX_OUTPUT: usize = 64 * 1024;
/// How long a transfer waits for its data connection (the client's connect
/// in passive mode, ours in active mode) before giving up with `425`.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A transfer under way (150 sent).
struct Transfer {
    id: ChannelId,
    what: &'static str,
    path: String,
    /// The data connection is up.
    connected: bool,
    upload: Option<Upload>,
    started: Instant,
    aborting: bool,
    /// Aborted because the data connection never came up.
    timed_out: bool,
}

/// The FTP protocol's session.
pub struct FtpSession {
    root: Arc<Root>,
    users: Arc<Users>,
    config: Arc<FtpConfig>,
    info: ConnInfo,
    lines: LineReader,
    deferred: VecDeque<Vec<u8>>,
    out: Outbox,
    requests: VecDeque<Request>,
    login: Login,
    failures: u32,
    quiet_until: Option<Instant>,
    /// A password is being checked (off the event loop: argon2 takes
    /// milliseconds); commands wait until it is answered.
    verifying: bool,
    cwd: VPath,
    ascii: bool,
    rest: u64,
    rename_from: Option<VPath>,
    epsv_all: bool,
    data: Data,
    transfer: Option<Transfer>,
    next_id: ChannelId,
    last_activity: Instant,
    closing: bool,
    eof: bool,
}

impl FtpSession {
    /// A session for a new control connection; the greeting is queued.
    pub fn new(
        root: Arc<Root>,
        users: Arc<Users>,
        config: Arc<FtpConfig>,
        info: ConnInfo,
        now: Instant,
    ) -> FtpSession {
        let mut s = FtpSession {
            root,
            users,
            config,
            info,
            lines: LineReader::new(),
            deferred: VecDeque::new(),
            out: Outbox::with_capacity(256),
            requests: VecDeque::new(),
            login: Login::NeedUser,
            failures: 0,
            quiet_until: None,
            verifying: false,
            cwd: VPath::root(),
            ascii: false,
            rest: 0,
            rename_from: None,
            epsv_all: false,
            data: Data::None,
            transfer: None,
            next_id: 0,
            last_activity: now,
            closing: false,
            eof: false,
        };
        s.reply(220, "muse FTP server ready.");
        s
    }

    fn reply(&mut self, code: u16, text: &str) {
        wire::reply(self.out.buf(), code, text);
    }

    fn close_with(&mut self, code: u16, text: &str) {
        self.reply(code, text);
        self.closing = true;
        self.abort_data();
    }

    fn new_id(&mut self) -> ChannelId {
        self.next_id += 1;
        self.next_id
    }

    /// Drops whatever data connection is set up (not a running transfer).
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
                self.root_for_uploads().discard_upload(up);
            }
        }
    }

    fn root_for_uploads(&self) -> &Root {
        match &self.login {
            Login::In(u) => &u.root,
            _ => &self.root,
        }
    }

    fn process_lines(&mut self, now: Instant) {
        loop {
            if self.closing
                || self.out.len() > MAX_OUTPUT
                || self.quiet_until.is_some()
                || self.verifying
            {
                return;
            }
            // Commands held back during a transfer go first once it ends.
            if self.transfer.is_none() {
                if let Some(line) = self.deferred.pop_front() {
                    self.command_line(&line, now);
                    continue;
                }
            }
            match self.lines.next_line() {
                None => return,
                Some(Err(e)) => {
                    let (code, text) = e.reply();
                    self.reply(code, text);
                }
                Some(Ok(line)) => self.command_line(&line.bytes, now),
            }
        }
    }

    fn command_line(&mut self, line: &[u8], now: Instant) {
        let cmd = match wire::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                if self.transfer.is_some() {
                    return;
                }
                let (code, text) = e.reply();
                return self.reply(code, text);
            }
        };
        if self.transfer.is_some()
            && !matches!(cmd.verb, Verb::Abor | Verb::Stat | Verb::Noop | Verb::Quit)
        {
            if self.deferred.len() < MAX_DEFERRED {
                self.deferred.push_back(line.to_vec());
            }
            return;
        }
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
        let logged_in = matches!(self.login, Login::In(_));
        if !logged_in
            && !matches!(
                cmd.verb,
                User | Pass | Quit | Feat | Syst | Auth | Help | Noop
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
            Quit => {
                self.close_with(221, "Goodbye.");
            }
            Noop => self.reply(200, "NOOP ok."),
            Syst => self.reply(215, "UNIX Type: L8"),
            Feat => {
                let out = self.out.buf();
                wire::reply_multi(
                    out,
                    211,
                    "Features:",
                    &[
                        "EPRT",
                        "EPSV",
                        "MDTM",
                        "MLST type*;size*;modify*;perm*;unix.mode*;",
                        "PASV",
                        "REST STREAM",
                        "SIZE",
                        "TVFS",
                        "UTF8",
                    ],
                    "End",
                );
            }
            Help => {
                let out = self.out.buf();
                wire::reply_multi(
                    out,
                    214,
                    "The following commands are recognized.",
                    &[
                        "ABOR ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD",
                        "MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REST RETR",
                        "RMD  RNFR RNTO SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD",
                        "XMKD XPWD XRMD",
                    ],
                    "Help OK.",
                );
            }
            Auth => self.reply(502, "TLS is not available on this server."),
            Pbsz | Prot => self.reply(503, "PBSZ/PROT need AUTH TLS first."),
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
                        self.rest = n;
                        let text = format!("Restart position accepted ({n}).");
                        self.reply(350, &text);
                    }
                    Err(_) => self.reply(501, "REST needs a byte offset."),
                }
            }
            Retr => self.retr(&cmd, now),
            Stor => self.store(&cmd, Store::Replace, now),
            Appe => self.store(&cmd, Store::Append, now),
            Stou => self.store(&cmd, Store::Unique, now),
            List | Nlst | Mlsd => self.list(&cmd, now),
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
        if arg.eq_ignore_ascii_case(value) {
            self.reply(200, ok);
        } else {
            self.reply(504, refusal);
        }
    }

    fn user(&mut self, cmd: &Command<'_>) {
        let Some(name) = self.arg_str(cmd) else {
            return;
        };
        if name.is_empty() {
            return self.reply(501, "USER needs a name.");
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
        // An argon2 check (unknown names get one too, so that the time
        // taken tells nothing) runs where the driver may block; the answer
        // comes to `handle_computed`.
        let users = Arc::clone(&self.users);
        let password = cmd.arg.unwrap_or(b"").to_vec();
        self.verifying = true;
        self.requests
            .push_back(Request::Compute(Work::new(move || -> Computed {
                Box::new(users.authenticate(&name, &password).cloned())
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
            return self.close_with(421, "Too many failed logins.");
        }
        self.reply(530, "Login incorrect.");
        self.quiet_until = Some(now + LOGIN_FAILURE_DELAY);
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

    fn fs_error(&mut self, code: u16, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        let text = match e.kind() {
            NotFound => "No such file or directory.",
            PermissionDenied => "Permission denied.",
            AlreadyExists => "File exists.",
            DirectoryNotEmpty => "Directory not empty.",
            NotADirectory => "Not a directory.",
            IsADirectory => "Is a directory.",
            _ => "Operation failed.",
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

    fn start_transfer(
        &mut self,
        what: &'static str,
        path: String,
        job: Request,
        upload: Option<Upload>,
        opening: &str,
        now: Instant,
    ) {
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
                    self.root_for_uploads().discard_upload(up);
                }
                return self.reply(425, "Use PORT or PASV first.");
            }
        };
        self.reply(150, opening);
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
            aborting: false,
            timed_out: false,
        });
        self.rest = 0;
    }

    fn retr(&mut self, cmd: &Command<'_>, now: Instant) {
        let Some(path) = self.path_arg(cmd) else {
            return;
        };
        let (root, perms) = self.user_root();
        if !perms.read {
            return self.reply(550, "Permission denied.");
        }
        let (file, meta) = match root.open_read(&path) {
            Ok(x) => x,
            Err(e) => return self.fs_error(550, &e),
        };
        let offset = self.rest.min(meta.size);
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

    fn store(&mut self, cmd: &Command<'_>, how: Store, now: Instant) {
        let path = if how == Store::Unique && cmd.arg.is_none_or(|a| a.is_empty()) {
            match self.cwd.join("upload") {
                Ok(p) => p,
                Err(_) => return self.reply(553, "Bad file name."),
            }
        } else {
            let Some(p) = self.path_arg(cmd) else { return };
            p
        };
        let (root, perms) = self.user_root();
        let allowed = match how {
            Store::Append => perms.append || perms.write,
            _ => perms.write,
        };
        if !allowed {
            return self.reply(550, "Permission denied.");
        }
        let rest = self.rest;
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

    fn list(&mut self, cmd: &Command<'_>, now: Instant) {
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
        let (root, perms) = self.user_root();
        let entries = match root.stat(&path) {
            Ok(m) if matches!(m.kind, Kind::Dir) => match root.list(&path) {
                Ok(list) => list
                    .into_iter()
                    .map(|e| (e.name, e.meta))
                    .collect::<Vec<_>>(),
                Err(e) => return self.fs_error(550, &e),
            },
            Ok(m) if cmd.verb != Verb::Mlsd => {
                vec![(path.file_name().unwrap_or("/").to_string(), m)]
            }
            Ok(_) => return self.reply(501, "MLSD needs a directory."),
            Err(e) => return self.fs_error(550, &e),
        };
        let wall = SystemTime::now();
        let mut body = Vec::with_capacity(64 * entries.len().max(1));
        for (name, meta) in &entries {
            let e = list_entry(name, meta);
            match cmd.verb {
                Verb::Nlst => {
                    body.extend_from_slice(name.as_bytes());
                    body.extend_from_slice(b"\r\n");
                }
                Verb::Mlsd => {
                    let perm = perms.mlst_perm(matches!(meta.kind, Kind::Dir));
                    wire::mlsx_facts(&mut body, &e, &perm, name);
                }
                _ => wire::list_line(&mut body, &e, wall),
            }
        }
        let what = match cmd.verb {
            Verb::Nlst => "NLST",
            Verb::Mlsd => "MLSD",
            _ => "LIST",
        };
        let job = Request::SendBytes { id: 0, data: body };
        self.start_transfer(
            what,
            path.to_string(),
            job,
            None,
            "Here comes the directory listing.",
            now,
        );
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
                let e = list_entry(&name, &meta);
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
        let (root, perms) = self.user_root();
        if !perms.list {
            return self.reply(550, "Permission denied.");
        }
        let entries = match root.stat(&path) {
            Ok(m) if matches!(m.kind, Kind::Dir) => match root.list(&path) {
                Ok(list) => list
                    .into_iter()
                    .map(|e| (e.name, e.meta))
                    .collect::<Vec<_>>(),
                Err(e) => return self.fs_error(550, &e),
            },
            Ok(m) => vec![(path.file_name().unwrap_or("/").to_string(), m)],
            Err(e) => return self.fs_error(550, &e),
        };
        let wall = SystemTime::now();
        let mut body = Vec::new();
        for (name, meta) in &entries {
            wire::list_line(&mut body, &list_entry(name, meta), wall);
        }
        let text = String::from_utf8_lossy(&body);
        let lines: Vec<&str> = text.lines().collect();
        let out = self.out.buf();
        wire::reply_multi(out, 213, "Status follows:", &lines, "End of status");
    }

    fn abor(&mut self) {
        match &mut self.transfer {
            Some(t) if !t.aborting => {
                t.aborting = true;
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
            ChannelEvent::Connected { .. } => t.connected = true,
            ChannelEvent::Listening { .. } => {}
            ChannelEvent::Done { bytes, .. } => {
                self.last_activity = now;
                let mut t = self.transfer.take().expect("checked above");
                let committed = match t.upload.take() {
                    Some(up) => self
                        .root_for_uploads()
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
                if let Some(up) = t.upload.take() {
                    self.root_for_uploads().discard_upload(up);
                }
                self.log_transfer(&t, bytes, now, "failed");
                if t.connected {
                    self.reply(426, "Connection closed; transfer aborted.");
                } else {
                    let _ = error;
                    self.reply(425, "Cannot open data connection.");
                }
            }
            ChannelEvent::Aborted { bytes, .. } => self.end_aborted(bytes, now),
            ChannelEvent::Closed { .. } => self.end_aborted(0, now),
        }
    }

    /// The transfer was stopped by ABOR: `426` for it, `226` for the ABOR.
    fn end_aborted(&mut self, bytes: u64, now: Instant) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        if let Some(up) = t.upload.take() {
            self.root_for_uploads().discard_upload(up);
        }
        if t.timed_out {
            self.log_transfer(&t, bytes, now, "no data connection");
            return self.reply(425, "Cannot open data connection.");
        }
        self.log_transfer(&t, bytes, now, "aborted");
        self.reply(426, "Connection closed; transfer aborted.");
        self.reply(226, "Abort successful.");
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
        Request::SendBytes { data, .. } => Request::SendBytes { id, data },
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

fn list_entry<'a>(name: &'a str, meta: &Meta) -> ListEntry<'a> {
    ListEntry {
        name,
        is_dir: matches!(meta.kind, Kind::Dir),
        is_symlink: matches!(meta.kind, Kind::Symlink),
        size: meta.size,
        modified: meta.modified,
        mode: meta.mode,
        nlink: meta.nlink,
        uid: meta.uid,
        gid: meta.gid,
    }
}

impl Session for FtpSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.last_activity = now;
        self.lines.push(data);
        self.process_lines(now);
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.eof = true;
        self.abort_data();
    }

    fn handle_urgent(&mut self, now: Instant) {
        // The Synch of an ABOR: the command itself follows in line.
        self.last_activity = now;
    }

    fn handle_channel(&mut self, event: ChannelEvent, now: Instant) {
        self.last_activity = now;
        self.on_channel(event, now);
        self.process_lines(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = &mut self.transfer {
            if !t.connected && !t.aborting && now >= t.started + DATA_CONNECT_TIMEOUT {
                let id = t.id;
                t.aborting = true;
                t.timed_out = true;
                self.requests.push_back(Request::Abort { id });
            }
        }
        if self.quiet_until.is_some_and(|t| now >= t) {
            self.quiet_until = None;
            self.process_lines(now);
        }
        if self.transfer.is_none()
            && !self.closing
            && self
                .config
                .idle_timeout
                .is_some_and(|t| now >= self.last_activity + t)
        {
            self.close_with(421, "Timeout.");
        }
    }

    fn handle_shutdown(&mut self, _now: Instant) {
        if self.transfer.is_none() && !self.closing {
            self.close_with(421, "Server shutting down.");
        }
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    fn poll_output(&self) -> &[u8] {
        self.out.pending()
    }

    fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // A running transfer is activity: the idle clock waits for its end.
        let idle = if self.transfer.is_some() {
            None
        } else {
            self.config.idle_timeout.map(|t| self.last_activity + t)
        };
        let connect = self
            .transfer
            .as_ref()
            .filter(|t| !t.connected && !t.aborting)
            .map(|t| t.started + DATA_CONNECT_TIMEOUT);
        [idle, self.quiet_until, connect]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_computed(&mut self, result: Computed, now: Instant) {
        if !std::mem::take(&mut self.verifying) {
            return;
        }
        self.last_activity = now;
        let user = result.downcast::<Option<User>>().map_or(None, |u| *u);
        self.log_in(user, now);
        self.process_lines(now);
    }

    fn wants_read(&self) -> bool {
        !self.eof
            && !self.closing
            && !self.verifying
            && self.quiet_until.is_none()
            && self.deferred.len() < MAX_DEFERRED
            && self.out.len() <= MAX_OUTPUT
    }

    fn wants_close(&self) -> bool {
        (self.closing || self.eof) && self.requests.is_empty()
    }
}
