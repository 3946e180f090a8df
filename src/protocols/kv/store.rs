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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::engine::{Engine, Policy};
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
}

impl Inner {
    /// Logs a change (the command as run, or what it asked to be logged
    /// instead); returns the record's sequence number (0: no log).
    pub fn log_change(
        &mut self,
        db: usize,
        argv: &[&[u8]],
        propagate: Option<&[Vec<Vec<u8>>]>,
    ) -> u64 {
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
}

impl Store {
    /// The store with `config`: empty, or, with a data directory, what its
    /// log replays (the directory locked for this process's life).
    pub fn open(config: StoreConfig) -> anyhow::Result<Store> {
        let store = Store::new(config);
        if let Some(dir) = store.config.data_dir.clone() {
            let started = Instant::now();
            let now = unix_ms(SystemTime::now());
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
            store.lock().log = Some(log);
        }
        Ok(store)
    }

    /// Writes out and syncs what the log holds (at exit).
    pub fn close(&self) {
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
        }
    }

    /// Locks the keyspace. A session that panicked while holding the lock
    /// left the engine as it was at some command boundary or mid-command;
    /// the store goes on with it rather than failing every later client.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
/// until the process exits.
pub fn start_expiry(store: &std::sync::Arc<Store>) -> std::io::Result<()> {
    let store = std::sync::Arc::clone(store);
    std::thread::Builder::new()
        .name("kv-expire".into())
        .spawn(move || loop {
            std::thread::sleep(EXPIRE_EVERY);
            store.cron(unix_ms(SystemTime::now()));
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
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    const NOW: u64 = 1_700_000_000_000;

    /// A directory of its own under the system's temp directory, removed
    /// when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("muse-store-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `line` on the store as a session does (logged if it changes
    /// anything).
    fn run(store: &Store, line: &str) {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let command = super::super::cmd::lookup(args[0]).expect("a command");
        let mut inner = store.lock();
        let mut out = Vec::new();
        let done =
            super::super::cmd::run(&mut inner.engine, command, &args, 0, NOW, &mut out, false);
        if done.changed > 0 {
            inner.log_change(0, &args, done.propagate.as_deref());
        }
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
            run(&store, &format!("SET k{i} v"));
        }
        assert_eq!(store.make_room(NOW), Room::Enough);
        over.store(true, Ordering::Relaxed);
        // One call evicts a batch, and says it is not done.
        assert_eq!(store.make_room(NOW), Room::Evicting);
        assert_eq!(store.lock().engine.len(0), 300 - EVICT_BATCH);
        assert_eq!(store.lock().engine.evicted_keys, EVICT_BATCH as u64);
        over.store(false, Ordering::Relaxed);
        run(&store, "SET after v");
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
            run(&lru, &format!("SET k{i} v"));
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
        run(&volatile, "SET a v");
        run(&volatile, "SET b v PX 100000");
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
        run(&none, "SET a v");
        assert_eq!(none.make_room(NOW), Room::Full);
        assert_eq!(none.lock().engine.len(0), 1);
        none.set_maxmemory(0);
        assert_eq!(none.make_room(NOW), Room::Enough);
        assert_eq!(none.peak_memory(), 2000);
    }
}
