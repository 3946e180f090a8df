//! Fuzzes the HTTP request head: `head_end`, `parse` and `target::decode`.
//!
//! The first byte seeds the chunk sizes, the rest is what a client sent.
//! The input is fed as a session feeds it — `head_end` on each new buffer,
//! `parse` at its first `Some` — one byte at a time and in pseudo-random
//! chunks of 1..=64 bytes, and the outcome must equal `parse` of the whole
//! input. A complete head's length is within the input and the limits; its
//! target is decoded, and a decoded path is normal and never above `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muse::protocols::http::head::{self, Parse, MAX_HEAD};
use muse::protocols::http::target::{self, Decoded};
use muse::root::VPath;

/// Feeds `input` in chunks of `next_size()` bytes.
fn fed(input: &[u8], mut next_size: impl FnMut() -> usize) -> Parse<'_> {
    let (mut len, mut scanned) = (0, 0);
    while len < input.len() {
        len = (len + next_size()).clamp(1, input.len());
        let buf = &input[..len];
        if let Some(end) = head::head_end(buf, scanned) {
            assert!(end <= len, "{end} > {len}");
            let outcome = head::parse(&buf[..end]);
            assert_ne!(outcome, Parse::Partial, "head_end said {end}");
            return outcome;
        }
        scanned = len;
    }
    Parse::Partial
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };

    let whole = head::parse(input);
    assert_eq!(fed(input, || 1), whole);
    // xorshift32; `| 1` keeps the state nonzero.
    let mut state = u32::from(seed) << 8 | 1;
    let chunked = fed(input, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state % 64) as usize
    });
    assert_eq!(chunked, whole);

    match whole {
        Parse::Complete { head, len } => {
            assert!(len <= input.len() && len <= MAX_HEAD);
            assert!(!head.target.is_empty());
            if let Ok(Decoded::Path(p)) = target::decode(head.target) {
                let s = p.path.as_str();
                assert!(s.starts_with('/'), "{s:?}");
                assert!(!s.split('/').any(|c| c == "." || c == ".."), "{s:?}");
                assert_eq!(VPath::resolve_strict(s.as_bytes()).as_ref(), Ok(&p.path));
                assert_eq!(p.reserved, p.path.is_reserved());
            }
        }
        Parse::Error(e) => {
            assert!([400, 414, 431, 501, 505].contains(&e.status()));
            assert!(!e.reason().is_empty());
        }
        Parse::Partial => assert!(input.len() <= MAX_HEAD),
    }
    // Any bytes at all may reach decode directly, too.
    let _ = target::decode(input);
});
