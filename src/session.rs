//! The sans-IO seam between protocols and drivers.
//!
//! A protocol implements [`Protocol`] (one value per server, created before any
//! fork or thread) and [`Session`] (one value per control connection). A session
//! never touches a socket, a thread or the clock: the driver feeds it bytes and
//! events together with `now`, and the session answers with bytes for the
//! control connection, requests for side channels ([`Request`]), and the next
//! instant at which it wants to be woken ([`Session::poll_timeout`]).
//!
//! # Driver contract
//!
//! A driver owns the sockets. For each connection it:
//!
//! 1. creates the session with [`Protocol::new_session`];
//! 2. whenever the control connection is readable and [`Session::wants_read`]
//!    is true, reads bytes and calls [`Session::handle_input`]; on end of
//!    stream it calls [`Session::handle_eof`]; on TCP urgent data it calls
//!    [`Session::handle_urgent`];
//! 3. reports side-channel progress with [`Session::handle_channel`], the
//!    session's own deadline with [`Session::handle_timeout`], a server
//!    shutdown with [`Session::handle_shutdown`], and the result of a
//!    [`Request::Compute`] with [`Session::handle_computed`] (computed on a
//!    thread that may block, before anything else reaches the session);
//! 4. after any `handle_*` call, drains the outputs in this order:
//!    [`Session::poll_request`] until `None` (carrying each one out),
//!    [`Session::poll_output`] (writing what it can and calling
//!    [`Session::consume_output`] with the count written), then
//!    [`Session::poll_timeout`]; a session may answer `consume_output` with
//!    more output or requests (it goes on with input it held back while its
//!    output was full), so the driver drains again until nothing changes;
//! 5. closes the connection once [`Session::wants_close`] is true and the
//!    output has been flushed (a session that wants to close has no more
//!    requests to make), or at once, output unsent, when
//!    [`Session::wants_close_now`] is true (a client that does not read
//!    what it is sent);
//! 6. when the server's shutdown deadline passes with the connection still
//!    open, calls [`Session::handle_shutdown_expired`] and makes one
//!    non-blocking attempt to send the output, then closes the connection.
//!
//! The session buffers its own output and says, through `wants_read`, when it
//! has buffered enough: that is the back-pressure that keeps a client which
//! sends without reading from growing the server's memory.
//!
//! # Waking and the service stream
//!
//! Two more ways in, for protocols whose sessions share state (the kv
//! store):
//!
//! - A session of a protocol that [`Protocol::wants_waker`] is given a
//!   [`Waker`] right after it is made ([`Session::set_waker`]). Anything,
//!   on any thread, may wake it; the driver then calls
//!   [`Session::handle_wake`] on the session's own thread, soon and before
//!   it waits again (a session blocked in `BLPOP` is woken by another
//!   session's push; one whose reply waits for the disk, by the log's
//!   writer). While [`Session::waiting`] is true, a driver that otherwise
//!   blocks in `read` watches the waker too.
//! - A session may talk to its protocol's shared service (the store
//!   process of the forking architectures) over a second byte stream. The
//!   driver opens it with [`Protocol::open_service`] when the session first
//!   has bytes for it ([`Session::poll_service_output`]), writes them, and
//!   delivers what comes back ([`Session::handle_service_input`], then
//!   [`Session::handle_service_eof`]) while
//!   [`Session::wants_service_input`]. It is watched by the driver's own
//!   loop, beside the control connection: a store call is no thread hop.

use std::any::Any;
use std::fmt;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What a session knows about its control connection when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address for this connection (the address the client
    /// reached; FTP advertises it in passive replies).
    pub local: SocketAddr,
    /// The calendar time at the `now` given to [`Protocol::new_session`],
    /// read by the driver. A session that needs calendar time (HTTP's
    /// `Date`) adds the monotonic time elapsed since, so it never reads a
    /// clock itself and a test can give it any time.
    pub wall: SystemTime,
}

/// How an architecture places sessions. Protocols with shared state (the kv
/// store) use it to choose between memory shared by threads and a service that
/// separate processes can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every session lives in this one process (threads, reactors, tasks).
    OneProcess,
    /// Sessions live in several processes forked from this one.
    ManyProcesses,
}

/// A protocol: the per-server half. One value is built before the server
/// forks or starts threads and is shared (by `Arc`, or by inheritance across
/// `fork`) by every session of the server.
pub trait Protocol: Send + Sync + 'static {
    /// The protocol's name as the command line spells it (`echo`, `ftp`, ...).
    fn name(&self) -> &'static str;

    /// Called once in the first process, before any fork and before any
    /// thread is started. A per-server shared service (such as a store that
    /// every worker process must see) is created here, while its descriptors
    /// can still be inherited by every worker.
    fn start(&mut self, placement: Placement) -> std::io::Result<()> {
        let _ = placement;
        Ok(())
    }

    /// Called in every worker process right after it is forked, before it
    /// serves anything: the place to pick this worker's end of a shared
    /// service.
    fn enter_worker(&self, worker: usize) {
        let _ = worker;
    }

    /// A new session for an accepted control connection.
    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session>;

    /// The bytes sent to a connection refused because the server is at its
    /// connection limit, before it is closed (FTP `421`, HTTP `503`, ...).
    /// Empty for protocols that simply close.
    fn refusal(&self) -> &[u8] {
        b""
    }

    /// The server has stopped serving (every connection of this process is
    /// closed or abandoned): called once, in the process that called
    /// [`Protocol::start`], before it exits. A protocol with a log writes
    /// it out here.
    fn stop(&self) {}

    /// Whether sessions are given a [`Waker`] ([`Session::set_waker`]).
    /// Protocols whose sessions never wait on each other say no, and their
    /// drivers make none.
    fn wants_waker(&self) -> bool {
        false
    }

    /// Opens a new stream to the protocol's shared service for a session
    /// that has bytes for it ([`Session::poll_service_output`]). The socket
    /// is non-blocking; its connect may still be under way. Called in the
    /// worker process, on the session's thread.
    fn open_service(&self) -> std::io::Result<crate::net::Stream> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// `SIGHUP`: reads again what can change without a restart (the FTP
    /// users file), in each process that serves. Sessions already open
    /// keep what they started with. `Ok(None)`: nothing to reload;
    /// `Ok(Some(what))`, `Err(why)`: said in the log. On an error the
    /// protocol keeps what it had.
    fn reload(&self) -> Result<Option<String>, String> {
        Ok(None)
    }

    /// A process the protocol runs beside the workers (the kv store of the
    /// forking architectures), if any: the process that forks the workers
    /// forks it first and waits until it is ready, restarts it whenever it
    /// dies (with back-off), and stops it after the last worker has gone.
    fn companion(&self) -> Option<&dyn Companion> {
        None
    }
}

/// A protocol's companion process ([`Protocol::companion`]): a process
/// the server runs beside its workers (the kv store of the forking
/// architectures). A reactor in it serves [`Companion::listeners`] with the
/// protocol [`Companion::open`] returns; the workers' sessions reach it
/// there over their service streams (see `companion.rs`).
pub trait Companion: Send + Sync {
    /// What the logs call it ("kv store").
    fn name(&self) -> &'static str;

    /// Where the companion listens: bound in [`Protocol::start`], before
    /// any fork, so that its backlog outlives a companion that restarts.
    fn listeners(&self) -> &crate::net::Listeners;

    /// In the companion process, just after `fork` (single-threaded): the
    /// protocol its reactor serves, started for one process. An error
    /// ends the companion, and the server with it at its first start.
    fn open(&self) -> std::io::Result<Box<dyn Protocol>>;
}

/// Something that wakes a session from another thread ([`Waker`]).
pub trait Wake: Send + Sync {
    /// Asks the session's driver to call [`Session::handle_wake`] soon.
    fn wake(&self);
}

/// A handle that wakes one session ([`Session::set_waker`]). Cheap to
/// clone; waking a session that has gone does nothing, and several wakes
/// before the session runs may reach it as one.
#[derive(Clone)]
pub struct Waker(Arc<dyn Wake>);

impl Waker {
    /// A waker calling `wake`.
    pub fn new(wake: Arc<dyn Wake>) -> Waker {
        Waker(wake)
    }

    /// A waker that does nothing (for tests and drivers without wakers).
    pub fn noop() -> Waker {
        struct Noop;
        impl Wake for Noop {
            fn wake(&self) {}
        }
        Waker(Arc::new(Noop))
    }

    /// Wakes the session.
    pub fn wake(&self) {
        self.0.wake();
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waker(..)")
    }
}

/// One connection's protocol state machine. See the module documentation for
/// the order in which a driver calls these methods.
pub trait Session: Send {
    /// Bytes read from the control connection. The session keeps or answers
    /// all of them; a driver only calls this while [`Session::wants_read`].
    fn handle_input(&mut self, data: &[u8], now: Instant);

    /// The client closed its sending side (or the connection broke while
    /// reading). The session finishes what it owes and asks to close.
    fn handle_eof(&mut self, now: Instant);

    /// TCP urgent data arrived on the control connection (FTP's Telnet
    /// "Synch" that precedes `ABOR`). The urgent byte itself is delivered
    /// in line through `handle_input`.
    fn handle_urgent(&mut self, now: Instant) {
        let _ = now;
    }

    /// Progress on a side channel this session asked for.
    fn handle_channel(&mut self, event: ChannelEvent, now: Instant) {
        let _ = (event, now);
    }

    /// `now` has reached the instant last returned by
    /// [`Session::poll_timeout`] (or passed it). Spurious calls are allowed:
    /// the session compares `now` with its own deadlines.
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The server is shutting down gracefully: finish what is in flight and
    /// close at the next clean boundary. The default keeps serving until the
    /// client closes or the driver's shutdown deadline passes.
    fn handle_shutdown(&mut self, now: Instant) {
        let _ = now;
    }

    /// The server's shutdown deadline has passed with this connection still
    /// open: the driver closes it right after this call, whatever it owes.
    /// The session may add last words to its output (FTP's `426` for the
    /// transfer cut short, then `421`); the driver makes one non-blocking
    /// attempt to send the output, in order after what was already queued.
    /// Nothing reaches the session after this. The default adds nothing.
    fn handle_shutdown_expired(&mut self, now: Instant) {
        let _ = now;
    }

    /// The session's [`Waker`], given once, right after the session is made,
    /// when its protocol [`Protocol::wants_waker`].
    fn set_waker(&mut self, waker: Waker) {
        let _ = waker;
    }

    /// Something the session waits for may have happened (its [`Waker`]
    /// was woken). Spurious calls are allowed.
    fn handle_wake(&mut self, now: Instant) {
        let _ = now;
    }

    /// Whether the session waits for its [`Waker`] (a blocked pop, a reply
    /// held until the disk has it): a driver that blocks in `read` must then
    /// watch the waker as well.
    #[must_use]
    fn waiting(&self) -> bool {
        false
    }

    /// Bytes for the protocol's shared service, in order (empty: none now).
    /// The driver opens the service stream at the first bytes.
    #[must_use]
    fn poll_service_output(&self) -> &[u8] {
        &[]
    }

    /// The driver wrote the first `n` bytes of
    /// [`Session::poll_service_output`] to the service.
    fn consume_service_output(&mut self, n: usize, now: Instant) {
        let _ = (n, now);
    }

    /// Whether the session will send the service nothing more: once its
    /// service output is written the driver closes the stream's sending
    /// side (the service then finishes and closes its own).
    #[must_use]
    fn service_done(&self) -> bool {
        false
    }

    /// Bytes that came from the service. A driver only calls this while
    /// [`Session::wants_service_input`].
    fn handle_service_input(&mut self, data: &[u8], now: Instant) {
        let _ = (data, now);
    }

    /// Whether the driver may deliver more bytes from the service now
    /// (false while the session's own output is full: back-pressure that
    /// reaches the service).
    #[must_use]
    fn wants_service_input(&self) -> bool {
        true
    }

    /// The service closed the stream, or it could not be opened or broke.
    fn handle_service_eof(&mut self, now: Instant) {
        let _ = now;
    }

    /// The result of the session's [`Request::Compute`], given before
    /// anything else reaches the session. A session has at most one
    /// computation under way. The default ignores it (for sessions that
    /// never ask).
    fn handle_computed(&mut self, result: Computed, now: Instant) {
        let _ = (result, now);
    }

    /// The answer to a [`Request::Readmit`]: whether the connection is
    /// admitted under its real client's address. The default ignores it.
    fn handle_admission(&mut self, admitted: bool, now: Instant) {
        let _ = (admitted, now);
    }

    /// The control connection speaks TLS from now on: after an
    /// [`Output::StartTls`] item, or from the start on a TLS listener
    /// (before any input). The default ignores it.
    fn handle_tls(&mut self, now: Instant) {
        let _ = now;
    }

    /// The next side-channel request, if any.
    #[must_use]
    fn poll_request(&mut self) -> Option<Request> {
        None
    }

    /// The next item of output for the control connection (bytes, or a
    /// file range to send with `sendfile`), in order.
    #[must_use]
    fn poll_output(&self) -> Output<'_>;

    /// The driver wrote the first `n` bytes of the item
    /// [`Session::poll_output`] returned. A session that stopped taking
    /// input because its output was full goes on here with the input it
    /// already holds.
    fn consume_output(&mut self, n: usize, now: Instant);

    /// The instant at which the session wants [`Session::handle_timeout`].
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Whether the driver may read and deliver more input now. False while
    /// the session has buffered as much as it is willing to (back-pressure),
    /// after end of stream, or while it waits for a channel to finish.
    #[must_use]
    fn wants_read(&self) -> bool;

    /// Whether the connection is to be closed once the output is flushed:
    /// the session takes no more input, and the driver closes the
    /// connection as soon as [`Session::poll_output`] has nothing (sending the
    /// last bytes so that the FIN may travel with them).
    #[must_use]
    fn wants_close(&self) -> bool;

    /// Whether the connection is to be closed now, whatever output is still
    /// unsent: the deadline for a client that stopped reading has passed.
    /// The default never gives up on a flush.
    #[must_use]
    fn wants_close_now(&self) -> bool {
        false
    }

    /// Whether the session, from here on, answers input with the same
    /// bytes, in order, and with nothing else (echo). While this holds and
    /// its own output is empty, a driver may move what arrives back to the
    /// client inside the kernel (`splice` through a pipe, as a TCP proxy
    /// does) instead of through [`Session::handle_input`] and
    /// [`Session::poll_output`], and says what it moved with
    /// [`Session::relayed`]. The session keeps its deadlines, its
    /// end-of-stream handling and its count of requests; the driver bounds
    /// what is in the pipe. The default never mirrors.
    #[must_use]
    fn mirrors_input(&self) -> bool {
        false
    }

    /// The driver, mirroring ([`Session::mirrors_input`]), received
    /// `received` bytes and sent `sent` back on the session's behalf.
    fn relayed(&mut self, received: usize, sent: usize, now: Instant) {
        let _ = (received, sent, now);
    }

    /// How many requests the session finished since the last call (and
    /// forgets them): what `--max-requests` counts. A request is what the
    /// protocol answers once: an HTTP response, a kv reply, a calc answer,
    /// an ftp reply, an echo chunk (the bytes of one read, echoed).
    ///
    /// This is the cheapest seam for the hot path: a session adds one to a
    /// plain field of its own as it queues an answer (no atomics, no
    /// shared memory, nothing passed in), and the driver asks once per
    /// turn of its loop (`Connection::process`), touching the scoreboard
    /// only when the answer is not zero. The default finishes none (a
    /// protocol whose workers never recycle by count).
    fn take_finished_requests(&mut self) -> u32 {
        0
    }
}

/// Names a side channel within one session. Chosen by the session; a driver
/// keeps at most [`MAX_CHANNELS`] open per session at once.
pub type ChannelId = u32;

/// How many side channels a driver keeps open for one session at once (FTP
/// needs one data connection, plus a passive listener while it waits).
pub const MAX_CHANNELS: usize = 4;

/// A request from a session to its driver. Every request that names a
/// channel is answered by one or more [`ChannelEvent`]s for that channel.
#[derive(Debug)]
pub enum Request {
    /// Open an outbound data connection to `addr` (FTP active mode). Answered
    /// by `Connected` or `Failed`.
    Connect {
        /// The channel to open.
        id: ChannelId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Listen on `ip`, on a free port within `ports` (inclusive; `0..=0` for
    /// any port), for one inbound data connection (FTP passive mode). Answered
    /// by `Listening` with the bound address, then `Connected` once a peer
    /// whose address is `allow_from` (if set) connects. Connections from other
    /// addresses are refused and waiting goes on.
    ///
    /// The connection is accepted when the channel has a job (`SendFile`,
    /// `SendBytes`, `ReceiveFile`); until then it waits in the listener's
    /// backlog and costs the driver nothing (no registration, no wake-up).
    /// A session gives the job as soon as it has one, connected or not.
    Listen {
        /// The channel to open.
        id: ChannelId,
        /// The local address to bind.
        ip: IpAddr,
        /// The ports to choose from.
        ports: (u16, u16),
        /// The only peer address accepted, if any.
        allow_from: Option<IpAddr>,
    },
    /// Send a file over the channel from `offset` to its end, then close the
    /// channel's sending side. Answered by `Done` (or `Failed`/`Aborted`).
    /// Queued until the channel is connected.
    SendFile {
        /// The channel to send on.
        id: ChannelId,
        /// The open file.
        file: File,
        /// Where to start reading.
        offset: u64,
        /// Where to stop: the file's size when it was opened, so that what is
        /// sent is what was announced even if the file grows meanwhile, and
        /// the end is known without a last `sendfile` returning 0 (`None`: at
        /// end of file). A file that shrinks ends early.
        end: Option<u64>,
        /// How bytes are converted on the way.
        transform: Transform,
    },
    /// Send these bytes over the channel, then close it (an FTP listing),
    /// or, with `more`, keep it open for the next `SendBytes`: a long
    /// listing goes out in bounded chunks, each answered by `Sent` once the
    /// kernel has it, the last (without `more`) by `Done`.
    SendBytes {
        /// The channel to send on.
        id: ChannelId,
        /// What to send.
        data: Vec<u8>,
        /// More chunks follow: keep the channel open.
        more: bool,
    },
    /// Write everything the peer sends on the channel into `file`, until the
    /// peer closes. Answered by `Done` with the byte count written.
    ReceiveFile {
        /// The channel to read from.
        id: ChannelId,
        /// Where the bytes go (already positioned).
        file: File,
        /// How bytes are converted on the way.
        transform: Transform,
    },
    /// The channel speaks TLS once connected (FTPS `PROT P`): the server's
    /// side of a handshake comes before its job, and the job's bytes are
    /// encrypted. A handshake that fails (or, under `--tls-require-reuse`,
    /// one that does not resume a session) fails the channel:
    /// `Failed` with `InvalidData` (`PermissionDenied` for a refused fresh
    /// session).
    Secure {
        /// The channel.
        id: ChannelId,
    },
    /// Ask how many bytes the channel has moved so far, answered at once
    /// by `Progress`: a session compares two answers a timeout apart to
    /// find a data connection that stalled.
    Progress {
        /// The channel asked about.
        id: ChannelId,
    },
    /// Stop whatever the channel is doing and close it. Answered by `Aborted`
    /// if a transfer was under way, otherwise by `Closed`.
    Abort {
        /// The channel to stop.
        id: ChannelId,
    },
    /// The connection's client is really `peer` (a PROXY header named it):
    /// count the connection under `peer`'s address from now on, unless
    /// `peer` already has `per_ip` connections open. Answered at once by
    /// [`Session::handle_admission`].
    Readmit {
        /// The real client's address.
        peer: IpAddr,
        /// The most connections one address may have open.
        per_ip: usize,
    },
    /// Run a computation too slow for an event loop's thread (a password
    /// hash check takes milliseconds, and every other client of that loop
    /// would wait for it). Evented drivers run it on a worker thread, with
    /// the connection; blocking drivers run it in place. Answered by
    /// [`Session::handle_computed`].
    Compute(Work),
}

/// What a [`Request::Compute`] returns: the session downcasts it.
pub type Computed = Box<dyn Any + Send>;

/// A computation for [`Request::Compute`].
pub struct Work(Box<dyn FnOnce() -> Computed + Send>);

impl Work {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce() -> Computed + Send + 'static) -> Work {
        Work(Box::new(f))
    }

    /// Runs it (on whatever thread may block).
    pub fn run(self) -> Computed {
        (self.0)()
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Work(..)")
    }
}

/// A conversion applied to a file transfer's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Bytes unchanged (FTP `TYPE I`); lets the driver use `sendfile`.
    None,
    /// Sending: `\n` becomes `\r\n` (FTP `TYPE A`).
    LfToCrlf,
    /// Receiving: `\r\n` becomes `\n` (FTP `TYPE A`).
    CrlfToLf,
}

/// What happened on a side channel.
#[derive(Debug)]
pub enum ChannelEvent {
    /// A `Listen` request is bound and waiting at `addr`.
    Listening {
        /// The channel.
        id: ChannelId,
        /// The bound address.
        addr: SocketAddr,
    },
    /// The data connection is established.
    Connected {
        /// The channel.
        id: ChannelId,
        /// The other end.
        peer: SocketAddr,
    },
    /// A `SendBytes` chunk with `more` was handed to the kernel; the channel
    /// waits for the next one.
    Sent {
        /// The channel.
        id: ChannelId,
        /// Bytes moved so far on the channel.
        bytes: u64,
    },
    /// The answer to `Progress`.
    Progress {
        /// The channel (`Closed` answers for one that does not exist).
        id: ChannelId,
        /// Bytes moved so far, counted on the wire.
        bytes: u64,
    },
    /// The transfer finished: every byte was handed to the kernel (sending)
    /// or written to the file (receiving). The channel is closed.
    Done {
        /// The channel.
        id: ChannelId,
        /// Bytes moved, counted on the wire.
        bytes: u64,
    },
    /// The channel could not be opened, or the transfer failed. The channel
    /// is closed.
    Failed {
        /// The channel.
        id: ChannelId,
        /// Bytes moved before the failure.
        bytes: u64,
        /// What went wrong.
        error: std::io::ErrorKind,
    },
    /// An `Abort` stopped a transfer under way. The channel is closed.
    Aborted {
        /// The channel.
        id: ChannelId,
        /// Bytes moved before the abort.
        bytes: u64,
    },
    /// An `Abort` closed a channel that had no transfer under way.
    Closed {
        /// The channel.
        id: ChannelId,
    },
}

impl ChannelEvent {
    /// The channel the event is about.
    pub fn id(&self) -> ChannelId {
        match *self {
            ChannelEvent::Listening { id, .. }
            | ChannelEvent::Connected { id, .. }
            | ChannelEvent::Sent { id, .. }
            | ChannelEvent::Progress { id, .. }
            | ChannelEvent::Done { id, .. }
            | ChannelEvent::Failed { id, .. }
            | ChannelEvent::Aborted { id, .. }
            | ChannelEvent::Closed { id } => id,
        }
    }
}

/// The next piece of a session's output for its control connection, in
/// order ([`Session::poll_output`]). The driver writes what it can of it and
/// reports the count with [`Session::consume_output`]; then it asks again.
///
/// [`Output::StartTls`] switches the connection to TLS at its place in the
/// queue (FTPS's `AUTH TLS`, after its `234`): exactly between two
/// replies.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Nothing to send.
    Nothing,
    /// Bytes. With `more`, another item follows at once: the driver sends
    /// with `MSG_MORE`, so that a response's head and the start of its body
    /// leave in one segment.
    Bytes {
        /// The bytes.
        data: &'a [u8],
        /// Another item follows.
        more: bool,
    },
    /// `len` bytes of an open file from `offset` (sent with `sendfile`).
    /// The count consumed is of these bytes; a file that ends before `len`
    /// breaks the promise made in the head before it, so the driver closes
    /// the connection.
    File {
        /// The open file.
        file: &'a File,
        /// Where the bytes still to send begin.
        offset: u64,
        /// How many are still to send (more than zero).
        len: u64,
        /// Another item follows.
        more: bool,
    },
    /// Everything before has been sent: the connection speaks TLS from
    /// here (the server's side of a handshake begins). The driver consumes
    /// the item with `consume_output(0)` and then tells the session
    /// ([`Session::handle_tls`]).
    StartTls,
}

impl<'a> Output<'a> {
    /// Whether there is nothing to send.
    pub fn is_nothing(&self) -> bool {
        matches!(self, Output::Nothing)
    }

    /// The bytes of a `Bytes` item (empty for anything else): for tests and
    /// for drivers that can only send bytes.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            Output::Bytes { data, .. } => data,
            _ => &[],
        }
    }
}

/// A session's pending output for its control connection: bytes, and file
/// ranges placed between them, flushed in order ([`Output`]). The bytes of
/// every item live in one buffer that is reused, and each file range only
/// records where in the bytes it goes, so steady request/response traffic
/// allocates nothing; the front is consumed as the driver writes.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Every byte item, in order; `bytes[sent..]` is still to send.
    bytes: Vec<u8>,
    sent: usize,
    /// File ranges, each sent once `sent` reaches its `at`.
    files: std::collections::VecDeque<FileRange>,
}

#[derive(Debug)]
struct FileRange {
    /// Where in `bytes` this range goes (before the bytes at `at`).
    at: usize,
    /// The file (`None`: not a range but the switch to TLS, which has no
    /// bytes of its own).
    file: Option<Arc<File>>,
    offset: u64,
    end: u64,
}

/// The largest file range [`OutQueue::push_file`] copies into the byte
/// buffer instead of queueing for `sendfile`: below this a copy costs less
/// than a second system call through the kernel's splice machinery.
pub const INLINE_MAX: usize = 16 * 1024;

/// The most buffer capacity an empty queue keeps: enough for the heads and
/// small bodies of steady keep-alive traffic (so it allocates nothing per
/// response), little enough that 10,000 idle connections cost little.
pub const RETAIN_MAX: usize = 4 * 1024;

/// Bytes already sent that a queue keeps before moving the rest to the front
/// of its buffer (while a file range holds the buffer's end in place).
const COMPACT_AT: usize = 64 * 1024;

impl OutQueue {
    /// An empty queue with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> OutQueue {
        OutQueue {
            bytes: Vec::with_capacity(capacity),
            sent: 0,
            files: std::collections::VecDeque::new(),
        }
    }

    /// The buffer to append bytes to: they go after everything queued, file
    /// ranges included.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Queues `len` bytes of `file` from `offset`, after everything queued.
    /// An empty range queues nothing. A range of at most [`INLINE_MAX`]
    /// bytes is read into the byte buffer at once (one `pread`): a small
    /// response then leaves in one `send` instead of a `send` and a
    /// `sendfile`, and pipelined small responses leave together (measured:
    /// 2.4× the requests per second on 16-deep pipelines of 1 KiB GETs).
    /// If that read comes up short, the range is queued as a file range
    /// after all, and the driver finds the file short.
    pub fn push_file(&mut self, file: File, offset: u64, len: u64) {
        if !self.inline(&file, offset, len) {
            self.queue(Arc::new(file), offset, len);
        }
    }

    /// As [`OutQueue::push_file`], for a file others hold too (a serving
    /// thread's cache of open files): a small range is copied at once, a
    /// larger one keeps a reference until it is sent.
    pub fn push_shared_file(&mut self, file: &Arc<File>, offset: u64, len: u64) {
        if !self.inline(file, offset, len) {
            self.queue(Arc::clone(file), offset, len);
        }
    }

    /// Copies a range of at most [`INLINE_MAX`] bytes into the byte buffer;
    /// whether it did (an empty range counts as done).
    fn inline(&mut self, file: &File, offset: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        if len <= INLINE_MAX as u64 {
            use std::os::unix::fs::FileExt;
            let at = self.bytes.len();
            self.bytes.resize(at + len as usize, 0);
            if file.read_exact_at(&mut self.bytes[at..], offset).is_ok() {
                return true;
            }
            self.bytes.truncate(at);
        }
        false
    }

    fn queue(&mut self, file: Arc<File>, offset: u64, len: u64) {
        self.files.push_back(FileRange {
            at: self.bytes.len(),
            file: Some(file),
            offset,
            end: offset + len,
        });
    }

    /// Switches the connection to TLS once everything queued before has
    /// been sent ([`Output::StartTls`]).
    pub fn push_start_tls(&mut self) {
        self.files.push_back(FileRange {
            at: self.bytes.len(),
            file: None,
            offset: 0,
            end: 0,
        });
    }

    /// The item at the front.
    pub fn front(&self) -> Output<'_> {
        if self.files.is_empty() {
            // Bytes alone, the common case: asked several times per
            // request, so it is kept to a comparison.
            return match self.bytes.get(self.sent..) {
                Some(data) if !data.is_empty() => Output::Bytes { data, more: false },
                _ => Output::Nothing,
            };
        }
        let unsent = &self.bytes[self.sent..];
        match self.files.front() {
            // Before a switch to TLS nothing follows at once (the
            // handshake waits for the peer's hello): without `more`, so
            // that the kernel does not hold the reply (the 234) back for
            // the 200 ms a corked segment waits.
            Some(f) if f.at > self.sent => Output::Bytes {
                data: &self.bytes[self.sent..f.at],
                more: f.file.is_some(),
            },
            Some(f) => match &f.file {
                None => Output::StartTls,
                Some(file) => Output::File {
                    file,
                    offset: f.offset,
                    len: f.end - f.offset,
                    more: self.files.len() > 1 || f.at < self.bytes.len(),
                },
            },
            None if unsent.is_empty() => Output::Nothing,
            None => Output::Bytes {
                data: unsent,
                more: false,
            },
        }
    }

    /// The driver wrote the first `n` bytes of the front item.
    pub fn consume(&mut self, n: usize) {
        match self.files.front_mut() {
            Some(f) if f.at <= self.sent => {
                // A switch to TLS (offset == end) goes with this call.
                f.offset = (f.offset + n as u64).min(f.end);
                if f.offset == f.end {
                    self.files.pop_front();
                }
            }
            Some(f) => self.sent = (self.sent + n).min(f.at),
            None => self.sent = (self.sent + n).min(self.bytes.len()),
        }
        if self.sent == self.bytes.len() && self.files.is_empty() {
            self.bytes.clear();
            self.sent = 0;
            if self.bytes.capacity() > RETAIN_MAX {
                // An idle connection keeps a small buffer, not the largest
                // response it ever sent.
                self.bytes = Vec::new();
            }
        } else if self.sent >= COMPACT_AT && self.sent * 2 >= self.bytes.len() {
            self.bytes.drain(..self.sent);
            for f in &mut self.files {
                f.at -= self.sent;
            }
            self.sent = 0;
        }
    }

    /// Bytes still to send, not counting file ranges.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.sent
    }

    /// File ranges still to send.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.files.is_empty()
    }

    /// Drops everything still queued (a connection that will never send
    /// it).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
        self.files.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(content: &[u8]) -> File {
        let mut f = tempfile_in_target();
        f.write_all(content).unwrap();
        f
    }

    /// An unnamed temporary file (removed when closed).
    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "muse-outqueue-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    /// Takes the whole queue as a driver would, `step` bytes at a time,
    /// reading file ranges with `pread`.
    fn drain(q: &mut OutQueue, step: usize) -> (Vec<u8>, Vec<(usize, bool)>) {
        use std::os::unix::fs::FileExt;
        let mut out = Vec::new();
        let mut mores = Vec::new();
        loop {
            match q.front() {
                Output::Nothing => break,
                Output::Bytes { data, more } => {
                    let n = data.len().min(step);
                    out.extend_from_slice(&data[..n]);
                    mores.push((n, more));
                    q.consume(n);
                }
                Output::File {
                    file,
                    offset,
                    len,
                    more,
                } => {
                    let n = (len as usize).min(step);
                    let mut buf = vec![0; n];
                    file.read_exact_at(&mut buf, offset).unwrap();
                    out.extend_from_slice(&buf);
                    mores.push((n, more));
                    q.consume(n);
                }
                Output::StartTls => {
                    out.extend_from_slice(b"<tls>");
                    q.consume(0);
                }
            }
        }
        (out, mores)
    }

    #[test]
    fn a_switch_to_tls_lands_between_the_replies_around_it() {
        let mut q = OutQueue::default();
        q.buf().extend_from_slice(b"234 AUTH TLS successful.\r\n");
        q.push_start_tls();
        q.buf().extend_from_slice(b"after");
        // Sent a byte at a time, the switch comes exactly after the 234.
        let (out, _) = drain(&mut q, 1);
        assert_eq!(out, b"234 AUTH TLS successful.\r\n<tls>after");
        assert!(q.is_empty());
        // The 234 goes without MSG_MORE: the handshake after it waits for
        // the client, so nothing would uncork it.
        q.buf().extend_from_slice(b"234 AUTH TLS successful.\r\n");
        q.push_start_tls();
        let (out, mores) = drain(&mut q, usize::MAX);
        assert_eq!(out, b"234 AUTH TLS successful.\r\n<tls>");
        assert!(mores.iter().all(|&(_, more)| !more), "{mores:?}");
        assert!(q.is_empty());
    }

    /// `n` bytes of a repeating pattern starting at `seed`.
    fn pattern(seed: u8, n: usize) -> Vec<u8> {
        (0..n).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
    }

    #[test]
    fn bytes_and_file_ranges_leave_in_order() {
        let big = INLINE_MAX + 100;
        let (f1, f2) = (pattern(1, big), pattern(7, big));
        let mut want = b"HEAD1|".to_vec();
        want.extend_from_slice(&f1[2..big - 3]);
        want.extend_from_slice(b"|HEAD2|");
        want.extend_from_slice(&f2);
        want.extend_from_slice(b"|END");
        for step in [1000, 4096, 7, 1 << 20] {
            let mut q = OutQueue::default();
            q.buf().extend_from_slice(b"HEAD1|");
            q.push_file(file_of(&f1), 2, (big - 5) as u64);
            q.buf().extend_from_slice(b"|HEAD2|");
            q.push_file(file_of(&f2), 0, big as u64);
            q.push_file(file_of(b"xyz"), 0, 0);
            q.buf().extend_from_slice(b"|END");
            assert_eq!(q.files(), 2);
            let (out, mores) = drain(&mut q, step);
            assert!(out == want, "step {step}");
            // Only the last item ("|END") is sent without `more`.
            let last: usize = mores.iter().filter(|m| !m.1).map(|m| m.0).sum();
            assert_eq!(last, 4, "step {step}");
            assert!(mores.last().is_some_and(|m| !m.1));
            assert!(q.is_empty());
            assert_eq!(q.len(), 0);
        }
    }

    #[test]
    fn a_small_range_is_copied_into_the_bytes() {
        let mut q = OutQueue::default();
        q.buf().extend_from_slice(b"head|");
        q.push_file(file_of(b"0123456789"), 3, 4);
        assert_eq!(q.files(), 0);
        assert!(matches!(
            q.front(),
            Output::Bytes {
                data: b"head|3456",
                more: false
            }
        ));
        // A file shorter than the range asked for stays a file range, for
        // the driver to find short.
        let mut q = OutQueue::default();
        q.push_file(file_of(b"abc"), 0, 10);
        assert_eq!(q.files(), 1);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_queue_ending_with_a_file_says_no_more_on_its_last_bytes() {
        let body = pattern(3, INLINE_MAX + 1);
        let mut q = OutQueue::default();
        q.buf().extend_from_slice(b"head");
        q.push_file(file_of(&body), 0, body.len() as u64);
        assert!(matches!(q.front(), Output::Bytes { more: true, .. }));
        q.consume(4);
        assert!(matches!(q.front(), Output::File { more: false, .. }));
        q.consume(body.len());
        assert!(q.front().is_nothing());
    }

    #[test]
    fn sent_bytes_are_compacted_while_a_file_holds_the_end() {
        let body = pattern(9, INLINE_MAX + 1);
        let mut q = OutQueue::default();
        q.buf().extend(std::iter::repeat_n(b'a', COMPACT_AT + 10));
        q.push_file(file_of(&body), 0, body.len() as u64);
        q.buf().extend_from_slice(b"tail");
        q.consume(COMPACT_AT + 10);
        // Compacted: the file range now sits at the front of the buffer.
        assert_eq!(q.len(), 4);
        assert!(matches!(q.front(), Output::File { .. }));
        let (out, _) = drain(&mut q, 1 << 20);
        assert_eq!(&out[..body.len()], &body[..]);
        assert_eq!(&out[body.len()..], b"tail");
    }
}
