//! Listening sockets and accepting from them, the same way in every
//! architecture.
//!
//! Listeners are bound once, in the first process, with `SO_REUSEADDR` and a
//! backlog of `SOMAXCONN`, and are non-blocking: blocking architectures wait
//! for readiness with `poll` (so that they can also watch the shutdown pipe)
//! and evented ones register them with their reactor. Accepted sockets have
//! `TCP_NODELAY` (request/response protocols must not wait for Nagle) and
//! `SO_OOBINLINE` (urgent bytes, such as FTP's Telnet Synch, stay in the
//! byte stream instead of being lost): both are set on the listener, and
//! Linux copies a listener's socket options to every socket it accepts, which
//! spares two system calls per connection.
//!
//! An accepted connection comes with both of its addresses ([`Accepted`]):
//! the peer's from `accept4` itself, and the local one from the listener when
//! it is bound to one address (only a wildcard listener needs
//! `getsockname`).
//!
//! `--listen` takes three forms ([`ListenAddr`]): `HOST:PORT`; `unix:PATH`,
//! a Unix-domain socket file (made with `--unix-mode`, a stale file left by
//! a server that is gone replaced, the file removed when the server exits);
//! and `fd://N`, a listening socket inherited from whoever started muse.
//! Without `--listen`, the sockets systemd passes (`LISTEN_FDS`, for this
//! process's `LISTEN_PID`) are used ([`systemd_listeners`]). The kv store
//! process listens on a Unix-domain socket in the abstract namespace
//! ([`Listeners::bind_abstract`]). A Unix-domain client has no IP address:
//! its peer and local addresses read [`UNIX_ADDR`].
//!
//! Running out of descriptors (`EMFILE`, `ENFILE`) or kernel memory is not
//! fatal: [`AcceptError::Exhausted`] tells the caller to stop accepting for
//! [`EXHAUSTED_BACKOFF`] and try again, so the loop neither spins nor dies,
//! and waiting clients stay in the backlog until descriptors free up. An
//! [`AcceptPause`] logs such an episode once per process when it starts and
//! once when it ends, not at every retry.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sys;

/// How long to stop accepting after running out of descriptors or memory:
/// long enough not to spin, short enough that a freed descriptor is used
/// promptly.
pub const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// This process's out-of-descriptors episodes, shared by all its accept
/// loops. Under `EMFILE` a loop retries every [`EXHAUSTED_BACKOFF`], twenty
/// times a second, and a thread pool has a loop per thread; logging each
/// retry would flood the log exactly when the operator needs to read it. So
/// the first pause of an episode is logged, and the first accept after it
/// (by any loop of the process) ends the episode, logging how long it lasted
/// and how many pauses it took.
///
/// Near the limit, descriptors come and go (a connection ends, a refused
/// one is closed) and accepts flap between working and failing within
/// microseconds. A pause within [`EPISODE_QUIET`] of the end of the last
/// episode therefore continues that episode instead of opening a new one:
/// it is not announced again, and its end reports the time and pauses since
/// the episode first began.
pub enum AcceptPause {}

/// How long accepts must have worked before a new pause is a new episode.
pub const EPISODE_QUIET: Duration = Duration::from_secs(1);

/// Whether an episode is running (the accept path's one cheap check).
static PAUSED: AtomicBool = AtomicBool::new(false);
/// This process's latest episode, running or ended.
static EPISODE: Mutex<Option<Episode>> = Mutex::new(None);

/// One out-of-descriptors episode.
struct Episode {
    /// When its first pause happened.
    since: Instant,
    /// Pauses so far.
    pauses: u64,
    /// When accepts last worked again (None: paused now).
    ended: Option<Instant>,
}

impl AcceptPause {
    /// An accept failed for want of descriptors or memory (`e`); the caller
    /// now pauses for [`EXHAUSTED_BACKOFF`].
    pub fn exhausted(e: &io::Error) {
        let mut episode = EPISODE.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *episode {
            Some(ep) if ep.ended.is_none_or(|end| now - end < EPISODE_QUIET) => {
                ep.pauses += 1;
                ep.ended = None;
            }
            _ => {
                crate::log::warn(format_args!(
                    "accept: {e}; pausing accepts, retrying every {EXHAUSTED_BACKOFF:?} \
                     until descriptors free up"
                ));
                *episode = Some(Episode {
                    since: now,
                    pauses: 1,
                    ended: None,
                });
            }
        }
        PAUSED.store(true, Ordering::Relaxed);
    }

    /// An accept succeeded (or found nothing waiting, which also takes a
    /// free descriptor): the running episode, if any, is over.
    pub fn resumed() {
        if !PAUSED.load(Ordering::Relaxed) {
            return;
        }
        let mut episode = EPISODE.lock().unwrap_or_else(|p| p.into_inner());
        PAUSED.store(false, Ordering::Relaxed);
        if let Some(ep) = episode.as_mut().filter(|ep| ep.ended.is_none()) {
            let now = Instant::now();
            ep.ended = Some(now);
            crate::log::info(format_args!(
                "accepting again after {:.1?} ({} pauses)",
                now - ep.since,
                ep.pauses
            ));
        }
    }
}

/// A connected stream socket, TCP or Unix-domain: a control connection,
/// or a session's stream to its protocol's service. Drivers only read,
/// write, `send`, `sendfile` and shut it down, which both families do
/// alike.
pub type Stream = Socket;

/// The address a Unix-domain connection reports for both of its ends.
pub const UNIX_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// One listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP, on an IP address.
    Tcp(TcpListener),
    /// Unix-domain, on a name in the abstract namespace.
    Unix(UnixListener),
    /// A prefork worker's end of its master's hand-off socket
    /// (`--accept handoff`): "accepting" receives a connection the master
    /// accepted (see `accept.rs`).
    Handoff(crate::accept::Receiver),
}

impl Listener {
    /// The bound address; a Unix-domain listener's, and a hand-off
    /// receiver's (which has none), is [`UNIX_ADDR`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Unix(_) | Listener::Handoff(_) => Ok(UNIX_ADDR),
        }
    }

    /// Another descriptor for the same socket.
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(match self {
            Listener::Tcp(l) => Listener::Tcp(l.try_clone()?),
            Listener::Unix(l) => Listener::Unix(l.try_clone()?),
            Listener::Handoff(r) => Listener::Handoff(r.try_clone()?),
        })
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Handoff(r) => r.as_raw_fd(),
        }
    }
}

/// The server's listening sockets.
pub struct Listeners {
    list: Vec<Listener>,
    /// Each listener's address, when every connection it accepts has that
    /// local address (not a wildcard).
    fixed: Vec<Option<SocketAddr>>,
    /// Each listener's name in `listening on` lines.
    names: Vec<String>,
    /// Socket files made here, removed when the process that made them
    /// drops these listeners (workers end with `_exit`, so only it does).
    files: Vec<PathBuf>,
    owner: u32,
    /// Listeners from this index on speak TLS (`--tls-listen`).
    tls_from: usize,
}

/// Set once a hot restart's successor has taken the listeners over: the
/// socket files are its to remove now.
static FILES_HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Leaves the `unix:` socket files in place at exit: a successor serves on
/// them (see `restart.rs`).
pub fn hand_over_socket_files() {
    FILES_HANDED_OVER.store(true, Ordering::SeqCst);
}

impl Drop for Listeners {
    fn drop(&mut self) {
        if std::process::id() == self.owner && !FILES_HANDED_OVER.load(Ordering::SeqCst) {
            for f in &self.files {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Where to listen, as `--listen` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `HOST:PORT` (port 0: any free port).
    Ip(SocketAddr),
    /// `unix:PATH`: a Unix-domain socket file.
    Unix(PathBuf),
    /// `fd://N`: a listening socket this process inherited.
    Fd(RawFd),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: wants a path".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(n) = s.strip_prefix("fd://") {
            return match n.parse::<RawFd>() {
                Ok(fd) if fd >= 0 => Ok(ListenAddr::Fd(fd)),
                _ => Err(format!("fd:// wants a descriptor number, not {n:?}")),
            };
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Ip)
            .map_err(|_| format!("{s:?} is neither HOST:PORT, unix:PATH nor fd://N"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Ip(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Fd(n) => write!(f, "fd://{n}"),
        }
    }
}

impl ListenAddr {
    /// Whether connections to it come from IP addresses (FTP needs them).
    pub fn is_ip(&self) -> bool {
        matches!(self, ListenAddr::Ip(_))
    }
}

/// The most descriptors socket activation may pass: far more listeners
/// than a server has, and a bound on what a wrong `LISTEN_FDS` can make it
/// try.
pub const MAX_LISTEN_FDS: i32 = 1024;

/// The listening sockets systemd passed to this process (socket
/// activation: `LISTEN_PID` is this process, `LISTEN_FDS` says how many,
/// from descriptor 3), as `fd://N` addresses; empty if none were passed.
/// Each is logged with its name from `LISTEN_FDNAMES` (the unit's
/// `FileDescriptorName=`), so the operator sees which socket is which.
/// The variables are removed, so that no child takes them for its own.
/// A `LISTEN_FDS` meant for this process that is not a count (from 0 to
/// [`MAX_LISTEN_FDS`]) is an error, not a reason to listen elsewhere.
pub fn systemd_listeners() -> Result<Vec<ListenAddr>, String> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !ours {
        return Ok(Vec::new());
    }
    let Some(fds) = fds else {
        return Ok(Vec::new());
    };
    let count = fds
        .parse::<i32>()
        .ok()
        .filter(|n| (0..=MAX_LISTEN_FDS).contains(n))
        .ok_or_else(|| {
            format!("LISTEN_FDS is {fds:?}: not a count of descriptors from 0 to {MAX_LISTEN_FDS}")
        })?;
    let mut names = names.split(':');
    Ok((3..3 + count)
        .map(|fd| {
            match names.next().filter(|n| !n.is_empty()) {
                Some(name) => {
                    crate::log::info(format_args!("socket activation: fd {fd} named {name:?}"))
                }
                None => crate::log::info(format_args!("socket activation: fd {fd}")),
            }
            ListenAddr::Fd(fd)
        })
        .collect())
}

/// An accepted connection.
#[derive(Debug)]
pub struct Accepted {
    /// The connected socket.
    pub stream: Stream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address for this connection.
    pub local: SocketAddr,
    /// It came to a TLS listener.
    pub tls: bool,
}

/// Why an accept did not yield a connection.
#[derive(Debug)]
pub enum AcceptError {
    /// Nothing is waiting: try again when the listener is ready.
    WouldBlock,
    /// A connection that ended before it could be served: accept the next.
    Gone,
    /// Out of descriptors or memory: back off, then try again.
    Exhausted(io::Error),
    /// Anything else (logged by the caller; accepting goes on).
    Other(io::Error),
}

impl Listeners {
    /// No listeners yet, owned by this process.
    fn empty() -> Listeners {
        Listeners {
            list: Vec::new(),
            fixed: Vec::new(),
            names: Vec::new(),
            files: Vec::new(),
            owner: std::process::id(),
            tls_from: usize::MAX,
        }
    }

    /// Adds a listener with its fixed local address and its name.
    fn push(&mut self, l: Listener, fixed: Option<SocketAddr>, name: String) {
        self.list.push(l);
        self.fixed.push(fixed);
        self.names.push(name);
    }

    /// A group of `list` in place of these listeners, one for one: the
    /// same addresses, names and TLS; no socket files of its own.
    fn group_of(&self, list: Vec<Listener>) -> Listeners {
        Listeners {
            list,
            fixed: self.fixed.clone(),
            names: self.names.clone(),
            files: Vec::new(),
            owner: self.owner,
            tls_from: self.tls_from,
        }
    }

    /// Binds every address, in order (a `unix:` file with permissions
    /// `unix_mode`). With `reuse_port`, the TCP sockets allow
    /// [`Listeners::sibling`] groups on the same addresses.
    pub fn bind(addrs: &[ListenAddr], reuse_port: bool, unix_mode: u32) -> io::Result<Listeners> {
        let mut ls = Listeners::empty();
        for a in addrs {
            let bound = match a {
                ListenAddr::Ip(ip) => refuse_taken(*ip, reuse_port)
                    .and_then(|()| bind_one(*ip, reuse_port))
                    .and_then(|l| {
                        let name = l.local_addr()?.to_string();
                        let fixed = fixed_local(&l)?;
                        Ok((Listener::Tcp(l), fixed, name))
                    }),
                ListenAddr::Unix(path) => bind_unix(path, unix_mode).map(|l| {
                    ls.files.push(path.clone());
                    (Listener::Unix(l), Some(UNIX_ADDR), a.to_string())
                }),
                ListenAddr::Fd(fd) => adopt(*fd),
            };
            let (l, fixed, name) = bound
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?;
            ls.push(l, fixed, name);
        }
        Ok(ls)
    }

    /// Takes over the listening sockets a predecessor passed in a hot
    /// restart (`restart.rs`): `fds[i]` is the socket of `addrs[i]`, of the
    /// same kind. A `unix:` socket file becomes this process's to remove.
    pub fn inherit(addrs: &[ListenAddr], fds: &[RawFd]) -> io::Result<Listeners> {
        if addrs.len() != fds.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the old server passed {} listening socket(s), but {} address(es) are configured",
                    fds.len(),
                    addrs.len()
                ),
            ));
        }
        let mut ls = Listeners::empty();
        for (a, &fd) in addrs.iter().zip(fds) {
            let (l, fixed, name) = adopt(fd).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot take over {a} (fd {fd}): {e}"))
            })?;
            let same_kind = match (a, &l) {
                (ListenAddr::Ip(_), Listener::Tcp(_)) => true,
                (ListenAddr::Unix(path), Listener::Unix(_)) => {
                    ls.files.push(path.clone());
                    true
                }
                (ListenAddr::Fd(_), _) => true,
                _ => false,
            };
            if !same_kind {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the old server's socket for {a} (fd {fd}) is of another kind"),
                ));
            }
            ls.push(l, fixed, name);
        }
        Ok(ls)
    }

    /// Takes over a group of sibling sockets (see [`Listeners::sibling`])
    /// a predecessor passed in a hot restart, one per listener of `self`.
    pub fn inherit_sibling(&self, fds: &[RawFd]) -> io::Result<Listeners> {
        if fds.len() != self.list.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the old server passed a sibling group of another size",
            ));
        }
        let list = fds
            .iter()
            .map(|&fd| adopt(fd).map(|(l, _, _)| l))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(self.group_of(list))
    }

    /// One Unix-domain listener on `name` in the abstract namespace (no
    /// file to clean up; the name is gone with the last descriptor).
    pub fn bind_abstract(name: &str) -> io::Result<Listeners> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(format!("\0{name}"))?)?;
        socket.listen(libc::SOMAXCONN)?;
        socket.set_nonblocking(true)?;
        let mut ls = Listeners::empty();
        ls.push(
            Listener::Unix(UnixListener::from(OwnedFd::from(socket))),
            Some(UNIX_ADDR),
            format!("unix:@{name}"),
        );
        Ok(ls)
    }

    /// Another group of listeners on the very addresses these are bound to
    /// (ports chosen by the kernel included), sharing them with
    /// `SO_REUSEPORT`: the kernel then spreads new connections evenly over
    /// the groups, instead of waking every thread for each one and letting
    /// the fastest take them all. These listeners must have been bound with
    /// `reuse_port`. A Unix-domain listener is shared as it is.
    pub fn sibling(&self) -> io::Result<Listeners> {
        self.sibling_or_share(true)
    }

    /// Like [`Listeners::sibling`], but every TCP listener must get a
    /// socket of its own: one that cannot is an error instead of being
    /// shared (`--accept reuseport`, where a shared socket would silently
    /// be the old shared accept queue).
    pub fn own_sibling(&self) -> io::Result<Listeners> {
        self.sibling_or_share(false)
    }

    fn sibling_or_share(&self, may_share: bool) -> io::Result<Listeners> {
        let list = self
            .list
            .iter()
            .map(|l| match l {
                // An inherited socket may not allow a sibling on its port:
                // then the groups share it, if they may.
                Listener::Tcp(t) => match bind_one(t.local_addr()?, true) {
                    Ok(sibling) => Ok(Listener::Tcp(sibling)),
                    Err(_) if may_share => l.try_clone(),
                    Err(e) => Err(e),
                },
                Listener::Unix(_) | Listener::Handoff(_) => l.try_clone(),
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(self.group_of(list))
    }

    /// Makes the listeners from index `from` on TLS listeners: their
    /// connections speak TLS from the first byte.
    pub fn set_tls_from(&mut self, from: usize) {
        self.tls_from = from;
    }

    /// Whether listener `i` is a TLS listener.
    pub fn is_tls(&self, i: usize) -> bool {
        i >= self.tls_from
    }

    /// A worker's one "listener" under `--accept handoff`: its end of the
    /// master's hand-off socket. Connections come with both addresses, as
    /// from any listener.
    pub fn handoff(receiver: crate::accept::Receiver) -> Listeners {
        let mut ls = Listeners::empty();
        ls.push(Listener::Handoff(receiver), None, "hand-off".into());
        ls
    }

    /// The listeners.
    pub fn iter(&self) -> impl Iterator<Item = &Listener> {
        self.list.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Prints `listening on ADDR` for each listener on stdout, and flushes.
    pub fn announce(&self, protocol: &str, arch: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        for (i, name) in self.names.iter().enumerate() {
            let tls = if self.is_tls(i) { ", tls" } else { "" };
            writeln!(out, "listening on {name} ({protocol}, {arch}{tls})")?;
        }
        out.flush()
    }

    /// Accepts one connection from listener `i`; the socket is non-blocking
    /// if `nonblocking`.
    pub fn accept(&self, i: usize, nonblocking: bool) -> Result<Accepted, AcceptError> {
        let mut accepted = accept_from(&self.list[i], self.fixed[i], nonblocking)?;
        // A handed-off connection says itself whether it is TLS.
        accepted.tls |= self.is_tls(i);
        Ok(accepted)
    }

    /// Whether listener `i` is a listening socket (TCP or Unix-domain) that
    /// the kernel can accept on by itself (an io_uring accept), rather than
    /// a hand-off socket.
    pub fn is_socket(&self, i: usize) -> bool {
        !matches!(self.list[i], Listener::Handoff(_))
    }

    /// A connection the kernel accepted on listener `i` for us (an io_uring
    /// accept gives the socket alone): its addresses are asked for here.
    pub fn adopt(&self, i: usize, socket: Socket) -> Result<Accepted, AcceptError> {
        let tls = self.is_tls(i);
        if matches!(self.list[i], Listener::Unix(_)) {
            return Ok(Accepted {
                stream: socket,
                peer: UNIX_ADDR,
                local: UNIX_ADDR,
                tls,
            });
        }
        // A client that is gone already has no address: nothing to serve.
        let peer = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or(AcceptError::Gone)?;
        let local = match self.fixed[i] {
            Some(local) => local,
            None => socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .ok_or(AcceptError::Gone)?,
        };
        Ok(Accepted {
            stream: socket,
            peer,
            local,
            tls,
        })
    }

    /// Listener `i`'s address when it is not a wildcard (see
    /// [`accept_from`]).
    pub fn fixed_local(&self, i: usize) -> Option<SocketAddr> {
        self.fixed[i]
    }

    /// Waits (blocking) until a listener is ready, `also` is readable, or
    /// `timeout` passes; returns the indices of the ready listeners.
    pub fn wait(
        &self,
        also: &[RawFd],
        timeout: Option<Duration>,
        ready: &mut Vec<usize>,
    ) -> io::Result<()> {
        let mut fds: Vec<sys::PollFd> = self
            .list
            .iter()
            .map(|l| sys::poll_fd(l.as_raw_fd(), sys::POLLIN))
            .chain(also.iter().map(|fd| sys::poll_fd(*fd, sys::POLLIN)))
            .collect();
        ready.clear();
        if sys::poll(&mut fds, timeout)? > 0 {
            ready.extend((0..self.list.len()).filter(|i| fds[*i].revents != 0));
        }
        Ok(())
    }
}

/// A Unix-domain listener on the file `path`, made with permissions
/// `mode`. A socket file that nobody listens on any more (a server that
/// was killed) is replaced; one that answers is another server's.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let bind = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        Ok(socket)
    };
    let socket = match bind() {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            use std::os::unix::fs::FileTypeExt;
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                return Err(io::Error::new(
                    e.kind(),
                    "the path exists and is not a socket",
                ));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(e.kind(), "another server listens there"));
                }
                Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                    bind()?
                }
                Err(_) => return Err(e),
            }
        }
        other => other?,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    socket.listen(libc::SOMAXCONN)?;
    socket.set_nonblocking(true)?;
    Ok(UnixListener::from(OwnedFd::from(socket)))
}

/// Takes over the inherited listening socket `fd` (`fd://N`, systemd's):
/// checks that it is one, and makes it non-blocking and close-on-exec.
fn adopt(fd: RawFd) -> io::Result<(Listener, Option<SocketAddr>, String)> {
    // SAFETY: fcntl on a plain integer; a closed descriptor is EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and, by `fd://N`,
    // handed to this process to own; nothing else here uses it.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let listening = socket.is_listener();
    if !matches!(listening, Ok(true)) {
        // Not ours to close: it was only borrowed for the check.
        std::mem::forget(socket);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a listening stream socket",
        ));
    }
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    match local.as_socket() {
        Some(addr) => {
            let l = TcpListener::from(socket);
            let fixed = fixed_local(&l)?;
            Ok((Listener::Tcp(l), fixed, addr.to_string()))
        }
        None => {
            let name = match local.as_pathname() {
                Some(p) => format!("unix:{}", p.display()),
                None => format!("fd://{fd}"),
            };
            Ok((
                Listener::Unix(UnixListener::from(OwnedFd::from(socket))),
                Some(UNIX_ADDR),
                name,
            ))
        }
    }
}

/// With `SO_REUSEPORT` a bind does not fail on an address another
/// listener of the same user holds with it: it joins that listener's
/// group, and the kernel then splits the connections between the two
/// servers (another muse, or the same address given twice). So the first
/// bind of a fixed port is tried without it first, on a socket dropped at
/// once, and an address in use fails as it does for a single listener.
fn refuse_taken(addr: SocketAddr, reuse_port: bool) -> io::Result<()> {
    if !reuse_port || addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into())
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; a separate `--listen 0.0.0.0:P` covers IPv4.
        socket.set_only_v6(true)?;
    }
    // Inherited by every accepted socket (see the top of this file).
    socket.set_nodelay(true)?;
    socket.set_out_of_band_inline(true)?;
    socket.bind(&addr.into())?;
    socket.listen(libc::SOMAXCONN)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `listener`'s address if it is not a wildcard: then it is the local
/// address of every connection the listener accepts.
pub fn fixed_local(listener: &TcpListener) -> io::Result<Option<SocketAddr>> {
    let addr = listener.local_addr()?;
    Ok((!addr.ip().is_unspecified()).then_some(addr))
}

/// Accepts one connection from a listener made by [`Listeners::bind`] (whose
/// options the connection inherits), in one `accept4` call for the
/// descriptor flags; `fixed` is the listener's [`fixed_local`].
pub fn accept_from(
    listener: &Listener,
    fixed: Option<SocketAddr>,
    nonblocking: bool,
) -> Result<Accepted, AcceptError> {
    let listener = match listener {
        Listener::Tcp(l) => l,
        Listener::Unix(l) => {
            let (socket, _) = accept4(socket2::SockRef::from(l), nonblocking)?;
            return Ok(Accepted {
                stream: socket,
                peer: UNIX_ADDR,
                local: UNIX_ADDR,
                tls: false,
            });
        }
        Listener::Handoff(r) => return r.accept(nonblocking),
    };
    let (stream, peer) = accept_plain(listener, nonblocking)?;
    let local = match fixed {
        Some(local) => local,
        // The socket is unusable if the kernel cannot say its address; it
        // closes here, and the next connection is served.
        None => stream.local_addr().map_err(|_| AcceptError::Gone)?,
    };
    Ok(Accepted {
        stream: stream.into(),
        peer,
        local,
        tls: false,
    })
}

/// Accepts one connection, with whatever options the listener passes on (a
/// bulk data connection from a plain listener has none).
pub fn accept_plain(
    listener: &TcpListener,
    nonblocking: bool,
) -> Result<(TcpStream, SocketAddr), AcceptError> {
    let (socket, peer) = accept4(socket2::SockRef::from(listener), nonblocking)?;
    let peer = peer.as_socket().ok_or_else(|| {
        AcceptError::Other(io::Error::new(
            io::ErrorKind::InvalidData,
            "accepted a non-IP peer",
        ))
    })?;
    Ok((socket.into(), peer))
}

/// `accept4(2)`, close-on-exec, with the errors sorted for accept loops.
fn accept4(
    listener: socket2::SockRef<'_>,
    nonblocking: bool,
) -> Result<(Socket, SockAddr), AcceptError> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    loop {
        match listener.accept4(flags) {
            Ok(accepted) => return Ok(accepted),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Err(AcceptError::WouldBlock),
                // A client that gave up before we accepted it, or a transient
                // network error on the new socket: nothing to serve, but more
                // may be waiting behind it.
                Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => {
                    return Err(AcceptError::Gone)
                }
                // The listener was shut down under us: a retired
                // `--accept reuseport` position, whose worker was told to
                // quit at the same moment and is about to stop accepting.
                Some(libc::EINVAL) => return Err(AcceptError::Gone),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    return Err(AcceptError::Exhausted(e))
                }
                _ => return Err(AcceptError::Other(e)),
            },
        }
    }
}

/// Writes `bytes` to a just-accepted connection without waiting (a refusal
/// line), then closes it.
pub fn refuse(stream: Stream, bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(bytes);
    }
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_one(listeners: &Listeners, to: SocketAddr) -> (TcpStream, Accepted) {
        let client = TcpStream::connect(to).unwrap();
        let mut fds = [sys::poll_fd(
            listeners.iter().next().unwrap().as_raw_fd(),
            sys::POLLIN,
        )];
        sys::poll(&mut fds, Some(Duration::from_secs(10))).unwrap();
        let accepted = listeners.accept(0, false).unwrap();
        (client, accepted)
    }

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()], false, 0o666).unwrap();
        let addr = listeners.iter().next().unwrap().local_addr().unwrap();
        let (client, accepted) = accept_one(&listeners, addr);
        assert!(accepted.stream.nodelay().unwrap());
        assert!(socket2::SockRef::from(&accepted.stream)
            .out_of_band_inline()
            .unwrap());
        assert_eq!(accepted.peer, client.local_addr().unwrap());
        assert_eq!(accepted.local, addr);
        assert_eq!(
            Some(accepted.local),
            accepted.stream.local_addr().unwrap().as_socket()
        );
        // Blocking as asked.
        assert!(!rustix::fs::fcntl_getfl(&accepted.stream)
            .unwrap()
            .contains(rustix::fs::OFlags::NONBLOCK));
    }

    #[test]
    fn without_a_fixed_address_the_kernel_is_asked() {
        // As for a wildcard listener (not bound here: loopback only).
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()], false, 0o666).unwrap();
        let listener = listeners.iter().next().unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listeners.fixed_local(0), Some(addr));
        let client = TcpStream::connect(addr).unwrap();
        let mut fds = [sys::poll_fd(listener.as_raw_fd(), sys::POLLIN)];
        sys::poll(&mut fds, Some(Duration::from_secs(10))).unwrap();
        let accepted = accept_from(listener, None, true).unwrap();
        assert_eq!(accepted.local, addr);
        assert_eq!(accepted.peer, client.local_addr().unwrap());
        assert!(matches!(
            accept_from(listener, None, true),
            Err(AcceptError::WouldBlock)
        ));
    }

    #[test]
    fn an_abstract_unix_listener_accepts_without_an_ip_address() {
        let name = format!("muse-net-test-{}", std::process::id());
        let listeners = Listeners::bind_abstract(&name).unwrap();
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        client
            .connect(&SockAddr::unix(format!("\0{name}")).unwrap())
            .unwrap();
        let accepted = listeners.accept(0, true).unwrap();
        assert_eq!((accepted.peer, accepted.local), (UNIX_ADDR, UNIX_ADDR));
        (&client).write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        let mut fds = [sys::poll_fd(accepted.stream.as_raw_fd(), sys::POLLIN)];
        sys::poll(&mut fds, Some(Duration::from_secs(10))).unwrap();
        std::io::Read::read_exact(&mut &accepted.stream, &mut got).unwrap();
        assert_eq!(&got, b"ping");
        assert!(matches!(
            listeners.accept(0, true),
            Err(AcceptError::WouldBlock)
        ));
    }
}
