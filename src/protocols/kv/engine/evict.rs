//! `--maxmemory`'s eviction policies, run on the keyspace as Redis runs
//! them (`evict.c`): the engine picks a key to evict, the store decides
//! when (before a command, while memory is over the limit) and logs each
//! eviction.
//!
//! - `allkeys-lru`, `volatile-lru`: Redis's approximated LRU. Each entry
//!   keeps the time of its last use; each round samples
//!   `maxmemory-samples` keys of every database that has keys (with an
//!   expiry, for `volatile-*`) into a pool of the [`POOL_SIZE`] idlest
//!   candidates seen, and evicts the idlest of the pool. Candidates stay
//!   in the pool between rounds, so each round compares fresh samples with
//!   the best of the earlier ones.
//! - `allkeys-lfu`, `volatile-lfu`: the same pool, scored by Redis's
//!   logarithmic access counter (8 bits, incremented with a probability
//!   that falls as it grows, `lfu-log-factor` 10, decremented once per
//!   minute of idleness, `lfu-decay-time` 1; Redis's defaults, fixed).
//! - `volatile-ttl`: the same pool, scored by nearest expiry.
//! - `allkeys-random`, `volatile-random`: a random key, visiting the
//!   databases in turn.
//! - `noeviction`: nothing is evicted; commands that may grow memory are
//!   refused instead (the store's part).
//!
//! The access clock is the entry's `lru` field: under LRU, the low 32 bits
//! of the Unix milliseconds of the last use (Redis keeps seconds in 24
//! bits). An idle time is the clock's wrapping difference, so it is exact
//! up to 49.7 days (Redis: 194 days), and a difference a little below
//! zero (sessions' clocks differ by milliseconds) reads as 0. Under LFU
//! the field holds, as Redis's 24 bits do, the minute of the last
//! decrement (16 bits) and the counter (8 bits). Switching policy at run
//! time reads the other kind of data for a while, as in Redis.

use super::{Engine, DATABASES};

/// How many candidates the pool keeps (Redis's `EVPOOL_SIZE`).
pub const POOL_SIZE: usize = 16;

/// `maxmemory-samples` by default.
pub const DEFAULT_SAMPLES: usize = 5;

/// The most `maxmemory-samples` may be (Redis 7's bound, `INT_MAX`). A
/// database is sampled at most as many times as it has keys.
pub const MAX_SAMPLES: usize = i32::MAX as usize;

/// The counter a new key starts with under LFU (Redis's `LFU_INIT_VAL`),
/// so that a new key is not evicted before it had a chance to be used.
const LFU_INIT: u32 = 5;

/// Redis's default `lfu-log-factor`: the counter reaches 255 after about
/// a million hits.
const LFU_LOG_FACTOR: f64 = 10.0;

/// Redis's default `lfu-decay-time`: the counter loses one per idle minute.
const LFU_DECAY_MINUTES: u32 = 1;

/// `OBJECT IDLETIME` under an LFU policy.
const NO_IDLE_TIME: &str = "ERR An LFU maxmemory policy is selected, idle time not tracked. \
     Please note that when switching between policies at runtime LRU and LFU data \
     will take some time to adjust.";

/// `OBJECT FREQ` under another policy.
const NO_FREQUENCY: &str = "ERR An LFU maxmemory policy is not selected, access frequency not \
     tracked. Please note that when switching between policies at runtime LRU and LFU data \
     will take some time to adjust.";

/// An idle time this close below zero is a clock skew between sessions,
/// not a wrap: it reads as 0.
const SKEW_MS: u32 = 60_000;

/// What `--maxmemory-policy` / `CONFIG SET maxmemory-policy` choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Evict nothing; refuse commands that may grow memory.
    #[default]
    NoEviction,
    /// The least recently used key of all.
    AllKeysLru,
    /// The least frequently used key of all.
    AllKeysLfu,
    /// Any key.
    AllKeysRandom,
    /// The least recently used key with an expiry.
    VolatileLru,
    /// The least frequently used key with an expiry.
    VolatileLfu,
    /// Any key with an expiry.
    VolatileRandom,
    /// The key with an expiry nearest in time.
    VolatileTtl,
}

impl Policy {
    /// Every policy, in the order Redis lists them in its errors.
    pub const ALL: [Policy; 8] = [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllKeysLru,
        Policy::AllKeysLfu,
        Policy::AllKeysRandom,
        Policy::NoEviction,
    ];

    /// Its name, as Redis spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    /// The policy named `name` (any case, as Redis's enum settings).
    pub fn from_name(name: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The names, comma-separated, in Redis's order (for error messages).
    pub fn names() -> String {
        Policy::ALL.map(Policy::name).join(", ")
    }

    /// Whether it evicts among all keys (not only those with an expiry).
    fn all_keys(self) -> bool {
        matches!(
            self,
            Policy::AllKeysLru | Policy::AllKeysLfu | Policy::AllKeysRandom
        )
    }

    /// Whether entries count accesses (LFU) rather than time them (LRU).
    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    /// A small number for an atomic (see [`Policy::from_index`]).
    pub fn index(self) -> u8 {
        Policy::ALL.iter().position(|&p| p == self).unwrap_or(0) as u8
    }

    /// The policy of [`Policy::index`].
    pub fn from_index(i: u8) -> Policy {
        Policy::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(Policy::NoEviction)
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a memory size as Redis's `memtoull` does: digits, then
/// optionally a unit, any case: `b`, `k` (1000), `kb` (1024), `m`, `mb`,
/// `g`, `gb`. Refuses a sign, a fraction, other units and overflow.
pub fn parse_memory(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (n, unit) = s.split_at(digits);
    let mul: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.parse::<u64>().ok()?.checked_mul(mul)
}

/// A key in the eviction pool, with its score: the higher, the sooner it
/// goes (idle milliseconds, 255 minus the LFU counter, or `u64::MAX`
/// minus the expiry time).
#[derive(Debug)]
struct Candidate {
    score: u64,
    db: usize,
    key: Vec<u8>,
}

/// The engine's eviction state: the policy and the pool.
#[derive(Debug, Default)]
pub(super) struct Evictor {
    policy: Policy,
    /// At most [`POOL_SIZE`] candidates, by ascending score.
    pool: Vec<Candidate>,
    /// The database the random policies visit next.
    next_db: usize,
}

impl Evictor {
    /// The access data of a key used at `now` whose data was `lru`.
    pub(super) fn accessed(&self, lru: u32, now: u64, rng: &mut u64) -> u32 {
        if !self.policy.is_lfu() {
            return now as u32;
        }
        let counter = lfu_decayed(lru, now);
        let counter = if counter >= 255 {
            255
        } else {
            let base = counter.saturating_sub(LFU_INIT);
            let p = 1.0 / (f64::from(base) * LFU_LOG_FACTOR + 1.0);
            // 53 random bits as a fraction in [0, 1).
            let r = (xorshift(rng) >> 11) as f64 / (1u64 << 53) as f64;
            if r < p {
                counter + 1
            } else {
                counter
            }
        };
        (minutes(now) << 8) | counter
    }

    /// The access data of a key created at `now`.
    pub(super) fn created(&self, now: u64) -> u32 {
        if self.policy.is_lfu() {
            (minutes(now) << 8) | LFU_INIT
        } else {
            now as u32
        }
    }

    /// The access data of a key whose value is replaced at `now`: a new
    /// use under LRU; under LFU the count goes on (the lookup before the
    /// write has counted it), as Redis keeps it on overwrite.
    pub(super) fn overwritten(&self, lru: u32, now: u64) -> u32 {
        if self.policy.is_lfu() {
            lru
        } else {
            now as u32
        }
    }

    /// Puts a candidate in the pool if it scores above the pool's worst
    /// or the pool has room; a key already there takes its new score.
    fn offer(&mut self, score: u64, db: usize, key: &[u8]) {
        let pool = &mut self.pool;
        if let Some(i) = pool.iter().position(|c| c.db == db && c.key == key) {
            pool.remove(i);
        }
        let mut at = pool.partition_point(|c| c.score < score);
        if pool.len() >= POOL_SIZE {
            if at == 0 {
                return;
            }
            pool.remove(0);
            at -= 1;
        }
        pool.insert(
            at,
            Candidate {
                score,
                db,
                key: key.to_vec(),
            },
        );
    }
}

/// The minute clock LFU data keeps (16 bits, wrapping every 45 days).
fn minutes(now: u64) -> u32 {
    ((now / 60_000) & 0xffff) as u32
}

/// The LFU counter of `lru`, less one per [`LFU_DECAY_MINUTES`] since its
/// last decrement.
fn lfu_decayed(lru: u32, now: u64) -> u32 {
    let then = lru >> 8;
    let counter = lru & 0xff;
    let elapsed = minutes(now).wrapping_sub(then) & 0xffff;
    counter.saturating_sub(elapsed / LFU_DECAY_MINUTES)
}

/// Milliseconds since the last use recorded in `lru` (LRU data).
fn idle_ms(lru: u32, now: u64) -> u64 {
    let d = (now as u32).wrapping_sub(lru);
    if d > u32::MAX - SKEW_MS {
        0
    } else {
        u64::from(d)
    }
}

/// The next number of a xorshift64* generator whose state is `state`.
pub(super) fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl Engine {
    /// The eviction policy (it decides what the entries' access data
    /// mean).
    pub fn policy(&self) -> Policy {
        self.evictor.policy
    }

    /// Sets the eviction policy. The pool's candidates were scored for
    /// the old one: it starts empty.
    pub fn set_policy(&mut self, policy: Policy) {
        if policy != self.evictor.policy {
            self.evictor.policy = policy;
            self.evictor.pool.clear();
        }
    }

    /// Evicts one key as the policy says, sampling `samples` keys per
    /// database for the pool: removes it (watchers see it change) and
    /// returns it, or `None` if the policy has nothing to evict (or is
    /// `noeviction`).
    pub fn evict(&mut self, samples: usize, now: u64) -> Option<(usize, Vec<u8>)> {
        let policy = self.evictor.policy;
        let (db, key) = match policy {
            Policy::NoEviction => return None,
            Policy::AllKeysRandom | Policy::VolatileRandom => self.pick_random(policy)?,
            _ => self.pick_from_pool(policy, samples.max(1), now)?,
        };
        self.remove(db, &key);
        self.touch(db, &key);
        self.evicted_keys += 1;
        Some((db, key))
    }

    /// How many keys `db` holds that `policy` may evict.
    fn evictable(&self, db: usize, policy: Policy) -> usize {
        let d = &self.dbs[db];
        if policy.all_keys() {
            d.map.len()
        } else {
            d.volatile.len()
        }
    }

    fn pick_random(&mut self, policy: Policy) -> Option<(usize, Vec<u8>)> {
        for _ in 0..DATABASES {
            let db = (self.evictor.next_db + 1) % DATABASES;
            self.evictor.next_db = db;
            let n = self.evictable(db, policy);
            if n == 0 {
                continue;
            }
            let i = (self.random() % n as u64) as usize;
            let d = &self.dbs[db];
            let key = if policy.all_keys() {
                d.map.get_index(i).map(|(k, _)| k)
            } else {
                d.volatile.get_index(i)
            };
            return key.map(|k| (db, k.clone()));
        }
        None
    }

    fn pick_from_pool(
        &mut self,
        policy: Policy,
        samples: usize,
        now: u64,
    ) -> Option<(usize, Vec<u8>)> {
        loop {
            let mut total = 0;
            for db in 0..DATABASES {
                let n = self.evictable(db, policy);
                if n == 0 {
                    continue;
                }
                total += n;
                for _ in 0..samples.min(n) {
                    let i = (self.random() % n as u64) as usize;
                    let d = &self.dbs[db];
                    let entry = if policy.all_keys() {
                        d.map.get_index(i)
                    } else {
                        d.volatile.get_index(i).and_then(|k| d.map.get_key_value(k))
                    };
                    let Some((key, entry)) = entry else { continue };
                    let score = match policy {
                        Policy::VolatileTtl => u64::MAX - entry.expires.unwrap_or(u64::MAX),
                        p if p.is_lfu() => 255 - u64::from(lfu_decayed(entry.lru, now)),
                        _ => idle_ms(entry.lru, now),
                    };
                    self.evictor.offer(score, db, key);
                }
            }
            if total == 0 {
                return None;
            }
            // The best candidate still there; the others (deleted since,
            // or no longer volatile) are ghosts and go.
            while let Some(c) = self.evictor.pool.pop() {
                let d = &self.dbs[c.db];
                let present = if policy.all_keys() {
                    d.map.contains_key(&c.key)
                } else {
                    d.volatile.contains(&c.key)
                };
                if present {
                    return Some((c.db, c.key));
                }
            }
        }
    }

    /// `OBJECT IDLETIME`: seconds since `key` was last used, without
    /// counting this as a use; under an LFU policy, which does not keep
    /// the time, Redis's error.
    pub fn idle_seconds(
        &mut self,
        db: usize,
        key: &[u8],
        now: u64,
    ) -> Result<Option<u64>, &'static str> {
        self.expire_if_due(db, key, now);
        let lfu = self.evictor.policy.is_lfu();
        match self.dbs[db].map.get(key) {
            None => Ok(None),
            Some(_) if lfu => Err(NO_IDLE_TIME),
            Some(e) => Ok(Some(idle_ms(e.lru, now) / 1000)),
        }
    }

    /// `OBJECT FREQ`: the LFU counter of `key`, without counting this as a
    /// use; unless an LFU policy is selected, Redis's error.
    pub fn frequency(
        &mut self,
        db: usize,
        key: &[u8],
        now: u64,
    ) -> Result<Option<u64>, &'static str> {
        self.expire_if_due(db, key, now);
        let lfu = self.evictor.policy.is_lfu();
        match self.dbs[db].map.get(key) {
            None => Ok(None),
            Some(_) if !lfu => Err(NO_FREQUENCY),
            Some(e) => Ok(Some(u64::from(lfu_decayed(e.lru, now)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Value;
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.as_bytes().to_vec())
    }

    /// An engine under `policy` with keys `k0`..`k{n-1}` in database 0,
    /// `k{i}` created at `t0 + i` ms.
    fn filled(policy: Policy, n: usize, t0: u64) -> Engine {
        let mut e = Engine::new();
        e.set_policy(policy);
        for i in 0..n {
            e.set_clock(t0 + i as u64);
            e.set(0, format!("k{i}").as_bytes(), s("v"));
        }
        e
    }

    fn index(key: &[u8]) -> usize {
        std::str::from_utf8(&key[1..]).unwrap().parse().unwrap()
    }

    #[test]
    fn lru_evicts_idle_keys_before_recently_used_ones() {
        const T0: u64 = 1_700_000_000_000;
        let mut e = filled(Policy::AllKeysLru, 1000, T0);
        // Every tenth key is used ten minutes later; the others stay idle.
        let later = T0 + 600_000;
        for i in (0..1000).step_by(10) {
            assert!(e.get(0, format!("k{i}").as_bytes(), later).is_some());
        }
        let mut evicted = Vec::new();
        for n in 0..600 {
            let (db, key) = e.evict(DEFAULT_SAMPLES, later + 1 + n).expect("a key");
            assert_eq!(db, 0);
            evicted.push(index(&key));
        }
        assert_eq!(e.evicted_keys, 600);
        assert_eq!(e.len(0), 400);
        // The sampling is random (from the engine's seeded generator), but
        // a key used ten minutes after the others is never the idlest of
        // a pool that holds idle ones.
        assert!(
            evicted.iter().all(|i| i % 10 != 0),
            "a recently used key was evicted: {evicted:?}"
        );
        // Among the idle keys, the older (created first) go first: the
        // mean age of those evicted is well above the survivors'.
        let cold_left: Vec<usize> = (0..1000)
            .filter(|i| i % 10 != 0 && !evicted.contains(i))
            .collect();
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        assert!(
            mean(&evicted) + 150.0 < mean(&cold_left),
            "evicted mean index {}, surviving {}",
            mean(&evicted),
            mean(&cold_left)
        );
    }

    #[test]
    fn a_lookup_moves_the_clock_and_object_idletime_does_not() {
        const T0: u64 = 1_700_000_000_000;
        let mut e = filled(Policy::AllKeysLru, 1, T0);
        assert_eq!(e.idle_seconds(0, b"k0", T0 + 5_500), Ok(Some(5)));
        assert_eq!(e.idle_seconds(0, b"k0", T0 + 7_000), Ok(Some(7)));
        e.get(0, b"k0", T0 + 8_000);
        assert_eq!(e.idle_seconds(0, b"k0", T0 + 9_000), Ok(Some(1)));
        assert_eq!(e.idle_seconds(0, b"nope", T0), Ok(None));
        // Another session's clock a little behind reads as no idle time.
        assert_eq!(e.idle_seconds(0, b"k0", T0 + 7_990), Ok(Some(0)));
        assert_eq!(e.frequency(0, b"k0", T0), Err(NO_FREQUENCY));
    }

    #[test]
    fn volatile_policies_evict_only_keys_with_an_expiry() {
        const T0: u64 = 1_000_000;
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut e = filled(policy, 100, T0);
            for i in (0..100).step_by(4) {
                e.set_expire(0, format!("k{i}").as_bytes(), Some(T0 + 10_000 + i));
            }
            let mut evicted = Vec::new();
            while let Some((_, key)) = e.evict(DEFAULT_SAMPLES, T0 + 500) {
                evicted.push(index(&key));
            }
            evicted.sort_unstable();
            let volatile: Vec<usize> = (0..100).step_by(4).map(|i| i as usize).collect();
            assert_eq!(evicted, volatile, "{policy}");
            assert_eq!(e.len(0), 75, "{policy}");
        }
    }

    #[test]
    fn volatile_ttl_evicts_the_nearest_expiry_first() {
        const T0: u64 = 1_000_000;
        let mut e = filled(Policy::VolatileTtl, 200, T0);
        for i in 0..200 {
            e.set_expire(0, format!("k{i}").as_bytes(), Some(T0 + 1_000 * (i + 1)));
        }
        let mut order = Vec::new();
        for _ in 0..100 {
            order.push(index(&e.evict(DEFAULT_SAMPLES, T0).expect("a key").1));
        }
        let mean = order.iter().sum::<usize>() as f64 / order.len() as f64;
        // Random eviction would average 99.5.
        assert!(mean < 70.0, "mean index of evicted keys {mean}");
    }

    #[test]
    fn lfu_keeps_frequently_used_keys() {
        const T0: u64 = 1_700_000_000_000;
        let mut e = filled(Policy::AllKeysLfu, 500, T0);
        for i in (0..500).step_by(5) {
            for _ in 0..50 {
                e.get(0, format!("k{i}").as_bytes(), T0 + 1_000);
            }
        }
        assert!(e.frequency(0, b"k0", T0 + 1_000).unwrap().unwrap() > 5);
        assert_eq!(e.frequency(0, b"k1", T0 + 1_000), Ok(Some(5)));
        assert_eq!(e.idle_seconds(0, b"k1", T0), Err(NO_IDLE_TIME));
        for _ in 0..300 {
            let (_, key) = e.evict(DEFAULT_SAMPLES, T0 + 2_000).expect("a key");
            assert_ne!(index(&key) % 5, 0, "a frequently used key was evicted");
        }
        // Idle minutes decay the counter.
        assert_eq!(e.frequency(0, b"k0", T0 + 1_000 + 60 * 60_000), Ok(Some(0)));
    }

    #[test]
    fn random_policies_visit_every_database_and_stop_when_empty() {
        let mut e = Engine::new();
        e.set_policy(Policy::AllKeysRandom);
        for db in [0, 3, 15] {
            for i in 0..10 {
                e.set(db, format!("k{i}").as_bytes(), s("v"));
            }
        }
        let mut dbs = HashSet::new();
        for _ in 0..3 {
            dbs.insert(e.evict(DEFAULT_SAMPLES, 0).expect("a key").0);
        }
        assert_eq!(dbs, HashSet::from([0, 3, 15]));
        let mut n = 3;
        while e.evict(DEFAULT_SAMPLES, 0).is_some() {
            n += 1;
        }
        assert_eq!(n, 30);
        assert!(e.is_empty());
        e.set_policy(Policy::NoEviction);
        e.set(0, b"a", s("v"));
        assert_eq!(e.evict(DEFAULT_SAMPLES, 0), None);
    }

    #[test]
    fn an_eviction_is_a_change_for_watchers_and_skips_deleted_candidates() {
        let mut e = filled(Policy::AllKeysLru, 20, 1000);
        let versions: Vec<u64> = (0..20)
            .map(|i| e.watch(0, format!("k{i}").as_bytes()))
            .collect();
        // Fill the pool, then delete what it holds: the next evictions
        // find those candidates gone and take live keys.
        let (_, first) = e.evict(DEFAULT_SAMPLES, 5000).expect("a key");
        let pooled: Vec<Vec<u8>> = e.evictor.pool.iter().map(|c| c.key.clone()).collect();
        assert!(!pooled.is_empty());
        for k in &pooled {
            e.remove(0, k);
        }
        let mut gone = vec![first];
        while let Some((_, k)) = e.evict(DEFAULT_SAMPLES, 5000) {
            assert!(!pooled.contains(&k), "a deleted key was evicted again");
            gone.push(k);
        }
        assert_eq!(gone.len() + pooled.len(), 20);
        for k in &gone {
            let i = index(k);
            assert_eq!(e.watched_version(0, k), Some(versions[i] + 1));
        }
    }

    #[test]
    fn memory_sizes_parse_as_redis_parses_them() {
        assert_eq!(parse_memory("0"), Some(0));
        assert_eq!(parse_memory("12345"), Some(12345));
        assert_eq!(parse_memory("10b"), Some(10));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1KB"), Some(1024));
        assert_eq!(parse_memory("100mb"), Some(100 << 20));
        assert_eq!(parse_memory("2m"), Some(2_000_000));
        assert_eq!(parse_memory("1Gb"), Some(1 << 30));
        assert_eq!(parse_memory("3g"), Some(3_000_000_000));
        for bad in [
            "",
            "mb",
            "-1",
            "+1",
            "1.5mb",
            "1 mb",
            "1tb",
            "x",
            "99999999999999999999",
            "18446744073709551615kb",
        ] {
            assert_eq!(parse_memory(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn policies_are_named_as_redis_names_them() {
        for p in Policy::ALL {
            assert_eq!(Policy::from_name(p.name()), Some(p));
            assert_eq!(Policy::from_index(p.index()), p);
        }
        assert_eq!(Policy::from_name("ALLKEYS-LRU"), Some(Policy::AllKeysLru));
        assert_eq!(Policy::from_name("lru"), None);
        assert_eq!(
            Policy::names(),
            "volatile-lru, volatile-lfu, volatile-random, volatile-ttl, \
             allkeys-lru, allkeys-lfu, allkeys-random, noeviction"
        );
    }

    use std::collections::HashSet;
}
