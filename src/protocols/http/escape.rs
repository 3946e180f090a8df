//! Escaping file names for directory listings: [`html_escape`] for text
//! and [`percent_encode_segment`] for links. Both append to a `String` the
//! caller reuses, so writing a listing allocates only as it grows.

use std::fmt::Write as _;

/// Appends `text` to `out` with the five characters that are markup in
/// HTML text or in a quoted attribute replaced by references: `&` `<` `>`
/// `"` `'`. A file name escaped this way can go between tags or inside
/// `"..."` / `'...'` and never opens an element or ends an attribute.
pub fn html_escape(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// True for the bytes left as they are in a path segment: RFC 3986 §2.3
/// unreserved (`A-Z a-z 0-9 - . _ ~`) and the sub-delims (§2.2) that mean
/// nothing in a path or in HTML: `! $ ( ) * + , ; =`, plus `@`.
///
/// Encoded although a segment may hold them: `&` and `'` (markup in an
/// HTML attribute, so the result needs no HTML escaping) and `:` (in a
/// relative link's first segment, `a:b` would read as scheme `a`).
fn is_segment_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'@'
        )
}

/// Appends `segment` (one file name) to `out` percent-encoded (RFC 3986
/// §2.1, upper-case hex) so that it is exactly one path segment of a link:
/// every byte outside the safe set of `is_segment_safe` is encoded,
/// including `%`, `?`, `#`, `/`, space, controls and every byte of a
/// non-ASCII character (UTF-8, as URLs are). The result is plain ASCII
/// without `& < > " '`, so it can go into an `href="..."` as it is, and
/// decoding it once (as [`super::target::decode`] does) gives the name
/// back.
pub fn percent_encode_segment(segment: &str, out: &mut String) {
    for &b in segment.as_bytes() {
        if is_segment_safe(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> String {
        let mut out = String::from("<");
        html_escape(s, &mut out);
        out
    }

    fn pct(s: &str) -> String {
        let mut out = String::from("/");
        percent_encode_segment(s, &mut out);
        out
    }

    #[test]
    fn html_escapes_the_five() {
        assert_eq!(html(""), "<");
        assert_eq!(html("plain name.txt"), "<plain name.txt");
        assert_eq!(
            html(r#"<script>alert('x')</script> & "q""#),
            "<&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html("&amp;"), "<&amp;amp;");
        assert_eq!(html("é<ü>"), "<é&lt;ü&gt;");
        assert_eq!(html("''"), "<&#39;&#39;");
    }

    #[test]
    fn percent_encodes_all_but_the_safe_set() {
        let cases = [
            ("", "/"),
            ("index.html", "/index.html"),
            ("a-b_c~d.e", "/a-b_c~d.e"),
            ("a b", "/a%20b"),
            ("100%", "/100%25"),
            ("what?", "/what%3F"),
            ("#1", "/%231"),
            ("a/b", "/a%2Fb"),
            ("a\\b", "/a%5Cb"),
            ("x:y", "/x%3Ay"),
            ("Tom & Jerry's", "/Tom%20%26%20Jerry%27s"),
            ("<b>\"", "/%3Cb%3E%22"),
            ("!$()*+,;=@", "/!$()*+,;=@"),
            ("é", "/%C3%A9"),
            ("\u{1f600}", "/%F0%9F%98%80"),
            ("tab\there\n", "/tab%09here%0A"),
            ("\u{7f}", "/%7F"),
        ];
        for (input, want) in cases {
            assert_eq!(pct(input), want, "{input:?}");
        }
    }

    #[test]
    fn every_byte_encodes_to_one_safe_segment() {
        let all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        let out = pct(&all);
        let body = &out[1..];
        assert!(body.is_ascii());
        for c in ['/', '?', '#', '&', '\'', '"', '<', '>', ' ', ':'] {
            assert!(!body.contains(c), "{c:?}");
        }
        // Every % starts an escape of two upper-case hex digits.
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut decoded = Vec::new();
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                assert_eq!(hex, hex.to_ascii_uppercase());
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        assert_eq!(decoded, all.as_bytes());
        // And it needs no HTML escaping.
        let mut escaped = String::new();
        html_escape(body, &mut escaped);
        assert_eq!(escaped, body);
    }
}
