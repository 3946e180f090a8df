//! One kv connection on a store in this process: requests in, replies out,
//! in order, and the state Redis keeps per client (selected database,
//! protocol version, authentication, name, `MULTI` queue, watched keys, a
//! blocked pop).
//!
//! Requests are parsed as they arrive ([`Parser`]) and run at once against
//! the [`Store`] under its lock; the reply goes to the output queue. While
//! [`MAX_OUTPUT`] bytes of replies are unsent the session runs nothing more
//! and, once the requests it already holds pass [`MAX_PENDING`], stops
//! reading: a client that pipelines without reading is slowed by
//! back-pressure, never by the server's memory. One request may be as
//! large as Redis allows ([`MAX_QUERY`]); past that the connection is
//! closed, as Redis closes it.
//!
//! A protocol error is answered with Redis's words and the connection is
//! closed after the reply. A blocked pop (`BLPOP`, `BRPOP`, `BLMOVE`,
//! `BRPOPLPUSH`) holds no thread: the session registers its waker on the
//! keys and answers when woken by a push (or at its timeout); the requests
//! behind it wait, as Redis's do.
//!
//! Memory: with `--maxmemory`, every command first asks the store to make
//! room ([`Store::make_room`], which evicts per the policy); if memory is
//! still over the limit with nothing to evict, commands that may grow it
//! are refused with Redis's OOM error (see [`KvSession::refused_for_memory`]).
//!
//! Time: the session reads no clock. Unix time is the calendar time the
//! driver gave at accept plus the monotonic time since, so a test can run a
//! session at any instant (expiry tests use a fake clock this way).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cmd::{self, is, parse_i64};
use super::engine::{parse_memory, Policy, DATABASES, MAX_SAMPLES};
use super::reply::{self, Reply};
use super::resp::{Parsed, Parser, MAX_BULK};
use super::store::{unix_ms, Inner, Room, Store};
use crate::session::{ConnInfo, OutQueue, Output, Session, Waker};

/// Reply bytes queued before the session runs nothing more.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Bytes of complete requests held (behind full output or a blocked pop)
/// before the session stops reading.
pub const MAX_PENDING: usize = 64 * 1024;

/// The largest request the session buffers: Redis's
/// `client-query-buffer-limit` (1 GiB). A bulk may be `MAX_BULK` (512 MB).
pub const MAX_QUERY: usize = 1 << 30;

/// How long a connection closing on a protocol error keeps reading and
/// dropping what its client still sends (the rest of an oversized request,
/// most often) once the error is out: closing with those bytes unread
/// would reset the connection, and the reset can destroy the error before
/// the client reads it.
pub const LINGER: Duration = Duration::from_secs(2);

/// The Redis version muse answers to (`HELLO`, `INFO`): the command set and
/// replies follow Redis 7.2, and clients choose features by it.
pub const REDIS_VERSION: &str = "7.2.0";

/// A pop waiting for a push.
#[derive(Debug)]
struct Blocked {
    /// The request, kept to be tried again.
    args: Vec<Vec<u8>>,
    /// The keys it waits on.
    keys: Vec<Vec<u8>>,
    db: usize,
    /// When it gives up (`None`: never).
    deadline: Option<Instant>,
}

/// A `MULTI` under way.
#[derive(Debug, Default)]
struct Multi {
    queued: Vec<Vec<Vec<u8>>>,
    /// A queued command was refused: `EXEC` aborts.
    failed: bool,
    /// A queued command may grow memory (Redis's `mstate.cmd_flags &
    /// CMD_DENYOOM`): `EXEC` is refused while memory is full.
    denyoom: bool,
}

/// Redis's reply to a command refused for memory.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Commands the session runs itself that may grow memory (Redis flags them
/// `denyoom`, as the table flags `LMOVE`).
const SESSION_DENYOOM: [(&str, usize); 2] = [("blmove", 6), ("brpoplpush", 4)];

/// Commands the session queues inside `MULTI` itself, or runs there.
const SESSION_QUEUED: [&str; 9] = [
    "ping",
    "echo",
    "select",
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "multi",
    "watch",
];

/// How a session ended up refusing input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Serving.
    No,
    /// Close once the output is flushed (QUIT, drain).
    AfterFlush,
    /// After a protocol error: read and drop what comes until the client
    /// closes or the instant passes, then close once the output is
    /// flushed.
    Lingering(Instant),
    /// Close now (the client never proved itself to the store).
    Now,
}

/// One kv connection.
pub struct KvSession {
    store: Arc<Store>,
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    /// Unix ms at `t0`.
    wall0: u64,
    t0: Instant,
    parser: Parser,
    input: Vec<u8>,
    out: OutQueue,
    resp3: bool,
    db: usize,
    authed: bool,
    name: Option<Vec<u8>>,
    multi: Option<Multi>,
    watches: Vec<(usize, Vec<u8>, u64)>,
    blocked: Option<Blocked>,
    waker: Option<Waker>,
    eof: bool,
    closing: Closing,
    draining: bool,
    /// Whether the client has sent a command: a drain closes a connection
    /// between commands, but lets a new one send its first (the client
    /// could not know the server was stopping when it connected).
    heard: bool,
    idle_timeout: Option<Duration>,
    last_active: Instant,
    /// A link from a forking server's worker must first say this line.
    secret: Option<Vec<u8>>,
    /// The last log record a request of this session wrote (0: none).
    logged: u64,
    /// Under `--fsync always`: the record the unsent replies wait for
    /// (0: nothing waits). Output is held until the log has synced it.
    awaiting: u64,
    /// The store's log, when replies wait for it.
    log: Option<super::aof::Aof>,
    /// Commands run since the driver last asked
    /// ([`Session::take_finished_requests`]): one reply each.
    finished: u32,
}

/// Under `--fsync everysec` and `no` a write is answered as soon as its
/// record is in the log's memory. When the log's writer falls this far
/// behind (a slow or failing disk), each writer's replies wait until its
/// records are written, as under `always`: the log's memory stays bounded,
/// and a client that writes faster than the disk is slowed to its pace
/// (Redis delays writes the same way when its fsync falls behind).
pub const MAX_LOG_BACKLOG: usize = 64 << 20;

impl KvSession {
    /// A session on `store`. With `secret`, the first line must be exactly
    /// it (a worker's link to the store process), or the connection is
    /// closed at once.
    pub fn new(
        store: Arc<Store>,
        info: &ConnInfo,
        idle_timeout: Option<Duration>,
        secret: Option<Vec<u8>>,
        now: Instant,
    ) -> KvSession {
        let id = store.new_client();
        let authed = store.config.requirepass.is_none();
        KvSession {
            store,
            id,
            peer: info.peer,
            local: info.local,
            wall0: unix_ms(info.wall),
            t0: now,
            parser: Parser::new(),
            input: Vec::new(),
            out: OutQueue::default(),
            resp3: false,
            db: 0,
            authed,
            name: None,
            multi: None,
            watches: Vec::new(),
            blocked: None,
            waker: None,
            eof: false,
            closing: Closing::No,
            draining: false,
            heard: false,
            idle_timeout,
            last_active: now,
            secret,
            logged: 0,
            awaiting: 0,
            log: None,
            finished: 0,
        }
    }

    /// Holds the output until the last record this session wrote is
    /// durable, and has the log's writer wake the session then: always
    /// under `--fsync always` (on the disk), and under `everysec` or `no`
    /// while the writer is more than [`MAX_LOG_BACKLOG`] behind (written
    /// to the kernel).
    fn hold_for_log(&mut self) {
        if self.logged <= self.awaiting {
            return;
        }
        if self.log.is_none() {
            let log = self.store.lock().log.clone();
            if log.is_none() {
                // No log: nothing ever to wait for.
                self.awaiting = u64::MAX;
                return;
            }
            self.log = log;
        }
        if self.log.as_ref().is_some_and(|l| {
            l.fsync() != super::aof::Fsync::Always && l.backlog() <= MAX_LOG_BACKLOG
        }) {
            self.logged = 0;
            return;
        }
        let (Some(log), Some(waker)) = (&self.log, &self.waker) else {
            return;
        };
        let seq = self.logged;
        self.awaiting = seq;
        if log.durable() >= seq {
            self.awaiting = 0;
            self.logged = 0;
            return;
        }
        let waker = waker.clone();
        log.when_durable(seq, Box::new(move || waker.wake()));
    }

    /// Whether the output waits for the log.
    fn held(&self) -> bool {
        self.awaiting != 0 && self.awaiting != u64::MAX
    }

    /// Releases the output once the log has what it waits for.
    fn check_log(&mut self) {
        if self.held()
            && self
                .log
                .as_ref()
                .is_some_and(|l| l.durable() >= self.awaiting)
        {
            if self.logged <= self.awaiting {
                self.logged = 0;
            }
            self.awaiting = 0;
        }
    }

    /// Unix milliseconds at `now`.
    fn unix_ms(&self, now: Instant) -> u64 {
        self.wall0 + now.saturating_duration_since(self.t0).as_millis() as u64
    }

    fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out.buf(), self.resp3)
    }

    /// Runs the requests held, in order, until one is incomplete, the output
    /// is full, a pop blocks, or the connection is to close.
    fn run(&mut self, now: Instant) {
        if let Some(secret) = &self.secret {
            let Some(nl) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > 256 {
                    self.closing = Closing::Now;
                }
                return;
            };
            let line = self.input[..nl]
                .strip_suffix(b"\r")
                .unwrap_or(&self.input[..nl]);
            // `SECRET PEER LOCAL`: the relay names its client, so that
            // `CLIENT LIST` and log lines show the real addresses.
            let mut words = line.split(|&b| b == b' ');
            if words.next() != Some(secret.as_slice()) {
                self.closing = Closing::Now;
                return;
            }
            let addr = |w: Option<&[u8]>| {
                w.and_then(|w| std::str::from_utf8(w).ok())
                    .and_then(|w| w.parse::<std::net::SocketAddr>().ok())
            };
            if let (Some(peer), Some(local)) = (addr(words.next()), addr(words.next())) {
                self.peer = peer;
                self.local = local;
            }
            self.input.drain(..=nl);
            self.secret = None;
        }
        let input = std::mem::take(&mut self.input);
        let mut parser = std::mem::take(&mut self.parser);
        let mut pos = 0;
        while self.closing == Closing::No && self.blocked.is_none() && self.out.len() < MAX_OUTPUT {
            let buf = &input[pos..];
            // Per command: an AUTH earlier in the same batch lifts them.
            parser.set_unauthenticated(!self.authed);
            match parser.parse(buf) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Empty { consumed }) => pos += consumed,
                Ok(Parsed::Command { consumed }) => {
                    let n = parser.len();
                    let mut stack: [&[u8]; 8] = [&[]; 8];
                    let heap: Vec<&[u8]>;
                    let argv: &[&[u8]] = if n <= stack.len() {
                        for (i, slot) in stack.iter_mut().enumerate().take(n) {
                            *slot = parser.arg(buf, i);
                        }
                        &stack[..n]
                    } else {
                        heap = (0..n).map(|i| parser.arg(buf, i)).collect();
                        &heap
                    };
                    self.execute(argv, now);
                    self.heard = true;
                    pos += consumed;
                }
                Err(e) => {
                    let msg = format!("ERR {}", e.message());
                    self.reply().error(&msg);
                    self.closing = if self.eof {
                        Closing::AfterFlush
                    } else {
                        Closing::Lingering(now + LINGER)
                    };
                    break;
                }
            }
        }
        self.parser = parser;
        self.input = input;
        self.input.drain(..pos);
        if let Closing::Lingering(_) = self.closing {
            // What follows a protocol error is never read.
            self.input = Vec::new();
        }
        if self.awaiting != u64::MAX {
            self.hold_for_log();
        }
        if self.input.len() > MAX_QUERY {
            crate::log::warn(format_args!(
                "closing kv client {} that reached the query buffer limit",
                self.peer
            ));
            self.closing = Closing::Now;
        }
        if self.draining && self.heard && self.input.is_empty() && self.blocked.is_none() {
            self.closing = Closing::AfterFlush;
        }
        if self.eof && self.blocked.is_none() && self.closing == Closing::No {
            // Everything the client sent before its end has been answered,
            // or waits only for output room.
            if self.out.len() < MAX_OUTPUT {
                self.closing = Closing::AfterFlush;
            }
        }
    }

    /// Runs one request.
    fn execute(&mut self, argv: &[&[u8]], now: Instant) {
        self.store.commands.fetch_add(1, Ordering::Relaxed);
        self.finished += 1;
        let name = argv[0];
        if !(self.authed || is(name, "auth") || is(name, "hello") || is(name, "quit")) {
            self.reply().error("NOAUTH Authentication required.");
            return;
        }
        if self.store.maxmemory() != 0 && self.refused_for_memory(argv, now) {
            return;
        }
        if self.multi.is_some()
            && !(is(name, "exec")
                || is(name, "discard")
                || is(name, "multi")
                || is(name, "watch")
                || is(name, "quit")
                || is(name, "reset"))
        {
            self.queue(argv);
            return;
        }
        // Lowercased on the stack: no allocation per command. A name too
        // long for any command here goes to the table, which says unknown.
        let mut buf = [0u8; 16];
        let lower = match buf.get_mut(..name.len()) {
            Some(lower) => {
                lower.copy_from_slice(name);
                lower.make_ascii_lowercase();
                std::str::from_utf8(lower).unwrap_or("")
            }
            None => "",
        };
        match lower {
            "ping" => self.ping(argv),
            "echo" => {
                if argv.len() != 2 {
                    return self.reply().wrong_arity(name);
                }
                self.reply().bulk(argv[1]);
            }
            "quit" => {
                self.reply().ok();
                self.closing = Closing::AfterFlush;
            }
            "hello" => self.hello(argv),
            "auth" => self.auth(argv),
            "select" => self.select(argv),
            "multi" => {
                if argv.len() != 1 {
                    return self.reply().wrong_arity(name);
                }
                if self.multi.is_some() {
                    return self.reply().error("ERR MULTI calls can not be nested");
                }
                self.multi = Some(Multi::default());
                self.reply().ok();
            }
            "exec" => self.exec(argv, now),
            "discard" => {
                if argv.len() != 1 {
                    return self.reply().wrong_arity(name);
                }
                if self.multi.take().is_none() {
                    return self.reply().error("ERR DISCARD without MULTI");
                }
                self.unwatch_all();
                self.reply().ok();
            }
            "watch" => self.watch(argv, now),
            "unwatch" => {
                if argv.len() != 1 {
                    return self.reply().wrong_arity(name);
                }
                self.unwatch_all();
                self.reply().ok();
            }
            "reset" => self.reset(),
            "client" => self.client(argv, now),
            "info" => self.info(argv),
            "config" => self.config(argv, now),
            "command" => self.command(argv),
            "time" => {
                let ms = self.unix_ms(now);
                let (secs, micros) = (ms / 1000, (ms % 1000) * 1000);
                let mut r = self.reply();
                r.array(2);
                r.bulk(secs.to_string().as_bytes());
                r.bulk(micros.to_string().as_bytes());
            }
            "lastsave" => {
                let t = self.store.started_unix() as i64;
                self.reply().int(t);
            }
            "bgrewriteaof" => {
                if argv.len() != 1 {
                    return self.reply().wrong_arity(name);
                }
                match super::store::start_rewrite(&self.store) {
                    Ok(()) => self
                        .reply()
                        .simple(b"Background append only file rewriting started"),
                    Err(e) => self.reply().error(&e.to_string()),
                }
            }
            "blpop" | "brpop" | "blmove" | "brpoplpush" => self.blocking_pop(argv, now),
            _ => self.run_table(argv, now),
        }
    }

    /// `--maxmemory`, before a command, as Redis's `processCommand` does
    /// it: has the store make room (evicting per the policy, whatever the
    /// command) and, if memory is still over the limit with nothing to
    /// evict, refuses a command that may grow memory with [`OOM`]. Inside
    /// `MULTI` every command but `EXEC`, `DISCARD`, `QUIT` and `RESET` is
    /// refused then (a queue grows memory too), which dooms the `EXEC`; an
    /// `EXEC` whose queue holds a command that may grow memory is aborted
    /// with `EXECABORT`. A command with an unknown name or the wrong number
    /// of arguments gets that error instead, as Redis checks those first.
    /// Returns whether it refused (and answered).
    fn refused_for_memory(&mut self, argv: &[&[u8]], now: Instant) -> bool {
        let name = argv[0];
        let guarded = match &self.multi {
            Some(m) if is(name, "exec") => m.denyoom,
            Some(_) if ["discard", "quit", "reset"].iter().any(|n| is(name, n)) => false,
            Some(_) => {
                SESSION_QUEUED.iter().any(|n| is(name, n))
                    || cmd::lookup(name).is_some_and(|c| c.arity_ok(argv.len()))
            }
            None => may_grow_memory(argv),
        };
        if self.store.make_room(self.unix_ms(now)) != Room::Full || !guarded {
            return false;
        }
        if is(name, "exec") {
            self.multi = None;
            self.unwatch_all();
            self.reply().error(&format!(
                "EXECABORT Transaction discarded because of: {OOM}"
            ));
        } else {
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            self.reply().error(OOM);
        }
        true
    }

    /// Runs a command of the table against the store.
    fn run_table(&mut self, argv: &[&[u8]], now: Instant) {
        let Some(command) = cmd::lookup(argv[0]) else {
            return self.unknown(argv);
        };
        if !command.arity_ok(argv.len()) {
            return self.reply().wrong_arity(argv[0]);
        }
        let now_ms = self.unix_ms(now);
        let store = Arc::clone(&self.store);
        let mut inner = store.lock();
        let done = cmd::run(
            &mut inner.engine,
            command,
            argv,
            self.db,
            now_ms,
            self.out.buf(),
            self.resp3,
        );
        if done.changed > 0 {
            let seq = log_change(&mut inner, self.db, argv, done.propagate.as_deref());
            self.logged = self.logged.max(seq);
        }
        inner.wake_ready();
    }

    fn unknown(&mut self, argv: &[&[u8]]) {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            truncate(argv[0], 128)
        );
        let mut room = 128usize;
        for a in &argv[1..] {
            if room == 0 {
                break;
            }
            let s = truncate(a, room);
            room = room.saturating_sub(s.len());
            msg.push_str(&format!("'{s}' "));
        }
        self.reply().error(&msg);
    }

    /// Queues a command inside `MULTI`, refusing (and dooming the `EXEC`)
    /// what would fail anyway.
    fn queue(&mut self, argv: &[&[u8]]) {
        let name = argv[0];
        let session_level = [
            "ping",
            "echo",
            "select",
            "blpop",
            "brpop",
            "blmove",
            "brpoplpush",
        ];
        let known = session_level.iter().any(|n| is(name, n));
        let problem = if known {
            None
        } else {
            match cmd::lookup(name) {
                None if [
                    "hello",
                    "auth",
                    "client",
                    "info",
                    "config",
                    "command",
                    "time",
                    "bgrewriteaof",
                ]
                .iter()
                .any(|n| is(name, n)) =>
                {
                    Some("ERR Command not allowed inside a transaction".to_string())
                }
                None => {
                    self.unknown(argv);
                    if let Some(m) = &mut self.multi {
                        m.failed = true;
                    }
                    return;
                }
                Some(c) if !c.arity_ok(argv.len()) => {
                    self.reply().wrong_arity(name);
                    if let Some(m) = &mut self.multi {
                        m.failed = true;
                    }
                    return;
                }
                Some(_) => None,
            }
        };
        if let Some(msg) = problem {
            self.reply().error(&msg);
            if let Some(m) = &mut self.multi {
                m.failed = true;
            }
            return;
        }
        let grows = may_grow_memory(argv);
        if let Some(m) = &mut self.multi {
            m.queued.push(cmd::owned(argv));
            m.denyoom |= grows;
        }
        self.reply().simple(b"QUEUED");
    }

    fn exec(&mut self, argv: &[&[u8]], now: Instant) {
        if argv.len() != 1 {
            return self.reply().wrong_arity(argv[0]);
        }
        let Some(multi) = self.multi.take() else {
            return self.reply().error("ERR EXEC without MULTI");
        };
        if multi.failed {
            self.unwatch_all();
            return self
                .reply()
                .error("EXECABORT Transaction discarded because of previous errors.");
        }
        let now_ms = self.unix_ms(now);
        let store = Arc::clone(&self.store);
        let mut inner = store.lock();
        let dirty = self
            .watches
            .iter()
            .any(|(db, key, v)| inner.engine.watched_version(*db, key) != Some(*v));
        // Expired watched keys count as changed, as in Redis.
        let expired = self.watches.iter().any(|(db, key, _)| {
            inner
                .engine
                .db(*db)
                .map
                .get(key.as_slice())
                .is_some_and(|e| e.expires().is_some_and(|t| t <= now_ms))
        });
        for (db, key, _) in std::mem::take(&mut self.watches) {
            inner.engine.unwatch(db, &key);
        }
        if dirty || expired {
            drop(inner);
            return self.reply().null_array();
        }
        self.reply().array(multi.queued.len());
        for args in &multi.queued {
            let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            self.execute_in_exec(&mut inner, &argv, now_ms);
        }
        inner.wake_ready();
    }

    /// Runs one queued command inside `EXEC`, the lock held.
    fn execute_in_exec(&mut self, inner: &mut Inner, argv: &[&[u8]], now_ms: u64) {
        let name = argv[0];
        if is(name, "ping") {
            return self.ping(argv);
        }
        if is(name, "echo") {
            return match argv.len() {
                2 => self.reply().bulk(argv[1]),
                _ => self.reply().wrong_arity(name),
            };
        }
        if is(name, "select") {
            return self.select(argv);
        }
        if ["blpop", "brpop", "blmove", "brpoplpush"]
            .iter()
            .any(|n| is(name, n))
        {
            // Inside a transaction a blocking pop does not block.
            if let Some(parsed) = self.parse_blocking(argv) {
                if !self.try_pop(inner, &parsed, argv, now_ms) {
                    if parsed.moves.is_some() {
                        self.reply().null();
                    } else {
                        self.reply().null_array();
                    }
                }
            }
            return;
        }
        let Some(command) = cmd::lookup(name) else {
            return self.unknown(argv);
        };
        let done = cmd::run(
            &mut inner.engine,
            command,
            argv,
            self.db,
            now_ms,
            self.out.buf(),
            self.resp3,
        );
        if done.changed > 0 {
            let seq = log_change(inner, self.db, argv, done.propagate.as_deref());
            self.logged = self.logged.max(seq);
        }
    }

    fn watch(&mut self, argv: &[&[u8]], _now: Instant) {
        if argv.len() < 2 {
            return self.reply().wrong_arity(argv[0]);
        }
        if self.multi.is_some() {
            return self.reply().error("ERR WATCH inside MULTI is not allowed");
        }
        let store = Arc::clone(&self.store);
        let mut inner = store.lock();
        for key in &argv[1..] {
            if self
                .watches
                .iter()
                .any(|(d, k, _)| *d == self.db && k.as_slice() == *key)
            {
                continue;
            }
            let v = inner.engine.watch(self.db, key);
            self.watches.push((self.db, key.to_vec(), v));
        }
        drop(inner);
        self.reply().ok();
    }

    fn unwatch_all(&mut self) {
        if self.watches.is_empty() {
            return;
        }
        let mut inner = self.store.lock();
        for (db, key, _) in std::mem::take(&mut self.watches) {
            inner.engine.unwatch(db, &key);
        }
    }

    fn ping(&mut self, argv: &[&[u8]]) {
        match argv.len() {
            1 => self.reply().simple(b"PONG"),
            2 => self.reply().bulk(argv[1]),
            _ => self.reply().wrong_arity(argv[0]),
        }
    }

    fn select(&mut self, argv: &[&[u8]]) {
        if argv.len() != 2 {
            return self.reply().wrong_arity(argv[0]);
        }
        match parse_i64(argv[1]) {
            None => self.reply().error(reply::NOT_INTEGER),
            Some(n) if n < 0 || n >= DATABASES as i64 => self.reply().error(reply::DB_OUT_OF_RANGE),
            Some(n) => {
                self.db = n as usize;
                self.reply().ok();
            }
        }
    }

    fn password_ok(&self, user: Option<&[u8]>, pass: &[u8]) -> bool {
        let user_ok = user.is_none_or(|u| u == b"default");
        match &self.store.config.requirepass {
            Some(p) => user_ok && constant_time_eq(p, pass),
            None => user_ok,
        }
    }

    fn auth(&mut self, argv: &[&[u8]]) {
        let (user, pass) = match argv.len() {
            2 => (None, argv[1]),
            3 => (Some(argv[1]), argv[2]),
            _ => return self.reply().wrong_arity(argv[0]),
        };
        if self.store.config.requirepass.is_none() && user.is_none() {
            return self.reply().error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        if self.password_ok(user, pass) {
            self.authed = true;
            self.reply().ok();
        } else {
            self.reply()
                .error("WRONGPASS invalid username-password pair or user is disabled.");
        }
    }

    fn hello(&mut self, argv: &[&[u8]]) {
        let mut proto = if self.resp3 { 3 } else { 2 };
        let mut i = 1;
        if argv.len() > 1 {
            match parse_i64(argv[1]) {
                None => {
                    return self
                        .reply()
                        .error("ERR Protocol version is not an integer or out of range")
                }
                Some(2) => proto = 2,
                Some(3) => proto = 3,
                Some(_) => return self.reply().error("NOPROTO unsupported protocol version"),
            }
            i = 2;
        }
        let mut name = None;
        let mut authed = self.authed;
        while i < argv.len() {
            let more = argv.len() - i - 1;
            if is(argv[i], "auth") && more >= 2 {
                if !self.password_ok(Some(argv[i + 1]), argv[i + 2]) {
                    return self
                        .reply()
                        .error("WRONGPASS invalid username-password pair or user is disabled.");
                }
                authed = true;
                i += 3;
            } else if is(argv[i], "setname") && more >= 1 {
                name = Some(argv[i + 1].to_vec());
                i += 2;
            } else {
                let opt = String::from_utf8_lossy(argv[i]).into_owned();
                return self
                    .reply()
                    .error(&format!("ERR Syntax error in HELLO option '{opt}'"));
            }
        }
        if !authed {
            return self.reply().error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if let Some(n) = name {
            if !valid_client_name(&n) {
                return self.reply().error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            self.name = (!n.is_empty()).then_some(n);
        }
        self.authed = true;
        self.resp3 = proto == 3;
        let id = self.id as i64;
        let mut r = self.reply();
        r.map(7);
        r.bulk(b"server");
        r.bulk(b"redis");
        r.bulk(b"version");
        r.bulk(REDIS_VERSION.as_bytes());
        r.bulk(b"proto");
        r.int(proto);
        r.bulk(b"id");
        r.int(id);
        r.bulk(b"mode");
        r.bulk(b"standalone");
        r.bulk(b"role");
        r.bulk(b"master");
        r.bulk(b"modules");
        r.array(0);
    }

    fn reset(&mut self) {
        self.multi = None;
        self.unwatch_all();
        self.unblock_all();
        self.db = 0;
        self.resp3 = false;
        self.name = None;
        self.authed = self.store.config.requirepass.is_none();
        self.reply().simple(b"RESET");
    }

    fn client(&mut self, argv: &[&[u8]], now: Instant) {
        if argv.len() < 2 {
            return self.reply().wrong_arity(argv[0]);
        }
        let sub = String::from_utf8_lossy(argv[1]).to_ascii_lowercase();
        match (sub.as_str(), argv.len()) {
            ("id", 2) => {
                let id = self.id as i64;
                self.reply().int(id);
            }
            ("getname", 2) => {
                let name = self.name.clone();
                self.reply().bulk_or_null(name.as_deref());
            }
            ("setname", 3) => {
                if !valid_client_name(argv[2]) {
                    return self.reply().error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!argv[2].is_empty()).then(|| argv[2].to_vec());
                self.reply().ok();
            }
            ("setinfo", 4) => {
                if is(argv[2], "lib-name") || is(argv[2], "lib-ver") {
                    if argv[3]
                        .iter()
                        .any(|&b| b == b' ' || b == b'\n' || b == b'\r')
                    {
                        return self.reply().error(&format!(
                            "ERR {} cannot contain spaces, newlines or special characters.",
                            String::from_utf8_lossy(argv[2]).to_ascii_lowercase()
                        ));
                    }
                    self.reply().ok();
                } else {
                    let attr = String::from_utf8_lossy(argv[2]).into_owned();
                    self.reply()
                        .error(&format!("ERR Unrecognized option '{attr}'"));
                }
            }
            ("info", 2) => {
                let line = self.client_line(now);
                self.reply().verbatim(line.as_bytes());
            }
            ("list", _) => {
                let line = self.client_line(now);
                self.reply().verbatim(line.as_bytes());
            }
            ("no-evict" | "no-touch", 3) => self.reply().ok(),
            ("help", 2) => {
                let lines: [&[u8]; 6] = [
                    b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    b"ID",
                    b"GETNAME",
                    b"SETNAME <name>",
                    b"SETINFO <option> <value>",
                    b"INFO",
                ];
                self.reply().bulks(lines.into_iter());
            }
            (s, _)
                if [
                    "id", "getname", "setname", "setinfo", "info", "no-evict", "no-touch",
                ]
                .contains(&s) =>
            {
                let msg = format!(
                    "ERR unknown subcommand or wrong number of arguments for '{s}'. Try CLIENT HELP."
                );
                self.reply().error(&msg);
            }
            (s, _) => {
                let msg = format!("ERR unknown subcommand '{s}'. Try CLIENT HELP.");
                self.reply().error(&msg);
            }
        }
    }

    fn client_line(&self, now: Instant) -> String {
        let age = now.saturating_duration_since(self.t0).as_secs();
        let idle = now.saturating_duration_since(self.last_active).as_secs();
        let name = self
            .name
            .as_deref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} watch={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={} lib-name= lib-ver=\n",
            self.id,
            self.peer,
            self.local,
            name,
            age,
            idle,
            if self.multi.is_some() { "x" } else { "N" },
            self.db,
            self.multi.as_ref().map_or(-1, |m| m.queued.len() as i64),
            self.watches.len(),
            self.input.len(),
            self.out.len(),
            if self.resp3 { 3 } else { 2 },
        )
    }

    fn info(&mut self, argv: &[&[u8]]) {
        let wanted: Vec<String> = argv[1..]
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .collect();
        let all = wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == "all" || w == "everything" || w == "default");
        let want = |s: &str| all || wanted.iter().any(|w| w == s);
        let store = Arc::clone(&self.store);
        let inner = store.lock();
        let mut text = String::new();
        if want("server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nmuse_version:{}\r\nmuse_arch:{}\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:10\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                store.config.arch,
                std::env::consts::OS,
                std::process::id(),
                store.config.port,
                store.uptime().as_secs(),
                store.uptime().as_secs() / 86400,
            ));
        }
        if want("clients") {
            text.push_str(&format!(
                "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\nmaxclients:10000\r\n\r\n",
                store.clients.load(Ordering::Relaxed),
                inner.blocked_clients(),
            ));
        }
        if want("memory") {
            let used = store.used_memory();
            let rss = super::memory::rss();
            let peak = store.peak_memory();
            let max = store.maxmemory();
            text.push_str(&format!(
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\n\r\n",
                human_bytes(used),
                human_bytes(rss),
                human_bytes(peak),
                human_bytes(max),
                store.policy(),
            ));
        }
        if want("persistence") {
            let rewrite = &inner.rewrite;
            text.push_str(&format!(
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_current_size:{}\r\naof_base_size:{}\r\n\r\n",
                inner.engine.dirty,
                u8::from(inner.log.is_some()),
                u8::from(rewrite.running),
                if rewrite.last_ok { "ok" } else { "err" },
                rewrite.completed,
                inner.log.as_ref().map_or(0, |l| l.file_size()),
                rewrite.base_size,
            ));
        }
        if want("stats") {
            text.push_str(&format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\n\r\n",
                store.connections.load(Ordering::Relaxed),
                store.commands.load(Ordering::Relaxed),
                inner.engine.expired_keys,
                inner.engine.evicted_keys,
            ));
        }
        if want("replication") {
            text.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
        }
        if want("keyspace") {
            text.push_str("# Keyspace\r\n");
            for db in 0..DATABASES {
                let d = inner.engine.db(db);
                if !d.map.is_empty() {
                    text.push_str(&format!(
                        "db{db}:keys={},expires={},avg_ttl=0\r\n",
                        d.map.len(),
                        d.volatile_len()
                    ));
                }
            }
            text.push_str("\r\n");
        }
        drop(inner);
        // Without the last blank line, as Redis sends it.
        while text.ends_with("\r\n\r\n") {
            text.truncate(text.len() - 2);
        }
        self.reply().verbatim(text.as_bytes());
    }

    fn config(&mut self, argv: &[&[u8]], now: Instant) {
        if argv.len() < 2 {
            return self.reply().wrong_arity(argv[0]);
        }
        let sub = String::from_utf8_lossy(argv[1]).to_ascii_lowercase();
        match sub.as_str() {
            "get" if argv.len() >= 3 => {
                let store = Arc::clone(&self.store);
                let inner = store.lock();
                let mut pairs: Vec<(&String, &String)> = inner
                    .config
                    .iter()
                    .filter(|(k, _)| {
                        argv[2..].iter().any(|p| {
                            let p = p.to_ascii_lowercase();
                            cmd::keys::glob_match(&p, k.as_bytes())
                        })
                    })
                    .collect();
                pairs.sort();
                let mut r = Reply::new(self.out.buf(), self.resp3);
                r.map(pairs.len());
                for (k, v) in pairs {
                    r.bulk(k.as_bytes());
                    r.bulk(v.as_bytes());
                }
            }
            "set" if argv.len() >= 4 && argv.len().is_multiple_of(2) => {
                let store = Arc::clone(&self.store);
                let mut inner = store.lock();
                let mut values = Vec::new();
                for pair in argv[2..].chunks(2) {
                    let k = String::from_utf8_lossy(pair[0]).to_ascii_lowercase();
                    if !inner.config.contains_key(&k) || FIXED_SETTINGS.contains(&k.as_str()) {
                        drop(inner);
                        return self.reply().error(&format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{k}'"
                        ));
                    }
                    match super::store::check_setting(&k, pair[1]) {
                        Ok(v) => values.push((k, v)),
                        Err(msg) => {
                            drop(inner);
                            return self.reply().error(&msg);
                        }
                    }
                }
                // Every value is checked before any is set, as Redis does.
                let mut changes = Vec::new();
                for (k, v) in values {
                    match Setting::parse(&k, v) {
                        Ok(change) => changes.push((k, change)),
                        Err(why) => {
                            drop(inner);
                            return self.reply().error(&format!(
                                "ERR CONFIG SET failed (possibly related to argument '{k}') - {why}"
                            ));
                        }
                    }
                }
                for (k, change) in changes {
                    let shown = match change {
                        Setting::MaxMemory(bytes) => {
                            let used = store.used_memory();
                            if bytes != 0 && bytes < used {
                                crate::log::warn(format_args!(
                                    "kv: the new maxmemory ({bytes}) is below the memory in use \
                                     ({used}): keys will be evicted or writes refused, \
                                     per maxmemory-policy {}",
                                    store.policy()
                                ));
                            }
                            store.set_maxmemory(bytes);
                            bytes.to_string()
                        }
                        Setting::Policy(p) => {
                            store.set_policy(&mut inner, p);
                            p.name().to_string()
                        }
                        Setting::Samples(n) => {
                            inner.samples = n;
                            n.to_string()
                        }
                        Setting::Other(v) => v,
                    };
                    inner.config.insert(k, shown);
                }
                drop(inner);
                // A lower limit takes effect at once, as in Redis.
                store.make_room(self.unix_ms(now));
                self.reply().ok();
            }
            "resetstat" if argv.len() == 2 => self.reply().ok(),
            "rewrite" if argv.len() == 2 => self
                .reply()
                .error("ERR The server is running without a config file"),
            "get" | "set" | "resetstat" | "rewrite" => {
                let msg = format!(
                    "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CONFIG HELP."
                );
                self.reply().error(&msg);
            }
            _ => {
                let msg = format!("ERR unknown subcommand '{sub}'. Try CONFIG HELP.");
                self.reply().error(&msg);
            }
        }
    }

    fn command(&mut self, argv: &[&[u8]]) {
        let table = cmd::table();
        let sub = argv
            .get(1)
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
        let extra: &[(&str, i32)] = &SESSION_COMMANDS;
        match sub.as_deref() {
            Some("count") => {
                let n = (table.len() + extra.len()) as i64;
                self.reply().int(n);
            }
            Some("docs") => {
                let mut names: Vec<&str> = if argv.len() > 2 {
                    argv[2..]
                        .iter()
                        .filter_map(|n| {
                            let n = String::from_utf8_lossy(n).to_ascii_lowercase();
                            table
                                .get(n.as_str())
                                .map(|c| c.name)
                                .or_else(|| extra.iter().find(|e| e.0 == n).map(|e| e.0))
                        })
                        .collect()
                } else {
                    table
                        .keys()
                        .copied()
                        .chain(extra.iter().map(|e| e.0))
                        .collect()
                };
                names.sort_unstable();
                let mut r = Reply::new(self.out.buf(), self.resp3);
                r.map(names.len());
                for n in names {
                    r.bulk(n.as_bytes());
                    r.map(3);
                    r.bulk(b"summary");
                    r.bulk(b"");
                    r.bulk(b"since");
                    r.bulk(b"1.0.0");
                    r.bulk(b"group");
                    r.bulk(b"generic");
                }
            }
            Some("list") => {
                let mut names: Vec<&str> = table
                    .keys()
                    .copied()
                    .chain(extra.iter().map(|e| e.0))
                    .collect();
                names.sort_unstable();
                self.reply().bulks(names.iter().map(|n| n.as_bytes()));
            }
            Some("info") | None => {
                let names: Vec<String> = if sub.is_none() {
                    let mut v: Vec<String> = table
                        .keys()
                        .map(|n| n.to_string())
                        .chain(extra.iter().map(|e| e.0.to_string()))
                        .collect();
                    v.sort();
                    v
                } else {
                    argv[2..]
                        .iter()
                        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                        .collect()
                };
                let mut r = Reply::new(self.out.buf(), self.resp3);
                r.array(names.len());
                for n in names {
                    if let Some(c) = table.get(n.as_str()) {
                        command_info(&mut r, c.name, c.arity, c.flags, c.keys);
                    } else if let Some(e) = extra.iter().find(|e| e.0 == n) {
                        command_info(&mut r, e.0, e.1, 0, (0, 0, 0));
                    } else {
                        r.null_array();
                    }
                }
            }
            Some(other) => {
                let msg = format!("ERR unknown subcommand '{other}'. Try COMMAND HELP.");
                self.reply().error(&msg);
            }
        }
    }

    /// The arguments of a blocking pop, checked.
    fn parse_blocking(&mut self, argv: &[&[u8]]) -> Option<BlockingPop> {
        let name = argv[0];
        let (keys, moves, timeout): (Vec<Vec<u8>>, Moves, &[u8]) =
            if is(name, "blpop") || is(name, "brpop") {
                if argv.len() < 3 {
                    self.reply().wrong_arity(name);
                    return None;
                }
                (
                    cmd::owned(&argv[1..argv.len() - 1]),
                    None,
                    argv[argv.len() - 1],
                )
            } else if is(name, "brpoplpush") {
                if argv.len() != 4 {
                    self.reply().wrong_arity(name);
                    return None;
                }
                (cmd::owned(&argv[1..3]), Some((false, true)), argv[3])
            } else {
                if argv.len() != 6 {
                    self.reply().wrong_arity(name);
                    return None;
                }
                let side = |s: &[u8]| {
                    if is(s, "left") {
                        Some(true)
                    } else if is(s, "right") {
                        Some(false)
                    } else {
                        None
                    }
                };
                let (Some(from), Some(to)) = (side(argv[3]), side(argv[4])) else {
                    self.reply().error(reply::SYNTAX);
                    return None;
                };
                (cmd::owned(&argv[1..3]), Some((from, to)), argv[5])
            };
        let secs = match cmd::parse_f64(timeout) {
            Some(t) if t.is_finite() => t,
            _ => {
                self.reply()
                    .error("ERR timeout is not a float or out of range");
                return None;
            }
        };
        if secs < 0.0 {
            self.reply().error("ERR timeout is negative");
            return None;
        }
        // Redis keeps the timeout in milliseconds in a signed 64-bit
        // integer; a longer one is refused, not waited for by a clock that
        // cannot reach it.
        let Some(timeout) = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|t| t.as_millis() <= i64::MAX as u128)
        else {
            self.reply().error("ERR timeout is out of range");
            return None;
        };
        Some(BlockingPop {
            left: is(name, "blpop"),
            keys,
            moves,
            timeout,
        })
    }

    /// Tries a blocking pop once, the lock held: answers and returns true if
    /// there was something to pop (or an error), false if it must wait.
    fn try_pop(&mut self, inner: &mut Inner, p: &BlockingPop, argv: &[&[u8]], now_ms: u64) -> bool {
        let db = self.db;
        let _ = argv;
        // Keys this pop creates take this time as their last use.
        inner.engine.set_clock(now_ms);
        if let Some((from_left, to_left)) = p.moves {
            let (src, dst) = (&p.keys[0], &p.keys[1]);
            match cmd::lists::move_for_blocked(
                &mut inner.engine,
                db,
                src,
                dst,
                from_left,
                to_left,
                now_ms,
            ) {
                Err(e) => {
                    self.reply().error(e);
                    true
                }
                Ok(None) => false,
                Ok(Some(v)) => {
                    inner.engine.dirty += 1;
                    inner.engine.touch(db, src);
                    inner.engine.touch(db, dst);
                    let side = |l: bool| {
                        if l {
                            b"LEFT".to_vec()
                        } else {
                            b"RIGHT".to_vec()
                        }
                    };
                    let logged = vec![
                        b"LMOVE".to_vec(),
                        src.clone(),
                        dst.clone(),
                        side(from_left),
                        side(to_left),
                    ];
                    let seq = log_owned(inner, db, &logged);
                    self.logged = self.logged.max(seq);
                    self.reply().bulk(&v);
                    true
                }
            }
        } else {
            for key in &p.keys {
                if cmd::lists::list_type_check(&mut inner.engine, db, key, now_ms).is_err() {
                    self.reply().error(reply::WRONGTYPE);
                    return true;
                }
                if let Some(v) =
                    cmd::lists::pop_for_blocked(&mut inner.engine, db, key, p.left, now_ms)
                {
                    inner.engine.dirty += 1;
                    inner.engine.touch(db, key);
                    let op: &[u8] = if p.left { b"LPOP" } else { b"RPOP" };
                    let seq = log_owned(inner, db, &[op.to_vec(), key.clone()]);
                    self.logged = self.logged.max(seq);
                    let mut r = Reply::new(self.out.buf(), self.resp3);
                    r.array(2);
                    r.bulk(key);
                    r.bulk(&v);
                    return true;
                }
            }
            false
        }
    }

    fn blocking_pop(&mut self, argv: &[&[u8]], now: Instant) {
        let Some(p) = self.parse_blocking(argv) else {
            return;
        };
        let now_ms = self.unix_ms(now);
        let store = Arc::clone(&self.store);
        let mut inner = store.lock();
        if self.try_pop(&mut inner, &p, argv, now_ms) {
            inner.wake_ready();
            return;
        }
        let Some(waker) = self.waker.clone() else {
            // A driver without wakers cannot wait: answer as a timeout.
            drop(inner);
            return self.reply().null_array();
        };
        let wait_keys: &[Vec<u8>] = if p.moves.is_some() {
            &p.keys[..1]
        } else {
            &p.keys
        };
        for key in wait_keys {
            inner.block(self.db, key, self.id, &waker);
        }
        self.blocked = Some(Blocked {
            args: cmd::owned(argv),
            keys: wait_keys.to_vec(),
            db: self.db,
            // A deadline past what the clock can say is no deadline.
            deadline: (!p.timeout.is_zero())
                .then(|| now.checked_add(p.timeout))
                .flatten(),
        });
    }

    /// A blocked pop looks again (woken, or at its deadline).
    fn retry_blocked(&mut self, now: Instant) {
        let Some(b) = self.blocked.take() else {
            return;
        };
        let argv: Vec<&[u8]> = b.args.iter().map(Vec::as_slice).collect();
        let Some(p) = self.parse_blocking(&argv) else {
            return;
        };
        let now_ms = self.unix_ms(now);
        let store = Arc::clone(&self.store);
        let mut inner = store.lock();
        let db = self.db;
        self.db = b.db;
        let done = self.try_pop(&mut inner, &p, &argv, now_ms);
        self.db = db;
        let expired = b.deadline.is_some_and(|d| now >= d);
        if done || expired || self.draining {
            for key in &b.keys {
                inner.unblock(b.db, key, self.id);
            }
            inner.wake_ready();
            drop(inner);
            if !done && expired {
                self.reply().null_array();
            }
        } else {
            self.blocked = Some(b);
        }
    }

    fn unblock_all(&mut self) {
        if let Some(b) = self.blocked.take() {
            let mut inner = self.store.lock();
            for key in &b.keys {
                inner.unblock(b.db, key, self.id);
            }
        }
    }
}

/// BLMOVE's sides: (from the left, to the left); `None` for BLPOP/BRPOP.
type Moves = Option<(bool, bool)>;

/// A blocking pop's arguments.
struct BlockingPop {
    left: bool,
    keys: Vec<Vec<u8>>,
    /// BLMOVE / BRPOPLPUSH: (from left, to left).
    moves: Option<(bool, bool)>,
    timeout: Duration,
}

/// A value `CONFIG SET` accepted, typed for the settings muse acts on.
enum Setting {
    MaxMemory(u64),
    Policy(Policy),
    Samples(usize),
    /// Shown by `CONFIG GET`, otherwise unused.
    Other(String),
}

impl Setting {
    /// Checks `value` for setting `name`; the error says why, in Redis's
    /// words.
    fn parse(name: &str, value: String) -> Result<Setting, String> {
        match name {
            "maxmemory" => parse_memory(&value)
                .map(Setting::MaxMemory)
                .ok_or_else(|| "argument must be a memory value".to_string()),
            "maxmemory-policy" => Policy::from_name(&value)
                .map(Setting::Policy)
                .ok_or_else(|| {
                    format!(
                        "argument(s) must be one of the following: {}",
                        Policy::names()
                    )
                }),
            "maxmemory-samples" => match parse_i64(value.as_bytes()) {
                None => Err("argument couldn't be parsed into an integer".into()),
                Some(n) if n < 1 || n > MAX_SAMPLES as i64 => Err(format!(
                    "argument must be between 1 and {MAX_SAMPLES} inclusive"
                )),
                Some(n) => Ok(Setting::Samples(n as usize)),
            },
            _ => Ok(Setting::Other(value)),
        }
    }
}

/// Whether a command may grow memory (Redis's `denyoom` flag): refused
/// when memory is full. Only a well-formed one: the others are answered
/// with their own error.
fn may_grow_memory(argv: &[&[u8]]) -> bool {
    match cmd::lookup(argv[0]) {
        Some(c) => c.flags & cmd::DENYOOM != 0 && c.arity_ok(argv.len()),
        None => SESSION_DENYOOM
            .iter()
            .any(|(n, arity)| is(argv[0], n) && argv.len() == *arity),
    }
}

/// Settings `CONFIG SET` may not change (they were fixed at start).
const FIXED_SETTINGS: &[&str] = &["port", "databases", "bind", "dir", "appendfilename"];

/// The commands the session runs itself, with their arity, for `COMMAND`.
const SESSION_COMMANDS: [(&str, i32); 21] = [
    ("ping", -1),
    ("echo", 2),
    ("quit", -1),
    ("hello", -1),
    ("auth", -2),
    ("select", 2),
    ("multi", 1),
    ("exec", 1),
    ("discard", 1),
    ("watch", -2),
    ("unwatch", 1),
    ("reset", 1),
    ("client", -2),
    ("info", -1),
    ("config", -2),
    ("command", -1),
    ("time", 1),
    ("lastsave", 1),
    ("bgrewriteaof", 1),
    ("blpop", -3),
    ("brpop", -3),
];

fn command_info(r: &mut Reply<'_>, name: &str, arity: i32, flags: u32, keys: (i32, i32, i32)) {
    r.array(10);
    r.bulk(name.as_bytes());
    r.int(i64::from(arity));
    let mut f: Vec<&[u8]> = Vec::new();
    if flags & cmd::WRITE != 0 {
        f.push(b"write");
    }
    if flags & cmd::READONLY != 0 {
        f.push(b"readonly");
    }
    if flags & cmd::DENYOOM != 0 {
        f.push(b"denyoom");
    }
    if flags & cmd::FAST != 0 {
        f.push(b"fast");
    }
    r.set(f.len());
    for x in f {
        r.simple(x);
    }
    r.int(i64::from(keys.0));
    r.int(i64::from(keys.1));
    r.int(i64::from(keys.2));
    r.set(0);
    r.set(0);
    r.set(0);
    r.array(0);
}

/// Logs a change for durability (a no-op without a log).
/// Logs a change for durability; returns its record's sequence number
/// (0: no log).
fn log_change(
    inner: &mut Inner,
    db: usize,
    argv: &[&[u8]],
    propagate: Option<&[Vec<Vec<u8>>]>,
) -> u64 {
    inner.log_change(db, argv, propagate)
}

fn log_owned(inner: &mut Inner, db: usize, args: &[Vec<u8>]) -> u64 {
    let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    log_change(inner, db, &argv, None)
}

fn truncate(s: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&s[..s.len().min(max)]).into_owned();
    s
}

fn valid_client_name(n: &[u8]) -> bool {
    n.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2}G", n as f64 / f64::from(1u32 << 30))
    } else if n >= 1 << 20 {
        format!("{:.2}M", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.2}K", n as f64 / 1024.0)
    } else {
        format!("{n}B")
    }
}

/// The first byte of a TLS record carrying a handshake message (a
/// ClientHello), which no RESP command begins with.
const TLS_HANDSHAKE: u8 = 0x16;

impl Drop for KvSession {
    fn drop(&mut self) {
        self.unblock_all();
        self.unwatch_all();
        self.store.client_gone();
    }
}

impl Session for KvSession {
    fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.last_active = now;
        if let Closing::Lingering(_) = self.closing {
            // After a protocol error: dropped.
            return;
        }
        if !self.heard && self.input.is_empty() && data.first() == Some(&TLS_HANDSHAKE) {
            // A TLS client on this plain port: say so and close, rather
            // than wait for a line end that may never come.
            self.reply()
                .error("ERR this port speaks plain RESP; the client began a TLS handshake");
            self.closing = Closing::AfterFlush;
            return;
        }
        if self.input.is_empty() && self.input.capacity() < data.len() {
            if let Some(hint) = self.parser.bulk_hint() {
                self.input.reserve(hint.min(MAX_BULK));
            }
        }
        self.input.extend_from_slice(data);
        self.run(now);
    }

    fn handle_eof(&mut self, now: Instant) {
        self.eof = true;
        if self.blocked.is_some() {
            // Nobody is left to answer.
            self.unblock_all();
        }
        self.run(now);
        if matches!(self.closing, Closing::No | Closing::Lingering(_)) {
            self.closing = Closing::AfterFlush;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Closing::Lingering(until) = self.closing {
            if now >= until {
                self.closing = Closing::AfterFlush;
            }
            return;
        }
        if let Some(d) = self.blocked.as_ref().and_then(|b| b.deadline) {
            if now >= d {
                self.retry_blocked(now);
                self.run(now);
                return;
            }
        }
        if self.blocked.is_none() && !self.held() {
            if let Some(idle) = self.idle_timeout {
                // Idle: nothing sent or received for the timeout. With
                // replies waiting, that means the client does not read
                // them, and it is closed just the same (`last_active`
                // moves with every byte the client takes).
                if now >= self.last_active + idle {
                    self.closing = Closing::Now;
                }
            }
        }
    }

    fn handle_shutdown(&mut self, now: Instant) {
        self.draining = true;
        if self.blocked.is_some() {
            self.unblock_all();
        }
        self.run(now);
    }

    fn set_waker(&mut self, waker: Waker) {
        self.waker = Some(waker);
    }

    fn handle_wake(&mut self, now: Instant) {
        self.check_log();
        if self.blocked.is_some() {
            self.retry_blocked(now);
            if self.blocked.is_none() {
                self.last_active = now;
                self.run(now);
            }
        }
    }

    fn waiting(&self) -> bool {
        self.blocked.is_some() || self.held()
    }

    fn poll_output(&self) -> Output<'_> {
        if self.held() {
            return Output::Nothing;
        }
        self.out.front()
    }

    fn consume_output(&mut self, n: usize, now: Instant) {
        self.out.consume(n);
        if n > 0 {
            self.last_active = now;
        }
        if self.out.len() < MAX_OUTPUT && self.closing == Closing::No && !self.input.is_empty() {
            self.run(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if let Closing::Lingering(until) = self.closing {
            return Some(until);
        }
        if let Some(b) = &self.blocked {
            return b.deadline;
        }
        self.idle_timeout.map(|t| self.last_active + t)
    }

    fn wants_read(&self) -> bool {
        if let Closing::Lingering(_) = self.closing {
            return !self.eof;
        }
        if self.closing != Closing::No || self.eof {
            return false;
        }
        // Reading more completes the request being parsed; requests
        // already complete and waiting stop it past the bound.
        let waiting = self.blocked.is_some() || self.out.len() >= MAX_OUTPUT;
        !(waiting && self.input.len() >= MAX_PENDING)
    }

    fn wants_close(&self) -> bool {
        // Replies held for the log are owed before the close.
        !matches!(self.closing, Closing::No | Closing::Lingering(_)) && !self.held()
    }

    fn wants_close_now(&self) -> bool {
        self.closing == Closing::Now
    }

    fn take_finished_requests(&mut self) -> u32 {
        std::mem::take(&mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, SystemTime};

    /// A session on a fresh store whose clock starts at Unix time 1,000 s.
    fn session(t0: Instant) -> KvSession {
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:6380".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
        };
        let store = Arc::new(Store::new(Default::default()));
        KvSession::new(store, &info, None, None, t0)
    }

    #[test]
    fn a_protocol_error_lingers_over_what_the_client_still_sends() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let reply = ask(&mut s, &format!("SET k {}", "a".repeat(100_000)), t0);
        assert_eq!(reply, "-ERR Protocol error: too big inline request\r\n");
        // The rest of the request is still coming: read and dropped, so
        // that the close does not reset the connection under the error.
        assert!(s.wants_read() && !s.wants_close());
        assert_eq!(ask(&mut s, &"a".repeat(100_000), t0), "");
        assert_eq!(ask(&mut s, "PING\r\n", t0), "", "nothing more is answered");
        assert!(s.input.is_empty(), "what comes is not kept");
        let until = s.poll_timeout().expect("the linger ends");
        assert!(until <= t0 + LINGER);
        s.handle_timeout(until);
        assert!(s.wants_close() && !s.wants_read());
        // A client that closes ends it at once.
        let mut s = session(t0);
        ask(&mut s, "*1\r\n$x\r\n", t0);
        assert!(!s.wants_close());
        s.handle_eof(t0);
        assert!(s.wants_close());
    }

    #[test]
    fn a_tls_handshake_on_the_plain_port_gets_an_error_and_the_close() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.handle_input(&[0x16, 0x03, 0x01, 0x02, 0x00], t0);
        let out = String::from_utf8_lossy(s.poll_output().bytes()).into_owned();
        assert!(out.starts_with("-ERR this port speaks plain RESP"), "{out}");
        assert!(s.wants_close() && !s.wants_read());
    }

    #[test]
    fn a_drain_closes_between_commands_but_waits_for_a_new_clients_first() {
        let t0 = Instant::now();
        let mut used = session(t0);
        used.handle_input(b"PING\r\n", t0);
        assert_eq!(used.poll_output().bytes(), b"+PONG\r\n");
        used.handle_shutdown(t0);
        assert!(used.wants_close(), "idle between commands: closes");

        let mut fresh = session(t0);
        fresh.handle_shutdown(t0);
        assert!(!fresh.wants_close() && fresh.wants_read());
        fresh.handle_input(b"PING\r\n", t0);
        assert_eq!(fresh.poll_output().bytes(), b"+PONG\r\n");
        assert!(fresh.wants_close(), "answered, then closes");
    }

    #[test]
    fn writers_wait_for_a_log_that_has_fallen_far_behind() {
        use std::sync::atomic::AtomicBool;
        struct Flag(AtomicBool);
        impl crate::session::Wake for Flag {
            fn wake(&self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let dir = std::env::temp_dir().join(format!("muse-kv-backlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(
            Store::open(crate::protocols::kv::store::StoreConfig {
                data_dir: Some(dir.clone()),
                fsync: super::super::aof::Fsync::EverySec,
                ..Default::default()
            })
            .unwrap(),
        );
        let log = store.lock().log.clone().unwrap();
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:6380".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH,
        };
        let t0 = Instant::now();
        let mut s = KvSession::new(Arc::clone(&store), &info, None, None, t0);
        let woken = Arc::new(Flag(AtomicBool::new(false)));
        s.set_waker(Waker::new(woken.clone()));
        // A disk that keeps up: replies at once.
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
        // A disk that stops: writes are answered at once until the log
        // holds MAX_LOG_BACKLOG unwritten, then held.
        log.stall_writer(true);
        let value = "v".repeat(1 << 20);
        let set = format!(
            "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n${}\r\n{value}\r\n",
            value.len()
        );
        let mut answered = 0;
        loop {
            s.handle_input(set.as_bytes(), t0);
            if s.poll_output().is_nothing() {
                break;
            }
            assert!(
                log.backlog() <= MAX_LOG_BACKLOG,
                "answered with {} bytes unwritten",
                log.backlog()
            );
            assert_eq!(s.poll_output().bytes(), b"+OK\r\n");
            s.consume_output(5, t0);
            answered += 1;
            assert!(answered < 200, "the backlog never grew");
        }
        assert!(log.backlog() > MAX_LOG_BACKLOG, "held too soon");
        assert!(s.waiting(), "the reply waits for the disk");
        // The disk catches up: the writer wakes the session, the reply goes.
        log.stall_writer(false);
        let mut waited = 0;
        while !woken.0.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
            assert!(waited < 10_000, "never woken");
        }
        s.handle_wake(t0);
        assert_eq!(s.poll_output().bytes(), b"+OK\r\n");
        drop(s);
        store.close();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Sends `request` at `now` and takes the whole reply.
    #[test]
    fn each_command_is_one_request_pipelined_or_not() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(
            ask(&mut s, "SET a 1\r\nGET a\r\n", t0),
            "+OK\r\n$1\r\n1\r\n"
        );
        assert_eq!(ask(&mut s, "*1\r\n$4\r\nPING\r\n", t0), "+PONG\r\n");
        // A command cut in two is one request, counted once it is whole.
        assert_eq!(ask(&mut s, "*1\r\n$4\r\nPI", t0), "");
        assert_eq!(s.take_finished_requests(), 3);
        assert_eq!(ask(&mut s, "NG\r\n", t0), "+PONG\r\n");
        assert_eq!(s.take_finished_requests(), 1);
        assert_eq!(s.take_finished_requests(), 0);
    }

    fn ask(s: &mut KvSession, request: &str, now: Instant) -> String {
        s.handle_input(request.as_bytes(), now);
        let out = s.poll_output().bytes().to_vec();
        s.consume_output(out.len(), now);
        String::from_utf8(out).unwrap()
    }

    /// A session on a store limited to 1,000 bytes under `policy`, whose
    /// memory in use is whatever `used` holds.
    fn limited(t0: Instant, policy: Policy, used: &Arc<AtomicU64>) -> KvSession {
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:6380".parse().unwrap(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
        };
        let used = Arc::clone(used);
        let store = Store::with_gauge(
            super::super::store::StoreConfig {
                maxmemory: 1000,
                maxmemory_policy: policy,
                ..Default::default()
            },
            Box::new(move || used.load(Ordering::Relaxed)),
        );
        KvSession::new(Arc::new(store), &info, None, None, t0)
    }

    const OOM_REPLY: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

    #[test]
    fn noeviction_refuses_what_may_grow_memory_and_serves_the_rest() {
        let t0 = Instant::now();
        let used = Arc::new(AtomicU64::new(500));
        let mut s = limited(t0, Policy::NoEviction, &used);
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "SET b 2\r\n", t0), "+OK\r\n");
        used.store(1001, Ordering::Relaxed);
        for grows in [
            "SET c 3",
            "APPEND a x",
            "INCR a",
            "RPUSH l x",
            "SADD s x",
            "HSET h f v",
            "BRPOPLPUSH l m 0",
        ] {
            assert_eq!(
                ask(&mut s, &format!("{grows}\r\n"), t0),
                OOM_REPLY,
                "{grows}"
            );
        }
        // Reads, deletions and commands that do not grow memory go on.
        assert_eq!(ask(&mut s, "GET a\r\n", t0), "$1\r\n1\r\n");
        assert_eq!(ask(&mut s, "DEL b\r\n", t0), ":1\r\n");
        assert_eq!(ask(&mut s, "EXPIRE a 100\r\n", t0), ":1\r\n");
        assert_eq!(ask(&mut s, "DBSIZE\r\n", t0), ":1\r\n");
        assert_eq!(ask(&mut s, "PING\r\n", t0), "+PONG\r\n");
        // Errors of form come first, as in Redis.
        assert_eq!(
            ask(&mut s, "SET c\r\n", t0),
            "-ERR wrong number of arguments for 'set' command\r\n"
        );
        // Once memory is back under the limit, writes go on.
        used.store(1000, Ordering::Relaxed);
        assert_eq!(ask(&mut s, "SET c 3\r\n", t0), "+OK\r\n");
    }

    #[test]
    fn transactions_under_full_memory_abort_as_in_redis() {
        let t0 = Instant::now();
        let used = Arc::new(AtomicU64::new(500));
        let mut s = limited(t0, Policy::NoEviction, &used);
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
        // A queue holding a command that may grow memory: EXEC is refused
        // when memory is full by then, and the transaction is gone.
        assert_eq!(ask(&mut s, "MULTI\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "SET b 2\r\n", t0), "+QUEUED\r\n");
        assert_eq!(ask(&mut s, "GET a\r\n", t0), "+QUEUED\r\n");
        used.store(2000, Ordering::Relaxed);
        assert_eq!(
            ask(&mut s, "EXEC\r\n", t0),
            "-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n"
        );
        assert_eq!(ask(&mut s, "EXEC\r\n", t0), "-ERR EXEC without MULTI\r\n");
        assert_eq!(ask(&mut s, "GET b\r\n", t0), "$-1\r\n");
        // A queue of reads runs.
        used.store(500, Ordering::Relaxed);
        assert_eq!(ask(&mut s, "MULTI\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "GET a\r\n", t0), "+QUEUED\r\n");
        used.store(2000, Ordering::Relaxed);
        assert_eq!(ask(&mut s, "EXEC\r\n", t0), "*1\r\n$1\r\n1\r\n");
        // While memory is full, queuing anything is refused and dooms the
        // EXEC; DISCARD is not refused.
        assert_eq!(ask(&mut s, "MULTI\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "GET a\r\n", t0), OOM_REPLY);
        assert_eq!(
            ask(&mut s, "EXEC\r\n", t0),
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert_eq!(ask(&mut s, "MULTI\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "PING\r\n", t0), OOM_REPLY);
        assert_eq!(ask(&mut s, "DISCARD\r\n", t0), "+OK\r\n");
    }

    #[test]
    fn allkeys_lru_evicts_before_a_command_and_refuses_only_when_nothing_is_left() {
        let t0 = Instant::now();
        let used = Arc::new(AtomicU64::new(500));
        let mut s = limited(t0, Policy::AllKeysLru, &used);
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "SET b 2\r\n", t0), "+OK\r\n");
        // The fake gauge stays over the limit whatever is evicted: every
        // key goes, then the write is refused.
        used.store(2000, Ordering::Relaxed);
        assert_eq!(ask(&mut s, "SET c 3\r\n", t0), OOM_REPLY);
        assert_eq!(ask(&mut s, "DBSIZE\r\n", t0), ":0\r\n");
        let stats = ask(&mut s, "INFO stats\r\n", t0);
        assert!(stats.contains("evicted_keys:2\r\n"), "{stats}");
    }

    #[test]
    fn config_set_changes_the_limit_and_the_policy_at_once() {
        let t0 = Instant::now();
        let used = Arc::new(AtomicU64::new(2000));
        let mut s = limited(t0, Policy::NoEviction, &used);
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), OOM_REPLY);
        assert_eq!(ask(&mut s, "CONFIG SET maxmemory 100mb\r\n", t0), "+OK\r\n");
        assert_eq!(
            ask(&mut s, "CONFIG GET maxmemory\r\n", t0),
            "*2\r\n$9\r\nmaxmemory\r\n$9\r\n104857600\r\n"
        );
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
        let info = ask(&mut s, "INFO memory\r\n", t0);
        for line in [
            "used_memory:2000\r\n",
            "maxmemory:104857600\r\n",
            "maxmemory_human:100.00M\r\n",
            "maxmemory_policy:noeviction\r\n",
            "used_memory_peak:2000\r\n",
        ] {
            assert!(info.contains(line), "{line:?} not in {info}");
        }
        assert!(info.contains("used_memory_rss:"), "{info}");
        // A policy that evicts, and a limit below the memory in use: keys
        // go at the CONFIG SET itself.
        assert_eq!(
            ask(
                &mut s,
                "CONFIG SET maxmemory-policy ALLKEYS-LRU maxmemory-samples 10\r\n",
                t0
            ),
            "+OK\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG GET maxmemory*\r\n", t0),
            "*6\r\n$9\r\nmaxmemory\r\n$9\r\n104857600\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n$17\r\nmaxmemory-samples\r\n$2\r\n10\r\n"
        );
        assert_eq!(ask(&mut s, "CONFIG SET maxmemory 1000\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "DBSIZE\r\n", t0), ":0\r\n");
        // Bad values are refused in Redis's words, and nothing of the
        // command is set.
        for (args, name, why) in [
            ("maxmemory-policy lru", "maxmemory-policy", "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"),
            ("maxmemory 12parsecs", "maxmemory", "argument must be a memory value"),
            ("maxmemory -1", "maxmemory", "argument must be a memory value"),
            ("maxmemory-samples 0", "maxmemory-samples", "argument must be between 1 and 2147483647 inclusive"),
            ("maxmemory-samples 2147483648", "maxmemory-samples", "argument must be between 1 and 2147483647 inclusive"),
            ("maxmemory-samples x", "maxmemory-samples", "argument couldn't be parsed into an integer"),
            ("maxmemory 5 maxmemory-policy nope", "maxmemory-policy", "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"),
        ] {
            assert_eq!(
                ask(&mut s, &format!("CONFIG SET {args}\r\n"), t0),
                format!("-ERR CONFIG SET failed (possibly related to argument '{name}') - {why}\r\n")
            );
        }
        assert_eq!(
            ask(&mut s, "CONFIG GET maxmemory\r\n", t0),
            "*2\r\n$9\r\nmaxmemory\r\n$4\r\n1000\r\n"
        );
        assert_eq!(ask(&mut s, "CONFIG SET maxmemory 0\r\n", t0), "+OK\r\n");
        assert_eq!(ask(&mut s, "SET a 1\r\n", t0), "+OK\r\n");
    }

    #[test]
    fn keys_expire_on_the_sessions_clock() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(ask(&mut s, "SET k v PX 100\r\n", t0), "+OK\r\n");
        let later = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(ask(&mut s, "PTTL k\r\n", later(40)), ":60\r\n");
        assert_eq!(ask(&mut s, "GET k\r\n", later(99)), "$1\r\nv\r\n");
        assert_eq!(ask(&mut s, "GET k\r\n", later(100)), "$-1\r\n");
        // Absolute times are Unix milliseconds from the calendar time at
        // accept: 1,000 s plus the time since.
        assert_eq!(
            ask(&mut s, "SET a b PXAT 1000500\r\n", later(200)),
            "+OK\r\n"
        );
        assert_eq!(ask(&mut s, "PEXPIRETIME a\r\n", later(200)), ":1000500\r\n");
        assert_eq!(ask(&mut s, "EXISTS a\r\n", later(499)), ":1\r\n");
        assert_eq!(ask(&mut s, "EXISTS a\r\n", later(500)), ":0\r\n");
    }

    #[test]
    fn a_pipelining_client_that_never_reads_stops_being_read() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let request = "SET key value-of-sixteen\r\n".repeat(20_000);
        s.handle_input(request.as_bytes(), t0);
        // Replies stop at the output bound, and reading stops with the
        // requests still held past their own bound.
        assert!(s.out.len() >= MAX_OUTPUT && s.out.len() < MAX_OUTPUT + 64);
        assert!(s.input.len() >= MAX_PENDING);
        assert!(!s.wants_read());
        // Once the client reads, the rest is answered, in order.
        let mut all = Vec::new();
        while !s.poll_output().is_nothing() {
            let chunk = s.poll_output().bytes().to_vec();
            all.extend_from_slice(&chunk);
            s.consume_output(chunk.len(), t0);
        }
        assert_eq!(all, "+OK\r\n".repeat(20_000).into_bytes());
        assert!(s.wants_read());
    }

    #[test]
    fn bgrewriteaof_and_its_settings_answer_as_redis_does() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(
            ask(&mut s, "BGREWRITEAOF\r\n", t0),
            "-ERR Background append only file rewriting is not possible: the server has no append-only log (start it with --data-dir)\r\n"
        );
        assert_eq!(
            ask(&mut s, "BGREWRITEAOF now\r\n", t0),
            "-ERR wrong number of arguments for 'bgrewriteaof' command\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG SET auto-aof-rewrite-percentage -5\r\n", t0),
            "-ERR CONFIG SET failed (possibly related to argument 'auto-aof-rewrite-percentage') - argument couldn't be parsed into an integer\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG SET auto-aof-rewrite-min-size lots\r\n", t0),
            "-ERR CONFIG SET failed (possibly related to argument 'auto-aof-rewrite-min-size') - argument must be a memory value\r\n"
        );
        // A bad value refuses the whole command.
        assert_eq!(
            ask(
                &mut s,
                "CONFIG SET auto-aof-rewrite-percentage 50 auto-aof-rewrite-min-size x\r\n",
                t0
            ),
            "-ERR CONFIG SET failed (possibly related to argument 'auto-aof-rewrite-min-size') - argument must be a memory value\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG GET auto-aof-rewrite-*\r\n", t0),
            "*4\r\n$25\r\nauto-aof-rewrite-min-size\r\n$8\r\n67108864\r\n$27\r\nauto-aof-rewrite-percentage\r\n$3\r\n100\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG SET auto-aof-rewrite-min-size 1mb\r\n", t0),
            "+OK\r\n"
        );
        assert_eq!(
            ask(&mut s, "CONFIG GET auto-aof-rewrite-min-size\r\n", t0),
            "*2\r\n$25\r\nauto-aof-rewrite-min-size\r\n$7\r\n1048576\r\n"
        );
        assert_eq!(ask(&mut s, "MULTI\r\n", t0), "+OK\r\n");
        assert_eq!(
            ask(&mut s, "BGREWRITEAOF\r\n", t0),
            "-ERR Command not allowed inside a transaction\r\n"
        );
        assert_eq!(
            ask(&mut s, "EXEC\r\n", t0),
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        let info = ask(&mut s, "INFO persistence\r\n", t0);
        for field in [
            "aof_enabled:0",
            "aof_rewrite_in_progress:0",
            "aof_last_bgrewrite_status:ok",
            "aof_rewrites:0",
            "aof_current_size:0",
            "aof_base_size:0",
        ] {
            assert!(info.contains(field), "{field} in {info:?}");
        }
    }

    #[test]
    fn bgrewriteaof_rewrites_the_log_in_the_background() {
        let dir =
            std::env::temp_dir().join(format!("muse-session-bgrewrite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(super::super::store::StoreConfig {
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:6380".parse().unwrap(),
            wall: SystemTime::now(),
        };
        let t0 = Instant::now();
        let store = Arc::new(store);
        let mut s = KvSession::new(Arc::clone(&store), &info, None, None, t0);
        for i in 0..50 {
            assert_eq!(
                ask(&mut s, &format!("SET k{} {i}\r\n", i % 5), t0),
                "+OK\r\n"
            );
        }
        assert_eq!(
            ask(&mut s, "BGREWRITEAOF\r\n", t0),
            "+Background append only file rewriting started\r\n"
        );
        let mut info = String::new();
        for _ in 0..10_000 {
            info = ask(&mut s, "INFO persistence\r\n", t0);
            if info.contains("aof_rewrite_in_progress:0") {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for field in [
            "aof_enabled:1",
            "aof_rewrite_in_progress:0",
            "aof_last_bgrewrite_status:ok",
            "aof_rewrites:1",
        ] {
            assert!(info.contains(field), "{field} in {info:?}");
        }
        drop(s);
        store.close();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_blocked_pop_without_a_waker_answers_as_a_timeout() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(ask(&mut s, "BLPOP q 0\r\n", t0), "*-1\r\n");
        assert_eq!(ask(&mut s, "PING\r\n", t0), "+PONG\r\n");
    }

    #[test]
    fn a_pop_timeout_past_what_the_clock_holds_is_refused() {
        let t0 = Instant::now();
        let mut s = session(t0);
        for timeout in ["1e20", "9223372036854775807", "inf"] {
            for cmd in [
                "BLPOP q",
                "BRPOP q",
                "BRPOPLPUSH q r",
                "BLMOVE q r LEFT RIGHT",
            ] {
                let reply = ask(&mut s, &format!("{cmd} {timeout}\r\n"), t0);
                assert!(
                    reply.starts_with("-ERR timeout is "),
                    "{cmd} {timeout}: {reply}"
                );
            }
        }
        // Thirty million years is waited for.
        assert_eq!(ask(&mut s, "BLPOP q 1e15\r\n", t0), "*-1\r\n");
        assert_eq!(ask(&mut s, "PING\r\n", t0), "+PONG\r\n");
    }
}
