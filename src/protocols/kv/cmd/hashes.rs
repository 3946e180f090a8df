//! The hash commands (`HSET` ... `HSCAN`) over [`Value::Hash`]. `HSCAN`'s
//! cursor and the random sampling of `HRANDFIELD` are shared with the set
//! commands (see [`super::sets::scan`]).

use std::collections::HashMap;

use super::sets::{
    gather, parse_random_count, pick, repeat_indexes, sample_distinct_indexes, scan, shuffle,
};
use super::{is, parse_f64, parse_i64, Call, Command, DENYOOM, FAST, RANDOM, READONLY, WRITE};
use crate::protocols::kv::engine::{Engine, Entry, Value};
use crate::protocols::kv::reply::{
    format_double, NOT_FLOAT, NOT_INTEGER, OVERFLOW, SYNTAX, WRONGTYPE,
};

type Hash = HashMap<Vec<u8>, Vec<u8>>;

/// The commands of this family.
pub const COMMANDS: &[Command] = &[
    cmd("hset", -4, WRITE | DENYOOM | FAST, hset),
    cmd("hmset", -4, WRITE | DENYOOM | FAST, hmset),
    cmd("hsetnx", 4, WRITE | DENYOOM | FAST, hsetnx),
    cmd("hget", 3, READONLY | FAST, hget),
    cmd("hmget", -3, READONLY | FAST, hmget),
    cmd("hgetall", 2, READONLY, hgetall),
    cmd("hdel", -3, WRITE | FAST, hdel),
    cmd("hexists", 3, READONLY | FAST, hexists),
    cmd("hlen", 2, READONLY | FAST, hlen),
    cmd("hstrlen", 3, READONLY | FAST, hstrlen),
    cmd("hincrby", 4, WRITE | DENYOOM | FAST, hincrby),
    cmd("hincrbyfloat", 4, WRITE | DENYOOM | FAST, hincrbyfloat),
    cmd("hkeys", 2, READONLY, hkeys),
    cmd("hvals", 2, READONLY, hvals),
    cmd("hrandfield", -2, READONLY | RANDOM, hrandfield),
    cmd("hscan", -3, READONLY | RANDOM, hscan),
];

/// Every hash command has one key, the first argument.
const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u32,
    run: fn(&mut Engine, &mut Call<'_>),
) -> Command {
    Command {
        name,
        arity,
        flags,
        keys: (1, 1, 1),
        run,
    }
}

/// The hash at `key`: `Ok(None)` when missing, `Err` when another type.
fn get_hash<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e Hash>, ()> {
    match e.get(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::Hash(h),
            ..
        }) => Ok(Some(h)),
        Some(_) => Err(()),
    }
}

fn get_hash_mut<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<Option<&'e mut Hash>, ()> {
    match e.get_mut(db, key, now) {
        None => Ok(None),
        Some(Entry {
            value: Value::Hash(h),
            ..
        }) => Ok(Some(h)),
        Some(_) => Err(()),
    }
}

/// The hash at `key`, made empty if missing; `Err` when another type. A
/// caller that may leave it empty calls `remove_if_empty`.
fn hash_for_write<'e>(
    e: &'e mut Engine,
    db: usize,
    key: &[u8],
    now: u64,
) -> Result<&'e mut Hash, ()> {
    if get_hash(e, db, key, now)?.is_none() {
        e.set(db, key, Value::Hash(HashMap::new()));
    }
    match get_hash_mut(e, db, key, now) {
        Ok(Some(h)) => Ok(h),
        _ => unreachable!("the hash was just seen or made"),
    }
}

/// Sets the field-value pairs of `args[2..]`; returns how many fields are
/// new, or `None` after answering an error.
fn set_pairs(e: &mut Engine, c: &mut Call<'_>) -> Option<i64> {
    if c.args.len() % 2 == 1 {
        c.reply.wrong_arity(c.arg(0));
        return None;
    }
    let Ok(h) = hash_for_write(e, c.db, c.arg(1), c.now) else {
        c.reply.error(WRONGTYPE);
        return None;
    };
    let mut added = 0;
    for pair in c.args[2..].chunks(2) {
        if h.insert(pair[0].to_vec(), pair[1].to_vec()).is_none() {
            added += 1;
        }
    }
    c.changed += (c.args.len() as u64 - 2) / 2;
    Some(added)
}

fn hset(e: &mut Engine, c: &mut Call<'_>) {
    if let Some(added) = set_pairs(e, c) {
        c.reply.int(added);
    }
}

fn hmset(e: &mut Engine, c: &mut Call<'_>) {
    if set_pairs(e, c).is_some() {
        c.reply.ok();
    }
}

fn hsetnx(e: &mut Engine, c: &mut Call<'_>) {
    let Ok(h) = hash_for_write(e, c.db, c.arg(1), c.now) else {
        return c.reply.error(WRONGTYPE);
    };
    if h.contains_key(c.arg(2)) {
        return c.reply.int(0);
    }
    h.insert(c.arg(2).to_vec(), c.arg(3).to_vec());
    c.changed += 1;
    c.reply.int(1);
}

fn hget(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(h) => c
            .reply
            .bulk_or_null(h.and_then(|h| h.get(c.arg(2))).map(|v| v.as_slice())),
    }
}

fn hmget(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(h) => {
            c.reply.array(c.args.len() - 2);
            for f in &c.args[2..] {
                c.reply
                    .bulk_or_null(h.and_then(|h| h.get(*f)).map(|v| v.as_slice()));
            }
        }
    }
}

fn hgetall(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.map(0),
        Ok(Some(h)) => {
            c.reply.map(h.len());
            for (f, v) in h {
                c.reply.bulk(f);
                c.reply.bulk(v);
            }
        }
    }
}

fn hdel(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    let h = match get_hash_mut(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.int(0),
        Ok(Some(h)) => h,
    };
    let mut removed = 0;
    for f in &c.args[2..] {
        if h.remove(*f).is_some() {
            removed += 1;
        }
    }
    e.remove_if_empty(c.db, key);
    c.changed += removed;
    c.reply.int(removed as i64);
}

fn hexists(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(h) => c
            .reply
            .int(i64::from(h.is_some_and(|h| h.contains_key(c.arg(2))))),
    }
}

fn hlen(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(h) => c.reply.int(h.map_or(0, |h| h.len() as i64)),
    }
}

fn hstrlen(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(h) => c.reply.int(
            h.and_then(|h| h.get(c.arg(2)))
                .map_or(0, |v| v.len() as i64),
        ),
    }
}

fn hincrby(e: &mut Engine, c: &mut Call<'_>) {
    let Some(incr) = parse_i64(c.arg(3)) else {
        return c.reply.error(NOT_INTEGER);
    };
    let key = c.arg(1);
    let Ok(h) = hash_for_write(e, c.db, key, c.now) else {
        return c.reply.error(WRONGTYPE);
    };
    let old = match h.get(c.arg(2)) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => return c.reply.error("ERR hash value is not an integer"),
        },
    };
    let Some(new) = old.checked_add(incr) else {
        e.remove_if_empty(c.db, key);
        return c.reply.error(OVERFLOW);
    };
    h.insert(c.arg(2).to_vec(), new.to_string().into_bytes());
    c.changed += 1;
    c.reply.int(new);
}

fn hincrbyfloat(e: &mut Engine, c: &mut Call<'_>) {
    let Some(incr) = parse_f64(c.arg(3)) else {
        return c.reply.error(NOT_FLOAT);
    };
    if incr.is_infinite() {
        return c.reply.error("ERR value is NaN or Infinity");
    }
    let key = c.arg(1);
    let Ok(h) = hash_for_write(e, c.db, key, c.now) else {
        return c.reply.error(WRONGTYPE);
    };
    let old = match h.get(c.arg(2)) {
        None => 0.0,
        Some(v) => match parse_f64(v) {
            Some(n) => n,
            None => return c.reply.error("ERR hash value is not a float"),
        },
    };
    let new = old + incr;
    if !new.is_finite() {
        e.remove_if_empty(c.db, key);
        return c.reply.error("ERR increment would produce NaN or Infinity");
    }
    let text = format_double(new).into_bytes();
    h.insert(c.arg(2).to_vec(), text.clone());
    c.changed += 1;
    c.propagate_as(vec![vec![
        b"HSET".to_vec(),
        key.to_vec(),
        c.arg(2).to_vec(),
        text.clone(),
    ]]);
    c.reply.bulk(&text);
}

fn hkeys(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.array(0),
        Ok(Some(h)) => c.reply.bulks(h.keys().map(|k| k.as_slice())),
    }
}

fn hvals(e: &mut Engine, c: &mut Call<'_>) {
    match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.array(0),
        Ok(Some(h)) => c.reply.bulks(h.values().map(|v| v.as_slice())),
    }
}

fn hrandfield(e: &mut Engine, c: &mut Call<'_>) {
    let key = c.arg(1);
    if c.args.len() == 2 {
        let len = match get_hash(e, c.db, key, c.now) {
            Err(()) => return c.reply.error(WRONGTYPE),
            Ok(None) => return c.reply.null(),
            Ok(Some(h)) => h.len(),
        };
        let i = (e.random() % len as u64) as usize;
        let Ok(Some(h)) = get_hash(e, c.db, key, c.now) else {
            unreachable!("the hash was just seen")
        };
        let f = h.keys().nth(i).expect("index within the hash");
        return c.reply.bulk(f);
    }
    let count = match parse_random_count(c.arg(2)) {
        Ok(n) => n,
        Err(msg) => return c.reply.error(msg),
    };
    let withvalues = match c.args.len() {
        3 => false,
        4 if is(c.arg(3), "withvalues") => true,
        _ => return c.reply.error(SYNTAX),
    };
    if withvalues && count.unsigned_abs() > (i64::MAX / 2) as u64 {
        return c.reply.error("ERR value is out of range");
    }
    let len = match get_hash(e, c.db, key, c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return c.reply.array(0),
        Ok(Some(h)) => h.len(),
    };
    let k = count.unsigned_abs() as usize;
    if k == 0 {
        return c.reply.array(0);
    }
    let picked: Vec<(&[u8], &[u8])> = if count < 0 {
        let want = repeat_indexes(e, len, k);
        let Ok(Some(h)) = get_hash(e, c.db, key, c.now) else {
            unreachable!("the hash was just seen")
        };
        gather(
            h.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
            &want,
            k,
        )
    } else if k >= len {
        let Ok(Some(h)) = get_hash(e, c.db, key, c.now) else {
            unreachable!("the hash was just seen")
        };
        h.iter()
            .map(|(f, v)| (f.as_slice(), v.as_slice()))
            .collect()
    } else {
        let chosen = sample_distinct_indexes(e, len, k);
        let mut order: Vec<usize> = (0..k).collect();
        shuffle(e, &mut order);
        let Ok(Some(h)) = get_hash(e, c.db, key, c.now) else {
            unreachable!("the hash was just seen")
        };
        let picked = pick(h.iter().map(|(f, v)| (f.as_slice(), v.as_slice())), &chosen);
        order.into_iter().map(|i| picked[i]).collect()
    };
    if !withvalues {
        c.reply.array(picked.len());
        for (f, _) in picked {
            c.reply.bulk(f);
        }
    } else if c.reply.resp3 {
        c.reply.array(picked.len());
        for (f, v) in picked {
            c.reply.array(2);
            c.reply.bulk(f);
            c.reply.bulk(v);
        }
    } else {
        c.reply.array(2 * picked.len());
        for (f, v) in picked {
            c.reply.bulk(f);
            c.reply.bulk(v);
        }
    }
}

fn hscan(e: &mut Engine, c: &mut Call<'_>) {
    let Some(cursor) = scan::parse_cursor(c.arg(2)) else {
        return c.reply.error(scan::INVALID_CURSOR);
    };
    let h = match get_hash(e, c.db, c.arg(1), c.now) {
        Err(()) => return c.reply.error(WRONGTYPE),
        Ok(None) => return scan::reply_empty(c),
        Ok(Some(h)) => h,
    };
    let opts = match scan::Options::parse(&c.args[3..], true) {
        Ok(o) => o,
        Err(msg) => return c.reply.error(msg),
    };
    let (next, found) = scan::walk(
        h.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
        h.len(),
        cursor,
        opts.count,
    );
    let found: Vec<(&[u8], &[u8])> = found.into_iter().filter(|(f, _)| opts.matches(f)).collect();
    c.reply.array(2);
    c.reply.bulk(next.to_string().as_bytes());
    if opts.novalues {
        c.reply.array(found.len());
        for (f, _) in found {
            c.reply.bulk(f);
        }
    } else {
        c.reply.array(2 * found.len());
        for (f, v) in found {
            c.reply.bulk(f);
            c.reply.bulk(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::protocols::kv::cmd::testing::{run_args, run_full, run_line};
    use crate::protocols::kv::engine::{Engine, Value};

    const WT: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn sorted_pairs(reply: &str) -> Vec<String> {
        let lines: Vec<&str> = reply.split("\r\n").skip(1).collect();
        let mut pairs: Vec<String> = lines
            .chunks(4)
            .filter(|c| c.len() == 4)
            .map(|c| format!("{}={}", c[1], c[3]))
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn hset_hget_and_friends() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "HSET h a 1 b 2"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "HSET h a 3 c 4"), ":1\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HSET h a 1 b"),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HMSET h a"),
            "-ERR wrong number of arguments for 'hmset' command\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "HMSET h a 1 d 5"), "+OK\r\n");
        assert_eq!(run_line(&mut e, 0, "HSETNX h a 9"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "HSETNX h e 6"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "HGET h a"), "$1\r\n1\r\n");
        assert_eq!(run_line(&mut e, 0, "HGET h zz"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "HGET nokey a"), "$-1\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HMGET h a zz e"),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n6\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HMGET nokey a b"),
            "*2\r\n$-1\r\n$-1\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "HLEN h"), ":5\r\n");
        assert_eq!(run_line(&mut e, 0, "HLEN nokey"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "HEXISTS h a"), ":1\r\n");
        assert_eq!(run_line(&mut e, 0, "HEXISTS h zz"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "HEXISTS nokey a"), ":0\r\n");
        run_line(&mut e, 0, "HSET h long hello");
        assert_eq!(run_line(&mut e, 0, "HSTRLEN h long"), ":5\r\n");
        assert_eq!(run_line(&mut e, 0, "HSTRLEN h zz"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "HSTRLEN nokey a"), ":0\r\n");
        assert_eq!(run_line(&mut e, 0, "HDEL h a zz long"), ":2\r\n");
        assert_eq!(run_line(&mut e, 0, "HDEL nokey a"), ":0\r\n");
        let (r, done) = run_full(&mut e, 0, 0, false, &["HDEL", "h", "b", "c", "d", "e"]);
        assert_eq!((r.as_str(), done.changed), (":4\r\n", 4));
        assert!(e.db(0).map.is_empty(), "an emptied hash is removed");
    }

    #[test]
    fn hgetall_keys_vals_in_both_protocols() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "HGETALL nokey"), "*0\r\n");
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["HGETALL", "nokey"]).0,
            "%0\r\n"
        );
        run_line(&mut e, 0, "HSET h f v");
        assert_eq!(
            run_line(&mut e, 0, "HGETALL h"),
            "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        );
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["HGETALL", "h"]).0,
            "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
        );
        run_line(&mut e, 0, "HSET h g w");
        assert_eq!(
            sorted_pairs(&run_line(&mut e, 0, "HGETALL h")),
            ["f=v", "g=w"]
        );
        assert!(run_full(&mut e, 0, 0, true, &["HGETALL", "h"])
            .0
            .starts_with("%2\r\n"));
        let keys = run_line(&mut e, 0, "HKEYS h");
        assert!(keys == "*2\r\n$1\r\nf\r\n$1\r\ng\r\n" || keys == "*2\r\n$1\r\ng\r\n$1\r\nf\r\n");
        let vals = run_full(&mut e, 0, 0, true, &["HVALS", "h"]).0;
        assert!(vals == "*2\r\n$1\r\nv\r\n$1\r\nw\r\n" || vals == "*2\r\n$1\r\nw\r\n$1\r\nv\r\n");
        assert_eq!(run_line(&mut e, 0, "HKEYS nokey"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "HVALS nokey"), "*0\r\n");
    }

    #[test]
    fn every_hash_command_refuses_other_types() {
        let mut e = Engine::new();
        e.set(0, b"s", Value::Str(b"x".to_vec()));
        for line in [
            "HSET s a 1",
            "HMSET s a 1",
            "HSETNX s a 1",
            "HGET s a",
            "HMGET s a",
            "HGETALL s",
            "HDEL s a",
            "HEXISTS s a",
            "HLEN s",
            "HSTRLEN s a",
            "HINCRBY s a 1",
            "HINCRBYFLOAT s a 1",
            "HKEYS s",
            "HVALS s",
            "HRANDFIELD s",
            "HRANDFIELD s 1",
            "HSCAN s 0",
            "HSCAN s 0 COUNT 0",
        ] {
            assert_eq!(run_line(&mut e, 0, line), WT, "{line}");
        }
        assert_eq!(e.db(0).map.len(), 1);
    }

    #[test]
    fn hincrby_errors_and_overflow() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "HINCRBY h n 5"), ":5\r\n");
        assert_eq!(run_line(&mut e, 0, "HINCRBY h n -7"), ":-2\r\n");
        assert_eq!(run_line(&mut e, 0, "HGET h n"), "$2\r\n-2\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBY h n x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        for bad in ["1.5", "01", " 1", "abc"] {
            run_args(&mut e, 0, &["HSET", "h", "b", bad]);
            assert_eq!(
                run_line(&mut e, 0, "HINCRBY h b 1"),
                "-ERR hash value is not an integer\r\n",
                "{bad:?}"
            );
        }
        run_line(&mut e, 0, "HSET h m 9223372036854775807");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBY h m 1"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HINCRBY h o -9223372036854775808"),
            ":-9223372036854775808\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HINCRBY h o -1"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HGET h m"),
            "$19\r\n9223372036854775807\r\n"
        );
    }

    #[test]
    fn hincrbyfloat_results_errors_and_propagation() {
        let mut e = Engine::new();
        let (r, done) = run_full(&mut e, 0, 0, false, &["HINCRBYFLOAT", "h", "f", "10.5"]);
        assert_eq!(r, "$4\r\n10.5\r\n");
        assert_eq!(
            done.propagate,
            Some(vec![vec![
                b"HSET".to_vec(),
                b"h".to_vec(),
                b"f".to_vec(),
                b"10.5".to_vec()
            ]])
        );
        assert_eq!(run_line(&mut e, 0, "HINCRBYFLOAT h f -0.5"), "$2\r\n10\r\n");
        run_line(&mut e, 0, "HSET h e 1e3");
        assert_eq!(run_line(&mut e, 0, "HINCRBYFLOAT h e 1"), "$4\r\n1001\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h g 2.0e1"),
            "$2\r\n20\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h f x"),
            "-ERR value is not a valid float\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h f inf"),
            "-ERR value is NaN or Infinity\r\n"
        );
        run_line(&mut e, 0, "HSET h s abc");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h s 1"),
            "-ERR hash value is not a float\r\n"
        );
        run_line(&mut e, 0, "HSET h big 1.7e308");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h big 1.7e308"),
            "-ERR increment would produce NaN or Infinity\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "HGET h big"), "$7\r\n1.7e308\r\n");
        let (_, done) = run_full(&mut e, 0, 0, false, &["HINCRBYFLOAT", "h", "f", "x"]);
        assert_eq!((done.changed, done.propagate), (0, None));
    }

    #[test]
    fn hrandfield_counts_and_shapes() {
        let mut e = Engine::new();
        assert_eq!(run_line(&mut e, 0, "HRANDFIELD nokey"), "$-1\r\n");
        assert_eq!(run_line(&mut e, 0, "HRANDFIELD nokey 3"), "*0\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD nokey -3 WITHVALUES"),
            "*0\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD nokey x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD nokey 1 WITHVALUESX"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD nokey 1 WITHVALUES x"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD nokey -9223372036854775808"),
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
        );
        assert_eq!(
            run_line(
                &mut e,
                0,
                "HRANDFIELD nokey -4611686018427387904 WITHVALUES"
            ),
            "-ERR value is out of range\r\n"
        );
        run_line(&mut e, 0, "HSET h a 1");
        assert_eq!(run_line(&mut e, 0, "HRANDFIELD h"), "$1\r\na\r\n");
        assert_eq!(run_line(&mut e, 0, "HRANDFIELD h 0"), "*0\r\n");
        assert_eq!(run_line(&mut e, 0, "HRANDFIELD h 5"), "*1\r\n$1\r\na\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD h -2"),
            "*2\r\n$1\r\na\r\n$1\r\na\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD h 5 WITHVALUES"),
            "*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HRANDFIELD h -2 withvalues"),
            "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            run_full(&mut e, 0, 0, true, &["HRANDFIELD", "h", "-2", "WITHVALUES"]).0,
            "*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        run_line(&mut e, 0, "HSET h b 2 c 3 d 4 e 5");
        let r = run_line(&mut e, 0, "HRANDFIELD h 3 WITHVALUES");
        let pairs = sorted_pairs(&r);
        assert_eq!(pairs.len(), 3);
        for p in &pairs {
            let (f, v) = p.split_once('=').unwrap();
            assert_eq!(v, (f.as_bytes()[0] - b'a' + 1).to_string());
        }
        let mut d = pairs.clone();
        d.dedup();
        assert_eq!(d.len(), 3);
        let (_, done) = run_full(&mut e, 0, 0, false, &["HRANDFIELD", "h", "2"]);
        assert_eq!((done.changed, done.propagate), (0, None));
    }

    #[test]
    fn hscan_small_hashes_options() {
        let mut e = Engine::new();
        assert_eq!(
            run_line(&mut e, 0, "HSCAN nokey 0"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN nokey 0 COUNT 0"),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN nokey x"),
            "-ERR invalid cursor\r\n"
        );
        run_line(&mut e, 0, "HSET h a1 1 b1 2");
        assert_eq!(
            run_line(&mut e, 0, "HSCAN h 0 COUNT 0"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN h 0 TYPE string"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN h 0 MATCH b*"),
            "*2\r\n$1\r\n0\r\n*2\r\n$2\r\nb1\r\n$1\r\n2\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN h 0 MATCH a* NOVALUES"),
            "*2\r\n$1\r\n0\r\n*1\r\n$2\r\na1\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HSCAN h 5 MATCH a1 COUNT 1"),
            "*2\r\n$1\r\n0\r\n*2\r\n$2\r\na1\r\n$1\r\n1\r\n"
        );
    }

    #[test]
    fn hscan_walks_a_big_hash_once_each() {
        let mut e = Engine::new();
        for i in 0..500 {
            run_line(&mut e, 0, &format!("HSET h f{i} v{i}"));
        }
        let mut seen = std::collections::HashMap::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let r = run_line(&mut e, 0, &format!("HSCAN h {cursor}"));
            let parts: Vec<&str> = r.split("\r\n").collect();
            cursor = parts[2].to_string();
            for p in sorted_pairs(&format!("*0\r\n{}", parts[4..].join("\r\n"))) {
                let (f, v) = p.split_once('=').unwrap();
                if let Some(n) = f.strip_prefix('f') {
                    assert_eq!(n, &v[1..]);
                }
                *seen.entry(f.to_string()).or_insert(0) += 1;
            }
            calls += 1;
            run_line(&mut e, 0, &format!("HSET h new{calls} x"));
            if cursor == "0" {
                break;
            }
        }
        assert!((16..=18).contains(&calls), "{calls} calls");
        for i in 0..500 {
            assert_eq!(seen.get(&format!("f{i}")), Some(&1), "f{i}");
        }
    }
}
