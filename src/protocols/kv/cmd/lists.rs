//! The list commands (`LPUSH` ... `RPOPLPUSH`) over [`Value::List`], and
//! the cores the session's blocking commands run under the engine lock:
//! [`pop_for_blocked`] (`BLPOP`, `BRPOP`), [`move_for_blocked`] (`BLMOVE`,
//! `BRPOPLPUSH`, and `LMOVE`/`RPOPLPUSH` here) and [`list_type_check`].
//!
//! Every push calls [`Engine::signal_push`], so that clients blocked on the
//! key are woken.

use std::collections::VecDeque;

use super::sets::parse_positive;
use super::{is, parse_i64, Call, Command, DENYOOM, FAST, READONLY, WRITE};
use crate::protocols::kv::engine::{Engine, Entry, Value};
use crate::protocols::kv::reply::{
    INDEX_OUT_OF_RANGE, NOT_INTEGER, NO_SUCH_KEY, SYNTAX, WRONGTYPE,
};

type List = VecDeque<Vec<u8>>;

/// The commands of this family.
pub const COMMANDS: &[Command] = &[
    cmd("lpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), lpush),
    cmd("rpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), rpush),
    cmd("lpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), lpushx),
    cmd("rpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), rpushx),
    cmd("lpop", -2, WRITE | FAST, (1, 1, 1), lpop),
    cmd("rpop", -2, WRITE | FAST, (1, 1, 1), rpop),
    cmd("llen", 2, READONLY | FAST, (1, 1, 1), llen),
    cmd("lrange", 4, READONLY, (1, 1, 1), lrange),
    cmd("lindex", 3, READONLY, (1, 1, 1), lindex),
    cmd("lset", 4, WRITE | DENYOOM, (1, 1, 1), lset),
    cmd("lrem", 4, WRITE, (1, 1, 1), lrem),
    cmd("ltrim", 4, WRITE, (1, 1, 1), ltrim),
    cmd("linsert", 5, WRITE | DENYOOM, (1, 1, 1), linsert),
    cmd("lpos", -3, READONLY, (1, 1, 1), lpos),
    cmd("lmove", 5, WRITE | DENYOOM, (1, 2, 1), lmove),
    cmd("rpoplpush", 3, WRITE | DENYOOM, (1, 2, 1), rpoplpush),
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

/// The list at `key`: `Ok(None)` when missing, `Err` when another type.
fn get_list<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e List>, ()> {
    match e.get(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::List(l),
            ..
        }) => Ok(Some(l)),
        Some(_) => Err(()),
    }
}

fn get_list_mut<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e mut List>, ()> {
    match e.get_mut(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::List(l),
            ..
        }) => Ok(Some(l)),
        Some(_) => Err(()),
    }
}

/// Whether `key` may be used as a list: `Err` when it exists and holds
/// another type (the blocking commands answer `WRONGTYPE` then).
#[allow(clippy::result_unit_err)]
pub fn list_type_check(engine: &mut Engine, db: usize, key: &[u8], now: u64) -> Result<(), ()> {
    get_list(engine, db, key, now).map(|_| ())
}

/// Pops one element from the head (`left`) or tail of the list at `key`,
/// removing the key when that empties it; `None` when the key is missing
/// (or, which [`list_type_check`] tells apart, holds another type).
///
/// Only the keyspace changes, and watched keys are touched: counting the
/// change (`dirty`) and logging it (as `LPOP`/`RPOP`) are the caller's.
pub fn pop_for_blocked(
    engine: &mut Engine,
    db: usize,
    key: &[u8],
    left: bool,
    now: u64,
) -> Option<Vec<u8>> {
    let l = get_list_mut(engine, db, key, now).ok()??;
    let v = if left { l.pop_front() } else { l.pop_back() }?;
    engine.remove_if_empty(db, key);
    engine.touch(db, key);
    Some(v)
}

/// `LMOVE`'s core: pops from the head (`from_left`) or tail of `src` and
/// pushes onto the head (`to_left`) or tail of `dst`, creating `dst` if
/// needed; `src == dst` rotates the list. `Ok(None)` when `src` is missing
/// (whatever `dst` holds, as Redis answers); `Err(WRONGTYPE)` when `src`,
/// or `dst` while `src` has elements, holds another type.
///
/// Watched keys are touched and a push to `dst` is signalled; counting the
/// change and logging it are the caller's (the dispatcher does both for
/// `LMOVE` and `RPOPLPUSH`).
pub fn move_for_blocked(
    engine: &mut Engine,
    db: usize,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
    now: u64,
) -> Result<Option<Vec<u8>>, &'static str> {
    match get_list(engine, db, src, now) {
        Err(()) => return Err(WRONGTYPE),
        Ok(None) => return Ok(None),
        Ok(Some(l)) if l.is_empty() => return Ok(None),
        Ok(Some(_)) => {}
    }
    let dst_exists = match get_list(engine, db, dst, now) {
        Err(()) => return Err(WRONGTYPE),
        Ok(l) => l.is_some(),
    };
    let Ok(Some(from)) = get_list_mut(engine, db, src, now) else {
        unreachable!("the source was just seen")
    };
    let v = if from_left {
        from.pop_front()
    } else {
        from.pop_back()
    }
    .expect("the source is not empty");
    if src == dst {
        push(from, v.clone(), to_left);
    } else {
        engine.remove_if_empty(db, src);
        if !dst_exists {
            engine.set(db, dst, Value::List(VecDeque::new()));
        }
        let Ok(Some(to)) = get_list_mut(engine, db, dst, now) else {
            unreachable!("the destination was just seen or made")
        };
        push(to, v.clone(), to_left);
    }
    engine.touch(db, src);
    engine.touch(db, dst);
    engine.signal_push(db, dst);
    Ok(Some(v))
}

fn push(l: &mut List, v: Vec<u8>, left: bool) {
    if left {
        l.push_front(v)
    } else {
        l.push_back(v)
    }
}

/// `LPUSH`, `RPUSH` and their `X` forms (`only_existing`).
fn push_command(e: &mut Engine, c: &mut Call<'_>, left: bool, only_existing: bool) {
    let key = c.arg(1);
    let l = match get_list_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) if only_existing => return c.reply.int(0),
        Ok(Some(l)) => l,
        Ok(None) => {
            e.set(c.db, key, Value::List(VecDeque::new()));
            match get_list_mut(e, c.db, key, c.now) {
                Ok(Some(l)) => l,
                _ => unreachable!("the list was just made"),
            }
        }
    };
    for v in &c.args[2..] {
        push(l, v.to_vec(), left);
    }
    let len = l.len();
    c.changed += (c.args.len() - 2) as u64;
    e.signal_push(c.db, key);
    c.reply.int(len as i64);
}

fn lpush(e: &mut Engine, c: &mut Call<'_>) {
    push_command(e, c, true, false)
}

fn rpush(e: &mut Engine, c: &mut Call<'_>) {
    push_command(e, c, false, false)
}

fn lpushx(e: &mut Engine, c: &mut Call<'_>) {
    push_command(e, c, true, true)
}

fn rpushx(e: &mut Engine, c: &mut Call<'_>) {
    push_command(e, c, false, true)
}

/// `LPOP` and `RPOP`, with or without a count.
fn pop_command(e: &mut Engine, c: &mut Call<'_>, left: bool) {
    if c.args.len() > 3 {
        return c.reply.wrong_arity(c.arg(0));
    }
    let key = c.arg(1);
    let count = if c.args.len() == 3 {
        match parse_positive(c.arg(2)) {
            Some(n) => Some(n),
            None => return c.reply.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let l = match get_list_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) if count.is_none() => return c.reply.null(),
        Ok(None) => return c.reply.null_array(),
        Ok(Some(l)) => l,
    };
    match count {
        None => {
            let v = if left { l.pop_front() } else { l.pop_back() };
            c.reply.bulk_or_null(v.as_deref());
            c.changed += 1;
        }
        Some(n) => {
            let n = n.min(l.len());
            c.reply.array(n);
            for _ in 0..n {
                let v = if left { l.pop_front() } else { l.pop_back() };
                c.reply.bulk(&v.expect("within the list"));
            }
            c.changed += n as u64;
        }
    }
    e.remove_if_empty(c.db, key);
}

fn lpop(e: &mut Engine, c: &mut Call<'_>) {
    pop_command(e, c, true)
}

fn rpop(e: &mut Engine, c: &mut Call<'_>) {
    pop_command(e, c, false)
}

fn llen(e: &mut Engine, c: &mut Call<'_>) {
    match get_list(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(l) => c.reply.int(l.map_or(0, |l| l.len() as i64)),
    }
}

/// `start..=end` (Redis's indexes, negative from the end) clamped into a
/// list of `len`; `None` when empty.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

fn lrange(e: &mut Engine, c: &mut Call<'_>) {
    let (Some(start), Some(end)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        return c.reply.error(NOT_INTEGER);
    };
    match get_list(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.array(0),
        Ok(Some(l)) => match clamp_range(start, end, l.len()) {
            None => c.reply.array(0),
            Some((a, b)) => c.reply.bulks(l.range(a..=b).map(|v| v.as_slice())),
        },
    }
}

/// An index (negative from the end) into a list of `len`, if inside it.
fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lindex(e: &mut Engine, c: &mut Call<'_>) {
    let l = match get_list(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.null(),
        Ok(Some(l)) => l,
    };
    let Some(i) = parse_i64(c.arg(2)) else {
        return c.reply.error(NOT_INTEGER);
    };
    let v = resolve_index(i, l.len()).map(|i| l[i].as_slice());
    c.reply.bulk_or_null(v);
}

fn lset(e: &mut Engine, c: &mut Call<'_>) {
    let l = match get_list_mut(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.error(NO_SUCH_KEY),
        Ok(Some(l)) => l,
    };
    let Some(i) = parse_i64(c.arg(2)) else {
        return c.reply.error(NOT_INTEGER);
    };
    let Some(i) = resolve_index(i, l.len()) else {
        return c.reply.error(INDEX_OUT_OF_RANGE);
    };
    l[i] = c.arg(3).to_vec();
    c.changed += 1;
    c.reply.ok();
}

fn lrem(e: &mut Engine, c: &mut Call<'_>) {
    let Some(count) = parse_i64(c.arg(2)) else {
        return c.reply.error(NOT_INTEGER);
    };
    let key = c.arg(1);
    let l = match get_list_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.int(0),
        Ok(Some(l)) => l,
    };
    let target = c.arg(3);
    let limit = if count == 0 {
        u64::MAX
    } else {
        count.unsigned_abs()
    };
    // One pass that keeps order: from the head, the first `limit` matches
    // go; from the tail, the matches at or after the `limit`th from the end.
    let first = if count >= 0 {
        0
    } else {
        let mut seen = 0u64;
        let mut from = l.len();
        for (i, v) in l.iter().enumerate().rev() {
            if seen == limit {
                break;
            }
            if v == target {
                seen += 1;
                from = i;
            }
        }
        from
    };
    let mut removed = 0u64;
    let mut i = 0;
    l.retain(|v| {
        let go = i >= first && removed < limit && v == target;
        i += 1;
        removed += u64::from(go);
        !go
    });
    e.remove_if_empty(c.db, key);
    c.changed += removed;
    c.reply.int(removed as i64);
}

fn ltrim(e: &mut Engine, c: &mut Call<'_>) {
    let (Some(start), Some(end)) = (parse_i64(c.arg(2)), parse_i64(c.arg(3))) else {
        return c.reply.error(NOT_INTEGER);
    };
    let key = c.arg(1);
    let l = match get_list_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.ok(),
        Ok(Some(l)) => l,
    };
    let before = l.len();
    match clamp_range(start, end, before) {
        None => l.clear(),
        Some((a, b)) => {
            l.truncate(b + 1);
            l.drain(..a);
        }
    }
    c.changed += (before - l.len()) as u64;
    e.remove_if_empty(c.db, key);
    c.reply.ok();
}

fn linsert(e: &mut Engine, c: &mut Call<'_>) {
    let after = if is(c.arg(2), "after") {
        true
    } else if is(c.arg(2), "before") {
        false
    } else {
        return c.reply.error(SYNTAX);
    };
    let l = match get_list_mut(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.int(0),
        Ok(Some(l)) => l,
    };
    let Some(i) = l.iter().position(|v| v == c.arg(3)) else {
        return c.reply.int(-1);
    };
    l.insert(if after { i + 1 } else { i }, c.arg(4).to_vec());
    c.changed += 1;
    c.reply.int(l.len() as i64);
}

fn lpos(e: &mut Engine, c: &mut Call<'_>) {
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut i = 3;
    while i < c.args.len() {
        let more = i + 1 < c.args.len();
        let opt = c.arg(i);
        if is(opt, "rank") && more {
            match parse_i64(c.arg(i + 1)) {
                None => return c.reply.error(NOT_INTEGER),
                Some(0) => {
                    return c.reply.error(
                        "ERR RANK can't be zero: use 1 to start from the first match, \
                         2 from the second ... or use negative to start from the end of the list",
                    )
                }
                Some(r) => rank = r,
            }
        } else if is(opt, "count") && more {
            match parse_positive(c.arg(i + 1)) {
                None => return c.reply.error("ERR COUNT can't be negative"),
                Some(n) => count = Some(n),
            }
        } else if is(opt, "maxlen") && more {
            match parse_positive(c.arg(i + 1)) {
                None => return c.reply.error("ERR MAXLEN can't be negative"),
                Some(n) => maxlen = n,
            }
        } else {
            return c.reply.error(SYNTAX);
        }
        i += 2;
    }
    let l = match get_list(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) if count.is_some() => return c.reply.array(0),
        Ok(None) => return c.reply.null(),
        Ok(Some(l)) => l,
    };
    let target = c.arg(2);
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let scan = if maxlen == 0 {
        l.len()
    } else {
        maxlen.min(l.len())
    };
    // Redis 7.0 negates RANK in a C long: -2^63 stays negative there and
    // counts as the first match from the tail.
    let mut skip = if rank == i64::MIN {
        0
    } else {
        rank.unsigned_abs() - 1
    };
    let mut found = Vec::new();
    let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..l.len())
    } else {
        Box::new((0..l.len()).rev())
    };
    for idx in positions.take(scan) {
        if l[idx] == target {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(idx as i64);
            if found.len() >= want {
                break;
            }
        }
    }
    if count.is_some() {
        c.reply.array(found.len());
        for p in found {
            c.reply.int(p);
        }
    } else {
        match found.first() {
            Some(&p) => c.reply.int(p),
            None => c.reply.null(),
        }
    }
}

/// `LEFT` or `RIGHT`: whether it is `LEFT`, `None` for anything else.
fn side(s: &[u8]) -> Option<bool> {
    if is(s, "left") {
        Some(true)
    } else if is(s, "right") {
        Some(false)
    } else {
        None
    }
}

fn move_command(e: &mut Engine, c: &mut Call<'_>, from_left: bool, to_left: bool) {
    match move_for_blocked(e, c.db, c.arg(1), c.arg(2), from_left, to_left, c.now) {
        Err(msg) => c.reply.error(msg),
        Ok(None) => c.reply.null(),
        Ok(Some(v)) => {
            c.changed += 1;
            c.reply.bulk(&v);
        }
    }
}

fn lmove(e: &mut Engine, c: &mut Call<'_>) {
    let (Some(from), Some(to)) = (side(c.arg(3)), side(c.arg(4))) else {
        return c.reply.error(SYNTAX);
    };
    move_command(e, c, from, to)
}

fn rpoplpush(e: &mut Engine, c: &mut Call<'_>) {
    move_command(e, c, false, true)
}

#[cfg(test)]
mod tests {
    use super::{list_type_check, move_for_blocked, pop_for_blocked};
    use crate::protocols::kv::cmd::testing::{run_full, run_line};
    use crate::protocols::kv::engine::{Engine, Value};
    use crate::protocols::kv::reply::WRONGTYPE;

    const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn all(e: &mut Engine, key: &str) -> String {
        run_line(e, 0, &format!("LRANGE {key} 0 -1"))
    }

    #[test]
    fn pushes_and_lengths() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "LPUSH l a b"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "RPUSH l c"), ":3\r\n");
        assert_eq!(all(&mut e, "l"), "*3\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nc\r\n");
        assert_eq!(run_line(&mut e, 0, "LPUSHX nokey a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "RPUSHX nokey a"), ":0\r\n");
        assert!(!e.db(0).map.contains_key(b"nokey".as_slice()));
        assert_eq!(run_line(&mut e, 0, "LPUSHX l z"), ":4\r\n");
        assert_eq!(run_line(&mut e, 0, "RPUSHX l y x"), ":6\r\n");
        assert_eq!(run_line(&mut e, 0, "LLEN l"), ":6\r\n");
        assert_eq!(run_line(&mut e, 0, "LLEN nokey"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LPUSH l"),
            "-ERR wrong number of arguments for 'lpush' command\r\n"
        );
    }

    #[test]
    fn pushes_wake_blocked_clients() {
        let mut e = Engine::new();
        e.block_on(0, b"q");
        e.block_on(0, b"r");
        run_line(&mut e, 0, "RPUSH q a");
        assert_eq!(e.take_ready(), vec![(0, b"q".to_vec())]);
        run_line(&mut e, 0, "LPUSHX q b");
        assert_eq!(e.take_ready(), vec![(0, b"q".to_vec())]);
        run_line(&mut e, 0, "LMOVE q r LEFT RIGHT");
        assert_eq!(e.take_ready(), vec![(0, b"r".to_vec())]);
    }

    #[test]
    fn pops_with_and_without_count() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "LPOP nokey"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOP nokey 0"), "*-1\r\n");
        assert_eq!(run_line(&mut e, 0, "RPOP nokey 2"), "*-1\r\n");
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["LPOP", "nokey", "2"]).0,
            "_\r\n"
        );
        assert_eq!(run_full(&mut e, 0, 0, true, &["LPOP", "nokey"]).0, "_\r\n");
        run_line(&mut e, 0, "RPUSH l a b c d");
        assert_eq!(run_line(&mut e, 0, "LPOP l 0"), "*0\r\n");
        for bad in ["-1", "x"] {
            assert_eq!(
                run_line(&mut e, 0, &format!("LPOP l {bad}")),
                "-ERR value is out of range, must be positive\r\n"
            );
        }
        assert_eq!(
            run_line(&mut e, 0, "LPOP l 1 2"),
            "-ERR wrong number of arguments for 'lpop' command\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LPOP l"), "$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "RPOP l"), "$1\r\nd\r\n");
        let (r, done) = run_full(&mut e, 0, 0, false, &["RPOP", "l", "5"]);
        assert_eq!(r, "*2\r\n$1\r\nc\r\n$1\r\nb\r\n");
        assert_eq!((done.changed, done.propagate), (2, None));
        assert!(e.db(0).map.is_empty(), "an emptied list is removed");
    }

    #[test]
    fn every_list_command_refuses_other_types() {
        let mut e = Engine::new();
        e.set(0, b"s", Value::Str(b"x".to_vec()));
        run_line(&mut e, 0, "RPUSH l a");
        for line in [
            "LPUSH s a",
            "RPUSH s a",
            "LPUSHX s a",
            "RPUSHX s a",
            "LPOP s",
            "RPOP s 0",
            "LLEN s",
            "LRANGE s 0 1",
            "LINDEX s 0",
            "LINDEX s x",
            "LSET s 0 a",
            "LSET s x a",
            "LREM s 0 a",
            "LTRIM s 0 1",
            "LINSERT s BEFORE a b",
            "LPOS s a",
            "LMOVE s l LEFT LEFT",
            "LMOVE l s LEFT LEFT",
            "RPOPLPUSH s l",
            "RPOPLPUSH l s",
        ] {
            assert_eq!(run_line(&mut e, 0, line), WT, "{line}");
        }
        assert_eq!(all(&mut e, "l"), "*1\r\n$1\r\na\r\n");
        // A missing source answers nil whatever the destination holds.
        assert_eq!(run_line(&mut e, 0, "LMOVE nokey s LEFT LEFT"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "RPOPLPUSH nokey s"), "$-1\r\n");
    }

    #[test]
    fn lrange_lindex_lset() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b c d e");
        assert_eq!(
            run_line(&mut e, 0, "LRANGE l 1 2"),
            "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LRANGE l -2 100"),
            "*2\r\n$1\r\nd\r\n$1\r\ne\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LRANGE l -100 0"), "*1\r\n$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "LRANGE l 3 1"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "LRANGE l 5 10"), "*0\r\n");
        assert_eq!(
            run_line(
                &mut e,
                0,
                "LRANGE l -9223372036854775808 9223372036854775807"
            ),
            all(&mut e, "l")
        );
        assert_eq!(
            run_line(&mut e, 0, "LRANGE nokey x 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LRANGE nokey 0 -1"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "LINDEX l -1"), "$1\r\ne\r\n");
        assert_eq!(run_line(&mut e, 0, "LINDEX l 5"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LINDEX l -6"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LINDEX nokey x"), "$-1\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LINDEX l x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LSET nokey x a"),
            "-ERR no such key\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LSET l 5 a"),
            "-ERR index out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LSET l x a"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LSET l -1 E"), "+OK\r\n");
        assert_eq!(run_line(&mut e, 0, "LINDEX l 4"), "$1\r\nE\r\n");
    }

    #[test]
    fn lrem_from_either_end() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b a c a b a");
        assert_eq!(run_line(&mut e, 0, "LREM l 2 a"), ":2\r\n");
        assert_eq!(
            all(&mut e, "l"),
            "*5\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LREM l -1 b"), ":1\r\n");
        assert_eq!(
            all(&mut e, "l"),
            "*4\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\na\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LREM l -5 a"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "LREM l 0 zz"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "LREM nokey 0 a"), ":0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LREM nokey x a"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LREM l 0 b"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "LREM l 0 c"), ":1\r\n");
        assert!(e.db(0).map.is_empty());
    }

    #[test]
    fn ltrim_ranges() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b c d e");
        let (r, done) = run_full(&mut e, 0, 0, false, &["LTRIM", "l", "1", "-2"]);
        assert_eq!((r.as_str(), done.changed), ("+OK\r\n", 2));
        assert_eq!(all(&mut e, "l"), "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n");
        let (_, done) = run_full(&mut e, 0, 0, false, &["LTRIM", "l", "0", "-1"]);
        assert_eq!(done.changed, 0);
        assert_eq!(run_line(&mut e, 0, "LTRIM nokey 0 1"), "+OK\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LTRIM nokey x 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LTRIM l 5 1"), "+OK\r\n");
        assert!(e.db(0).map.is_empty());
    }

    #[test]
    fn linsert_cases() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b c b");
        assert_eq!(run_line(&mut e, 0, "LINSERT l before b X"), ":5\r\n");
        assert_eq!(run_line(&mut e, 0, "LINSERT l AFTER b Y"), ":6\r\n");
        assert_eq!(
            all(&mut e, "l"),
            "*6\r\n$1\r\na\r\n$1\r\nX\r\n$1\r\nb\r\n$1\r\nY\r\n$1\r\nc\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LINSERT l middle b Y"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LINSERT nokey middle b Y"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LINSERT l before zz Y"), ":-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LINSERT nokey before a b"), ":0\r\n");
        assert!(!e.db(0).map.contains_key(b"nokey".as_slice()));
    }

    #[test]
    fn lpos_options() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b c a b c a");
        assert_eq!(run_line(&mut e, 0, "LPOS l a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l a RANK 2"), ":3\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l a RANK -1"), ":6\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l a RANK 4"), "$-1\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a RANK -9223372036854775808"),
            ":6\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a COUNT 0"),
            "*3\r\n:0\r\n:3\r\n:6\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a COUNT 2 RANK -1"),
            "*2\r\n:6\r\n:3\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a MAXLEN 2 COUNT 0"),
            "*1\r\n:0\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "LPOS l b RANK -1 MAXLEN 2"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l b RANK -1 MAXLEN 3"), ":4\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l zz"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS l zz COUNT 1"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS nokey a"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "LPOS nokey a COUNT 1"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LPOS nokey a RANK 0"),
            "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... \
             or use negative to start from the end of the list\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a RANK x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a COUNT -1"),
            "-ERR COUNT can't be negative\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a COUNT x"),
            "-ERR COUNT can't be negative\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a MAXLEN x"),
            "-ERR MAXLEN can't be negative\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a RANK"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "LPOS l a FOO 1"),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn lmove_every_side_and_rotation() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a b c");
        assert_eq!(run_line(&mut e, 0, "LMOVE l l LEFT RIGHT"), "$1\r\na\r\n");
        assert_eq!(all(&mut e, "l"), "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "LMOVE l l right left"), "$1\r\na\r\n");
        assert_eq!(all(&mut e, "l"), "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        assert_eq!(run_line(&mut e, 0, "LMOVE l m LEFT LEFT"), "$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "LMOVE l m LEFT RIGHT"), "$1\r\nb\r\n");
        assert_eq!(run_line(&mut e, 0, "LMOVE l m RIGHT LEFT"), "$1\r\nc\r\n");
        assert!(
            !e.db(0).map.contains_key(b"l".as_slice()),
            "emptied source removed"
        );
        assert_eq!(all(&mut e, "m"), "*3\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(run_line(&mut e, 0, "LMOVE m m RIGHT RIGHT"), "$1\r\nb\r\n");
        assert_eq!(
            run_line(&mut e, 0, "LMOVE m m up RIGHT"),
            "-ERR syntax error\r\n"
        );
        let (r, done) = run_full(&mut e, 0, 0, false, &["RPOPLPUSH", "m", "n"]);
        assert_eq!((r.as_str(), done.changed), ("$1\r\nb\r\n", 1));
        assert_eq!(all(&mut e, "n"), "*1\r\n$1\r\nb\r\n");
        let (r, done) = run_full(
            &mut e,
            0,
            0,
            false,
            &["LMOVE", "nokey", "n", "LEFT", "LEFT"],
        );
        assert_eq!((r.as_str(), done.changed), ("$-1\r\n", 0));
        // A single element rotated onto itself stays.
        assert_eq!(run_line(&mut e, 0, "RPOPLPUSH n n"), "$1\r\nb\r\n");
        assert_eq!(all(&mut e, "n"), "*1\r\n$1\r\nb\r\n");
    }

    #[test]
    fn cores_for_blocking_commands() {
        let mut e = Engine::new();
        e.set(0, b"s", Value::Str(b"x".to_vec()));
        run_line(&mut e, 0, "RPUSH l a b");
        assert_eq!(list_type_check(&mut e, 0, b"s", 0), Err(()));
        assert_eq!(list_type_check(&mut e, 0, b"l", 0), Ok(()));
        assert_eq!(list_type_check(&mut e, 0, b"nokey", 0), Ok(()));
        assert_eq!(pop_for_blocked(&mut e, 0, b"nokey", true, 0), None);
        assert_eq!(pop_for_blocked(&mut e, 0, b"s", true, 0), None);
        assert_eq!(
            pop_for_blocked(&mut e, 0, b"l", false, 0),
            Some(b"b".to_vec())
        );
        assert_eq!(
            move_for_blocked(&mut e, 0, b"l", b"s", true, true, 0),
            Err(WRONGTYPE)
        );
        assert_eq!(
            move_for_blocked(&mut e, 0, b"s", b"l", true, true, 0),
            Err(WRONGTYPE)
        );
        assert_eq!(
            move_for_blocked(&mut e, 0, b"nokey", b"s", true, true, 0),
            Ok(None)
        );
        assert_eq!(
            move_for_blocked(&mut e, 0, b"l", b"m", true, false, 0),
            Ok(Some(b"a".to_vec()))
        );
        assert!(!e.db(0).map.contains_key(b"l".as_slice()));
        assert_eq!(
            pop_for_blocked(&mut e, 0, b"m", true, 0),
            Some(b"a".to_vec())
        );
        assert!(!e.db(0).map.contains_key(b"m".as_slice()));
        // Watched keys see the change.
        run_line(&mut e, 0, "RPUSH w a");
        let v = e.watch(0, b"w");
        pop_for_blocked(&mut e, 0, b"w", true, 0);
        assert_ne!(e.watched_version(0, b"w"), Some(v));
    }

    #[test]
    fn expired_lists_are_gone() {
        let mut e = Engine::new();
        run_line(&mut e, 0, "RPUSH l a");
        e.set_expire(0, b"l", Some(100));
        assert_eq!(run_line(&mut e, 50, "LLEN l"), ":1\r\n");
        assert_eq!(run_line(&mut e, 100, "LLEN l"), ":0\r\n");
        assert_eq!(run_line(&mut e, 100, "RPUSH l b"), ":1\r\n");
        assert_eq!(e.db(0).map.get(b"l".as_slice()).unwrap().expires(), None);
    }
}
