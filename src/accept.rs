//! How the workers of the prefork family get their connections
//! (`--accept`): three strategies, all under the same master
//! (`supervisor.rs`) and the same worker bodies, which only ever see a
//! [`Listeners`].
//!
//! - `shared` (the default): the master binds the listeners and every
//!   worker accepts on them. One accept queue per address; the kernel
//!   wakes the workers waiting on it (a blocking `poll` in `prefork` and
//!   `prefork-threads` wakes them all, the thundering herd; epoll in
//!   `prefork-reactor` wakes the ones whose epoll set is registered), and
//!   whoever calls `accept` first wins. Nothing is balanced: a worker that
//!   happens to be awake and idle takes connection after connection, so
//!   the spread follows scheduling luck, not load.
//! - `reuseport`: each worker position has its own listening socket per
//!   address, bound with `SO_REUSEPORT` on the same address (the first bind,
//!   the server's own, decides the port when the address says port 0), made
//!   by the master, which never accepts on them, and inherited by the
//!   worker of that position; a respawned worker gets the same socket, so
//!   what waited in its backlog is served, not lost. The kernel picks a
//!   socket by hashing each connection's addresses and ports: no herd, no
//!   lock, and an even spread of *connections* over many clients, but not
//!   of load (a hash does not know that one worker is busy), and whatever a
//!   position's backlog holds waits for that position's worker alone: while
//!   it restarts, or while a recycled worker (`--max-worker-memory`)
//!   finishes its connections before its replacement starts, the
//!   connections hashed to it wait though other workers are idle. A
//!   position added by `TTIN` binds its socket on demand. When `TTOU`
//!   removes a position, its socket is shut down at once (`shutdown`
//!   reaches every process holding it): kept open without a worker, it
//!   would stay in the hash group and new connections would keep landing
//!   in a backlog nobody accepts from. The cost is the connections queued
//!   in that backlog at that moment: Linux resets them, unless
//!   `net.ipv4.tcp_migrate_req` is 1, when it moves them to another
//!   listener of the group. Only IP listeners can be multiplied, so
//!   `unix:` and `fd://` addresses (and sockets systemd passes) refuse
//!   `reuseport` at the command line.
//! - `handoff`: the master accepts (it polls the listeners beside its
//!   signal pipe) and passes each descriptor, with `SCM_RIGHTS`, over a
//!   per-position `SOCK_SEQPACKET` socket pair to the least-loaded worker
//!   that takes connections: fewest open connections in the scoreboard
//!   plus those handed to it and not yet taken, ties to the lowest
//!   position. The master never blocks on a worker: a send that would
//!   block, or a worker with [`HANDOFF_DEPTH`] connections waiting, skips
//!   that worker; when every worker is skipped, the master keeps the
//!   connection and stops polling the listeners for [`HANDOFF_PAUSE`], so
//!   new connections wait in the kernel's backlog (back-pressure, never a
//!   drop). The worker's end is a [`Receiver`], a `net::Listener` whose
//!   accept is a `recvmsg`: every worker body (blocking accept loops, pool
//!   threads, the reactor) and the `--max-connections`/`--max-per-ip`
//!   admission work unchanged. The peer and local addresses travel in the
//!   message, so the worker makes no `getpeername`/`getsockname`. Each
//!   position's pair outlives its workers and the master keeps both ends,
//!   so connections handed to a worker that dies or quits before taking
//!   them are taken back by the master and handed to another. The price:
//!   every connection costs the master an `accept4` and a `sendmsg` and the
//!   worker a `recvmsg` (plus an `fcntl` when the mode differs), and it
//!   crosses one more process, which is one more hop of latency and one
//!   process that all connections pass through. In exchange the spread
//!   follows load. If a worker is out of descriptors when it receives one,
//!   the kernel closes the descriptor (`MSG_CTRUNC`): that connection is
//!   lost, and the worker pauses accepting as after `EMFILE`.
//!
//! Measured (`muse bench echo`, release build, loopback, two CPUs shared
//! with the load generator, three workers, three runs each; the median):
//!
//! | `prefork-reactor`, echo | `shared` | `reuseport` | `handoff` |
//! |---|---|---|---|
//! | `rr` (50 kept connections): req/s | 166k (136k–237k) | 213k | 204k |
//! | `rr`: requests per server CPU-second | 260k | 173k | 176k |
//! | `rr`: worker CPU shares | 84/16/0 % (100/0/0 in two runs of three) | 35/34/31 % | 34/33/32 % |
//! | `connect` (a connection per request): req/s | 14.3k | 14.3k | 14.4k |
//! | `connect`: requests per server CPU-second | 30.9k | 26.8k | 20.6k (the master: a quarter of the CPU) |
//! | `connect`: worker CPU shares | 38/33/29 % | 36/32/32 % | 36/33/31 % |
//!
//! With kept connections the shared queue gives one worker nearly all of
//! them (it was awake when they came), which is cheap per request (one
//! busy loop batches well) but leaves CPUs idle and throughput to luck;
//! both other strategies spread them evenly. With a connection per request
//! (the load generator is the limit there, so the CPU column decides),
//! hand-off costs a third more CPU per connection than the shared queue.
//! And under plain `prefork`, one client per worker, `reuseport` is a
//! hazard: four clients over four workers hashed two and two onto two
//! sockets in both runs, and the two clients queued behind a busy worker
//! stalled while two workers sat idle; `shared` and `handoff` served all
//! four.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::archs::Arch;
use crate::net::{AcceptError, AcceptPause, Accepted, Listeners, EXHAUSTED_BACKOFF};
use crate::scoreboard::{Scoreboard, MAX_WORKERS};
use crate::server::{Config, Server};
use crate::{log, signals, sys};

/// How the workers of the prefork family get their connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// `shared`: every worker accepts on the master's listeners.
    #[default]
    Shared,
    /// `reuseport`: each worker position has its own `SO_REUSEPORT`
    /// listeners.
    ReusePort,
    /// `handoff`: the master accepts and hands each connection to the
    /// least-loaded worker.
    Handoff,
}

impl Strategy {
    /// Every strategy, the default first.
    pub const ALL: [Strategy; 3] = [Strategy::Shared, Strategy::ReusePort, Strategy::Handoff];

    /// The `--accept` name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Shared => "shared",
            Strategy::ReusePort => "reuseport",
            Strategy::Handoff => "handoff",
        }
    }

    /// The strategy with this `--accept` name.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The most connections handed to one worker and not yet taken by it: a
/// worker with this many waiting is skipped, as one whose socket is full.
pub const HANDOFF_DEPTH: u64 = 64;

/// How long the master stops polling the listeners when no worker can
/// take a connection it holds.
pub const HANDOFF_PAUSE: Duration = Duration::from_millis(5);

/// How many connections the master accepts from one listener before it
/// looks at the others and its signals again.
const ACCEPT_BATCH: usize = 64;

/// The master's side of the strategy: what it makes before forking a
/// worker, what the worker keeps, and (`handoff`) the accepting itself.
pub struct Acceptor {
    strategy: Strategy,
    /// The mode the workers' bodies use for their sockets (the reactor's
    /// are non-blocking): the master accepts in it, sparing the worker an
    /// `fcntl`.
    nonblocking: bool,
    /// `reuseport`: each position's own listeners, bound on demand;
    /// position 0's are the server's (so that every socket in the group
    /// has a worker).
    own: Vec<Option<Listeners>>,
    /// `handoff`: each position's socket pair, made on demand.
    pipes: Vec<Option<Pipe>>,
    /// `handoff`: accepted connections no worker could take yet.
    held: VecDeque<Accepted>,
    /// `handoff`: positions skipped in this round (their socket is full).
    full: Vec<bool>,
    /// `handoff`: the listeners are not polled before this (out of
    /// descriptors).
    paused_until: Option<Instant>,
    /// `handoff`: what the master polls.
    fds: Vec<sys::PollFd>,
}

/// One position's hand-off socket pair.
struct Pipe {
    /// The master's end, non-blocking.
    master: OwnedFd,
    /// The worker's end: inherited by the worker, and kept by the master to
    /// take back what a worker that is gone left in it.
    worker: OwnedFd,
    /// Connections sent over it (compared with the scoreboard's
    /// `received`).
    sent: u64,
}

impl Acceptor {
    /// The acceptor for `server`'s `--accept` strategy (taking the
    /// `reuseport` listeners [`bind_positions`] made).
    pub fn new(server: &Server) -> Acceptor {
        let mut acceptor = Acceptor {
            strategy: server.config.accept,
            nonblocking: matches!(
                server.config.arch,
                Arch::PreforkReactor | Arch::PreforkUring
            ),
            own: (0..MAX_WORKERS).map(|_| None).collect(),
            pipes: (0..MAX_WORKERS).map(|_| None).collect(),
            held: VecDeque::new(),
            full: vec![false; MAX_WORKERS],
            paused_until: None,
            fds: Vec::new(),
        };
        let early =
            std::mem::take(&mut *server.reuseport.lock().unwrap_or_else(|e| e.into_inner()));
        for (nr, listeners) in early.into_iter().enumerate() {
            acceptor.own[nr + 1] = Some(listeners);
        }
        acceptor
    }

    /// Before the worker of position `nr` is forked: binds the position's
    /// `reuseport` listeners, or makes its hand-off pair, if it has none
    /// yet. An error means that the worker cannot start now.
    pub fn prepare(&mut self, server: &Server, nr: usize) -> io::Result<()> {
        match self.strategy {
            Strategy::Shared => {}
            Strategy::ReusePort => {
                if nr > 0 && self.own[nr].is_none() {
                    self.own[nr] = Some(server.listeners.own_sibling()?);
                }
            }
            Strategy::Handoff => {
                if self.pipes[nr].is_none() {
                    let (master, worker) = sys::seqpacket_pair()?;
                    sys::set_nonblocking(master.as_raw_fd(), true)?;
                    self.pipes[nr] = Some(Pipe {
                        master,
                        worker,
                        sent: 0,
                    });
                }
            }
        }
        Ok(())
    }

    /// In the worker of position `nr`, just forked: the listeners it
    /// accepts on (`None`: the server's own). Everything else the master
    /// made for other positions is closed in this process.
    pub fn for_worker(&mut self, server: &Server, nr: usize) -> Option<Listeners> {
        let own = self.own[nr].take();
        let pipe = self.pipes[nr].take();
        self.own.clear();
        self.pipes.clear();
        self.held.clear();
        match self.strategy {
            Strategy::Shared => None,
            Strategy::ReusePort => own,
            Strategy::Handoff => pipe.map(|p| {
                Listeners::handoff(Receiver {
                    sock: p.worker,
                    taken: &server.board.slot(nr).received,
                })
            }),
        }
    }

    /// The master's wait between two looks at its workers: until a signal
    /// arrives or `timeout` passes. `taking[nr]` holds the scoreboard
    /// slots of position `nr`'s workers that take new connections
    /// (running, neither retiring nor killed; empty: none does); `target`
    /// is the number of positions. Under `reuseport`, positions at
    /// or over `target` lose their sockets; under `handoff`, the master
    /// accepts and hands connections out meanwhile.
    pub fn wait(
        &mut self,
        server: &Server,
        target: usize,
        taking: &[Vec<usize>],
        timeout: Duration,
    ) -> io::Result<()> {
        match self.strategy {
            Strategy::Shared => signals::wait(Some(timeout)),
            Strategy::ReusePort => {
                self.retire(target);
                signals::wait(Some(timeout))
            }
            Strategy::Handoff => self.hand_off(server, taking, timeout),
        }
    }

    /// Shuts down the `reuseport` sockets of positions `target` and over
    /// (see the top of this file for why, and what it costs).
    fn retire(&mut self, target: usize) {
        for (nr, own) in self.own.iter_mut().enumerate().skip(target.max(1)) {
            let Some(listeners) = own.take() else {
                continue;
            };
            for l in listeners.iter() {
                if let Err(e) = sys::shutdown_read(l.as_raw_fd()) {
                    log::warn(format_args!("closing worker {nr}'s listener: {e}"));
                }
            }
            log::info(format_args!(
                "worker {nr}'s SO_REUSEPORT listeners closed; connections still queued \
                 in them are reset unless net.ipv4.tcp_migrate_req is 1"
            ));
        }
    }

    /// `handoff`: accepts and hands out connections until a signal arrives
    /// or `timeout` passes.
    fn hand_off(
        &mut self,
        server: &Server,
        taking: &[Vec<usize>],
        timeout: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let board = server.board;
        let listening = taking.iter().any(|slots| !slots.is_empty());
        loop {
            self.take_back(board, taking);
            self.full.fill(false);
            while let Some(conn) = self.held.pop_front() {
                if let Err(conn) = self.deliver(board, taking, conn) {
                    self.held.push_front(conn);
                    break;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let mut wait = deadline - now;
            let paused = self.paused_until.is_some_and(|t| now < t);
            if let Some(t) = self.paused_until.filter(|_| paused) {
                wait = wait.min(t - now);
            }
            // Holding a connection no worker could take: the listeners
            // wait (their backlog holds the newer ones) and the workers
            // are asked again shortly.
            let poll_listeners = listening && self.held.is_empty() && !paused;
            if listening && !self.held.is_empty() {
                wait = wait.min(HANDOFF_PAUSE);
            }
            self.fds.clear();
            self.fds.push(sys::poll_fd(signals::wake_fd(), sys::POLLIN));
            if poll_listeners {
                self.fds.extend(
                    server
                        .listeners
                        .iter()
                        .map(|l| sys::poll_fd(l.as_raw_fd(), sys::POLLIN)),
                );
            }
            sys::poll(&mut self.fds, Some(wait))?;
            if self.fds[0].revents != 0 {
                // A signal: the master looks at its workers first.
                return Ok(());
            }
            for i in 0..self.fds.len() - 1 {
                if self.fds[i + 1].revents != 0 {
                    self.accept_batch(server, taking, i);
                }
            }
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections from listener `i` and
    /// hands them out; stops at the first no worker can take.
    fn accept_batch(&mut self, server: &Server, taking: &[Vec<usize>], i: usize) {
        for _ in 0..ACCEPT_BATCH {
            match server.listeners.accept(i, self.nonblocking) {
                Ok(conn) => {
                    AcceptPause::resumed();
                    if let Err(conn) = self.deliver(server.board, taking, conn) {
                        self.held.push_back(conn);
                        return;
                    }
                }
                Err(AcceptError::WouldBlock) => {
                    AcceptPause::resumed();
                    return;
                }
                Err(AcceptError::Gone) => {}
                Err(AcceptError::Exhausted(e)) => {
                    AcceptPause::exhausted(&e);
                    self.paused_until = Some(Instant::now() + EXHAUSTED_BACKOFF);
                    return;
                }
                Err(AcceptError::Other(e)) => {
                    log::warn(format_args!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Hands `conn` to the least-loaded worker that can take it, or gives
    /// it back if none can.
    fn deliver(
        &mut self,
        board: &Scoreboard,
        taking: &[Vec<usize>],
        conn: Accepted,
    ) -> Result<(), Accepted> {
        let message = encode(&conn, self.nonblocking);
        loop {
            let Some(nr) = self.least_loaded(board, taking) else {
                return Err(conn);
            };
            let Some(pipe) = self.pipes[nr].as_mut() else {
                self.full[nr] = true;
                continue;
            };
            match sys::send_fd(pipe.master.as_raw_fd(), &message, conn.stream.as_raw_fd()) {
                Ok(()) => {
                    pipe.sent += 1;
                    // The worker has its own descriptor now; ours closes.
                    return Ok(());
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    self.full[nr] = true;
                }
                Err(e) => {
                    log::warn(format_args!("handing a connection to worker {nr}: {e}"));
                    self.full[nr] = true;
                }
            }
        }
    }

    /// The taking worker with the fewest connections, open or waiting in
    /// its socket, that is not skipped; ties to the lowest position.
    fn least_loaded(&self, board: &Scoreboard, taking: &[Vec<usize>]) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (nr, pipe) in self.pipes.iter().enumerate() {
            let Some(pipe) = pipe else { continue };
            let slots = taking.get(nr).map_or(&[][..], Vec::as_slice);
            if slots.is_empty() || self.full[nr] {
                continue;
            }
            let open: usize = slots
                .iter()
                .map(|&s| board.slot(s).open.load(Ordering::Relaxed))
                .sum();
            let waiting = pipe
                .sent
                .saturating_sub(board.slot(nr).received.load(Ordering::Acquire));
            if waiting >= HANDOFF_DEPTH {
                continue;
            }
            let load = open + waiting as usize;
            if best.is_none_or(|(least, _)| load < least) {
                best = Some((load, nr));
            }
        }
        best.map(|(_, nr)| nr)
    }

    /// Takes back the connections waiting in the sockets of positions
    /// whose worker does not take them any more (gone, quitting, killed),
    /// to hand them to another.
    fn take_back(&mut self, board: &Scoreboard, taking: &[Vec<usize>]) {
        for (nr, pipe) in self.pipes.iter().enumerate() {
            let Some(pipe) = pipe else { continue };
            if taking.get(nr).is_some_and(|slots| !slots.is_empty()) {
                continue;
            }
            let received = &board.slot(nr).received;
            while pipe.sent > received.load(Ordering::Acquire) {
                match receive(pipe.worker.as_raw_fd(), received, self.nonblocking) {
                    Ok(conn) => self.held.push_back(conn),
                    // The worker took it meanwhile (and is about to count
                    // it), or it is lost: nothing more to take.
                    Err(AcceptError::WouldBlock) | Err(AcceptError::Other(_)) => break,
                    Err(_) => {}
                }
            }
        }
    }
}

/// Under `--accept reuseport`, the listeners of worker positions 1 to
/// `--workers` - 1 (position 0's are `listeners`, the server's own), bound
/// with them, before anything listens: a connection that arrives before
/// its position's socket exists goes to the sockets already there, so
/// binding them as the workers start would give the first clients (a bench
/// connects all of its clients at once) to worker 0. Empty for the other
/// strategies.
pub fn bind_positions(listeners: &Listeners, config: &Config) -> io::Result<Vec<Listeners>> {
    if config.accept != Strategy::ReusePort {
        return Ok(Vec::new());
    }
    (1..config.workers.clamp(1, MAX_WORKERS))
        .map(|_| listeners.own_sibling())
        .collect()
}

/// A worker's end of its position's hand-off socket: accepting from it
/// receives a connection the master accepted.
#[derive(Debug)]
pub struct Receiver {
    sock: OwnedFd,
    /// The position's `received` count in the scoreboard.
    taken: &'static AtomicU64,
}

impl Receiver {
    /// Receives one connection, its socket in the mode asked for.
    pub fn accept(&self, nonblocking: bool) -> Result<Accepted, AcceptError> {
        receive(self.sock.as_raw_fd(), self.taken, nonblocking)
    }

    /// Another descriptor for the same socket.
    pub fn try_clone(&self) -> io::Result<Receiver> {
        Ok(Receiver {
            sock: self.sock.try_clone()?,
            taken: self.taken,
        })
    }
}

impl AsRawFd for Receiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// One address in a hand-off message: family (4 or 6), 16 bytes of
/// address, the port and the IPv6 scope, big-endian.
const ADDR_LEN: usize = 23;
/// A hand-off message: flags (bit 0: the socket is non-blocking; bit 1:
/// it came to a TLS listener), then the peer's and the local address.
const MESSAGE_LEN: usize = 1 + 2 * ADDR_LEN;

fn encode(conn: &Accepted, nonblocking: bool) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = u8::from(nonblocking) | (u8::from(conn.tls) << 1);
    put_addr(&mut m[1..1 + ADDR_LEN], conn.peer);
    put_addr(&mut m[1 + ADDR_LEN..], conn.local);
    m
}

fn put_addr(out: &mut [u8], addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.ip().octets());
            out[19..23].copy_from_slice(&a.scope_id().to_be_bytes());
        }
    }
    out[17..19].copy_from_slice(&addr.port().to_be_bytes());
}

fn get_addr(b: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([b[17], b[18]]);
    match b[0] {
        4 => Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(b[1], b[2], b[3], b[4]),
            port,
        ))),
        6 => {
            let ip: [u8; 16] = b[1..17].try_into().ok()?;
            let scope = u32::from_be_bytes(b[19..23].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    }
}

/// Receives one handed-off connection from `sock`, counting it in `taken`.
fn receive(sock: RawFd, taken: &AtomicU64, nonblocking: bool) -> Result<Accepted, AcceptError> {
    let mut buf = [0u8; MESSAGE_LEN];
    let msg = match sys::recv_fd(sock, &mut buf) {
        Ok(msg) => msg,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(AcceptError::WouldBlock),
        Err(e) => return Err(AcceptError::Other(e)),
    };
    if msg.len == 0 && msg.fd.is_none() && !msg.truncated {
        // The master has gone; the kernel is about to stop this worker too
        // (see `sys::die_with_parent`).
        return Err(AcceptError::Gone);
    }
    taken.fetch_add(1, Ordering::AcqRel);
    let Some(fd) = msg.fd else {
        return Err(if msg.truncated {
            AcceptError::Exhausted(io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            AcceptError::Gone
        });
    };
    let (Some(peer), Some(local)) = (
        get_addr(&buf[1..1 + ADDR_LEN]),
        get_addr(&buf[1 + ADDR_LEN..]),
    ) else {
        return Err(AcceptError::Gone);
    };
    if msg.len != MESSAGE_LEN {
        return Err(AcceptError::Gone);
    }
    if (buf[0] & 1 == 1) != nonblocking {
        sys::set_nonblocking(fd.as_raw_fd(), nonblocking).map_err(AcceptError::Other)?;
    }
    Ok(Accepted {
        stream: Socket::from(fd),
        peer,
        local,
        tls: buf[0] & 2 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn addresses_survive_the_message() {
        for addr in [
            "127.0.0.1:7007",
            "0.0.0.0:0",
            "[::1]:65535",
            "[fe80::1%3]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut b = [0u8; ADDR_LEN];
            put_addr(&mut b, addr);
            assert_eq!(get_addr(&b), Some(addr));
        }
    }

    #[test]
    fn a_connection_crosses_the_socket_pair_with_its_addresses_and_mode() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let conn = Accepted {
            stream: Socket::from(OwnedFd::from(stream)),
            peer,
            local: listener.local_addr().unwrap(),
            tls: true,
        };
        let (master, worker) = sys::seqpacket_pair().unwrap();
        let taken = Box::leak(Box::new(AtomicU64::new(0)));
        let receiver = Receiver {
            sock: worker,
            taken,
        };
        assert!(matches!(
            receiver.accept(true),
            Err(AcceptError::WouldBlock)
        ));
        sys::send_fd(
            master.as_raw_fd(),
            &encode(&conn, false),
            conn.stream.as_raw_fd(),
        )
        .unwrap();
        drop(conn);
        let got = receiver.accept(true).unwrap();
        assert_eq!(got.peer, client.local_addr().unwrap());
        assert_eq!(got.local, listener.local_addr().unwrap());
        assert_eq!(taken.load(Ordering::Relaxed), 1);
        assert!(rustix::fs::fcntl_getfl(&got.stream)
            .unwrap()
            .contains(rustix::fs::OFlags::NONBLOCK));
        client.write_all(b"ping").unwrap();
        (&got.stream).write_all(b"pong").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        drop(master);
        assert!(matches!(receiver.accept(true), Err(AcceptError::Gone)));
    }
}
