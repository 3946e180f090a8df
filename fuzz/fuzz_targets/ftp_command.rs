//! Fuzzes the FTP control connection's wire format: `LineReader` and `parse`.
//!
//! The first byte seeds the chunk sizes, the rest is what a client sent.
//! The input is read whole and again in pseudo-random chunks of 1..=64
//! bytes: both must yield the same lines, no line may exceed `MAX_LINE`,
//! and once drained the reader may hold at most `MAX_LINE` bytes. Every
//! line is parsed and every argument tried as PORT, EPRT and EPSV, and the
//! input is written as reply and listing text, which must stay one line.
#![no_main]

use std::time::UNIX_EPOCH;

use libfuzzer_sys::fuzz_target;
use muse::protocols::ftp::wire::{self, Line, LineError, LineReader, ListEntry, MAX_LINE};

/// Pushes `input` in chunks of `next_size()` bytes, draining after each.
fn read(input: &[u8], mut next_size: impl FnMut() -> usize) -> Vec<Result<Line, LineError>> {
    let mut reader = LineReader::new();
    let mut events = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(next_size().clamp(1, rest.len()));
        rest = tail;
        reader.push(piece);
        while let Some(event) = reader.next_line() {
            events.push(event);
        }
        assert!(reader.buffered() <= MAX_LINE, "{}", reader.buffered());
    }
    events
}

/// `out` is exactly one CRLF-terminated line.
fn one_line(out: &[u8]) {
    assert!(out.ends_with(b"\r\n"), "{out:?}");
    let body = &out[..out.len() - 2];
    assert!(!body.contains(&b'\r') && !body.contains(&b'\n'), "{out:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };

    let whole = read(input, || input.len());
    // xorshift32; `| 1` keeps the state nonzero.
    let mut state = u32::from(seed) << 8 | 1;
    let chunked = read(input, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state % 64) as usize
    });
    assert_eq!(whole, chunked);

    for event in &whole {
        let Ok(line) = event else { continue };
        assert!(line.bytes.len() <= MAX_LINE);
        let Ok(command) = wire::parse(&line.bytes) else {
            continue;
        };
        assert!(!command.verb.name().is_empty());
        if let Some(arg) = command.arg {
            assert!(!arg.is_empty());
            if let Ok(addr) = wire::parse_port(arg) {
                // What PASV would say for it reads back the same.
                let text = wire::format_pasv(addr);
                let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
                assert_eq!(wire::parse_port(inner.as_bytes()), Ok(addr));
            }
            let _ = wire::parse_eprt(arg);
            let _ = wire::parse_epsv_arg(Some(arg));
        }
    }

    // Client text echoed into replies or listings can never add a line.
    let text = String::from_utf8_lossy(input);
    let mut out = Vec::new();
    wire::reply(&mut out, 550, &text);
    one_line(&out);
    let entry = ListEntry {
        name: &text,
        is_dir: seed & 1 != 0,
        is_symlink: seed & 2 != 0,
        size: u64::from(seed) << 40,
        modified: UNIX_EPOCH + std::time::Duration::from_secs(u64::from(seed) << 24),
        mode: u32::from(seed) * 0o101,
        nlink: 1,
        uid: 0,
        gid: 0,
    };
    out.clear();
    wire::list_line(&mut out, &entry, UNIX_EPOCH);
    one_line(&out);
    out.clear();
    wire::mlsx_facts(&mut out, &entry, "r", &text);
    one_line(&out);
});
