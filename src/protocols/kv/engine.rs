//! The keyspace: sixteen databases of typed values with expiry, and the
//! bookkeeping every command shares (lazy and active expiry, `WATCH`
//! versions, keys that blocked clients wait on).
//!
//! The engine is pure data: it never reads a clock (every call passes the
//! time as Unix milliseconds) and never blocks. One engine serves a whole
//! server: threads share it behind a mutex (`store.rs`), and the process
//! architectures reach it in the store process.
//!
//! Each database is an [`IndexMap`]: a hash map whose entries also sit in
//! a dense array, so that a random key (`RANDOMKEY`, active expiry's
//! samples) is one index away and `SCAN` can walk the array with a cursor
//! (see [`Db::scan`]). Keys with a time to live are also kept in a
//! [`IndexSet`] of their own, which active expiry samples, as Redis samples
//! its `expires` dictionary.
//!
//! Every entry also records when it was last used (or, under an LFU
//! policy, how often), for `--maxmemory`'s eviction: see `engine/evict.rs`.
//!
//! # Rewriting the log: an incremental snapshot
//!
//! A rewrite of the append-only log (`BGREWRITEAOF`) needs the keyspace as
//! it was at one instant S (when the store marked the log, under its lock)
//! without holding the lock for the whole keyspace and without `fork`. The
//! engine takes that snapshot incrementally, with copy-before-write:
//!
//! - At S ([`Engine::begin_rewrite`]) the epoch counter goes up, and every
//!   database gets a walk cursor at the end of its array
//!   ([`Db`]'s `walk`: its number at S and the cursor).
//! - A walker ([`Engine::rewrite_step`], run in bounded steps by the store's
//!   rewrite thread) moves each cursor from the array's end towards 0 and
//!   dumps every entry whose `mark` is not the epoch, marking it.
//! - Before *any* change to an entry whose `mark` is not the epoch (a value
//!   changed through [`Engine::get_mut`], overwritten by [`Engine::set`] or
//!   [`Engine::insert`], removed, expired, given or cleared an expiry), the
//!   engine first dumps it and marks it. An entry made during the walk is
//!   marked at once: it is not in the snapshot (the log's tail has it).
//!
//! **Invariant** (while a rewrite runs): an entry whose `mark` is not the
//! epoch is exactly as it was at S, belonged at S to the database its
//! `Db::walk` names, sits below that walk's cursor, and has not been
//! dumped; every other entry has been dumped once (or was made after S).
//! Hence every key of S is dumped exactly once, with its value and expiry
//! at S, and nothing made after S is. The places that keep it:
//!
//! - Every change to `Db::map` goes through this file's methods, each of
//!   which calls `Walk::save` first; commands only get `&Db` from
//!   [`Engine::db`] and `&mut Entry` from [`Engine::get_mut`] (which saves
//!   before handing it out: a read-only caller costs an early dump only).
//! - Removing a key swap-removes it: the last entry moves into the freed
//!   slot. That entry is either marked, or unmarked and therefore below the
//!   cursor, and it lands lower still: unmarked entries stay below the
//!   cursor (which is clamped to the array's length after removals).
//! - New entries go to the array's end, marked.
//! - `SWAPDB` exchanges two [`Db`]s whole: each carries its walk (its
//!   number at S and its cursor) along, so nothing is dumped and the
//!   walker follows the databases, not their numbers.
//! - `FLUSHDB` replaces a database with an empty one (no walk: everything
//!   in it will be new) and hands the old one, untouched from then on, to
//!   the walk's `retired` list, which the walker drains in steps like any
//!   other database. Neither costs more than O(1) under the lock.
//!
//! The dumps go to the walk's `out` buffer ([`Dump`]), which the walker
//! takes at every step: it holds at most each key of S once. A key is
//! dumped whole at once, so one huge collection costs one long step (or
//! one slower command, when a change dumps it first).
//!
//! Marks are compared with the epoch only while a walk runs; when the
//! epoch counter wraps (after 2³² rewrites) every mark is reset to 0 once,
//! so an old mark can never pass for the new epoch.

use std::collections::{HashMap, HashSet, VecDeque};

use indexmap::{IndexMap, IndexSet};

mod evict;
use super::dump::Dump;
pub use evict::{parse_memory, Policy, DEFAULT_SAMPLES, MAX_SAMPLES};

/// How many databases there are (`SELECT 0` to `SELECT 15`).
pub const DATABASES: usize = 16;

/// A value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (also integers and floats, kept as their text).
    Str(Vec<u8>),
    /// A list.
    List(VecDeque<Vec<u8>>),
    /// A hash.
    Hash(HashMap<Vec<u8>, Vec<u8>>),
    /// A set.
    Set(HashSet<Vec<u8>>),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
        }
    }

    /// Whether a collection has become empty (Redis deletes the key then).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// A key's value and its expiry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When the key was last used, as the low 32 bits of Unix
    /// milliseconds; under an LFU policy, its access frequency instead
    /// (see `engine/evict.rs`). Kept by the engine's lookups; a key renamed
    /// or moved ([`Engine::insert`]) keeps it.
    lru: u32,
    /// The value.
    pub value: Value,
    /// When the key expires, in Unix milliseconds (`None`: never). Read
    /// it freely; change it only through [`Engine::set_expire`] so that
    /// the index active expiry samples stays right.
    expires: Option<u64>,
    /// The rewrite epoch in which the entry was last dumped or made (0:
    /// none): while a rewrite runs, an entry whose mark is not its epoch
    /// is still as it was at the snapshot's instant (see the module's
    /// doc). Bookkeeping, not content: equality ignores it.
    mark: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.value == other.value && self.expires == other.expires
    }
}

impl Entry {
    /// A value without expiry.
    pub fn new(value: Value) -> Entry {
        Entry {
            lru: 0,
            value,
            expires: None,
            mark: 0,
        }
    }

    /// A value that expires at `at` (Unix ms), for tests that build
    /// entries directly.
    #[cfg(test)]
    pub fn expiring(value: Value, at: u64) -> Entry {
        Entry {
            lru: 0,
            value,
            expires: Some(at),
            mark: 0,
        }
    }

    /// When the key expires (Unix ms).
    pub fn expires(&self) -> Option<u64> {
        self.expires
    }
}

/// One database.
#[derive(Debug, Default)]
pub struct Db {
    /// Every key. Changed only through the [`Engine`]'s methods (commands
    /// get `&Db`), which keep a running rewrite's snapshot exact.
    pub map: IndexMap<Vec<u8>, Entry>,
    /// The keys that have an expiry.
    volatile: IndexSet<Vec<u8>>,
    /// While a rewrite walks this database's entries of the snapshot:
    /// which database it was at the snapshot's instant, and the cursor
    /// below which its entries not yet dumped all sit. `None` otherwise
    /// (no rewrite, walked through, or made since the snapshot).
    walk: Option<DbWalk>,
}

/// A database's part of a running rewrite's walk.
#[derive(Clone, Copy, Debug)]
struct DbWalk {
    /// The database's number at the snapshot's instant (its records carry
    /// it, even if `SWAPDB` has moved it since).
    number: u8,
    /// Entries at and above it are dumped or new.
    cursor: usize,
}

impl Db {
    /// Keys with an expiry (for `INFO keyspace`).
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    /// One step of `SCAN` from `cursor`: calls `f` for up to `count` slots
    /// and returns the next cursor (0 once the walk is done).
    ///
    /// The walk goes from the array's end to its start. Removing a key
    /// moves the last entry into its slot, and the last entry has already
    /// been visited (or is beyond the walk's start), so a key present for
    /// the whole walk is returned at least once, as `SCAN` promises; keys
    /// added during the walk go to the end and may be missed, which
    /// `SCAN` allows. Cursor 0 starts at the end; cursor `c` resumes at
    /// slot `c - 1`.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &Entry)) -> u64 {
        let len = self.map.len() as u64;
        let mut next = if cursor == 0 || cursor > len {
            len
        } else {
            cursor
        };
        let mut visited = 0;
        while next > 0 && visited < count.max(1) {
            next -= 1;
            if let Some((k, e)) = self.map.get_index(next as usize) {
                f(k, e);
            }
            visited += 1;
        }
        next
    }
}

/// The whole keyspace.
#[derive(Debug)]
pub struct Engine {
    dbs: Vec<Db>,
    /// Modifications since start (Redis's `dirty`, for `INFO`).
    pub dirty: u64,
    /// Keys expired so far (`INFO stats`).
    pub expired_keys: u64,
    /// Replaying the log: nothing expires (the log says when keys went,
    /// as the `DEL`s their expiry left), and an expiry already past is set,
    /// not carried out, as Redis does while loading.
    loading: bool,
    /// With a log: the keys expired since the store last took them, whose
    /// `DEL`s it logs before anything else (see [`Engine::take_expired`]).
    expired_log: Option<Vec<(usize, Vec<u8>)>>,
    /// Per watched key, its version: bumped by every change to the key.
    /// Only watched keys are here, so the common case costs one
    /// `is_empty` check.
    watched: HashMap<(usize, Vec<u8>), WatchedKey>,
    /// Keys that clients wait on (BLPOP and friends), with how many wait.
    blocked: HashMap<(usize, Vec<u8>), usize>,
    /// Keys pushed to since [`Engine::take_ready`] while clients waited on
    /// them.
    ready: Vec<(usize, Vec<u8>)>,
    /// A cheap random-number generator's state (xorshift), for sampling.
    rng: u64,
    /// The time of the command running (Unix ms), for the access clock of
    /// keys it creates: see [`Engine::set_clock`].
    clock: u64,
    /// `--maxmemory`'s eviction: the policy, its pool of candidates.
    evictor: evict::Evictor,
    /// Keys evicted so far (`INFO stats`).
    pub evicted_keys: u64,
    /// The running rewrite's walk (see the module's doc).
    walk: Option<Walk>,
    /// The last rewrite's epoch (0: none yet).
    epoch: u32,
}

/// A running rewrite's snapshot walk: its epoch, the dumps not yet taken,
/// and the databases flushed during it whose snapshot entries are still to
/// dump.
#[derive(Debug)]
pub struct Walk {
    epoch: u32,
    out: Dump,
    retired: Vec<Db>,
}

impl Walk {
    /// Before `entry` (of a database whose snapshot number is `number`)
    /// changes or goes: dumps it as it is, which is as it was at the
    /// snapshot's instant, unless it is dumped or new already; marks it.
    fn save(&mut self, number: Option<u8>, key: &[u8], entry: &mut Entry) {
        if entry.mark == self.epoch {
            return;
        }
        entry.mark = self.epoch;
        match number {
            Some(n) => self.out.key(n, key, entry),
            // Only databases of the snapshot hold unmarked entries.
            None => debug_assert!(false, "an unmarked entry outside the snapshot"),
        }
    }
}

/// What one step of a rewrite's walk produced.
#[derive(Debug, Default)]
pub struct Step {
    /// The records to write, in order.
    pub dump: Dump,
    /// Entries the walker looked at (dumped or skipped).
    pub visited: usize,
    /// The walk is over: the snapshot is whole once `dump` is written.
    pub done: bool,
}

#[derive(Debug)]
struct WatchedKey {
    version: u64,
    watchers: usize,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

impl Engine {
    /// An empty keyspace.
    pub fn new() -> Engine {
        Engine {
            dbs: (0..DATABASES).map(|_| Db::default()).collect(),
            dirty: 0,
            expired_keys: 0,
            loading: false,
            expired_log: None,
            watched: HashMap::new(),
            blocked: HashMap::new(),
            ready: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            clock: 0,
            evictor: evict::Evictor::default(),
            evicted_keys: 0,
            walk: None,
            epoch: 0,
        }
    }

    /// Database `db` as it is, expired keys included (for walks that
    /// check expiry themselves: `KEYS`, `SCAN`, `DBSIZE`).
    pub fn db(&self, db: usize) -> &Db {
        &self.dbs[db]
    }

    /// The live entry of `key`, removing it first if it has expired (lazy
    /// expiry).
    ///
    /// A lookup counts as a use of the key (its access clock moves).
    pub fn get(&mut self, db: usize, key: &[u8], now: u64) -> Option<&Entry> {
        let i = self.live_index(db, key, now)?;
        let (_, e) = self.dbs[db].map.get_index_mut(i)?;
        e.lru = self.evictor.accessed(e.lru, now, &mut self.rng);
        Some(e)
    }

    /// Where `key`'s entry sits in its database's map, once expired if it
    /// is due ([`Engine::expire_if_due`]): one lookup of the key instead
    /// of one to judge its expiry and one more to use it.
    fn live_index(&mut self, db: usize, key: &[u8], now: u64) -> Option<usize> {
        let (i, _, e) = self.dbs[db].map.get_full(key)?;
        if !self.loading && e.expires.is_some_and(|t| t <= now) {
            self.expire_if_due(db, key, now);
            return None;
        }
        Some(i)
    }

    /// The live entry of `key`, mutable. A command that changes the value
    /// through it must call [`Engine::touch`] (the dispatcher does, for the
    /// keys of a command that reports a change).
    ///
    /// During a rewrite the entry is dumped first if it is still as it was
    /// at the snapshot's instant (the caller may change it).
    pub fn get_mut(&mut self, db: usize, key: &[u8], now: u64) -> Option<&mut Entry> {
        let i = self.live_index(db, key, now)?;
        let d = &mut self.dbs[db];
        let number = d.walk.map(|w| w.number);
        let (_, e) = d.map.get_index_mut(i)?;
        if let Some(w) = &mut self.walk {
            w.save(number, key, e);
        }
        e.lru = self.evictor.accessed(e.lru, now, &mut self.rng);
        Some(e)
    }

    /// Sets the time of the command about to run (Unix ms): keys it
    /// creates take it as their last use. The dispatcher calls it.
    pub fn set_clock(&mut self, now: u64) {
        self.clock = now;
    }

    /// Whether `key` exists (and has not expired).
    pub fn contains(&mut self, db: usize, key: &[u8], now: u64) -> bool {
        self.get(db, key, now).is_some()
    }

    /// Sets `key` to `value` without expiry, replacing whatever was there
    /// (and its expiry).
    pub fn set(&mut self, db: usize, key: &[u8], value: Value) {
        let mark = self.mark();
        let d = &mut self.dbs[db];
        let number = d.walk.map(|w| w.number);
        match d.map.get_mut(key) {
            Some(e) => {
                if let Some(w) = &mut self.walk {
                    w.save(number, key, e);
                }
                e.lru = self.evictor.overwritten(e.lru, self.clock);
                e.value = value;
                if e.expires.take().is_some() {
                    d.volatile.swap_remove(key);
                }
            }
            None => {
                let entry = Entry {
                    lru: self.evictor.created(self.clock),
                    value,
                    expires: None,
                    mark,
                };
                d.map.insert(key.to_vec(), entry);
            }
        }
    }

    /// The mark of an entry made now: the running rewrite's epoch (the
    /// entry is not in its snapshot), else 0.
    fn mark(&self) -> u32 {
        self.walk.as_ref().map_or(0, |w| w.epoch)
    }

    /// Puts `entry` (with its expiry) at `key`, replacing whatever was there.
    pub fn insert(&mut self, db: usize, key: &[u8], mut entry: Entry) {
        entry.mark = self.mark();
        let expires = entry.expires;
        let d = &mut self.dbs[db];
        if let Some(w) = &mut self.walk {
            if let Some(old) = d.map.get_mut(key) {
                w.save(d.walk.map(|w| w.number), key, old);
            }
        }
        let old = d.map.insert(key.to_vec(), entry);
        let was_volatile = old.is_some_and(|e| e.expires.is_some());
        match (was_volatile, expires.is_some()) {
            (true, false) => {
                d.volatile.swap_remove(key);
            }
            (false, true) => {
                d.volatile.insert(key.to_vec());
            }
            _ => {}
        }
    }

    /// Removes `key`, returning its entry (expired or not).
    pub fn remove(&mut self, db: usize, key: &[u8]) -> Option<Entry> {
        let d = &mut self.dbs[db];
        let number = d.walk.map(|w| w.number);
        let (i, _, e) = d.map.get_full_mut(key)?;
        if let Some(w) = &mut self.walk {
            w.save(number, key, e);
        }
        // The last entry moves into slot `i`: see the module's invariant.
        let (_, e) = d.map.swap_remove_index(i)?;
        if e.expires.is_some() {
            d.volatile.swap_remove(key);
        }
        Some(e)
    }

    /// Removes `key` if its value is an empty collection (after `LPOP`,
    /// `SREM`, `HDEL`, ...). Returns whether it did.
    pub fn remove_if_empty(&mut self, db: usize, key: &[u8]) -> bool {
        let empty = self.dbs[db]
            .map
            .get(key)
            .is_some_and(|e| e.value.is_empty_collection());
        if empty {
            self.remove(db, key);
        }
        empty
    }

    /// Sets or clears the expiry of an existing `key` (Unix ms). Returns
    /// false if the key does not exist.
    pub fn set_expire(&mut self, db: usize, key: &[u8], at: Option<u64>) -> bool {
        let d = &mut self.dbs[db];
        let number = d.walk.map(|w| w.number);
        let Some(e) = d.map.get_mut(key) else {
            return false;
        };
        if let Some(w) = &mut self.walk {
            w.save(number, key, e);
        }
        match (e.expires.is_some(), at.is_some()) {
            (true, false) => {
                d.volatile.swap_remove(key);
            }
            (false, true) => {
                d.volatile.insert(key.to_vec());
            }
            _ => {}
        }
        e.expires = at;
        true
    }

    /// Removes every key of `db`.
    ///
    /// During a rewrite, a database that still holds entries of the
    /// snapshot not yet dumped is handed to the walk whole, untouched from
    /// now on, and dumped by its later steps.
    pub fn flush(&mut self, db: usize) {
        let old = std::mem::take(&mut self.dbs[db]);
        match &mut self.walk {
            Some(w) if old.walk.is_some() && !old.map.is_empty() => w.retired.push(old),
            _ => drop(old),
        }
        self.touch_db(db);
    }

    /// Swaps two databases (`SWAPDB`; also used by tests). During a
    /// rewrite each carries its walk along: nothing is dumped.
    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        self.dbs.swap(a, b);
        self.touch_db(a);
        self.touch_db(b);
    }

    /// Live keys of `db` (`DBSIZE` counts keys not yet lazily expired, as
    /// Redis does).
    pub fn len(&self, db: usize) -> usize {
        self.dbs[db].map.len()
    }

    /// Whether every database is empty.
    pub fn is_empty(&self) -> bool {
        self.dbs.iter().all(|d| d.map.is_empty())
    }

    /// A random live key of `db`, or `None` if it has none.
    pub fn random_key(&mut self, db: usize, now: u64) -> Option<Vec<u8>> {
        // Like Redis: try a bounded number of samples, expiring as we go.
        for _ in 0..100 {
            let len = self.dbs[db].map.len();
            if len == 0 {
                return None;
            }
            let i = (self.random() % len as u64) as usize;
            let (k, e) = self.dbs[db].map.get_index(i)?;
            if e.expires.is_some_and(|t| t <= now) {
                let k = k.clone();
                self.expire_if_due(db, &k, now);
                continue;
            }
            return Some(k.clone());
        }
        None
    }

    /// A pseudo-random number (xorshift64*): for sampling, not secrets.
    pub fn random(&mut self) -> u64 {
        evict::xorshift(&mut self.rng)
    }

    /// Removes `key` if its expiry has passed. Returns whether it did.
    pub fn expire_if_due(&mut self, db: usize, key: &[u8], now: u64) -> bool {
        if self.loading {
            return false;
        }
        let due = self.dbs[db]
            .map
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
        if due {
            self.remove(db, key);
            self.expired_keys += 1;
            self.touch(db, key);
            if let Some(expired) = &mut self.expired_log {
                expired.push((db, key.to_vec()));
            }
        }
        due
    }

    /// Whether the log is being replayed (see [`Engine::set_loading`]).
    pub fn loading(&self) -> bool {
        self.loading
    }

    /// Marks the replay of the log: while it runs no key expires, and an
    /// expiry time already past is kept rather than carried out (a key's
    /// end is in the log as the `DEL` its expiry left).
    pub fn set_loading(&mut self, loading: bool) {
        self.loading = loading;
    }

    /// Starts keeping the keys that expire for the log: a key that expires
    /// is a change, logged as a `DEL` (as Redis propagates it), so that a
    /// replay, which expires nothing, ends where the server was.
    pub fn log_expiries(&mut self) {
        self.expired_log.get_or_insert_with(Vec::new);
    }

    /// The keys expired since the last call, for the log (empty without a
    /// log). The store takes them before it logs anything else and
    /// whenever it lets go of its lock, so they are few.
    pub fn take_expired(&mut self) -> Vec<(usize, Vec<u8>)> {
        match &mut self.expired_log {
            Some(expired) if !expired.is_empty() => std::mem::take(expired),
            _ => Vec::new(),
        }
    }

    /// One round of active expiry over every database, as Redis's cycle
    /// does it: sample up to 20 keys with an expiry, remove the expired
    /// ones, and go on with the same database while more than a quarter of
    /// a sample had expired, within `budget` samples in all. Returns how
    /// many keys it removed.
    pub fn active_expire(&mut self, now: u64, budget: usize) -> usize {
        const SAMPLE: usize = 20;
        let mut removed = 0;
        let mut spent = 0;
        for db in 0..DATABASES {
            loop {
                let len = self.dbs[db].volatile.len();
                if len == 0 || spent >= budget {
                    break;
                }
                let mut expired = 0;
                let n = SAMPLE.min(len);
                for _ in 0..n {
                    let len = self.dbs[db].volatile.len();
                    if len == 0 {
                        break;
                    }
                    let i = (self.random() % len as u64) as usize;
                    let Some(k) = self.dbs[db].volatile.get_index(i).cloned() else {
                        break;
                    };
                    if self.expire_if_due(db, &k, now) {
                        expired += 1;
                    }
                }
                spent += n;
                removed += expired;
                if expired * 4 <= n {
                    break;
                }
            }
        }
        removed
    }

    /// Records that `key` changed: a client watching it will see its
    /// `EXEC` fail.
    pub fn touch(&mut self, db: usize, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        if let Some(w) = self.watched.get_mut(&(db, key.to_vec())) {
            w.version += 1;
        }
    }

    fn touch_db(&mut self, db: usize) {
        for ((d, _), w) in self.watched.iter_mut() {
            if *d == db {
                w.version += 1;
            }
        }
    }

    /// Starts watching `key` (`WATCH`); returns its current version.
    pub fn watch(&mut self, db: usize, key: &[u8]) -> u64 {
        let w = self
            .watched
            .entry((db, key.to_vec()))
            .or_insert(WatchedKey {
                version: 0,
                watchers: 0,
            });
        w.watchers += 1;
        w.version
    }

    /// The version of a watched key (`None` if nobody watches it).
    pub fn watched_version(&self, db: usize, key: &[u8]) -> Option<u64> {
        self.watched.get(&(db, key.to_vec())).map(|w| w.version)
    }

    /// Stops one watch of `key` (`UNWATCH`, `EXEC`, a client leaving).
    pub fn unwatch(&mut self, db: usize, key: &[u8]) {
        let k = (db, key.to_vec());
        if let Some(w) = self.watched.get_mut(&k) {
            w.watchers -= 1;
            if w.watchers == 0 {
                self.watched.remove(&k);
            }
        }
    }

    /// A list was pushed to at `key`: clients blocked on it (BLPOP) are
    /// to be woken. Cheap when nobody waits.
    pub fn signal_push(&mut self, db: usize, key: &[u8]) {
        if self.blocked.is_empty() {
            return;
        }
        let k = (db, key.to_vec());
        if self.blocked.contains_key(&k) && !self.ready.contains(&k) {
            self.ready.push(k);
        }
    }

    /// A client starts waiting on `key`.
    pub fn block_on(&mut self, db: usize, key: &[u8]) {
        *self.blocked.entry((db, key.to_vec())).or_insert(0) += 1;
    }

    /// A client stops waiting on `key`.
    pub fn unblock(&mut self, db: usize, key: &[u8]) {
        let k = (db, key.to_vec());
        if let Some(n) = self.blocked.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.blocked.remove(&k);
            }
        }
    }

    /// The keys pushed to while clients waited on them, since last asked.
    pub fn take_ready(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.ready)
    }

    /// Whether any client waits on a key that was pushed to.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes the snapshot's instant for a rewrite of the log: from now on
    /// every entry is dumped once, as it is now, by [`Engine::rewrite_step`]
    /// or before it changes (see the module's doc). Call it under the lock
    /// that orders the log's appends, where the log marks its rewrite.
    /// Returns false (and does nothing) if a rewrite is running.
    pub fn begin_rewrite(&mut self) -> bool {
        if self.walk.is_some() {
            return false;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Marks of 2³² rewrites ago must not pass for this epoch.
            for d in &mut self.dbs {
                for e in d.map.values_mut() {
                    e.mark = 0;
                }
            }
            self.epoch = 1;
        }
        for (i, d) in self.dbs.iter_mut().enumerate() {
            d.walk = Some(DbWalk {
                number: i as u8,
                cursor: d.map.len(),
            });
        }
        self.walk = Some(Walk {
            epoch: self.epoch,
            out: Dump::default(),
            retired: Vec::new(),
        });
        true
    }

    /// Whether a rewrite's walk is running.
    pub fn rewriting(&self) -> bool {
        self.walk.is_some()
    }

    /// One step of the running rewrite's walk: looks at up to `budget`
    /// entries (stopping early once `max_bytes` are dumped), dumping those
    /// not dumped yet, and hands over everything dumped since the last
    /// step, changes' dumps included. The step that finds nothing left
    /// ends the walk (`done`): no more dumps after it. Without a running
    /// walk, an empty step that is `done`.
    ///
    /// Databases are walked from the array's end towards 0, as
    /// [`Db::scan`] walks them, so that removals during the walk (which
    /// move the last entry down) never hide an entry from it.
    pub fn rewrite_step(&mut self, budget: usize, max_bytes: usize) -> Step {
        let Some(w) = &mut self.walk else {
            return Step {
                done: true,
                ..Step::default()
            };
        };
        let mut visited = 0;
        let mut done = false;
        while visited < budget.max(1) && w.out.bytes() < max_bytes {
            // Databases flushed during the walk first: nothing else can
            // reach them, so their entries are consumed from the end (and
            // their index of expiring keys, no longer than the map, one
            // per entry: each step frees a bounded amount).
            if let Some(old) = w.retired.last_mut() {
                let number = old.walk.map(|dw| dw.number);
                match old.map.pop() {
                    Some((k, mut e)) => {
                        old.volatile.pop();
                        w.save(number, &k, &mut e);
                        visited += 1;
                    }
                    None => {
                        w.retired.pop();
                    }
                }
                continue;
            }
            let Some(d) = self.dbs.iter_mut().find(|d| d.walk.is_some()) else {
                done = true;
                break;
            };
            let number = d.walk.map(|dw| dw.number);
            let dw = d.walk.as_mut().expect("found with a walk");
            dw.cursor = dw.cursor.min(d.map.len());
            if dw.cursor == 0 {
                d.walk = None;
                continue;
            }
            dw.cursor -= 1;
            let (k, e) = d
                .map
                .get_index_mut(dw.cursor)
                .expect("the cursor is below the length");
            w.save(number, k, e);
            visited += 1;
        }
        let dump = std::mem::take(&mut w.out);
        if done {
            self.walk = None;
        }
        Step {
            dump,
            visited,
            done,
        }
    }

    /// Ends a running rewrite's walk early (the rewrite failed or was
    /// abandoned). Returns what the walk still held (dumps, flushed
    /// databases), for the caller to drop once it has let go of the lock.
    pub fn abort_rewrite(&mut self) -> Option<Walk> {
        for d in &mut self.dbs {
            d.walk = None;
        }
        self.walk.take()
    }

    /// Sets the epoch counter (tests of its wrapping).
    #[cfg(test)]
    fn set_epoch(&mut self, epoch: u32) {
        self.epoch = epoch;
    }
}

/// What the tests of rewrites share: the whole keyspace as a comparable
/// map, and commands run as the store runs them.
#[cfg(test)]
pub mod testing {
    use std::collections::BTreeMap;

    use super::{Engine, Entry, DATABASES};

    /// Every live entry at `now`, by database and key.
    pub fn keyspace(e: &Engine, now: u64) -> BTreeMap<(usize, Vec<u8>), Entry> {
        let mut all = BTreeMap::new();
        for db in 0..DATABASES {
            for (k, en) in &e.db(db).map {
                if en.expires().is_none_or(|t| t > now) {
                    all.insert((db, k.clone()), en.clone());
                }
            }
        }
        all
    }

    /// Runs `args` in `db` at `now` through the command table, as replay
    /// does; returns what the dispatcher saw. Panics on an unknown
    /// command or a bad arity (the tests' own mistakes).
    pub fn apply(
        e: &mut Engine,
        db: usize,
        args: &[&[u8]],
        now: u64,
    ) -> crate::protocols::kv::cmd::Done {
        let cmd = crate::protocols::kv::cmd::lookup(args[0]).expect("a known command");
        assert!(cmd.arity_ok(args.len()), "{args:?}");
        let mut sink = Vec::new();
        crate::protocols::kv::cmd::run(e, cmd, args, db, now, &mut sink, false)
    }

    /// Notes the keys of a dump's records, in order (a key's records are
    /// consecutive; a new key starts with its value's command).
    pub fn dumped_keys(dump: &crate::protocols::kv::dump::Dump, keys: &mut Vec<(u8, Vec<u8>)>) {
        let mut last: Option<(u8, Vec<u8>)> = None;
        dump.each(|db, args| {
            let this = (db, args[1].to_vec());
            if args[0] != b"PEXPIREAT" && last.as_ref() != Some(&this) {
                keys.push(this.clone());
            }
            last = Some(this);
            Ok::<(), ()>(())
        })
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{apply, keyspace};
    use super::*;
    use std::collections::BTreeMap;

    /// Runs a command line (split on spaces) in `db`.
    fn run(e: &mut Engine, db: usize, line: &str, now: u64) {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        apply(e, db, &args, now);
    }

    /// Walks to the end in steps of `budget`, replaying every dump into
    /// `snapshot`; returns the keys dumped, in order.
    fn finish_walk(e: &mut Engine, snapshot: &mut Engine, budget: usize) -> Vec<(u8, Vec<u8>)> {
        let mut keys = Vec::new();
        loop {
            let step = e.rewrite_step(budget, usize::MAX);
            assert!(step.visited <= budget.max(1));
            replay_dump(&step.dump, snapshot, &mut keys);
            if step.done {
                return keys;
            }
        }
    }

    /// Replays `dump` into `into`, noting each key it makes.
    fn replay_dump(dump: &Dump, into: &mut Engine, keys: &mut Vec<(u8, Vec<u8>)>) {
        super::testing::dumped_keys(dump, keys);
        dump.each(|db, args| {
            apply(into, usize::from(db), args, NOW);
            Ok::<(), ()>(())
        })
        .unwrap();
    }

    const NOW: u64 = 1_000_000;

    /// A keyspace of every type over four databases, some keys with an
    /// expiry, one list longer than a dump chunk.
    fn populated() -> Engine {
        let mut e = Engine::new();
        for db in 0..4 {
            for i in 0..50 {
                run(&mut e, db, &format!("SET s{i} v{i}"), NOW);
                run(&mut e, db, &format!("RPUSH l{i} a b {i}"), NOW);
                run(&mut e, db, &format!("HSET h{i} f {i} g x"), NOW);
                run(&mut e, db, &format!("SADD t{i} m {i}"), NOW);
                if i % 5 == 0 {
                    run(
                        &mut e,
                        db,
                        &format!("PEXPIREAT s{i} {}", NOW + 10_000 + i),
                        NOW,
                    );
                }
            }
        }
        let long: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        run(&mut e, 2, &format!("RPUSH long {}", long.join(" ")), NOW);
        e
    }

    #[test]
    fn a_walk_without_changes_dumps_the_keyspace_once() {
        let mut e = populated();
        let before = keyspace(&e, NOW);
        assert!(e.begin_rewrite());
        assert!(!e.begin_rewrite(), "one rewrite at a time");
        let mut snapshot = Engine::new();
        let keys = finish_walk(&mut e, &mut snapshot, 7);
        assert!(!e.rewriting());
        assert_eq!(keys.len(), before.len());
        assert_eq!(keyspace(&snapshot, NOW), before);
        // The walk ended: changes dump nothing any more.
        run(&mut e, 0, "SET s1 changed", NOW);
        assert!(e.rewrite_step(10, usize::MAX).dump.is_empty());
    }

    #[test]
    fn changes_during_the_walk_dump_the_snapshots_value_first() {
        let mut e = populated();
        let at_s = keyspace(&e, NOW);
        assert!(e.begin_rewrite());
        let mut snapshot = Engine::new();
        let mut keys = Vec::new();
        let changes = [
            (0, "SET s1 new"),
            (0, "APPEND s2 more"),
            (1, "RPUSH l3 z"),
            (1, "LPOP l4"),
            (2, "HSET h5 f changed"),
            (2, "SREM t6 m"),
            (3, "DEL s7"),
            (3, "RENAME l8 l8b"),
            (0, "PEXPIRE s9 5000"),
            (0, "PERSIST s10"),
            (1, "SET fresh 1"),
            (1, "INCR fresh"),
            (0, "SWAPDB 0 3"),
            (0, "MOVE s11 1"),
            (1, "COPY h12 h12c DB 2"),
            (2, "FLUSHDB"),
            (2, "SET after-flush x"),
            (3, "DEL h13"),
            (3, "SET h13 again"),
            (0, "MSET s12 x s13 y"),
            (1, "SUNIONSTORE t14 t15 t16"),
        ];
        for (i, (db, line)) in changes.iter().enumerate() {
            let step = e.rewrite_step(3 + i % 5, usize::MAX);
            replay_dump(&step.dump, &mut snapshot, &mut keys);
            run(&mut e, *db, line, NOW);
        }
        keys.extend(finish_walk(&mut e, &mut snapshot, 11));
        assert_eq!(keyspace(&snapshot, NOW), at_s);
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len(), "a key dumped twice");
        assert_eq!(keys.len(), at_s.len());
        // Keys made during the walk are not in the snapshot.
        for made in ["fresh", "l8b", "h12c", "after-flush"] {
            assert!(!keys.iter().any(|(_, k)| k == made.as_bytes()), "{made}");
        }
    }

    #[test]
    fn a_flushed_database_is_dumped_from_the_walk_not_under_the_flush() {
        let mut e = populated();
        let at_s = keyspace(&e, NOW);
        assert!(e.begin_rewrite());
        let mut snapshot = Engine::new();
        let mut keys = Vec::new();
        // Half of database 0 walked, then every database flushed.
        let step = e.rewrite_step(100, usize::MAX);
        replay_dump(&step.dump, &mut snapshot, &mut keys);
        run(&mut e, 0, "FLUSHALL", NOW);
        assert_eq!(e.walk.as_ref().map(|w| w.retired.len()), Some(4));
        // Flushing dumped nothing: the walk's buffer is empty.
        assert!(e.walk.as_ref().is_some_and(|w| w.out.is_empty()));
        run(&mut e, 0, "SET s0 after", NOW);
        keys.extend(finish_walk(&mut e, &mut snapshot, 13));
        assert_eq!(keys.len(), at_s.len());
        assert_eq!(keyspace(&snapshot, NOW), at_s);
    }

    #[test]
    fn expiry_during_the_walk_dumps_the_key_before_removing_it() {
        let mut e = Engine::new();
        for i in 0..40 {
            run(&mut e, 0, &format!("SET k{i} v"), NOW);
            run(&mut e, 0, &format!("PEXPIREAT k{i} {}", NOW + 100), NOW);
        }
        run(&mut e, 0, "SET stays v", NOW);
        let at_s: BTreeMap<_, _> = e
            .db(0)
            .map
            .iter()
            .map(|(k, en)| ((0, k.clone()), en.clone()))
            .collect();
        assert!(e.begin_rewrite());
        let mut snapshot = Engine::new();
        let mut keys = Vec::new();
        let later = NOW + 200;
        assert!(e.get(0, b"k3", later).is_none());
        let removed = e.active_expire(later, 1000);
        assert!(removed > 0);
        keys.extend(finish_walk(&mut e, &mut snapshot, 5));
        assert_eq!(keys.len(), 41);
        // Replayed at the snapshot's time, the dump is the keyspace at S.
        let mut dumped = BTreeMap::new();
        for (k, en) in &snapshot.db(0).map {
            dumped.insert((0, k.clone()), en.clone());
        }
        assert_eq!(dumped, at_s);
    }

    #[test]
    fn steps_are_bounded_by_entries_and_bytes() {
        let mut e = populated();
        assert!(e.begin_rewrite());
        let step = e.rewrite_step(10, usize::MAX);
        assert_eq!((step.visited, step.dump.keys()), (10, 10));
        // A byte budget ends a step after the dump that passes it.
        let step = e.rewrite_step(1000, 1);
        assert_eq!(step.visited, 1);
        e.abort_rewrite();
        assert!(!e.rewriting());
        assert!(e.dbs.iter().all(|d| d.walk.is_none()));
    }

    #[test]
    fn a_wrapping_epoch_resets_the_marks() {
        let mut e = populated();
        let at_s = keyspace(&e, NOW);
        assert!(e.begin_rewrite());
        let mut snapshot = Engine::new();
        finish_walk(&mut e, &mut snapshot, 1000);
        // Every entry is marked 1 now. 2³² - 2 rewrites later the epoch
        // wraps past 0 to 1 again: the marks must not pass for it.
        e.set_epoch(u32::MAX);
        assert!(e.begin_rewrite());
        assert_eq!(e.epoch, 1);
        let mut snapshot = Engine::new();
        let keys = finish_walk(&mut e, &mut snapshot, 1000);
        assert_eq!(keys.len(), at_s.len());
        assert_eq!(keyspace(&snapshot, NOW), at_s);
    }

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().to_vec())
    }

    #[test]
    fn expired_keys_vanish_when_looked_at() {
        let mut e = Engine::new();
        e.set(0, b"a", s("1"));
        assert!(e.set_expire(0, b"a", Some(1000)));
        assert!(e.get(0, b"a", 999).is_some());
        assert_eq!(e.db(0).volatile_len(), 1);
        assert!(e.get(0, b"a", 1000).is_none());
        assert_eq!(e.db(0).volatile_len(), 0);
        assert_eq!(e.expired_keys, 1);
    }

    #[test]
    fn active_expiry_removes_expired_keys_without_lookups() {
        let mut e = Engine::new();
        for i in 0..1000 {
            let k = format!("k{i}");
            e.set(3, k.as_bytes(), s("v"));
            e.set_expire(
                3,
                k.as_bytes(),
                Some(if i % 2 == 0 { 10 } else { 1_000_000 }),
            );
        }
        let mut removed = 0;
        for _ in 0..200 {
            removed += e.active_expire(100, 1000);
        }
        assert_eq!(removed, 500);
        assert_eq!(e.len(3), 500);
    }

    #[test]
    fn scan_returns_every_key_present_throughout_despite_removals() {
        let mut e = Engine::new();
        for i in 0..100 {
            e.set(0, format!("k{i}").as_bytes(), s("v"));
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = e.db(0).scan(cursor, 7, |k, _| {
                seen.insert(k.to_vec());
            });
            // Remove keys the walk has already returned, and others.
            round += 1;
            e.remove(0, format!("k{}", round * 3).as_bytes());
            e.set(0, format!("new{round}").as_bytes(), s("v"));
            if cursor == 0 {
                break;
            }
        }
        for i in 0..100 {
            let k = format!("k{i}");
            let removed = (1..=round).any(|r| r * 3 == i);
            assert!(removed || seen.contains(k.as_bytes()), "{k} missed");
        }
    }

    #[test]
    fn watch_versions_move_with_changes() {
        let mut e = Engine::new();
        let v = e.watch(0, b"w");
        e.touch(0, b"other");
        assert_eq!(e.watched_version(0, b"w"), Some(v));
        e.touch(0, b"w");
        assert_eq!(e.watched_version(0, b"w"), Some(v + 1));
        e.flush(0);
        assert_eq!(e.watched_version(0, b"w"), Some(v + 2));
        e.unwatch(0, b"w");
        assert_eq!(e.watched_version(0, b"w"), None);
    }

    #[test]
    fn pushes_wake_only_keys_someone_waits_on() {
        let mut e = Engine::new();
        e.signal_push(0, b"q");
        assert!(!e.has_ready());
        e.block_on(0, b"q");
        e.signal_push(0, b"q");
        e.signal_push(0, b"q");
        assert_eq!(e.take_ready(), vec![(0, b"q".to_vec())]);
        e.unblock(0, b"q");
        e.signal_push(0, b"q");
        assert!(!e.has_ready());
    }
}
