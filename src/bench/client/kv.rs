//! The kv load client: Redis commands on one long-lived connection, `SET`
//! and `GET` of the same key taking turns, `depth` commands in flight
//! (1: one at a time; 16: a pipeline), every reply checked byte for byte.
//!
//! Client `c`'s request `n` is about the key `key:<c>:<(n / 2) mod keys>`:
//! an even `n` is `SET key value` (answered `+OK`), an odd one `GET key`,
//! which must answer exactly the value the `SET` before it stored
//! (`$<size>`, the value, CRLF). The value is a window of the fixture
//! pattern whose offset comes from the client and `n / 2`, so every `SET`
//! of a key stores other bytes than the one before: a server that answers
//! a stale value, another key's or another client's, is caught. Keys are
//! the client's own, so clients never race each other.
//!
//! Commands go as RESP arrays of bulk strings, as every client library
//! sends them. A reply is not parsed: the bytes it must be are known, and
//! anything else (an error reply, a null, one byte more) is a mismatch. The
//! command being written and the replies expected are made from counters
//! into buffers allocated with the client, so the steady state allocates
//! nothing. A connection that fails is given up, as echo's are.

use std::time::Instant;

use super::{fixture_window, Effects, ErrorKind, Link, LoadClient, SendTimes};
use crate::bench::scenario::{KvLoad, FIXTURE_PERIOD};

/// The reply to a `SET`.
const OK: &[u8] = b"+OK\r\n";
/// What ends a bulk string.
const CRLF: &[u8] = b"\r\n";
/// The longest key: `key:` and two 20-digit numbers with a colon.
const KEY_MAX: usize = 4 + 20 + 1 + 20;

/// What every kv client of a run sends and expects, prepared once.
#[derive(Debug)]
pub struct KvShape {
    /// Bytes per value.
    size: usize,
    /// Commands in flight per connection.
    depth: usize,
    /// Keys per client.
    keys: u64,
    /// `$<size>\r\n`: how every `GET` reply starts.
    get_head: Vec<u8>,
    /// [`fixture_window`] for values of `size` bytes.
    window: Vec<u8>,
}

impl KvShape {
    /// The shape for `load`.
    pub fn new(load: &KvLoad) -> Result<KvShape, &'static str> {
        if load.value_size == 0 {
            return Err("kv values need at least one byte");
        }
        if load.keys == 0 {
            return Err("kv clients need at least one key");
        }
        Ok(KvShape {
            size: load.value_size,
            depth: load.depth.max(1),
            keys: load.keys,
            get_head: format!("${}\r\n", load.value_size).into_bytes(),
            window: fixture_window(load.value_size),
        })
    }

    /// The longest command a client sends (a `SET` with the longest key).
    fn command_max(&self) -> usize {
        let size_digits = self.size.to_string().len();
        // *3 $3 SET $klen key $vlen value, each line with its CRLF.
        4 + 9 + (3 + 2 + KEY_MAX + 2) + (1 + size_digits + 2 + self.size + 2)
    }

    /// The value client `id` stores with its `seq`-th `SET`.
    fn value(&self, id: u64, seq: u64) -> &[u8] {
        let mixed =
            id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let at = (mixed % FIXTURE_PERIOD as u64) as usize;
        &self.window[at..at + self.size]
    }

    /// The length of the reply to request `n`.
    fn reply_len(&self, n: u64) -> usize {
        if is_set(n) {
            OK.len()
        } else {
            self.get_head.len() + self.size + CRLF.len()
        }
    }
}

/// Whether request `n` is a `SET` (the even ones; the odd ones `GET`).
fn is_set(n: u64) -> bool {
    n.is_multiple_of(2)
}

/// `n` in decimal at the end of `out` (no allocation within capacity).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// How many decimal digits `n` has.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Not opened yet.
    Closed,
    Connecting,
    Open,
    /// The connection failed.
    Dead,
}

/// One kv client (see the module docs).
pub struct KvClient<'a> {
    shape: &'a KvShape,
    /// The client's number: part of its keys and values.
    id: u64,
    state: State,
    /// Requests issued so far (the next one's `n`).
    issued: u64,
    /// Requests answered so far (the oldest one owed is `answered`).
    answered: u64,
    /// Bytes of the oldest owed reply received and checked so far.
    ans_off: usize,
    /// Send (or intended send) times of the requests not answered.
    flight: SendTimes,
    /// Commands issued and not yet written, from `out_off` on.
    out: Vec<u8>,
    out_off: usize,
}

impl<'a> KvClient<'a> {
    /// Client `id` of `shape`; `now` fills its ring of send times.
    pub fn new(shape: &'a KvShape, id: usize, now: Instant) -> KvClient<'a> {
        KvClient {
            shape,
            id: id as u64,
            state: State::Closed,
            issued: 0,
            answered: 0,
            ans_off: 0,
            flight: SendTimes::new(shape.depth, now),
            out: Vec::with_capacity(shape.depth * shape.command_max()),
            out_off: 0,
        }
    }

    /// Writes request `n` (see the module docs) after the unwritten ones.
    fn push_command(&mut self, n: u64) {
        if self.out_off > 0 {
            // Only what is still to be written is kept, so the buffer never
            // holds more than `depth` commands.
            self.out.copy_within(self.out_off.., 0);
            self.out.truncate(self.out.len() - self.out_off);
            self.out_off = 0;
        }
        let key = (n / 2) % self.shape.keys;
        let key_len = 4 + decimal_len(self.id) + 1 + decimal_len(key);
        let out = &mut self.out;
        if is_set(n) {
            out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$");
        } else {
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$");
        }
        push_decimal(out, key_len as u64);
        out.extend_from_slice(b"\r\nkey:");
        push_decimal(out, self.id);
        out.push(b':');
        push_decimal(out, key);
        out.extend_from_slice(CRLF);
        if is_set(n) {
            out.push(b'$');
            push_decimal(out, self.shape.size as u64);
            out.extend_from_slice(CRLF);
            out.extend_from_slice(self.shape.value(self.id, n / 2));
            out.extend_from_slice(CRLF);
        }
    }

    /// The bytes request `n`'s reply must have from `off` on, up to the end
    /// of the piece `off` is in.
    fn expected(&self, n: u64, off: usize) -> &'a [u8] {
        let shape = self.shape;
        if is_set(n) {
            return &OK[off..];
        }
        let head = shape.get_head.len();
        if off < head {
            &shape.get_head[off..]
        } else if off < head + shape.size {
            &shape.value(self.id, n / 2)[off - head..]
        } else {
            &CRLF[off - head - shape.size..]
        }
    }

    /// Checks `data` against the replies owed, completing them in order.
    fn check(&mut self, data: &[u8], fx: &mut Effects) -> Result<(), ()> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.flight.is_empty() {
                // A reply to nothing.
                return Err(());
            }
            let want = self.expected(self.answered, self.ans_off);
            let take = rest.len().min(want.len());
            if rest[..take] != want[..take] {
                return Err(());
            }
            rest = &rest[take..];
            self.ans_off += take;
            if self.ans_off == self.shape.reply_len(self.answered) {
                self.ans_off = 0;
                self.answered += 1;
                fx.answered(self.flight.pop());
            }
        }
        Ok(())
    }

    /// An error (counted already): close and give up.
    fn fail(&mut self, fx: &mut Effects) {
        fx.close(Link::Main, false);
        self.state = State::Dead;
    }
}

impl LoadClient for KvClient<'_> {
    fn handle_start(&mut self, _now: Instant, fx: &mut Effects) {
        fx.open(Link::Main, None, true);
        self.state = State::Connecting;
    }

    fn handle_permit(&mut self, sent: Instant, _now: Instant, _fx: &mut Effects) {
        self.push_command(self.issued);
        self.issued += 1;
        self.flight.push(sent);
    }

    fn handle_connected(&mut self, _link: Link, _now: Instant, _fx: &mut Effects) {
        if self.state == State::Connecting {
            self.state = State::Open;
        }
    }

    fn handle_input(&mut self, _link: Link, data: &[u8], _now: Instant, fx: &mut Effects) {
        if self.state != State::Open {
            return;
        }
        if self.check(data, fx).is_err() {
            fx.failed(ErrorKind::Mismatch);
            self.fail(fx);
            return;
        }
        fx.received(data.len());
    }

    fn handle_eof(&mut self, _link: Link, _now: Instant, fx: &mut Effects) {
        if self.state == State::Open {
            fx.failed(ErrorKind::Closed);
            self.fail(fx);
        }
    }

    fn handle_failure(&mut self, _link: Link, _kind: ErrorKind, _now: Instant, fx: &mut Effects) {
        self.fail(fx);
    }

    fn poll_output(&self, _link: Link) -> &[u8] {
        &self.out[self.out_off..]
    }

    fn consume_output(&mut self, _link: Link, n: usize, _now: Instant) {
        self.out_off += n;
        if self.out_off == self.out.len() {
            self.out.clear();
            self.out_off = 0;
        }
    }

    fn wants_permit(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open)
            && self.flight.len() < self.shape.depth
    }

    fn owes_answer(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open) && !self.flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;
    use crate::bench::client::Effect;

    fn load(value_size: usize, depth: usize, keys: u64) -> KvLoad {
        KvLoad {
            value_size,
            depth,
            keys,
            durable: false,
        }
    }

    fn connected(shape: &KvShape, id: usize, t0: Instant) -> KvClient<'_> {
        let mut c = KvClient::new(shape, id, t0);
        let fx = effects(|fx| c.handle_start(t0, fx));
        assert_eq!(
            fx,
            [Effect::Open {
                link: Link::Main,
                port: None,
                nodelay: true
            }]
        );
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        c
    }

    /// Takes everything the client has to write.
    fn written(c: &mut KvClient, t0: Instant) -> Vec<u8> {
        let out = c.poll_output(Link::Main).to_vec();
        c.consume_output(Link::Main, out.len(), t0);
        out
    }

    /// The reply to `GET` of `value`.
    fn bulk(value: &[u8]) -> Vec<u8> {
        [format!("${}\r\n", value.len()).as_bytes(), value, b"\r\n"].concat()
    }

    /// Splits RESP arrays of bulk strings into their arguments.
    fn commands(mut wire: &[u8]) -> Vec<Vec<Vec<u8>>> {
        fn line(wire: &mut &[u8], tag: u8) -> usize {
            assert_eq!(wire[0], tag, "{}", String::from_utf8_lossy(wire));
            let end = wire.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = std::str::from_utf8(&wire[1..end]).unwrap().parse().unwrap();
            *wire = &wire[end + 2..];
            n
        }
        let mut all = Vec::new();
        while !wire.is_empty() {
            let argc = line(&mut wire, b'*');
            let mut args = Vec::new();
            for _ in 0..argc {
                let len = line(&mut wire, b'$');
                args.push(wire[..len].to_vec());
                assert_eq!(&wire[len..len + 2], b"\r\n");
                wire = &wire[len + 2..];
            }
            all.push(args);
        }
        all
    }

    fn answered(fx: &[Effect]) -> Vec<Instant> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Answered { sent } => Some(*sent),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn set_then_get_of_the_same_key_with_the_value_set() {
        let shape = KvShape::new(&load(64, 1, 1000)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, 7, t0);
        assert!(c.wants_permit());
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        assert!(!c.wants_permit(), "one at a time");
        assert!(c.owes_answer());
        let set = commands(&written(&mut c, t0));
        assert_eq!(set.len(), 1);
        assert_eq!(set[0][..2], [b"SET".to_vec(), b"key:7:0".to_vec()]);
        let value = set[0][2].clone();
        assert_eq!(value.len(), 64);
        let fx = effects(|fx| c.handle_input(Link::Main, OK, t0, fx));
        assert_eq!(fx, [Effect::Answered { sent: t0 }, Effect::Received(5)]);
        assert!(!c.owes_answer());

        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let get = commands(&written(&mut c, t0));
        assert_eq!(get, [[b"GET".to_vec(), b"key:7:0".to_vec()]]);
        // The reply, one byte at a time.
        let reply = bulk(&value);
        let mut fx = Vec::new();
        for b in &reply {
            fx.extend(effects(|f| c.handle_input(Link::Main, &[*b], t0, f)));
        }
        assert_eq!(answered(&fx), [t0]);
        assert!(!fx.iter().any(|e| matches!(e, Effect::Failed(_))), "{fx:?}");

        // The next SET is of the next key, with other bytes.
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let next = commands(&written(&mut c, t0));
        assert_eq!(next[0][1], b"key:7:1");
        assert_ne!(next[0][2], value);
    }

    #[test]
    fn keys_wrap_and_values_change_from_round_to_round() {
        let shape = KvShape::new(&load(8, 16, 3)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, 12345, t0);
        let mut all = Vec::new();
        for _ in 0..4 {
            for _ in 0..3 {
                let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            }
            all.extend(commands(&written(&mut c, t0)));
        }
        assert_eq!(all.len(), 12);
        let keys: Vec<_> = all
            .iter()
            .map(|a| String::from_utf8_lossy(&a[1]).into_owned())
            .collect();
        assert_eq!(
            keys,
            [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2].map(|k| format!("key:12345:{k}"))
        );
        assert_eq!(all[0][0], b"SET");
        assert_eq!(all[1][0], b"GET");
        assert_ne!(all[0][2], all[6][2], "key 0 set twice, with other bytes");
        // A client's values are not another client's.
        let mut other = connected(&shape, 12346, t0);
        let _ = effects(|fx| other.handle_permit(t0, t0, fx));
        assert_ne!(commands(&written(&mut other, t0))[0][2], all[0][2]);
    }

    #[test]
    fn a_pipeline_of_sixteen_counts_sixteen_verdicts_as_replies_arrive() {
        let shape = KvShape::new(&load(16 * 1024, 16, 100)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, 0, t0);
        let times: Vec<Instant> = (0..16u64)
            .map(|i| t0 + std::time::Duration::from_micros(i))
            .collect();
        for &t in &times {
            assert!(c.wants_permit());
            let _ = effects(|fx| c.handle_permit(t, t, fx));
        }
        assert!(!c.wants_permit(), "16 in flight");
        // Written in two pieces: the rest stays where it was.
        let half = c.poll_output(Link::Main).len() / 2 + 3;
        let mut wire = c.poll_output(Link::Main)[..half].to_vec();
        c.consume_output(Link::Main, half, t0);
        wire.extend(written(&mut c, t0));
        let cmds = commands(&wire);
        assert_eq!(cmds.len(), 16);
        let mut replies = Vec::new();
        for cmd in &cmds {
            if cmd[0] == b"SET" {
                replies.extend_from_slice(OK);
                assert_eq!(cmd[2].len(), 16 * 1024);
            } else {
                let set = cmds
                    .iter()
                    .rfind(|s| s[0] == b"SET" && s[1] == cmd[1])
                    .unwrap();
                replies.extend(bulk(&set[2]));
            }
        }
        // Arriving in uneven reads.
        let mut fx = Vec::new();
        for piece in replies.chunks(5000) {
            fx.extend(effects(|f| c.handle_input(Link::Main, piece, t0, f)));
        }
        assert_eq!(answered(&fx), times);
        assert!(!c.owes_answer());
        assert!(c.wants_permit());
    }

    #[test]
    fn wrong_replies_are_mismatches() {
        let shape = KvShape::new(&load(4, 2, 1000)).unwrap();
        let t0 = Instant::now();
        let value = shape.value(1, 0).to_vec();
        let mut stale = value.clone();
        stale[3] ^= 1;
        for (bad, why) in [
            (bulk(&stale), "one byte of the value differs"),
            (b"$-1\r\n".to_vec(), "a null"),
            (b"-ERR unknown command\r\n".to_vec(), "an error reply"),
            (bulk(&value[..3]), "a shorter value"),
            ([bulk(&value), b"+".to_vec()].concat(), "a reply to nothing"),
            (b"$4\r\nabcd\n\r".to_vec(), "a bad end"),
        ] {
            let mut c = connected(&shape, 1, t0);
            let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            let _ = written(&mut c, t0);
            let fx = effects(|fx| c.handle_input(Link::Main, &[OK, &bad].concat(), t0, fx));
            assert!(
                fx.contains(&Effect::Failed(ErrorKind::Mismatch)),
                "{why}: {fx:?}"
            );
            assert!(fx.contains(&Effect::Close {
                link: Link::Main,
                reset: false
            }));
            assert!(!c.wants_permit(), "{why}: the connection is given up");
            assert!(!c.owes_answer());
        }
        // A SET answered with anything but +OK.
        let mut c = connected(&shape, 1, t0);
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let fx = effects(|fx| c.handle_input(Link::Main, b"+QUEUED\r\n", t0, fx));
        assert!(fx.contains(&Effect::Failed(ErrorKind::Mismatch)));
    }

    #[test]
    fn a_close_with_replies_owed_is_counted() {
        let shape = KvShape::new(&load(4, 1, 10)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, 0, t0);
        let _ = effects(|fx| c.handle_permit(t0, t0, fx));
        let fx = effects(|fx| c.handle_eof(Link::Main, t0, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Closed));
        assert!(!c.wants_permit());
    }

    #[test]
    fn the_output_buffer_never_grows() {
        let shape = KvShape::new(&load(100, 16, 1000)).unwrap();
        let t0 = Instant::now();
        let mut c = connected(&shape, usize::MAX, t0);
        let cap = c.out.capacity();
        for round in 0..200u64 {
            while c.wants_permit() {
                let _ = effects(|fx| c.handle_permit(t0, t0, fx));
            }
            // Some of it written, the replies to some of it.
            let n = c.poll_output(Link::Main).len() / 3;
            c.consume_output(Link::Main, n, t0);
            assert_eq!(c.out.capacity(), cap, "round {round}");
            let mut replies = Vec::new();
            for n in c.answered..c.answered + 4 {
                if is_set(n) {
                    replies.extend_from_slice(OK);
                } else {
                    replies.extend(bulk(shape.value(u64::MAX, n / 2)));
                }
            }
            let fx = effects(|fx| c.handle_input(Link::Main, &replies, t0, fx));
            assert_eq!(answered(&fx).len(), 4, "{fx:?}");
        }
        let _ = written(&mut c, t0);
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 999, 1000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), out.len());
        }
    }
}
