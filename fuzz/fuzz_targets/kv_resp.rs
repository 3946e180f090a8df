//! Fuzzes the kv request parser: `resp::Parser`.
//!
//! The first byte seeds the chunk sizes, the rest is what a client sent.
//! The input is fed as a session feeds it — parse the buffer, drop
//! `consumed` bytes after each command, read more on `Incomplete` — whole,
//! one byte at a time, and in pseudo-random chunks of 1..=64 bytes; the
//! commands, skips and error must be the same every way. `consumed` never
//! exceeds the buffer and is never zero, every argument is readable, and
//! an inline argument's bytes never exceed its line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muse::protocols::kv::resp::{self, Parsed, Parser, ProtocolError, MAX_INLINE};

/// What the session saw for one command.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Command(Vec<Vec<u8>>),
    Empty,
    Error(ProtocolError),
}

/// Feeds `input` in chunks of `next_size()` bytes; returns the events and
/// how many bytes were left unparsed (none counted after an error, which
/// ends the feeding wherever the chunks happened to end).
fn fed(input: &[u8], mut next_size: impl FnMut() -> usize) -> (Vec<Event>, usize) {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut arrived = 0;
    while arrived < input.len() {
        let end = (arrived + next_size()).clamp(1, input.len());
        buf.extend_from_slice(&input[arrived..end]);
        arrived = end;
        loop {
            match parser.parse(&buf) {
                Ok(Parsed::Incomplete) => {
                    if let Some(more) = parser.bulk_hint() {
                        assert!(more <= resp::MAX_BULK + 2);
                    }
                    break;
                }
                Ok(Parsed::Command { consumed }) => {
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "{consumed} of {}",
                        buf.len()
                    );
                    assert!(!parser.is_empty());
                    let args: Vec<Vec<u8>> = parser.args(&buf).map(<[u8]>::to_vec).collect();
                    assert_eq!(args.len(), parser.len());
                    if buf[0] != b'*' {
                        let total: usize = args.iter().map(Vec::len).sum();
                        assert!(total <= consumed && consumed <= MAX_INLINE + 1);
                    }
                    events.push(Event::Command(args));
                    buf.drain(..consumed);
                }
                Ok(Parsed::Empty { consumed }) => {
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "{consumed} of {}",
                        buf.len()
                    );
                    events.push(Event::Empty);
                    buf.drain(..consumed);
                }
                Err(e) => {
                    assert_eq!(parser.parse(&buf), Err(e));
                    assert!(e.message().starts_with("Protocol error: "));
                    events.push(Event::Error(e));
                    return (events, 0);
                }
            }
        }
    }
    (events, buf.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };

    let whole = fed(input, || input.len());
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

    // Every command read back re-encodes to a stream that parses the same.
    let mut again = Vec::new();
    let mut commands = Vec::new();
    for event in &whole.0 {
        if let Event::Command(args) = event {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            resp::encode_command(&mut again, &refs);
            commands.push(Event::Command(args.clone()));
        }
    }
    assert_eq!(fed(&again, || again.len()), (commands, 0));
});
