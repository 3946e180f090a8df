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

/// The longest text Redis reads as a float (`MAX_LONG_DOUBLE_CHARS`), less
/// one.
const MAX_FLOAT_CHARS: usize = 5 * 1024;

/// A float as Redis's `string2ld` reads one: `inf` is infinite, but a
/// number too big for a long double is no float at all, and one too big
/// for an `f64` only is kept as `f64::MAX` here (the long double
/// arithmetic of [`long_double`] does the sum).
fn read_float(s: &[u8]) -> Option<f64> {
    if s.len() >= MAX_FLOAT_CHARS {
        return None;
    }
    let v = parse_f64(s)?;
    if !v.is_infinite() {
        return Some(v);
    }
    let word = s.strip_prefix(b"-").or(s.strip_prefix(b"+")).unwrap_or(s);
    if is(word, "inf") || is(word, "infinity") {
        Some(v)
    } else if long_double::reads(s) {
        Some(f64::MAX.copysign(v))
    } else {
        None
    }
}

fn hincrbyfloat(e: &mut Engine, c: &mut Call<'_>) {
    let Some(incr) = read_float(c.arg(3)) else {
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
        None => &b"0"[..],
        Some(v) if read_float(v).is_some() => v.as_slice(),
        Some(_) => return c.reply.error("ERR hash value is not a float"),
    };
    let text = match long_double::add(old, c.arg(3)) {
        Some(t) => t,
        None => {
            let new = read_float(old).unwrap_or(0.0) + incr;
            if !new.is_finite() {
                e.remove_if_empty(c.db, key);
                return c.reply.error("ERR increment would produce NaN or Infinity");
            }
            format_double(new)
        }
    }
    .into_bytes();
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

pub(super) mod long_double {
    //! `HINCRBYFLOAT`'s arithmetic as Redis does it: in the x87 80-bit
    //! `long double` (64-bit mantissa), printed with `%.17Lf` and its
    //! trailing zeros cut. That is why Redis answers `0.3` to `0.1 + 0.2`
    //! and `1000.09999999999999998` for `1000.1`; an `f64` would say
    //! `0.30000000000000004` and `1000.1`.
    //!
    //! Values are `m * 2^e` with a 64-bit `m`; reading, adding and printing
    //! are done exactly with a small unsigned big integer and rounded to
    //! nearest, ties to even, as the hardware and glibc's `strtold` and
    //! `printf` do. Inputs in forms other than decimal (`inf`, hex) or with
    //! a decimal exponent beyond ±5000 give `None`.

    use std::cmp::Ordering;

    /// How far from 1 a decimal exponent may go (`long double` spans about
    /// 1e-4951 to 1e4932).
    const MAX_EXP10: i64 = 5000;
    /// The binary exponents a normal `long double` may have (of `m * 2^e`).
    const E_RANGE: std::ops::RangeInclusive<i64> = (-16382 - 63)..=(16383 - 63);

    /// `old + incr` as Redis prints it, or `None` when either is not a
    /// plain decimal or the result leaves the normal `long double` range
    /// (the caller then computes in `f64`).
    pub fn add(old: &[u8], incr: &[u8]) -> Option<String> {
        let sum = F80::parse(old)?.add(F80::parse(incr)?)?;
        Some(sum.format())
    }

    /// Whether `s` is a decimal this module reads.
    pub fn reads(s: &[u8]) -> bool {
        F80::parse(s).is_some()
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Big(Vec<u32>);

    impl Big {
        fn from_u64(v: u64) -> Big {
            let mut b = Big(vec![v as u32, (v >> 32) as u32]);
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

        fn bits(&self) -> i64 {
            match self.0.last() {
                None => 0,
                Some(&top) => self.0.len() as i64 * 32 - i64::from(top.leading_zeros()),
            }
        }

        fn mul_add_small(&mut self, m: u32, a: u32) {
            let mut carry = u64::from(a);
            for limb in &mut self.0 {
                let v = u64::from(*limb) * u64::from(m) + carry;
                *limb = v as u32;
                carry = v >> 32;
            }
            if carry > 0 {
                self.0.push(carry as u32);
            }
        }

        fn pow10(n: i64) -> Big {
            let mut b = Big::from_u64(1);
            for _ in 0..n {
                b.mul_add_small(10, 0);
            }
            b
        }

        fn shl(&self, n: i64) -> Big {
            if self.is_zero() || n <= 0 {
                return self.shr(-n);
            }
            let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
            let mut out = vec![0u32; limbs];
            let mut carry = 0u32;
            for &l in &self.0 {
                if bits == 0 {
                    out.push(l);
                } else {
                    out.push((l << bits) | carry);
                    carry = l >> (32 - bits);
                }
            }
            out.push(carry);
            let mut b = Big(out);
            b.trim();
            b
        }

        fn shr(&self, n: i64) -> Big {
            if n <= 0 {
                return self.clone();
            }
            let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
            if limbs >= self.0.len() {
                return Big(Vec::new());
            }
            let src = &self.0[limbs..];
            let mut out = Vec::with_capacity(src.len());
            for i in 0..src.len() {
                let hi = src.get(i + 1).copied().unwrap_or(0);
                out.push(if bits == 0 {
                    src[i]
                } else {
                    (src[i] >> bits) | (hi << (32 - bits))
                });
            }
            let mut b = Big(out);
            b.trim();
            b
        }

        fn cmp(&self, o: &Big) -> Ordering {
            self.0
                .len()
                .cmp(&o.0.len())
                .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
        }

        fn add(&self, o: &Big) -> Big {
            let mut out = Vec::with_capacity(self.0.len().max(o.0.len()) + 1);
            let mut carry = 0u64;
            for i in 0..self.0.len().max(o.0.len()) {
                let v = u64::from(self.0.get(i).copied().unwrap_or(0))
                    + u64::from(o.0.get(i).copied().unwrap_or(0))
                    + carry;
                out.push(v as u32);
                carry = v >> 32;
            }
            out.push(carry as u32);
            let mut b = Big(out);
            b.trim();
            b
        }

        /// `self - o`, for `self >= o`.
        fn sub(&self, o: &Big) -> Big {
            let mut out = Vec::with_capacity(self.0.len());
            let mut borrow = 0i64;
            for i in 0..self.0.len() {
                let mut v =
                    i64::from(self.0[i]) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
                borrow = i64::from(v < 0);
                if v < 0 {
                    v += 1 << 32;
                }
                out.push(v as u32);
            }
            let mut b = Big(out);
            b.trim();
            b
        }

        fn low_u64(&self) -> u64 {
            u64::from(self.0.first().copied().unwrap_or(0))
                | u64::from(self.0.get(1).copied().unwrap_or(0)) << 32
        }

        fn divmod_small(&mut self, d: u32) -> u32 {
            let mut rem = 0u64;
            for limb in self.0.iter_mut().rev() {
                let v = (rem << 32) | u64::from(*limb);
                *limb = (v / u64::from(d)) as u32;
                rem = v % u64::from(d);
            }
            self.trim();
            rem as u32
        }

        fn to_decimal(&self) -> String {
            let mut b = self.clone();
            let mut chunks = Vec::new();
            while !b.is_zero() {
                chunks.push(b.divmod_small(1_000_000_000));
            }
            let mut s = chunks.pop().map_or("0".to_string(), |c| c.to_string());
            for c in chunks.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
            s
        }
    }

    /// `m * 2^e` with a sign; `m == 0` is zero.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct F80 {
        neg: bool,
        m: u64,
        e: i64,
    }

    impl F80 {
        /// The nearest value to `num / den * 2^shift` (ties to even).
        fn round(num: &Big, den: &Big, shift: i64, neg: bool) -> Option<F80> {
            if num.is_zero() {
                return Some(F80 { neg, m: 0, e: 0 });
            }
            // Find k with 2^63 <= num * 2^k / den < 2^64.
            let mut k = 64 - (num.bits() - den.bits());
            let (q, a, b) = loop {
                let a = num.shl(k.max(0));
                let b = den.shl((-k).max(0));
                if a.cmp(&b.shl(64)) != Ordering::Less {
                    k -= 1;
                } else if a.cmp(&b.shl(63)) == Ordering::Less {
                    k += 1;
                } else {
                    // The quotient, bit by bit.
                    let mut rem = a.clone();
                    let mut q = 0u64;
                    for bit in (0..64).rev() {
                        let d = b.shl(bit);
                        if rem.cmp(&d) != Ordering::Less {
                            rem = rem.sub(&d);
                            q |= 1 << bit;
                        }
                    }
                    break (q, rem, b);
                }
            };
            let mut m = q;
            let mut e = shift - k;
            match a.shl(1).cmp(&b) {
                Ordering::Greater => m = m.wrapping_add(1),
                Ordering::Equal if m & 1 == 1 => m = m.wrapping_add(1),
                _ => {}
            }
            if m == 0 {
                m = 1 << 63;
                e += 1;
            }
            E_RANGE.contains(&e).then_some(F80 { neg, m, e })
        }

        /// Reads `[+-]digits[.digits][e[+-]digits]` (also `.5`, `5.`).
        fn parse(s: &[u8]) -> Option<F80> {
            let (neg, rest) = match s.first()? {
                b'-' => (true, &s[1..]),
                b'+' => (false, &s[1..]),
                _ => (false, s),
            };
            let mut n = Big(Vec::new());
            let mut exp10: i64 = 0;
            let mut digits = 0;
            let mut significant: i64 = 0;
            let mut i = 0;
            let mut seen_point = false;
            while i < rest.len() {
                match rest[i] {
                    c @ b'0'..=b'9' => {
                        n.mul_add_small(10, u32::from(c - b'0'));
                        digits += 1;
                        if !n.is_zero() {
                            significant += 1;
                        }
                        if seen_point {
                            exp10 -= 1;
                        }
                    }
                    b'.' if !seen_point => seen_point = true,
                    _ => break,
                }
                i += 1;
            }
            if digits == 0 {
                return None;
            }
            if i < rest.len() {
                if rest[i] != b'e' && rest[i] != b'E' {
                    return None;
                }
                let e = std::str::from_utf8(&rest[i + 1..]).ok()?;
                if e.is_empty()
                    || !e
                        .trim_start_matches(['+', '-'])
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let e: i64 = e.parse().ok().filter(|e: &i64| e.abs() <= MAX_EXP10)?;
                exp10 += e;
            }
            if n.is_zero() {
                return Some(F80 { neg, m: 0, e: 0 });
            }
            let magnitude = exp10 + significant;
            if magnitude.abs() > MAX_EXP10 {
                return None;
            }
            let (num, den) = if exp10 >= 0 {
                let mut num = n;
                for _ in 0..exp10 {
                    num.mul_add_small(10, 0);
                }
                (num, Big::from_u64(1))
            } else {
                (n, Big::pow10(-exp10))
            };
            F80::round(&num, &den, 0, neg)
        }

        fn add(self, o: F80) -> Option<F80> {
            if o.m == 0 {
                return Some(self);
            }
            if self.m == 0 {
                return Some(o);
            }
            let low = self.e.min(o.e);
            let a = Big::from_u64(self.m).shl(self.e - low);
            let b = Big::from_u64(o.m).shl(o.e - low);
            let (sum, neg) = if self.neg == o.neg {
                (a.add(&b), self.neg)
            } else {
                match a.cmp(&b) {
                    Ordering::Equal => {
                        return Some(F80 {
                            neg: false,
                            m: 0,
                            e: 0,
                        })
                    }
                    Ordering::Greater => (a.sub(&b), self.neg),
                    Ordering::Less => (b.sub(&a), o.neg),
                }
            };
            F80::round(&sum, &Big::from_u64(1), low, neg)
        }

        /// `%.17Lf` with trailing zeros (and a bare point) cut, `-0` as `0`.
        fn format(self) -> String {
            let mut x = Big::from_u64(self.m);
            x.mul_add_small(1_000_000_000, 0);
            x.mul_add_small(100_000_000, 0);
            let q = if self.e >= 0 {
                x.shl(self.e)
            } else {
                let d = -self.e;
                let mut q = x.shr(d);
                let rem = x.sub(&q.shl(d));
                let half = Big::from_u64(1).shl(d - 1);
                match rem.cmp(&half) {
                    Ordering::Greater => q = q.add(&Big::from_u64(1)),
                    Ordering::Equal if q.low_u64() & 1 == 1 => q = q.add(&Big::from_u64(1)),
                    _ => {}
                }
                q
            };
            let mut digits = q.to_decimal();
            if digits.len() < 18 {
                digits = format!("{digits:0>18}");
            }
            let (int, frac) = digits.split_at(digits.len() - 17);
            let frac = frac.trim_end_matches('0');
            let mut s = if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            };
            if self.neg && s != "0" {
                s.insert(0, '-');
            }
            s
        }
    }

    #[cfg(test)]
    mod tests {
        use super::add;

        #[test]
        fn sums_print_as_redis_prints_them() {
            for (a, b, want) in [
                ("0", "0.1", "0.1"),
                ("0.1", "0.2", "0.3"),
                ("0", "1000.1", "1000.09999999999999998"),
                ("0", "12345.678", "12345.67799999999999994"),
                (
                    "12345.67799999999999994",
                    "0.001",
                    "12345.67900000000000027",
                ),
                ("0", "1234567.1", "1234567.10000000000002274"),
                ("3.3", "1.1", "4.4"),
                ("99.99", "0.01", "100"),
                ("0", "1.23456789012345678", "1.23456789012345678"),
                ("17179869184", "1.5", "17179869185.5"),
                ("-0.1", "0.1", "0"),
                ("0", "1e-5", "0.00001"),
                ("-3.7", "1.2", "-2.5"),
                ("0", ".5", "0.5"),
                ("0", "5.", "5"),
                ("0", "+2", "2"),
                ("0", "0.000000000000000005", "0"),
                ("0", "0.000000000000000015", "0.00000000000000002"),
                ("0", "123456789.123456789", "123456789.12345678899873747"),
                ("1e3", "1", "1001"),
                ("5", "-0", "5"),
                ("0", "-0.0000000000000000001", "0"),
            ] {
                assert_eq!(
                    add(a.as_bytes(), b.as_bytes()).as_deref(),
                    Some(want),
                    "{a} + {b}"
                );
            }
            let big = add(b"0", b"1e308").unwrap();
            assert_eq!(big.len(), 308);
            assert!(big.starts_with("99999999999999999996685879655845645660560099847415567207797047994921734868838061872100126921888539320446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153395788938914560543563061268364901618630217086589253444881623791300855757318142424510452728255046343928578048"));
            let d = add(b"0", b"1.5e4000").unwrap();
            assert_eq!(d.len(), 4001);
            assert!(d.starts_with("15000000000000000000279046972054913820044138600497308056377341"));
            assert!(d.ends_with("2083339964297684975616"));
            for odd in ["inf", "0x10", "1e", "abc", "1e6000", ""] {
                assert_eq!(add(b"0", odd.as_bytes()), None, "{odd}");
            }
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
        let long = "1".repeat(5120);
        assert_eq!(
            run_args(&mut e, 0, &["HINCRBYFLOAT", "h", "f", &long]),
            "-ERR value is not a valid float\r\n"
        );
        run_args(&mut e, 0, &["HSET", "h", "long", &long]);
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h long 1"),
            "-ERR hash value is not a float\r\n"
        );
        let fraction = format!("0.{}", &long[..5117]);
        assert_eq!(
            run_args(&mut e, 0, &["HINCRBYFLOAT", "h", "f3", &fraction]),
            "$19\r\n0.11111111111111111\r\n"
        );
        // 1.1e5118 is past long double too: not a float at all.
        assert_eq!(
            run_args(&mut e, 0, &["HINCRBYFLOAT", "h", "f", &long[1..]]),
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
        let r = run_line(&mut e, 0, "HINCRBYFLOAT h big 1.7e308");
        assert!(r.starts_with("$309\r\n34000000000000000000627355605039519359054042777938826746608717152640491210241"), "{r}");
        run_line(&mut e, 0, "HSET h big 1e4932");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h big 1e4932"),
            "-ERR increment would produce NaN or Infinity\r\n"
        );
        assert_eq!(run_line(&mut e, 0, "HGET h big"), "$6\r\n1e4932\r\n");
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h f2 0.1"),
            "$3\r\n0.1\r\n"
        );
        assert_eq!(
            run_line(&mut e, 0, "HINCRBYFLOAT h f2 0.2"),
            "$3\r\n0.3\r\n"
        );
        // Past f64, within long double.
        let r = run_line(&mut e, 0, "HINCRBYFLOAT h huge 1e400");
        assert!(r.starts_with("$401\r\n10000000000000000000281880683947586514586453433629052038625910693539685534008629862"), "{r}");
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
