//! Validators and conditionals for a static file (RFC 9110 §8.8, §13,
//! §14): the `Range` header, the file's `ETag`, and the checks behind 304
//! and `If-Range`. Pure functions of header bytes and file metadata; the
//! session evaluates them in RFC 9110 §13.2.2's order (`If-None-Match`,
//! else `If-Modified-Since`; then `If-Range` before `Range`).

use super::date;

/// What to send for a `Range` header (RFC 9110 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// 200 with the whole file: no usable range (absent, malformed, another
    /// unit, or several ranges).
    Full,
    /// 206 with bytes `start..=end` (`Content-Range: bytes start-end/size`).
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Reads a `Range` value (RFC 9110 §14.1.2) against a file of `size` bytes:
///
/// - `bytes=a-b`: bytes a through b; b at or past the end is clamped to the
///   last byte. `b < a` is invalid (ignored: [`RangeOutcome::Full`]).
/// - `bytes=a-`: from a to the end.
/// - `bytes=-n`: the last n bytes (the whole file if it is shorter).
///
/// `a` at or past the end (any `a-` range of an empty file) and `-0` are
/// [`RangeOutcome::Unsatisfiable`] (§14.1.1); `-n` of an empty file is
/// [`RangeOutcome::Full`] (the only satisfiable range there, and a 206
/// cannot express an empty one).
/// The unit is case-insensitive; numbers are digits only and may be huge:
/// one that overflows u64 counts as u64::MAX (so it is past any end).
/// Whatever is not this grammar — another unit, signs, spaces inside a
/// range, an empty set — is ignored as §14.2 says: [`RangeOutcome::Full`].
///
/// **Several ranges are served whole** (200 with the file, which §14.2
/// allows: a server may ignore Range). A multipart/byteranges reply costs
/// a boundary writer for a request that is rare for static files and is
/// a known amplification vector (many overlapping small ranges); empty
/// list elements (`bytes=0-1,`) do not count as ranges.
pub fn range(header: &[u8], size: u64) -> RangeOutcome {
    let Some(eq) = header.iter().position(|&b| b == b'=') else {
        return RangeOutcome::Full;
    };
    if !header[..eq].eq_ignore_ascii_case(b"bytes") {
        return RangeOutcome::Full;
    }
    let mut specs = header[eq + 1..]
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeOutcome::Full;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        // suffix-range
        let Some(n) = number(last) else {
            return RangeOutcome::Full;
        };
        if n == 0 {
            return RangeOutcome::Unsatisfiable;
        }
        if size == 0 {
            // §14.1.1: on an empty representation a non-zero suffix is
            // satisfiable and selects all of it, nothing, which no 206
            // can say: the whole (empty) file is sent, with 200.
            return RangeOutcome::Full;
        }
        return RangeOutcome::Partial {
            start: size - n.min(size),
            end: size - 1,
        };
    }
    let Some(start) = number(first) else {
        return RangeOutcome::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeOutcome::Full,
        }
    };
    if start >= size {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Partial {
        start,
        end: end.min(size - 1),
    }
}

/// 1*DIGIT, saturating at u64::MAX; `None` if empty or not all digits.
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Longest ETag [`etag`] writes: quotes, 24 hex digits of time, `-`, 16 of
/// size.
pub const ETAG_MAX: usize = 2 + 24 + 1 + 16;

/// Writes a strong ETag (RFC 9110 §8.8.3) for a file, `"<time>-<size>"`
/// in lower-case hex, where `<time>` is the modification time's seconds
/// (two's complement for times before 1970) shifted left 32 bits plus its
/// nanoseconds, and returns the part of `out` written.
///
/// Like nginx's, it is a strong tag derived from metadata: it changes
/// whenever the file's mtime or size does, which every way of writing a
/// file does, and nanoseconds make a same-second rewrite of equal size
/// visible where the filesystem records them.
pub fn etag(mtime_secs: i64, mtime_nsec: u32, size: u64, out: &mut [u8; ETAG_MAX]) -> &[u8] {
    let time = (u128::from(mtime_secs as u64) << 32) | u128::from(mtime_nsec);
    let mut len = 0;
    out[len] = b'"';
    len += 1;
    len += hex(time, &mut out[len..]);
    out[len] = b'-';
    len += 1;
    len += hex(u128::from(size), &mut out[len..]);
    out[len] = b'"';
    len += 1;
    &out[..len]
}

/// Writes `n` in lower-case hex without leading zeros; returns the length.
fn hex(n: u128, out: &mut [u8]) -> usize {
    let digits = (128 - n.leading_zeros() as usize).div_ceil(4).max(1);
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let d = (n >> (4 * (digits - 1 - i))) as u8 & 0xf;
        *slot = b"0123456789abcdef"[usize::from(d)];
    }
    digits
}

/// One entity-tag (RFC 9110 §8.8.3): `[W/] DQUOTE *etagc DQUOTE` at the
/// front of `s`: (weak, the quoted opaque-tag, the rest).
fn entity_tag(s: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.first() != Some(&b'"') {
        return None;
    }
    let close = 1 + s[1..].iter().position(|&b| b == b'"')?;
    let opaque = &s[..=close];
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    if !opaque[1..close].iter().all(|&b| etagc(b)) {
        return None;
    }
    Some((weak, opaque, &s[close + 1..]))
}

/// The elements of an entity-tag list (`1#entity-tag`), each as
/// (weak, opaque-tag); stops with `None` at malformed input.
fn tag_list(header: &[u8]) -> impl Iterator<Item = Option<(bool, &[u8])>> {
    let mut rest = header;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        // Skip separators and the empty elements a list may have.
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return None;
        }
        let Some((weak, opaque, tail)) = entity_tag(rest) else {
            failed = true;
            return Some(None);
        };
        let tail = trim_ows(tail);
        if !(tail.is_empty() || tail.starts_with(b",")) {
            failed = true;
            return Some(None);
        }
        rest = tail;
        Some(Some((weak, opaque)))
    })
}

/// True if `If-None-Match` (RFC 9110 §13.1.2) matches the file's `etag`
/// (as written by [`etag`]): the session answers 304 to GET/HEAD. `*`
/// matches any existing file; otherwise it matches if any listed tag is
/// equal to ours by the *weak* comparison (§8.8.3.2: `W/` ignored on both
/// sides), as §13.1.2 requires. A malformed list matches nothing: the
/// condition is then ignored and the file is sent, which is always safe.
pub fn if_none_match_matches(header: &[u8], etag: &[u8]) -> bool {
    let header = trim_ows(header);
    if header == b"*" {
        return true;
    }
    let own = etag.strip_prefix(b"W/").unwrap_or(etag);
    for tag in tag_list(header) {
        match tag {
            Some((_, opaque)) if opaque == own => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// True if `If-Range` (RFC 9110 §13.1.5) lets the `Range` be honoured;
/// false means send the whole file with 200.
///
/// - An entity-tag must match our `etag` by the *strong* comparison: both
///   not weak and equal, so a weak tag (`W/"..."`) never matches.
/// - Otherwise it must be an HTTP-date exactly equal to the file's
///   `Last-Modified` (`last_modified_secs`). §13.1.5 also asks that such a
///   date be a strong validator (at least a second older than the
///   response's `Date`); equality of a one-second date is the check the
///   common servers make and is what we make.
/// - Anything else (malformed, a list) does not match.
pub fn if_range_allows(header: &[u8], etag: &[u8], last_modified_secs: u64) -> bool {
    let header = trim_ows(header);
    if header.starts_with(b"\"") || header.starts_with(b"W/") {
        return match entity_tag(header) {
            Some((false, opaque, b"")) => !etag.starts_with(b"W/") && opaque == etag,
            _ => false,
        };
    }
    date::parse(header) == Some(last_modified_secs)
}

/// True if `If-Modified-Since` (RFC 9110 §13.1.3) says the client's copy
/// is current: the header is a valid HTTP-date and the file was last
/// modified at or before it. The session answers 304 to GET/HEAD, and
/// only when the request has no `If-None-Match` (§13.1.3 ¶6). An
/// unparsable date is false (the condition is ignored: §13.1.3 ¶5).
pub fn not_modified_since(header: &[u8], last_modified_secs: u64) -> bool {
    date::parse(trim_ows(header)).is_some_and(|since| last_modified_secs <= since)
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::{Full, Partial, Unsatisfiable};
    use super::*;

    fn p(start: u64, end: u64) -> RangeOutcome {
        Partial { start, end }
    }

    #[test]
    fn single_ranges() {
        let cases: &[(&str, u64, RangeOutcome)] = &[
            ("bytes=0-0", 100, p(0, 0)),
            ("bytes=0-99", 100, p(0, 99)),
            ("bytes=0-100", 100, p(0, 99)),
            ("bytes=10-20", 100, p(10, 20)),
            ("bytes=99-99", 100, p(99, 99)),
            ("bytes=50-", 100, p(50, 99)),
            ("bytes=0-", 100, p(0, 99)),
            ("bytes=-1", 100, p(99, 99)),
            ("bytes=-10", 100, p(90, 99)),
            ("bytes=-100", 100, p(0, 99)),
            ("bytes=-500", 100, p(0, 99)),
            ("BYTES=1-2", 100, p(1, 2)),
            ("Bytes=007-010", 100, p(7, 10)),
            ("bytes= 1-2 ", 100, p(1, 2)),
            ("bytes=1-2,", 100, p(1, 2)),
            ("bytes=, ,1-2", 100, p(1, 2)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=1000-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=-000", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Full),
            ("bytes=-0", 0, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=0-0", 1, p(0, 0)),
        ];
        for &(header, size, want) in cases {
            assert_eq!(range(header.as_bytes(), size), want, "{header} of {size}");
        }
    }

    #[test]
    fn ignored_ranges_serve_the_whole_file() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=5-4",
            "bytes=1--2",
            "bytes=-1-2",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=1 -2",
            "bytes=1- 2",
            "bytes=0x1-2",
            "bytes =1-2",
            " bytes=1-2",
            "items=0-1",
            "bytes=1-2;x",
            "bytes=\u{661}-2",
            // Several ranges: whole file, by choice.
            "bytes=0-1,2-3",
            "bytes=0-0,-1",
            "bytes=0-1, 100-200",
            "bytes=1000-,2000-",
        ] {
            assert_eq!(range(header.as_bytes(), 100), Full, "{header:?}");
        }
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let huge = "99999999999999999999999999999999";
        let max = u64::MAX;
        assert_eq!(
            range(format!("bytes={huge}-").as_bytes(), max),
            Unsatisfiable
        );
        assert_eq!(range(format!("bytes=0-{huge}").as_bytes(), 10), p(0, 9));
        assert_eq!(range(format!("bytes=-{huge}").as_bytes(), 10), p(0, 9));
        assert_eq!(
            range(format!("bytes=5-{huge}").as_bytes(), max),
            p(5, max - 1)
        );
        assert_eq!(
            range(b"bytes=18446744073709551614-", max),
            p(max - 1, max - 1)
        );
        assert_eq!(range(b"bytes=-18446744073709551615", max), p(0, max - 1));
        assert_eq!(range(b"bytes=-1", max), p(max - 1, max - 1));
    }

    fn tag(secs: i64, nsec: u32, size: u64) -> Vec<u8> {
        let mut out = [0; ETAG_MAX];
        etag(secs, nsec, size, &mut out).to_vec()
    }

    #[test]
    fn etags() {
        assert_eq!(tag(0, 0, 0), b"\"0-0\"");
        assert_eq!(tag(1, 0, 255), b"\"100000000-ff\"");
        assert_eq!(tag(0x6543_2100, 0x1f, 0x1000), b"\"654321000000001f-1000\"");
        // The longest one fits exactly.
        let longest = tag(-1, 999_999_999, u64::MAX);
        assert_eq!(longest.len(), ETAG_MAX);
        assert_eq!(longest, b"\"ffffffffffffffff3b9ac9ff-ffffffffffffffff\"");
        // Every change of metadata changes the tag.
        let base = tag(1_700_000_000, 5, 42);
        for other in [
            tag(1_700_000_001, 5, 42),
            tag(1_700_000_000, 6, 42),
            tag(1_700_000_000, 5, 43),
            tag(-1_700_000_000, 5, 42),
        ] {
            assert_ne!(base, other);
        }
        // Well-formed, strong, quoted.
        let (weak, opaque, rest) = entity_tag(&base).unwrap();
        assert!(!weak && rest.is_empty() && opaque == base);
    }

    #[test]
    fn if_none_match() {
        let own = b"\"abc-1\"";
        let cases: &[(&str, bool)] = &[
            ("*", true),
            (" * ", true),
            ("\"abc-1\"", true),
            ("W/\"abc-1\"", true),
            ("\"x\", \"abc-1\"", true),
            ("\"x\",W/\"abc-1\" , \"y\"", true),
            (",, \"abc-1\",", true),
            ("\"a,b\", \"abc-1\"", true),
            ("\"abc-2\"", false),
            ("\"ABC-1\"", false),
            ("abc-1", false),
            ("\"abc-1", false),
            ("w/\"abc-1\"", false),
            ("\"x\" \"abc-1\"", false),
            ("garbage, \"abc-1\"", false),
            ("\"\"", false),
            ("", false),
            ("**", false),
            ("\"a\"b, \"abc-1\"", false),
        ];
        for &(header, want) in cases {
            assert_eq!(
                if_none_match_matches(header.as_bytes(), own),
                want,
                "{header}"
            );
        }
        // Weak comparison also when our own tag were weak.
        assert!(if_none_match_matches(b"\"abc-1\"", b"W/\"abc-1\""));
    }

    #[test]
    fn if_range() {
        let own = b"\"abc-1\"";
        let lm = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let cases: &[(&str, bool)] = &[
            ("\"abc-1\"", true),
            (" \"abc-1\" ", true),
            ("W/\"abc-1\"", false),
            ("\"abc-2\"", false),
            ("\"abc-1\", \"x\"", false),
            ("\"abc-1", false),
            ("Sun, 06 Nov 1994 08:49:37 GMT", true),
            ("Sunday, 06-Nov-94 08:49:37 GMT", true),
            ("Sun Nov  6 08:49:37 1994", true),
            ("Sun, 06 Nov 1994 08:49:38 GMT", false),
            ("Sun, 06 Nov 1994 08:49:36 GMT", false),
            ("yesterday", false),
            ("", false),
        ];
        for &(header, want) in cases {
            assert_eq!(
                if_range_allows(header.as_bytes(), own, lm),
                want,
                "{header}"
            );
        }
        // A weak tag of ours never matches strongly.
        assert!(!if_range_allows(b"W/\"abc-1\"", b"W/\"abc-1\"", lm));
        assert!(!if_range_allows(b"\"abc-1\"", b"W/\"abc-1\"", lm));
    }

    #[test]
    fn if_modified_since() {
        let lm = 784_111_777;
        assert!(not_modified_since(b"Sun, 06 Nov 1994 08:49:37 GMT", lm));
        assert!(not_modified_since(b"Sun, 06 Nov 1994 08:49:38 GMT", lm));
        assert!(not_modified_since(b" Sun, 06 Nov 1994 08:49:37 GMT ", lm));
        assert!(not_modified_since(b"Sun Nov  6 08:49:37 1994", lm));
        assert!(not_modified_since(b"Thu, 01 Jan 2099 00:00:00 GMT", lm));
        assert!(!not_modified_since(b"Sun, 06 Nov 1994 08:49:36 GMT", lm));
        assert!(!not_modified_since(b"Thu, 01 Jan 1970 00:00:00 GMT", lm));
        assert!(!not_modified_since(b"not a date", lm));
        assert!(!not_modified_since(b"", lm));
        assert!(!not_modified_since(b"Sun, 31 Feb 1994 08:49:37 GMT", lm));
    }
}
