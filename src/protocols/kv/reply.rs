//! Writing replies in RESP2 or RESP3 (after `HELLO 3`), and Redis's own
//! wording for the errors every command shares.
//!
//! A command writes through [`Reply`] and never chooses the protocol
//! version itself: `map`, `set`, `double`, `null` and `boolean` come out
//! as RESP3 types or as their RESP2 equivalents (a flat array, a bulk
//! string, `$-1`, an integer), as Redis writes them.

/// `-WRONGTYPE ...`: the key holds another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// An argument that must be an integer is not, or does not fit in 64 bits.
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// An argument that must be a float is not.
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
/// The arguments do not match the command's syntax.
pub const SYNTAX: &str = "ERR syntax error";
/// INCR and friends past the 64-bit range.
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
/// RENAME and friends on a missing key.
pub const NO_SUCH_KEY: &str = "ERR no such key";
/// LSET and friends past the end.
pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
/// A value would pass the 512 MB a Redis string may hold.
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
/// SELECT, MOVE to a database that does not exist.
pub const DB_OUT_OF_RANGE: &str = "ERR DB index is out of range";

/// The longest string value (Redis's `proto-max-bulk-len` default, 512 MB).
pub const MAX_STRING: usize = 512 * 1024 * 1024;

/// A reply writer over a connection's output buffer.
pub struct Reply<'a> {
    /// Where the bytes go.
    pub out: &'a mut Vec<u8>,
    /// Whether the client asked for RESP3 (`HELLO 3`).
    pub resp3: bool,
}

impl<'a> Reply<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>, resp3: bool) -> Reply<'a> {
        Reply { out, resp3 }
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string (`+PONG`). Must not contain CR or LF.
    pub fn simple(&mut self, s: &[u8]) {
        self.out.push(b'+');
        self.out.extend_from_slice(s);
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error. `msg` starts with its code (`ERR ...`, `WRONGTYPE ...`);
    /// CR and LF in it become spaces, as Redis does.
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        self.out.extend(
            msg.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer.
    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    /// A bulk string.
    pub fn bulk(&mut self, s: &[u8]) {
        self.header(b'$', s.len() as i64);
        self.out.extend_from_slice(s);
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer written as a bulk string (`INCRBYFLOAT`'s answer shape,
    /// `CONFIG GET` values).
    pub fn bulk_int(&mut self, n: i64) {
        let mut buf = itoa_buf();
        let s = fmt_i64(&mut buf, n);
        self.bulk(s);
    }

    /// Either a bulk string or the null bulk.
    pub fn bulk_or_null(&mut self, s: Option<&[u8]>) {
        match s {
            Some(s) => self.bulk(s),
            None => self.null(),
        }
    }

    /// The null bulk string (`$-1`; RESP3 `_`).
    pub fn null(&mut self) {
        if self.resp3 {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"$-1\r\n");
        }
    }

    /// The null array (`*-1`; RESP3 `_`): BLPOP's timeout, EXEC's abort.
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"*-1\r\n");
        }
    }

    /// The header of an array of `n` elements, which follow.
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// The header of a map of `n` pairs (RESP2: an array of `2n`).
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.header(b'%', n as i64);
        } else {
            self.header(b'*', 2 * n as i64);
        }
    }

    /// The header of a set of `n` elements (RESP2: an array).
    pub fn set(&mut self, n: usize) {
        if self.resp3 {
            self.header(b'~', n as i64);
        } else {
            self.header(b'*', n as i64);
        }
    }

    /// A double (RESP2: a bulk string). Written as Redis does: integers
    /// without a fraction, `inf`/`-inf`, otherwise the shortest form that
    /// reads back the same.
    pub fn double(&mut self, d: f64) {
        let s = format_double(d);
        if self.resp3 {
            self.out.push(b',');
            self.out.extend_from_slice(s.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s.as_bytes());
        }
    }

    /// A boolean (RESP2: the integer 1 or 0).
    pub fn boolean(&mut self, b: bool) {
        if self.resp3 {
            self.out
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(i64::from(b));
        }
    }

    /// A verbatim text string (RESP3 `=`, RESP2 a bulk string): `INFO`.
    pub fn verbatim(&mut self, s: &[u8]) {
        if self.resp3 {
            self.header(b'=', s.len() as i64 + 4);
            self.out.extend_from_slice(b"txt:");
            self.out.extend_from_slice(s);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s);
        }
    }

    /// A sequence of bulk strings as an array.
    pub fn bulks<'b>(&mut self, items: impl ExactSizeIterator<Item = &'b [u8]>) {
        self.array(items.len());
        for item in items {
            self.bulk(item);
        }
    }

    /// `wrong number of arguments for 'NAME' command` (the name as the
    /// client sent it, lowercased, as Redis writes it).
    pub fn wrong_arity(&mut self, name: &[u8]) {
        let name = String::from_utf8_lossy(name).to_lowercase();
        self.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }

    fn header(&mut self, kind: u8, n: i64) {
        self.out.push(kind);
        let mut buf = itoa_buf();
        self.out.extend_from_slice(fmt_i64(&mut buf, n));
        self.out.extend_from_slice(b"\r\n");
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Formats `n` in decimal into `buf` without allocating.
pub fn fmt_i64(buf: &mut [u8; 20], n: i64) -> &[u8] {
    let mut v = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// A double as Redis prints it (`INCRBYFLOAT`, RESP3 doubles): `inf`,
/// `-inf`, `nan`, an integer without `.0`, otherwise the shortest
/// round-trip form (Rust's `Display` never uses an exponent, so large and
/// tiny values are written out in full, as `%.17Lg` would not; both read
/// back the same).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else if d == d.trunc() && d.abs() < 1e17 {
        (d as i64).to_string()
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: impl Fn(&mut Reply<'_>)) -> (String, String) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        f(&mut Reply::new(&mut a, false));
        f(&mut Reply::new(&mut b, true));
        (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap())
    }

    #[test]
    fn types_come_out_in_either_protocol() {
        assert_eq!(both(|r| r.null()), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|r| r.null_array()), ("*-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(|r| r.map(2)), ("*4\r\n".into(), "%2\r\n".into()));
        assert_eq!(both(|r| r.set(3)), ("*3\r\n".into(), "~3\r\n".into()));
        assert_eq!(
            both(|r| r.double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(
            both(|r| r.boolean(true)),
            (":1\r\n".into(), "#t\r\n".into())
        );
        assert_eq!(both(|r| r.int(-42)).0, ":-42\r\n");
        assert_eq!(both(|r| r.int(i64::MIN)).0, ":-9223372036854775808\r\n");
        assert_eq!(both(|r| r.bulk(b"hi")).0, "$2\r\nhi\r\n");
        assert_eq!(both(|r| r.error("ERR a\r\nb")).0, "-ERR a  b\r\n");
        assert_eq!(
            both(|r| r.wrong_arity(b"GET")).0,
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
    }

    #[test]
    fn doubles_print_as_redis_prints_them() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(10.5), "10.5");
        assert_eq!(format_double(-0.1), "-0.1");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(5.0e3), "5000");
    }
}
