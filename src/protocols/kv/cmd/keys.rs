//! The generic key commands (`DEL`, `EXISTS`, `TYPE`, `RENAME`, `COPY`,
//! `MOVE`, the expiry family, `OBJECT`) and the database-wide ones
//! (`KEYS`, `SCAN`, `RANDOMKEY`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`,
//! `SWAPDB`), with [`glob_match`], the pattern matcher `KEYS`, `SCAN
//! MATCH` and the collection scans share.
//!
//! Expiry is propagated as absolute time: the `EXPIRE` family is logged as
//! `PEXPIREAT k <ms>`, or as `DEL k` when that time has already passed
//! (Redis deletes the key at once then, and answers 1).

use super::{is, owned, parse_i64, Call, Command, DENYOOM, FAST, RANDOM, READONLY, WRITE};
use crate::protocols::kv::engine::{Engine, Value, DATABASES};
use crate::protocols::kv::reply::{DB_OUT_OF_RANGE, NOT_INTEGER, NO_SUCH_KEY, SYNTAX};

/// The commands of this family.
pub const COMMANDS: &[Command] = &[
    cmd("del", -2, WRITE, (1, -1, 1), del),
    cmd("unlink", -2, WRITE | FAST, (1, -1, 1), del),
    cmd("exists", -2, READONLY | FAST, (1, -1, 1), exists),
    cmd("touch", -2, READONLY | FAST, (1, -1, 1), touch),
    cmd("type", 2, READONLY | FAST, (1, 1, 1), type_),
    cmd("keys", 2, READONLY, (0, 0, 0), keys),
    cmd("scan", -2, READONLY | RANDOM, (0, 0, 0), scan),
    cmd("randomkey", 1, READONLY | RANDOM, (0, 0, 0), randomkey),
    cmd("rename", 3, WRITE, (1, 2, 1), rename),
    cmd("renamenx", 3, WRITE | FAST, (1, 2, 1), renamenx),
    cmd("expire", -3, WRITE | FAST, (1, 1, 1), expire),
    cmd("pexpire", -3, WRITE | FAST, (1, 1, 1), pexpire),
    cmd("expireat", -3, WRITE | FAST, (1, 1, 1), expireat),
    cmd("pexpireat", -3, WRITE | FAST, (1, 1, 1), pexpireat),
    cmd("ttl", 2, READONLY | FAST, (1, 1, 1), ttl),
    cmd("pttl", 2, READONLY | FAST, (1, 1, 1), pttl),
    cmd("expiretime", 2, READONLY | FAST, (1, 1, 1), expiretime),
    cmd("pexpiretime", 2, READONLY | FAST, (1, 1, 1), pexpiretime),
    cmd("persist", 2, WRITE | FAST, (1, 1, 1), persist),
    cmd("dbsize", 1, READONLY | FAST, (0, 0, 0), dbsize),
    cmd("flushdb", -1, WRITE, (0, 0, 0), flushdb),
    cmd("flushall", -1, WRITE, (0, 0, 0), flushall),
    cmd("swapdb", 3, WRITE | FAST, (0, 0, 0), swapdb),
    cmd("move", 3, WRITE | FAST, (1, 1, 1), move_),
    cmd("copy", -3, WRITE | DENYOOM, (1, 2, 1), copy),
    cmd("object", -2, READONLY, (2, 2, 1), object),
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

/// Whether `s` matches the glob `pattern`, exactly as Redis's
/// `stringmatchlen`: `*` any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]`
/// (ends in either order), `\x` the byte `x`. An unclosed `[` matches as
/// if closed at the pattern's end. Bytes compare as C's signed `char`, as
/// Redis compares them in ranges.
///
/// Cost: Redis's matcher recurses at each `*` but gives up on longer
/// matches for an earlier `*` once a later one has failed everywhere, so
/// the work is polynomial, and it refuses (no match) past 1000 nested
/// `*`; this matcher does the same.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, s, false, &mut skip_longer, 0)
}

/// [`glob_match`] ignoring ASCII case (`CONFIG GET`'s matching).
pub fn glob_match_nocase(pattern: &[u8], s: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, s, true, &mut skip_longer, 0)
}

/// How deep `*` may nest before a match is refused (Redis's guard against
/// abusive patterns).
const GLOB_NESTING_MAX: usize = 1000;

fn match_from(p: &[u8], s: &[u8], nocase: bool, skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > GLOB_NESTING_MAX {
        return false;
    }
    // C strings end in NUL: reading one past the end gives 0.
    let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(0);
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    let (mut p, mut s) = (p, s);
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_from(&p[1..], s, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                // `i` walks the class; `p[i]` past the end reads as NUL.
                let mut i = 1;
                let not = at(p, i) == b'^';
                if not {
                    i += 1;
                }
                let mut matched = false;
                loop {
                    let rest = p.len().saturating_sub(i);
                    if at(p, i) == b'\\' && rest >= 2 {
                        i += 1;
                        if at(p, i) == s[0] {
                            matched = true;
                        }
                    } else if at(p, i) == b']' {
                        break;
                    } else if rest == 0 {
                        i -= 1;
                        break;
                    } else if rest >= 3 && at(p, i + 1) == b'-' {
                        let (mut lo, mut hi) = (at(p, i), at(p, i + 2));
                        let mut c = s[0];
                        if nocase {
                            lo = lo.to_ascii_lowercase();
                            hi = hi.to_ascii_lowercase();
                            c = c.to_ascii_lowercase();
                        }
                        let (mut lo, mut hi, c) = (lo as i8, hi as i8, c as i8);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        i += 2;
                        if c >= lo && c <= hi {
                            matched = true;
                        }
                    } else if fold(at(p, i)) == fold(s[0]) {
                        matched = true;
                    }
                    i += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                // `p` now starts at the class's last byte, consumed below.
                p = &p[i..];
            }
            c => {
                let c = if c == b'\\' && p.len() >= 2 {
                    p = &p[1..];
                    p[0]
                } else {
                    c
                };
                if fold(c) != fold(s[0]) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

fn del(e: &mut Engine, c: &mut Call<'_>) {
    let mut n = 0;
    for &key in &c.args[1..] {
        if e.contains(c.db, key, c.now) {
            e.remove(c.db, key);
            n += 1;
        }
    }
    c.changed += n;
    c.reply.int(n as i64);
}

fn exists(e: &mut Engine, c: &mut Call<'_>) {
    let n = c.args[1..]
        .iter()
        .filter(|k| e.contains(c.db, k, c.now))
        .count();
    c.reply.int(n as i64);
}

fn touch(e: &mut Engine, c: &mut Call<'_>) {
    exists(e, c);
}

fn type_(e: &mut Engine, c: &mut Call<'_>) {
    let name = e
        .get(c.db, c.arg(1), c.now)
        .map_or("none", |en| en.value.type_name());
    c.reply.simple(name.as_bytes());
}

/// Whether an entry is live at `now` (walks over the raw database see
/// keys not yet lazily expired).
fn live(expires: Option<u64>, now: u64) -> bool {
    expires.is_none_or(|t| t > now)
}

fn keys(e: &mut Engine, c: &mut Call<'_>) {
    let pattern = c.arg(1);
    let all = pattern == b"*";
    let found: Vec<&[u8]> = e
        .db(c.db)
        .map
        .iter()
        .filter(|(k, en)| live(en.expires(), c.now) && (all || glob_match(pattern, k)))
        .map(|(k, _)| k.as_slice())
        .collect();
    c.reply.bulks(found.into_iter());
}

/// Parses a `SCAN` cursor as Redis does (`strtoul`: an optional sign,
/// digits, within 64 bits; `-1` wraps around).
pub fn parse_cursor(s: &[u8]) -> Option<u64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if s.is_empty() {
        return Some(0);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

fn scan(e: &mut Engine, c: &mut Call<'_>) {
    let Some(cursor) = parse_cursor(c.arg(1)) else {
        c.reply.error("ERR invalid cursor");
        return;
    };
    let (mut count, mut pattern, mut type_name) = (10usize, None, None);
    let mut i = 2;
    while i < c.args.len() {
        let more = i + 1 < c.args.len();
        let opt = c.arg(i);
        if is(opt, "count") && more {
            match parse_i64(c.arg(i + 1)) {
                None => {
                    c.reply.error(NOT_INTEGER);
                    return;
                }
                Some(n) if n < 1 => {
                    c.reply.error(SYNTAX);
                    return;
                }
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            }
        } else if is(opt, "match") && more {
            let p = c.arg(i + 1);
            pattern = (p != b"*").then_some(p);
        } else if is(opt, "type") && more {
            type_name = Some(c.arg(i + 1));
        } else {
            c.reply.error(SYNTAX);
            return;
        }
        i += 2;
    }
    let now = c.now;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = e.db(c.db).scan(cursor, count, |k, en| {
        let keep = live(en.expires(), now)
            && pattern.is_none_or(|p| glob_match(p, k))
            && type_name.is_none_or(|t| t.eq_ignore_ascii_case(en.value.type_name().as_bytes()));
        if keep {
            found.push(k.to_vec());
        }
    });
    c.reply.array(2);
    c.reply.bulk(next.to_string().as_bytes());
    c.reply.bulks(found.iter().map(|k| k.as_slice()));
}

fn randomkey(e: &mut Engine, c: &mut Call<'_>) {
    let key = e.random_key(c.db, c.now);
    c.reply.bulk_or_null(key.as_deref());
}

fn rename(e: &mut Engine, c: &mut Call<'_>) {
    rename_key(e, c, false);
}

fn renamenx(e: &mut Engine, c: &mut Call<'_>) {
    rename_key(e, c, true);
}

/// `RENAME` and `RENAMENX`: the value moves with its expiry.
fn rename_key(e: &mut Engine, c: &mut Call<'_>, nx: bool) {
    let (from, to) = (c.arg(1), c.arg(2));
    if !e.contains(c.db, from, c.now) {
        c.reply.error(NO_SUCH_KEY);
        return;
    }
    if from == to {
        if nx {
            c.reply.int(0);
        } else {
            c.reply.ok();
        }
        return;
    }
    if nx && e.contains(c.db, to, c.now) {
        c.reply.int(0);
        return;
    }
    if let Some(entry) = e.remove(c.db, from) {
        e.insert(c.db, to, entry);
    }
    c.changed += 1;
    if nx {
        c.reply.int(1);
    } else {
        c.reply.ok();
    }
}

// The options of the `EXPIRE` family.
const EXPIRE_NX: u32 = 1;
const EXPIRE_XX: u32 = 2;
const EXPIRE_GT: u32 = 4;
const EXPIRE_LT: u32 = 8;

fn expire(e: &mut Engine, c: &mut Call<'_>) {
    expire_generic(e, c, c.now, 1000);
}

fn pexpire(e: &mut Engine, c: &mut Call<'_>) {
    expire_generic(e, c, c.now, 1);
}

fn expireat(e: &mut Engine, c: &mut Call<'_>) {
    expire_generic(e, c, 0, 1000);
}

fn pexpireat(e: &mut Engine, c: &mut Call<'_>) {
    expire_generic(e, c, 0, 1);
}

/// The `EXPIRE` family: `args[2]` in units of `unit` ms from `base` (now,
/// or 0 for the `...AT` forms), with the `NX XX GT LT` conditions.
fn expire_generic(e: &mut Engine, c: &mut Call<'_>, base: u64, unit: i64) {
    let mut flags = 0;
    for &opt in &c.args[3..] {
        flags |= if is(opt, "nx") {
            EXPIRE_NX
        } else if is(opt, "xx") {
            EXPIRE_XX
        } else if is(opt, "gt") {
            EXPIRE_GT
        } else if is(opt, "lt") {
            EXPIRE_LT
        } else {
            let opt = String::from_utf8_lossy(opt);
            c.reply.error(&format!("ERR Unsupported option {opt}"));
            return;
        };
    }
    if flags & EXPIRE_NX != 0 && flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT) != 0 {
        c.reply
            .error("ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if flags & EXPIRE_GT != 0 && flags & EXPIRE_LT != 0 {
        c.reply
            .error("ERR GT and LT options at the same time are not compatible");
        return;
    }
    let Some(v) = parse_i64(c.arg(2)) else {
        c.reply.error(NOT_INTEGER);
        return;
    };
    let when = v
        .checked_mul(unit)
        .and_then(|ms| ms.checked_add(base as i64));
    let Some(when) = when else {
        let name = c.name();
        c.reply
            .error(&format!("ERR invalid expire time in '{name}' command"));
        return;
    };
    let key = c.arg(1);
    let Some(current) = e.get(c.db, key, c.now).map(|en| en.expires()) else {
        c.reply.int(0);
        return;
    };
    let current = current.map(|t| t as i64);
    let refused = (flags & EXPIRE_NX != 0 && current.is_some())
        || (flags & EXPIRE_XX != 0 && current.is_none())
        || (flags & EXPIRE_GT != 0 && current.is_none_or(|t| when <= t))
        || (flags & EXPIRE_LT != 0 && current.is_some_and(|t| when >= t));
    if refused {
        c.reply.int(0);
        return;
    }
    if when <= c.now as i64 && !e.loading() {
        e.remove(c.db, key);
        c.propagate_as(vec![owned(&[b"DEL", key])]);
    } else {
        e.set_expire(c.db, key, Some(when as u64));
        c.propagate_as(vec![owned(&[
            b"PEXPIREAT",
            key,
            when.to_string().as_bytes(),
        ])]);
    }
    c.changed += 1;
    c.reply.int(1);
}

/// `TTL` and friends: -2 for a missing key, -1 without expiry, otherwise
/// the time left (or the absolute time), in ms or rounded to seconds.
fn ttl_generic(e: &mut Engine, c: &mut Call<'_>, ms: bool, absolute: bool) {
    let Some(expires) = e.get(c.db, c.arg(1), c.now).map(|en| en.expires()) else {
        c.reply.int(-2);
        return;
    };
    let Some(t) = expires else {
        c.reply.int(-1);
        return;
    };
    let t = if absolute {
        t as i64
    } else {
        (t as i64 - c.now as i64).max(0)
    };
    c.reply.int(if ms { t } else { (t + 500) / 1000 });
}

fn ttl(e: &mut Engine, c: &mut Call<'_>) {
    ttl_generic(e, c, false, false);
}

fn pttl(e: &mut Engine, c: &mut Call<'_>) {
    ttl_generic(e, c, true, false);
}

fn expiretime(e: &mut Engine, c: &mut Call<'_>) {
    ttl_generic(e, c, false, true);
}

fn pexpiretime(e: &mut Engine, c: &mut Call<'_>) {
    ttl_generic(e, c, true, true);
}

fn persist(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let had = e
        .get(c.db, key, c.now)
        .is_some_and(|en| en.expires().is_some());
    if had {
        e.set_expire(c.db, key, None);
        c.changed += 1;
    }
    c.reply.int(i64::from(had));
}

fn dbsize(e: &mut Engine, c: &mut Call<'_>) {
    c.reply.int(e.len(c.db) as i64);
}

/// `FLUSHDB` and `FLUSHALL` take nothing, `ASYNC` or `SYNC` (the same
/// here: freeing is not deferred).
fn flush_mode_ok(c: &mut Call<'_>) -> bool {
    let ok = match c.args.len() {
        1 => true,
        2 => is(c.arg(1), "async") || is(c.arg(1), "sync"),
        _ => false,
    };
    if !ok {
        c.reply.error(SYNTAX);
    }
    ok
}

fn flushdb(e: &mut Engine, c: &mut Call<'_>) {
    if !flush_mode_ok(c) {
        return;
    }
    let n = e.len(c.db) as u64;
    e.flush(c.db);
    // Logged even when empty, as Redis always propagates a flush.
    c.changed += n.max(1);
    c.reply.ok();
}

fn flushall(e: &mut Engine, c: &mut Call<'_>) {
    if !flush_mode_ok(c) {
        return;
    }
    let mut n = 0;
    for db in 0..DATABASES {
        n += e.len(db) as u64;
        e.flush(db);
    }
    c.changed += n.max(1);
    c.reply.ok();
}

/// A database number as `SWAPDB`, `MOVE` and `COPY` read it: an integer
/// within C's `int` (else `int_error`, or Redis's out-of-range words),
/// then a database that exists.
fn db_index(c: &mut Call<'_>, arg: &[u8], int_error: Option<&str>) -> Option<usize> {
    let Some(v) = parse_i64(arg) else {
        c.reply.error(int_error.unwrap_or(NOT_INTEGER));
        return None;
    };
    if i32::try_from(v).is_err() {
        c.reply.error(
            int_error.unwrap_or(
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ),
        );
        return None;
    }
    match usize::try_from(v) {
        Ok(db) if db < DATABASES => Some(db),
        _ => {
            c.reply.error(DB_OUT_OF_RANGE);
            None
        }
    }
}

fn swapdb(e: &mut Engine, c: &mut Call<'_>) {
    let Some(a) = db_index_swap(c, 1, "ERR invalid first DB index") else {
        return;
    };
    let Some(b) = db_index_swap(c, 2, "ERR invalid second DB index") else {
        return;
    };
    if a >= DATABASES || b >= DATABASES {
        c.reply.error(DB_OUT_OF_RANGE);
        return;
    }
    e.swap_dbs(a, b);
    c.changed += 1;
    c.reply.ok();
}

/// `SWAPDB` reads both numbers before checking either's range.
fn db_index_swap(c: &mut Call<'_>, i: usize, msg: &str) -> Option<usize> {
    match parse_i64(c.arg(i)).filter(|v| i32::try_from(*v).is_ok()) {
        None => {
            c.reply.error(msg);
            None
        }
        Some(v) => Some(usize::try_from(v).unwrap_or(usize::MAX)),
    }
}

/// Redis's words for moving or copying a key onto itself.
const SAME_OBJECT: &str = "ERR source and destination objects are the same";

fn move_(e: &mut Engine, c: &mut Call<'_>) {
    let Some(dst) = db_index(c, c.arg(2), None) else {
        return;
    };
    if dst == c.db {
        c.reply.error(SAME_OBJECT);
        return;
    }
    let key = c.arg(1);
    if !e.contains(c.db, key, c.now) || e.contains(dst, key, c.now) {
        c.reply.int(0);
        return;
    }
    if let Some(entry) = e.remove(c.db, key) {
        e.insert(dst, key, entry);
    }
    e.touch(dst, key);
    c.changed += 1;
    c.reply.int(1);
}

fn copy(e: &mut Engine, c: &mut Call<'_>) {
    let (from, to) = (c.arg(1), c.arg(2));
    let (mut dst, mut replace) = (c.db, false);
    let mut i = 3;
    while i < c.args.len() {
        let opt = c.arg(i);
        if is(opt, "replace") {
            replace = true;
        } else if is(opt, "db") && i + 1 < c.args.len() {
            match db_index(c, c.arg(i + 1), None) {
                Some(db) => dst = db,
                None => return,
            }
            i += 1;
        } else {
            c.reply.error(SYNTAX);
            return;
        }
        i += 1;
    }
    if dst == c.db && from == to {
        c.reply.error(SAME_OBJECT);
        return;
    }
    let Some(entry) = e.get(c.db, from, c.now).cloned() else {
        c.reply.int(0);
        return;
    };
    if e.contains(dst, to, c.now) && !replace {
        c.reply.int(0);
        return;
    }
    e.insert(dst, to, entry);
    e.touch(dst, to);
    c.changed += 1;
    c.reply.int(1);
}

/// `OBJECT HELP`'s lines, as Redis 7 writes them.
const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

fn object(e: &mut Engine, c: &mut Call<'_>) {
    let sub = c.arg(1);
    let known = ["help", "encoding", "refcount", "idletime", "freq"];
    let Some(name) = known.iter().find(|w| is(sub, w)) else {
        let sub = String::from_utf8_lossy(sub);
        c.reply
            .error(&format!("ERR unknown subcommand '{sub}'. Try OBJECT HELP."));
        return;
    };
    let arity = if *name == "help" { 2 } else { 3 };
    if c.args.len() != arity {
        c.reply.error(&format!(
            "ERR wrong number of arguments for 'object|{name}' command"
        ));
        return;
    }
    if *name == "help" {
        c.reply.array(OBJECT_HELP.len());
        for line in OBJECT_HELP {
            c.reply.simple(line.as_bytes());
        }
        return;
    }
    // OBJECT looks without counting a use, as Redis's `LOOKUP_NOTOUCH`.
    match *name {
        "idletime" => match e.idle_seconds(c.db, c.arg(2), c.now) {
            Ok(None) => c.reply.null(),
            Ok(Some(secs)) => c.reply.int(secs as i64),
            Err(msg) => c.reply.error(msg),
        },
        "freq" => match e.frequency(c.db, c.arg(2), c.now) {
            Ok(None) => c.reply.null(),
            Ok(Some(n)) => c.reply.int(n as i64),
            Err(msg) => c.reply.error(msg),
        },
        _ => {
            e.expire_if_due(c.db, c.arg(2), c.now);
            let Some(entry) = e.db(c.db).map.get(c.arg(2)) else {
                c.reply.null();
                return;
            };
            if *name == "encoding" {
                let enc = encoding(&entry.value);
                c.reply.bulk(enc.as_bytes());
            } else {
                let shared = matches!(&entry.value, Value::Str(s)
                    if s.len() <= 20 && parse_i64(s).is_some_and(|v| (0..SHARED_INTEGERS).contains(&v)));
                c.reply.int(if shared { i64::from(i32::MAX) } else { 1 });
            }
        }
    }
}

/// Redis shares the integers 0 to 9999 among all keys (`OBJECT REFCOUNT`
/// answers `INT_MAX` for them).
const SHARED_INTEGERS: i64 = 10_000;

/// What `OBJECT ENCODING` answers for a value: the representation Redis
/// 7.2 would choose for it under its default size thresholds (7.0 had no
/// listpack lists or sets: it answers `quicklist` for every list and
/// `hashtable` for a set that is not an intset).
pub fn encoding(v: &Value) -> &'static str {
    // Redis's defaults: list-max-listpack-size 128 entries,
    // hash-max-listpack-entries 128 and -value 64, set-max-intset-entries
    // 512, strings embedded up to 44 bytes.
    const LISTPACK_ENTRIES: usize = 128;
    const LISTPACK_VALUE: usize = 64;
    const INTSET_ENTRIES: usize = 512;
    const EMBSTR: usize = 44;
    match v {
        Value::Str(s) if s.len() <= 20 && parse_i64(s).is_some() => "int",
        Value::Str(s) if s.len() <= EMBSTR => "embstr",
        Value::Str(_) => "raw",
        Value::List(l) => {
            if l.len() <= LISTPACK_ENTRIES && l.iter().all(|x| x.len() <= LISTPACK_VALUE) {
                "listpack"
            } else {
                "quicklist"
            }
        }
        Value::Hash(h) => {
            let small = h.len() <= LISTPACK_ENTRIES
                && h.iter()
                    .all(|(k, v)| k.len() <= LISTPACK_VALUE && v.len() <= LISTPACK_VALUE);
            if small {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Value::Set(s) => {
            if s.len() <= INTSET_ENTRIES && s.iter().all(|m| parse_i64(m).is_some()) {
                "intset"
            } else if s.len() <= LISTPACK_ENTRIES && s.iter().all(|m| m.len() <= LISTPACK_VALUE) {
                "listpack"
            } else {
                "hashtable"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::kv::cmd::testing::{run_full, run_line};

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
    fn glob_matches_as_redis_keys_does() {
        let strings: &[&[u8]] = &[
            b"a",
            b"ab",
            b"abc",
            b"hello",
            b"hallo",
            b"hllo",
            b"heeeello",
            b"h*llo",
            b"h?llo",
            b"x]y",
            b"-",
            b"b",
            b"^",
            b"\\",
            b"a\\b",
            b"[",
            b"[a",
            b"ab]",
            b"\xe9",
            b"z",
        ];
        // (pattern, the strings redis-server 7.0 matched with KEYS)
        let cases: &[(&[u8], &[&[u8]])] = &[
            (
                b"*",
                &[
                    b"-",
                    b"[",
                    b"[a",
                    b"\\",
                    b"^",
                    b"a",
                    b"a\\b",
                    b"ab",
                    b"ab]",
                    b"abc",
                    b"b",
                    b"h*llo",
                    b"h?llo",
                    b"hallo",
                    b"heeeello",
                    b"hello",
                    b"hllo",
                    b"x]y",
                    b"z",
                    b"\xe9",
                ],
            ),
            (b"a", &[b"a"]),
            (b"a*", &[b"a", b"a\\b", b"ab", b"ab]", b"abc"]),
            (b"*c", &[b"abc"]),
            (b"?", &[b"-", b"[", b"\\", b"^", b"a", b"b", b"z", b"\xe9"]),
            (b"??", &[b"[a", b"ab"]),
            (b"h?llo", &[b"h*llo", b"h?llo", b"hallo", b"hello"]),
            (
                b"h*llo",
                &[b"h*llo", b"h?llo", b"hallo", b"heeeello", b"hello", b"hllo"],
            ),
            (b"h[ae]llo", &[b"hallo", b"hello"]),
            (b"h[^e]llo", &[b"h*llo", b"h?llo", b"hallo"]),
            (b"h[a-b]llo", &[b"hallo"]),
            (b"h[b-a]llo", &[b"hallo"]),
            (b"h\\*llo", &[b"h*llo"]),
            (b"\\", &[b"\\"]),
            (b"a\\", &[]),
            (b"[", &[]),
            (b"[a", &[b"a"]),
            (b"[a-", &[b"-", b"a"]),
            (b"[^", &[b"-", b"[", b"\\", b"^", b"a", b"b", b"z", b"\xe9"]),
            (b"[]]", &[]),
            (b"x]y", &[b"x]y"]),
            (b"[\\]]", &[]),
            (b"[\\-]", &[b"-"]),
            (b"[a-]", &[b"^", b"a"]),
            (b"*[", &[]),
            (
                b"**a**",
                &[b"[a", b"a", b"a\\b", b"ab", b"ab]", b"abc", b"hallo"],
            ),
            (b"a\\b", &[b"ab"]),
            (b"a\\\\b", &[b"a\\b"]),
            (b"[\x80-\xff]", &[b"\xe9"]),
            (b"[a-\xff]", &[b"-", b"[", b"\\", b"^", b"a"]),
            (b"[^a]", &[b"-", b"[", b"\\", b"^", b"b", b"z", b"\xe9"]),
            (
                b"h*l*o",
                &[b"h*llo", b"h?llo", b"hallo", b"heeeello", b"hello", b"hllo"],
            ),
            (b"[abc", &[b"a", b"b"]),
            (b"*\\", &[b"\\"]),
        ];
        for (pattern, matched) in cases {
            for s in strings {
                assert_eq!(
                    glob_match(pattern, s),
                    matched.contains(s),
                    "{:?} against {:?}",
                    String::from_utf8_lossy(pattern),
                    String::from_utf8_lossy(s)
                );
            }
        }
        assert!(glob_match_nocase(b"H[A-C]LLO", b"hallo"));
        assert!(!glob_match(b"H[A-C]LLO", b"hallo"));
    }

    #[test]
    fn glob_work_is_bounded() {
        // Exponential for a naive backtracker; Redis's early exit makes it
        // quick, and nesting past 1000 stars is refused.
        let s = vec![b'a'; 100];
        assert!(!glob_match(&[b"*a".repeat(40), b"b".to_vec()].concat(), &s));
        let s = vec![b'a'; 1100];
        assert!(glob_match(&b"*a".repeat(1000), &s));
        assert!(!glob_match(&b"*a".repeat(1001), &s));
    }

    #[test]
    fn del_exists_touch_type() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET a 1");
        run_line(&mut e, NOW, "SET b 2");
        e.set(0, b"l", Value::List(Default::default()));
        assert_eq!(run_line(&mut e, NOW, "EXISTS a a b c"), ":3\r\n");
        assert_eq!(run_line(&mut e, NOW, "TOUCH a c"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "TYPE a"), "+string\r\n");
        assert_eq!(run_line(&mut e, NOW, "TYPE l"), "+list\r\n");
        assert_eq!(run_line(&mut e, NOW, "TYPE c"), "+none\r\n");
        let (reply, done) = run_full(&mut e, NOW, 0, false, &["DEL", "a", "a", "c"]);
        assert_eq!((reply.as_str(), done.changed), (":1\r\n", 1));
        assert_eq!(run_line(&mut e, NOW, "UNLINK b l"), ":2\r\n");
        let (reply, done) = run_full(&mut e, NOW, 0, false, &["DEL", "a"]);
        assert_eq!((reply.as_str(), done.changed), (":0\r\n", 0));
        // An expired key is not counted.
        run_line(&mut e, NOW, "SET x 1 PX 10");
        assert_eq!(run_line(&mut e, NOW + 10, "EXISTS x"), ":0\r\n");
    }

    #[test]
    fn keys_scan_randomkey_dbsize() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, NOW, "RANDOMKEY"), "$-1\r\n");
        for k in ["one", "two", "three"] {
            run_line(&mut e, NOW, &format!("SET {k} v"));
        }
        e.set(0, b"list", Value::List(Default::default()));
        run_line(&mut e, NOW, "SET gone v PX 5");
        let later = NOW + 5;
        assert_eq!(run_line(&mut e, later, "DBSIZE"), ":5\r\n");
        let keys = run_line(&mut e, later, "KEYS t*");
        assert!(
            keys == "*2\r\n$3\r\ntwo\r\n$5\r\nthree\r\n"
                || keys == "*2\r\n$5\r\nthree\r\n$3\r\ntwo\r\n"
        );
        assert!(run_line(&mut e, later, "KEYS *").starts_with("*4\r\n"));
        assert_eq!(run_line(&mut e, later, "KEYS nothing*"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, later, "SCAN 0 COUNT 100 TYPE list"),
            "*2\r\n$1\r\n0\r\n*1\r\n$4\r\nlist\r\n"
        );
        assert_eq!(
            run_line(&mut e, later, "SCAN 0 COUNT 100 MATCH o*"),
            "*2\r\n$1\r\n0\r\n*1\r\n$3\r\none\r\n"
        );
        assert_eq!(
            run_line(&mut e, later, "SCAN 0 COUNT 100 MATCH gone"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        // A walk in small steps returns every key.
        let (mut cursor, mut seen) = ("0".to_string(), Vec::new());
        loop {
            let r = run_line(&mut e, later, &format!("SCAN {cursor} COUNT 2"));
            let parts: Vec<&str> = r.split("\r\n").collect();
            cursor = parts[2].to_string();
            seen.extend(parts[4..].iter().skip(1).step_by(2).map(|s| s.to_string()));
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen, ["list", "one", "three", "two"]);
        assert_eq!(run_line(&mut e, NOW, "SCAN abc"), "-ERR invalid cursor\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "SCAN 18446744073709551616"),
            "-ERR invalid cursor\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SCAN 0 COUNT 0"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SCAN 0 COUNT x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SCAN 0 MATCH"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b" 1"), None);
        let r = run_line(&mut e, later, "RANDOMKEY");
        assert!(["one", "two", "three", "list"]
            .iter()
            .any(|k| r == format!("${}\r\n{k}\r\n", k.len())));
    }

    #[test]
    fn rename_keeps_expiry() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET a 1 EX 100");
        run_line(&mut e, NOW, "SET b 2");
        assert_eq!(run_line(&mut e, NOW, "RENAME a a"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "RENAMENX a a"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "RENAMENX a b"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "RENAME a b"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "GET b"), "$1\r\n1\r\n");
        assert_eq!(run_line(&mut e, NOW, "PTTL b"), ":100000\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXISTS a"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "RENAMENX b c"), ":1\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "RENAME nope x"),
            "-ERR no such key\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "RENAME nope nope"),
            "-ERR no such key\r\n"
        );
    }

    #[test]
    fn expire_family_with_conditions() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET k v");
        assert_eq!(
            run_line(&mut e, NOW, "EXPIRE k 10 NX XX"),
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "EXPIRE k 10 GT LT"),
            "-ERR GT and LT options at the same time are not compatible\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "EXPIRE k 10 foo"),
            "-ERR Unsupported option foo\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "EXPIRE k abc"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "EXPIRE k 9223372036854775"),
            "-ERR invalid expire time in 'expire' command\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "PEXPIRE k 9223372036854775807"),
            "-ERR invalid expire time in 'pexpire' command\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "EXPIRE nope 10"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRE k 100 XX"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRE k 100 GT"), ":0\r\n");
        assert_eq!(
            logged(&mut e, NOW, "EXPIRE k 100 LT"),
            (
                ":1\r\n".into(),
                Some(vec![format!("PEXPIREAT k {}", NOW + 100_000)])
            )
        );
        assert_eq!(run_line(&mut e, NOW, "EXPIRE k 50 NX"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRE k 50 GT"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRE k 200 LT"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "PEXPIRE k 200000 GT XX"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "TTL k"), ":200\r\n");
        assert_eq!(run_line(&mut e, NOW + 499, "TTL k"), ":200\r\n");
        assert_eq!(run_line(&mut e, NOW + 501, "TTL k"), ":199\r\n");
        assert_eq!(run_line(&mut e, NOW, "PTTL k"), ":200000\r\n");
        assert_eq!(run_line(&mut e, NOW, "PEXPIRETIME k"), ":1200000\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRETIME k"), ":1200\r\n");
        assert_eq!(
            logged(&mut e, NOW, "EXPIREAT k 5000"),
            (":1\r\n".into(), Some(vec!["PEXPIREAT k 5000000".into()]))
        );
        assert_eq!(
            logged(&mut e, NOW, "PEXPIREAT k 6000000"),
            (":1\r\n".into(), Some(vec!["PEXPIREAT k 6000000".into()]))
        );
        assert_eq!(run_line(&mut e, NOW, "PERSIST k"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "PERSIST k"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "TTL k"), ":-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXPIRETIME k"), ":-1\r\n");
        assert_eq!(run_line(&mut e, NOW, "TTL nope"), ":-2\r\n");
        assert_eq!(run_line(&mut e, NOW, "PEXPIRETIME nope"), ":-2\r\n");
        // A time already past deletes the key, answers 1 and logs DEL.
        assert_eq!(
            logged(&mut e, NOW, "EXPIRE k -1"),
            (":1\r\n".into(), Some(vec!["DEL k".into()]))
        );
        assert_eq!(run_line(&mut e, NOW, "EXISTS k"), ":0\r\n");
        run_line(&mut e, NOW, "SET k v");
        assert_eq!(
            logged(&mut e, NOW, "PEXPIREAT k 1"),
            (":1\r\n".into(), Some(vec!["DEL k".into()]))
        );
        // Expiring at exactly now is in the past.
        run_line(&mut e, NOW, "SET k v");
        assert_eq!(run_line(&mut e, NOW, "PEXPIRE k 0"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXISTS k"), ":0\r\n");
    }

    #[test]
    fn flush_swap_move_copy() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET a 1 EX 100");
        assert_eq!(
            run_line(&mut e, NOW, "MOVE a 16"),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "MOVE a abc"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "MOVE a 99999999999"),
            "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "MOVE a 0"),
            "-ERR source and destination objects are the same\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "MOVE nope 1"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "MOVE a 1"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "EXISTS a"), ":0\r\n");
        assert_eq!(e.get(1, b"a", NOW).unwrap().expires(), Some(NOW + 100_000));
        run_line(&mut e, NOW, "SET a 2");
        assert_eq!(run_line(&mut e, NOW, "MOVE a 1"), ":0\r\n");

        assert_eq!(
            run_line(&mut e, NOW, "COPY a a"),
            "-ERR source and destination objects are the same\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "COPY a b DB 16"),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "COPY a b foo"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "COPY a b"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "COPY a b"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "COPY nope b REPLACE"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "COPY a a DB 1"), ":0\r\n");
        assert_eq!(run_line(&mut e, NOW, "COPY a a DB 1 REPLACE"), ":1\r\n");
        assert_eq!(e.get(1, b"a", NOW).unwrap().expires(), None);

        assert_eq!(
            run_line(&mut e, NOW, "SWAPDB 0 16"),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SWAPDB x 0"),
            "-ERR invalid first DB index\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "SWAPDB 0 x"),
            "-ERR invalid second DB index\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "SWAPDB 0 2"), "+OK\r\n");
        assert_eq!(run_line(&mut e, NOW, "DBSIZE"), ":0\r\n");
        assert_eq!(e.len(2), 2);

        assert_eq!(
            run_line(&mut e, NOW, "FLUSHDB foo"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "FLUSHALL ASYNC SYNC"),
            "-ERR syntax error\r\n"
        );
        let (reply, done) = run_full(&mut e, NOW, 0, false, &["FLUSHDB", "SYNC"]);
        assert_eq!((reply.as_str(), done.changed), ("+OK\r\n", 1));
        assert_eq!(e.len(2), 2);
        assert_eq!(run_line(&mut e, NOW, "FLUSHALL ASYNC"), "+OK\r\n");
        assert!(e.is_empty());
    }

    #[test]
    fn object_subcommands() {
        let mut e = Engine::new();
        run_line(&mut e, NOW, "SET small 12");
        run_line(&mut e, NOW, "SET int 123456");
        run_line(&mut e, NOW, "SET str hello");
        run_line(&mut e, NOW, &format!("SET long {}", "x".repeat(45)));
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT ENCODING small"),
            "$3\r\nint\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT ENCODING str"),
            "$6\r\nembstr\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT ENCODING long"),
            "$3\r\nraw\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "OBJECT ENCODING nope"), "$-1\r\n");
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT REFCOUNT small"),
            ":2147483647\r\n"
        );
        assert_eq!(run_line(&mut e, NOW, "OBJECT REFCOUNT int"), ":1\r\n");
        assert_eq!(run_line(&mut e, NOW, "OBJECT IDLETIME int"), ":0\r\n");
        assert!(
            run_line(&mut e, NOW, "OBJECT FREQ int").starts_with("-ERR An LFU maxmemory policy")
        );
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT foo k"),
            "-ERR unknown subcommand 'foo'. Try OBJECT HELP.\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT ENCODING k extra"),
            "-ERR wrong number of arguments for 'object|encoding' command\r\n"
        );
        assert!(run_line(&mut e, NOW, "OBJECT help").starts_with("*15\r\n+OBJECT <subcommand>"));
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT HELP x"),
            "-ERR wrong number of arguments for 'object|help' command\r\n"
        );
        assert_eq!(
            run_line(&mut e, NOW, "OBJECT encoding"),
            "-ERR wrong number of arguments for 'object|encoding' command\r\n"
        );

        for v in ["-0", "01", " 1", "12345678901234567890"] {
            assert_eq!(encoding(&Value::Str(v.into())), "embstr", "{v:?}");
        }
        assert_eq!(
            encoding(&Value::Str(b"-9223372036854775808".to_vec())),
            "int"
        );
        let set =
            |items: Vec<String>| Value::Set(items.into_iter().map(String::into_bytes).collect());
        assert_eq!(
            encoding(&set((0..512).map(|i| i.to_string()).collect())),
            "intset"
        );
        assert_eq!(
            encoding(&set((0..513).map(|i| i.to_string()).collect())),
            "hashtable"
        );
        assert_eq!(encoding(&set(vec!["a".into(), "1".into()])), "listpack");
        assert_eq!(encoding(&set(vec!["x".repeat(65)])), "hashtable");
        let list = |n: usize, len: usize| Value::List((0..n).map(|_| vec![b'x'; len]).collect());
        assert_eq!(encoding(&list(128, 64)), "listpack");
        assert_eq!(encoding(&list(129, 1)), "quicklist");
        assert_eq!(encoding(&list(1, 65)), "quicklist");
        let hash = |n: usize, len: usize| {
            Value::Hash(
                (0..n)
                    .map(|i| (i.to_string().into_bytes(), vec![b'x'; len]))
                    .collect(),
            )
        };
        assert_eq!(encoding(&hash(128, 64)), "listpack");
        assert_eq!(encoding(&hash(129, 1)), "hashtable");
        assert_eq!(encoding(&hash(1, 65)), "hashtable");
    }

    #[test]
    fn table_matches_redis() {
        let find = |n: &str| COMMANDS.iter().find(|c| c.name == n).unwrap();
        assert_eq!((find("del").arity, find("del").keys), (-2, (1, -1, 1)));
        assert_eq!((find("rename").arity, find("rename").keys), (3, (1, 2, 1)));
        assert_eq!((find("keys").arity, find("keys").keys), (2, (0, 0, 0)));
        assert_eq!(
            (find("flushall").arity, find("flushall").flags),
            (-1, WRITE)
        );
        assert!(find("scan").flags & RANDOM != 0);
    }
}
