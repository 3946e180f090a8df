//! The command table: every command that runs against the keyspace, with
//! Redis's arity, flags and key positions, and the dispatcher that checks
//! them, runs the command and does the bookkeeping every write shares.
//!
//! Commands about the connection itself (`SELECT`, `MULTI`, `HELLO`,
//! `AUTH`, `CLIENT`, blocking pops, ...) live in the session, which knows
//! the connection's state; everything here sees only the engine and a
//! [`Call`].
//!
//! One file per family, each exporting its `COMMANDS`:
//! [`strings`] (strings, counters, bits, `LCS`), [`keys`] (the generic key
//! commands and the database-wide ones), [`hashes`], [`lists`], [`sets`].

pub mod hashes;
pub mod keys;
pub mod lists;
pub mod sets;
pub mod strings;

use std::collections::HashMap;
use std::sync::OnceLock;

use super::engine::Engine;
use super::reply::Reply;

/// The command changes the keyspace (logged, counted, refused under
/// `--maxmemory` when it may grow memory: see [`DENYOOM`]).
pub const WRITE: u32 = 1;
/// The command only reads.
pub const READONLY: u32 = 2;
/// The command may grow memory: refused when over `--maxmemory` with
/// `noeviction`.
pub const DENYOOM: u32 = 4;
/// The command runs in constant or logarithmic time (Redis's `fast`).
pub const FAST: u32 = 8;
/// The command may answer differently for the same arguments (`SPOP`,
/// `RANDOMKEY`).
pub const RANDOM: u32 = 16;

/// One command.
#[derive(Debug)]
pub struct Command {
    /// Its name, lowercase.
    pub name: &'static str,
    /// Redis's arity: `n > 0` exactly `n` arguments counting the name,
    /// `n < 0` at least `-n`.
    pub arity: i32,
    /// [`WRITE`], [`READONLY`], ...
    pub flags: u32,
    /// The first key's position (0: no keys), the last's (negative: from
    /// the end, -1 the last argument) and the step between keys: Redis's
    /// key specification, used to touch watched keys after a write and for
    /// `COMMAND INFO`.
    pub keys: (i32, i32, i32),
    /// Runs it.
    pub run: fn(&mut Engine, &mut Call<'_>),
}

impl Command {
    /// Whether `n` arguments (counting the name) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i32;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }

    /// The positions of the keys among `n` arguments.
    pub fn key_positions(&self, n: usize) -> impl Iterator<Item = usize> {
        let (first, last, step) = self.keys;
        let n = n as i32;
        let last = if last < 0 { n + last } else { last.min(n - 1) };
        let step = step.max(1) as usize;
        let range = if first <= 0 || last < first {
            0..0
        } else {
            first as usize..last as usize + 1
        };
        range.step_by(step)
    }

    /// Whether the command may change the keyspace.
    pub fn is_write(&self) -> bool {
        self.flags & WRITE != 0
    }
}

/// One command being run.
pub struct Call<'a> {
    /// The arguments, the command's name first.
    pub args: &'a [&'a [u8]],
    /// The selected database.
    pub db: usize,
    /// The time, Unix milliseconds (given by the caller: the engine never
    /// reads a clock).
    pub now: u64,
    /// Where the reply goes.
    pub reply: Reply<'a>,
    /// How many changes the command made to the keyspace. A command sets
    /// it whenever it changes anything; the dispatcher then touches the
    /// command's keys (for `WATCH`), adds it to the engine's `dirty` count
    /// and logs the command for durability.
    pub changed: u64,
    /// The command to log instead of `args` when replaying `args` later
    /// would do something else: relative expiry made absolute (`SET k v
    /// EX 10` is logged as `SET k v PXAT <ms>`, `EXPIRE` as `PEXPIREAT`),
    /// random choices made explicit (`SPOP` as `SREM` of what it popped),
    /// floats as their result (`INCRBYFLOAT` as `SET ... KEEPTTL`). Each
    /// inner vector is one command; empty logs nothing.
    pub propagate: Option<Vec<Vec<Vec<u8>>>>,
}

impl<'a> Call<'a> {
    /// Argument `i` (0 is the command's name).
    pub fn arg(&self, i: usize) -> &'a [u8] {
        self.args[i]
    }

    /// The command's name as sent, lowercased, for error messages.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(self.args[0]).to_lowercase()
    }

    /// Logs `commands` in place of the arguments (see [`Call::propagate`]).
    pub fn propagate_as(&mut self, commands: Vec<Vec<Vec<u8>>>) {
        self.propagate = Some(commands);
    }
}

/// The whole table, by lowercase name.
pub fn table() -> &'static HashMap<&'static str, &'static Command> {
    static TABLE: OnceLock<HashMap<&'static str, &'static Command>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for family in [
            strings::COMMANDS,
            keys::COMMANDS,
            hashes::COMMANDS,
            lists::COMMANDS,
            sets::COMMANDS,
        ] {
            for c in family {
                let old = t.insert(c.name, c);
                assert!(old.is_none(), "command {} defined twice", c.name);
            }
        }
        t
    })
}

/// The longest command name in the table, for lowercasing on the stack.
const NAME_MAX: usize = 32;

/// Looks up a command by its name as sent (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    if name.len() > NAME_MAX {
        return None;
    }
    let mut buf = [0u8; NAME_MAX];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let lower = std::str::from_utf8(lower).ok()?;
    table().get(lower).copied()
}

/// What running a command did, for the caller's bookkeeping.
#[derive(Debug, Default)]
pub struct Done {
    /// How many changes it made.
    pub changed: u64,
    /// What to log (`None`: the arguments as sent, if anything changed).
    pub propagate: Option<Vec<Vec<Vec<u8>>>>,
}

/// Runs `cmd` (already looked up and arity-checked) and does the
/// bookkeeping every write shares: watched keys touched, `dirty` counted.
/// Logging is the caller's (it knows whether there is a log).
pub fn run(
    engine: &mut Engine,
    cmd: &Command,
    args: &[&[u8]],
    db: usize,
    now: u64,
    out: &mut Vec<u8>,
    resp3: bool,
) -> Done {
    engine.set_clock(now);
    let mut call = Call {
        args,
        db,
        now,
        reply: Reply::new(out, resp3),
        changed: 0,
        propagate: None,
    };
    (cmd.run)(engine, &mut call);
    if call.changed > 0 {
        engine.dirty += call.changed;
        for i in cmd.key_positions(args.len()) {
            engine.touch(db, args[i]);
        }
    }
    Done {
        changed: call.changed,
        propagate: call.propagate,
    }
}

/// Parses an integer argument exactly as Redis does (`string2ll`): an
/// optional `-`, then digits without a leading zero (or just `0`), within
/// 64 bits. No `+`, no spaces.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses a float argument as Redis does (`string2ld`): no spaces, not
/// NaN. `inf` is accepted (the command decides whether a result may be
/// infinite).
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// Whether `a` equals the ASCII word `word` in any case (option names).
pub fn is(a: &[u8], word: &str) -> bool {
    a.eq_ignore_ascii_case(word.as_bytes())
}

/// An owned copy of arguments, for [`Call::propagate_as`].
pub fn owned(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[cfg(test)]
pub mod testing {
    //! A little harness for the command families' tests: run a command
    //! line against an engine and look at the RESP2 reply.

    use super::*;

    /// Runs `line` (split on spaces) on `engine` in database 0 at `now`;
    /// returns the reply as text.
    pub fn run_line(engine: &mut Engine, now: u64, line: &str) -> String {
        run_args(engine, now, &line.split(' ').collect::<Vec<_>>())
    }

    /// Runs `args` on `engine` in database 0 at `now`.
    pub fn run_args(engine: &mut Engine, now: u64, args: &[&str]) -> String {
        run_full(engine, now, 0, false, args).0
    }

    /// Runs `args` and returns the reply and what the dispatcher saw.
    pub fn run_full(
        engine: &mut Engine,
        now: u64,
        db: usize,
        resp3: bool,
        args: &[&str],
    ) -> (String, Done) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        let done = match lookup(args[0]) {
            None => {
                Reply::new(&mut out, resp3).error("ERR unknown command");
                Done::default()
            }
            Some(cmd) if !cmd.arity_ok(args.len()) => {
                Reply::new(&mut out, resp3).wrong_arity(args[0]);
                Done::default()
            }
            Some(cmd) => super::run(engine, cmd, &args, db, now, &mut out, resp3),
        };
        (String::from_utf8_lossy(&out).into_owned(), done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_redis_parses_them() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "01",
            "+1",
            " 1",
            "1 ",
            "-0",
            "-",
            "9223372036854775808",
            "1x",
        ] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn key_positions_follow_the_spec() {
        let cmd = Command {
            name: "mset",
            arity: -3,
            flags: WRITE,
            keys: (1, -1, 2),
            run: |_, _| {},
        };
        assert_eq!(cmd.key_positions(5).collect::<Vec<_>>(), vec![1, 3]);
        let get = Command {
            name: "get",
            arity: 2,
            flags: READONLY,
            keys: (1, 1, 1),
            run: |_, _| {},
        };
        assert_eq!(get.key_positions(2).collect::<Vec<_>>(), vec![1]);
        assert!(get.arity_ok(2) && !get.arity_ok(3));
    }
}
