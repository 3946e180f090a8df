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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::engine::Engine;
use crate::session::Waker;

/// What `INFO` and `CONFIG` report of the server's settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `--requirepass`.
    pub requirepass: Option<Vec<u8>>,
    /// `--maxmemory` in bytes (0: no limit).
    pub maxmemory: u64,
    /// `--maxmemory-policy`.
    pub maxmemory_policy: String,
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
            maxmemory_policy: "noeviction".into(),
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

/// A store shared by every session of a process.
pub struct Store {
    inner: Mutex<Inner>,
    /// The server's settings.
    pub config: StoreConfig,
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

    /// An empty store.
    pub fn new(config: StoreConfig) -> Store {
        let mut settings = HashMap::new();
        for (k, v) in default_settings(&config) {
            settings.insert(k.to_string(), v);
        }
        Store {
            inner: Mutex::new(Inner {
                engine: Engine::new(),
                waiters: HashMap::new(),
                config: settings,
                log: None,
            }),
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

/// Starts the thread that runs active expiry on `store` until the process
/// exits.
pub fn start_expiry(store: &std::sync::Arc<Store>) -> std::io::Result<()> {
    let store = std::sync::Arc::clone(store);
    std::thread::Builder::new()
        .name("kv-expire".into())
        .spawn(move || loop {
            std::thread::sleep(EXPIRE_EVERY);
            store.active_expire(unix_ms(SystemTime::now()));
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
        ("maxmemory-policy", config.maxmemory_policy.clone()),
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
