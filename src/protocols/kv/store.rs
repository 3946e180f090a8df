//! The keyspace as a server shares it: the [`Engine`] behind one mutex,
//! the clients blocked on lists, and the server-wide counters `INFO`
//! reports. Every session of one process holds an `Arc<Store>`; the
//! forking architectures run one store in their store process
//! (`companion.rs`), which their workers' sessions reach over a stream.
//!
//! One mutex, not shards: a command holds it for microseconds, multi-key
//! commands and `MULTI`/`EXEC` are atomic for free, and the engine's
//! bookkeeping (watch versions, blocked keys) needs no cross-shard order.
//! With two cores the lock is rarely contended; it is measured in the
//! closing figures of `muse bench kv` against the single-threaded loop.
//!
//! Blocked clients (`BLPOP` and friends) register their [`Waker`] per key.
//! After every command that pushed to a key someone waits on, every waiter
//! of that key is woken; each retries its pop under the lock, so an
//! element goes to exactly one of them and none is lost when a woken
//! client has gone meanwhile.
//!
//! `--maxmemory`: before every command a session asks [`Store::make_room`],
//! which compares the memory in use (the counting allocator's live bytes,
//! less the log's unwritten buffer, as Redis leaves its AOF buffer out)
//! with the limit and, while over it, has the engine evict keys as the
//! policy says, logging each as a `DEL`. It evicts at most
//! [`EVICT_BATCH`] keys per call, as Redis bounds an eviction cycle by
//! time; the next command, or the store's cron, goes on. Under the limit
//! the check is a few relaxed atomic loads, without the lock.

//!
//! # Rewriting the log
//!
//! With a log, [`start_rewrite`] (`BGREWRITEAOF`, or the expiry thread once
//! the log has grown past `auto-aof-rewrite-percentage` over its size after
//! the last rewrite and past `auto-aof-rewrite-min-size`, as Redis does)
//! replaces the log with a snapshot of the keyspace plus what was logged
//! since, without stopping the store for the snapshot's length and without
//! `fork`:
//!
//! 1. Under the lock, in one critical section, the log marks its rewrite
//!    ([`Aof::begin_rewrite`](super::aof::Aof::begin_rewrite): later
//!    records go to the new file's tail too) and the engine takes the
//!    snapshot's instant ([`Engine::begin_rewrite`]). The two coincide, so
//!    snapshot plus tail is exactly the keyspace, with nothing applied
//!    twice.
//! 2. A `kv-rewrite` thread takes turns: lock, one bounded step of the
//!    engine's walk ([`Engine::rewrite_step`]: at most [`STEP_ENTRIES`]
//!    entries or [`STEP_BYTES`] of dumps, plus what commands dumped before
//!    changing keys), unlock, then write those records outside the lock.
//! 3. After the last step (which ends the walk) it hands the file to the
//!    log's writer, which appends the tail, syncs and renames it over the
//!    log ([`Rewrite::finish`](super::aof::Rewrite::finish)).
//!
//! On an I/O error the rewrite is abandoned (its file removed), the walk
//! ended, one warning logged, and the old log goes on; automatic rewrites
//! then wait a while (doubling from a minute up to an hour) before the
//! next try. The lock is held for one step at a time; the engine's module
//! doc has the invariant that keeps the snapshot exact.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::aof::Rewrite;
use super::engine::{Engine, Policy, Step};
use crate::session::Waker;

/// What `INFO` and `CONFIG` report of the server's settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `--requirepass`.
    pub requirepass: Option<Vec<u8>>,
    /// `--maxmemory` in bytes (0: no limit).
    pub maxmemory: u64,
    /// `--maxmemory-policy`.
    pub maxmemory_policy: Policy,
    /// The idle timeout, seconds (0: none), as `CONFIG GET timeout` says.
    pub timeout_secs: u64,
    /// The architecture's name, for `INFO server`.
    pub arch: String,
    /// The port clients reach, for `INFO server`.
    pub port: u16,
    /// `--data-dir`: where the append-only log lives (`None`: no log).
    pub data_dir: Option<std::path::PathBuf>,
    /// `--fsync`.
    pub fsync: super::aof::Fsync,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            requirepass: None,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            timeout_secs: 0,
            arch: String::new(),
            port: 6379,
            data_dir: None,
            fsync: super::aof::Fsync::EverySec,
        }
    }
}

/// A blocked client: its id and its waker.
type Waiter = (u64, Waker);

/// The locked part of the store.
pub struct Inner {
    /// The keyspace.
    pub engine: Engine,
    /// Per `(db, key)`, the clients blocked on it: `(client id, waker)`.
    waiters: HashMap<(usize, Vec<u8>), Vec<Waiter>>,
    /// Settings `CONFIG SET` may change, by name, as strings.
    pub config: HashMap<String, String>,
    /// The durability log, with `--data-dir`. Appended to under this lock,
    /// so its order is the order the commands ran in.
    pub log: Option<super::aof::Aof>,
    /// `maxmemory-samples`: keys sampled per database per eviction.
    pub samples: usize,
    /// The log's rewrites (for `INFO` and the automatic rewrite).
    pub rewrite: RewriteState,
}

/// How the log's rewrites have gone.
#[derive(Clone, Debug)]
pub struct RewriteState {
    /// A rewrite is running.
    pub running: bool,
    /// The last rewrite succeeded (or none has run).
    pub last_ok: bool,
    /// The log's size after the last rewrite, or at open: what the
    /// automatic rewrite measures growth against.
    pub base_size: u64,
    /// Rewrites completed since start.
    pub completed: u64,
    /// What the last completed rewrite did.
    pub last: Option<RewriteReport>,
    /// Failures in a row (automatic rewrites back off).
    failures: u32,
    /// Before this, no automatic rewrite (after a failure).
    retry_at: Option<Instant>,
}

impl Default for RewriteState {
    fn default() -> RewriteState {
        RewriteState {
            running: false,
            last_ok: true,
            base_size: 0,
            completed: 0,
            last: None,
            failures: 0,
            retry_at: None,
        }
    }
}

/// What one rewrite did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RewriteReport {
    /// Keys in the snapshot.
    pub keys: u64,
    /// Records in the snapshot.
    pub records: u64,
    /// Turns of the walk (each one lock hold).
    pub steps: u64,
    /// The longest a turn held the lock.
    pub longest_hold: Duration,
    /// From start to the new log in place.
    pub took: Duration,
}

/// Why a rewrite did not start; the text is the client's error reply.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// No `--data-dir`.
    #[error("ERR Background append only file rewriting is not possible: the server has no append-only log (start it with --data-dir)")]
    NoLog,
    /// One is running.
    #[error("ERR Background append only file rewriting already in progress")]
    Running,
    /// The new file or the thread could not be made.
    #[error("ERR Can't execute an AOF background rewriting: {0}")]
    Io(#[from] io::Error),
}

/// The store's lock, held ([`Store::lock`]).
pub struct Locked<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.log_expired();
    }
}

impl Inner {
    /// Logs a `DEL` for every key that expired since the last call: an
    /// expiry is a change like any other, and its place in the log is
    /// before whatever the command that found the key expired did next.
    pub fn log_expired(&mut self) -> u64 {
        let expired = self.engine.take_expired();
        let Some(log) = &self.log else { return 0 };
        let mut seq = 0;
        for (db, key) in expired {
            seq = log.append(db as u8, &[b"DEL", &key]);
        }
        seq
    }

    /// Logs a change (the command as run, or what it asked to be logged
    /// instead), after the expiries it met; returns the last record's
    /// sequence number (0: no log).
    pub fn log_change(
        &mut self,
        db: usize,
        argv: &[&[u8]],
        propagate: Option<&[Vec<Vec<u8>>]>,
    ) -> u64 {
        self.log_expired();
        let Some(log) = &self.log else { return 0 };
        let db = db as u8;
        match propagate {
            None => log.append(db, argv),
            Some(commands) => {
                let mut seq = 0;
                for c in commands {
                    let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
                    seq = log.append(db, &args);
                }
                seq
            }
        }
    }
}

impl Inner {
    /// Registers client `id` as blocked on `key`.
    pub fn block(&mut self, db: usize, key: &[u8], id: u64, waker: &Waker) {
        self.engine.block_on(db, key);
        self.waiters
            .entry((db, key.to_vec()))
            .or_default()
            .push((id, waker.clone()));
    }

    /// Unregisters client `id` from `key`.
    pub fn unblock(&mut self, db: usize, key: &[u8], id: u64) {
        let k = (db, key.to_vec());
        if let Some(list) = self.waiters.get_mut(&k) {
            if let Some(i) = list.iter().position(|(c, _)| *c == id) {
                list.remove(i);
                self.engine.unblock(db, key);
            }
            if list.is_empty() {
                self.waiters.remove(&k);
            }
        }
    }

    /// Wakes the clients blocked on keys that were pushed to. Called after
    /// every command, under the lock.
    pub fn wake_ready(&mut self) {
        if !self.engine.has_ready() {
            return;
        }
        for k in self.engine.take_ready() {
            if let Some(list) = self.waiters.get(&k) {
                for (_, w) in list {
                    w.wake();
                }
            }
        }
    }

    /// How many clients are blocked.
    pub fn blocked_clients(&self) -> usize {
        let mut ids: Vec<u64> = self.waiters.values().flatten().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// What [`Store::make_room`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Memory is within the limit (or there is none).
    Enough,
    /// Still over the limit after this call's share of evictions; later
    /// calls go on (Redis's `EVICT_RUNNING`: commands are not refused).
    Evicting,
    /// Over the limit with nothing the policy may evict: commands that
    /// may grow memory are refused (Redis's `EVICT_FAIL`).
    Full,
}

/// The most keys one [`Store::make_room`] evicts.
pub const EVICT_BATCH: usize = 256;

/// How a store measures the memory in use, in bytes.
pub type Gauge = Box<dyn Fn() -> u64 + Send + Sync>;

/// A store shared by every session of a process.
pub struct Store {
    inner: Mutex<Inner>,
    /// The server's settings, as given at start (`CONFIG SET` changes
    /// what [`Store::maxmemory`] and [`Store::policy`] answer).
    pub config: StoreConfig,
    /// `maxmemory` now, bytes (0: no limit).
    maxmemory: AtomicU64,
    /// `maxmemory-policy` now ([`Policy::index`]).
    policy: AtomicU8,
    /// The most memory seen in use (`used_memory_peak`), sampled at
    /// commands while a limit is set, by the cron and by `INFO`.
    peak: AtomicU64,
    /// What counts as memory in use.
    gauge: Gauge,
    next_client: AtomicU64,
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Commands run (`INFO stats`).
    pub commands: AtomicU64,
    /// Connections accepted (`INFO stats`).
    pub connections: AtomicU64,
    started: Instant,
    started_wall: SystemTime,
    /// The store is closing: a running rewrite stops.
    closing: AtomicBool,
}

impl Store {
    /// The store with `config`: empty, or, with a data directory, what its
    /// log replays (the directory locked for this process's life).
    pub fn open(config: StoreConfig) -> anyhow::Result<Store> {
        let store = Store::new(config);
        if let Some(dir) = store.config.data_dir.clone() {
            let started = Instant::now();
            let now = unix_ms(SystemTime::now());
            store.lock().engine.set_loading(true);
            let (log, stats) = super::aof::Aof::open(&dir, store.config.fsync, |db, args| {
                let mut inner = store.lock();
                replay(&mut inner.engine, db, args, now)
            })?;
            crate::log::info(format_args!(
                "kv: replayed {} records ({} bytes) from {} in {:.2?}",
                stats.records,
                stats.bytes,
                dir.display(),
                started.elapsed()
            ));
            let mut inner = store.lock();
            inner.engine.set_loading(false);
            inner.engine.log_expiries();
            inner.rewrite.base_size = log.file_size();
            inner.log = Some(log);
        }
        Ok(store)
    }

    /// Writes out and syncs what the log holds (at exit). A running
    /// rewrite is abandoned.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        if let Some(log) = self.lock().log.clone() {
            log.close();
        }
    }

    /// An empty store, measuring memory with the counting allocator if the
    /// program installed one, else the resident set size.
    pub fn new(config: StoreConfig) -> Store {
        Store::with_gauge(config, Box::new(super::memory::used))
    }

    /// An empty store that measures memory with `gauge` (tests give a
    /// fake one).
    pub fn with_gauge(config: StoreConfig, gauge: Gauge) -> Store {
        let mut settings = HashMap::new();
        for (k, v) in default_settings(&config) {
            settings.insert(k.to_string(), v);
        }
        let mut engine = Engine::new();
        engine.set_policy(config.maxmemory_policy);
        Store {
            inner: Mutex::new(Inner {
                engine,
                waiters: HashMap::new(),
                config: settings,
                log: None,
                samples: super::engine::DEFAULT_SAMPLES,
                rewrite: RewriteState::default(),
            }),
            maxmemory: AtomicU64::new(config.maxmemory),
            policy: AtomicU8::new(config.maxmemory_policy.index()),
            peak: AtomicU64::new(0),
            gauge,
            config,
            next_client: AtomicU64::new(1),
            clients: AtomicUsize::new(0),
            commands: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            closing: AtomicBool::new(false),
        }
    }

    /// Locks the keyspace. A session that panicked while holding the lock
    /// left the engine as it was at some command boundary or mid-command;
    /// the store goes on with it rather than failing every later client.
    ///
    /// Keys that expired while it was held are logged as `DEL`s when it is
    /// let go (or sooner, before any other record: [`Inner::log_change`]).
    pub fn lock(&self) -> Locked<'_> {
        Locked(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new client id (`CLIENT ID`), counting the connection.
    pub fn new_client(&self) -> u64 {
        self.clients.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// A client left.
    pub fn client_gone(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Seconds since the store started (`INFO server`).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the store started, Unix seconds.
    pub fn started_unix(&self) -> u64 {
        self.started_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Runs one round of active expiry (the store's own thread calls it
    /// ten times a second, as Redis's cron does).
    pub fn active_expire(&self, now_ms: u64) -> usize {
        let mut inner = self.lock();
        inner.engine.active_expire(now_ms, 200)
    }

    /// The store's cron (ten times a second): active expiry, the peak of
    /// memory in use, then the evictions commands left to do, if memory
    /// is still over the limit.
    pub fn cron(&self, now_ms: u64) {
        self.active_expire(now_ms);
        self.used_memory();
        self.make_room(now_ms);
    }

    /// `maxmemory` now, bytes (0: no limit).
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// `maxmemory-policy` now.
    pub fn policy(&self) -> Policy {
        Policy::from_index(self.policy.load(Ordering::Relaxed))
    }

    /// Sets `maxmemory` (`CONFIG SET`); takes effect at the next command.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
    }

    /// Sets `maxmemory-policy` (`CONFIG SET`), the lock held.
    pub fn set_policy(&self, inner: &mut Inner, policy: Policy) {
        inner.engine.set_policy(policy);
        self.policy.store(policy.index(), Ordering::Relaxed);
    }

    /// Memory in use, bytes, as the gauge says (the log's buffer
    /// included), noting the peak.
    pub fn used_memory(&self) -> u64 {
        let used = (self.gauge)();
        if used > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(used, Ordering::Relaxed);
        }
        used
    }

    /// The most memory seen in use.
    pub fn peak_memory(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Before a command: whether memory is within `maxmemory`, evicting
    /// as the policy says while it is not (at most [`EVICT_BATCH`] keys).
    /// Without a limit, or under it, no lock is taken.
    pub fn make_room(&self, now_ms: u64) -> Room {
        let max = self.maxmemory();
        if max == 0 || self.used_memory() <= max {
            return Room::Enough;
        }
        let mut inner = self.lock();
        self.make_room_locked(&mut inner, max, now_ms)
    }

    fn make_room_locked(&self, inner: &mut Inner, max: u64, now_ms: u64) -> Room {
        // The log's unwritten records are not the dataset (Redis leaves its
        // AOF buffer out likewise), and each eviction adds one.
        let over = |inner: &Inner| {
            let backlog = inner.log.as_ref().map_or(0, |l| l.backlog() as u64);
            self.used_memory().saturating_sub(backlog) > max
        };
        if !over(inner) {
            return Room::Enough;
        }
        if self.policy() == Policy::NoEviction {
            return Room::Full;
        }
        let samples = inner.samples;
        for _ in 0..EVICT_BATCH {
            let Some((db, key)) = inner.engine.evict(samples, now_ms) else {
                return Room::Full;
            };
            inner.log_change(db, &[b"DEL", &key], None);
            if !over(inner) {
                return Room::Enough;
            }
        }
        Room::Evicting
    }
    /// The snapshot's instant of a rewrite: the log marks it and the
    /// engine starts its walk, in one critical section.
    fn begin_rewrite(&self) -> Result<Rewrite, RewriteError> {
        let mut inner = self.lock();
        let Some(log) = inner.log.clone() else {
            return Err(RewriteError::NoLog);
        };
        if inner.rewrite.running || inner.engine.rewriting() {
            return Err(RewriteError::Running);
        }
        let rewrite = log.begin_rewrite()?;
        inner.engine.begin_rewrite();
        inner.rewrite.running = true;
        Ok(rewrite)
    }

    /// One turn of a rewrite's walk: lock, one step of at most `entries`
    /// entries, unlock. Returns the step and how long the lock was held.
    fn rewrite_turn(&self, entries: usize) -> (Step, Duration) {
        let mut inner = self.lock();
        let started = Instant::now();
        let step = inner.engine.rewrite_step(entries, STEP_BYTES);
        let held = started.elapsed();
        drop(inner);
        (step, held)
    }

    /// Records how a rewrite ended, ending its walk if it is still going.
    fn rewrite_ended(&self, result: &io::Result<RewriteReport>) {
        let mut inner = self.lock();
        let leftovers = inner.engine.abort_rewrite();
        let size = inner.log.as_ref().map_or(0, |l| l.file_size());
        let state = &mut inner.rewrite;
        state.running = false;
        match result {
            Ok(report) => {
                state.last_ok = true;
                state.completed += 1;
                state.base_size = size;
                state.last = Some(*report);
                state.failures = 0;
                state.retry_at = None;
            }
            Err(_) => {
                state.last_ok = false;
                state.failures = state.failures.saturating_add(1);
                let wait = RETRY_FIRST
                    .saturating_mul(1 << state.failures.min(7).saturating_sub(1))
                    .min(RETRY_MOST);
                state.retry_at = Some(Instant::now() + wait);
            }
        }
        drop(inner);
        // The dumps and flushed databases a failed walk still held are
        // freed without the lock.
        drop(leftovers);
    }
}

/// The most entries one turn of a rewrite's walk looks at.
pub const STEP_ENTRIES: usize = 1000;

/// A turn of a rewrite's walk stops once it has dumped this many bytes.
pub const STEP_BYTES: usize = 1 << 20;

/// After a failed rewrite, automatic ones wait this long, doubling with
/// each failure in a row ...
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// ... up to this.
const RETRY_MOST: Duration = Duration::from_secs(3600);

/// The settings of the automatic rewrite, and their defaults (Redis's).
pub const AUTO_PERCENTAGE: &str = "auto-aof-rewrite-percentage";
/// See [`AUTO_PERCENTAGE`].
pub const AUTO_MIN_SIZE: &str = "auto-aof-rewrite-min-size";
const AUTO_PERCENTAGE_DEFAULT: u64 = 100;
const AUTO_MIN_SIZE_DEFAULT: u64 = 64 << 20;

/// Starts a rewrite of the log in the background (`BGREWRITEAOF`): the
/// snapshot's instant now, the rest on a `kv-rewrite` thread.
pub fn start_rewrite(store: &Arc<Store>) -> Result<(), RewriteError> {
    let rewrite = match store.begin_rewrite() {
        Ok(r) => r,
        Err(RewriteError::Io(e)) => {
            crate::log::warn(format_args!("kv: cannot start a rewrite of the log: {e}"));
            store.rewrite_ended(&Err(io::Error::new(e.kind(), e.to_string())));
            return Err(RewriteError::Io(e));
        }
        Err(e) => return Err(e),
    };
    let thread_store = Arc::clone(store);
    let spawned = std::thread::Builder::new()
        .name("kv-rewrite".into())
        .spawn(move || run_rewrite(&thread_store, rewrite));
    if let Err(e) = spawned {
        // The rewrite went down with the closure: its file is removed.
        let result = Err(io::Error::new(e.kind(), e.to_string()));
        store.rewrite_ended(&result);
        crate::log::warn(format_args!("kv: cannot start the rewrite thread: {e}"));
        return Err(RewriteError::Io(e));
    }
    Ok(())
}

/// The rewrite thread: the walk's turns, then the new log installed.
fn run_rewrite(store: &Store, rewrite: Rewrite) {
    let result = write_snapshot(store, rewrite);
    match &result {
        Ok(r) => crate::log::info(format_args!(
            "kv: rewrote the log: {} keys in {} records, in {:.2?}; {} turns, the longest held the lock {:.2?}",
            r.keys, r.records, r.took, r.steps, r.longest_hold
        )),
        Err(_) if store.closing.load(Ordering::Relaxed) => {
            crate::log::info(format_args!("kv: a log rewrite was abandoned at exit"));
        }
        Err(e) => crate::log::warn(format_args!(
            "kv: the log rewrite failed, the old log stays in use: {e}"
        )),
    }
    store.rewrite_ended(&result);
}

/// Walks the keyspace turn by turn, writing each turn's records outside
/// the lock, then installs the new log. On an error the rewrite is
/// abandoned (its file removed).
fn write_snapshot(store: &Store, mut rewrite: Rewrite) -> io::Result<RewriteReport> {
    let started = Instant::now();
    let mut report = RewriteReport::default();
    loop {
        if store.closing.load(Ordering::Relaxed) {
            rewrite.abort();
            return Err(io::Error::other("the store is closing"));
        }
        let (step, held) = store.rewrite_turn(STEP_ENTRIES);
        report.steps += 1;
        report.longest_hold = report.longest_hold.max(held);
        report.keys += step.dump.keys() as u64;
        report.records += step.dump.records() as u64;
        if let Err(e) = step.dump.each(|db, args| rewrite.write(db, args)) {
            rewrite.abort();
            return Err(e);
        }
        if step.done {
            rewrite.finish()?;
            report.took = started.elapsed();
            return Ok(report);
        }
    }
}

/// Whether the log has grown enough for an automatic rewrite: past
/// `min_size`, and by at least `percentage` % over `base` (Redis's rule;
/// a percentage of 0 turns it off).
pub fn rewrite_due(size: u64, base: u64, percentage: u64, min_size: u64) -> bool {
    if percentage == 0 || size <= min_size {
        return false;
    }
    let base = u128::from(base.max(1));
    let growth = (u128::from(size) * 100 / base).saturating_sub(100);
    growth >= u128::from(percentage)
}

/// Starts an automatic rewrite if the log is due one (the expiry thread
/// asks ten times a second). Returns whether it started one.
pub fn maybe_rewrite(store: &Arc<Store>, now: Instant) -> bool {
    let (size, base) = {
        let inner = store.lock();
        let Some(log) = &inner.log else {
            return false;
        };
        let state = &inner.rewrite;
        if state.running || state.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        let percentage = setting(&inner.config, AUTO_PERCENTAGE, AUTO_PERCENTAGE_DEFAULT);
        let min_size = setting(&inner.config, AUTO_MIN_SIZE, AUTO_MIN_SIZE_DEFAULT);
        let (size, base) = (log.file_size(), state.base_size);
        if !rewrite_due(size, base, percentage, min_size) {
            return false;
        }
        (size, base)
    };
    match start_rewrite(store) {
        Ok(()) => {
            crate::log::info(format_args!(
                "kv: the log has grown from {base} to {size} bytes: rewriting it"
            ));
            true
        }
        Err(RewriteError::Running) => false,
        Err(e) => {
            crate::log::warn(format_args!("kv: {e}"));
            false
        }
    }
}

/// A numeric setting as `CONFIG SET` left it (validated there).
fn setting(config: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    config
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Checks a value `CONFIG SET` gives a setting that needs one of a kind,
/// returning it as `CONFIG GET` will show it, or the error reply.
pub fn check_setting(name: &str, value: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(value);
    match name {
        AUTO_PERCENTAGE => super::cmd::parse_i64(value)
            .filter(|v| (0..=i64::from(i32::MAX)).contains(v))
            .map(|v| v.to_string())
            .ok_or_else(|| {
                format!("ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer")
            }),
        AUTO_MIN_SIZE => std::str::from_utf8(value)
            .ok()
            .and_then(super::engine::parse_memory)
            .map(|v| v.to_string())
            .ok_or_else(|| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be a memory value")
        }),
        _ => Ok(text.into_owned()),
    }
}

/// Runs one logged command against `engine` (replay at start).
fn replay(engine: &mut Engine, db: u8, args: &[&[u8]], now: u64) -> anyhow::Result<()> {
    let db = usize::from(db);
    anyhow::ensure!(
        db < super::engine::DATABASES && !args.is_empty(),
        "a record for database {db} with {} arguments",
        args.len()
    );
    let Some(command) = super::cmd::lookup(args[0]) else {
        anyhow::bail!(
            "a record of an unknown command {:?}",
            String::from_utf8_lossy(args[0])
        );
    };
    anyhow::ensure!(
        command.arity_ok(args.len()),
        "a record of {} with {} arguments",
        command.name,
        args.len()
    );
    let mut sink = Vec::new();
    super::cmd::run(engine, command, args, db, now, &mut sink, false);
    Ok(())
}

/// How often the active expiry cycle runs.
pub const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// Starts the thread that runs the store's cron (active expiry, eviction)
/// until the process exits. It also starts the automatic rewrite of the
/// log when it is due.
pub fn start_expiry(store: &Arc<Store>) -> std::io::Result<()> {
    let store = Arc::clone(store);
    std::thread::Builder::new()
        .name("kv-expire".into())
        .spawn(move || loop {
            std::thread::sleep(EXPIRE_EVERY);
            store.cron(unix_ms(SystemTime::now()));
            maybe_rewrite(&store, Instant::now());
        })?;
    Ok(())
}

/// A calendar time as Unix milliseconds.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The settings `CONFIG GET` shows: the ones muse uses, and Redis's
/// encoding and persistence tunables that tools read or set (accepted and
/// shown; muse's encodings are its own).
fn default_settings(config: &StoreConfig) -> Vec<(&'static str, String)> {
    vec![
        (
            "requirepass",
            config
                .requirepass
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        ),
        ("maxmemory", config.maxmemory.to_string()),
        (
            "maxmemory-policy",
            config.maxmemory_policy.name().to_string(),
        ),
        (
            "maxmemory-samples",
            super::engine::DEFAULT_SAMPLES.to_string(),
        ),
        ("timeout", config.timeout_secs.to_string()),
        ("port", config.port.to_string()),
        ("databases", super::engine::DATABASES.to_string()),
        ("maxclients", "10000".into()),
        ("save", String::new()),
        (
            "appendonly",
            if config.data_dir.is_some() {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
        ("appendfsync", config.fsync.to_string()),
        (AUTO_PERCENTAGE, AUTO_PERCENTAGE_DEFAULT.to_string()),
        (AUTO_MIN_SIZE, AUTO_MIN_SIZE_DEFAULT.to_string()),
        ("proto-max-bulk-len", super::resp::MAX_BULK.to_string()),
        ("client-query-buffer-limit", "1073741824".into()),
        ("hash-max-listpack-entries", "128".into()),
        ("hash-max-listpack-value", "64".into()),
        ("hash-max-ziplist-entries", "128".into()),
        ("hash-max-ziplist-value", "64".into()),
        ("list-max-listpack-size", "-2".into()),
        ("list-max-ziplist-size", "-2".into()),
        ("list-compress-depth", "0".into()),
        ("set-max-intset-entries", "512".into()),
        ("set-max-listpack-entries", "128".into()),
        ("set-max-listpack-value", "64".into()),
        ("zset-max-listpack-entries", "128".into()),
        ("zset-max-listpack-value", "64".into()),
        ("zset-max-ziplist-entries", "128".into()),
        ("zset-max-ziplist-value", "64".into()),
        ("lazyfree-lazy-user-del", "no".into()),
        ("lazyfree-lazy-user-flush", "no".into()),
        ("notify-keyspace-events", String::new()),
        ("hz", "10".into()),
        ("lua-time-limit", "5000".into()),
        ("slowlog-log-slower-than", "10000".into()),
        ("slowlog-max-len", "128".into()),
        ("tcp-keepalive", "300".into()),
        ("bind", "127.0.0.1".into()),
        ("protected-mode", "no".into()),
        (
            "dir",
            config
                .data_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        ("dbfilename", "dump.rdb".into()),
        ("appendfilename", "appendonly.muse".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::kv::aof::{Aof, Fsync, REWRITE_NAME};
    use crate::protocols::kv::engine::testing::{apply, keyspace};
    use crate::protocols::kv::engine::Value;
    use proptest::prelude::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    /// The clock of the tests that replay: nothing expires while they run.
    const NOW: u64 = 1_700_000_000_000;

    /// A directory of its own under the system's temp directory, removed
    /// when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("muse-rewrite-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store with a log in `dir`.
    fn open(dir: &TempDir) -> Arc<Store> {
        Arc::new(
            Store::open(StoreConfig {
                data_dir: Some(dir.0.clone()),
                fsync: Fsync::No,
                ..StoreConfig::default()
            })
            .unwrap(),
        )
    }

    /// Runs a command as a session does: under the lock, logged if it
    /// changed anything.
    /// Returns the sequence number of its last record (0: none).
    fn run(store: &Store, db: usize, args: &[&[u8]], now: u64) -> u64 {
        let mut inner = store.lock();
        let done = apply(&mut inner.engine, db, args, now);
        if done.changed > 0 {
            inner.log_change(db, args, done.propagate.as_deref())
        } else {
            0
        }
    }

    fn run_line(store: &Store, db: usize, line: &str) -> u64 {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        run(store, db, &args, NOW)
    }

    /// The log file's size once the writer thread has written record
    /// `seq` and all before it (it writes behind the commands).
    fn written_size(store: &Store, seq: u64) -> u64 {
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = store.lock();
        let log = inner.log.as_ref().expect("a log");
        log.when_durable(
            seq,
            Box::new(move || {
                let _ = tx.send(());
            }),
        );
        drop(inner);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the writer wrote the records");
        store.lock().log.as_ref().expect("a log").file_size()
    }

    /// Closes the store's log and replays the file into a fresh engine at
    /// `now`, as a restart does.
    fn replay_file(store: Arc<Store>, dir: &TempDir, now: u64) -> Engine {
        store.close();
        drop(store);
        let mut engine = Engine::new();
        engine.set_loading(true);
        let (log, _) = Aof::open(&dir.0, Fsync::No, |db, args| {
            replay(&mut engine, db, args, now)
        })
        .unwrap();
        log.close();
        engine.set_loading(false);
        engine
    }

    /// One turn written to `rewrite` and replayed into `snapshot`.
    fn turn(
        store: &Store,
        rewrite: &mut Rewrite,
        budget: usize,
        snapshot: &mut Engine,
        keys: &mut Vec<(u8, Vec<u8>)>,
    ) -> bool {
        let (step, _) = store.rewrite_turn(budget);
        crate::protocols::kv::engine::testing::dumped_keys(&step.dump, keys);
        step.dump
            .each(|db, args| {
                apply(snapshot, usize::from(db), args, NOW);
                rewrite.write(db, args)
            })
            .unwrap();
        step.done
    }

    /// A command of the random sequences: keys from a small pool in four
    /// databases, so that commands meet the same keys often.
    fn command() -> impl Strategy<Value = (usize, Vec<String>)> {
        let key = || (0..6u8).prop_map(|k| format!("k{k}"));
        let val = || prop_oneof!["[a-c]{0,3}", (0..100i32).prop_map(|n| n.to_string())];
        let db = 0..4usize;
        let cmd = prop_oneof![
            (key(), val()).prop_map(|(k, v)| vec!["SET".into(), k, v]),
            (key(), val(), 1..1000u32).prop_map(|(k, v, s)| vec![
                "SET".into(),
                k,
                v,
                "EX".into(),
                s.to_string()
            ]),
            key().prop_map(|k| vec!["INCR".into(), k]),
            (key(), val()).prop_map(|(k, v)| vec!["APPEND".into(), k, v]),
            (key(), 1..80usize).prop_map(|(k, n)| {
                let mut c = vec!["RPUSH".into(), k];
                c.extend((0..n).map(|i| format!("e{i}")));
                c
            }),
            key().prop_map(|k| vec!["LPOP".into(), k]),
            (key(), val(), val()).prop_map(|(k, f, v)| vec!["HSET".into(), k, f, v]),
            (key(), val()).prop_map(|(k, f)| vec!["HDEL".into(), k, f]),
            (key(), proptest::collection::vec(val(), 1..70)).prop_map(|(k, ms)| {
                let mut c = vec!["SADD".into(), k];
                c.extend(ms);
                c
            }),
            (key(), val()).prop_map(|(k, m)| vec!["SREM".into(), k, m]),
            key().prop_map(|k| vec!["SPOP".into(), k]),
            key().prop_map(|k| vec!["DEL".into(), k]),
            (key(), key()).prop_map(|(a, b)| vec!["RENAME".into(), a, b]),
            (key(), 0..4u8).prop_map(|(k, d)| vec!["MOVE".into(), k, d.to_string()]),
            (key(), key(), 0..4u8).prop_map(|(a, b, d)| vec![
                "COPY".into(),
                a,
                b,
                "DB".into(),
                d.to_string(),
                "REPLACE".into()
            ]),
            Just(vec!["FLUSHDB".to_string()]),
            (0..4u8, 0..4u8).prop_map(|(a, b)| vec!["SWAPDB".into(), a.to_string(), b.to_string()]),
            (key(), 1..1000u32).prop_map(|(k, s)| vec!["EXPIRE".into(), k, s.to_string()]),
            key().prop_map(|k| vec!["PEXPIREAT".into(), k, (NOW - 5).to_string()]),
            key().prop_map(|k| vec!["PERSIST".into(), k]),
            (key(), val(), key(), val()).prop_map(|(a, x, b, y)| vec!["MSET".into(), a, x, b, y]),
            (key(), key(), key()).prop_map(|(d, a, b)| vec!["SUNIONSTORE".into(), d, a, b]),
        ];
        (db, cmd)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Command(usize, Vec<String>),
        /// A turn of the walk looking at this many entries.
        Turn(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => command().prop_map(|(db, c)| Op::Command(db, c)),
            1 => (1..4usize).prop_map(Op::Turn),
        ]
    }

    /// The keyspace after `before`, a rewrite begun, `during` interleaved
    /// with the walk's turns, and the rest of the walk: checks that the
    /// snapshot is the keyspace at the rewrite's start with each key once,
    /// and that the new log replays to the live keyspace.
    fn check_rewrite(before: &[(usize, Vec<String>)], during: &[Op]) {
        let dir = TempDir::new("prop");
        let store = open(&dir);
        for (db, c) in before {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
            run(&store, *db, &args, NOW);
        }
        let mut rewrite = store.begin_rewrite().unwrap();
        let at_s = keyspace(&store.lock().engine, NOW);
        let mut snapshot = Engine::new();
        let mut keys = Vec::new();
        let mut done = false;
        for op in during {
            match op {
                Op::Command(db, c) => {
                    let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
                    run(&store, *db, &args, NOW);
                }
                Op::Turn(n) if !done => {
                    done = turn(&store, &mut rewrite, *n, &mut snapshot, &mut keys);
                }
                Op::Turn(_) => {}
            }
        }
        while !done {
            done = turn(&store, &mut rewrite, 5, &mut snapshot, &mut keys);
        }
        rewrite.finish().unwrap();
        let live = keyspace(&store.lock().engine, NOW);

        assert_eq!(
            keyspace(&snapshot, NOW),
            at_s,
            "the snapshot is the keyspace at S"
        );
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len(), "a key dumped twice: {keys:?}");
        assert_eq!(keys.len(), at_s.len(), "a key made during the walk dumped");

        let replayed = replay_file(store, &dir, NOW);
        assert_eq!(
            keyspace(&replayed, NOW),
            live,
            "the new log replays to the live keyspace"
        );
        assert!(!dir.0.join(REWRITE_NAME).exists());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn a_rewrite_under_random_changes_replays_to_the_live_keyspace(
            before in proptest::collection::vec(command(), 0..80),
            during in proptest::collection::vec(op(), 0..120),
        ) {
            check_rewrite(&before, &during);
        }
    }

    #[test]
    fn a_rewrite_under_every_kind_of_change_replays_to_the_live_keyspace() {
        let lines = |v: &[(usize, &str)]| -> Vec<(usize, Vec<String>)> {
            v.iter()
                .map(|(db, l)| (*db, l.split(' ').map(String::from).collect()))
                .collect()
        };
        let mut before = Vec::new();
        for db in 0..3 {
            for i in 0..30 {
                before.push((db, format!("SET s{i} {i}")));
                before.push((db, format!("RPUSH l{i} a b c")));
                before.push((db, format!("HSET h{i} f v")));
                before.push((db, format!("SADD t{i} x y")));
            }
            before.push((db, "EXPIRE s3 1000".to_string()));
        }
        let before: Vec<(usize, &str)> = before.iter().map(|(d, l)| (*d, l.as_str())).collect();
        let before = lines(&before);
        let during: Vec<Op> = lines(&[
            (0, "INCR s1"),
            (0, "APPEND s2 x"),
            (1, "RPUSH l1 d"),
            (1, "DEL s5"),
            (2, "RENAME h2 h2b"),
            (0, "EXPIRE t4 100"),
            (2, "FLUSHDB"),
            (2, "SET new 1"),
            (0, "SWAPDB 0 1"),
            (1, "INCR s1"),
            (0, "SET born 1"),
            (0, "INCR born"),
        ])
        .into_iter()
        .flat_map(|(db, c)| [Op::Turn(17), Op::Command(db, c)])
        .collect();
        check_rewrite(&before, &during);
    }

    #[test]
    fn the_rewrite_thread_replaces_the_log_while_clients_write() {
        let dir = TempDir::new("thread");
        let store = open(&dir);
        // The same keys overwritten many times: a log much longer than
        // its snapshot.
        let mut seq = 0;
        for round in 0..20 {
            for i in 0..500 {
                seq = run_line(&store, i % 3, &format!("SET k{i} r{round}"));
            }
        }
        let before = written_size(&store, seq);
        start_rewrite(&store).unwrap();
        assert!(matches!(
            start_rewrite(&store),
            Err(RewriteError::Running) | Ok(())
        ));
        // A client writing meanwhile: a fixed amount, 400 records however
        // long the rewrite takes, so that the sizes below do not depend on
        // the machine's speed.
        let mut n = 0;
        let mut waited = 0;
        while store.lock().rewrite.running || n < 200 {
            if n < 200 {
                seq = seq.max(run_line(&store, 1, &format!("RPUSH during {n}")));
                seq = seq.max(run_line(&store, 0, &format!("INCR k{}", n % 500)));
                n += 1;
            } else {
                std::thread::sleep(Duration::from_millis(1));
                waited += 1;
                assert!(waited < 60_000, "the rewrite never ended");
            }
        }
        let state = store.lock().rewrite.clone();
        assert!(state.last_ok && state.completed == 1, "{state:?}");
        let report = state.last.unwrap();
        assert_eq!(report.keys, 500);
        let after = written_size(&store, seq);
        assert!(after < before / 4, "{after} bytes after, {before} before");
        // The writer may still have been writing the last records.
        assert!(state.base_size <= after && state.base_size < before / 4);
        let live = keyspace(&store.lock().engine, NOW);
        let replayed = replay_file(store, &dir, NOW);
        assert_eq!(keyspace(&replayed, NOW), live);
    }

    #[test]
    fn a_failed_rewrite_keeps_the_old_log_and_says_so() {
        let dir = TempDir::new("fail");
        let store = open(&dir);
        for i in 0..100 {
            run_line(&store, 0, &format!("SET k{i} {i}"));
        }
        let rewrite = store.begin_rewrite().unwrap();
        assert!(store.lock().engine.rewriting());
        // The new file vanishes: installing it fails.
        std::fs::remove_file(dir.0.join(REWRITE_NAME)).unwrap();
        run_line(&store, 0, "SET k1 changed");
        let err = start_rewrite(&store).unwrap_err();
        assert!(matches!(err, RewriteError::Running));
        assert_eq!(
            err.to_string(),
            "ERR Background append only file rewriting already in progress"
        );
        let result = write_snapshot(&store, rewrite);
        assert!(result.is_err());
        store.rewrite_ended(&result);
        {
            let inner = store.lock();
            assert!(!inner.engine.rewriting());
            assert!(!inner.rewrite.running && !inner.rewrite.last_ok);
            assert_eq!(inner.rewrite.completed, 0);
            assert!(inner.rewrite.retry_at.is_some());
        }
        // The automatic rewrite waits; a manual one may run.
        assert!(!maybe_rewrite(&store, Instant::now()));
        run_line(&store, 0, "SET k2 after");
        let live = keyspace(&store.lock().engine, NOW);
        let replayed = replay_file(store, &dir, NOW);
        assert_eq!(keyspace(&replayed, NOW), live);
    }

    #[test]
    fn a_replay_later_than_the_expiries_ends_where_the_server_was() {
        let dir = TempDir::new("expiry");
        let store = open(&dir);
        let at = |ms: u64| NOW + ms;
        // `k` expires at +5 ms; a later INCR finds it gone and starts
        // again from 0 (the expiry is logged before the INCR).
        run_line(&store, 0, &format!("SET k 2 PXAT {}", at(5)));
        run(&store, 0, &[b"INCR", b"k"], at(10));
        // `gone` expires and is only looked at: its DEL is logged when the
        // lock is let go.
        run_line(&store, 0, &format!("SET gone x PXAT {}", at(5)));
        run(&store, 0, &[b"GET", b"gone"], at(10));
        // `later` gets an expiry still to come, and a change before it.
        run_line(&store, 0, "SET later 1");
        run(&store, 0, &[b"PEXPIRE", b"later", b"50"], at(10));
        run(&store, 0, &[b"INCR", b"later"], at(20));
        let live = keyspace(&store.lock().engine, at(30));
        assert_eq!(live.len(), 2, "{live:?}");
        // Replayed long after every expiry: the same keys, the same values
        // (`later` keeps its expiry, past by then, for lazy expiry to end).
        let replayed = replay_file(store, &dir, at(60_000));
        assert_eq!(keyspace(&replayed, at(30)), live);
        let k = replayed.db(0).map.get(&b"k"[..]).expect("k");
        assert_eq!(k.value, Value::Str(b"1".to_vec()));
        assert_eq!(k.expires(), None);
        assert!(replayed.db(0).map.get(&b"gone"[..]).is_none());
    }

    #[test]
    fn an_automatic_rewrite_starts_once_the_log_has_grown_enough() {
        assert!(!rewrite_due(100, 100, 100, 0));
        assert!(rewrite_due(200, 100, 100, 0));
        assert!(!rewrite_due(199, 100, 100, 0));
        assert!(
            !rewrite_due(200, 100, 100, 200),
            "not past the minimum size"
        );
        assert!(!rewrite_due(u64::MAX, 1, 0, 0), "0 % turns it off");
        assert!(rewrite_due(u64::MAX, 0, 100, 0));

        let dir = TempDir::new("auto");
        let store = open(&dir);
        store
            .lock()
            .config
            .insert(AUTO_MIN_SIZE.into(), "1000".into());
        let base = store.lock().rewrite.base_size;
        assert_eq!(base, crate::protocols::kv::aof::MAGIC.len() as u64);
        assert!(!maybe_rewrite(&store, Instant::now()));
        for i in 0..100 {
            run_line(&store, 0, &format!("SET k{} {i}", i % 10));
        }
        // The size counts what the writer has written.
        let log = store.lock().log.clone().unwrap();
        let mut waited = 0;
        while log.backlog() > 0 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
            assert!(waited < 10_000);
        }
        assert!(maybe_rewrite(&store, Instant::now()));
        let mut waited = 0;
        while store.lock().rewrite.running {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
            assert!(waited < 10_000);
        }
        let state = store.lock().rewrite.clone();
        assert_eq!(state.completed, 1);
        assert_eq!(state.base_size, log.file_size());
        // Grown by less than 100 % since: not due.
        assert!(!maybe_rewrite(&store, Instant::now()));
        store.close();
    }

    #[test]
    fn settings_are_checked_and_shown_as_redis_shows_them() {
        assert_eq!(check_setting(AUTO_PERCENTAGE, b"50"), Ok("50".into()));
        assert!(check_setting(AUTO_PERCENTAGE, b"-1").is_err());
        assert!(check_setting(AUTO_PERCENTAGE, b"x").is_err());
        assert_eq!(check_setting(AUTO_MIN_SIZE, b"64mb"), Ok("67108864".into()));
        assert_eq!(check_setting(AUTO_MIN_SIZE, b"1K"), Ok("1000".into()));
        assert_eq!(check_setting(AUTO_MIN_SIZE, b"12"), Ok("12".into()));
        let err = check_setting(AUTO_MIN_SIZE, b"12xb").unwrap_err();
        assert!(err.contains("argument must be a memory value"), "{err}");
        assert!(check_setting(AUTO_MIN_SIZE, b"").is_err());
        assert!(check_setting(AUTO_MIN_SIZE, b"99999999999999999999gb").is_err());
        assert_eq!(super::super::engine::parse_memory("2GB"), Some(2 << 30));
        assert_eq!(
            check_setting("maxclients", b"anything"),
            Ok("anything".into())
        );
    }

    #[test]
    fn without_a_log_there_is_nothing_to_rewrite() {
        let store = Arc::new(Store::new(StoreConfig::default()));
        let err = start_rewrite(&store).unwrap_err();
        assert!(matches!(err, RewriteError::NoLog));
        assert!(err.to_string().contains("--data-dir"));
        assert!(!maybe_rewrite(&store, Instant::now()));
        assert!(!store.lock().engine.rewriting());
    }

    /// Measures a rewrite of a million small keys (and the longest lock
    /// hold of its turns, and the longest command of a client writing
    /// meanwhile), then the replay of the new log at start. Run with
    /// `cargo test --release --lib rewrite_of_a_million_keys -- --ignored
    /// --nocapture`; it reports, asserts no timing.
    #[test]
    #[ignore]
    fn rewrite_of_a_million_keys() {
        let dir = TempDir::new("million");
        let store = open(&dir);
        {
            let mut inner = store.lock();
            for i in 0..1_000_000u32 {
                let key = format!("key:{i}");
                inner
                    .engine
                    .set(0, key.as_bytes(), Value::Str(b"value".to_vec()));
            }
        }
        // A client's SETs for a while without a rewrite, for comparison.
        let baseline = {
            let mut lat = Vec::new();
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                let t = Instant::now();
                run_line(&store, 1, "SET other x");
                lat.push(t.elapsed());
            }
            lat
        };
        let started = Instant::now();
        start_rewrite(&store).unwrap();
        let mut during = Vec::new();
        while store.lock().rewrite.running {
            let t = Instant::now();
            run_line(
                &store,
                0,
                &format!("SET key:{} changed", during.len() % 1_000_000),
            );
            during.push(t.elapsed());
        }
        let took = started.elapsed();
        let state = store.lock().rewrite.clone();
        assert!(state.last_ok);
        let report = state.last.unwrap();
        let size = store.lock().log.as_ref().unwrap().file_size();
        let summary = |mut lat: Vec<Duration>| {
            lat.sort();
            let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
            format!(
                "{} SETs, p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}, {} over 1 ms",
                lat.len(),
                at(0.5),
                at(0.99),
                at(0.999),
                lat[lat.len() - 1],
                lat.iter()
                    .filter(|d| **d > Duration::from_millis(1))
                    .count()
            )
        };
        eprintln!(
            "rewrite of {} keys: {:.3} s ({} records, {} bytes); {} turns, longest lock hold {:?}",
            report.keys,
            took.as_secs_f64(),
            report.records,
            size,
            report.steps,
            report.longest_hold,
        );
        eprintln!("a client meanwhile: {}", summary(during));
        eprintln!("the same client without a rewrite: {}", summary(baseline));
        store.close();
        drop(store);
        let started = Instant::now();
        let store = open(&dir);
        eprintln!(
            "replay of the rewritten log at start: {:.3} s for {} keys",
            started.elapsed().as_secs_f64(),
            store.lock().engine.len(0)
        );
        assert_eq!(store.lock().engine.len(0), 1_000_000);
    }

    fn keys(store: &Store) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = store.lock().engine.db(0).map.keys().cloned().collect();
        k.sort();
        k
    }

    /// A gauge that reads twice `max` while `over` is set, half of it
    /// otherwise.
    fn switch(over: &Arc<AtomicBool>, max: u64) -> Gauge {
        let over = Arc::clone(over);
        Box::new(move || {
            if over.load(Ordering::Relaxed) {
                max * 2
            } else {
                max / 2
            }
        })
    }

    #[test]
    fn evictions_are_logged_as_deletions_and_replay_to_the_same_keyspace() {
        let dir = TempDir::new("evict");
        let config = StoreConfig {
            data_dir: Some(dir.0.clone()),
            maxmemory: 1_000_000_000,
            maxmemory_policy: Policy::AllKeysLru,
            fsync: super::super::aof::Fsync::No,
            ..Default::default()
        };
        let over = Arc::new(AtomicBool::new(false));
        let mut store = Store::open(config.clone()).expect("open");
        // Far over the limit: the log's unwritten records, which do not
        // count, are less than that.
        store.gauge = switch(&over, 1_000_000_000);
        for i in 0..300 {
            run_line(&store, 0, &format!("SET k{i} v"));
        }
        assert_eq!(store.make_room(NOW), Room::Enough);
        over.store(true, Ordering::Relaxed);
        // One call evicts a batch, and says it is not done.
        assert_eq!(store.make_room(NOW), Room::Evicting);
        assert_eq!(store.lock().engine.len(0), 300 - EVICT_BATCH);
        assert_eq!(store.lock().engine.evicted_keys, EVICT_BATCH as u64);
        over.store(false, Ordering::Relaxed);
        run_line(&store, 0, "SET after v");
        let live = keys(&store);
        store.close();
        drop(store);
        // The log holds the 301 writes and a DEL per eviction, and replays
        // to the same keys.
        let mut dels = 0;
        let (log, _) =
            super::super::aof::Aof::open(&dir.0, super::super::aof::Fsync::No, |_, args| {
                if args[0] == b"DEL" {
                    assert_eq!(args.len(), 2);
                    dels += 1;
                }
                Ok(())
            })
            .expect("reopen the log");
        log.close();
        drop(log);
        assert_eq!(dels, EVICT_BATCH);
        let replayed = Store::open(config).expect("replay");
        assert_eq!(keys(&replayed), live);
    }

    #[test]
    fn room_runs_out_when_nothing_can_be_evicted() {
        let over = Arc::new(AtomicBool::new(true));
        let lru = Store::with_gauge(
            StoreConfig {
                maxmemory: 1000,
                maxmemory_policy: Policy::AllKeysLru,
                ..Default::default()
            },
            switch(&over, 1000),
        );
        for i in 0..10 {
            run_line(&lru, 0, &format!("SET k{i} v"));
        }
        assert_eq!(lru.make_room(NOW), Room::Full);
        assert!(lru.lock().engine.is_empty());
        // volatile-* evict only keys with an expiry.
        let volatile = Store::with_gauge(
            StoreConfig {
                maxmemory: 1000,
                maxmemory_policy: Policy::VolatileLru,
                ..Default::default()
            },
            switch(&over, 1000),
        );
        run_line(&volatile, 0, "SET a v");
        run_line(&volatile, 0, "SET b v PX 100000");
        assert_eq!(volatile.make_room(NOW), Room::Full);
        assert_eq!(keys(&volatile), vec![b"a".to_vec()]);
        // noeviction evicts nothing; no limit, nothing is ever full.
        let none = Store::with_gauge(
            StoreConfig {
                maxmemory: 1000,
                ..Default::default()
            },
            switch(&over, 1000),
        );
        run_line(&none, 0, "SET a v");
        assert_eq!(none.make_room(NOW), Room::Full);
        assert_eq!(none.lock().engine.len(0), 1);
        none.set_maxmemory(0);
        assert_eq!(none.make_room(NOW), Room::Enough);
        assert_eq!(none.peak_memory(), 2000);
    }
}
