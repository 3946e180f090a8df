//! The connection core every driver shares: one control socket, its
//! session, and the session's side channels.
//!
//! A driver's only job is waiting: it records what the kernel reported
//! (`readable`, `writable`, `urgent`, a channel's `ready`) and calls
//! [`Connection::process`], which moves bytes between the sockets and the
//! session until nothing more can happen without waiting again. Then the
//! driver asks what to wait for ([`Connection::wants_read`],
//! [`Connection::wants_write`], [`Connection::channels`],
//! [`Connection::deadline`]) and waits. Because the flags, not the kernel,
//! are the record of readiness, the same code is right under level-triggered
//! `poll`, edge-triggered epoll and tokio's readiness.
//!
//! In *blocking* mode (the blocking driver) the control socket is a blocking
//! socket: a read is attempted once per readiness and may block, and writes
//! block until done. In non-blocking mode, reads and writes go on until the
//! socket would block.
//!
//! A session that mirrors its input ([`Session::mirrors_input`], echo) and
//! streams bulk through a non-blocking connection is *relayed*: from its
//! first read of [`RELAY_MIN`] bytes, what arrives moves back out through a
//! pipe with `splice`, the pages handed on without being copied, as a TCP
//! proxy does; the session is told what moved ([`Session::relayed`]).
//!
//! In *completion* mode (the proactor, [`Connection::use_ring`]) the control
//! stream's bytes come and go through the driver's io_uring ring: the
//! driver hands in what a receive brought ([`Connection::receive`]) and
//! sends what [`Connection::take_outgoing`] gives it, reporting back with
//! [`Connection::sent`]; everything else (side channels, the service
//! stream, file bodies) moves here as in non-blocking mode.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::drivers::channel::{Channel, Pump, Retired, Wait};
use crate::drivers::secure::{Plain, Secure, Took};
use crate::net::{Accepted, Stream};
use crate::scoreboard::{Moved, Ticket};
use crate::session::{
    ChannelEvent, Computed, ConnInfo, Output, Protocol, Request, Session, Waker, Work, MAX_CHANNELS,
};
use crate::sys;

/// File bytes one `process` call sends on a non-blocking control connection
/// before it lets the driver serve others: one 1 GiB download must not
/// starve the other connections of a reactor. (A blocking connection has its
/// own thread and sends on until the socket is full.)
pub const FILE_BUDGET: usize = 1 << 20;

/// A blocking socket's `sendfile` moves at most this much per call. The
/// kernel splices a file a pipe's worth (64 KiB) at a time, each piece with
/// its own send timeout, so one large call lasts as long as a slow reader
/// keeps taking a little every second; four pieces per call keep a call
/// within four send timeouts. (One piece per call cost a quarter of
/// thread-pool's efficiency on http `large`, 8.4k against 11.3k requests
/// per CPU-second; four measured the same as one call per file, 8.3k
/// against 7.7k in a noisier run.)
const BLOCKING_FILE_STEP: usize = 256 * 1024;

/// How long a blocking connection sends before it goes back to its driver,
/// which looks at its deadlines and the shutdown's (a slow reader would
/// otherwise keep it sending past `--shutdown-timeout`).
const BLOCKING_SEND_SLICE: std::time::Duration = std::time::Duration::from_secs(1);

/// What the driver knows of the world when it calls `process`.
#[derive(Clone, Copy)]
pub struct Env {
    /// The time, read once per turn of the driver's loop.
    pub now: Instant,
    /// Whether the server is shutting down gracefully.
    pub draining: bool,
    /// The scoreboard and this worker's slot on it, for
    /// [`Request::Readmit`].
    pub board: &'static crate::scoreboard::Scoreboard,
    /// This worker's slot.
    pub slot: usize,
}

/// Whether the connection is still open after a `process` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Status {
    /// Still open: wait for what it wants.
    Open,
    /// Finished: drop it.
    Closed,
}

/// A connection's side-channel slots, allocated when the first channel
/// opens: only FTP's data connections use them, and inline they would be
/// two thirds of every connection's size (544 of 808 bytes), moved and
/// zeroed on each accept.
#[derive(Default)]
struct Slots(Option<Box<[Option<Channel>; MAX_CHANNELS]>>);

impl Slots {
    fn iter(&self) -> std::slice::Iter<'_, Option<Channel>> {
        match &self.0 {
            Some(slots) => slots.iter(),
            None => [].iter(),
        }
    }

    /// The channel in slot `i`, if the slots exist and it holds one.
    fn channel(&mut self, i: usize) -> Option<&mut Channel> {
        self.0.as_mut()?.get_mut(i)?.as_mut()
    }

    /// Empties slot `i`, giving back its channel.
    fn take(&mut self, i: usize) -> Option<Channel> {
        self.0.as_mut()?.get_mut(i)?.take()
    }

    /// The first free slot, if any.
    fn free(&self) -> Option<usize> {
        match &self.0 {
            Some(slots) => slots.iter().position(Option::is_none),
            None => Some(0),
        }
    }

    /// Puts `c` in slot `i`, allocating the slots on first use (the only
    /// call that allocates them).
    fn put(&mut self, i: usize, c: Channel) {
        self.0.get_or_insert_with(Default::default)[i] = Some(c);
    }
}

/// One control connection and everything it owns.
pub struct Connection {
    stream: Stream,
    session: Box<dyn Session>,
    channels: Slots,
    next_serial: u64,
    blocking: bool,
    /// The control socket may have bytes to read (or an end of stream).
    pub readable: bool,
    /// The control socket may accept more bytes.
    pub writable: bool,
    /// Urgent data was signalled on the control socket.
    pub urgent: bool,
    /// The kernel reported that the peer closed its sending side: the end of
    /// stream waits behind the data, so read until it, even after a short
    /// read.
    pub peer_closed: bool,
    read_closed: bool,
    /// Urgent data has been signalled on this connection: a read stops
    /// short at the urgent mark, so a short read no longer proves the
    /// socket drained.
    urgent_seen: bool,
    told_shutdown: bool,
    failed: bool,
    /// The file budget ran out with the socket still writable: come back
    /// soon without waiting.
    output_more: bool,
    events: Vec<ChannelEvent>,
    retired: Vec<Retired>,
    /// A computation the session asked for, waiting for a worker thread
    /// (non-blocking connections only: a blocking one runs it in place).
    work: Option<Work>,
    /// The session's [`Waker`] was woken: call `handle_wake` next.
    pub woken: bool,
    /// The stream to the protocol's service, once the session asked for it.
    service: ServiceLink,
    protocol: Option<Arc<dyn Protocol>>,
    /// The client address the connection is counted under.
    peer_ip: IpAddr,
    /// Counted under its real client instead ([`Request::Readmit`]).
    moved: Option<Moved>,
    /// TLS between the socket and the session (a `--tls-listen` listener).
    secure: Option<Secure>,
    /// The session has been told of its stream's end.
    eof_told: bool,
    /// Completion mode (the proactor): the control stream's bytes come and
    /// go through the driver's ring instead of system calls made here.
    ring: Option<Box<RingIo>>,
    /// The pipe a mirroring session's stream is relayed through.
    relay: Option<Relay>,
    /// Leave the session's output queued in `process` (unless a
    /// computation is about to take the connection away): an event loop
    /// lets every ready connection read and answer first, then sends
    /// ([`Connection::holds_output`]).
    pub hold_output: bool,
    _ticket: Option<Ticket>,
}

/// The most received bytes a connection in completion mode holds for a
/// session that does not read now; past it the driver stops receiving, and
/// the client's further bytes wait in the kernel (back-pressure).
pub const INBOX_MAX: usize = 64 * 1024;

/// The most bytes a connection in completion mode gathers for one send:
/// pipelined answers leave together, and a session's output waits in the
/// session (which then stops reading) while this much is in flight.
pub const OUTBOX_MAX: usize = 64 * 1024;

/// Output held back by [`Connection::hold_output`] at most: more is bulk
/// (a stream, a file), which gains nothing from waiting for the turn's end.
pub const HOLD_MAX: usize = 16 * 1024;

/// A send buffer this large is given back once empty, so that an idle
/// connection does not keep the memory of its largest answer.
const OUTBOX_KEEP: usize = 16 * 1024;

/// A read at least this long on a mirroring connection starts relaying it
/// through a pipe: a stream. For shorter messages a copy costs less than
/// the pipe's page handling, and a connection that never streams never
/// holds a pipe.
pub const RELAY_MIN: usize = 16 * 1024;

/// What one `splice` into a relay's pipe asks for: the pipe's default
/// capacity, so a client that does not read finds at most this much held
/// for it, as in a copied echo's buffer.
const RELAY_CHUNK: usize = 64 * 1024;

/// The most relay pipes open at once in a process (two descriptors each,
/// as HAProxy's `maxpipes` bounds its splicing); past it, mirroring
/// connections copy.
pub const MAX_PIPES: usize = 1024;

/// Relay pipes open in this process.
static PIPES: AtomicUsize = AtomicUsize::new(0);

/// The pipe a relayed connection's bytes cross: received into `input`,
/// sent from `output`. Bytes are spliced in only while it is empty, so a
/// `splice` that would block on the socket means the socket has nothing,
/// never that the pipe is full.
struct Relay {
    output: OwnedFd,
    input: OwnedFd,
    /// Bytes in the pipe: received, not yet sent back.
    held: usize,
}

impl Relay {
    /// A new pipe, unless [`MAX_PIPES`] are open or the process is out of
    /// descriptors (the connection then goes on copying).
    fn open() -> Option<Relay> {
        if PIPES.fetch_add(1, Ordering::Relaxed) >= MAX_PIPES {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match sys::pipe() {
            Ok((output, input)) => Some(Relay {
                output,
                input,
                held: 0,
            }),
            Err(_) => {
                PIPES.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The control stream in completion mode (the proactor): bytes the ring
/// received wait here for the session, and bytes for the client wait here
/// while the ring sends them. System calls made here send only: a file
/// body (`sendfile`) and, with nothing in the ring's hands, its head, bulk
/// output or a closing connection's last words straight from the session's
/// buffer; the TLS alert on a bad record; and the last bytes of a
/// connection that closes ([`Connection::last_words`], `close_now`, the
/// end of `process`), sent with `MSG_MORE` so that they leave with the FIN.
#[derive(Default)]
pub struct RingIo {
    /// Received bytes the session has not taken yet.
    inbox: Vec<u8>,
    /// `inbox[..taken]` has been taken.
    taken: usize,
    /// The client's end of stream arrived, behind `inbox`.
    end: bool,
    /// The connection broke (behind `inbox`).
    broken: bool,
    /// Bytes gathered for the next send (the session's output goes on
    /// while a send is in flight, up to [`OUTBOX_MAX`]).
    outbox: Vec<u8>,
    /// Bytes being sent, owned here while the kernel sends them.
    flight: Vec<u8>,
    /// `flight[..sent]` is sent.
    sent: usize,
    /// A send of `flight[sent..]` is in flight: `flight` must not change.
    sending: bool,
    /// A `sendfile` would block: wait for the socket to take more.
    pollout: bool,
}

impl RingIo {
    fn has_input(&self) -> bool {
        self.taken < self.inbox.len() || self.end
    }

    fn unsent(&self) -> bool {
        self.sent < self.flight.len() || !self.outbox.is_empty()
    }

    /// The send in flight is done: the gathered bytes go next. A
    /// connection with nothing more to send gives back large buffers, so
    /// that an idle one does not keep the memory of its largest answer; a
    /// busy one keeps them.
    fn next_flight(&mut self) {
        self.sent = 0;
        self.flight.clear();
        std::mem::swap(&mut self.flight, &mut self.outbox);
        if self.flight.is_empty() {
            for buf in [&mut self.flight, &mut self.outbox] {
                if buf.capacity() > OUTBOX_KEEP {
                    spare_give(std::mem::take(buf));
                }
            }
        }
    }
}

/// Send buffers of [`OUTBOX_MAX`] bytes kept by a thread for its
/// connections, at most this many: a connection that goes quiet gives its
/// large buffers back here rather than to the allocator, so a stream that
/// pauses between bursts does not allocate (and fault in) fresh pages for
/// every burst, and a thousand quiet connections hold none.
const SPARE_BUFFERS: usize = 32;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of [`OUTBOX_MAX`] bytes' capacity, from the spares if any.
fn spare_take() -> Vec<u8> {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(OUTBOX_MAX))
}

/// Keeps `buf` (emptied) as a spare, or frees it if there are enough.
fn spare_give(mut buf: Vec<u8>) {
    if buf.capacity() != OUTBOX_MAX {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_BUFFERS {
            s.push(buf);
        }
    });
}

impl Read for RingIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.inbox[self.taken..];
        if avail.is_empty() {
            return match (self.broken, self.end) {
                (true, _) => Err(io::ErrorKind::ConnectionReset.into()),
                (false, true) => Ok(0),
                (false, false) => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.taken += n;
        if self.taken == self.inbox.len() {
            self.inbox.clear();
            self.taken = 0;
        }
        Ok(n)
    }
}

impl Write for RingIo {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.outbox.len() >= OUTBOX_MAX {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = data.len().min(OUTBOX_MAX - self.outbox.len());
        if self.outbox.len() + n > OUTBOX_KEEP && self.outbox.capacity() < OUTBOX_MAX {
            // Past a small answer: a whole buffer, so it grows no more.
            let mut big = spare_take();
            big.extend_from_slice(&self.outbox);
            self.outbox = big;
        }
        self.outbox.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The state of a connection's stream to its protocol's service.
enum ServiceLink {
    /// Never asked for.
    None,
    /// Open (its connect perhaps still under way).
    Open(ServiceStream),
    /// Closed, failed, or could not be opened: the session has been told.
    Gone,
}

/// An open service stream and what its socket last reported.
pub struct ServiceStream {
    stream: Stream,
    /// The socket may have bytes (or an end of stream) to read.
    pub readable: bool,
    /// The socket may take more bytes.
    pub writable: bool,
    write_closed: bool,
}

impl Connection {
    /// Wraps an accepted control connection. `blocking` must match the
    /// socket's mode. The ticket, if any, is held until the connection drops.
    pub fn new(
        stream: Stream,
        session: Box<dyn Session>,
        blocking: bool,
        ticket: Option<Ticket>,
    ) -> Connection {
        Connection {
            stream,
            session,
            channels: Default::default(),
            next_serial: 1,
            blocking,
            readable: false,
            writable: true,
            urgent: false,
            peer_closed: false,
            read_closed: false,
            urgent_seen: false,
            told_shutdown: false,
            failed: false,
            output_more: false,
            events: Vec::new(),
            retired: Vec::new(),
            work: None,
            woken: false,
            service: ServiceLink::None,
            protocol: None,
            peer_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            moved: None,
            secure: None,
            eof_told: false,
            ring: None,
            relay: None,
            hold_output: false,
            _ticket: ticket,
        }
    }

    /// Creates the session for an accepted socket and wraps both.
    pub fn accept(
        accepted: Accepted,
        protocol: &Arc<dyn Protocol>,
        blocking: bool,
        ticket: Option<Ticket>,
        now: Instant,
    ) -> Connection {
        let info = ConnInfo {
            peer: accepted.peer,
            local: accepted.local,
            wall: std::time::SystemTime::now(),
        };
        let secure = match accepted.tls.then(crate::tls::accept) {
            None => None,
            Some(Some(Ok(tls))) => Some(Secure::new(tls, now)),
            Some(other) => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "TLS is not configured".into(),
                };
                crate::log::warn(format_args!("cannot start TLS: {why}"));
                None
            }
        };
        let failed = accepted.tls && secure.is_none();
        let session = protocol.new_session(&info, now);
        let mut conn = Connection::new(accepted.stream, session, blocking, ticket);
        conn.protocol = Some(Arc::clone(protocol));
        conn.peer_ip = accepted.peer.ip();
        if secure.is_some() {
            conn.session.handle_tls(now);
        }
        conn.secure = secure;
        conn.failed = failed;
        conn
    }

    /// Whether the session wants a [`Waker`] (its protocol says so).
    pub fn wants_waker(&self) -> bool {
        self.protocol.as_ref().is_some_and(|p| p.wants_waker())
    }

    /// Gives the session its waker.
    pub fn set_waker(&mut self, waker: Waker) {
        self.session.set_waker(waker);
    }

    /// Whether the session waits for its waker (see [`Session::waiting`]).
    pub fn is_waiting(&self) -> bool {
        self.session.waiting()
    }

    /// The service stream's socket, if one is open.
    pub fn service_fd(&self) -> Option<RawFd> {
        match &self.service {
            ServiceLink::Open(s) => Some(s.stream.as_raw_fd()),
            _ => None,
        }
    }

    /// The open service stream, for a driver to record readiness on.
    pub fn service_mut(&mut self) -> Option<&mut ServiceStream> {
        match &mut self.service {
            ServiceLink::Open(s) => Some(s),
            _ => None,
        }
    }

    /// What a driver that polls (level-triggered) waits for on the service
    /// stream: `(read, write)`.
    pub fn service_wants(&self) -> (bool, bool) {
        match &self.service {
            ServiceLink::Open(s) => (
                self.session.wants_service_input(),
                !self.session.poll_service_output().is_empty()
                    || (self.session.service_done() && !s.write_closed),
            ),
            _ => (false, false),
        }
    }

    /// Puts the control stream in completion mode (the proactor): from now
    /// on the driver hands in what it received ([`Connection::receive`])
    /// and sends what [`Connection::take_outgoing`] gives it.
    pub fn use_ring(&mut self) {
        self.ring = Some(Box::default());
        self.readable = false;
        self.writable = true;
    }

    /// Completion mode: bytes the ring received on the control socket. They
    /// go straight to a session that reads now, else wait in the inbox.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        // While a side channel runs, bytes wait for `process`, which looks
        // at urgent data (FTP's ABOR) before it reads.
        let direct = ring.inbox.is_empty()
            && self.secure.is_none()
            && !self.channels.iter().any(Option::is_some)
            && !self.read_closed
            && !self.failed
            && self.session.wants_read();
        if direct {
            self.session.handle_input(data, now);
            self.consider_relay(data.len());
            return;
        }
        if ring.taken > 0 {
            ring.inbox.drain(..ring.taken);
            ring.taken = 0;
        }
        ring.inbox.extend_from_slice(data);
        self.readable = true;
    }

    /// Completion mode: the ring's receive ended for good: the client
    /// closed its side, or (`broken`) the connection failed. The session
    /// hears of it after the bytes before it.
    pub fn receive_end(&mut self, broken: bool) {
        if let Some(ring) = self.ring.as_mut() {
            ring.end = true;
            ring.broken |= broken;
            self.readable = true;
        }
    }

    /// Completion mode: whether the driver should keep a receive armed
    /// (not once the connection is to be relayed).
    pub fn wants_receive(&self) -> bool {
        self.ring
            .as_ref()
            .is_some_and(|r| !r.end && !r.broken && r.inbox.len() - r.taken < INBOX_MAX)
            && self.relay.is_none()
            && !self.read_closed
            && !self.failed
    }

    /// After a read of `n` bytes: a mirroring session's stream on a
    /// non-blocking plain connection is relayed from here on, if a pipe can
    /// be had.
    fn consider_relay(&mut self, n: usize) {
        if n >= RELAY_MIN
            && self.relay.is_none()
            && !self.blocking
            && self.secure.is_none()
            && !self.has_channels()
            && self.session.mirrors_input()
        {
            self.relay = Relay::open();
        }
    }

    /// Completion mode: the connection is to be relayed. The driver stops
    /// receiving into its ring, waits for the receive's last completion,
    /// then calls [`Connection::leave_ring`] and from there on reports
    /// readiness (`readable`, `writable`) as a reactor does.
    pub fn wants_relay(&self) -> bool {
        self.ring.is_some() && self.relay.is_some()
    }

    /// Completion mode ends for the control stream, if nothing of it is
    /// left in the ring's hands: no received bytes the session has not
    /// taken, nothing unsent, no send in flight. Returns whether it ended;
    /// if so the socket is then read and written here, and is taken to be
    /// ready both ways until a call says otherwise.
    pub fn leave_ring(&mut self) -> bool {
        if self.read_closed || self.failed {
            // Nothing more will arrive to relay.
            self.relay = None;
            return false;
        }
        let idle = self
            .ring
            .as_ref()
            .is_some_and(|r| !r.sending && !r.unsent() && !r.has_input() && !r.end);
        if idle {
            self.ring = None;
            self.readable = true;
            self.writable = true;
        }
        idle
    }

    /// Completion mode: the bytes to send next, if any and no send is in
    /// flight. They are marked in flight and must stay where they are
    /// (they do: nothing touches them until [`Connection::sent`]).
    pub fn take_outgoing(&mut self) -> Option<&[u8]> {
        let ring = self.ring.as_mut()?;
        if ring.sending || self.failed {
            return None;
        }
        if ring.sent == ring.flight.len() {
            ring.next_flight();
        }
        if ring.flight.is_empty() {
            return None;
        }
        ring.sending = true;
        // Room in the outbox again: the session may go on.
        self.writable = true;
        Some(&ring.flight[ring.sent..])
    }

    /// Whether the control stream's bytes go through the driver's ring
    /// (completion mode) rather than system calls made here.
    pub fn uses_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Completion mode: whether a send is in flight (its bytes must outlive
    /// it, even if the connection closes meanwhile).
    pub fn sending(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| r.sending)
    }

    /// Completion mode: the send in flight finished with `result`. Once all
    /// of the outbox is out, the session's next output may go in. Returns
    /// whether the connection has anything to do now (more to send, output
    /// waiting, a close to finish); if not, the driver need not run it.
    pub fn sent(&mut self, result: io::Result<usize>) -> bool {
        self.sent_bytes(result);
        self.failed
            || self.ring_unsent()
            || self.ring.as_ref().is_some_and(|r| r.has_input())
            || self.session.wants_close()
            || !self.session.poll_output().is_nothing()
    }

    fn sent_bytes(&mut self, result: io::Result<usize>) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        ring.sending = false;
        match result {
            Ok(0) | Err(_) => self.failed = true,
            Ok(n) => {
                ring.sent += n;
                if ring.sent == ring.flight.len() {
                    // What was gathered meanwhile goes next, and the
                    // outbox has room again.
                    ring.next_flight();
                    self.writable = true;
                }
            }
        }
    }

    /// Completion mode: whether a file body waits for the socket to take
    /// more (the driver then polls it for writing once, and sets
    /// `writable`). Asking clears it.
    pub fn take_pollout(&mut self) -> bool {
        self.ring
            .as_mut()
            .is_some_and(|r| std::mem::take(&mut r.pollout))
    }

    /// Completion mode: whether bytes wait to be sent or are being sent.
    fn ring_unsent(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| r.unsent())
    }

    /// The control socket.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Whether the driver should wait for the control socket to be readable.
    pub fn wants_read(&self) -> bool {
        !self.readable && self.would_read()
    }

    /// Whether [`Connection::hold_output`] held back output that can be
    /// sent now.
    pub fn holds_output(&self) -> bool {
        self.hold_output
            && self.work.is_none()
            && self.writable
            && !self.failed
            && (!self.session.poll_output().is_nothing()
                || self.secure.as_ref().is_some_and(Secure::wants_write))
    }

    /// Sends the output [`Connection::hold_output`] held back, at the end
    /// of the turn, without a whole pass of [`Connection::process`] (half
    /// an event loop's user-space work per request on small answers).
    /// Returns `true` when sending was not all there was to do (a full
    /// pass must follow: the driver calls `process`, then brings its
    /// registrations and timers up to date), `false` when the connection
    /// can wait for its next event as it is.
    ///
    /// The check after the send is the rest of `process`'s loop: a pass
    /// would find nothing to do when no request came of the send, the
    /// session does not want to close, all output went, and there is
    /// nothing to read (the held pass's read drained the socket, or the
    /// session reads no more). Anything but a plain socket (TLS, the ring,
    /// a relay, side channels, a service, a computation) takes a full pass.
    pub fn send_held(&mut self, env: Env) -> bool {
        let plain = self.secure.is_none()
            && self.ring.is_none()
            && self.relay.is_none()
            && self.work.is_none()
            && matches!(self.service, ServiceLink::None)
            && !self.has_channels();
        if !plain || self.woken || self.urgent || self.failed {
            return true;
        }
        self.flush(env.now);
        if let Some(request) = self.session.poll_request() {
            self.carry_out(request, env);
            return true;
        }
        self.failed
            || self.output_more
            || (self.writable && !self.session.poll_output().is_nothing())
            || self.session.wants_close_now()
            || self.session.wants_close()
            || (self.readable && !self.read_closed && self.session.wants_read())
    }

    /// Whether the output waiting is more than an answer to hold back
    /// ([`HOLD_MAX`]): bulk goes out at once, as it is made.
    pub fn holds_bulk(&self) -> bool {
        match self.session.poll_output() {
            Output::Bytes { data, .. } => data.len() > HOLD_MAX,
            Output::File { .. } => true,
            _ => false,
        }
    }

    /// Whether the driver should wait for the control socket to be writable.
    pub fn wants_write(&self) -> bool {
        !self.writable
            && !self.failed
            && (!self.session.poll_output().is_nothing()
                || self.relay_held()
                || self.secure.as_ref().is_some_and(Secure::wants_write))
    }

    /// Whether relayed bytes wait in the pipe for the socket.
    fn relay_held(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| r.held > 0)
    }

    /// Whether the session would read now if bytes were there (used by the
    /// blocking driver to decide whether to block in `read`); under TLS,
    /// also while the handshake needs the client's next message.
    pub fn would_read(&self) -> bool {
        !self.read_closed
            && !self.failed
            && !self.relay_held()
            && (self.session.wants_read() || self.secure.as_ref().is_some_and(Secure::handshaking))
    }

    /// The open side channels.
    pub fn channels(&self) -> impl Iterator<Item = (usize, &Channel)> {
        self.channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }

    /// Whether any side channel is open.
    pub fn has_channels(&self) -> bool {
        self.channels.iter().any(Option::is_some)
    }

    /// Whether the driver should watch for urgent data: while a transfer
    /// runs (FTP's ABOR), and while a stream is relayed (the kernel's
    /// splice stops at the urgent mark, so the connection goes back to
    /// copying to read past it). Elsewhere the urgent byte arrives in line.
    pub fn watches_urgent(&self) -> bool {
        self.has_channels() || self.relay.is_some()
    }

    /// Marks channel slot `i` as ready (its socket reported readiness).
    pub fn set_channel_ready(&mut self, i: usize) {
        if let Some(c) = self.channels.channel(i) {
            c.ready = true;
        }
    }

    /// Whether a channel spent its budget while still ready: the driver
    /// should call `process` again soon without waiting.
    pub fn has_more(&self) -> bool {
        self.output_more
            || self
                .channels
                .iter()
                .flatten()
                .any(|c| c.ready && c.wait() != Wait::Nothing)
    }

    /// The requests the session finished since the last call (see
    /// [`Session::take_finished_requests`]); the driver hands them to
    /// `Ctx::count_requests` after each [`Connection::process`].
    pub fn take_finished_requests(&mut self) -> u32 {
        self.session.take_finished_requests()
    }

    /// The instant at which the session wants to be woken (or a TLS
    /// handshake times out).
    pub fn deadline(&self) -> Option<Instant> {
        let session = self.session.poll_timeout();
        match &self.secure {
            Some(tls) if tls.handshaking() => {
                Some(session.map_or(tls.handshake_deadline, |d| d.min(tls.handshake_deadline)))
            }
            _ => session,
        }
    }

    /// The server's shutdown deadline has passed: the session says its last
    /// words and one non-blocking send carries what of the output the socket
    /// takes now. The driver drops the connection next.
    pub fn last_words(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        self.session.handle_shutdown_expired(now);
        // What the ring has not sent goes first; if it cannot all go (or
        // is in flight), nothing more can be said in order.
        if !self.send_ring_now() {
            return;
        }
        let fd = self.stream.as_raw_fd();
        // Only bytes: a file range in front means the client is cut off in
        // the middle of a body, and nothing more can be said in order.
        if let Output::Bytes { data, .. } = self.session.poll_output() {
            match &mut self.secure {
                Some(tls) => tls.last_words(fd, data),
                None => {
                    let _ = sys::send_now(fd, data, false);
                }
            }
        }
        if let Some(tls) = &mut self.secure {
            tls.close(fd);
        }
    }

    /// Completion mode, closing: what the ring holds unsent goes in
    /// non-blocking sends made here, as much of it as the socket takes now,
    /// counted so that the ring would send only the rest. Returns whether
    /// all of it went (true without a ring or with nothing unsent).
    /// Nothing goes while a send is in flight: its bytes come first.
    fn send_ring_now(&mut self) -> bool {
        let fd = self.stream.as_raw_fd();
        let Some(ring) = self.ring.as_mut() else {
            return true;
        };
        if ring.sending {
            return false;
        }
        loop {
            if ring.sent == ring.flight.len() {
                if ring.outbox.is_empty() {
                    return true;
                }
                ring.next_flight();
            }
            match sys::send_now(fd, &ring.flight[ring.sent..], true) {
                Ok(n) if n > 0 => ring.sent += n,
                _ => return false,
            }
        }
    }

    /// The session wants the connection closed now (or it failed). Output
    /// the session has already handed over still goes, as far as the socket
    /// takes it without waiting: a reactor's writes put it in the socket
    /// before the session heard it was written, but in completion mode it
    /// may still wait in the ring's outbox, no send taking it yet (a PROXY
    /// client over `--max-per-ip`: the session hands over the protocol's
    /// refusal, and once it is taken asks to close now). A client that
    /// does not read holds nothing up.
    fn close_now(&mut self) -> Status {
        if !self.failed {
            let _ = self.send_ring_now();
        }
        Status::Closed
    }

    /// Sockets the channels stopped using since the last call. Drivers that
    /// registered them drop their registrations before dropping these.
    pub fn take_retired(&mut self) -> std::vec::Drain<'_, Retired> {
        self.retired.drain(..)
    }

    /// Moves bytes and events until nothing more can happen without
    /// waiting. `scratch` is the driver's read buffer.
    pub fn process(&mut self, env: Env, scratch: &mut [u8]) -> Status {
        if env.draining && !self.told_shutdown {
            self.told_shutdown = true;
            self.session.handle_shutdown(env.now);
        }
        if self.session.poll_timeout().is_some_and(|d| d <= env.now) {
            self.session.handle_timeout(env.now);
        }
        if let Some(tls) = &self.secure {
            if tls.handshaking() && env.now >= tls.handshake_deadline {
                crate::log::info(format_args!(
                    "closing {}: no TLS handshake within {:?}",
                    self.peer_ip,
                    crate::tls::handshake_timeout()
                ));
                return Status::Closed;
            }
        }
        let mut held_read = false;
        loop {
            let mut progressed = false;
            if self.woken {
                self.woken = false;
                self.session.handle_wake(env.now);
                progressed = true;
            }
            progressed |= self.pump_service(env.now, scratch);
            if self.urgent {
                self.urgent = false;
                self.urgent_seen = true;
                self.session.handle_urgent(env.now);
                progressed = true;
            }
            while let Some(request) = self.session.poll_request() {
                self.carry_out(request, env);
                progressed = true;
            }
            progressed |= self.pump_channels(env.now, scratch);
            if self.failed || self.session.wants_close_now() {
                return self.close_now();
            }
            // Output written can free the session to go on with input it
            // held back: drain again.
            if !self.hold_output || self.work.is_some() || self.holds_bulk() {
                progressed |= self.flush(env.now);
            }
            if self.failed || self.session.wants_close_now() {
                return self.close_now();
            }
            if self.secure.is_some() {
                progressed |= self.read_secure(env.now, scratch);
            } else if self.relay.is_some() && self.ring.is_none() {
                progressed |= self.pump_relay(env.now);
            } else if self.readable
                && !self.read_closed
                && self.session.wants_read()
                && !(held_read && self.holds_output())
            {
                // Holding output, one read per call: the answer to what
                // came goes out with the others', and the driver, sending
                // it, runs the connection again to read the rest (a stream
                // would otherwise fill the session's buffer before anything
                // is sent).
                self.read_once(env.now, scratch);
                held_read = self.hold_output;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if self.failed || self.session.wants_close_now() {
            return self.close_now();
        }
        if self.session.wants_close()
            && self.session.poll_output().is_nothing()
            && !self.relay_held()
        {
            if let Some(tls) = &mut self.secure {
                match self.ring.as_mut() {
                    // Behind the last answer, through the ring.
                    Some(ring) => {
                        tls.queue_close();
                        let _ = tls.send_records_to(&mut **ring);
                    }
                    // One attempt at `close_notify`; the close does not
                    // wait for a client that does not read.
                    None => tls.close(self.stream.as_raw_fd()),
                }
            }
            // Last words still in the ring's outbox (gathered behind an
            // earlier send) go now if nothing is in flight, with the FIN;
            // else the close waits for the ring to send them.
            if self.ring_unsent() && !self.send_ring_now() {
                return Status::Open;
            }
            return Status::Closed;
        }
        Status::Open
    }

    /// Under TLS: reads the socket if it is ready and rustls wants more,
    /// and gives the session what plaintext it takes. Returns whether
    /// anything moved.
    fn read_secure(&mut self, now: Instant, scratch: &mut [u8]) -> bool {
        let Some(tls) = &mut self.secure else {
            return false;
        };
        let fd = self.stream.as_raw_fd();
        let mut progressed = false;
        let reading = self.session.wants_read() || tls.handshaking();
        if self.readable && !self.read_closed && reading {
            let took = match self.ring.as_mut() {
                Some(ring) => tls.read_from(&mut **ring, fd),
                None => tls.read_socket(fd),
            };
            match took {
                Ok(Took::Some(_)) => {
                    progressed = true;
                    let drained = self.ring.as_ref().is_some_and(|ring| !ring.has_input());
                    if self.blocking || drained {
                        self.readable = false;
                    }
                }
                Ok(Took::Short(_)) => {
                    progressed = true;
                    // As on a plain socket: a read that got less than it
                    // asked for drained it (a new arrival raises a new
                    // edge), which saves the read that would only say so.
                    if self.blocking || (!self.urgent_seen && !self.peer_closed) {
                        self.readable = false;
                    }
                }
                Ok(Took::Drained) => self.readable = false,
                Ok(Took::End) => {
                    progressed = true;
                    self.readable = false;
                    self.read_closed = true;
                }
                Ok(Took::Full) => {}
                Err(why) => {
                    // A TLS failure is worth a line; a reset is not (as
                    // for a plain connection).
                    if why.starts_with("TLS") {
                        crate::log::info(format_args!("closing {}: {why}", self.peer_ip));
                    }
                    self.failed = true;
                    self.read_closed = true;
                    self.readable = false;
                    return true;
                }
            }
        }
        while !self.eof_told && self.session.wants_read() {
            match tls.plaintext(scratch) {
                Plain::Data(n) => {
                    progressed = true;
                    self.session.handle_input(&scratch[..n], now);
                }
                Plain::Empty if !self.read_closed => break,
                Plain::Empty | Plain::End => {
                    self.eof_told = true;
                    self.read_closed = true;
                    self.readable = false;
                    self.session.handle_eof(now);
                    progressed = true;
                }
            }
        }
        progressed
    }

    fn read_once(&mut self, now: Instant, scratch: &mut [u8]) {
        let read = match self.ring.as_mut() {
            Some(ring) => {
                let read = ring.read(scratch);
                // What is left in the inbox is still to be read.
                if read.is_ok() {
                    self.readable = ring.has_input();
                }
                read
            }
            None => sys::recv(self.stream.as_raw_fd(), scratch),
        };
        match read {
            Ok(0) => {
                self.read_closed = true;
                self.readable = false;
                self.session.handle_eof(now);
            }
            Ok(n) => {
                // A short read means the socket is drained (a new arrival
                // raises a new edge); a blocking socket is read once per
                // readiness so that the driver can look at its timers.
                let drained = n < scratch.len() && !self.urgent_seen && !self.peer_closed;
                if self.ring.is_none() && (self.blocking || drained) {
                    self.readable = false;
                }
                self.session.handle_input(&scratch[..n], now);
                self.consider_relay(n);
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => self.readable = false,
                io::ErrorKind::Interrupted => {}
                _ => {
                    // The connection broke: nothing more can be read or sent.
                    self.read_closed = true;
                    self.readable = false;
                    self.failed = true;
                    self.session.handle_eof(now);
                }
            },
        }
    }

    /// A relayed connection: sends what the pipe holds, and while it is
    /// empty, the session's own output is out and the session still
    /// mirrors, splices more in, until the socket would block either way
    /// or [`FILE_BUDGET`] bytes went through (then the driver comes back
    /// soon, as for a file). Returns whether anything moved.
    fn pump_relay(&mut self, now: Instant) -> bool {
        let Some(relay) = self.relay.as_mut() else {
            return false;
        };
        let sock = self.stream.as_raw_fd();
        let mut moved = false;
        let mut leave = false;
        let mut budget = FILE_BUDGET;
        loop {
            if relay.held > 0 {
                if !self.writable {
                    break;
                }
                match sys::splice(relay.output.as_raw_fd(), sock, relay.held) {
                    Ok(n) if n > 0 => {
                        relay.held -= n;
                        moved = true;
                        self.session.relayed(0, n, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.writable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(_) | Err(_) => {
                        // The connection broke (or the pipe, which cannot
                        // be empty here, said so): nothing more moves.
                        self.failed = true;
                        break;
                    }
                }
                continue;
            }
            if budget == 0 {
                self.output_more = true;
                break;
            }
            if !self.readable
                || self.read_closed
                || !self.session.mirrors_input()
                || !self.session.poll_output().is_nothing()
            {
                break;
            }
            match sys::splice(sock, relay.input.as_raw_fd(), RELAY_CHUNK) {
                Ok(0) => {
                    self.read_closed = true;
                    self.readable = false;
                    self.session.handle_eof(now);
                    moved = true;
                    break;
                }
                Ok(n) => {
                    // A short splice does not prove the socket drained (the
                    // pipe may have run out of slots for small segments):
                    // the next one, which would block, says so.
                    relay.held = n;
                    budget = budget.saturating_sub(n);
                    moved = true;
                    self.session.relayed(n, 0, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // splice stops at the urgent mark and would block there
                    // for good, with bytes waiting: the stream goes back to
                    // being copied (the pipe is empty), which reads past
                    // the mark. Asked only once urgent data was signalled
                    // (the proactor's poll says so on every wake-up, so
                    // there it is a question per drained socket).
                    if self.urgent_seen && sys::at_urgent_mark(sock) {
                        leave = true;
                    }
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.read_closed = true;
                    self.readable = false;
                    self.failed = true;
                    self.session.handle_eof(now);
                    moved = true;
                    break;
                }
            }
        }
        if leave {
            self.relay = None;
            // Whether the socket reads is the next read's to say.
            self.readable = true;
            moved = true;
        }
        moved
    }

    /// Writes the session's output, in order, until done, the socket would
    /// block, or (non-blocking) the file budget is spent. Returns whether
    /// anything was written.
    fn flush(&mut self, now: Instant) -> bool {
        let mut wrote = false;
        let mut budget = if self.blocking {
            usize::MAX
        } else {
            FILE_BUDGET
        };
        self.output_more = false;
        let sock = self.stream.as_raw_fd();
        if self.secure.is_some() {
            return self.flush_secure(now, budget);
        }
        let started = self.blocking.then(Instant::now);
        while self.writable {
            // What this send asks the socket to take.
            let asked: usize;
            let sent = match self.session.poll_output() {
                Output::Nothing => break,
                Output::StartTls => {
                    // Everything before is out: TLS from here on.
                    self.start_tls(now);
                    return wrote | self.flush_secure(now, budget);
                }
                Output::Bytes { data, more } => {
                    asked = data.len();
                    // A file's head: its body follows in this pass.
                    let head = more;
                    // The session's last words: the connection closes as
                    // soon as they are out, and the FIN can go in the same
                    // segment.
                    let last = self.session.wants_close();
                    let more = head || last;
                    match self.ring.as_mut() {
                        // Bulk, the head of a file body, or last words,
                        // with nothing before them in the ring's hands:
                        // sent from the session's buffer at once, rather
                        // than copied into the outbox. A head sent through
                        // the ring would hold its body back until the
                        // send's completion, a turn later (http `large`
                        // under uring: 3,855 responses a second against the
                        // reactor's 4,687, which sends head and body in one
                        // pass). Last words sent through the ring would
                        // leave in a segment of their own, and the FIN in
                        // another a turn later; sent here with `MSG_MORE`
                        // they wait for the close and go with the FIN, as
                        // under the reactor (http `close` under uring:
                        // 46.7k requests a second against 36.8k, h2o 42.8k).
                        Some(ring)
                            if (head || last || data.len() > OUTBOX_KEEP)
                                && !ring.sending
                                && !ring.unsent() =>
                        {
                            sys::send(sock, data, more)
                        }
                        Some(ring) => ring.write(data),
                        None => sys::send(sock, data, more),
                    }
                }
                Output::File {
                    file, offset, len, ..
                } => {
                    if budget == 0 {
                        self.output_more = true;
                        break;
                    }
                    let mut count = usize::try_from(len).unwrap_or(usize::MAX).min(budget);
                    if self.blocking {
                        count = count.min(BLOCKING_FILE_STEP);
                    }
                    asked = count;
                    let mut at = offset;
                    if self.ring.as_ref().is_some_and(|r| r.sending || r.unsent()) {
                        // The bytes before the file go first.
                        self.writable = false;
                        break;
                    }
                    match sys::sendfile(sock, file.as_raw_fd(), &mut at, count) {
                        Ok(0) => {
                            // The file is shorter than the head announced:
                            // the body cannot be finished, so the
                            // connection ends here (the client sees a short
                            // body, not a wrong one).
                            crate::log::warn(format_args!(
                                "a file being sent shrank; closing the connection"
                            ));
                            self.failed = true;
                            break;
                        }
                        Ok(n) => {
                            budget -= n;
                            Ok(n)
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::Interrupted
                                    | io::ErrorKind::BrokenPipe
                                    | io::ErrorKind::ConnectionReset
                            ) =>
                        {
                            Err(e)
                        }
                        Err(e) => {
                            crate::log::warn(format_args!(
                                "reading a file being sent: {e}; closing the connection"
                            ));
                            self.failed = true;
                            break;
                        }
                    }
                }
            };
            match sent {
                Ok(0) => self.failed = true,
                Ok(n)
                    if started.is_some_and(|t| n < asked || t.elapsed() >= BLOCKING_SEND_SLICE) =>
                {
                    // A blocking send that took less than it was given
                    // waited a tick (`SO_SNDTIMEO`) for a slow reader, or
                    // this connection has sent for a slice: back to the
                    // driver, which looks at its deadlines and the
                    // shutdown's before it sends on (`has_more`), rather
                    // than sending for as long as the reader trickles.
                    self.session.consume_output(n, now);
                    self.output_more = true;
                    return false;
                }
                Ok(n) => {
                    wrote = true;
                    self.session.consume_output(n, now);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.writable = false;
                        if let Some(ring) = self.ring.as_mut() {
                            // A full socket (`sendfile`), not a full outbox.
                            ring.pollout = !ring.sending && !ring.unsent();
                        }
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => self.failed = true,
                },
            }
            if self.failed {
                break;
            }
        }
        wrote
    }

    /// [`Output::StartTls`]: the server's side of a TLS handshake begins on
    /// the control connection; the session is told. Without TLS configured
    /// the connection cannot go on.
    fn start_tls(&mut self, now: Instant) {
        self.session.consume_output(0, now);
        match crate::tls::accept() {
            Some(Ok(tls)) => {
                self.secure = Some(Secure::new(tls, now));
                self.session.handle_tls(now);
            }
            Some(Err(e)) => {
                crate::log::warn(format_args!("cannot start TLS: {e}"));
                self.failed = true;
            }
            None => {
                crate::log::warn(format_args!(
                    "a session asked for TLS, which is not configured"
                ));
                self.failed = true;
            }
        }
    }

    /// [`Connection::flush`] under TLS: records out, then the session's
    /// output encrypted a record at a time (files read here), within
    /// `budget` file bytes.
    fn flush_secure(&mut self, now: Instant, mut budget: usize) -> bool {
        let Some(tls) = &mut self.secure else {
            return false;
        };
        let fd = self.stream.as_raw_fd();
        let mut wrote = false;
        while self.writable {
            let records = match self.ring.as_mut() {
                Some(ring) => tls.send_records_to(&mut **ring),
                None => tls.send_records(fd),
            };
            match records {
                Ok(false) => {}
                Ok(true) => {
                    self.writable = false;
                    break;
                }
                Err(_) => {
                    self.failed = true;
                    break;
                }
            }
            if !tls.can_encrypt() {
                break;
            }
            let taken = match self.session.poll_output() {
                Output::Nothing => break,
                Output::StartTls => {
                    crate::log::warn(format_args!(
                        "a session asked for TLS on a connection that has it"
                    ));
                    self.failed = true;
                    break;
                }
                Output::Bytes { data, .. } => tls.encrypt(data),
                Output::File {
                    file, offset, len, ..
                } => {
                    if budget == 0 {
                        self.output_more = true;
                        break;
                    }
                    match tls.encrypt_file(file, offset, len, budget) {
                        Ok(0) => {
                            crate::log::warn(format_args!(
                                "a file being sent shrank; closing the connection"
                            ));
                            self.failed = true;
                            break;
                        }
                        Ok(n) => {
                            budget -= n;
                            Ok(n)
                        }
                        other => other,
                    }
                }
            };
            match taken {
                Ok(0) => break,
                Ok(n) => {
                    wrote = true;
                    self.session.consume_output(n, now);
                }
                Err(e) => {
                    crate::log::warn(format_args!("TLS: {e}; closing the connection"));
                    self.failed = true;
                    break;
                }
            }
        }
        wrote
    }

    /// Opens the service stream when the session first has bytes for it,
    /// writes what it has, and delivers what came back. Returns whether
    /// anything moved.
    fn pump_service(&mut self, now: Instant, scratch: &mut [u8]) -> bool {
        if matches!(self.service, ServiceLink::None) {
            if self.session.poll_service_output().is_empty() {
                return false;
            }
            let opened = match &self.protocol {
                Some(p) => p.open_service(),
                None => Err(io::ErrorKind::Unsupported.into()),
            };
            match opened {
                Ok(stream) => {
                    self.service = ServiceLink::Open(ServiceStream {
                        stream,
                        // Try at once: on loopback the connect is usually
                        // done; if not, the attempt would block and the
                        // driver waits for readiness.
                        readable: true,
                        writable: true,
                        write_closed: false,
                    });
                }
                Err(e) => {
                    crate::log::warn(format_args!("cannot reach the {} service: {e}", {
                        self.protocol.as_ref().map_or("protocol's", |p| p.name())
                    }));
                    self.service = ServiceLink::Gone;
                    self.session.handle_service_eof(now);
                    return true;
                }
            }
        }
        let ServiceLink::Open(link) = &mut self.service else {
            return false;
        };
        let mut progressed = false;
        let mut broken = false;
        while link.writable {
            let data = self.session.poll_service_output();
            if data.is_empty() {
                if self.session.service_done() && !link.write_closed {
                    link.write_closed = true;
                    let _ = link.stream.shutdown(Shutdown::Write);
                }
                break;
            }
            match (&link.stream).write(data) {
                Ok(0) => broken = true,
                Ok(n) => {
                    progressed = true;
                    self.session.consume_service_output(n, now);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected => {
                        link.writable = false;
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => broken = true,
                },
            }
            if broken {
                break;
            }
        }
        while !broken && link.readable && self.session.wants_service_input() {
            match (&link.stream).read(scratch) {
                Ok(0) => broken = true,
                Ok(n) => {
                    progressed = true;
                    self.session.handle_service_input(&scratch[..n], now);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected => {
                        link.readable = false;
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => broken = true,
                },
            }
        }
        if broken {
            // Kept open until the driver has dropped its registration (a
            // descriptor number reused meanwhile must not be deregistered).
            if let ServiceLink::Open(link) = std::mem::replace(&mut self.service, ServiceLink::Gone)
            {
                self.retired.push(Retired::Service(link.stream));
            }
            self.session.handle_service_eof(now);
            progressed = true;
        }
        progressed
    }

    fn slot_of(&self, id: u32) -> Option<usize> {
        self.channels
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.id == id))
    }

    fn deliver(&mut self, now: Instant) {
        for event in std::mem::take(&mut self.events) {
            self.session.handle_channel(event, now);
        }
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// [`Request::Readmit`]: counts the connection under its real client,
    /// or tells the session it is over that address's limit.
    fn readmit(&mut self, env: Env, peer: IpAddr, per_ip: usize) {
        let admitted = match env.board.move_to(env.slot, self.peer_ip, peer, per_ip) {
            Some(moved) => {
                self.peer_ip = peer;
                self.moved = Some(moved);
                true
            }
            None => false,
        };
        self.session.handle_admission(admitted, env.now);
    }

    fn carry_out(&mut self, request: Request, env: Env) {
        let now = env.now;
        let failed = |id, error| ChannelEvent::Failed {
            id,
            bytes: 0,
            error,
        };
        match request {
            Request::Readmit { peer, per_ip } => self.readmit(env, peer, per_ip),
            Request::Secure { id } => match self.slot_of(id) {
                Some(i) => {
                    if let Some(c) = self.channels.channel(i) {
                        c.secure();
                    }
                }
                None => self.events.push(failed(id, io::ErrorKind::NotFound)),
            },
            Request::Connect { id, addr } => match self.free_slot(id) {
                Err(e) => self.events.push(failed(id, e)),
                Ok(i) => {
                    let serial = self.serial();
                    match Channel::connect(id, serial, addr) {
                        Ok(c) => self.channels.put(i, c),
                        Err(e) => self.events.push(failed(id, e.kind())),
                    }
                }
            },
            Request::Listen {
                id,
                ip,
                ports,
                allow_from,
            } => match self.free_slot(id) {
                Err(e) => self.events.push(failed(id, e)),
                Ok(i) => {
                    let serial = self.serial();
                    match Channel::listen(id, serial, ip, ports, allow_from) {
                        Ok((c, addr)) => {
                            self.channels.put(i, c);
                            self.events.push(ChannelEvent::Listening { id, addr });
                        }
                        Err(e) => self.events.push(failed(id, e.kind())),
                    }
                }
            },
            Request::SendFile {
                id,
                file,
                offset,
                end,
                transform,
            } => {
                let given = self
                    .channel_mut(id)
                    .map(|c| c.send_file(file, offset, end, transform).is_ok());
                self.report_job(id, given);
            }
            Request::SendBytes { id, data, more } => {
                let given = self
                    .channel_mut(id)
                    .map(|c| c.send_bytes(data, more).is_ok());
                self.report_job(id, given);
            }
            Request::Progress { id } => {
                let event = match self.channel_mut(id) {
                    Some(c) => ChannelEvent::Progress {
                        id,
                        bytes: c.bytes(),
                    },
                    None => ChannelEvent::Closed { id },
                };
                self.events.push(event);
            }
            Request::ReceiveFile {
                id,
                file,
                transform,
            } => {
                let given = self
                    .channel_mut(id)
                    .map(|c| c.receive_file(file, transform).is_ok());
                self.report_job(id, given);
            }
            Request::Abort { id } => match self.slot_of(id) {
                Some(i) => {
                    let c = self.channels.take(i).expect("slot_of found it");
                    self.events.push(c.abort_event());
                    c.retire(&mut self.retired);
                }
                None => self.events.push(ChannelEvent::Closed { id }),
            },
            Request::Compute(work) => {
                if self.blocking {
                    self.session.handle_computed(work.run(), now);
                } else {
                    self.work = Some(work);
                }
            }
        }
        self.deliver(now);
    }

    /// Whether a computation waits for a thread that may block (see
    /// [`Request::Compute`]): the driver then hands it, or the whole
    /// connection, to one.
    pub fn has_work(&self) -> bool {
        self.work.is_some()
    }

    /// The computation waiting, for a driver that runs it elsewhere and
    /// brings the result back with [`Connection::give_computed`].
    pub fn take_work(&mut self) -> Option<Work> {
        self.work.take()
    }

    /// Gives the session the result of its computation.
    pub fn give_computed(&mut self, result: Computed, now: Instant) {
        self.session.handle_computed(result, now);
    }

    /// Runs the waiting computation, if any, here (the caller's thread may
    /// block) and gives the session its result.
    pub fn run_work(&mut self, now: Instant) {
        if let Some(work) = self.work.take() {
            self.give_computed(work.run(), now);
        }
    }

    fn channel_mut(&mut self, id: u32) -> Option<&mut Channel> {
        let i = self.slot_of(id)?;
        self.channels.channel(i)
    }

    fn report_job(&mut self, id: u32, given: Option<bool>) {
        let error = match given {
            Some(true) => return,
            Some(false) => io::ErrorKind::ResourceBusy,
            None => io::ErrorKind::NotConnected,
        };
        self.events.push(ChannelEvent::Failed {
            id,
            bytes: 0,
            error,
        });
    }

    fn free_slot(&self, id: u32) -> Result<usize, io::ErrorKind> {
        if self.slot_of(id).is_some() {
            return Err(io::ErrorKind::AlreadyExists);
        }
        self.channels.free().ok_or(io::ErrorKind::OutOfMemory)
    }

    fn pump_channels(&mut self, now: Instant, scratch: &mut [u8]) -> bool {
        if self
            .channels
            .iter()
            .all(|c| c.as_ref().is_none_or(|c| !c.ready))
        {
            return false;
        }
        let mut progressed = false;
        for i in 0..MAX_CHANNELS {
            let Some(c) = self.channels.channel(i) else {
                continue;
            };
            if !c.ready {
                continue;
            }
            let before = self.events.len();
            match c.pump(scratch, &mut self.events, &mut self.retired) {
                Pump::Finished => {
                    let c = self.channels.take(i).expect("pumped it");
                    c.retire(&mut self.retired);
                }
                Pump::Blocked | Pump::Again => {}
            }
            if self.events.len() > before {
                progressed = true;
                self.deliver(now);
            }
        }
        progressed
    }
}
