//! The string family: `GET`, `SET` and its options, the counters
//! (`INCR`, `INCRBYFLOAT`, ...), ranges (`GETRANGE`, `SETRANGE`,
//! `APPEND`), bits (`SETBIT`, `GETBIT`, `BITCOUNT`) and `LCS`.
//!
//! Values are [`Value::Str`] bytes; integers and floats are kept as their
//! text, as Redis keeps them for every purpose a client can see. Option
//! parsing follows Redis 7's `parseExtendedStringArgumentsOrReply`
//! flag by flag, so conflicting options give the same `syntax error` and
//! a repeated compatible one (`EX 10 EX 20`) is accepted, the last
//! winning.
//!
//! Expiry is propagated as absolute time: `SET k v EX 10` is logged as
//! `SET k v PXAT <ms>`, `SETEX` and `PSETEX` likewise, `GETEX` as
//! `PEXPIREAT`, `PERSIST` or `DEL`, `GETDEL` as `DEL`, and `INCRBYFLOAT`
//! as `SET k <result> KEEPTTL` so that a replay does not depend on float
//! arithmetic.

use super::{is, owned, parse_i64, Call, Command, DENYOOM, FAST, READONLY, WRITE};
use crate::protocols::kv::engine::{Engine, Value};
use crate::protocols::kv::reply::{
    MAX_STRING, NOT_FLOAT, NOT_INTEGER, OVERFLOW, STRING_TOO_LONG, SYNTAX, WRONGTYPE,
};

/// The commands of this family.
pub const COMMANDS: &[Command] = &[
    cmd("get", 2, READONLY | FAST, (1, 1, 1), get),
    cmd("set", -3, WRITE | DENYOOM, (1, 1, 1), set),
    cmd("setnx", 3, WRITE | DENYOOM | FAST, (1, 1, 1), setnx),
    cmd("setex", 4, WRITE | DENYOOM, (1, 1, 1), setex),
    cmd("psetex", 4, WRITE | DENYOOM, (1, 1, 1), psetex),
    cmd("getset", 3, WRITE | DENYOOM | FAST, (1, 1, 1), getset),
    cmd("getdel", 2, WRITE | FAST, (1, 1, 1), getdel),
    cmd("getex", -2, WRITE | FAST, (1, 1, 1), getex),
    cmd("mget", -2, READONLY | FAST, (1, -1, 1), mget),
    cmd("mset", -3, WRITE | DENYOOM, (1, -1, 2), mset),
    cmd("msetnx", -3, WRITE | DENYOOM, (1, -1, 2), msetnx),
    cmd("incr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), incr),
    cmd("decr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), decr),
    cmd("incrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), incrby),
    cmd("decrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), decrby),
    cmd(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        incrbyfloat,
    ),
    cmd("append", 3, WRITE | DENYOOM | FAST, (1, 1, 1), append),
    cmd("strlen", 2, READONLY | FAST, (1, 1, 1), strlen),
    cmd("getrange", 4, READONLY, (1, 1, 1), getrange),
    cmd("substr", 4, READONLY, (1, 1, 1), getrange),
    cmd("setrange", 4, WRITE | DENYOOM, (1, 1, 1), setrange),
    cmd("setbit", 4, WRITE | DENYOOM, (1, 1, 1), setbit),
    cmd("getbit", 3, READONLY | FAST, (1, 1, 1), getbit),
    cmd("bitcount", -2, READONLY, (1, 1, 1), bitcount),
    cmd("lcs", -3, READONLY, (1, 2, 1), lcs),
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

/// What a key holds, as string commands see it.
enum Found<'e> {
    Missing,
    Str(&'e [u8]),
    /// Another type: the command answers `WRONGTYPE`.
    Other,
}

fn lookup<'e>(e: &'e mut Engine, db: usize, key: &[u8], now: u64) -> Found<'e> {
    match e.get(db, key, now) {
        None => Found::Missing,
        Some(en) => match &en.value {
            Value::Str(s) => Found::Str(s),
            _ => Found::Other,
        },
    }
}

/// The string at `key` to change in place (its expiry stays), `Ok(None)`
/// if missing, `Err(())` for another type.
fn lookup_mut<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e mut Vec<u8>>, ()> {
    match e.get_mut(db, key, now) {
        None => Ok(None),
        Some(en) => match &mut en.value {
            Value::Str(s) => Ok(Some(s)),
            _ => Err(()),
        },
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn get(e: &mut Engine, c: &mut Call<'_>) {
    match lookup(e, c.db, c.arg(1), c.now) {
        Found::Missing => c.reply.null(),
        Found::Str(s) => c.reply.bulk(s),
        Found::Other => c.reply.error(WRONGTYPE),
    }
}

// The flags of `SET` and `GETEX`, as Redis names them.
const NX: u32 = 1;
const XX: u32 = 2;
const GET: u32 = 4;
const KEEPTTL: u32 = 8;
const PERSIST: u32 = 16;
const EX: u32 = 32;
const PX: u32 = 64;
const EXAT: u32 = 128;
const PXAT: u32 = 256;

/// Parses `SET`'s (`for_set`) or `GETEX`'s options from `args[3..]` or
/// `args[2..]`: the flags and the expiry argument, `None` on a syntax
/// error. Each option is refused when a conflicting one came before, as
/// Redis does, so `NX XX` and `EX 1 PX 1` are errors while `EX 1 EX 2` is
/// not.
fn parse_string_options<'a>(args: &[&'a [u8]], for_set: bool) -> Option<(u32, Option<&'a [u8]>)> {
    let mut flags = 0;
    let mut expire = None;
    let mut j = if for_set { 3 } else { 2 };
    while j < args.len() {
        let opt = args[j];
        let next = args.get(j + 1).copied();
        let timed = |own: u32| flags & (KEEPTTL | PERSIST | EX | PX | EXAT | PXAT) & !own == 0;
        if for_set && is(opt, "nx") && flags & XX == 0 {
            flags |= NX;
        } else if for_set && is(opt, "xx") && flags & NX == 0 {
            flags |= XX;
        } else if for_set && is(opt, "get") {
            flags |= GET;
        } else if for_set && is(opt, "keepttl") && flags & (PERSIST | EX | PX | EXAT | PXAT) == 0 {
            flags |= KEEPTTL;
        } else if !for_set && is(opt, "persist") && flags & (KEEPTTL | EX | PX | EXAT | PXAT) == 0 {
            flags |= PERSIST;
        } else if let (Some(own), Some(n)) = (expiry_option(opt), next) {
            if !timed(own) {
                return None;
            }
            flags |= own;
            expire = Some(n);
            j += 1;
        } else {
            return None;
        }
        j += 1;
    }
    Some((flags, expire))
}

fn expiry_option(opt: &[u8]) -> Option<u32> {
    [("ex", EX), ("px", PX), ("exat", EXAT), ("pxat", PXAT)]
        .into_iter()
        .find(|(w, _)| is(opt, w))
        .map(|(_, f)| f)
}

/// The absolute expiry (Unix ms) that `arg` gives under `flags` (`EX`
/// and `PX` relative to now, `EX` and `EXAT` in seconds), or `None` after
/// replying Redis's error: not an integer, not positive, or overflowing.
fn expire_at(c: &mut Call<'_>, arg: &[u8], flags: u32) -> Option<u64> {
    let Some(v) = parse_i64(arg) else {
        c.reply.error(NOT_INTEGER);
        return None;
    };
    let seconds = flags & (EX | EXAT) != 0;
    let relative = flags & (EX | PX) != 0;
    let ms = if v <= 0 || (seconds && v > i64::MAX / 1000) {
        None
    } else {
        let ms = if seconds { v * 1000 } else { v };
        if relative {
            ms.checked_add(c.now as i64)
        } else {
            Some(ms)
        }
    };
    match ms {
        Some(ms) if ms > 0 => Some(ms as u64),
        _ => {
            let name = c.name();
            c.reply
                .error(&format!("ERR invalid expire time in '{name}' command"));
            None
        }
    }
}

fn set(e: &mut Engine, c: &mut Call<'_>) {
    let Some((flags, expire)) = parse_string_options(c.args, true) else {
        c.reply.error(SYNTAX);
        return;
    };
    let at = match expire {
        Some(arg) => match expire_at(c, arg, flags) {
            Some(t) => Some(t),
            None => return,
        },
        None => None,
    };
    let (key, value) = (c.arg(1), c.arg(2));
    let mut old = None;
    let found = match lookup(e, c.db, key, c.now) {
        Found::Missing => false,
        Found::Str(s) => {
            if flags & GET != 0 {
                old = Some(s.to_vec());
            }
            true
        }
        Found::Other if flags & GET != 0 => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Found::Other => true,
    };
    let reply = |c: &mut Call<'_>, old: Option<Vec<u8>>, done: bool| {
        if flags & GET != 0 {
            c.reply.bulk_or_null(old.as_deref());
        } else if done {
            c.reply.ok();
        } else {
            c.reply.null();
        }
    };
    if (flags & NX != 0 && found) || (flags & XX != 0 && !found) {
        reply(c, old, false);
        return;
    }
    // The lookup above expired the key if it was due; only KEEPTTL needs
    // the entry again (to keep its expiry).
    let kept = found
        && flags & KEEPTTL != 0
        && e.get_mut(c.db, key, c.now)
            .map(|en| en.value = Value::Str(value.to_vec()))
            .is_some();
    if !kept {
        e.set(c.db, key, Value::Str(value.to_vec()));
    }
    if let Some(t) = at {
        e.set_expire(c.db, key, Some(t));
    }
    c.changed += 1;
    // A plain `SET k v` is logged as sent; with options, as what it did.
    if c.args.len() > 3 {
        let mut log = owned(&[b"SET", key, value]);
        if let Some(t) = at {
            log.push(b("PXAT"));
            log.push(t.to_string().into_bytes());
        } else if flags & KEEPTTL != 0 {
            log.push(b("KEEPTTL"));
        }
        c.propagate_as(vec![log]);
    }
    reply(c, old, true);
}

fn setnx(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    if e.contains(c.db, key, c.now) {
        c.reply.int(0);
        return;
    }
    e.set(c.db, key, Value::Str(c.arg(2).to_vec()));
    c.changed += 1;
    c.reply.int(1);
}

fn setex(e: &mut Engine, c: &mut Call<'_>) {
    set_with_expiry(e, c, EX);
}

fn psetex(e: &mut Engine, c: &mut Call<'_>) {
    set_with_expiry(e, c, PX);
}

/// `SETEX k seconds v` and `PSETEX k ms v`.
fn set_with_expiry(e: &mut Engine, c: &mut Call<'_>, unit: u32) {
    let Some(at) = expire_at(c, c.arg(2), unit) else {
        return;
    };
    let (key, value) = (c.arg(1), c.arg(3));
    e.set(c.db, key, Value::Str(value.to_vec()));
    e.set_expire(c.db, key, Some(at));
    c.changed += 1;
    c.propagate_as(vec![owned(&[
        b"SET",
        key,
        value,
        b"PXAT",
        at.to_string().as_bytes(),
    ])]);
    c.reply.ok();
}

fn getset(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let old = match lookup(e, c.db, key, c.now) {
        Found::Missing => None,
        Found::Str(s) => Some(s.to_vec()),
        Found::Other => {
            c.reply.error(WRONGTYPE);
            return;
        }
    };
    e.set(c.db, key, Value::Str(c.arg(2).to_vec()));
    c.changed += 1;
    c.reply.bulk_or_null(old.as_deref());
}

fn getdel(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    match lookup(e, c.db, key, c.now) {
        Found::Missing => c.reply.null(),
        Found::Other => c.reply.error(WRONGTYPE),
        Found::Str(_) => {
            if let Some(en) = e.remove(c.db, key) {
                if let Value::Str(s) = en.value {
                    c.reply.bulk(&s);
                }
            }
            c.changed += 1;
            c.propagate_as(vec![owned(&[b"DEL", key])]);
        }
    }
}

fn getex(e: &mut Engine, c: &mut Call<'_>) {
    let Some((flags, expire)) = parse_string_options(c.args, false) else {
        c.reply.error(SYNTAX);
        return;
    };
    let key = c.arg(1);
    let value = match lookup(e, c.db, key, c.now) {
        Found::Missing => {
            c.reply.null();
            return;
        }
        Found::Other => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Found::Str(s) => s.to_vec(),
    };
    let at = match expire {
        Some(arg) => match expire_at(c, arg, flags) {
            Some(t) => Some(t),
            None => return,
        },
        None => None,
    };
    c.reply.bulk(&value);
    match at {
        Some(t) if flags & (EXAT | PXAT) != 0 && t <= c.now => {
            e.remove(c.db, key);
            c.changed += 1;
            c.propagate_as(vec![owned(&[b"DEL", key])]);
        }
        Some(t) => {
            e.set_expire(c.db, key, Some(t));
            c.changed += 1;
            c.propagate_as(vec![owned(&[b"PEXPIREAT", key, t.to_string().as_bytes()])]);
        }
        None if flags & PERSIST != 0 => {
            let had = e
                .get(c.db, key, c.now)
                .and_then(|en| en.expires())
                .is_some();
            if had {
                e.set_expire(c.db, key, None);
                c.changed += 1;
                c.propagate_as(vec![owned(&[b"PERSIST", key])]);
            }
        }
        None => {}
    }
}

fn mget(e: &mut Engine, c: &mut Call<'_>) {
    c.reply.array(c.args.len() - 1);
    for &key in &c.args[1..] {
        match lookup(e, c.db, key, c.now) {
            Found::Str(s) => c.reply.bulk(s),
            _ => c.reply.null(),
        }
    }
}

fn mset(e: &mut Engine, c: &mut Call<'_>) {
    if c.args.len().is_multiple_of(2) {
        c.reply.wrong_arity(c.args[0]);
        return;
    }
    for pair in c.args[1..].chunks(2) {
        e.set(c.db, pair[0], Value::Str(pair[1].to_vec()));
        c.changed += 1;
    }
    c.reply.ok();
}

fn msetnx(e: &mut Engine, c: &mut Call<'_>) {
    if c.args.len().is_multiple_of(2) {
        c.reply.wrong_arity(c.args[0]);
        return;
    }
    if c.args[1..]
        .chunks(2)
        .any(|pair| e.contains(c.db, pair[0], c.now))
    {
        c.reply.int(0);
        return;
    }
    for pair in c.args[1..].chunks(2) {
        e.set(c.db, pair[0], Value::Str(pair[1].to_vec()));
        c.changed += 1;
    }
    c.reply.int(1);
}

fn incr(e: &mut Engine, c: &mut Call<'_>) {
    incr_by(e, c, 1);
}

fn decr(e: &mut Engine, c: &mut Call<'_>) {
    incr_by(e, c, -1);
}

fn incrby(e: &mut Engine, c: &mut Call<'_>) {
    match parse_i64(c.arg(2)) {
        Some(by) => incr_by(e, c, by),
        None => c.reply.error(NOT_INTEGER),
    }
}

fn decrby(e: &mut Engine, c: &mut Call<'_>) {
    match parse_i64(c.arg(2)) {
        // Negating the smallest integer would overflow.
        Some(i64::MIN) => c.reply.error("ERR decrement would overflow"),
        Some(by) => incr_by(e, c, -by),
        None => c.reply.error(NOT_INTEGER),
    }
}

/// Adds `by` to the integer at `key` (0 if missing), keeping its expiry.
fn incr_by(e: &mut Engine, c: &mut Call<'_>, by: i64) {
    let key = c.arg(1);
    let (cur, exists) = match lookup(e, c.db, key, c.now) {
        Found::Missing => (0, false),
        Found::Other => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Found::Str(s) => match parse_i64(s) {
            Some(v) => (v, true),
            None => {
                c.reply.error(NOT_INTEGER);
                return;
            }
        },
    };
    let Some(new) = cur.checked_add(by) else {
        c.reply.error(OVERFLOW);
        return;
    };
    let text = new.to_string().into_bytes();
    match lookup_mut(e, c.db, key, c.now) {
        Ok(Some(s)) if exists => *s = text,
        _ => e.set(c.db, key, Value::Str(text)),
    }
    c.changed += 1;
    c.reply.int(new);
}

fn incrbyfloat(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let (cur, exists) = match lookup(e, c.db, key, c.now) {
        Found::Missing => (extended::Extended::ZERO, false),
        Found::Other => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Found::Str(s) => match extended::Extended::parse(s) {
            Some(v) => (v, true),
            None => {
                c.reply.error(NOT_FLOAT);
                return;
            }
        },
    };
    let Some(by) = extended::Extended::parse(c.arg(2)) else {
        c.reply.error(NOT_FLOAT);
        return;
    };
    let sum = cur.add(by);
    if !sum.is_finite() {
        c.reply.error("ERR increment would produce NaN or Infinity");
        return;
    }
    let text = sum.to_human().into_bytes();
    match lookup_mut(e, c.db, key, c.now) {
        Ok(Some(s)) if exists => *s = text.clone(),
        _ => e.set(c.db, key, Value::Str(text.clone())),
    }
    c.changed += 1;
    c.propagate_as(vec![vec![
        b("SET"),
        key.to_vec(),
        text.clone(),
        b("KEEPTTL"),
    ]]);
    c.reply.bulk(&text);
}

fn append(e: &mut Engine, c: &mut Call<'_>) {
    let (key, tail) = (c.arg(1), c.arg(2));
    match lookup_mut(e, c.db, key, c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => {
            e.set(c.db, key, Value::Str(tail.to_vec()));
            c.changed += 1;
            c.reply.int(tail.len() as i64);
        }
        Ok(Some(s)) => {
            if s.len() + tail.len() > MAX_STRING {
                c.reply.error(STRING_TOO_LONG);
                return;
            }
            s.extend_from_slice(tail);
            let n = s.len();
            c.changed += 1;
            c.reply.int(n as i64);
        }
    }
}

fn strlen(e: &mut Engine, c: &mut Call<'_>) {
    match lookup(e, c.db, c.arg(1), c.now) {
        Found::Missing => c.reply.int(0),
        Found::Str(s) => c.reply.int(s.len() as i64),
        Found::Other => c.reply.error(WRONGTYPE),
    }
}

/// Clamps Redis's inclusive `start..=end` (negative from the end) to a
/// string of `len` bytes: `None` when the range is empty.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let mut start = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    };
    let mut end = if end < 0 {
        len.saturating_add(end)
    } else {
        end
    };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        None
    } else {
        Some((start as usize, end as usize))
    }
}

fn getrange(e: &mut Engine, c: &mut Call<'_>) {
    let (Some(start), Some(end)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        c.reply.error(NOT_INTEGER);
        return;
    };
    match lookup(e, c.db, c.arg(1), c.now) {
        Found::Missing => c.reply.bulk(b""),
        Found::Other => c.reply.error(WRONGTYPE),
        Found::Str(s) => match clamp_range(start, end, s.len()) {
            Some((a, z)) => c.reply.bulk(&s[a..=z]),
            None => c.reply.bulk(b""),
        },
    }
}

fn setrange(e: &mut Engine, c: &mut Call<'_>) {
    let Some(offset) = parse_i64(c.arg(2)) else {
        c.reply.error(NOT_INTEGER);
        return;
    };
    if offset < 0 {
        c.reply.error("ERR offset is out of range");
        return;
    }
    let (key, patch) = (c.arg(1), c.arg(3));
    // The size is checked before anything is allocated.
    let fits = (offset as u64).saturating_add(patch.len() as u64) <= MAX_STRING as u64;
    let offset = offset as usize;
    match lookup_mut(e, c.db, key, c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) if patch.is_empty() => c.reply.int(0),
        Ok(Some(s)) if patch.is_empty() => c.reply.int(s.len() as i64),
        Ok(_) if !fits => c.reply.error(STRING_TOO_LONG),
        Ok(None) => {
            let mut s = vec![0; offset + patch.len()];
            s[offset..].copy_from_slice(patch);
            let n = s.len();
            e.set(c.db, key, Value::Str(s));
            c.changed += 1;
            c.reply.int(n as i64);
        }
        Ok(Some(s)) => {
            if s.len() < offset + patch.len() {
                s.resize(offset + patch.len(), 0);
            }
            s[offset..offset + patch.len()].copy_from_slice(patch);
            let n = s.len();
            c.changed += 1;
            c.reply.int(n as i64);
        }
    }
}

/// A bit offset as Redis accepts it: an integer from 0 to the last bit
/// of the longest string.
fn bit_offset(c: &mut Call<'_>, arg: &[u8]) -> Option<usize> {
    match parse_i64(arg) {
        Some(o) if o >= 0 && ((o as u64) >> 3) < MAX_STRING as u64 => Some(o as usize),
        _ => {
            c.reply
                .error("ERR bit offset is not an integer or out of range");
            None
        }
    }
}

fn setbit(e: &mut Engine, c: &mut Call<'_>) {
    let Some(offset) = bit_offset(c, c.arg(2)) else {
        return;
    };
    let on = match c.arg(3) {
        b"0" => false,
        b"1" => true,
        _ => {
            c.reply.error("ERR bit is not an integer or out of range");
            return;
        }
    };
    let key = c.arg(1);
    let (byte, mask) = (offset >> 3, 0x80u8 >> (offset & 7));
    let old = match lookup_mut(e, c.db, key, c.now) {
        Err(()) => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Ok(None) => {
            let mut s = vec![0; byte + 1];
            if on {
                s[byte] |= mask;
            }
            e.set(c.db, key, Value::Str(s));
            false
        }
        Ok(Some(s)) => {
            if s.len() <= byte {
                s.resize(byte + 1, 0);
            }
            let old = s[byte] & mask != 0;
            if on {
                s[byte] |= mask;
            } else {
                s[byte] &= !mask;
            }
            old
        }
    };
    c.changed += 1;
    c.reply.int(i64::from(old));
}

fn getbit(e: &mut Engine, c: &mut Call<'_>) {
    let Some(offset) = bit_offset(c, c.arg(2)) else {
        return;
    };
    match lookup(e, c.db, c.arg(1), c.now) {
        Found::Missing => c.reply.int(0),
        Found::Other => c.reply.error(WRONGTYPE),
        Found::Str(s) => {
            let bit = s
                .get(offset >> 3)
                .is_some_and(|&by| by & (0x80 >> (offset & 7)) != 0);
            c.reply.int(i64::from(bit));
        }
    }
}

fn bitcount(e: &mut Engine, c: &mut Call<'_>) {
    let s = match lookup(e, c.db, c.arg(1), c.now) {
        Found::Missing => {
            c.reply.int(0);
            return;
        }
        Found::Other => {
            c.reply.error(WRONGTYPE);
            return;
        }
        Found::Str(s) => s.to_vec(),
    };
    let n = c.args.len();
    if n == 2 {
        let count: u32 = s.iter().map(|b| b.count_ones()).sum();
        c.reply.int(i64::from(count));
        return;
    }
    if n != 4 && n != 5 {
        c.reply.error(SYNTAX);
        return;
    }
    let (Some(mut start), Some(mut end)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        c.reply.error(NOT_INTEGER);
        return;
    };
    let bits = if n == 5 {
        if is(c.arg(4), "bit") {
            true
        } else if is(c.arg(4), "byte") {
            false
        } else {
            c.reply.error(SYNTAX);
            return;
        }
    } else {
        false
    };
    if start < 0 && end < 0 && start > end {
        c.reply.int(0);
        return;
    }
    let total = if bits {
        s.len() as i64 * 8
    } else {
        s.len() as i64
    };
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    if start > end {
        c.reply.int(0);
        return;
    }
    let count = if bits {
        (start..=end)
            .filter(|&i| s[(i >> 3) as usize] & (0x80 >> (i & 7)) != 0)
            .count() as i64
    } else {
        s[start as usize..=end as usize]
            .iter()
            .map(|b| i64::from(b.count_ones()))
            .sum()
    };
    c.reply.int(count);
}

/// How much memory the `LCS` table may take: Redis refuses a table larger
/// than `proto-max-bulk-len` rather than allocate it.
const LCS_TABLE_MAX: u64 = MAX_STRING as u64;

fn lcs(e: &mut Engine, c: &mut Call<'_>) {
    let a = match lookup(e, c.db, c.arg(1), c.now) {
        Found::Other => None,
        Found::Missing => Some(Vec::new()),
        Found::Str(s) => Some(s.to_vec()),
    };
    let b = match lookup(e, c.db, c.arg(2), c.now) {
        Found::Other => None,
        Found::Missing => Some(Vec::new()),
        Found::Str(s) => Some(s.to_vec()),
    };
    let (Some(a), Some(b)) = (a, b) else {
        c.reply
            .error("ERR The specified keys must contain string values");
        return;
    };
    let (mut idx, mut len, mut withmatchlen, mut minmatchlen) = (false, false, false, 0u64);
    let mut j = 3;
    while j < c.args.len() {
        let opt = c.arg(j);
        if is(opt, "idx") {
            idx = true;
        } else if is(opt, "len") {
            len = true;
        } else if is(opt, "withmatchlen") {
            withmatchlen = true;
        } else if is(opt, "minmatchlen") && j + 1 < c.args.len() {
            let Some(m) = parse_i64(c.arg(j + 1)) else {
                c.reply.error(NOT_INTEGER);
                return;
            };
            minmatchlen = m.max(0) as u64;
            j += 1;
        } else {
            c.reply.error(SYNTAX);
            return;
        }
        j += 1;
    }
    if idx && len {
        c.reply
            .error("ERR If you want both the length and indexes, please just use IDX.");
        return;
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells * 4 > LCS_TABLE_MAX {
        c.reply
            .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        return;
    }
    // The classic dynamic programme: t[i][j] is the LCS length of a[..i]
    // and b[..j].
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    if len {
        c.reply.int(i64::from(total));
        return;
    }
    // Walk back from the end, collecting the LCS and its ranges exactly as
    // Redis does (so that the ranges come out in the same order).
    let mut result = vec![0u8; total as usize];
    let mut k = total as usize;
    let mut ranges: Vec<[u64; 5]> = Vec::new();
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0, 0, 0);
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[k - 1] = a[i - 1];
            if a_start == alen {
                a_start = i - 1;
                a_end = i - 1;
                b_start = j - 1;
                b_end = j - 1;
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            k -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * w + j] > t[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let match_len = (a_end as u64).wrapping_sub(a_start as u64).wrapping_add(1);
            if minmatchlen == 0 || match_len >= minmatchlen {
                ranges.push([
                    a_start as u64,
                    a_end as u64,
                    b_start as u64,
                    b_end as u64,
                    match_len,
                ]);
            }
            a_start = alen;
        }
    }
    if !idx {
        c.reply.bulk(&result);
        return;
    }
    c.reply.map(2);
    c.reply.bulk(b"matches");
    c.reply.array(ranges.len());
    for r in &ranges {
        c.reply.array(2 + usize::from(withmatchlen));
        for pair in [[r[0], r[1]], [r[2], r[3]]] {
            c.reply.array(2);
            c.reply.int(pair[0] as i64);
            c.reply.int(pair[1] as i64);
        }
        if withmatchlen {
            c.reply.int(r[4] as i64);
        }
    }
    c.reply.bulk(b"len");
    c.reply.int(i64::from(total));
}

mod extended {
    //! Redis adds `INCRBYFLOAT` in C's `long double`, which on x86-64 is
    //! the 80-bit extended format (a 64-bit mantissa), and prints the sum
    //! with `%.17Lf` less its trailing zeros. An `f64` would answer
    //! `0.30000000000000004` where Redis answers `0.3`, and `1e308 +
    //! 1e308` would overflow where Redis prints 309 digits, so this module
    //! does the same arithmetic: parsing rounds the exact decimal value to
    //! 64 bits (as `strtold`), addition rounds once (to nearest, ties to
    //! even), and printing is exact. Subnormal values are not modelled: a
    //! value that small prints as `0` anyway.

    /// A value of the 80-bit extended format.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Extended {
        neg: bool,
        kind: Kind,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Zero,
        /// `mant * 2^exp`, `mant`'s top bit set.
        Finite {
            mant: u64,
            exp: i32,
        },
        Inf,
        Nan,
    }

    /// The exponent range of the format (the value below `2^MAX_EXP`,
    /// normal values from `2^MIN_EXP`), in terms of `mant * 2^exp`.
    const MAX_EXP: i32 = 16384 - 64;
    const MIN_EXP: i32 = -16382 - 63;

    /// `strtold` refuses strings of Redis's `MAX_LONG_DOUBLE_CHARS` or more.
    const MAX_CHARS: usize = 5 * 1024;

    impl Extended {
        /// Zero.
        pub const ZERO: Extended = Extended {
            neg: false,
            kind: Kind::Zero,
        };

        /// Parses `s` as Redis's `string2ld` does: `strtold` over the
        /// whole string (decimal, hexadecimal `0x...p...`, `inf`,
        /// `infinity`), no leading space, not NaN, nothing out of range.
        pub fn parse(s: &[u8]) -> Option<Extended> {
            if s.is_empty() || s.len() >= MAX_CHARS {
                return None;
            }
            let (neg, body) = match s[0] {
                b'-' => (true, &s[1..]),
                b'+' => (false, &s[1..]),
                _ => (false, s),
            };
            if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
                return Some(Extended {
                    neg,
                    kind: Kind::Inf,
                });
            }
            let hex = body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x';
            let (digits, scale2, scale10) = if hex {
                parse_hex(&body[2..])?
            } else {
                parse_decimal(body)?
            };
            let kind = round_exact(digits, scale2, scale10)?;
            Some(Extended { neg, kind })
        }

        /// Whether the value is neither infinite nor NaN.
        pub fn is_finite(&self) -> bool {
            matches!(self.kind, Kind::Zero | Kind::Finite { .. })
        }

        /// The sum, rounded to nearest (ties to even).
        pub fn add(self, other: Extended) -> Extended {
            use Kind::*;
            let nan = Extended {
                neg: false,
                kind: Nan,
            };
            match (self.kind, other.kind) {
                (Nan, _) | (_, Nan) => nan,
                (Inf, Inf) if self.neg != other.neg => nan,
                (Inf, _) => self,
                (_, Inf) => other,
                (Zero, Zero) => Extended {
                    neg: self.neg && other.neg,
                    kind: Zero,
                },
                (Zero, _) => other,
                (_, Zero) => self,
                (Finite { mant: ma, exp: ea }, Finite { mant: mb, exp: eb }) => {
                    add_finite((self.neg, ma, ea), (other.neg, mb, eb))
                }
            }
        }

        /// The value as Redis prints it (`ld2string` in `LD_STR_HUMAN`
        /// mode): `%.17Lf` without trailing zeros, `-0` as `0`.
        pub fn to_human(self) -> String {
            let mut s = match self.kind {
                Kind::Inf => return if self.neg { "-inf" } else { "inf" }.into(),
                Kind::Nan => return "nan".into(),
                Kind::Zero => "0".to_string(),
                Kind::Finite { mant, exp } if exp >= 0 => {
                    let mut n = Big::from_u128(u128::from(mant));
                    n.shl(exp as u32);
                    n.to_decimal()
                }
                Kind::Finite { mant, exp } => {
                    // Round mant * 10^17 / 2^-exp to an integer (ties to
                    // even, as glibc does), then place the point.
                    let x = u128::from(mant) * 100_000_000_000_000_000;
                    let shift = (-exp) as u32;
                    let q = if shift >= 128 {
                        0
                    } else {
                        let q = x >> shift;
                        let rem = x & ((1u128 << shift) - 1);
                        let half = 1u128 << (shift - 1);
                        if rem > half || (rem == half && q & 1 == 1) {
                            q + 1
                        } else {
                            q
                        }
                    };
                    let int = q / 100_000_000_000_000_000;
                    let frac = q % 100_000_000_000_000_000;
                    let frac = format!("{frac:017}");
                    let frac = frac.trim_end_matches('0');
                    if frac.is_empty() {
                        int.to_string()
                    } else {
                        format!("{int}.{frac}")
                    }
                }
            };
            if self.neg && s != "0" {
                s.insert(0, '-');
            }
            s
        }
    }

    /// The digits of a decimal number as an integer, and its power of ten.
    fn parse_decimal(s: &[u8]) -> Option<(Big, i64, i64)> {
        let mut n = Big::zero();
        let mut scale = 0i64;
        let mut any = false;
        let mut i = 0;
        let mut point = false;
        while i < s.len() {
            match s[i] {
                d @ b'0'..=b'9' => {
                    n.mul_add(10, u32::from(d - b'0'));
                    any = true;
                    if point {
                        scale -= 1;
                    }
                }
                b'.' if !point => point = true,
                _ => break,
            }
            i += 1;
        }
        if !any {
            return None;
        }
        if i < s.len() {
            scale = scale.saturating_add(parse_exponent(&s[i..])?);
        }
        Some((n, 0, scale))
    }

    /// The digits of a hexadecimal number (after `0x`) and its power of two.
    fn parse_hex(s: &[u8]) -> Option<(Big, i64, i64)> {
        let mut n = Big::zero();
        let mut scale = 0i64;
        let mut any = false;
        let mut i = 0;
        let mut point = false;
        while i < s.len() {
            match (s[i] as char).to_digit(16) {
                Some(d) => {
                    n.mul_add(16, d);
                    any = true;
                    if point {
                        scale -= 4;
                    }
                }
                None if s[i] == b'.' && !point => point = true,
                None => break,
            }
            i += 1;
        }
        if !any {
            return None;
        }
        if i < s.len() {
            if s[i] | 0x20 != b'p' {
                return None;
            }
            scale = scale.saturating_add(parse_signed(&s[i + 1..])?);
        }
        Some((n, scale, 0))
    }

    /// `e12`, `E-3`, `e+7`: the whole rest of the string.
    fn parse_exponent(s: &[u8]) -> Option<i64> {
        if s[0] | 0x20 != b'e' {
            return None;
        }
        parse_signed(&s[1..])
    }

    fn parse_signed(s: &[u8]) -> Option<i64> {
        let (neg, digits) = match s.first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = digits.iter().fold(0i64, |v, &d| {
            v.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
        Some(if neg { -v } else { v })
    }

    /// Rounds `n * 2^scale2 * 10^scale10` to the format, `None` when it
    /// overflows or underflows (where `strtold` sets `ERANGE`).
    fn round_exact(mut n: Big, scale2: i64, scale10: i64) -> Option<Kind> {
        if n.is_zero() {
            return Some(Kind::Zero);
        }
        // Bounds before any big arithmetic: the value is within
        // 10^(scale10 + digits) and 2^(scale2 + bits).
        let bits = n.bit_len() as i64;
        let magnitude2 = scale2 + bits + scale10.saturating_mul(10) / 3;
        if magnitude2 > 16384 + 64 {
            return None;
        }
        if magnitude2 < -16445 - 64 {
            return None;
        }
        let (q, sticky, exp) = if scale10 >= 0 {
            for _ in 0..scale10 {
                n.mul_add(10, 0);
            }
            let len = n.bit_len();
            let shift = len.saturating_sub(66);
            let sticky = n.low_bits_nonzero(shift);
            (n.shr_to_u128(shift), sticky, shift as i64 + scale2)
        } else {
            let mut d = Big::from_u128(1);
            for _ in 0..(-scale10) {
                d.mul_add(10, 0);
            }
            // Scale the numerator so the quotient has at least 66 bits.
            let s = (66 + d.bit_len() as i64 - n.bit_len() as i64).max(0) as u32 + 1;
            n.shl(s);
            let (q, rem_nonzero) = n.div_small_quotient(&d);
            (q, rem_nonzero, scale2 - i64::from(s))
        };
        Some(normalize(q, sticky, exp))
    }

    /// Rounds `q * 2^exp` (plus a little more when `sticky`) to a 64-bit
    /// mantissa.
    fn normalize(q: u128, sticky: bool, exp: i64) -> Kind {
        if q == 0 {
            return Kind::Zero;
        }
        let len = 128 - q.leading_zeros() as i64;
        let (mut mant, mut exp) = if len <= 64 {
            ((q << (64 - len)) as u64, exp - (64 - len))
        } else {
            let shift = (len - 64) as u32;
            let top = (q >> shift) as u64;
            let rem = q & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            let up = rem > half || (rem == half && (sticky || top & 1 == 1));
            let (mut m, mut e) = (top, exp + i64::from(shift));
            if up {
                match m.checked_add(1) {
                    Some(v) => m = v,
                    None => {
                        m = 1 << 63;
                        e += 1;
                    }
                }
            }
            (m, e)
        };
        if exp > i64::from(MAX_EXP) {
            return Kind::Inf;
        }
        if exp < i64::from(MIN_EXP) {
            mant = 0;
            exp = 0;
        }
        if mant == 0 {
            Kind::Zero
        } else {
            Kind::Finite {
                mant,
                exp: exp as i32,
            }
        }
    }

    fn add_finite(a: (bool, u64, i32), b: (bool, u64, i32)) -> Extended {
        // Order by magnitude: `a` the larger.
        let (a, b) = if (a.2, a.1) >= (b.2, b.1) {
            (a, b)
        } else {
            (b, a)
        };
        const GUARD: u32 = 62;
        let x = u128::from(a.1) << GUARD;
        let d = (a.2 - b.2) as u32;
        let y_full = u128::from(b.1) << GUARD;
        let (mut y, sticky) = if d >= 128 {
            (0, true)
        } else {
            (y_full >> d, y_full & ((1u128 << d) - 1) != 0)
        };
        // Jam the lost bits into the lowest bit: with this many guard
        // bits, the rounding below is then the exact sum's.
        if sticky {
            y |= 1;
        }
        let sum = if a.0 == b.0 { x + y } else { x - y };
        let kind = normalize(sum, false, i64::from(a.2) - i64::from(GUARD));
        let neg = if kind == Kind::Zero { false } else { a.0 };
        Extended { neg, kind }
    }

    /// A little unsigned big integer (little-endian 32-bit limbs), enough
    /// for exact parsing and printing.
    #[derive(Clone, Debug)]
    struct Big(Vec<u32>);

    impl Big {
        fn zero() -> Big {
            Big(Vec::new())
        }

        fn from_u128(v: u128) -> Big {
            let mut b = Big((0..4).map(|i| (v >> (32 * i)) as u32).collect());
            b.trim();
            b
        }

        fn trim(&mut self) {
            while self.0.last() == Some(&0) {
                self.0.pop();
            }
        }

        fn is_zero(&self) -> bool {
            self.0.is_empty()
        }

        fn bit_len(&self) -> u32 {
            match self.0.last() {
                None => 0,
                Some(top) => 32 * (self.0.len() as u32 - 1) + (32 - top.leading_zeros()),
            }
        }

        /// `self = self * m + a`.
        fn mul_add(&mut self, m: u32, a: u32) {
            let mut carry = u64::from(a);
            for limb in self.0.iter_mut() {
                let v = u64::from(*limb) * u64::from(m) + carry;
                *limb = v as u32;
                carry = v >> 32;
            }
            if carry != 0 {
                self.0.push(carry as u32);
            }
        }

        fn shl(&mut self, bits: u32) {
            if self.is_zero() {
                return;
            }
            let (limbs, bits) = ((bits / 32) as usize, bits % 32);
            if bits != 0 {
                let mut carry = 0u32;
                for limb in self.0.iter_mut() {
                    let v = (*limb << bits) | carry;
                    carry = *limb >> (32 - bits);
                    *limb = v;
                }
                if carry != 0 {
                    self.0.push(carry);
                }
            }
            self.0.splice(0..0, std::iter::repeat_n(0, limbs));
        }

        fn bit(&self, i: u32) -> bool {
            self.0
                .get((i / 32) as usize)
                .is_some_and(|l| l >> (i % 32) & 1 == 1)
        }

        fn low_bits_nonzero(&self, bits: u32) -> bool {
            (0..bits).any(|i| self.bit(i))
        }

        /// `self >> shift`, which must fit in 128 bits.
        fn shr_to_u128(&self, shift: u32) -> u128 {
            (0..128u32)
                .filter(|&i| self.bit(shift + i))
                .fold(0u128, |v, i| v | (1u128 << i))
        }

        fn cmp_shifted(&self, d: &Big, shift: u32) -> std::cmp::Ordering {
            let mut sd = d.clone();
            sd.shl(shift);
            self.cmp_big(&sd)
        }

        fn cmp_big(&self, o: &Big) -> std::cmp::Ordering {
            self.0
                .len()
                .cmp(&o.0.len())
                .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
        }

        fn sub_assign(&mut self, o: &Big) {
            let mut borrow = 0i64;
            for i in 0..self.0.len() {
                let v = i64::from(self.0[i]) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
                borrow = i64::from(v < 0);
                self.0[i] = v.rem_euclid(1 << 32) as u32;
            }
            self.trim();
        }

        /// `self / d` when the quotient fits in 128 bits, and whether
        /// the remainder is not zero. Shift-and-subtract: the quotient is
        /// only some seventy bits long.
        fn div_small_quotient(mut self, d: &Big) -> (u128, bool) {
            let mut q = 0u128;
            let top = self.bit_len().saturating_sub(d.bit_len());
            for shift in (0..=top).rev() {
                if self.cmp_shifted(d, shift) != std::cmp::Ordering::Less {
                    let mut sd = d.clone();
                    sd.shl(shift);
                    self.sub_assign(&sd);
                    q |= 1u128 << shift;
                }
            }
            (q, !self.is_zero())
        }

        fn to_decimal(&self) -> String {
            if self.is_zero() {
                return "0".into();
            }
            let mut limbs = self.0.clone();
            let mut chunks = Vec::new();
            while !limbs.is_empty() {
                let mut rem = 0u64;
                for limb in limbs.iter_mut().rev() {
                    let v = (rem << 32) | u64::from(*limb);
                    *limb = (v / 1_000_000_000) as u32;
                    rem = v % 1_000_000_000;
                }
                while limbs.last() == Some(&0) {
                    limbs.pop();
                }
                chunks.push(rem as u32);
            }
            let mut s = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
            for c in chunks.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
            s
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn sum(a: &str, b: &str) -> String {
            let a = Extended::parse(a.as_bytes()).unwrap();
            let b = Extended::parse(b.as_bytes()).unwrap();
            a.add(b).to_human()
        }

        #[test]
        fn sums_print_as_redis_prints_them() {
            // Each answer is redis-server 7.0's for INCRBYFLOAT.
            assert_eq!(sum("1000", "0.1"), "1000.09999999999999998");
            assert_eq!(sum("10.5", "0.1"), "10.6");
            assert_eq!(sum("0.1", "0.2"), "0.3");
            assert_eq!(sum("123456.789", "0.001"), "123456.78999999999999915");
            assert_eq!(sum("3.0e3", "0"), "3000");
            assert_eq!(sum("5", "1e-20"), "5");
            assert_eq!(sum("5", "0x10"), "21");
            assert_eq!(sum("1", "-1"), "0");
            assert_eq!(sum("0", "-0.0"), "0");
            assert_eq!(sum("1e30", "0"), "1000000000000000000024696061952");
            assert_eq!(sum("99999.7", "0.1"), "99999.80000000000000426");
            assert_eq!(
                sum("1e308", "1e308"),
                "1999999999999999999933717593116912913211201996948311344155940959898434697376761\
                 2374420025384377707864089349445010802644630426949918792116719484162886039283753\
                 5918200039206381557326219209014213335878306791577877829121087126122536729803237\
                 260434173178506889763247582601711514636284849020905456510092687857156096"
            );
            assert_eq!(sum("-1e-20", "0"), "0");
            assert_eq!(sum("-2.5", "1"), "-1.5");
        }

        #[test]
        fn parsing_accepts_what_strtold_accepts_and_string2ld_keeps() {
            for ok in [
                "1",
                "+1",
                "-1.",
                ".5",
                "1e5",
                "1E+05",
                "inf",
                "-Infinity",
                "0x1p3",
                "0e99999999",
            ] {
                assert!(Extended::parse(ok.as_bytes()).is_some(), "{ok}");
            }
            for bad in [
                "", " 1", "1 ", "nan", "1e", "e5", ".", "0x", "1e99999", "1e-99999", "1x", "--1",
            ] {
                assert!(Extended::parse(bad.as_bytes()).is_none(), "{bad}");
            }
            let inf = Extended::parse(b"inf").unwrap();
            assert!(!inf.add(Extended::ZERO).is_finite());
            let max = Extended::parse(b"1e4932").unwrap();
            assert!(!max.add(max).is_finite());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::protocols::kv::cmd::testing::{run_args, run_full, run_line};
    use crate::protocols::kv::engine::Engine;

    const NOW: u64 = 1_000_000;

    fn logged(e: &mut Engine, now: u64, line: &str) -> (String, Option<Vec<String>>) {
        let args: Vec<&str> = line.split(' ').collect();
        let (reply, done) = run_full(e, now, 0, false, &args);
        let log = done.propagate.map(|cmds| {
            cmds.iter()
                .map(|c| {
                    c.iter()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        });
        (reply, log)
    }

    #[test]
    fn get_and_set_with_conditions() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k v"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$1\r\nv\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k w NX"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k w XX"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET n w XX"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k x NX GET"), "$1\r\nw\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k x XX GET"), "$1\r\nw\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET m x GET"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET m"), "$1\r\nx\r\n");
        assert_eq!(run_line(&mut e, NOW, "SETNX k y"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "SETNX j y"), ":1\r\n");
    }

    #[test]
    fn set_refuses_conflicting_options_and_bad_times() {
        let mut e = Engine::new();
        let syntax = "-ERR syntax error\r\n";
        for line in [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX 10 PX 10",
            "SET k v KEEPTTL EX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v PERSIST",
            "SET k v EX",
            "SET k v FOO",
            "SET k v EXAT 1 PXAT 1",
        ] {
            assert_eq!(run_line(&mut e, NOW, line), syntax, "{line}");
        }
        let bad = "-ERR invalid expire time in 'set' command\r\n";
        for line in [
            "SET k v EX 0",
            "SET k v EX -1",
            "SET k v PX 0",
            "SET k v EX 9223372036854776",
            "SET k v PX 9223372036854775807",
            "SET k v EXAT 0",
        ] {
            assert_eq!(run_line(&mut e, NOW, line), bad, "{line}");
        }
        assert_eq!(
            run_line(&mut e, NOW, "SET k v EX abc"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "SET k v EX 10 EX 20"), "+OK\r\n");
        assert_eq!(e.get(0, b"k", NOW).unwrap().expires(), Some(NOW + 20_000));
        assert_eq!(
            run_line(&mut e, NOW, "SET k v EXAT 9223372036854775"),
            "+OK\r\n"
        );
    }

    #[test]
    fn set_get_on_another_type_changes_nothing() {
        let mut e = Engine::new();
        e.set(
            0,
            b"l",
            crate::protocols::kv::engine::Value::List(Default::default()),
        );
        let (reply, done) = run_full(&mut e, NOW, 0, false, &["SET", "l", "v", "GET"]);
        assert_eq!(reply, format!("-{}\r\n", super::WRONGTYPE));
        assert_eq!(done.changed, 0);
        assert_eq!(e.get(0, b"l", NOW).unwrap().value.type_name(), "list");
        // Without GET the value is replaced whatever it was.
        assert_eq!(run_line(&mut e, NOW, "SET l v"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET l"), "$1\r\nv\r\n");
    }

    #[test]
    fn set_propagates_absolute_expiry_and_keeps_ttl_on_request() {
        let mut e = Engine::new();
        assert_eq!(
            logged(&mut e, NOW, "SET k v EX 10 NX"),
            (
                "+OK\r\n".into(),
                Some(vec![format!("SET k v PXAT {}", NOW + 10_000)])
            )
        );
        assert_eq!(
            logged(&mut e, NOW, "SET k w KEEPTTL GET"),
            ("$1\r\nv\r\n".into(), Some(vec!["SET k w KEEPTTL".into()]))
        );
        assert_eq!(e.get(0, b"k", NOW).unwrap().expires(), Some(NOW + 10_000));
        // Without options: logged as sent.
        assert_eq!(logged(&mut e, NOW, "SET k x"), ("+OK\r\n".into(), None));
        assert_eq!(e.get(0, b"k", NOW).unwrap().expires(), None);
        assert_eq!(
            logged(&mut e, NOW, "SET k v PXAT 5000000"),
            ("+OK\r\n".into(), Some(vec!["SET k v PXAT 5000000".into()]))
        );
        assert_eq!(
            logged(&mut e, NOW, "SET k v EXAT 5000"),
            ("+OK\r\n".into(), Some(vec!["SET k v PXAT 5000000".into()]))
        );
        // An expiry already past: the key is gone at once.
        assert_eq!(run_line(&mut e, NOW, "SET k v PXAT 10"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$-1\r\n");
        // Nothing set, nothing logged.
        let (_, done) = run_full(&mut e, NOW, 0, false, &["SET", "k", "v", "XX", "EX", "5"]);
        assert_eq!((done.changed, done.propagate), (0, None));
    }

    #[test]
    fn setex_and_psetex() {
        let mut e = Engine::new();
        assert_eq!(
            logged(&mut e, NOW, "SETEX k 5 v"),
            (
                "+OK\r\n".into(),
                Some(vec![format!("SET k v PXAT {}", NOW + 5000)])
            )
        );
        assert_eq!(
            logged(&mut e, NOW, "PSETEX k 5 v"),
            (
                "+OK\r\n".into(),
                Some(vec![format!("SET k v PXAT {}", NOW + 5)])
            )
        );
        assert_eq!(
            run_line(&mut e, NOW, "SETEX k 0 v"),
            "-ERR invalid expire time in 'setex' command\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "PSETEX k -1 v"),
            "-ERR invalid expire time in 'psetex' command\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SETEX k abc v"),
            "-ERR value is not an integer or out of range\r\n"
        );
    }

    #[test]
    fn getset_getdel_getex() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "GETSET k a"), "$-1\r\n");
        run_line(&mut e, NOW, "EXPIRE k 100");
        assert_eq!(run_line(&mut e, NOW, "GETSET k b"), "$1\r\na\r\n");
        assert_eq!(e.get(0, b"k", NOW).unwrap().expires(), None);
        assert_eq!(
            logged(&mut e, NOW, "GETDEL k"),
            ("$1\r\nb\r\n".into(), Some(vec!["DEL k".into()]))
        );
        assert_eq!(run_line(&mut e, NOW, "GETDEL k"), "$-1\r\n");

        run_line(&mut e, NOW, "SET k v");
        assert_eq!(logged(&mut e, NOW, "GETEX k"), ("$1\r\nv\r\n".into(), None));
        assert_eq!(
            logged(&mut e, NOW, "GETEX k EX 10"),
            (
                "$1\r\nv\r\n".into(),
                Some(vec![format!("PEXPIREAT k {}", NOW + 10_000)])
            )
        );
        assert_eq!(
            logged(&mut e, NOW, "GETEX k PERSIST"),
            ("$1\r\nv\r\n".into(), Some(vec!["PERSIST k".into()]))
        );
        // PERSIST on a key without expiry changes nothing.
        let (_, done) = run_full(&mut e, NOW, 0, false, &["GETEX", "k", "PERSIST"]);
        assert_eq!((done.changed, done.propagate), (0, None));
        assert_eq!(
            logged(&mut e, NOW, "GETEX k PXAT 10"),
            ("$1\r\nv\r\n".into(), Some(vec!["DEL k".into()]))
        );
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$-1\r\n");
        run_line(&mut e, NOW, "SET k v");
        assert_eq!(
            run_line(&mut e, NOW, "GETEX k PERSIST EX 1"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "GETEX k NX"), "-ERR syntax error\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETEX missing EX abc"), "$-1\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "GETEX k EX 0"),
            "-ERR invalid expire time in 'getex' command\r\n"
        );
    }

    #[test]
    fn multi_key_get_and_set() {
        let mut e = Engine::new();
        e.set(
            0,
            b"l",
            crate::protocols::kv::engine::Value::List(Default::default()),
        );
        assert_eq!(run_line(&mut e, NOW, "MSET a 1 b 2"), "+OK\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "MGET a l b c"),
            "*4\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$-1\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "MSET a 1 b"),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "MSETNX c 3 a 9"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET c"), "$-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "MSETNX c 3 d 4"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET d"), "$1\r\n4\r\n");
    }

    #[test]
    fn counters() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "INCR n"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "INCRBY n 10"), ":11\r\n");
        assert_eq!(run_line(&mut e, NOW, "DECR n"), ":10\r\n");
        assert_eq!(run_line(&mut e, NOW, "DECRBY n 20"), ":-10\r\n");
        run_line(&mut e, NOW, "EXPIRE n 100");
        assert_eq!(run_line(&mut e, NOW, "INCR n"), ":-9\r\n");
        assert_eq!(e.get(0, b"n", NOW).unwrap().expires(), Some(NOW + 100_000));
        let not_int = "-ERR value is not an integer or out of range\r\n";
        for v in ["abc", " 1", "01", "1.5", "", "9223372036854775808"] {
            e.set(0, b"s", crate::protocols::kv::engine::Value::Str(v.into()));
            assert_eq!(run_line(&mut e, NOW, "INCR s"), not_int, "{v:?}");
        }
        assert_eq!(run_line(&mut e, NOW, "INCRBY n abc"), not_int);
        run_line(&mut e, NOW, "SET n 9223372036854775807");
        assert_eq!(
            run_line(&mut e, NOW, "INCR n"),
            "-ERR increment or decrement would overflow\r\n"
        );
        run_line(&mut e, NOW, "SET n -9223372036854775808");
        assert_eq!(
            run_line(&mut e, NOW, "DECR n"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "DECRBY n -9223372036854775808"),
            "-ERR decrement would overflow\r\n"
        );
        e.set(
            0,
            b"l",
            crate::protocols::kv::engine::Value::List(Default::default()),
        );
        assert_eq!(
            run_line(&mut e, NOW, "INCR l"),
            format!("-{}\r\n", super::WRONGTYPE)
        );
    }

    #[test]
    fn incrbyfloat_answers_and_logs_redis_text() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET f 10.5");
        run_line(&mut e, NOW, "EXPIRE f 100");
        assert_eq!(
            logged(&mut e, NOW, "INCRBYFLOAT f 0.1"),
            (
                "$4\r\n10.6\r\n".into(),
                Some(vec!["SET f 10.6 KEEPTTL".into()])
            )
        );
        assert_eq!(e.get(0, b"f", NOW).unwrap().expires(), Some(NOW + 100_000));
        run_line(&mut e, NOW, "SET f 3.0e3");
        assert_eq!(run_line(&mut e, NOW, "INCRBYFLOAT f 0"), "$4\r\n3000\r\n");
        assert_eq!(run_line(&mut e, NOW, "INCRBYFLOAT g 0.1"), "$3\r\n0.1\r\n");
        assert_eq!(run_line(&mut e, NOW, "INCRBYFLOAT g 0.2"), "$3\r\n0.3\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "INCRBYFLOAT g abc"),
            "-ERR value is not a valid float\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "INCRBYFLOAT g inf"),
            "-ERR increment would produce NaN or Infinity\r\n"
        );
        run_line(&mut e, NOW, "SET s abc");
        assert_eq!(
            run_line(&mut e, NOW, "INCRBYFLOAT s 1"),
            "-ERR value is not a valid float\r\n"
        );
    }

    #[test]
    fn append_strlen_and_ranges() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "APPEND k Hello"), ":5\r\n");
        assert_eq!(run_line(&mut e, NOW, "APPEND k World"), ":10\r\n");
        assert_eq!(run_line(&mut e, NOW, "STRLEN k"), ":10\r\n");
        assert_eq!(run_line(&mut e, NOW, "STRLEN nope"), ":0\r\n");
        assert_eq!(run_args(&mut e, NOW, &["APPEND", "empty", ""]), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXISTS empty"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETRANGE k 0 4"), "$5\r\nHello\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETRANGE k -5 -1"), "$5\r\nWorld\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "GETRANGE k -100 100"),
            "$10\r\nHelloWorld\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "GETRANGE k 5 2"), "$0\r\n\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETRANGE k -1 -5"), "$0\r\n\r\n");
        assert_eq!(run_line(&mut e, NOW, "SUBSTR k 0 0"), "$1\r\nH\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETRANGE nope 0 -1"), "$0\r\n\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "GETRANGE k a 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "SETRANGE k 5 Redis"), ":10\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET k"), "$10\r\nHelloRedis\r\n");
        assert_eq!(run_line(&mut e, NOW, "SETRANGE n 3 ab"), ":5\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET n"), "$5\r\n\0\0\0ab\r\n");
        assert_eq!(run_args(&mut e, NOW, &["SETRANGE", "z", "5", ""]), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXISTS z"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "SETRANGE k -1 x"),
            "-ERR offset is out of range\r\n"
        );
        // Refused before anything is allocated.
        assert_eq!(
            run_line(&mut e, NOW, "SETRANGE k 536870912 x"),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SETRANGE k 9223372036854775807 x"),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
        );
    }

    #[test]
    fn bits() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "SETBIT b 7 1"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "SETBIT b 7 1"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET b"), "$1\r\n\x01\r\n");
        assert_eq!(run_line(&mut e, NOW, "SETBIT b 0 1"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETBIT b 0"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETBIT b 100"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "GETBIT nope 1"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "SETBIT b 1 2"),
            "-ERR bit is not an integer or out of range\r\n"
        );
        for line in ["SETBIT b -1 1", "SETBIT b 4294967296 1", "GETBIT b abc"] {
            assert_eq!(
                run_line(&mut e, NOW, line),
                "-ERR bit offset is not an integer or out of range\r\n"
            );
        }
        run_line(&mut e, NOW, "SET s foobar");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s"), ":26\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s 0 0"), ":4\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s 1 1"), ":6\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s 1 1 BYTE"), ":6\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s 5 30 BIT"), ":17\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT s -1 -2"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "BITCOUNT s 0"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "BITCOUNT s 0 1 foo"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT nope 0"), ":0\r\n");
        assert_eq!(run_args(&mut e, NOW, &["SET", "e", ""]), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "BITCOUNT e 0 -1 BIT"), ":0\r\n");
    }

    #[test]
    fn lcs_in_its_three_shapes() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "MSET a ohmytext b mynewtext");
        assert_eq!(run_line(&mut e, NOW, "LCS a b"), "$6\r\nmytext\r\n");
        assert_eq!(run_line(&mut e, NOW, "LCS a b LEN"), ":6\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "LCS a b IDX"),
            "*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
             *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "LCS a b IDX MINMATCHLEN 4 WITHMATCHLEN"),
            "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
             $3\r\nlen\r\n:6\r\n"
        );
        let (resp3, _) = run_full(
            &mut e,
            NOW,
            0,
            true,
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "9"],
        );
        assert_eq!(resp3, "%2\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:6\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "LCS a b LEN IDX"),
            "-ERR If you want both the length and indexes, please just use IDX.\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "LCS a b MINMATCHLEN"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "LCS a nope"), "$0\r\n\r\n");
        e.set(
            0,
            b"l",
            crate::protocols::kv::engine::Value::List(Default::default()),
        );
        assert_eq!(
            run_line(&mut e, NOW, "LCS a l"),
            "-ERR The specified keys must contain string values\r\n"
        );
        // A table past 512 MB is refused, not allocated.
        let big = "x".repeat(12_000);
        run_args(&mut e, NOW, &["SET", "x", &big]);
        assert_eq!(
            run_line(&mut e, NOW, "LCS x x"),
            "-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len\r\n"
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let mut e = Engine::new();
        e.set(
            0,
            b"l",
            crate::protocols::kv::engine::Value::List(Default::default()),
        );
        let wrong = format!("-{}\r\n", super::WRONGTYPE);
        for line in [
            "GET l",
            "GETSET l v",
            "GETDEL l",
            "GETEX l",
            "APPEND l v",
            "STRLEN l",
            "GETRANGE l 0 1",
            "SETRANGE l 0 v",
            "SETBIT l 0 1",
            "GETBIT l 0",
            "BITCOUNT l",
            "INCRBYFLOAT l 1",
        ] {
            assert_eq!(run_line(&mut e, NOW, line), wrong, "{line}");
        }
    }
}
