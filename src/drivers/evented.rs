//! The evented driver: many sessions on one epoll loop (mio), never
//! blocking. Used by `reactor`, `prefork-reactor`, `multi-reactor` (one per
//! thread or process) and `reactor-pool` (with [`Offload`]).
//!
//! One turn of the loop: wait for readiness or the nearest timer; record
//! each event's readiness on its connection; then let each connection that
//! got some move bytes until it would block (once, however many of its
//! sockets were ready: an FTP session whose `RETR` and data connection
//! arrive together sends `150`, the file and `226` in one go); accept until
//! the listener would block; fire due timers. Every socket is registered
//! once, edge-triggered, for both directions, so steady-state traffic costs
//! no `epoll_ctl` at all: a request/response is one `epoll_wait`, one `read`
//! and one `write`.
//!
//! A session that asks for a slow computation (`Request::Compute`: an FTP
//! password check) is handed, connection and all, to pool threads started
//! on first need, as `reactor-pool` hands every session; the loop serves
//! the other clients meanwhile and takes the connection back when done.
//!
//! Tokens name `(slot, sub)`: sub 0 is the control socket, sub `1 + i` the
//! session's side channel `i`, and the last sub its service stream. Only
//! this loop changes registrations.
//!
//! A session's [`Waker`](crate::session::Waker) puts its slot on the
//! loop's wake list and wakes the loop through its one `mio::Waker` (shared
//! with the pool's hand-backs), at most once until the loop has looked.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::drivers::conn::{Connection, Status};
use crate::drivers::{earliest, wait_for, with_scratch, Ctx, Heartbeat, Timers, SCRATCH_SIZE};
use crate::net::{AcceptError, AcceptPause, Accepted, Listeners, EXHAUSTED_BACKOFF};
use crate::scoreboard::Ticket;
use crate::session::MAX_CHANNELS;

/// The longest the loop sleeps without updating its heartbeat.
pub const TICK: Duration = Duration::from_secs(1);

/// Accepts per listener event before the loop serves its connections again,
/// so that a connection storm cannot starve established clients.
const ACCEPT_BATCH: usize = 128;

const SUBS: usize = 2 + MAX_CHANNELS;
const SERVICE_SUB: usize = 1 + MAX_CHANNELS;
const SHUTDOWN: Token = Token(usize::MAX);
/// The loop's `mio::Waker`: pool hand-backs and session wakes.
const POOL: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 2;

// Readiness recorded on an entry while its connection is away on the pool.
const READ: u32 = 1;
const WRITE: u32 = 2;
const URGENT: u32 = 4;
const WAKE: u32 = 8;
const PEER_CLOSED: u32 = 16;
const CHANNEL0: u32 = 32;
const SERVICE_READ: u32 = 1 << 12;
const SERVICE_WRITE: u32 = 1 << 13;
const WOKEN: u32 = 1 << 14;

struct Entry {
    /// `None` while the connection is on the pool.
    conn: Option<Box<Connection>>,
    gen: u64,
    /// The serial of the socket registered for each channel slot (0: none).
    regs: [u64; MAX_CHANNELS],
    /// The service stream's socket, once registered.
    service_reg: Option<std::os::fd::RawFd>,
    /// Readiness not yet given to the connection.
    pending: u32,
    queued: bool,
}

/// A reactor: one epoll set, its connections and its timers.
pub struct Reactor<'a> {
    poll: Poll,
    ctx: Ctx,
    listeners: &'a Listeners,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
    next_gen: u64,
    timers: Timers,
    /// Slots to process again without waiting (a transfer spent its budget).
    again: VecDeque<usize>,
    /// Slots given readiness by this turn's events, served once all the
    /// events are recorded: a connection whose control socket and data
    /// connection are both ready runs once and sees both.
    touched: Vec<usize>,
    /// Set while the connections with events are served: each reads and
    /// answers, but its output waits (its slot in `held`) until all have,
    /// then goes out in one pass. Sending wakes a client; woken while the
    /// loop still has reading to do, clients on the loop's CPU preempt it
    /// in the middle of its turn (measured with kv `getset` under
    /// `reactor`: 27,000 involuntary context switches a second, 6,500 with
    /// the output held; p99 1.41 ms, 636 us held). Redis writes its
    /// replies after reading the same way (`handleClientsWithPendingWrites`).
    holding: bool,
    held: Vec<usize>,
    /// Timers due this turn (kept to reuse its allocation).
    due: Vec<usize>,
    scratch: Vec<u8>,
    accept_paused_until: Option<Instant>,
    listeners_pending: bool,
    draining: bool,
    /// Pool threads: every session's work (`reactor-pool`), or, started on
    /// first need, the computations sessions ask for ([`Request::Compute`],
    /// such as a password check), which must not stall the loop.
    offload: Option<Offload>,
    /// Whether every session runs on the pool (`reactor-pool`).
    offload_all: bool,
    /// The loop's `mio::Waker` (mio allows one per `Poll`), made on first
    /// need.
    waker: Option<Arc<Waker>>,
    /// The slots whose sessions were woken, shared with their wakers.
    wakes: Option<Arc<WakeList>>,
}

/// The slots woken since the loop last looked, and how to wake the loop.
/// Each session is on the list at most once (its `queued` flag), so the
/// list never holds more entries than the loop has sessions, however often
/// they are woken between two looks.
struct WakeList {
    slots: Mutex<Vec<(usize, u64, Arc<AtomicBool>)>>,
    waker: Arc<Waker>,
}

/// One session's [`Wake`](crate::session::Wake): its slot and generation
/// (a wake for a slot since reused is dropped by the generation check).
struct SlotWake {
    list: Arc<WakeList>,
    slot: usize,
    gen: u64,
    /// On the list now, not yet taken by the loop.
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
            let _ = self.list.waker.wake();
        }
    }
}

fn token(slot: usize, sub: usize) -> Token {
    Token(slot * SUBS + sub)
}

impl<'a> Reactor<'a> {
    /// A reactor over `listeners` (registered here, so several reactors may
    /// share them). With `pool_threads > 0`, sessions run on that many pool
    /// threads instead of on the loop (`reactor-pool`).
    pub fn new(listeners: &'a Listeners, ctx: Ctx, pool_threads: usize) -> io::Result<Reactor<'a>> {
        let poll = Poll::new()?;
        for (i, l) in listeners.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&l.as_raw_fd()),
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
        }
        poll.registry().register(
            &mut SourceFd(&ctx.shutdown.wake_fd()),
            SHUTDOWN,
            Interest::READABLE,
        )?;
        let (offload, waker) = if pool_threads > 0 {
            let waker = Arc::new(Waker::new(poll.registry(), POOL)?);
            let offload = Offload::start("pool", pool_threads, &ctx, Arc::clone(&waker))?;
            (Some(offload), Some(waker))
        } else {
            (None, None)
        };
        Ok(Reactor {
            poll,
            ctx,
            listeners,
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_gen: 0,
            timers: Timers::default(),
            again: VecDeque::new(),
            touched: Vec::new(),
            holding: false,
            held: Vec::new(),
            due: Vec::new(),
            scratch: vec![0; SCRATCH_SIZE],
            accept_paused_until: None,
            listeners_pending: false,
            draining: false,
            offload_all: offload.is_some(),
            offload,
            waker,
            wakes: None,
        })
    }

    /// The loop's waker, made on first need.
    fn waker(&mut self) -> io::Result<Arc<Waker>> {
        if let Some(w) = &self.waker {
            return Ok(Arc::clone(w));
        }
        let w = Arc::new(Waker::new(self.poll.registry(), POOL)?);
        self.waker = Some(Arc::clone(&w));
        Ok(w)
    }

    /// A waker for the session in `slot`.
    fn session_waker(&mut self, slot: usize, gen: u64) -> io::Result<crate::session::Waker> {
        let list = match &self.wakes {
            Some(l) => Arc::clone(l),
            None => {
                let l = Arc::new(WakeList {
                    slots: Mutex::new(Vec::new()),
                    waker: self.waker()?,
                });
                self.wakes = Some(Arc::clone(&l));
                l
            }
        };
        Ok(crate::session::Waker::new(Arc::new(SlotWake {
            list,
            slot,
            gen,
            queued: Arc::new(AtomicBool::new(false)),
        })))
    }

    /// Marks every session woken since the last look.
    fn take_wakes(&mut self) {
        let Some(list) = &self.wakes else { return };
        let woken = std::mem::take(&mut *list.slots.lock().expect("wake list lock"));
        for (slot, gen, queued) in woken {
            // Cleared before the session runs: a wake from now on queues it
            // again.
            queued.store(false, AtomicOrdering::Release);
            if let Some(Some(entry)) = self.entries.get_mut(slot) {
                if entry.gen == gen {
                    entry.pending |= WOKEN;
                    self.touched.push(slot);
                }
            }
        }
    }

    /// Runs until shutdown has drained every connection or its deadline
    /// passed. Connections still open then are closed when the reactor drops.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut heartbeat = Heartbeat::new();
        self.ctx.ready();
        loop {
            let now = Instant::now();
            if self.ctx.shutdown.is_draining() {
                if !self.draining {
                    self.start_drain(now);
                }
                if self.live == 0 {
                    return Ok(());
                }
                if self.ctx.shutdown.is_expired(now) {
                    // Connections away on the pool are dropped with it.
                    for conn in self
                        .entries
                        .iter_mut()
                        .flatten()
                        .filter_map(|e| e.conn.as_mut())
                    {
                        conn.last_words(now);
                    }
                    return Ok(());
                }
            }
            let timeout = if !self.again.is_empty() || self.listeners_pending {
                Duration::ZERO
            } else {
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
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                self.dispatch(event, now);
            }
            self.holding = true;
            self.serve_touched(now);
            self.holding = false;
            self.flush_held(now);
            self.serve_again(now);
            self.fire_timers(now);
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.listeners_pending = true;
            }
            if self.listeners_pending && self.accept_paused_until.is_none() && !self.draining {
                self.listeners_pending = false;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            heartbeat.beat(&self.ctx, now);
        }
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        match event.token() {
            SHUTDOWN => {}
            POOL => {
                self.take_back_from_pool(now);
                self.take_wakes();
            }
            Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                if self.draining {
                    return;
                }
                if self.accept_paused_until.is_some() {
                    self.listeners_pending = true;
                    return;
                }
                self.accept(LISTENER_BASE - t, now);
            }
            Token(t) => {
                let (slot, sub) = (t / SUBS, t % SUBS);
                let Some(Some(entry)) = self.entries.get_mut(slot) else {
                    return;
                };
                let mut bits = 0;
                if sub == 0 {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        bits |= READ;
                    }
                    if event.is_read_closed() || event.is_error() {
                        bits |= PEER_CLOSED;
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        bits |= WRITE;
                    }
                    if event.is_priority() {
                        bits |= URGENT;
                    }
                } else if sub == SERVICE_SUB {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        bits |= SERVICE_READ;
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        bits |= SERVICE_WRITE;
                    }
                } else {
                    bits |= CHANNEL0 << (sub - 1);
                }
                entry.pending |= bits;
                self.touched.push(slot);
            }
        }
    }

    fn serve_touched(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        for &slot in &touched {
            // A slot touched twice was served the first time (its readiness
            // taken); one that is away on the pool keeps it for its return.
            let pending = matches!(
                self.entries.get(slot),
                Some(Some(e)) if e.pending != 0 && e.conn.is_some()
            );
            if pending {
                self.serve(slot, now);
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// Sends what the connections served while `holding` held back.
    /// Most connections only send here ([`Connection::send_held`]); the
    /// others get a full pass.
    fn flush_held(&mut self, now: Instant) {
        let mut held = std::mem::take(&mut self.held);
        for &slot in &held {
            let Some(Some(entry)) = self.entries.get_mut(slot) else {
                continue;
            };
            let Some(conn) = entry.conn.as_mut() else {
                continue;
            };
            if entry.pending == 0 && !self.offload_all {
                let env = self.ctx.env(now);
                let full = catch_unwind(AssertUnwindSafe(|| conn.send_held(env)));
                self.ctx.count_requests(conn.take_finished_requests());
                match full {
                    Ok(true) => {}
                    Ok(false) => {
                        // Sending may have moved its deadline (an idle
                        // one, earlier than a request's): the heap keeps
                        // the earliest.
                        if let Some(d) = conn.deadline() {
                            self.timers.file(slot, d);
                        }
                        continue;
                    }
                    Err(_) => {
                        crate::log::warn(format_args!(
                            "a session panicked; its connection is closed"
                        ));
                        self.remove(slot);
                        continue;
                    }
                }
            }
            self.serve(slot, now);
        }
        held.clear();
        self.held = held;
    }

    fn accept(&mut self, i: usize, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            // The drain may have begun in this very turn (the connection
            // just accepted and served was this worker's last answer under
            // --max-requests): what waits in the queue is a successor's.
            // The loop stops listening at its next look.
            if self.ctx.shutdown.is_draining() {
                return;
            }
            match self.listeners.accept(i, true) {
                Ok(accepted) => {
                    AcceptPause::resumed();
                    match self.ctx.admit(accepted.peer.ip()) {
                        Some(ticket) => self.add(accepted, ticket, now),
                        None => self.ctx.refuse(accepted),
                    }
                }
                Err(AcceptError::Gone) => {}
                Err(AcceptError::WouldBlock) => {
                    AcceptPause::resumed();
                    return;
                }
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
        // Still more waiting: come back after serving the others.
        self.listeners_pending = true;
    }

    fn add(&mut self, accepted: Accepted, ticket: Ticket, now: Instant) {
        let fd = accepted.stream.as_raw_fd();
        let mut conn = Connection::accept(accepted, &self.ctx.protocol, false, Some(ticket), now);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), token(slot, 0), interest)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        self.next_gen += 1;
        if conn.wants_waker() {
            match self.session_waker(slot, self.next_gen) {
                Ok(waker) => conn.set_waker(waker),
                Err(e) => {
                    crate::log::warn(format_args!("cannot make a waker: {e}"));
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    self.free.push(slot);
                    return;
                }
            }
        }
        self.entries[slot] = Some(Entry {
            conn: Some(Box::new(conn)),
            gen: self.next_gen,
            regs: [0; MAX_CHANNELS],
            service_reg: None,
            pending: WAKE,
            queued: false,
        });
        self.live += 1;
        self.serve(slot, now);
    }

    /// Gives the connection in `slot` its recorded readiness and lets it run,
    /// here or on the pool.
    fn serve(&mut self, slot: usize, now: Instant) {
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        let Some(conn) = entry.conn.as_mut() else {
            // On the pool: the readiness waits in `pending` for its return.
            return;
        };
        let bits = std::mem::take(&mut entry.pending);
        conn.readable |= bits & READ != 0;
        conn.writable |= bits & WRITE != 0;
        conn.urgent |= bits & URGENT != 0;
        conn.peer_closed |= bits & PEER_CLOSED != 0;
        for i in 0..MAX_CHANNELS {
            if bits & (CHANNEL0 << i) != 0 {
                conn.set_channel_ready(i);
            }
        }
        conn.woken |= bits & WOKEN != 0;
        if let Some(link) = conn.service_mut() {
            link.readable |= bits & SERVICE_READ != 0;
            link.writable |= bits & SERVICE_WRITE != 0;
        }
        let env = self.ctx.env(now);
        if let (true, Some(offload)) = (self.offload_all, &self.offload) {
            let conn = entry.conn.take().expect("checked above");
            offload.send(Job {
                slot,
                gen: entry.gen,
                conn,
            });
            return;
        }
        let scratch = &mut self.scratch;
        conn.hold_output = self.holding;
        let status = catch_unwind(AssertUnwindSafe(|| conn.process(env, scratch)));
        let held = conn.holds_output();
        conn.hold_output = false;
        self.ctx.count_requests(conn.take_finished_requests());
        if held && matches!(status, Ok(Status::Open)) {
            self.held.push(slot);
        }
        match status {
            Ok(Status::Open) => self.after(slot),
            Ok(Status::Closed) => self.remove(slot),
            Err(_) => {
                crate::log::warn(format_args!("a session panicked; its connection is closed"));
                self.remove(slot);
            }
        }
    }

    /// Brings registrations, the again-queue and the timer heap up to date
    /// with what the connection in `slot` now wants.
    fn after(&mut self, slot: usize) {
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        let Some(conn) = entry.conn.as_mut() else {
            return;
        };
        if conn.has_work() {
            // Registrations and timers are brought up to date when it
            // comes back.
            return self.compute_on_pool(slot);
        }
        conn.take_retired().for_each(drop);
        let mut seen = [false; MAX_CHANNELS];
        for (i, c) in conn.channels() {
            seen[i] = true;
            if entry.regs[i] != c.serial && c.watched() {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&c.fd()), token(slot, 1 + i), interest)
                    .is_ok()
                {
                    entry.regs[i] = c.serial;
                }
            }
        }
        for (i, reg) in entry.regs.iter_mut().enumerate() {
            if !seen[i] {
                *reg = 0;
            }
        }
        match conn.service_fd() {
            Some(fd) if entry.service_reg != Some(fd) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&fd), token(slot, SERVICE_SUB), interest)
                    .is_ok()
                {
                    entry.service_reg = Some(fd);
                }
            }
            Some(_) => {}
            // Closed: its registration went with the descriptor.
            None => entry.service_reg = None,
        }
        if conn.has_more() && !entry.queued {
            entry.queued = true;
            self.again.push_back(slot);
        }
        if let Some(d) = conn.deadline() {
            self.timers.file(slot, d);
        }
    }

    /// Hands the connection in `slot`, which waits for a computation, to
    /// the pool (started now if this reactor has none): the pool thread runs
    /// the computation and the session's answer to it, and hands the
    /// connection back. If no thread can be started, the computation runs
    /// here: slow for the other clients, but served.
    fn compute_on_pool(&mut self, slot: usize) {
        if self.offload.is_none() {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let ctx = self.ctx.clone();
            let started = self
                .waker()
                .and_then(|waker| Offload::start("compute", threads, &ctx, waker));
            match started {
                Ok(offload) => self.offload = Some(offload),
                Err(e) => crate::log::warn(format_args!(
                    "cannot start compute threads: {e}; computing on the event loop"
                )),
            }
        }
        let Some(Some(entry)) = self.entries.get_mut(slot) else {
            return;
        };
        match &self.offload {
            Some(offload) => {
                let conn = entry.conn.take().expect("after() checked it is here");
                offload.send(Job {
                    slot,
                    gen: entry.gen,
                    conn,
                });
            }
            None => {
                let now = Instant::now();
                if let Some(conn) = entry.conn.as_mut() {
                    conn.run_work(now);
                }
                entry.pending |= WAKE;
                self.serve(slot, now);
            }
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
                entry.pending |= WAKE;
                self.serve(slot, now);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        // Take the due timers first, then serve them: a session whose
        // deadline stays in the past is served once per turn of the loop,
        // not forever within this one.
        let mut due = std::mem::take(&mut self.due);
        self.timers.take_due(now, &mut due);
        for &slot in &due {
            // The connection checks its own deadline; if it moved later
            // (new input), `after` files the new one.
            if let Some(Some(entry)) = self.entries.get_mut(slot) {
                entry.pending |= WAKE;
                self.serve(slot, now);
            }
        }
        due.clear();
        self.due = due;
    }

    fn start_drain(&mut self, now: Instant) {
        self.draining = true;
        for l in self.listeners.iter() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.as_raw_fd()));
        }
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&self.ctx.shutdown.wake_fd()));
        for slot in 0..self.entries.len() {
            if let Some(Some(entry)) = self.entries.get_mut(slot) {
                entry.pending |= WAKE;
                self.serve(slot, now);
            }
        }
    }

    fn take_back_from_pool(&mut self, now: Instant) {
        let Some(offload) = &self.offload else { return };
        let done = std::mem::take(&mut *offload.shared.done.lock().expect("pool lock"));
        for d in done {
            let Some(Some(entry)) = self.entries.get_mut(d.slot) else {
                continue;
            };
            if entry.gen != d.gen {
                continue;
            }
            match d.conn {
                None => self.remove(d.slot),
                Some(conn) => {
                    entry.conn = Some(conn);
                    self.after(d.slot);
                    let Some(Some(entry)) = self.entries.get_mut(d.slot) else {
                        continue;
                    };
                    if entry.pending != 0 {
                        self.serve(d.slot, now);
                    }
                }
            }
        }
    }
}

/// A connection handed to the pool, and handed back.
struct Job {
    slot: usize,
    gen: u64,
    conn: Box<Connection>,
}

struct Done {
    slot: usize,
    gen: u64,
    /// `None`: closed (or its session panicked) on the pool.
    conn: Option<Box<Connection>>,
}

struct PoolShared {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    done: Mutex<Vec<Done>>,
}

/// The thread pool of `reactor-pool`: the loop hands it connections that
/// have work; a pool thread runs the session (reading what is ready,
/// computing, writing the answer) and hands the connection back.
pub struct Offload {
    shared: Arc<PoolShared>,
}

impl Offload {
    fn start(name: &str, threads: usize, ctx: &Ctx, waker: Arc<Waker>) -> io::Result<Offload> {
        let shared = Arc::new(PoolShared {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            done: Mutex::new(Vec::new()),
        });
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            let waker = Arc::clone(&waker);
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || pool_thread(&shared, &waker, &ctx))?;
        }
        Ok(Offload { shared })
    }

    fn send(&self, job: Job) {
        self.shared.jobs.lock().expect("pool lock").push_back(job);
        self.shared.ready.notify_one();
    }
}

fn pool_thread(shared: &PoolShared, waker: &Waker, ctx: &Ctx) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().expect("pool lock");
            loop {
                if let Some(job) = jobs.pop_front() {
                    break job;
                }
                jobs = shared.ready.wait(jobs).expect("pool lock");
            }
        };
        let Job {
            slot,
            gen,
            mut conn,
        } = job;
        // A computation the session asked for runs first (this thread may
        // block), then the session goes on; if it asks for another, that
        // runs here too.
        let status = with_scratch(|scratch| {
            catch_unwind(AssertUnwindSafe(|| loop {
                conn.run_work(Instant::now());
                let status = conn.process(ctx.env(Instant::now()), scratch);
                ctx.count_requests(conn.take_finished_requests());
                if status == Status::Closed || !conn.has_work() {
                    break status;
                }
            }))
        });
        let conn = match status {
            Ok(Status::Open) => Some(conn),
            Ok(Status::Closed) => None,
            Err(_) => {
                crate::log::warn(format_args!(
                    "a session panicked on the pool; its connection is closed"
                ));
                None
            }
        };
        shared
            .done
            .lock()
            .expect("pool lock")
            .push(Done { slot, gen, conn });
        let _ = waker.wake();
    }
}
