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

use std::collections::{HashMap, HashSet, VecDeque};

use indexmap::{IndexMap, IndexSet};

mod evict;
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
#[derive(Clone, Debug, PartialEq)]
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
}

impl Entry {
    /// A value without expiry.
    pub fn new(value: Value) -> Entry {
        Entry {
            lru: 0,
            value,
            expires: None,
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
    /// Every key.
    pub map: IndexMap<Vec<u8>, Entry>,
    /// The keys that have an expiry.
    volatile: IndexSet<Vec<u8>>,
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
            watched: HashMap::new(),
            blocked: HashMap::new(),
            ready: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            clock: 0,
            evictor: evict::Evictor::default(),
            evicted_keys: 0,
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
        self.expire_if_due(db, key, now);
        let e = self.dbs[db].map.get_mut(key)?;
        e.lru = self.evictor.accessed(e.lru, now, &mut self.rng);
        Some(e)
    }

    /// The live entry of `key`, mutable. A command that changes the value
    /// through it must call [`Engine::touch`] (the dispatcher does, for the
    /// keys of a command that reports a change).
    pub fn get_mut(&mut self, db: usize, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.expire_if_due(db, key, now);
        let e = self.dbs[db].map.get_mut(key)?;
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
        let d = &mut self.dbs[db];
        match d.map.get_mut(key) {
            Some(e) => {
                e.lru = self.evictor.overwritten(e.lru, self.clock);
                e.value = value;
                if e.expires.take().is_some() {
                    d.volatile.swap_remove(key);
                }
            }
            None => {
                let mut e = Entry::new(value);
                e.lru = self.evictor.created(self.clock);
                d.map.insert(key.to_vec(), e);
            }
        }
    }

    /// Puts `entry` (with its expiry) at `key`, replacing whatever was there.
    pub fn insert(&mut self, db: usize, key: &[u8], entry: Entry) {
        let expires = entry.expires;
        let d = &mut self.dbs[db];
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
        let e = d.map.swap_remove(key)?;
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
        let Some(e) = d.map.get_mut(key) else {
            return false;
        };
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
    pub fn flush(&mut self, db: usize) {
        self.dbs[db] = Db::default();
        self.touch_db(db);
    }

    /// Swaps two databases (`SWAPDB`; also used by tests).
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
        let due = self.dbs[db]
            .map
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
        if due {
            self.remove(db, key);
            self.expired_keys += 1;
            self.touch(db, key);
        }
        due
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
