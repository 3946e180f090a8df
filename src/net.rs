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
//! A listener may also be a Unix-domain socket ([`Listeners::bind_abstract`]:
//! the kv store process's, which its workers reach). A Unix-domain client
//! has no IP address: its peer and local addresses read [`UNIX_ADDR`].
//!
//! Running out of descriptors (`EMFILE`, `ENFILE`) or kernel memory is not
//! fatal: [`AcceptError::Exhausted`] tells the caller to stop accepting for
//! [`EXHAUSTED_BACKOFF`] and try again, so the loop neither spins nor dies,
//! and waiting clients stay in the backlog until descriptors free up. An
//! [`AcceptPause`] logs such an episode once per process when it starts and
//! once when it ends, not at every retry.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
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
pub enum AcceptPause {}

/// Whether an episode is running (the accept path's one cheap check).
static PAUSED: AtomicBool = AtomicBool::new(false);
/// When the running episode began and how many pauses it has had.
static EPISODE: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

impl AcceptPause {
    /// An accept failed for want of descriptors or memory (`e`); the caller
    /// now pauses for [`EXHAUSTED_BACKOFF`].
    pub fn exhausted(e: &io::Error) {
        let mut episode = EPISODE.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *episode {
            Some((_, pauses)) => *pauses += 1,
            None => {
                crate::log::warn(format_args!(
                    "accept: {e}; pausing accepts, retrying every {EXHAUSTED_BACKOFF:?} \
                     until descriptors free up"
                ));
                *episode = Some((Instant::now(), 1));
                PAUSED.store(true, Ordering::Relaxed);
            }
        }
    }

    /// An accept succeeded (or found nothing waiting): any episode is over.
    pub fn resumed() {
        if !PAUSED.load(Ordering::Relaxed) {
            return;
        }
        let mut episode = EPISODE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((since, pauses)) = episode.take() {
            PAUSED.store(false, Ordering::Relaxed);
            crate::log::info(format_args!(
                "accepting again after {:.1?} ({pauses} pauses)",
                since.elapsed()
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
}

impl Listener {
    /// The bound address; a Unix-domain listener's is [`UNIX_ADDR`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Unix(_) => Ok(UNIX_ADDR),
        }
    }

    /// Another descriptor for the same socket.
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(match self {
            Listener::Tcp(l) => Listener::Tcp(l.try_clone()?),
            Listener::Unix(l) => Listener::Unix(l.try_clone()?),
        })
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// The server's listening sockets.
pub struct Listeners {
    list: Vec<Listener>,
    /// Each listener's address, when every connection it accepts has that
    /// local address (not a wildcard).
    fixed: Vec<Option<SocketAddr>>,
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
        Listeners::new(list)
    }

    /// One Unix-domain listener on `name` in the abstract namespace (no
    /// file to clean up; the name is gone with the last descriptor).
    pub fn bind_abstract(name: &str) -> io::Result<Listeners> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(format!("\0{name}"))?)?;
        socket.listen(libc::SOMAXCONN)?;
        socket.set_nonblocking(true)?;
        Ok(Listeners {
            list: vec![Listener::Unix(UnixListener::from(
                std::os::fd::OwnedFd::from(socket),
            ))],
            fixed: vec![Some(UNIX_ADDR)],
        })
    }

    fn new(list: Vec<TcpListener>) -> io::Result<Listeners> {
        let fixed = list
            .iter()
            .map(fixed_local)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners {
            list: list.into_iter().map(Listener::Tcp).collect(),
            fixed,
        })
    }

    /// Another group of listeners on the very addresses these are bound to
    /// (ports chosen by the kernel included), sharing them with
    /// `SO_REUSEPORT`: the kernel then spreads new connections evenly over
    /// the groups, instead of waking every thread for each one and letting
    /// the fastest take them all. These listeners must have been bound with
    /// `reuse_port`. A Unix-domain listener is shared as it is.
    pub fn sibling(&self) -> io::Result<Listeners> {
        let list = self
            .list
            .iter()
            .map(|l| match l {
                Listener::Tcp(l) => Ok(Listener::Tcp(bind_one(l.local_addr()?, true)?)),
                Listener::Unix(_) => l.try_clone(),
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners {
            list,
            fixed: self.fixed.clone(),
        })
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
        for l in &self.list {
            writeln!(out, "listening on {} ({protocol}, {arch})", l.local_addr()?)?;
        }
        out.flush()
    }

    /// Accepts one connection from listener `i`; the socket is non-blocking
    /// if `nonblocking`.
    pub fn accept(&self, i: usize, nonblocking: bool) -> Result<Accepted, AcceptError> {
        accept_from(&self.list[i], self.fixed[i], nonblocking)
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
            });
        }
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
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()], false).unwrap();
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
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()], false).unwrap();
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
