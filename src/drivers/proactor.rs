//! The proactor driver: many sessions on one io_uring ring, told of
//! completions instead of readiness. Used by `uring`, `multi-uring` (one
//! ring per thread) and `prefork-uring` (one per worker process).
//!
//! Where the reactor is told "this socket is readable" and then reads, the
//! proactor asks the kernel to do the reading and is told what was read:
//!
//! - listeners: one *multishot accept* each, which keeps accepting and
//!   posts one completion per connection (a hand-off socket, which needs a
//!   message read rather than an accept, is polled instead);
//! - a connection's control stream: one *multishot receive* into a ring of
//!   buffers the kernel picks from (the provided-buffer ring), so that no
//!   receive has to be re-armed per message and an idle connection holds
//!   no buffer at all; what arrives is handed to the [`Connection`]
//!   ([`Connection::receive`]), which runs the session as every driver does;
//! - what the session answers is gathered by the connection into its send
//!   buffer (pipelined answers together) and sent by one *send* operation
//!   (a file's head and a closing connection's last words, with nothing
//!   before them, go by a `send` made at once instead);
//!   a file body goes by `sendfile` from the loop, within the same budget
//!   per turn as the reactor's, and when the socket is full a one-shot poll
//!   says when it takes more;
//! - everything else a session may open (FTP data connections, the kv
//!   store's stream) and urgent data use *multishot polls* through the same
//!   ring, and the connection moves their bytes itself, as under the
//!   reactor;
//! - timers are the wait's timeout; a session's waker and the computation
//!   threads' results come through an eventfd read by the ring.
//!
//! All the operations one turn of the loop produced go to the kernel with
//! the wait for the next completions, in one `io_uring_enter`: with fifty
//! busy connections a turn costs one system call where the reactor makes a
//! read and a write per connection plus its `epoll_wait`.
//!
//! Operation identities (`user_data`) carry a kind, the slot and the
//! connection's generation, so a completion that arrives after its
//! connection closed (a cancelled receive's last buffer) is recognised and
//! dropped, its buffer given back. A connection that closes with a send in
//! flight stays (closing) until the kernel is done with its bytes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::drivers::conn::{Connection, Status};
use crate::drivers::{earliest, wait_for, Ctx, Heartbeat, Timers, SCRATCH_SIZE};
use crate::net::{AcceptError, AcceptPause, Accepted, Listeners, EXHAUSTED_BACKOFF};
use crate::scoreboard::Ticket;
use crate::session::{Computed, Work, MAX_CHANNELS};

/// The longest the loop sleeps without updating its heartbeat.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a finishing loop waits for its cancelled operations to end,
/// and the step it waits in (a step with no completion ends the wait).
const FINISH_WAIT: Duration = Duration::from_secs(1);
const FINISH_STEP: Duration = Duration::from_millis(20);

/// Submission queue entries. A turn that makes more submits early.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: room for a turn's worth of completions from
/// every connection (the kernel keeps any overflow and says so).
const CQ_ENTRIES: u32 = 8192;

/// Receive buffers in the provided-buffer ring, and their size: 1 MiB per
/// ring, shared by all of its connections (a connection holds one only
/// while its completion is handled). The kernel consumes a buffer
/// incrementally (Linux 6.12), so one holds many small messages and few
/// are needed. A turn receives at most the ring's bytes before the loop
/// copies them out, so a small ring is still in the cache when they are
/// copied; against 64 buffers (4 MiB) it saves 3 MiB per ring, and echo
/// `stream` measured the same or better (39k against 38k requests per
/// server CPU-second in one run, 46k against 40k in another; `rr` alike).
const BUFFERS: u16 = 16;
const BUFFER_SIZE: usize = 64 * 1024;
/// Without incremental consumption (Linux 6.0–6.11) each completion takes
/// a whole buffer, however few bytes it holds: more buffers, so that a
/// turn still receives from many connections.
const BUFFERS_WHOLE: u16 = 64;
/// `IOU_PBUF_RING_INC`: the ring's buffers are consumed incrementally.
const IOU_PBUF_RING_INC: u16 = 2;
const BUFFER_GROUP: u16 = 0;

// Operation kinds, in the top byte of `user_data`.
const K_ACCEPT: u64 = 1;
const K_LISTEN_POLL: u64 = 2;
const K_RECV: u64 = 3;
const K_SEND: u64 = 4;
const K_POLLOUT: u64 = 5;
const K_URGENT: u64 = 6;
const K_WAKE: u64 = 7;
const K_SHUTDOWN: u64 = 8;
const K_CANCEL: u64 = 9;
const K_SERVICE: u64 = 10;
const K_CTRL: u64 = 11;
const K_CHANNEL0: u64 = 16;

fn ud(kind: u64, tag: u64, index: usize) -> u64 {
    (kind << 56) | ((tag & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

/// A receive's `user_data`: the connection's generation (16 bits) and the
/// arm's number (8 bits) in the tag.
fn recv_ud(gen: u64, arm: u64, slot: usize) -> u64 {
    ud(K_RECV, ((gen & 0xffff) << 8) | (arm & 0xff), slot)
}

fn ud_kind(ud: u64) -> u64 {
    ud >> 56
}

fn ud_tag(ud: u64) -> u64 {
    (ud >> 32) & 0xff_ffff
}

fn ud_index(ud: u64) -> usize {
    (ud & 0xffff_ffff) as usize
}

/// Whether io_uring can run this driver here, or why not (disabled by the
/// `kernel.io_uring_disabled` sysctl, refused by a seccomp filter, or a
/// kernel older than 6.0, which lacks multishot receive).
pub fn available() -> Result<(), String> {
    if std::env::var_os("MUSE_FAULT_URING_UNAVAILABLE").is_some() {
        return Err("io_uring is unavailable: disabled by MUSE_FAULT_URING_UNAVAILABLE".into());
    }
    let ring = IoUring::new(8).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EPERM) => "not permitted (the kernel.io_uring_disabled sysctl?)".to_string(),
            Some(libc::ENOSYS) => "not implemented or filtered out (seccomp?)".to_string(),
            _ => e.to_string(),
        };
        format!("io_uring is unavailable: {why}")
    })?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring is unavailable: cannot probe it: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "receive"),
        (opcode::PollAdd::CODE, "poll"),
        (opcode::AsyncCancel::CODE, "cancel"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!(
                "io_uring is unavailable: this kernel has no {name} operation"
            ));
        }
    }
    // Multishot receive into a buffer ring came with Linux 6.0.
    let release = crate::sys::kernel_release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if major < 6 {
        return Err(format!(
            "io_uring is unavailable: Linux {release} lacks multishot receive (6.0 or later)"
        ));
    }
    Ok(())
}

/// The provided-buffer ring: buffers the kernel fills with what a
/// multishot receive got, handed back once the bytes are taken.
struct BufRing {
    /// The ring of entries shared with the kernel (page-aligned mapping).
    entries: *mut BufRingEntry,
    /// Entries and buffers (a power of two).
    count: u16,
    /// The buffers, `count × BUFFER_SIZE`.
    memory: Box<[u8]>,
    tail: u16,
    /// Where each buffer's bytes not yet handed out begin: the kernel
    /// fills a buffer incrementally, one completion after another.
    taken: Box<[u32]>,
}

impl BufRing {
    /// A ring consumed incrementally where the kernel can, else one of
    /// whole buffers.
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        match BufRing::with(ring, BUFFERS, IOU_PBUF_RING_INC) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                BufRing::with(ring, BUFFERS_WHOLE, 0)
            }
            other => other,
        }
    }

    fn with(ring: &IoUring, count: u16, flags: u16) -> io::Result<BufRing> {
        let map_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Registered empty, then filled: a kernel that refuses `flags`
        // leaves nothing to undo but the mapping.
        // SAFETY: the mapping is page-aligned, holds `count` entries and,
        // once registered, lives as long as the process (see `Drop`).
        let registered = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, count, BUFFER_GROUP, flags)
        };
        if let Err(e) = registered {
            // SAFETY: the mapping made above, which nothing else knows of.
            unsafe { libc::munmap(p, map_len) };
            return Err(e);
        }
        let mut br = BufRing {
            entries: p.cast(),
            count,
            memory: vec![0u8; usize::from(count) * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
            taken: vec![0; usize::from(count)].into_boxed_slice(),
        };
        for bid in 0..count {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    fn push(&mut self, bid: u16) {
        let i = usize::from(self.tail & (self.count - 1));
        // SAFETY: `i` is within the mapping's `count` entries.
        let entry = unsafe { &mut *self.entries.add(i) };
        let at = usize::from(bid) * BUFFER_SIZE;
        entry.set_addr(self.memory[at..].as_ptr() as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, which the
        // kernel reads; stored with release ordering after the entries.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, AtomicOrdering::Release);
        }
    }

    /// The `len` bytes a completion put in buffer `bid` (after those of
    /// the buffer's earlier completions).
    fn take(&mut self, bid: u16, len: usize) -> &[u8] {
        let Some(taken) = self.taken.get_mut(usize::from(bid)) else {
            return &[];
        };
        let from = (*taken as usize).min(BUFFER_SIZE);
        let len = len.min(BUFFER_SIZE - from);
        *taken = (from + len) as u32;
        let at = usize::from(bid) * BUFFER_SIZE + from;
        &self.memory[at..at + len]
    }

    /// A receive completed into buffer `bid`: its bytes are taken, and the
    /// buffer is handed back unless the kernel goes on filling it.
    fn completed(&mut self, bid: u16, res: i32, flags: u32) {
        if res > 0 {
            self.take(bid, res as usize);
        }
        self.done_with(bid, flags);
    }

    /// Hands buffer `bid` back to the kernel once it says it is done with
    /// it (a completion without `BUF_MORE`).
    fn done_with(&mut self, bid: u16, flags: u32) {
        if cqueue::buffer_more(flags) || bid >= self.count {
            return;
        }
        self.taken[usize::from(bid)] = 0;
        self.push(bid);
        self.publish();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // The kernel may still be finishing operations of a ring closed
        // just before (its teardown is asynchronous): the memory it may
        // write is left mapped rather than freed under it. This happens
        // once per ring, when its thread or process ends.
        std::mem::forget(std::mem::take(&mut self.memory));
    }
}

/// One connection on the ring.
struct Entry {
    conn: Box<Connection>,
    gen: u64,
    /// The `user_data` of the armed multishot receive (0: none). Each arm
    /// has its own (see [`recv_ud`]), so the last completion of one that
    /// was cancelled is not taken for the end of the next.
    recv: u64,
    recv_arms: u64,
    /// A receive cancelled whose last completion has not come yet (0:
    /// none): until it does, the kernel may still hand its bytes over.
    recv_ending: u64,
    /// A relayed connection (out of completion mode): the `user_data` of
    /// the multishot poll that reports its socket's readiness (0: none).
    ctrl_poll: u64,
    pollout_armed: bool,
    urgent_armed: bool,
    /// The `user_data` of each channel slot's poll (0: none), and the
    /// serial it was armed for.
    chan_polls: [(u64, u64); MAX_CHANNELS],
    /// The service stream's socket and the `user_data` of its poll.
    service_poll: Option<(RawFd, u64)>,
    queued: bool,
    /// Waiting for a computation's result.
    computing: bool,
    /// Closed, waiting for the kernel to be done with its send buffer.
    closing: bool,
}

/// A proactor: one io_uring ring, its connections and its timers.
pub struct Proactor<'a> {
    ring: IoUring,
    bufs: BufRing,
    ctx: Ctx,
    listeners: &'a Listeners,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
    next_gen: u64,
    timers: Timers,
    again: VecDeque<usize>,
    touched: Vec<usize>,
    due: Vec<usize>,
    cqes: Vec<cqueue::Entry>,
    scratch: Vec<u8>,
    /// Listeners whose multishot accept (or poll) is armed.
    accepting: Vec<bool>,
    accept_paused_until: Option<Instant>,
    draining: bool,
    /// Session wakes and computation results arrive through this eventfd.
    wake: Arc<EventFd>,
    /// What the ring reads the eventfd into (stable address).
    wake_buf: Box<u64>,
    wakes: Arc<WakeList>,
    compute: Option<Compute>,
}

/// An eventfd: a counter other threads bump to wake the loop.
struct EventFd(RawFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd(fd))
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.0, (&raw const one).cast(), 8) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The slots woken since the loop last looked (each at most once, see
/// `evented.rs`), and computation results.
struct WakeList {
    slots: Mutex<Vec<(usize, u64, Arc<AtomicBool>)>>,
    computed: Mutex<Vec<(usize, u64, Option<Computed>)>>,
    fd: Arc<EventFd>,
}

struct SlotWake {
    list: Arc<WakeList>,
    slot: usize,
    gen: u64,
    queued: Arc<AtomicBool>,
}

impl crate::session::Wake for SlotWake {
    fn wake(&self) {
        if self.queued.swap(true, AtomicOrdering::AcqRel) {
            return;
        }
        let mut slots = self.list.slots.lock().expect("wake list lock");
        let first = slots.is_empty();
        slots.push((self.slot, self.gen, Arc::clone(&self.queued)));
        drop(slots);
        if first {
            self.list.fd.wake();
        }
    }
}

/// Threads that run the computations sessions ask for (a password check),
/// which must not stall the loop; started on first need.
struct Compute {
    jobs: Arc<Jobs>,
}

/// Computations waiting for a thread: `(slot, generation, work)`.
type Jobs = (Mutex<VecDeque<(usize, u64, Work)>>, Condvar);

impl Compute {
    fn start(list: &Arc<WakeList>) -> io::Result<Compute> {
        let jobs: Arc<Jobs> = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let jobs = Arc::clone(&jobs);
            let list = Arc::clone(list);
            std::thread::Builder::new()
                .name(format!("compute-{i}"))
                .spawn(move || loop {
                    let (slot, gen, work) = {
                        let mut q = jobs.0.lock().expect("compute lock");
                        loop {
                            if let Some(job) = q.pop_front() {
                                break job;
                            }
                            q = jobs.1.wait(q).expect("compute lock");
                        }
                    };
                    let result = catch_unwind(AssertUnwindSafe(|| work.run())).ok();
                    list.computed
                        .lock()
                        .expect("wake list lock")
                        .push((slot, gen, result));
                    list.fd.wake();
                })?;
        }
        Ok(Compute { jobs })
    }

    fn send(&self, slot: usize, gen: u64, work: Work) {
        self.jobs
            .0
            .lock()
            .expect("compute lock")
            .push_back((slot, gen, work));
        self.jobs.1.notify_one();
    }
}

const POLL_RW: u32 = (libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP) as u32;

impl<'a> Proactor<'a> {
    /// A proactor over `listeners` (several may share them).
    pub fn new(listeners: &'a Listeners, ctx: Ctx) -> io::Result<Proactor<'a>> {
        available().map_err(io::Error::other)?;
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_submit_all()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)?;
        let bufs = BufRing::new(&ring)?;
        let fd = Arc::new(EventFd::new()?);
        let wakes = Arc::new(WakeList {
            slots: Mutex::new(Vec::new()),
            computed: Mutex::new(Vec::new()),
            fd: Arc::clone(&fd),
        });
        Ok(Proactor {
            ring,
            bufs,
            ctx,
            listeners,
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_gen: 0,
            timers: Timers::default(),
            again: VecDeque::new(),
            touched: Vec::new(),
            due: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            scratch: vec![0; SCRATCH_SIZE],
            accepting: vec![false; listeners.len()],
            accept_paused_until: None,
            draining: false,
            wake: fd,
            wake_buf: Box::new(0),
            wakes,
            compute: None,
        })
    }

    /// Queues one operation, submitting what is queued first if the queue
    /// is full.
    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every operation's memory (send buffers, the eventfd
            // word, the buffer ring) outlives it; see the callers.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    crate::log::warn(format_args!("io_uring submit: {e}"));
                }
            }
        }
    }

    fn cancel(&mut self, user_data: u64) {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::user_data(user_data).all())
            .build()
            .user_data(ud(K_CANCEL, 0, 0));
        self.push(sqe);
    }

    fn arm_accept(&mut self, i: usize) {
        if self.accepting[i] {
            return;
        }
        let fd = Fd(self
            .listeners
            .iter()
            .nth(i)
            .expect("listener index")
            .as_raw_fd());
        let sqe = if self.listeners.is_socket(i) {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build()
                .user_data(ud(K_ACCEPT, 0, i))
        } else {
            opcode::PollAdd::new(fd, libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(ud(K_LISTEN_POLL, 0, i))
        };
        self.accepting[i] = true;
        self.push(sqe);
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::Read::new(Fd(self.wake.0), (&raw mut *self.wake_buf).cast(), 8)
            .build()
            .user_data(ud(K_WAKE, 0, 0));
        self.push(sqe);
    }

    /// Runs until shutdown has drained every connection or its deadline
    /// passed.
    pub fn run(mut self) -> io::Result<()> {
        let mut heartbeat = Heartbeat::new();
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        let shutdown = opcode::PollAdd::new(Fd(self.ctx.shutdown.wake_fd()), libc::POLLIN as u32)
            .build()
            .user_data(ud(K_SHUTDOWN, 0, 0));
        self.push(shutdown);
        self.arm_wake();
        self.ctx.ready();
        loop {
            let now = Instant::now();
            if self.ctx.shutdown.is_draining() {
                if !self.draining {
                    self.start_drain(now);
                }
                // Accepts are cancelled, but the connections they took off
                // the queue before the cancel landed are ours to serve:
                // done only once every accept has said it ended.
                if self.live == 0 && !self.accepting.contains(&true) {
                    self.finish();
                    return Ok(());
                }
                if self.ctx.shutdown.is_expired(now) {
                    for entry in self.entries.iter_mut().flatten() {
                        if !entry.closing {
                            // Closing anyway: a panic only ends its words.
                            let conn = &mut entry.conn;
                            let _ = catch_unwind(AssertUnwindSafe(|| conn.last_words(now)));
                        }
                    }
                    self.finish();
                    return Ok(());
                }
            }
            let timeout = if self.again.is_empty() {
                let next_timer = self.timers.next();
                let drain = if self.draining {
                    self.ctx.shutdown.deadline()
                } else {
                    None
                };
                wait_for(
                    earliest([next_timer, self.accept_paused_until, drain]),
                    now,
                    TICK,
                )
            } else {
                Duration::ZERO
            };
            self.enter(timeout)?;
            let now = Instant::now();
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(self.ring.completion());
            for cqe in &cqes {
                self.complete(cqe, now);
            }
            cqes.clear();
            self.cqes = cqes;
            self.serve_touched(now);
            self.serve_again(now);
            self.fire_timers(now);
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                if !self.draining {
                    for i in 0..self.listeners.len() {
                        self.arm_accept(i);
                    }
                }
            }
            heartbeat.beat(&self.ctx, now);
        }
    }

    /// Before the loop ends: every operation still in the kernel is
    /// cancelled and its end awaited (for at most [`FINISH_WAIT`]). A
    /// receive left armed would hold its socket open after the process is
    /// gone, with the client waiting on it: the kernel tears a ring down on
    /// its own time.
    fn finish(&mut self) {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(ud(K_CANCEL, 0, 0));
        self.push(sqe);
        let until = Instant::now() + FINISH_WAIT;
        loop {
            let now = Instant::now();
            if now >= until || self.enter(FINISH_STEP.min(until - now)).is_err() {
                break;
            }
            let mut seen = 0;
            for cqe in self.ring.completion() {
                seen += 1;
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    self.bufs.completed(bid, cqe.result(), cqe.flags());
                }
            }
            if seen == 0 {
                break;
            }
        }
        // The sockets close now, with nothing in the kernel holding them.
        self.entries.clear();
    }

    /// Submits what this turn queued and waits for a completion or
    /// `timeout`, in one system call.
    fn enter(&mut self, timeout: Duration) -> io::Result<()> {
        let result = if timeout.is_zero() {
            self.ring.submit()
        } else {
            let ts = Timespec::from(timeout);
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }

    fn complete(&mut self, cqe: &cqueue::Entry, now: Instant) {
        let data = cqe.user_data();
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        match ud_kind(data) {
            K_ACCEPT => self.accepted(ud_index(data), res, more, now),
            K_LISTEN_POLL => {
                let i = ud_index(data);
                if !more {
                    self.accepting[i] = false;
                    if self.draining {
                        // As for an accept (see `accepted`).
                        self.accept_ready(i, now);
                    }
                }
                if res >= 0 && !self.draining {
                    self.accept_ready(i, now);
                }
                if !more && !self.draining && self.accept_paused_until.is_none() {
                    self.arm_accept(i);
                }
            }
            K_WAKE => {
                self.take_wakes();
                self.arm_wake();
            }
            K_SHUTDOWN | K_CANCEL => {}
            kind => self.complete_conn(kind, data, res, cqe.flags(), more, now),
        }
    }

    fn complete_conn(
        &mut self,
        kind: u64,
        data: u64,
        res: i32,
        flags: u32,
        more: bool,
        now: Instant,
    ) {
        let slot = ud_index(data);
        let bid = cqueue::buffer_select(flags);
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            if let Some(bid) = bid {
                self.bufs.completed(bid, res, flags);
            }
            return;
        };
        let current = if kind == K_RECV {
            ud_tag(data) >> 8 == entry.gen & 0xffff
        } else {
            ud_tag(data) == entry.gen & 0xff_ffff
        };
        match kind {
            K_RECV => {
                if data == entry.recv && !more {
                    entry.recv = 0;
                }
                if data == entry.recv_ending && !more {
                    entry.recv_ending = 0;
                }
                if let Some(bid) = bid {
                    if current && !entry.closing && res > 0 {
                        let bytes = self.bufs.take(bid, res as usize);
                        let conn = &mut entry.conn;
                        // The turn's `now`, as every session call of the
                        // turn gets (http's file facts are kept per turn).
                        // The session runs here, so a panic is caught here.
                        let fine = catch_unwind(AssertUnwindSafe(|| conn.receive(bytes, now)));
                        self.bufs.done_with(bid, flags);
                        if fine.is_err() {
                            return self.panicked(slot);
                        }
                    } else {
                        self.bufs.completed(bid, res, flags);
                    }
                }
                if !current || entry.closing {
                    return;
                }
                match res {
                    0 => entry.conn.receive_end(false),
                    r if r > 0 => {}
                    r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
                    _ => entry.conn.receive_end(true),
                }
                if entry.conn.holds_bulk() {
                    // Bulk made of these bytes goes out now, while they
                    // are in the cache, rather than after the turn's other
                    // completions have pushed them out of it (echo
                    // `stream`: 42k against 38k requests per server
                    // CPU-second, same run).
                    self.serve(slot, now);
                    return;
                }
            }
            K_SEND => {
                if !current {
                    return;
                }
                let result = if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                let busy = entry.conn.sent(result);
                if entry.closing {
                    if !entry.conn.sending() {
                        self.remove(slot);
                    }
                    return;
                }
                if !busy {
                    // Everything is out and nothing waits: the usual end
                    // of an answer.
                    return;
                }
            }
            K_POLLOUT => {
                if !current {
                    return;
                }
                entry.pollout_armed = false;
                entry.conn.writable = true;
            }
            K_URGENT => {
                if !current {
                    return;
                }
                if !more {
                    entry.urgent_armed = false;
                }
                if res > 0 && res & i32::from(libc::POLLPRI) != 0 {
                    entry.conn.urgent = true;
                }
            }
            K_SERVICE => {
                let Some((_, armed)) = entry.service_poll else {
                    return;
                };
                if armed != data {
                    return;
                }
                if !more {
                    entry.service_poll = None;
                }
                if res > 0 {
                    let mask = res as u32;
                    if let Some(link) = entry.conn.service_mut() {
                        let err = (libc::POLLERR | libc::POLLHUP) as u32;
                        if mask & ((libc::POLLIN | libc::POLLRDHUP) as u32 | err) != 0 {
                            link.readable = true;
                        }
                        if mask & (libc::POLLOUT as u32 | err) != 0 {
                            link.writable = true;
                        }
                    }
                }
            }
            K_CTRL => {
                if data != entry.ctrl_poll {
                    return;
                }
                if !more {
                    entry.ctrl_poll = 0;
                }
                let conn = &mut entry.conn;
                if res > 0 {
                    let mask = res as u32;
                    let err = (libc::POLLERR | libc::POLLHUP) as u32;
                    if mask & ((libc::POLLIN | libc::POLLRDHUP) as u32 | err) != 0 {
                        conn.readable = true;
                    }
                    if mask & (libc::POLLRDHUP as u32 | err) != 0 {
                        conn.peer_closed = true;
                    }
                    if mask & (libc::POLLOUT as u32 | err) != 0 {
                        conn.writable = true;
                    }
                    if mask & libc::POLLPRI as u32 != 0 {
                        conn.urgent = true;
                    }
                } else if res != -libc::ECANCELED {
                    // The poll failed: the socket's own calls say why.
                    conn.readable = true;
                    conn.writable = true;
                }
            }
            k if k >= K_CHANNEL0 && k < K_CHANNEL0 + MAX_CHANNELS as u64 => {
                let i = (k - K_CHANNEL0) as usize;
                if entry.chan_polls[i].0 != data {
                    return;
                }
                if !more {
                    entry.chan_polls[i] = (0, 0);
                }
                if res >= 0 {
                    entry.conn.set_channel_ready(i);
                }
            }
            _ => return,
        }
        if !entry.closing {
            self.touched.push(slot);
        }
    }

    fn accepted(&mut self, i: usize, res: i32, more: bool, now: Instant) {
        if !more {
            self.accepting[i] = false;
            if self.draining {
                // The accept was cancelled. The kernel wakes one waiting
                // accept per arriving connection, and a wake-up that came
                // to this one as it was cancelled is lost to the others
                // (a successor's accept on the same listener): what waits
                // in the queue now is taken and served here.
                self.accept_ready(i, now);
            }
        }
        if res >= 0 {
            AcceptPause::resumed();
            // SAFETY: the kernel accepted this descriptor for us; it is ours.
            let socket = unsafe { socket2::Socket::from_raw_fd(res) };
            // Served even while draining: it was taken off the shared queue
            // before the accept was cancelled, so no one else will.
            if let Ok(accepted) = self.listeners.adopt(i, socket) {
                self.admit(accepted, now);
            }
        } else {
            let errno = -res;
            match errno {
                libc::ECANCELED => return,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    AcceptPause::exhausted(&io::Error::from_raw_os_error(errno));
                    self.accept_paused_until = Some(now + EXHAUSTED_BACKOFF);
                    if more {
                        // Stop accepting until the back-off has passed.
                        self.cancel(ud(K_ACCEPT, 0, i));
                    }
                    return;
                }
                libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EAGAIN | libc::EINTR => {}
                _ => crate::log::warn(format_args!(
                    "accept: {}",
                    io::Error::from_raw_os_error(errno)
                )),
            }
        }
        if !more && !self.draining && self.accept_paused_until.is_none() {
            self.arm_accept(i);
        }
    }

    /// A polled listener (a hand-off socket) is readable: accept what waits.
    fn accept_ready(&mut self, i: usize, now: Instant) {
        for _ in 0..128 {
            match self.listeners.accept(i, true) {
                Ok(accepted) => {
                    AcceptPause::resumed();
                    self.admit(accepted, now);
                }
                Err(AcceptError::Gone) => {}
                Err(AcceptError::WouldBlock) => return,
                Err(AcceptError::Exhausted(e)) => {
                    AcceptPause::exhausted(&e);
                    self.accept_paused_until = Some(now + EXHAUSTED_BACKOFF);
                    return;
                }
                Err(AcceptError::Other(e)) => {
                    crate::log::warn(format_args!("accept: {e}"));
                    return;
                }
            }
        }
    }

    fn admit(&mut self, accepted: Accepted, now: Instant) {
        match self.ctx.admit(accepted.peer.ip()) {
            Some(ticket) => self.add(accepted, ticket, now),
            None => self.ctx.refuse(accepted),
        }
    }

    fn add(&mut self, accepted: Accepted, ticket: Ticket, now: Instant) {
        let mut conn = Connection::accept(accepted, &self.ctx.protocol, false, Some(ticket), now);
        conn.use_ring();
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        self.next_gen += 1;
        let gen = self.next_gen;
        if conn.wants_waker() {
            conn.set_waker(crate::session::Waker::new(Arc::new(SlotWake {
                list: Arc::clone(&self.wakes),
                slot,
                gen,
                queued: Arc::new(AtomicBool::new(false)),
            })));
        }
        self.entries[slot] = Some(Entry {
            conn: Box::new(conn),
            gen,
            recv: 0,
            recv_arms: 0,
            recv_ending: 0,
            ctrl_poll: 0,
            pollout_armed: false,
            urgent_armed: false,
            chan_polls: [(0, 0); MAX_CHANNELS],
            service_poll: None,
            queued: false,
            computing: false,
            closing: false,
        });
        self.live += 1;
        self.serve(slot, now);
    }

    fn serve_touched(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &slot in &touched {
            self.serve(slot, now);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Lets the connection in `slot` run, then brings its operations up to
    /// date with what it wants.
    fn serve(&mut self, slot: usize, now: Instant) {
        let env = self.ctx.env(now);
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        if entry.closing {
            return;
        }
        let conn = &mut entry.conn;
        let scratch = &mut self.scratch;
        let status = catch_unwind(AssertUnwindSafe(|| conn.process(env, scratch)));
        self.ctx.count_requests(conn.take_finished_requests());
        match status {
            Ok(Status::Open) => self.after(slot),
            Ok(Status::Closed) => self.close(slot),
            Err(_) => {
                crate::log::warn(format_args!("a session panicked; its connection is closed"));
                self.close(slot);
            }
        }
    }

    fn after(&mut self, slot: usize) {
        let mut sqes: [Option<squeue::Entry>; 4] = Default::default();
        let mut cancels: [u64; 3 + MAX_CHANNELS] = [0; 3 + MAX_CHANNELS];
        let mut extra: Vec<squeue::Entry> = Vec::new();
        let mut work = None;
        {
            let Some(Some(entry)) = self.entries.get_mut(slot) else {
                return;
            };
            let tag = entry.gen;
            let conn = &mut entry.conn;
            let fd = Fd(conn.stream().as_raw_fd());
            if let Some(w) = conn.take_work() {
                entry.computing = true;
                work = Some((entry.gen, w));
            }
            // Channel sockets replaced or closed: their polls go first.
            let mut seen = [false; MAX_CHANNELS];
            for (i, c) in conn.channels() {
                seen[i] = true;
                if entry.chan_polls[i].1 != c.serial && c.watched() {
                    if entry.chan_polls[i].0 != 0 {
                        cancels[i] = entry.chan_polls[i].0;
                    }
                    let data = ud(K_CHANNEL0 + i as u64, tag ^ (c.serial << 12), slot);
                    extra.push(
                        opcode::PollAdd::new(Fd(c.fd()), POLL_RW)
                            .multi(true)
                            .build()
                            .user_data(data),
                    );
                    entry.chan_polls[i] = (data, c.serial);
                }
            }
            for (i, poll) in entry.chan_polls.iter_mut().enumerate() {
                if !seen[i] && poll.0 != 0 {
                    cancels[i] = poll.0;
                    *poll = (0, 0);
                }
            }
            match (conn.service_fd(), entry.service_poll) {
                (Some(sfd), Some((armed, _))) if sfd == armed => {}
                (Some(sfd), old) => {
                    if let Some((_, data)) = old {
                        cancels[MAX_CHANNELS] = data;
                    }
                    let data = ud(K_SERVICE, tag ^ ((sfd as u64) << 12), slot);
                    extra.push(
                        opcode::PollAdd::new(Fd(sfd), POLL_RW)
                            .multi(true)
                            .build()
                            .user_data(data),
                    );
                    entry.service_poll = Some((sfd, data));
                }
                (None, Some((_, data))) => {
                    cancels[MAX_CHANNELS] = data;
                    entry.service_poll = None;
                }
                (None, None) => {}
            }
            // Urgent data matters only while a transfer runs (FTP's ABOR);
            // a relayed stream's control poll watches POLLPRI itself.
            let want_urgent = conn.has_channels();
            if want_urgent && !entry.urgent_armed {
                entry.urgent_armed = true;
                // With POLLIN: the kernel's wake-up for urgent data says
                // "readable", and a poll for POLLPRI alone ignores it.
                sqes[0] = Some(
                    opcode::PollAdd::new(fd, (libc::POLLPRI | libc::POLLIN) as u32)
                        .multi(true)
                        .build()
                        .user_data(ud(K_URGENT, tag, slot)),
                );
            } else if !want_urgent && entry.urgent_armed {
                entry.urgent_armed = false;
                cancels[MAX_CHANNELS + 2] = ud(K_URGENT, tag, slot);
            }
            let want_receive = conn.wants_receive();
            if entry.recv == 0 && want_receive {
                entry.recv_arms += 1;
                entry.recv = recv_ud(tag, entry.recv_arms, slot);
                sqes[1] = Some(
                    opcode::RecvMulti::new(fd, BUFFER_GROUP)
                        .build()
                        .user_data(entry.recv),
                );
            } else if entry.recv != 0 && !want_receive {
                // The inbox is full (a client that sends without reading
                // the answers), or the connection is to be relayed: stop
                // receiving, so that its bytes wait in the kernel. What
                // the receive still delivers before the cancel lands goes
                // to the inbox.
                cancels[MAX_CHANNELS + 1] = entry.recv;
                entry.recv_ending = entry.recv;
                entry.recv = 0;
            }
            if conn.wants_relay()
                && entry.recv == 0
                && entry.recv_ending == 0
                && conn.leave_ring()
                && !entry.queued
            {
                // Out of completion mode, ready both ways until a call
                // says otherwise: run it again this turn.
                entry.queued = true;
                self.again.push_back(slot);
            }
            if !conn.uses_ring() && entry.ctrl_poll == 0 {
                entry.ctrl_poll = ud(K_CTRL, tag, slot);
                extra.push(
                    opcode::PollAdd::new(
                        fd,
                        (libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP | libc::POLLPRI) as u32,
                    )
                    .multi(true)
                    .build()
                    .user_data(entry.ctrl_poll),
                );
            }
            if let Some(out) = conn.take_outgoing() {
                // The bytes stay in the connection's send buffer, untouched
                // until the completion (or, if it closes meanwhile, kept
                // with the closing entry).
                let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
                sqes[2] = Some(
                    // MSG_WAITALL: the kernel goes on sending as the socket
                    // drains, and completes once everything is out (or the
                    // connection failed), rather than after each short send.
                    opcode::Send::new(fd, out.as_ptr(), len)
                        .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                        .build()
                        .user_data(ud(K_SEND, tag, slot)),
                );
            }
            if conn.take_pollout() && !entry.pollout_armed {
                entry.pollout_armed = true;
                sqes[3] = Some(
                    opcode::PollAdd::new(fd, libc::POLLOUT as u32)
                        .build()
                        .user_data(ud(K_POLLOUT, tag, slot)),
                );
            }
            if conn.has_more() && !entry.queued {
                entry.queued = true;
                self.again.push_back(slot);
            }
            if let Some(d) = conn.deadline() {
                self.timers.file(slot, d);
            }
            // The polls of retired sockets are cancelled below, in this
            // turn's submission; the kernel keeps its own reference to a
            // socket until then.
            conn.take_retired().for_each(drop);
        }
        for data in cancels.into_iter().filter(|&d| d != 0) {
            self.cancel(data);
        }
        for sqe in extra.into_iter().chain(sqes.into_iter().flatten()) {
            self.push(sqe);
        }
        if let Some((gen, w)) = work {
            self.start_compute(slot, gen, w);
        }
    }

    /// Hands the session in `slot` its computation's result (it answers
    /// in the next serve).
    fn give_computed(&mut self, slot: usize, result: Computed) {
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        entry.computing = false;
        let conn = &mut entry.conn;
        let now = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| conn.give_computed(result, now))).is_err() {
            return self.panicked(slot);
        }
        self.touched.push(slot);
    }

    /// The session in `slot` panicked outside [`Proactor::serve`]: its
    /// connection is closed, as there.
    fn panicked(&mut self, slot: usize) {
        crate::log::warn(format_args!("a session panicked; its connection is closed"));
        self.close(slot);
    }

    fn start_compute(&mut self, slot: usize, gen: u64, work: Work) {
        if self.compute.is_none() {
            match Compute::start(&self.wakes) {
                Ok(c) => self.compute = Some(c),
                Err(e) => {
                    crate::log::warn(format_args!(
                        "cannot start compute threads: {e}; computing on the loop"
                    ));
                    let result = work.run();
                    self.give_computed(slot, result);
                    return;
                }
            }
        }
        if let Some(c) = &self.compute {
            c.send(slot, gen, work);
        }
    }

    /// Ends the connection in `slot`: its operations are cancelled, and it
    /// goes now, or once the kernel is done with a send in flight.
    fn close(&mut self, slot: usize) {
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        let tag = entry.gen;
        // At most: the receive, the urgent poll, the write poll, the
        // readiness poll, the service's poll, the send, and one poll per
        // channel.
        let mut cancels = [0u64; 6 + MAX_CHANNELS];
        let mut n = 0;
        let mut add = |data: u64| {
            cancels[n] = data;
            n += 1;
        };
        if entry.recv != 0 {
            add(entry.recv);
        }
        if entry.urgent_armed {
            add(ud(K_URGENT, tag, slot));
        }
        if entry.pollout_armed {
            add(ud(K_POLLOUT, tag, slot));
        }
        if entry.ctrl_poll != 0 {
            add(entry.ctrl_poll);
        }
        for &(data, _) in &entry.chan_polls {
            if data != 0 {
                add(data);
            }
        }
        if let Some((_, data)) = entry.service_poll {
            add(data);
        }
        let sending = entry.conn.sending();
        if sending {
            add(ud(K_SEND, tag, slot));
            entry.closing = true;
        }
        for &data in &cancels[..n] {
            self.cancel(data);
        }
        if !sending {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.entries[slot].take().is_some() {
            self.timers.cancel(slot);
            self.free.push(slot);
            self.live -= 1;
        }
    }

    fn serve_again(&mut self, now: Instant) {
        for _ in 0..self.again.len() {
            let Some(slot) = self.again.pop_front() else {
                break;
            };
            if let Some(Some(entry)) = self.entries.get_mut(slot) {
                entry.queued = false;
                self.serve(slot, now);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.take_due(now, &mut due);
        for &slot in &due {
            self.serve(slot, now);
        }
        due.clear();
        self.due = due;
    }

    fn take_wakes(&mut self) {
        let woken = std::mem::take(&mut *self.wakes.slots.lock().expect("wake list lock"));
        for (slot, gen, queued) in woken {
            queued.store(false, AtomicOrdering::Release);
            if let Some(Some(entry)) = self.entries.get_mut(slot) {
                if entry.gen == gen && !entry.closing {
                    entry.conn.woken = true;
                    self.touched.push(slot);
                }
            }
        }
        let computed = std::mem::take(&mut *self.wakes.computed.lock().expect("wake list lock"));
        for (slot, gen, result) in computed {
            let Some(Some(entry)) = self.entries.get_mut(slot) else {
                continue;
            };
            if entry.gen != gen || entry.closing {
                continue;
            }
            entry.computing = false;
            match result {
                Some(result) => self.give_computed(slot, result),
                None => {
                    crate::log::warn(format_args!(
                        "a session's computation panicked; its connection is closed"
                    ));
                    self.close(slot);
                }
            }
        }
    }

    fn start_drain(&mut self, now: Instant) {
        self.draining = true;
        for i in 0..self.listeners.len() {
            if self.accepting[i] {
                let kind = if self.listeners.is_socket(i) {
                    K_ACCEPT
                } else {
                    K_LISTEN_POLL
                };
                // `accepting[i]` stays set until the accept's last
                // completion says it ended.
                self.cancel(ud(kind, 0, i));
            }
        }
        for slot in 0..self.entries.len() {
            self.serve(slot, now);
        }
    }
}

#[cfg(all(test, not(uring_unavailable)))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// What one receive completion carried: its bytes and whether the
    /// kernel goes on filling the same buffer.
    fn receive(ring: &mut IoUring, bufs: &mut BufRing) -> (Vec<u8>, bool) {
        ring.submit_and_wait(1).unwrap();
        let cqe = ring.completion().next().expect("a completion");
        assert!(cqe.result() > 0, "receive failed: {}", cqe.result());
        let bid = cqueue::buffer_select(cqe.flags()).expect("a buffer");
        let bytes = bufs.take(bid, cqe.result() as usize).to_vec();
        let more = cqueue::buffer_more(cqe.flags());
        bufs.done_with(bid, cqe.flags());
        (bytes, more)
    }

    /// Messages received one after another into a ring of `count` buffers
    /// come out whole and in order, and every buffer is handed back when
    /// the kernel is done with it: more messages than buffers go through.
    fn messages_go_through(count: u16, flags: u16) {
        let mut ring = IoUring::new(64).unwrap();
        let mut bufs = BufRing::with(&ring, count, flags).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        let recv = opcode::RecvMulti::new(Fd(server.as_raw_fd()), BUFFER_GROUP)
            .build()
            .user_data(1);
        // SAFETY: the socket outlives the ring's use of it (both end here).
        unsafe { ring.submission().push(&recv).unwrap() };
        let mut incremental = false;
        for i in 0..usize::from(count) * 3 {
            let message = format!("message {i} ").repeat(i % 7 + 1);
            client.write_all(message.as_bytes()).unwrap();
            let (bytes, more) = receive(&mut ring, &mut bufs);
            assert_eq!(bytes, message.as_bytes(), "message {i}");
            incremental |= more;
        }
        // Incremental consumption fills one buffer with many messages.
        assert_eq!(incremental, flags == IOU_PBUF_RING_INC);
    }

    #[test]
    fn a_ring_consumed_incrementally_hands_out_each_message_once() {
        messages_go_through(4, IOU_PBUF_RING_INC);
    }

    #[test]
    fn a_ring_of_whole_buffers_hands_out_each_message_once() {
        messages_go_through(4, 0);
    }

    /// A buffer filled to its end by one receive, then the next receive:
    /// nothing is read past a buffer's end, nothing is lost.
    #[test]
    fn a_receive_larger_than_a_buffer_spans_buffers() {
        let mut ring = IoUring::new(64).unwrap();
        let mut bufs = BufRing::with(&ring, 4, IOU_PBUF_RING_INC).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        let recv = opcode::RecvMulti::new(Fd(server.as_raw_fd()), BUFFER_GROUP)
            .build()
            .user_data(1);
        // SAFETY: as above.
        unsafe { ring.submission().push(&recv).unwrap() };
        let sent: Vec<u8> = (0..BUFFER_SIZE * 2 + 100)
            .map(|i| (i % 251) as u8)
            .collect();
        let writer = std::thread::spawn(move || client.write_all(&sent).map(|()| sent));
        let mut got = Vec::new();
        while got.len() < BUFFER_SIZE * 2 + 100 {
            got.extend(receive(&mut ring, &mut bufs).0);
        }
        assert_eq!(got, writer.join().unwrap().unwrap());
    }
}
