//! The request target (RFC 9112 §3.2) as a path beneath the root: the one
//! place HTTP turns a URL into a [`VPath`]. It strips the query, decodes
//! percent-escapes once, and hands the result to
//! [`VPath::resolve_strict`], so HTTP's paths obey the same rules as FTP's
//! (no NUL, backslash, control characters or bad UTF-8; length limits)
//! plus HTTP's own: a `..` above the root is refused, not clamped.
//!
//! Every refusal is a [`TargetError`] and gets 400: a target we will not
//! map is a malformed request, not a missing file. (A path that maps but
//! names nothing is the session's 404.)

use crate::root::{PathError, VPath};

/// A decoded request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// `*`, the asterisk-form (RFC 9112 §3.2.4): the server as a whole,
    /// meaningful only for `OPTIONS`; any other method gets 400.
    Asterisk,
    /// A path (origin-form, or absolute-form with its host ignored).
    Path(TargetPath<'a>),
}

/// A target that names a path beneath the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPath<'a> {
    /// The normalized path (see [`decode`]).
    pub path: VPath,
    /// The decoded path ended in `/` (or in a `.`/`..` segment, which RFC
    /// 3986 §5.2.4 resolves to a directory, e.g. `/a/b/..` is `/a/`).
    /// A directory asked for without it is redirected to the `/` form, so
    /// relative links in its index resolve against it.
    pub trailing_slash: bool,
    /// A component is an upload's temporary name ([`VPath::is_reserved`]):
    /// answer 404, as if it did not exist.
    pub reserved: bool,
    /// The raw query after `?` (without the fragment), if any.
    pub query: Option<&'a [u8]>,
}

/// Why a target does not map to a path. All are 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty request target")]
    Empty,
    #[error("request target is neither a path nor an http URL")]
    Form,
    #[error("malformed percent-escape in request target")]
    BadEscape,
    #[error("request target has an encoded slash")]
    EncodedSlash,
    #[error("request target has an encoded NUL")]
    EncodedNul,
    #[error("{0}")]
    Path(PathError),
}

impl TargetError {
    /// The status code to answer with: always 400.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Decodes a raw request target (as [`super::head::Head::target`] holds it):
///
/// 1. Its form (RFC 9112 §3.2): `*` is [`Decoded::Asterisk`]; origin-form
///    starts with `/`; absolute-form `http://host[:port][/path]` (scheme
///    case-insensitive, `https` too) has its authority skipped (one site
///    is served whatever the host) and an empty path read as `/`.
///    Anything else, authority-form included, is [`TargetError::Form`].
/// 2. The fragment (`#...`, never sent by a correct client) and the query
///    (`?...`, reported raw) are cut off.
/// 3. Percent-escapes (RFC 3986 §2.1) are decoded **exactly once**, so
///    `%252e` is the literal name `%2e`, never `.`. `%` not followed by
///    two hex digits is refused. An escape that decodes to `/` (`%2F`) is
///    refused rather than joined into the path: it would make one segment
///    two (the classic `..%2f` traversal). So is `%00`. `+` stays `+`.
/// 4. The decoded bytes go to [`VPath::resolve_strict`]: repeated `/` and
///    `.` segments are dropped, `..` pops a segment, and a `..` above the
///    root is refused ([`PathError::AboveRoot`]); so are invalid UTF-8
///    (which includes overlong forms such as `%C0%AE`), control
///    characters, NUL and over-long paths or names. A backslash is an
///    ordinary byte to HTTP — not a separator, never turned into `/` —
///    and as a byte the root refuses it ([`PathError::Backslash`]), raw or
///    as `%5C`: no file served has one in its name.
///
/// Raw non-ASCII bytes (a client that sent UTF-8 unescaped) are taken as
/// they are and must be UTF-8 like decoded ones.
pub fn decode(target: &[u8]) -> Result<Decoded<'_>, TargetError> {
    let mut scratch = Vec::new();
    let mut path = VPath::root();
    Ok(match decode_into(target, &mut scratch, &mut path)? {
        Found::Asterisk => Decoded::Asterisk,
        Found::Path {
            trailing_slash,
            reserved,
            query,
        } => Decoded::Path(TargetPath {
            path,
            trailing_slash,
            reserved,
            query,
        }),
    })
}

/// What [`decode_into`] found, the path itself being in its `path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// `*`.
    Asterisk,
    /// A path, written into `path`; the fields as in [`TargetPath`].
    Path {
        trailing_slash: bool,
        reserved: bool,
        query: Option<&'a [u8]>,
    },
}

/// [`decode`] without allocating: the percent-decoded bytes go through
/// `scratch` and the path into `path`, both reused from request to request.
pub fn decode_into<'a>(
    target: &'a [u8],
    scratch: &mut Vec<u8>,
    path: &mut VPath,
) -> Result<Found<'a>, TargetError> {
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if target == b"*" {
        return Ok(Found::Asterisk);
    }
    let rest = if target.starts_with(b"/") {
        target
    } else if let Some(after) = strip_scheme(target) {
        // The authority runs to the path, query or fragment.
        let end = after
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(after.len());
        &after[end..]
    } else {
        return Err(TargetError::Form);
    };
    let rest = match rest.iter().position(|&b| b == b'#') {
        Some(i) => &rest[..i],
        None => rest,
    };
    let (raw_path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    percent_decode(raw_path, scratch)?;
    let decoded = &scratch[..];
    let last = decoded.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
    let trailing_slash = decoded.is_empty() || last.is_empty() || last == b"." || last == b"..";
    VPath::resolve_strict_into(decoded, path).map_err(TargetError::Path)?;
    let reserved = path.is_reserved();
    Ok(Found::Path {
        trailing_slash,
        reserved,
        query,
    })
}

/// The rest of an `http://` or `https://` URL after the `//`.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// Decodes `%XX` once (step 3 of [`decode`]).
fn percent_decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    out.clear();
    // Decoding never lengthens: one allocation at most, on a connection's
    // first request.
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            raw.get(i + 1).and_then(|&h| hex_value(h)),
            raw.get(i + 2).and_then(|&l| hex_value(l)),
        ) else {
            return Err(TargetError::BadEscape);
        };
        match hi << 4 | lo {
            b'/' => return Err(TargetError::EncodedSlash),
            0 => return Err(TargetError::EncodedNul),
            byte => out.push(byte),
        }
        i += 3;
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::{MAX_NAME, MAX_PATH, UPLOAD_PREFIX};

    fn path(target: &[u8]) -> TargetPath<'_> {
        match decode(target) {
            Ok(Decoded::Path(p)) => p,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(target)),
        }
    }

    #[test]
    fn origin_form() {
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("/index.html", "/index.html", false),
            ("/a/b/", "/a/b", true),
            ("//a//b", "/a/b", false),
            ("/a/./b/../c", "/a/c", false),
            ("/a/b/..", "/a", true),
            ("/a/.", "/a", true),
            ("/a/..", "/", true),
            ("/a%20b", "/a b", false),
            ("/caf%C3%A9", "/caf\u{e9}", false),
            ("/caf%c3%a9", "/caf\u{e9}", false),
            ("/caf\u{e9}", "/caf\u{e9}", false),
            ("/a+b", "/a+b", false),
            ("/%7Euser/", "/~user", true),
            ("/%2e", "/", true),
            ("/a/%2e%2e/b", "/b", false),
            ("/.../x", "/.../x", false),
            ("/.hidden", "/.hidden", false),
            ("/%252e%252e/", "/%2e%2e", true),
            ("/%25", "/%", false),
            ("/a;p=1/b", "/a;p=1/b", false),
        ];
        for &(target, want, slash) in cases {
            let p = path(target.as_bytes());
            assert_eq!(
                (p.path.as_str(), p.trailing_slash, p.reserved, p.query),
                (want, slash, false, None),
                "{target}"
            );
        }
    }

    #[test]
    fn query_and_fragment() {
        let p = path(b"/a/b?x=1&y=%2F#frag");
        assert_eq!(
            (p.path.as_str(), p.query),
            ("/a/b", Some(&b"x=1&y=%2F"[..]))
        );
        let p = path(b"/a#frag?not-a-query");
        assert_eq!((p.path.as_str(), p.query), ("/a", None));
        let p = path(b"/?");
        assert_eq!(
            (p.path.as_str(), p.query, p.trailing_slash),
            ("/", Some(&b""[..]), true)
        );
        // Escapes in the query are not the path's business.
        let p = path(b"/f?%zz%00/../..");
        assert_eq!(
            (p.path.as_str(), p.query),
            ("/f", Some(&b"%zz%00/../.."[..]))
        );
    }

    #[test]
    fn absolute_and_asterisk_forms() {
        assert_eq!(decode(b"*"), Ok(Decoded::Asterisk));
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("http://example.com/a/b?q", "/a/b", Some("q")),
            ("HTTP://Example.COM:8080/x", "/x", None),
            ("https://h/x/", "/x", None),
            ("http://h", "/", None),
            ("http://h?q=1", "/", Some("q=1")),
            ("http://h#f", "/", None),
            ("http://user@h:1/%41", "/A", None),
            ("http:///x", "/x", None),
        ];
        for &(target, want, query) in cases {
            let p = path(target.as_bytes());
            assert_eq!(p.path.as_str(), want, "{target}");
            assert_eq!(p.query, query.map(str::as_bytes), "{target}");
        }
        assert!(path(b"http://h").trailing_slash);
        // The authority is skipped, not decoded or trusted, but the path
        // after it gets every check.
        assert_eq!(
            decode(b"http://h/../etc/passwd"),
            Err(TargetError::Path(PathError::AboveRoot))
        );
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        let above = TargetError::Path(PathError::AboveRoot);
        let cases: &[(&[u8], TargetError)] = &[
            (b"/..", above.clone()),
            (b"/../etc/passwd", above.clone()),
            (b"/a/../../etc/passwd", above.clone()),
            (b"/%2e%2e/", above.clone()),
            (b"/%2E%2E/etc/passwd", above.clone()),
            (b"/.%2e/", above.clone()),
            (b"/%2e./x", above.clone()),
            (b"/a/%2e%2e/%2e%2e/x", above.clone()),
            (b"/%2E%2E%2F", TargetError::EncodedSlash),
            (b"/..%2f", TargetError::EncodedSlash),
            (b"/..%2F..%2Fetc%2Fpasswd", TargetError::EncodedSlash),
            (b"/a%2fb", TargetError::EncodedSlash),
            (b"/a/%00b", TargetError::EncodedNul),
            (b"/a%00.html", TargetError::EncodedNul),
            (b"/%c0%ae%c0%ae/", TargetError::Path(PathError::NotUtf8)),
            (b"/%c0%af", TargetError::Path(PathError::NotUtf8)),
            (b"/%e0%80%ae", TargetError::Path(PathError::NotUtf8)),
            (b"/\xff", TargetError::Path(PathError::NotUtf8)),
            (b"/%ff", TargetError::Path(PathError::NotUtf8)),
            (
                b"/..\\..\\etc\\passwd",
                TargetError::Path(PathError::Backslash),
            ),
            (b"/a\\b", TargetError::Path(PathError::Backslash)),
            (b"/%5c..%5c", TargetError::Path(PathError::Backslash)),
            (b"/a\0b", TargetError::Path(PathError::Nul)),
            (b"/a%0Ab", TargetError::Path(PathError::Control)),
            (
                b"/a%0d%0aSet-Cookie:x",
                TargetError::Path(PathError::Control),
            ),
            (b"/%7f", TargetError::Path(PathError::Control)),
            (b"/%zz", TargetError::BadEscape),
            (b"/%4", TargetError::BadEscape),
            (b"/%", TargetError::BadEscape),
            (b"/%4g", TargetError::BadEscape),
            (b"/%%41", TargetError::BadEscape),
            (b"", TargetError::Empty),
            (b"a/b", TargetError::Form),
            (b"../etc/passwd", TargetError::Form),
            (b"example.com:443", TargetError::Form),
            (b"ftp://h/x", TargetError::Form),
            (b"**", TargetError::Form),
            (b"?q", TargetError::Form),
            (b"\\etc\\passwd", TargetError::Form),
        ];
        for (target, want) in cases {
            assert_eq!(
                decode(target),
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(target)
            );
            assert_eq!(want.status(), 400);
        }
    }

    #[test]
    fn reserved_names_are_reported() {
        for target in [
            format!("/{UPLOAD_PREFIX}abc"),
            format!("/d/{UPLOAD_PREFIX}abc/f"),
            format!("/%2E{}abc", &UPLOAD_PREFIX[1..]),
        ] {
            assert!(path(target.as_bytes()).reserved, "{target}");
        }
        assert!(!path(b"/.muse-uploads").reserved);
    }

    #[test]
    fn long_targets() {
        let name = "n".repeat(MAX_NAME);
        assert_eq!(
            path(format!("/{name}").as_bytes()).path.as_str().len(),
            MAX_NAME + 1
        );
        assert_eq!(
            decode(format!("/{name}n").as_bytes()),
            Err(TargetError::Path(PathError::NameTooLong))
        );
        // Three bytes of escape per decoded byte: the decoded length counts.
        let escaped = "%61".repeat(MAX_NAME);
        assert_eq!(
            path(format!("/{escaped}").as_bytes()).path.as_str(),
            format!("/{}", "a".repeat(MAX_NAME))
        );
        let deep = "/a".repeat(MAX_PATH / 2 + 1);
        assert_eq!(
            decode(deep.as_bytes()),
            Err(TargetError::Path(PathError::TooLong))
        );
        let huge = vec![b'/'; 1 << 20];
        assert_eq!(decode(&huge), Err(TargetError::Path(PathError::TooLong)));
    }

    /// Whatever the bytes, decode refuses them or yields a path that root
    /// considers normal and that is its own decoding (a fixed point once
    /// re-encoded, since decode never decodes twice).
    #[test]
    fn random_targets_never_escape() {
        let alphabet = b"/./../%2e%2E%2f%25%00%c0%ae\\a?#\xffzZ09";
        let mut state = 0x0bad_5eed_u32;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = 1 + (state % 24) as usize;
            let mut t = vec![b'/'];
            let mut s = state;
            for _ in 0..len {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                t.push(alphabet[(s >> 16) as usize % alphabet.len()]);
            }
            if let Ok(Decoded::Path(p)) = decode(&t) {
                let s = p.path.as_str();
                assert!(s.starts_with('/'));
                assert!(!s.split('/').any(|c| c == "." || c == ".."), "{s:?}");
                assert_eq!(VPath::resolve_strict(s.as_bytes()).as_ref(), Ok(&p.path));
            }
        }
    }
}
