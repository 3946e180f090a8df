//! Listening sockets and accepting from them, the same way in every
//! architecture.
//!
//! Listeners are bound once, in the first process, with `SO_REUSEADDR` and a
//! backlog of `SOMAXCONN`, and are non-blocking: blocking architectures wait
//! for readiness with `poll` (so that they can also watch the shutdown pipe)
//! and evented ones register them with their reactor. Accepted sockets get
//! `TCP_NODELAY` (request/response protocols must not wait for Nagle) and
//! `SO_OOBINLINE` (urgent bytes, such as FTP's Telnet Synch, stay in the
//! byte stream instead of being lost).
//!
//! Running out of descriptors (`EMFILE`, `ENFILE`) or kernel memory is not
//! fatal: [`AcceptError::Exhausted`] tells the caller to stop accepting for
//! [`EXHAUSTED_BACKOFF`] and try again, so the loop neither spins nor dies,
//! and waiting clients stay in the backlog until descriptors free up.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

/// How long to stop accepting after running out of descriptors or memory:
/// long enough not to spin, short enough that a freed descriptor is used
/// promptly.
pub const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// The server's listening sockets.
pub struct Listeners {
    list: Vec<TcpListener>,
}

/// Why an accept did not yield a connection.
#[derive(Debug)]
pub enum AcceptError {
    /// Nothing is waiting (or a waiting client gave up): try again later.
    WouldBlock,
    /// Out of descriptors or memory: back off, then try again.
    Exhausted(io::Error),
    /// Anything else (logged by the caller; accepting goes on).
    Other(io::Error),
}

impl Listeners {
    /// Binds every address, in order. With `reuse_port`, the sockets allow
    /// [`Listeners::sibling`] groups on the same addresses.
    pub fn bind(addrs: &[SocketAddr], reuse_port: bool) -> io::Result<Listeners> {
        let list = addrs
            .iter()
            .map(|a| {
                bind_one(*a, reuse_port)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners { list })
    }

    /// Another group of listeners on the very addresses these are bound to
    /// (ports chosen by the kernel included), sharing them with
    /// `SO_REUSEPORT`: the kernel then spreads new connections evenly over
    /// the groups, instead of waking every thread for each one and letting
    /// the fastest take them all. These listeners must have been bound with
    /// `reuse_port`.
    pub fn sibling(&self) -> io::Result<Listeners> {
        let list = self
            .list
            .iter()
            .map(|l| bind_one(l.local_addr()?, true))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners { list })
    }

    /// The listeners.
    pub fn iter(&self) -> impl Iterator<Item = &TcpListener> {
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
        for l in &self.list {
            writeln!(out, "listening on {} ({protocol}, {arch})", l.local_addr()?)?;
        }
        out.flush()
    }

    /// Accepts one connection from listener `i`; the socket is non-blocking
    /// if `nonblocking`.
    pub fn accept(
        &self,
        i: usize,
        nonblocking: bool,
    ) -> Result<(TcpStream, SocketAddr), AcceptError> {
        accept_from(&self.list[i], nonblocking)
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
    socket.bind(&addr.into())?;
    socket.listen(libc::SOMAXCONN)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts one connection and sets the options every connection gets, in
/// one `accept4` call for the descriptor flags.
pub fn accept_from(
    listener: &TcpListener,
    nonblocking: bool,
) -> Result<(TcpStream, SocketAddr), AcceptError> {
    let accepted = accept_plain(listener, nonblocking)?;
    configure(&accepted.0);
    Ok(accepted)
}

/// Accepts one connection without setting any option on it (a bulk data
/// connection has no use for `TCP_NODELAY` or urgent data).
pub fn accept_plain(
    listener: &TcpListener,
    nonblocking: bool,
) -> Result<(TcpStream, SocketAddr), AcceptError> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    loop {
        match socket2::SockRef::from(listener).accept4(flags) {
            Ok((socket, peer)) => {
                let stream: TcpStream = socket.into();
                let peer = peer.as_socket().ok_or_else(|| {
                    AcceptError::Other(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "accepted a non-IP peer",
                    ))
                })?;
                return Ok((stream, peer));
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A client that gave up before we accepted it, or a transient
                // network error on the new socket: nothing to serve.
                Some(libc::EAGAIN | libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => {
                    return Err(AcceptError::WouldBlock)
                }
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    return Err(AcceptError::Exhausted(e))
                }
                _ => return Err(AcceptError::Other(e)),
            },
        }
    }
}

/// Sets the options every accepted connection gets.
pub fn configure(stream: &TcpStream) {
    // Failures here only cost latency or urgent-byte handling; the
    // connection is still served.
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(stream).set_out_of_band_inline(true);
}

/// Writes `bytes` to a just-accepted connection without waiting (a refusal
/// line), then closes it.
pub fn refuse(stream: TcpStream, bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(bytes);
    }
    drop(stream);
}
