//! Side channels: the data connections a session asks its driver for, and
//! the transfers that run over them (FTP's data connection is the model).
//!
//! A [`Channel`] is driver-independent: it owns a non-blocking socket and
//! moves bytes whenever it is pumped, until the socket would block. Every
//! driver runs the same code and differs only in how it waits for the
//! socket's readiness (`poll`, epoll, or tokio). Files go out with
//! `sendfile(2)` when no conversion is needed, so a download never copies
//! through user space; conversions (FTP `TYPE A`) go through a buffer.
//!
//! One pump moves at most [`PUMP_BUDGET`] bytes, so that in a reactor one
//! fast transfer cannot starve every other connection; a channel that hit the
//! budget reports [`Pump::Again`] and the driver pumps it again on its next
//! turn without waiting for readiness.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

use rustls::ServerConnection;
use socket2::{Domain, Socket, Type};

use crate::session::{ChannelEvent, ChannelId, Transform};
use crate::sys;

/// The most bytes one pump moves before giving other connections a turn.
pub const PUMP_BUDGET: u64 = 4 << 20;

/// The largest single `sendfile` call; bounded so that the budget check runs
/// between calls.
const SENDFILE_CHUNK: usize = 1 << 20;

/// What a channel waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Nothing: idle until the session gives it a job.
    Nothing,
    /// The socket to become readable.
    Read,
    /// The socket to become writable.
    Write,
}

/// What a pump achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// The socket would block: wait for readiness.
    Blocked,
    /// The budget ran out while the socket was still ready: pump again soon.
    Again,
    /// The channel is finished (its final event was emitted): drop it.
    Finished,
}

enum Socket_ {
    /// A data connection: `open` once an outbound connect to `to` has
    /// completed.
    Stream {
        stream: TcpStream,
        open: bool,
        to: Option<SocketAddr>,
    },
    /// A passive listener waiting for its one connection.
    Listening {
        listener: TcpListener,
        allow_from: Option<IpAddr>,
    },
}

enum Job {
    SendFile {
        file: File,
        offset: u64,
        /// Where to stop (`u64::MAX`: at end of file).
        end: u64,
        transform: Transform,
        /// Converted bytes waiting to be sent (`buf[pos..]`), for `TYPE A`
        /// or when `sendfile` is not possible.
        buf: Vec<u8>,
        pos: usize,
    },
    SendBytes {
        data: Vec<u8>,
        pos: usize,
        /// Another chunk follows: stay open once this one is sent.
        more: bool,
    },
    Receive {
        file: File,
        transform: Transform,
        /// A `\r` seen at the end of the previous read (it may start a `\r\n`).
        pending_cr: bool,
    },
}

/// One side channel of one session.
pub struct Channel {
    /// The session's name for it.
    pub id: ChannelId,
    /// Changes whenever the channel's socket is replaced (a listener becoming
    /// the accepted connection), so drivers know to register the new one.
    pub serial: u64,
    /// Set by the driver when the socket reported readiness; cleared when a
    /// pump finds it would block.
    pub ready: bool,
    socket: Socket_,
    job: Option<Job>,
    bytes: u64,
    /// Whether sendfile has been seen to fail with EINVAL/ENOSYS for this
    /// file (a pipe or a special file): fall back to read/write.
    no_sendfile: bool,
    /// TLS over the connection ([`Channel::secure`]): asked for, then made
    /// once the connection is open.
    tls_wanted: bool,
    tls: Option<Box<ServerConnection>>,
    /// A job's bytes are all through: `close_notify` and the last records
    /// are being sent before the channel reports `Done`.
    tls_closing: bool,
    /// `close_notify` is queued.
    tls_close_sent: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Channel {
    /// Starts a non-blocking connect to `addr`.
    pub fn connect(id: ChannelId, serial: u64, addr: SocketAddr) -> io::Result<Channel> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(Channel::new(
            id,
            serial,
            Socket_::Stream {
                stream: socket.into(),
                open: false,
                to: Some(addr),
            },
        ))
    }

    /// Binds a listener on `ip` with a port from `ports` (tried in order from
    /// a varying start, so that concurrent sessions spread over the range).
    pub fn listen(
        id: ChannelId,
        serial: u64,
        ip: IpAddr,
        ports: (u16, u16),
        allow_from: Option<IpAddr>,
    ) -> io::Result<(Channel, SocketAddr)> {
        let (lo, hi) = if ports.0 <= ports.1 {
            ports
        } else {
            (ports.1, ports.0)
        };
        let span = u32::from(hi - lo) + 1;
        let start = (serial as u32).wrapping_mul(2_654_435_761) % span;
        let mut last = io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free port in the passive range",
        );
        for i in 0..span {
            let port = if lo == 0 && hi == 0 {
                0
            } else {
                lo + ((start + i) % span) as u16
            };
            let addr = SocketAddr::new(ip, port);
            let socket = Socket::new(
                Domain::for_address(addr),
                Type::STREAM.nonblocking().cloexec(),
                None,
            )?;
            // A port whose last data connection is in TIME-WAIT can be
            // listened on again at once; without this a range of N ports
            // allows only N transfers a minute.
            socket.set_reuse_address(true)?;
            match socket.bind(&addr.into()).and_then(|()| socket.listen(1)) {
                Ok(()) => {
                    let listener: TcpListener = socket.into();
                    let bound = listener.local_addr()?;
                    let ch = Channel::new(
                        id,
                        serial,
                        Socket_::Listening {
                            listener,
                            allow_from,
                        },
                    );
                    return Ok((ch, bound));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn new(id: ChannelId, serial: u64, socket: Socket_) -> Channel {
        // A new socket has nothing to do until the kernel says so (a connect
        // completes, a client connects): trying first would only cost a
        // failed system call.
        Channel {
            id,
            serial,
            ready: false,
            socket,
            job: None,
            bytes: 0,
            no_sendfile: false,
            tls_wanted: false,
            tls: None,
            tls_closing: false,
            tls_close_sent: false,
        }
    }

    /// Makes the channel speak TLS once connected ([`Request::Secure`]).
    ///
    /// [`Request::Secure`]: crate::session::Request::Secure
    pub fn secure(&mut self) {
        self.tls_wanted = true;
    }

    /// The descriptor the driver waits on.
    pub fn fd(&self) -> RawFd {
        match &self.socket {
            Socket_::Stream { stream, .. } => stream.as_raw_fd(),
            Socket_::Listening { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// Whether a driver should watch the socket now: a passive listener
    /// without a job is left alone until it has one (see `Request::Listen`).
    pub fn watched(&self) -> bool {
        !matches!((&self.socket, &self.job), (Socket_::Listening { .. }, None))
    }

    /// What the channel is waiting for.
    pub fn wait(&self) -> Wait {
        if let (Socket_::Stream { open: true, .. }, Some(_), Some(tls)) =
            (&self.socket, &self.job, &self.tls)
        {
            if tls.is_handshaking() || self.tls_closing {
                return if tls.wants_write() {
                    Wait::Write
                } else {
                    Wait::Read
                };
            }
        }
        match (&self.socket, &self.job) {
            (Socket_::Stream { open: false, .. }, _) => Wait::Write,
            // Accepted when there is something to do with it (see
            // `Request::Listen`).
            (Socket_::Listening { .. }, None) => Wait::Nothing,
            (Socket_::Listening { .. }, Some(_)) => Wait::Read,
            (Socket_::Stream { .. }, None) => Wait::Nothing,
            (Socket_::Stream { .. }, Some(Job::Receive { .. })) => Wait::Read,
            (Socket_::Stream { .. }, Some(_)) => Wait::Write,
        }
    }

    /// Whether a transfer is under way or queued.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Gives the channel a file to send. Fails if it already has a job.
    pub fn send_file(
        &mut self,
        file: File,
        offset: u64,
        end: Option<u64>,
        transform: Transform,
    ) -> Result<(), File> {
        if self.job.is_some() {
            return Err(file);
        }
        self.job = Some(Job::SendFile {
            file,
            offset,
            end: end.unwrap_or(u64::MAX),
            transform,
            buf: Vec::new(),
            pos: 0,
        });
        self.ready = true;
        Ok(())
    }

    /// Gives the channel bytes to send, the last of them unless `more`.
    /// Fails if it already has a job.
    pub fn send_bytes(&mut self, data: Vec<u8>, more: bool) -> Result<(), Vec<u8>> {
        if self.job.is_some() {
            return Err(data);
        }
        self.job = Some(Job::SendBytes { data, pos: 0, more });
        self.ready = true;
        Ok(())
    }

    /// Gives the channel a file to receive into. Fails if it has a job.
    pub fn receive_file(&mut self, file: File, transform: Transform) -> Result<(), File> {
        if self.job.is_some() {
            return Err(file);
        }
        self.job = Some(Job::Receive {
            file,
            transform,
            pending_cr: false,
        });
        self.ready = true;
        Ok(())
    }

    /// Bytes moved so far, counted on the wire.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The event that reports this channel's end when it is aborted.
    pub fn abort_event(&self) -> ChannelEvent {
        if self.job.is_some() {
            ChannelEvent::Aborted {
                id: self.id,
                bytes: self.bytes,
            }
        } else {
            ChannelEvent::Closed { id: self.id }
        }
    }

    fn fail(&self, error: io::ErrorKind) -> ChannelEvent {
        ChannelEvent::Failed {
            id: self.id,
            bytes: self.bytes,
            error,
        }
    }

    /// Moves bytes until the socket would block, the budget is spent or the
    /// channel finishes. Events go to `events`; `scratch` is the driver's
    /// buffer. A replaced socket (listener → connection) is pushed to
    /// `retired` so that the driver can drop its registration first.
    pub fn pump(
        &mut self,
        scratch: &mut [u8],
        events: &mut Vec<ChannelEvent>,
        retired: &mut Vec<Retired>,
    ) -> Pump {
        if !self.ready {
            return Pump::Blocked;
        }
        match self.advance_socket(events, retired) {
            Ok(true) => {}
            Ok(false) => {
                self.ready = false;
                return Pump::Blocked;
            }
            Err(e) => {
                events.push(self.fail(e.kind()));
                return Pump::Finished;
            }
        }
        let Socket_::Stream { stream, .. } = &self.socket else {
            unreachable!("advance_socket returns true only once open")
        };
        let Some(job) = &mut self.job else {
            self.ready = false;
            return Pump::Blocked;
        };
        if self.tls_wanted {
            let receiving = matches!(job, Job::Receive { .. });
            let closing = self.tls_closing.then_some(&mut self.tls_close_sent);
            match secure_step(&mut self.tls, closing, receiving, stream) {
                Ok(true) => {}
                Ok(false) => {
                    self.ready = false;
                    return Pump::Blocked;
                }
                Err(e) => {
                    self.job = None;
                    events.push(self.fail(e.kind()));
                    return Pump::Finished;
                }
            }
        }
        let mut budget = PUMP_BUDGET;
        // Under TLS the job's bytes go through rustls (no `sendfile`).
        let result = match self.tls.as_deref_mut() {
            Some(tls) => run_job(
                job,
                TlsIo { tls, sock: stream },
                None,
                &mut self.no_sendfile,
                scratch,
                &mut self.bytes,
                &mut budget,
            ),
            None => run_job(
                job,
                stream,
                Some(stream),
                &mut self.no_sendfile,
                scratch,
                &mut self.bytes,
                &mut budget,
            ),
        };
        if matches!(result, Ok(Pump::Finished)) && matches!(job, Job::SendBytes { more: true, .. })
        {
            // This chunk is out; the channel waits for the next.
            self.job = None;
            events.push(ChannelEvent::Sent {
                id: self.id,
                bytes: self.bytes,
            });
            return Pump::Blocked;
        }
        if self.tls.is_some() && matches!(result, Ok(Pump::Finished)) && !self.tls_closing {
            // The bytes are encrypted (or the client's end has come);
            // `close_notify` and the records still queued go out before
            // the channel is done: a client waits for them.
            self.tls_closing = true;
            return self.pump(scratch, events, retired);
        }
        self.finish(result, events)
    }

    /// Reports what a job's pump came to.
    fn finish(&mut self, result: io::Result<Pump>, events: &mut Vec<ChannelEvent>) -> Pump {
        match result {
            Ok(Pump::Finished) => {
                self.job = None;
                events.push(ChannelEvent::Done {
                    id: self.id,
                    bytes: self.bytes,
                });
                Pump::Finished
            }
            Ok(Pump::Blocked) => {
                self.ready = false;
                Pump::Blocked
            }
            Ok(Pump::Again) => Pump::Again,
            Err(e) => {
                self.job = None;
                events.push(self.fail(e.kind()));
                Pump::Finished
            }
        }
    }

    /// Brings the socket to the open state if it can. Ok(false): not yet.
    fn advance_socket(
        &mut self,
        events: &mut Vec<ChannelEvent>,
        retired: &mut Vec<Retired>,
    ) -> io::Result<bool> {
        match &mut self.socket {
            Socket_::Stream { open: true, .. } => Ok(true),
            Socket_::Stream { stream, open, to } => {
                if let Some(e) = stream.take_error()? {
                    // A reset (rather than a refusal or a timeout) means the
                    // connection was made and then torn down by the peer
                    // before we looked: it did connect, then the transfer
                    // failed, and the session must hear both.
                    if e.kind() == io::ErrorKind::ConnectionReset {
                        if let Some(peer) = *to {
                            events.push(ChannelEvent::Connected { id: self.id, peer });
                        }
                    }
                    return Err(e);
                }
                match stream.peer_addr() {
                    Ok(peer) => {
                        *open = true;
                        events.push(ChannelEvent::Connected { id: self.id, peer });
                        Ok(true)
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Socket_::Listening {
                listener,
                allow_from,
            } => loop {
                match crate::net::accept_plain(listener, true) {
                    Ok((stream, peer)) => {
                        if allow_from.is_some_and(|ip| !same_ip(ip, peer.ip())) {
                            // RFC 2577: a passive data connection is only for
                            // the client that asked for it.
                            continue;
                        }
                        let Socket_::Listening { listener, .. } = std::mem::replace(
                            &mut self.socket,
                            Socket_::Stream {
                                stream,
                                open: true,
                                to: None,
                            },
                        ) else {
                            unreachable!()
                        };
                        retired.push(Retired::Listener(listener));
                        self.serial = self.serial.wrapping_add(1 << 32);
                        events.push(ChannelEvent::Connected { id: self.id, peer });
                        return Ok(true);
                    }
                    Err(crate::net::AcceptError::Gone) => continue,
                    Err(crate::net::AcceptError::WouldBlock) => return Ok(false),
                    Err(
                        crate::net::AcceptError::Exhausted(e) | crate::net::AcceptError::Other(e),
                    ) => return Err(e),
                }
            },
        }
    }

    /// Closes the channel, handing its sockets to `retired`.
    pub fn retire(self, retired: &mut Vec<Retired>) {
        match self.socket {
            Socket_::Stream { stream, .. } => retired.push(Retired::Stream(stream)),
            Socket_::Listening { listener, .. } => retired.push(Retired::Listener(listener)),
        }
    }
}

/// Compares addresses so that an IPv4 client seen through an IPv6 socket
/// (`::ffff:127.0.0.1`) matches its IPv4 form.
pub fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// A socket a channel no longer uses. Drivers that registered it drop their
/// registration before dropping it (so a reused descriptor number can never
/// be deregistered by mistake).
pub enum Retired {
    /// A data connection.
    Stream(TcpStream),
    /// A passive listener.
    Listener(TcpListener),
    /// A session's stream to its protocol's service.
    Service(crate::net::Stream),
}

impl Retired {
    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        match self {
            Retired::Stream(s) => s.as_raw_fd(),
            Retired::Listener(l) => l.as_raw_fd(),
            Retired::Service(s) => s.as_raw_fd(),
        }
    }
}

/// Runs one pump of `job` over `io`; a plain file range goes out with
/// `sendfile` on `zero_copy` when given (until `sendfile` has been seen
/// not to work for the file: `no_sendfile`).
fn run_job(
    job: &mut Job,
    io: impl Read + Write,
    zero_copy: Option<&TcpStream>,
    no_sendfile: &mut bool,
    scratch: &mut [u8],
    bytes: &mut u64,
    budget: &mut u64,
) -> io::Result<Pump> {
    match job {
        Job::SendBytes { data, pos, .. } => send_bytes(io, data, pos, bytes),
        Job::SendFile {
            file,
            offset,
            end,
            transform,
            buf,
            pos,
        } => match zero_copy {
            Some(stream) if *transform == Transform::None && !*no_sendfile => {
                match send_file_zero_copy(stream, file, offset, *end, bytes, budget) {
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                        *no_sendfile = true;
                        Ok(Pump::Again)
                    }
                    other => other,
                }
            }
            _ => send_file_buffered(
                io, file, offset, *end, *transform, buf, pos, scratch, bytes, budget,
            ),
        },
        Job::Receive {
            file,
            transform,
            pending_cr,
        } => receive(io, file, *transform, pending_cr, scratch, bytes, budget),
    }
}

fn send_bytes(
    mut stream: impl Write,
    data: &[u8],
    pos: &mut usize,
    bytes: &mut u64,
) -> io::Result<Pump> {
    while *pos < data.len() {
        match stream.write(&data[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *pos += n;
                *bytes += n as u64;
            }
            Err(e) if would_block(&e) => return Ok(Pump::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Pump::Finished)
}

fn send_file_zero_copy(
    stream: &TcpStream,
    file: &File,
    offset: &mut u64,
    end: u64,
    bytes: &mut u64,
    budget: &mut u64,
) -> io::Result<Pump> {
    loop {
        let left = end.saturating_sub(*offset);
        if left == 0 {
            return Ok(Pump::Finished);
        }
        if *budget == 0 {
            return Ok(Pump::Again);
        }
        let want = (SENDFILE_CHUNK as u64).min(*budget).min(left) as usize;
        match sys::sendfile(stream.as_raw_fd(), file.as_raw_fd(), offset, want) {
            Ok(0) => return Ok(Pump::Finished),
            Ok(n) => {
                *bytes += n as u64;
                *budget = budget.saturating_sub(n as u64);
            }
            Err(e) if would_block(&e) => return Ok(Pump::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn send_file_buffered(
    mut stream: impl Write,
    file: &File,
    offset: &mut u64,
    end: u64,
    transform: Transform,
    buf: &mut Vec<u8>,
    pos: &mut usize,
    scratch: &mut [u8],
    bytes: &mut u64,
    budget: &mut u64,
) -> io::Result<Pump> {
    loop {
        if *pos == buf.len() {
            if *budget == 0 {
                return Ok(Pump::Again);
            }
            // Half the scratch buffer, so that LF→CRLF (at most doubling)
            // always fits in a buffer of the same size.
            let half = (scratch.len() / 2).min(end.saturating_sub(*offset) as usize);
            let n = if half == 0 {
                0
            } else {
                file.read_at(&mut scratch[..half], *offset)?
            };
            if n == 0 {
                return Ok(Pump::Finished);
            }
            *offset += n as u64;
            buf.clear();
            *pos = 0;
            match transform {
                Transform::LfToCrlf => lf_to_crlf(&scratch[..n], buf),
                _ => buf.extend_from_slice(&scratch[..n]),
            }
        }
        match stream.write(&buf[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *pos += n;
                *bytes += n as u64;
                *budget = budget.saturating_sub(n as u64);
            }
            Err(e) if would_block(&e) => return Ok(Pump::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn receive(
    mut stream: impl Read,
    mut file: &File,
    transform: Transform,
    pending_cr: &mut bool,
    scratch: &mut [u8],
    bytes: &mut u64,
    budget: &mut u64,
) -> io::Result<Pump> {
    let mut converted = Vec::new();
    loop {
        if *budget == 0 {
            return Ok(Pump::Again);
        }
        match stream.read(scratch) {
            Ok(0) => {
                if *pending_cr {
                    file.write_all(b"\r")?;
                    *pending_cr = false;
                }
                file.flush()?;
                return Ok(Pump::Finished);
            }
            Ok(n) => {
                *bytes += n as u64;
                *budget = budget.saturating_sub(n as u64);
                if transform == Transform::CrlfToLf {
                    converted.clear();
                    crlf_to_lf(&scratch[..n], pending_cr, &mut converted);
                    file.write_all(&converted)?;
                } else {
                    file.write_all(&scratch[..n])?;
                }
            }
            Err(e) if would_block(&e) => return Ok(Pump::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Moves a channel's TLS on before its job: makes the server connection
/// once the socket is open, runs the handshake until it is done (then
/// checks `--tls-require-reuse`), and, when `closing` (whether
/// `close_notify` is queued yet), sends `close_notify` and the records
/// left. `Ok(true)`: the
/// job may run (or the channel is done closing: the caller sees the job
/// finish); `Ok(false)`: the socket would block.
fn secure_step(
    tls: &mut Option<Box<ServerConnection>>,
    closing: Option<&mut bool>,
    receiving: bool,
    stream: &TcpStream,
) -> io::Result<bool> {
    if tls.is_none() {
        // An upload's connection sends no session tickets (see
        // `tls::accept_data`); a download's does, so that a client that
        // resumes with a ticket used once each time never runs out.
        let made = if receiving {
            crate::tls::accept_data()
        } else {
            crate::tls::accept()
        };
        let made = made.unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no TLS configured",
            ))
        })?;
        *tls = Some(Box::new(made));
    }
    let Some(conn) = tls.as_deref_mut() else {
        return Ok(false);
    };
    if conn.is_handshaking() {
        while conn.is_handshaking() {
            match conn.complete_io(&mut &*stream) {
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(io::ErrorKind::InvalidData.into()),
            }
        }
        if crate::tls::require_reuse()
            && conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed)
        {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
    }
    if let Some(close_sent) = closing {
        if !*close_sent {
            *close_sent = true;
            conn.send_close_notify();
        }
        while conn.wants_write() {
            match conn.write_tls(&mut &*stream) {
                Ok(_) => {}
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An upload is whole once the client has ended it: a client
                // that closes without waiting for our `close_notify` (curl
                // does) loses nothing.
                Err(_) if receiving => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(true)
}

/// A channel's socket as its job sees it under TLS: plaintext in and out.
/// A write encrypts at most one record and only once the records before
/// it are in the socket, so what rustls holds stays bounded; a read feeds
/// rustls ciphertext until it has plaintext, and reports `close_notify` (or
/// the socket's end) as the end of the stream.
struct TlsIo<'a> {
    tls: &'a mut ServerConnection,
    sock: &'a TcpStream,
}

impl TlsIo<'_> {
    fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut &*self.sock)?;
        }
        Ok(())
    }
}

impl Write for TlsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let n = buf.len().min(crate::drivers::secure::RECORD);
        let n = self.tls.writer().write(&buf[..n])?;
        match self.send_records() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_records()
    }
}

impl Read for TlsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => {}
                // The socket ended without `close_notify`.
                Err(_) => return Ok(0),
            }
            match self.tls.read_tls(&mut &*self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    self.tls
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Tickets or key updates to answer: best effort.
                    let _ = self.send_records();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Appends `input` to `out` with every `\n` preceded by `\r`. A `\n` already
/// preceded by `\r` in the file is left alone (ASCII mode must not turn
/// `\r\n` into `\r\r\n`).
pub fn lf_to_crlf(input: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in input {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

/// Appends `input` to `out` with every `\r\n` turned into `\n`. A `\r` at the
/// end of `input` is held in `pending_cr` until the next call shows what
/// follows it.
pub fn crlf_to_lf(input: &[u8], pending_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in input {
        if *pending_cr {
            *pending_cr = false;
            if b != b'\n' {
                out.push(b'\r');
            }
        }
        if b == b'\r' {
            *pending_cr = true;
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A passive listener is left alone until it has a job: the client's
    /// connection waits in the backlog, and is accepted (and reported) by
    /// the pump that follows the job.
    #[test]
    fn a_passive_listener_accepts_once_it_has_a_job() {
        let local = IpAddr::from([127, 0, 0, 1]);
        let (mut ch, addr) = Channel::listen(7, 1, local, (0, 0), Some(local)).unwrap();
        assert!(!ch.watched());
        assert_eq!(ch.wait(), Wait::Nothing);
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut events, mut retired) = (Vec::new(), Vec::new());
        let mut scratch = vec![0; 4096];
        assert!(matches!(
            ch.pump(&mut scratch, &mut events, &mut retired),
            Pump::Blocked
        ));
        assert!(events.is_empty(), "nothing accepted without a job");

        ch.send_bytes(b"hello".to_vec(), false).unwrap();
        assert!(ch.watched());
        assert_eq!(ch.wait(), Wait::Read);
        let mut done = false;
        for _ in 0..1000 {
            if let Pump::Finished = ch.pump(&mut scratch, &mut events, &mut retired) {
                done = true;
                break;
            }
            ch.ready = true;
        }
        assert!(done);
        assert!(matches!(
            events.first(),
            Some(ChannelEvent::Connected { id: 7, .. })
        ));
        assert!(matches!(
            events.last(),
            Some(ChannelEvent::Done { id: 7, bytes: 5 })
        ));
        ch.retire(&mut retired);
        drop(retired);
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
    }

    #[test]
    fn lf_to_crlf_converts_bare_newlines_only() {
        let mut out = Vec::new();
        lf_to_crlf(b"a\nb\r\nc\n", &mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn crlf_to_lf_handles_a_split_pair() {
        let mut out = Vec::new();
        let mut cr = false;
        crlf_to_lf(b"a\r", &mut cr, &mut out);
        assert!(cr);
        crlf_to_lf(b"\nb\rc", &mut cr, &mut out);
        assert_eq!(out, b"a\nb\rc");
    }

    #[test]
    fn crlf_to_lf_byte_at_a_time_matches_whole() {
        let input = b"x\r\n\r\r\ny\rz\n\r";
        let mut whole = Vec::new();
        let mut cr = false;
        crlf_to_lf(input, &mut cr, &mut whole);
        let mut split = Vec::new();
        let mut cr2 = false;
        for b in input {
            crlf_to_lf(std::slice::from_ref(b), &mut cr2, &mut split);
        }
        assert_eq!(whole, split);
        assert_eq!(cr, cr2);
    }
}
