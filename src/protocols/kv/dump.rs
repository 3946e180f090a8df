//! What a rewrite of the log writes for one key: the commands that, replayed
//! into an empty database, make the key again with its value and expiry.
//!
//! Per type: a string is `SET key value`; a list `RPUSH key e...`, a hash
//! `HSET key f v ...`, a set `SADD key m ...`, each split into records of at
//! most [`CHUNK_ELEMENTS`] elements (and about [`CHUNK_BYTES`] bytes) so that
//! no record is huge; then `PEXPIREAT key ms` if the key has an expiry. Each
//! record carries the key's database. Replay runs them through the same
//! command table as every other logged record.
//!
//! A [`Dump`] gathers such records in one flat buffer, cheaply, while the
//! store's lock is held (see `Engine::rewrite_step`); the rewrite thread
//! reads them back with [`Dump::each`] after unlocking and writes them to
//! the new log. The buffer's layout is private to this module: per record
//! `[u32 LE len][u8 db][u32 LE argc]` then `argc × ([u32 LE len][bytes])`,
//! the first length counting what follows it.

use super::engine::{Entry, Value};

/// The most elements (or field-value pairs) of a collection in one record.
pub const CHUNK_ELEMENTS: usize = 64;

/// A record of a collection ends once its elements pass this many bytes,
/// whatever their count (one element may be bigger on its own).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Records for a new log, in one buffer.
#[derive(Debug, Default)]
pub struct Dump {
    buf: Vec<u8>,
    records: usize,
    keys: usize,
}

impl Dump {
    /// Appends the records that make `key` (in database `db`) as `entry`
    /// holds it. An empty collection (which the engine never keeps) makes
    /// no record.
    pub fn key(&mut self, db: u8, key: &[u8], entry: &Entry) {
        self.keys += 1;
        match &entry.value {
            Value::Str(s) => self.record(db, &[b"SET", key, s]),
            Value::List(l) => self.chunked(db, b"RPUSH", key, l.iter().map(|e| [e.as_slice()])),
            Value::Hash(h) => self.chunked(
                db,
                b"HSET",
                key,
                h.iter().map(|(f, v)| [f.as_slice(), v.as_slice()]),
            ),
            Value::Set(s) => self.chunked(db, b"SADD", key, s.iter().map(|m| [m.as_slice()])),
        }
        if let Some(at) = entry.expires() {
            self.record(db, &[b"PEXPIREAT", key, at.to_string().as_bytes()]);
        }
    }

    /// `command key items...` in records of at most [`CHUNK_ELEMENTS`]
    /// items, each item being one or more arguments.
    fn chunked<'a, const N: usize>(
        &mut self,
        db: u8,
        command: &'a [u8],
        key: &'a [u8],
        items: impl Iterator<Item = [&'a [u8]; N]>,
    ) {
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + CHUNK_ELEMENTS * N);
        let mut count = 0;
        let mut bytes = 0;
        for item in items {
            if count == 0 {
                args.clear();
                args.push(command);
                args.push(key);
            }
            for a in item {
                args.push(a);
                bytes += a.len();
            }
            count += 1;
            if count == CHUNK_ELEMENTS || bytes >= CHUNK_BYTES {
                self.record(db, &args);
                count = 0;
                bytes = 0;
            }
        }
        if count > 0 {
            self.record(db, &args);
        }
    }

    /// Appends one record.
    fn record(&mut self, db: u8, args: &[&[u8]]) {
        let len = 1 + 4 + args.iter().map(|a| 4 + a.len()).sum::<usize>();
        self.buf.reserve(4 + len);
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.push(db);
        self.buf
            .extend_from_slice(&(args.len() as u32).to_le_bytes());
        for a in args {
            self.buf.extend_from_slice(&(a.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(a);
        }
        self.records += 1;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Records held.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Keys dumped into it.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Calls `f(db, args)` for each record in order, stopping at the first
    /// error.
    pub fn each<E>(&self, mut f: impl FnMut(u8, &[&[u8]]) -> Result<(), E>) -> Result<(), E> {
        let mut args: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        let u32_at = |at: usize| {
            let b = &self.buf[at..at + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        while at < self.buf.len() {
            let len = u32_at(at);
            let db = self.buf[at + 4];
            let argc = u32_at(at + 5);
            let mut p = at + 9;
            args.clear();
            for _ in 0..argc {
                let n = u32_at(p);
                args.push(&self.buf[p + 4..p + 4 + n]);
                p += 4 + n;
            }
            debug_assert_eq!(p, at + 4 + len);
            f(db, &args)?;
            at += 4 + len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet, VecDeque};

    fn records(d: &Dump) -> Vec<(u8, Vec<String>)> {
        let mut out = Vec::new();
        d.each(|db, args| {
            out.push((
                db,
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            ));
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_string_is_one_set_then_its_expiry() {
        let mut d = Dump::default();
        d.key(3, b"k", &Entry::new(Value::Str(b"v".to_vec())));
        d.key(0, b"e", &Entry::expiring(Value::Str(Vec::new()), 1234));
        assert_eq!(
            records(&d),
            vec![
                (3, vec!["SET".into(), "k".into(), "v".into()]),
                (0, vec!["SET".into(), "e".into(), "".into()]),
                (0, vec!["PEXPIREAT".into(), "e".into(), "1234".into()]),
            ]
        );
        assert_eq!((d.keys(), d.records()), (2, 3));
    }

    #[test]
    fn collections_are_chunked_in_order() {
        let list: VecDeque<Vec<u8>> = (0..130).map(|i| i.to_string().into_bytes()).collect();
        let mut d = Dump::default();
        d.key(1, b"l", &Entry::new(Value::List(list)));
        let r = records(&d);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.iter().map(|(_, a)| a.len() - 2).collect::<Vec<_>>(),
            [64, 64, 2]
        );
        let all: Vec<String> = r.iter().flat_map(|(_, a)| a[2..].to_vec()).collect();
        assert_eq!(all, (0..130).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(r
            .iter()
            .all(|(db, a)| *db == 1 && a[0] == "RPUSH" && a[1] == "l"));

        let hash: HashMap<Vec<u8>, Vec<u8>> = (0..100)
            .map(|i| (format!("f{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect();
        let mut d = Dump::default();
        d.key(0, b"h", &Entry::new(Value::Hash(hash.clone())));
        let r = records(&d);
        assert_eq!(r.len(), 2);
        let mut back = HashMap::new();
        for (_, a) in &r {
            assert_eq!(a[0], "HSET");
            assert!(a.len() - 2 <= 2 * CHUNK_ELEMENTS);
            for pair in a[2..].chunks(2) {
                back.insert(pair[0].clone().into_bytes(), pair[1].clone().into_bytes());
            }
        }
        assert_eq!(back, hash);

        let set: HashSet<Vec<u8>> = (0..64).map(|i| vec![i as u8]).collect();
        let mut d = Dump::default();
        d.key(0, b"s", &Entry::new(Value::Set(set)));
        assert_eq!(d.records(), 1);
    }

    #[test]
    fn big_elements_end_a_record_early() {
        let big = vec![b'x'; CHUNK_BYTES];
        let list: VecDeque<Vec<u8>> = [big.clone(), b"a".to_vec(), big].into();
        let mut d = Dump::default();
        d.key(0, b"l", &Entry::new(Value::List(list)));
        let r = records(&d);
        assert_eq!(
            r.iter().map(|(_, a)| a.len() - 2).collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
