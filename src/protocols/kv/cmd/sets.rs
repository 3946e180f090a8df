//! The set commands (`SADD` ... `SSCAN`) over [`Value::Set`], and the
//! pieces `SSCAN` and `HSCAN` share: the cursor walk over an unordered
//! collection ([`scan`]) and random sampling without and with repeats
//! (`SPOP`, `SRANDMEMBER`, `HRANDFIELD`).
//!
//! Multi-key commands check every key's type before anything else, as
//! Redis does: `SINTER missing notaset` is `WRONGTYPE`, not an empty set.

use std::collections::HashSet;

use super::{is, parse_i64, Call, Command, DENYOOM, FAST, RANDOM, READONLY, WRITE};
use crate::protocols::kv::engine::{Engine, Entry, Value};
use crate::protocols::kv::reply::{NOT_INTEGER, SYNTAX, WRONGTYPE};

type Set = HashSet<Vec<u8>>;

/// The commands of this family.
pub const COMMANDS: &[Command] = &[
    cmd("sadd", -3, WRITE | DENYOOM | FAST, (1, 1, 1), sadd),
    cmd("srem", -3, WRITE | FAST, (1, 1, 1), srem),
    cmd("smembers", 2, READONLY, (1, 1, 1), smembers),
    cmd("sismember", 3, READONLY | FAST, (1, 1, 1), sismember),
    cmd("smismember", -3, READONLY | FAST, (1, 1, 1), smismember),
    cmd("scard", 2, READONLY | FAST, (1, 1, 1), scard),
    cmd("spop", -2, WRITE | FAST | RANDOM, (1, 1, 1), spop),
    cmd("srandmember", -2, READONLY | RANDOM, (1, 1, 1), srandmember),
    cmd("sinter", -2, READONLY, (1, -1, 1), sinter),
    cmd("sunion", -2, READONLY, (1, -1, 1), sunion),
    cmd("sdiff", -2, READONLY, (1, -1, 1), sdiff),
    cmd("sinterstore", -3, WRITE | DENYOOM, (1, -1, 1), sinterstore),
    cmd("sunionstore", -3, WRITE | DENYOOM, (1, -1, 1), sunionstore),
    cmd("sdiffstore", -3, WRITE | DENYOOM, (1, -1, 1), sdiffstore),
    // Its keys follow a count (Redis's "movablekeys"): no fixed positions.
    cmd("sintercard", -3, READONLY, (0, 0, 0), sintercard),
    cmd("smove", 4, WRITE | FAST, (1, 2, 1), smove),
    cmd("sscan", -3, READONLY | RANDOM, (1, 1, 1), sscan),
];

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: (i32, i32, i32),
    run: fn(&mut Engine, &mut Call<'_>),
) -> Command {
    Command {
        name,
        arity,
        flags,
        keys,
        run,
    }
}

/// `getPositiveLongFromObjectOrReply`'s default complaint (`SPOP`'s count).
const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
/// A random count outside `-LONG_MAX..=LONG_MAX` (`SRANDMEMBER`, `HRANDFIELD`).
pub(super) const COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
/// `SPOP` logs its removals as `SREM`s of at most this many members each, as
/// Redis batches them.
const SREM_BATCH: usize = 1024;

/// The set at `key`: `Ok(None)` when missing, `Err` when another type.
fn get_set<'e>(e: &'e mut Engine, db: usize, key: &[u8], now: u64) -> Result<Option<&'e Set>, ()> {
    match e.get(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::Set(s),
            ..
        }) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn get_set_mut<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e mut Set>, ()> {
    match e.get_mut(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::Set(s),
            ..
        }) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

/// The sets at `keys`, after lazy expiry, borrowed together; `Err` if any
/// key holds another type.
fn get_sets<'e>(
    e: &'e mut Engine,
    db: usize,
    keys: &[&[u8]],
    now: u64,
) -> Result<Vec<Option<&'e Set>>, ()> {
    for k in keys {
        e.expire_if_due(db, k, now);
    }
    let map = &e.db(db).map;
    keys.iter()
        .map(|k| match map.get(*k) {
            None => Ok(None),
            Some(Entry {
                value: Value::Set(s),
                ..
            }) => Ok(Some(s)),
            Some(_) => Err(()),
        })
        .collect()
}

fn sadd(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let set = match get_set_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(Some(s)) => s,
        Ok(None) => {
            e.set(c.db, key, Value::Set(HashSet::new()));
            match get_set_mut(e, c.db, key, c.now) {
                Ok(Some(s)) => s,
                _ => unreachable!("the set was just made"),
            }
        }
    };
    let mut added = 0;
    for m in &c.args[2..] {
        if set.insert(m.to_vec()) {
            added += 1;
        }
    }
    c.changed += added;
    c.reply.int(added as i64);
}

fn srem(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let set = match get_set_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.int(0),
        Ok(Some(s)) => s,
    };
    let mut removed = 0;
    for m in &c.args[2..] {
        if set.remove(*m) {
            removed += 1;
        }
    }
    e.remove_if_empty(c.db, key);
    c.changed += removed;
    c.reply.int(removed as i64);
}

fn smembers(e: &mut Engine, c: &mut Call<'_>) {
    match get_set(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.set(0),
        Ok(Some(s)) => reply_set(c, s.iter().map(|m| m.as_slice()), s.len()),
    }
}

fn reply_set<'a>(c: &mut Call<'_>, members: impl Iterator<Item = &'a [u8]>, n: usize) {
    c.reply.set(n);
    for m in members {
        c.reply.bulk(m);
    }
}

fn sismember(e: &mut Engine, c: &mut Call<'_>) {
    match get_set(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(s) => {
            let found = s.is_some_and(|s| s.contains(c.arg(2)));
            c.reply.int(i64::from(found));
        }
    }
}

fn smismember(e: &mut Engine, c: &mut Call<'_>) {
    match get_set(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(s) => {
            c.reply.array(c.args.len() - 2);
            for m in &c.args[2..] {
                c.reply.int(i64::from(s.is_some_and(|s| s.contains(*m))));
            }
        }
    }
}

fn scard(e: &mut Engine, c: &mut Call<'_>) {
    match get_set(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(s) => c.reply.int(s.map_or(0, |s| s.len() as i64)),
    }
}

/// A count that must be zero or more (`SPOP`, `LPOP`): `None` if it is not.
pub(super) fn parse_positive(s: &[u8]) -> Option<usize> {
    parse_i64(s).and_then(|n| usize::try_from(n).ok())
}

fn spop(e: &mut Engine, c: &mut Call<'_>) {
    if c.args.len() > 3 {
        return c.reply.error(SYNTAX);
    }
    let key = c.arg(1);
    let count = if c.args.len() == 3 {
        match parse_positive(c.arg(2)) {
            Some(n) => Some(n),
            None => return c.reply.error(MUST_BE_POSITIVE),
        }
    } else {
        None
    };
    let len = match get_set(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) if count.is_none() => return c.reply.null(),
        Ok(None) => return c.reply.set(0),
        Ok(Some(s)) => s.len(),
    };
    let Some(count) = count else {
        let i = (e.random() % len as u64) as usize;
        let Ok(Some(set)) = get_set_mut(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        let m = set.iter().nth(i).cloned().expect("index within the set");
        set.remove(&m);
        e.remove_if_empty(c.db, key);
        c.changed += 1;
        c.propagate_as(vec![vec![b"SREM".to_vec(), key.to_vec(), m.clone()]]);
        return c.reply.bulk(&m);
    };
    if count == 0 {
        return c.reply.set(0);
    }
    if count >= len {
        let Some(Entry {
            value: Value::Set(set),
            ..
        }) = e.remove(c.db, key)
        else {
            unreachable!("the set was just seen")
        };
        c.changed += len as u64;
        c.propagate_as(vec![vec![b"DEL".to_vec(), key.to_vec()]]);
        return reply_set(c, set.iter().map(|m| m.as_slice()), len);
    }
    let picked: Vec<Vec<u8>> = {
        let chosen = sample_distinct_indexes(e, len, count);
        let Ok(Some(set)) = get_set(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        pick(set.iter(), &chosen).into_iter().cloned().collect()
    };
    let Ok(Some(set)) = get_set_mut(e, c.db, key, c.now) else {
        unreachable!("the set was just seen")
    };
    for m in &picked {
        set.remove(m);
    }
    c.changed += picked.len() as u64;
    c.propagate_as(
        picked
            .chunks(SREM_BATCH)
            .map(|chunk| {
                let mut srem = vec![b"SREM".to_vec(), key.to_vec()];
                srem.extend(chunk.iter().cloned());
                srem
            })
            .collect(),
    );
    reply_set(c, picked.iter().map(|m| m.as_slice()), picked.len());
}

/// `k` distinct indexes below `n` (`k <= n`), ascending, chosen uniformly
/// (Knuth's selection sampling: one pass, `O(k)` memory).
pub(super) fn sample_distinct_indexes(e: &mut Engine, n: usize, k: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(k);
    for i in 0..n {
        if out.len() == k {
            break;
        }
        let left = (n - i) as u64;
        let need = (k - out.len()) as u64;
        if e.random() % left < need {
            out.push(i);
        }
    }
    out
}

/// The items of `items` at the ascending indexes `chosen`.
pub(super) fn pick<T>(items: impl Iterator<Item = T>, chosen: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(chosen.len());
    let mut want = chosen.iter().peekable();
    for (i, item) in items.enumerate() {
        match want.peek() {
            None => break,
            Some(&&w) if w == i => {
                out.push(item);
                want.next();
            }
            Some(_) => {}
        }
    }
    out
}

/// Shuffles `v` in place (Fisher-Yates).
pub(super) fn shuffle<T>(e: &mut Engine, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = (e.random() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Parses `SRANDMEMBER`/`HRANDFIELD`'s count (`-LONG_MAX..=LONG_MAX`).
pub(super) fn parse_random_count(s: &[u8]) -> Result<i64, &'static str> {
    match parse_i64(s) {
        None => Err(NOT_INTEGER),
        Some(i64::MIN) => Err(COUNT_RANGE),
        Some(n) => Ok(n),
    }
}

fn srandmember(e: &mut Engine, c: &mut Call<'_>) {
    if c.args.len() > 3 {
        return c.reply.error(SYNTAX);
    }
    let key = c.arg(1);
    if c.args.len() == 2 {
        let len = match get_set(e, c.db, key, c.now) {
            Err(()) => return c.reply.error(WRONGTYPE),
            Ok(None) => return c.reply.null(),
            Ok(Some(s)) => s.len(),
        };
        let i = (e.random() % len as u64) as usize;
        let Ok(Some(set)) = get_set(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        let m = set.iter().nth(i).expect("index within the set");
        return c.reply.bulk(m);
    }
    let count = match parse_random_count(c.arg(2)) {
        Ok(n) => n,
        Err(msg) => return c.reply.error(msg),
    };
    let len = match get_set(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.array(0),
        Ok(Some(s)) => s.len(),
    };
    let k = count.unsigned_abs() as usize;
    if k == 0 {
        return c.reply.array(0);
    }
    let picked: Vec<&[u8]> = if count < 0 {
        let want = repeat_indexes(e, len, k);
        let Ok(Some(set)) = get_set(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        gather(set.iter().map(|m| m.as_slice()), &want, k)
    } else if k >= len {
        let Ok(Some(set)) = get_set(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        set.iter().map(|m| m.as_slice()).collect()
    } else {
        let chosen = sample_distinct_indexes(e, len, k);
        let mut order: Vec<usize> = (0..k).collect();
        shuffle(e, &mut order);
        let Ok(Some(set)) = get_set(e, c.db, key, c.now) else {
            unreachable!("the set was just seen")
        };
        let picked = pick(set.iter().map(|m| m.as_slice()), &chosen);
        order.into_iter().map(|i| picked[i]).collect()
    };
    c.reply.array(picked.len());
    for m in picked {
        c.reply.bulk(m);
    }
}

/// `k` random indexes below `n` with repeats, as (index, position in the
/// answer), sorted by index so that one pass gathers them.
pub(super) fn repeat_indexes(e: &mut Engine, n: usize, k: usize) -> Vec<(usize, usize)> {
    let mut want: Vec<(usize, usize)> = (0..k)
        .map(|pos| ((e.random() % n as u64) as usize, pos))
        .collect();
    want.sort_unstable();
    want
}

/// Gathers the items [`repeat_indexes`] chose, in answer order.
pub(super) fn gather<T: Copy>(
    items: impl Iterator<Item = T>,
    want: &[(usize, usize)],
    k: usize,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = vec![None; k];
    let mut w = 0;
    for (i, item) in items.enumerate() {
        while w < want.len() && want[w].0 == i {
            out[want[w].1] = Some(item);
            w += 1;
        }
        if w == want.len() {
            break;
        }
    }
    out.into_iter().flatten().collect()
}

/// The intersection of `sets` (none missing), stopping at `limit` members
/// (0: no limit).
fn intersect<'a>(sets: &mut [&'a Set], limit: usize) -> Vec<&'a [u8]> {
    sets.sort_by_key(|s| s.len());
    let (first, rest) = sets.split_first().expect("at least one set");
    let mut out = Vec::new();
    for m in first.iter() {
        if rest.iter().all(|s| s.contains(m)) {
            out.push(m.as_slice());
            if out.len() == limit {
                break;
            }
        }
    }
    out
}

/// What `SINTER`, `SUNION` or `SDIFF` of `keys` yield; `Err` on a key of
/// another type.
fn combine<'e>(
    e: &'e mut Engine,
    db: usize,
    keys: &[&[u8]],
    now: u64,
    op: Op,
) -> Result<Vec<&'e [u8]>, ()> {
    let sets = get_sets(e, db, keys, now)?;
    Ok(match op {
        Op::Inter => {
            let mut present: Vec<&Set> = Vec::with_capacity(sets.len());
            for s in &sets {
                match s {
                    None => return Ok(Vec::new()),
                    Some(s) => present.push(s),
                }
            }
            intersect(&mut present, 0)
        }
        Op::Union => {
            let mut seen: HashSet<&[u8]> = HashSet::new();
            for s in sets.iter().flatten() {
                seen.extend(s.iter().map(|m| m.as_slice()));
            }
            seen.into_iter().collect()
        }
        Op::Diff => match sets[0] {
            None => Vec::new(),
            Some(first) => first
                .iter()
                .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(*m)))
                .map(|m| m.as_slice())
                .collect(),
        },
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Inter,
    Union,
    Diff,
}

fn read_combined(e: &mut Engine, c: &mut Call<'_>, op: Op) {
    match combine(e, c.db, &c.args[1..], c.now, op) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(members) => {
            let n = members.len();
            reply_set(c, members.into_iter(), n);
        }
    }
}

fn sinter(e: &mut Engine, c: &mut Call<'_>) {
    read_combined(e, c, Op::Inter)
}

fn sunion(e: &mut Engine, c: &mut Call<'_>) {
    read_combined(e, c, Op::Union)
}

fn sdiff(e: &mut Engine, c: &mut Call<'_>) {
    read_combined(e, c, Op::Diff)
}

fn store_combined(e: &mut Engine, c: &mut Call<'_>, op: Op) {
    let dst = c.arg(1);
    let keys = &c.args[2..];
    let result: Set = match combine(e, c.db, keys, c.now, op) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(members) => members.into_iter().map(|m| m.to_vec()).collect(),
    };
    let n = result.len();
    if n == 0 {
        let existed = e.remove(c.db, dst).is_some();
        // Redis counts SUNIONSTORE and SDIFFSTORE as a change even when the
        // destination was already absent, and an intersection with a missing
        // key only when it deleted something.
        let missing_source =
            op == Op::Inter && keys.iter().any(|k| e.db(c.db).map.get(*k).is_none());
        c.changed += u64::from(existed || !missing_source);
    } else {
        e.set(c.db, dst, Value::Set(result));
        c.changed += 1;
    }
    c.reply.int(n as i64);
}

fn sinterstore(e: &mut Engine, c: &mut Call<'_>) {
    store_combined(e, c, Op::Inter)
}

fn sunionstore(e: &mut Engine, c: &mut Call<'_>) {
    store_combined(e, c, Op::Union)
}

fn sdiffstore(e: &mut Engine, c: &mut Call<'_>) {
    store_combined(e, c, Op::Diff)
}

fn sintercard(e: &mut Engine, c: &mut Call<'_>) {
    let numkeys = match parse_i64(c.arg(1)) {
        Some(n) if n >= 1 => n as u64,
        _ => return c.reply.error("ERR numkeys should be greater than 0"),
    };
    if numkeys > (c.args.len() - 2) as u64 {
        return c
            .reply
            .error("ERR Number of keys can't be greater than number of args");
    }
    let numkeys = numkeys as usize;
    let keys = &c.args[2..2 + numkeys];
    let mut limit = 0;
    let mut i = 2 + numkeys;
    while i < c.args.len() {
        if is(c.arg(i), "limit") && i + 1 < c.args.len() {
            match parse_positive(c.arg(i + 1)) {
                Some(n) => limit = n,
                None => return c.reply.error("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return c.reply.error(SYNTAX);
        }
    }
    let sets = match get_sets(e, c.db, keys, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(sets) => sets,
    };
    let mut present = Vec::with_capacity(sets.len());
    for s in sets {
        match s {
            None => return c.reply.int(0),
            Some(s) => present.push(s),
        }
    }
    let n = intersect(&mut present, limit).len();
    c.reply.int(n as i64);
}

fn smove(e: &mut Engine, c: &mut Call<'_>) {
    let (src, dst, m) = (c.arg(1), c.arg(2), c.arg(3));
    let dst_exists = match get_sets(e, c.db, &[src, dst], c.now) {
        Ok(s) if s[0].is_none() => return c.reply.int(0),
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(s) => {
            if src == dst {
                return c.reply.int(i64::from(s[0].is_some_and(|s| s.contains(m))));
            }
            s[1].is_some()
        }
    };
    let Ok(Some(from)) = get_set_mut(e, c.db, src, c.now) else {
        unreachable!("the source was just seen")
    };
    if !from.remove(m) {
        return c.reply.int(0);
    }
    e.remove_if_empty(c.db, src);
    if !dst_exists {
        e.set(c.db, dst, Value::Set(HashSet::new()));
    }
    let Ok(Some(to)) = get_set_mut(e, c.db, dst, c.now) else {
        unreachable!("the destination was just seen or made")
    };
    to.insert(m.to_vec());
    c.changed += 1;
    c.reply.int(1);
}

fn sscan(e: &mut Engine, c: &mut Call<'_>) {
    let Some(cursor) = scan::parse_cursor(c.arg(2)) else {
        return c.reply.error(scan::INVALID_CURSOR);
    };
    let set = match get_set(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return scan::reply_empty(c),
        Ok(Some(s)) => s,
    };
    let opts = match scan::Options::parse(&c.args[3..], false) {
        Ok(o) => o,
        Err(msg) => return c.reply.error(msg),
    };
    let (next, found) = scan::walk(
        set.iter().map(|m| (m.as_slice(), ())),
        set.len(),
        cursor,
        opts.count,
    );
    let found: Vec<&[u8]> = found
        .into_iter()
        .map(|(m, ())| m)
        .filter(|m| opts.matches(m))
        .collect();
    c.reply.array(2);
    c.reply.bulk(next.to_string().as_bytes());
    c.reply.array(found.len());
    for m in found {
        c.reply.bulk(m);
    }
}

pub(super) mod scan {
    //! `SSCAN` and `HSCAN`: a stateless cursor over a collection kept in a
    //! `HashMap` or `HashSet`, whose iteration order changes whenever the
    //! table grows or shrinks.
    //!
    //! A collection of at most [`WHOLE`] elements is returned whole by one
    //! call, with cursor 0, as Redis does for its compact encodings
    //! (`hash-max-listpack-entries` is 128). A larger one is walked in the
    //! order of a fixed hash of each element: the cursor is the hash to go
    //! on from, and each call returns the elements whose hashes come next.
    //! That order does not depend on the table, so an element present for
    //! the whole walk is returned exactly once, and elements added or
    //! removed meanwhile may or may not be. The price: each call passes
    //! over the whole collection, so a call returns at least a
    //! [`PASSES`]th of it (`COUNT` is a hint in Redis too), which keeps a
    //! full walk to about [`PASSES`] passes.

    use std::collections::hash_map::DefaultHasher;
    use std::collections::BinaryHeap;
    use std::hash::Hasher;

    use crate::protocols::kv::cmd::{is, parse_i64, Call};
    use crate::protocols::kv::reply::SYNTAX;

    /// Collections up to this size come back whole, with cursor 0.
    pub const WHOLE: usize = 128;
    /// A larger collection's walk takes about this many calls at most.
    pub const PASSES: usize = 16;
    /// A cursor that is not an unsigned 64-bit number.
    pub const INVALID_CURSOR: &str = "ERR invalid cursor";

    /// Parses a cursor as Redis does (`strtoul`: an optional sign, digits;
    /// `-1` wraps around; the empty string is 0).
    pub fn parse_cursor(s: &[u8]) -> Option<u64> {
        let (neg, digits) = match s.first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() {
            return if s.is_empty() { Some(0) } else { None };
        }
        let mut v: u64 = 0;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        Some(if neg { v.wrapping_neg() } else { v })
    }

    /// The empty answer for a missing key.
    pub fn reply_empty(c: &mut Call<'_>) {
        c.reply.array(2);
        c.reply.bulk(b"0");
        c.reply.array(0);
    }

    /// `MATCH`, `COUNT` and (`HSCAN` only) `NOVALUES`.
    pub struct Options<'a> {
        /// The pattern, unless absent or `*`.
        pub pattern: Option<&'a [u8]>,
        /// How many elements to aim for.
        pub count: usize,
        /// Fields only (`HSCAN ... NOVALUES`).
        pub novalues: bool,
    }

    impl<'a> Options<'a> {
        /// Parses the options after the cursor.
        pub fn parse(args: &[&'a [u8]], allow_novalues: bool) -> Result<Options<'a>, &'static str> {
            let mut o = Options {
                pattern: None,
                count: 10,
                novalues: false,
            };
            let mut i = 0;
            while i < args.len() {
                let more = i + 1 < args.len();
                if is(args[i], "count") && more {
                    match parse_i64(args[i + 1]) {
                        None => return Err(crate::protocols::kv::reply::NOT_INTEGER),
                        Some(n) if n < 1 => return Err(SYNTAX),
                        Some(n) => o.count = usize::try_from(n).unwrap_or(usize::MAX),
                    }
                    i += 2;
                } else if is(args[i], "match") && more {
                    let p = args[i + 1];
                    o.pattern = if p == b"*" { None } else { Some(p) };
                    i += 2;
                } else if is(args[i], "novalues") && allow_novalues {
                    o.novalues = true;
                    i += 1;
                } else {
                    return Err(SYNTAX);
                }
            }
            Ok(o)
        }

        /// Whether `s` passes `MATCH`.
        pub fn matches(&self, s: &[u8]) -> bool {
            self.pattern.is_none_or(|p| glob_match_local(p, s))
        }
    }

    fn order(key: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        h.write(key);
        h.finish()
    }

    /// One call's step from `cursor`: the elements to return and the next
    /// cursor (0 when the walk is done). See the module's comment.
    pub fn walk<'a, T>(
        items: impl Iterator<Item = (&'a [u8], T)> + Clone,
        len: usize,
        cursor: u64,
        count: usize,
    ) -> (u64, Vec<(&'a [u8], T)>) {
        if len <= WHOLE {
            return (0, items.collect());
        }
        let batch = count.max(len.div_ceil(PASSES));
        // The `batch` smallest hashes from the cursor on; the largest of them
        // is where this call stops.
        let mut heap = BinaryHeap::with_capacity(batch + 1);
        for (k, _) in items.clone() {
            let h = order(k);
            if h >= cursor {
                heap.push(h);
                if heap.len() > batch {
                    heap.pop();
                }
            }
        }
        let Some(&last) = heap.peek() else {
            return (0, Vec::new());
        };
        drop(heap);
        let mut more = false;
        let mut out = Vec::with_capacity(batch);
        for (k, v) in items {
            let h = order(k);
            if h > last {
                more = true;
            } else if h >= cursor {
                out.push((k, v));
            }
        }
        (if more { last + 1 } else { 0 }, out)
    }

    /// Glob-style matching as `KEYS` and `SCAN` do it.
    pub fn glob_match_local(p: &[u8], s: &[u8]) -> bool {
        // `*` matches everything, the empty string too, as SCAN treats it.
        p == b"*" || crate::protocols::kv::cmd::keys::glob_match(p, s)
    }
}

#[cfg(test)]
mod tests {
    use super::scan::{glob_match_local, parse_cursor};
    use crate::protocols::kv::cmd::testing::{run_full, run_line};
    use crate::protocols::kv::engine::Engine;

    const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    /// The members of a flat array reply of bulks, sorted.
    fn members(reply: &str) -> Vec<String> {
        let mut out: Vec<String> = reply
            .split("\r\n")
            .skip(1)
            .collect::<Vec<_>>()
            .chunks(2)
            .filter(|p| p.len() == 2 && p[0].starts_with('$'))
            .map(|p| p[1].to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn sadd_srem_scard_and_membership() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "SADD s a b a"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "SADD s a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "SCARD s"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "SCARD nokey"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "SISMEMBER s a"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "SISMEMBER nokey a"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SMISMEMBER s a z b"),
            "*3\r\n:1\r\n:0\r\n:1\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "SMISMEMBER nokey a"), "*1\r\n:0\r\n");
        assert_eq!(run_line(&mut e, 0, "SREM s a z"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "SREM nokey a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "SMEMBERS s"), "*1\r\n$1\r\nb\r\n");
        let (r, done) = run_full(&mut e, 0, 0, false, &["SREM", "s", "b"]);
        assert_eq!(r, ":1\r\n");
        assert_eq!(done.changed, 1);
        assert!(e.db(0).map.is_empty(), "an emptied set is removed");
        assert_eq!(run_line(&mut e, 0, "SMEMBERS s"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SADD"),
            "-ERR wrong number of arguments for 'sadd' command\r\n"
        );
    }

    #[test]
    fn smembers_is_a_set_in_resp3() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "SADD s x");
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["SMEMBERS", "s"]).0,
            "~1\r\n$1\r\nx\r\n"
        );
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["SMEMBERS", "no"]).0,
            "~0\r\n"
        );
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["SINTER", "s"]).0,
            "~1\r\n$1\r\nx\r\n"
        );
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["SPOP", "no", "2"]).0,
            "~0\r\n"
        );
        assert_eq!(run_full(&mut e, 0, 0, true, &["SPOP", "no"]).0, "_\r\n");
    }

    #[test]
    fn every_set_command_refuses_other_types() {
        let mut e = Engine::new();
        e.set(
            0,
            b"str",
            crate::protocols::kv::engine::Value::Str(b"v".to_vec()),
        );
        run_line(&mut e, 0, "SADD s a");
        for line in [
            "SADD str a",
            "SREM str a",
            "SMEMBERS str",
            "SISMEMBER str a",
            "SMISMEMBER str a",
            "SCARD str",
            "SPOP str",
            "SPOP str 0",
            "SRANDMEMBER str",
            "SRANDMEMBER str 1",
            "SINTER nokey str",
            "SINTER s str",
            "SUNION nokey str",
            "SDIFF nokey str",
            "SDIFF s str",
            "SINTERSTORE d nokey str",
            "SUNIONSTORE d s str",
            "SDIFFSTORE d str",
            "SINTERCARD 2 nokey str",
            "SMOVE str s a",
            "SMOVE s str a",
            "SSCAN str 0",
        ] {
            assert_eq!(run_line(&mut e, 0, line), WT, "{line}");
        }
        assert!(!e.db(0).map.contains_key(b"d".as_slice()));
    }

    #[test]
    fn spop_counts_and_propagation() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "SPOP nokey"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "SPOP nokey 3"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SPOP nokey x"),
            "-ERR value is out of range, must be positive\r\n"
        );
        run_line(&mut e, 0, "SADD s a b c d e");
        assert_eq!(
            run_line(&mut e, 0, "SPOP s -1"),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "SPOP s 1 2"), "-ERR syntax error\r\n");
        assert_eq!(run_line(&mut e, 0, "SPOP s 0"), "*0\r\n");

        let (r, done) = run_full(&mut e, 0, 0, false, &["SPOP", "s"]);
        let m = members(&format!("*1\r\n{r}"));
        assert_eq!(m.len(), 1);
        assert_eq!(
            done.propagate,
            Some(vec![vec![
                b"SREM".to_vec(),
                b"s".to_vec(),
                m[0].as_bytes().to_vec()
            ]])
        );
        assert_eq!(run_line(&mut e, 0, "SCARD s"), ":4\r\n");

        let (r, done) = run_full(&mut e, 0, 0, false, &["SPOP", "s", "2"]);
        let popped = members(&r);
        assert_eq!(popped.len(), 2);
        let prop = done.propagate.unwrap();
        assert_eq!(prop.len(), 1);
        let mut logged: Vec<String> = prop[0][2..]
            .iter()
            .map(|m| String::from_utf8(m.clone()).unwrap())
            .collect();
        logged.sort();
        assert_eq!(&prop[0][..2], &[b"SREM".to_vec(), b"s".to_vec()]);
        assert_eq!(logged, popped);
        assert_eq!(run_line(&mut e, 0, "SCARD s"), ":2\r\n");

        let (r, done) = run_full(&mut e, 0, 0, false, &["SPOP", "s", "10"]);
        assert_eq!(members(&r).len(), 2);
        assert_eq!(
            done.propagate,
            Some(vec![vec![b"DEL".to_vec(), b"s".to_vec()]])
        );
        assert!(e.db(0).map.is_empty());
    }

    #[test]
    fn spop_logs_big_pops_in_batches() {
        let mut e = Engine::new();
        let mut args = vec!["SADD".to_string(), "s".into()];
        args.extend((0..3000).map(|i| i.to_string()));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        run_full(&mut e, 0, 0, false, &args);
        let (_, done) = run_full(&mut e, 0, 0, false, &["SPOP", "s", "2500"]);
        let prop = done.propagate.unwrap();
        let sizes: Vec<usize> = prop.iter().map(|c| c.len() - 2).collect();
        assert_eq!(sizes, vec![1024, 1024, 452]);
        assert_eq!(run_line(&mut e, 0, "SCARD s"), ":500\r\n");
    }

    #[test]
    fn srandmember_counts() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "SRANDMEMBER nokey"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "SRANDMEMBER nokey 3"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "SRANDMEMBER nokey -3"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SRANDMEMBER nokey x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SRANDMEMBER nokey -9223372036854775808"),
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
        );
        run_line(&mut e, 0, "SADD one x");
        assert_eq!(run_line(&mut e, 0, "SRANDMEMBER one"), "$1\r\nx\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SRANDMEMBER one -3"),
            "*3\r\n$1\r\nx\r\n$1\r\nx\r\n$1\r\nx\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SRANDMEMBER one 3"),
            "*1\r\n$1\r\nx\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "SRANDMEMBER one 0"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "SRANDMEMBER one 1 2"),
            "-ERR syntax error\r\n"
        );
        run_line(&mut e, 0, "SADD s a b c d e f g h i j");
        for _ in 0..20 {
            let m = members(&run_line(&mut e, 0, "SRANDMEMBER s 4"));
            let mut d = m.clone();
            d.dedup();
            assert_eq!(d.len(), 4, "distinct: {m:?}");
            let m = members(&run_line(&mut e, 0, "SRANDMEMBER s -30"));
            assert_eq!(m.len(), 30);
        }
        assert_eq!(members(&run_line(&mut e, 0, "SRANDMEMBER s 20")).len(), 10);
        // Every member can come out.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(run_line(&mut e, 0, "SRANDMEMBER s"));
        }
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn inter_union_diff_and_their_stores() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "SADD t a b c");
        run_line(&mut e, 0, "SADD u b c d");
        assert_eq!(members(&run_line(&mut e, 0, "SINTER t u")), ["b", "c"]);
        assert_eq!(
            members(&run_line(&mut e, 0, "SUNION t u nokey")),
            ["a", "b", "c", "d"]
        );
        assert_eq!(members(&run_line(&mut e, 0, "SDIFF t u")), ["a"]);
        assert_eq!(run_line(&mut e, 0, "SINTER t nokey"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "SDIFF nokey t"), "*0\r\n");

        e.set(
            0,
            b"d",
            crate::protocols::kv::engine::Value::Str(b"x".to_vec()),
        );
        let (r, done) = run_full(&mut e, 0, 0, false, &["SINTERSTORE", "d", "t", "u"]);
        assert_eq!((r.as_str(), done.changed), (":2\r\n", 1));
        assert_eq!(members(&run_line(&mut e, 0, "SMEMBERS d")), ["b", "c"]);
        assert_eq!(run_line(&mut e, 0, "SUNIONSTORE d d t"), ":3\r\n");
        assert_eq!(run_line(&mut e, 0, "SDIFFSTORE t t u"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "SMEMBERS t"), "*1\r\n$1\r\na\r\n");
        // An empty result removes the destination.
        let (r, done) = run_full(&mut e, 0, 0, false, &["SINTERSTORE", "d", "t", "nokey"]);
        assert_eq!((r.as_str(), done.changed), (":0\r\n", 1));
        assert!(!e.db(0).map.contains_key(b"d".as_slice()));
        let (_, done) = run_full(&mut e, 0, 0, false, &["SINTERSTORE", "d", "t", "nokey"]);
        assert_eq!(done.changed, 0);
        let (r, done) = run_full(&mut e, 0, 0, false, &["SDIFFSTORE", "d", "t", "t"]);
        assert_eq!((r.as_str(), done.changed), (":0\r\n", 1));
        assert!(!e.db(0).map.contains_key(b"d".as_slice()));
    }

    #[test]
    fn sintercard_limits_and_errors() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "SADD t a b c");
        run_line(&mut e, 0, "SADD u b c d");
        assert_eq!(run_line(&mut e, 0, "SINTERCARD 2 t u"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "SINTERCARD 2 t u LIMIT 1"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "SINTERCARD 2 t u limit 0"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "SINTERCARD 1 t"), ":3\r\n");
        assert_eq!(run_line(&mut e, 0, "SINTERCARD 2 t nokey"), ":0\r\n");
        for n in ["0", "-1", "x"] {
            assert_eq!(
                run_line(&mut e, 0, &format!("SINTERCARD {n} t")),
                "-ERR numkeys should be greater than 0\r\n"
            );
        }
        assert_eq!(
            run_line(&mut e, 0, "SINTERCARD 3 t u"),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SINTERCARD 2 t u LIMIT -1"),
            "-ERR LIMIT can't be negative\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SINTERCARD 1 t LIMIT"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SINTERCARD 1 t FOO 1"),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn smove_cases() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "SADD t a b");
        assert_eq!(run_line(&mut e, 0, "SMOVE nokey t a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "SMOVE t t a"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "SMOVE t t z"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "SMOVE t u z"), ":0\r\n");
        let (r, done) = run_full(&mut e, 0, 0, false, &["SMOVE", "t", "u", "a"]);
        assert_eq!((r.as_str(), done.changed), (":1\r\n", 1));
        assert_eq!(run_line(&mut e, 0, "SMEMBERS u"), "*1\r\n$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "SMOVE t u b"), ":1\r\n");
        assert!(
            !e.db(0).map.contains_key(b"t".as_slice()),
            "emptied source removed"
        );
        assert_eq!(run_line(&mut e, 0, "SCARD u"), ":2\r\n");
    }

    #[test]
    fn sscan_small_sets_come_whole() {
        let mut e = Engine::new();
        assert_eq!(
            run_line(&mut e, 0, "SSCAN nokey 0"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN nokey 0 FOO"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN nokey x"),
            "-ERR invalid cursor\r\n"
        );
        run_line(&mut e, 0, "SADD s a1 a2 b1");
        assert_eq!(
            run_line(&mut e, 0, "SSCAN s 0 COUNT 0"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN s 0 COUNT x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN s 0 MATCH"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN s 0 NOVALUES"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "SSCAN s 0 MATCH b*"),
            "*2\r\n$1\r\n0\r\n*1\r\n$2\r\nb1\r\n"
        );
        let r = run_line(&mut e, 0, "SSCAN s 7 COUNT 1");
        assert!(r.starts_with("*2\r\n$1\r\n0\r\n*3\r\n"), "{r}");
    }

    #[test]
    fn sscan_walks_big_sets_despite_changes() {
        let mut e = Engine::new();
        for i in 0..1000 {
            run_line(&mut e, 0, &format!("SADD s m{i}"));
        }
        let mut seen = std::collections::HashMap::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let r = run_line(&mut e, 0, &format!("SSCAN s {cursor} COUNT 5"));
            let parts: Vec<&str> = r.split("\r\n").collect();
            cursor = parts[2].to_string();
            for m in members(&format!("*0\r\n{}", parts[4..].join("\r\n"))) {
                *seen.entry(m).or_insert(0) += 1;
            }
            // Churn: grow and shrink the set between calls.
            calls += 1;
            run_line(&mut e, 0, &format!("SADD s new{calls}"));
            run_line(&mut e, 0, &format!("SREM s m{}", calls * 7));
            if cursor == "0" {
                break;
            }
        }
        assert!(calls <= 20, "{calls} calls");
        for i in 0..1000 {
            let removed = (1..=calls).any(|c| c * 7 == i);
            let n = seen.get(&format!("m{i}")).copied().unwrap_or(0);
            assert!(removed || n == 1, "m{i} seen {n} times");
        }
    }

    #[test]
    fn cursors_and_patterns_parse_as_redis() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b"1x"), None);
        assert_eq!(parse_cursor(b"-"), None);
        for (p, s, m) in [
            ("*", "", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]x", "bx", true),
            ("[^ab]x", "bx", false),
            ("[a-c]", "b", true),
            ("[c-a]", "b", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxx", false),
            ("[a", "a", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(glob_match_local(p.as_bytes(), s.as_bytes()), m, "{p} {s}");
        }
    }
}
