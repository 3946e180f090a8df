//! The echo stream client: bulk writes of `chunk` bytes, as fast as the
//! server takes them, with at most a window of unacknowledged bytes, and
//! the echo checked as it comes back. A "request" is one chunk echoed in
//! full; its latency is the chunk's round trip. It takes no permits: a
//! stream has no requests to schedule.
//!
//! Each chunk starts with its index ([`STAMP`] bytes, mixed with the
//! client's id), so dropped, repeated or reordered chunks are caught even
//! where the rest of the pattern would line up.

use std::time::Instant;

use super::{Effects, ErrorKind, Link, LoadClient};

/// Bytes of a chunk's stamp.
pub const STAMP: usize = 8;

/// Unacknowledged bytes per connection at most (rounded to chunks, at least
/// [`STREAM_MIN_CHUNKS`]), so memory and queues stay bounded.
const STREAM_WINDOW_BYTES: usize = 256 * 1024;
const STREAM_MIN_CHUNKS: usize = 4;

/// What every stream client of a run does.
#[derive(Debug)]
pub struct StreamShape {
    /// Bytes per chunk.
    pub chunk: usize,
    /// Chunks unacknowledged at most.
    pub window: usize,
}

impl StreamShape {
    /// The shape for `chunk`-byte writes (`chunk` > 0).
    pub fn new(chunk: usize) -> StreamShape {
        StreamShape {
            chunk,
            window: (STREAM_WINDOW_BYTES / chunk.max(1)).max(STREAM_MIN_CHUNKS),
        }
    }
}

/// One streaming client.
pub struct StreamClient<'a> {
    shape: &'a StreamShape,
    id: usize,
    open: bool,
    /// One chunk: the pattern, with the current chunk's stamp in front.
    out: Box<[u8]>,
    /// When each chunk in flight started going out, by chunk index.
    times: Box<[Instant]>,
    /// Bytes written and bytes echoed back and checked.
    sent: u64,
    echoed: u64,
}

impl<'a> StreamClient<'a> {
    /// Client `id` of `shape`.
    pub fn new(shape: &'a StreamShape, id: usize, now: Instant) -> StreamClient<'a> {
        let mut c = StreamClient {
            shape,
            id,
            open: false,
            out: (0..shape.chunk)
                .map(|i| ((i * 7 + id * 13 + 1) % 251) as u8)
                .collect(),
            // A window's worth of chunks can straddle one more chunk.
            times: vec![now; shape.window + 1].into_boxed_slice(),
            sent: 0,
            echoed: 0,
        };
        c.stamp_out(0);
        c
    }

    /// The stamp of chunk `index`.
    fn stamp(&self, index: u64) -> [u8; STAMP] {
        (index ^ ((self.id as u64) << 40)).to_le_bytes()
    }

    /// Puts chunk `index`'s stamp in front of `out` (the previous chunk is
    /// wholly written by then).
    fn stamp_out(&mut self, index: u64) {
        let stamp = self.stamp(index);
        let k = STAMP.min(self.shape.chunk);
        self.out[..k].copy_from_slice(&stamp[..k]);
    }

    /// Checks echoed bytes against what was sent at their position.
    fn check(&mut self, data: &[u8], fx: &mut Effects) -> Result<(), ()> {
        let chunk = self.shape.chunk;
        if data.len() as u64 > self.sent - self.echoed {
            return Err(());
        }
        let stamped = STAMP.min(chunk);
        let mut rest = data;
        while !rest.is_empty() {
            let index = self.echoed / chunk as u64;
            let off = (self.echoed % chunk as u64) as usize;
            let take = rest.len().min(chunk - off);
            let piece = &rest[..take];
            let mut k = 0;
            if off < stamped {
                let stamp = self.stamp(index);
                k = (stamped - off).min(take);
                if piece[..k] != stamp[off..off + k] {
                    return Err(());
                }
            }
            // Past the stamp, `out` holds the pattern every chunk shares.
            if piece[k..] != self.out[off + k..off + take] {
                return Err(());
            }
            rest = &rest[take..];
            self.echoed += take as u64;
            if off + take == chunk {
                fx.answered(self.times[(index % self.times.len() as u64) as usize]);
            }
        }
        Ok(())
    }

    fn fail(&mut self, fx: &mut Effects) {
        fx.close(Link::Main, false);
        self.open = false;
    }
}

impl LoadClient for StreamClient<'_> {
    fn handle_start(&mut self, _now: Instant, fx: &mut Effects) {
        fx.open(Link::Main, None, true);
    }

    fn handle_permit(&mut self, _sent: Instant, _now: Instant, _fx: &mut Effects) {}

    fn handle_connected(&mut self, _link: Link, _now: Instant, _fx: &mut Effects) {
        self.open = true;
    }

    fn handle_input(&mut self, _link: Link, data: &[u8], _now: Instant, fx: &mut Effects) {
        if !self.open {
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
        if self.open {
            fx.failed(ErrorKind::Closed);
            self.fail(fx);
        }
    }

    fn handle_failure(&mut self, _link: Link, _kind: ErrorKind, _now: Instant, fx: &mut Effects) {
        self.fail(fx);
    }

    fn poll_output(&self, _link: Link) -> &[u8] {
        let chunk = self.shape.chunk;
        let limit = (self.shape.window * chunk) as u64;
        let unacked = self.sent - self.echoed;
        if !self.open || unacked >= limit {
            return &[];
        }
        let off = (self.sent % chunk as u64) as usize;
        let end = chunk.min(off + (limit - unacked) as usize);
        &self.out[off..end]
    }

    fn consume_output(&mut self, _link: Link, n: usize, now: Instant) {
        let chunk = self.shape.chunk as u64;
        if n > 0 && self.sent.is_multiple_of(chunk) {
            let index = self.sent / chunk;
            let slot = (index % self.times.len() as u64) as usize;
            self.times[slot] = now;
        }
        self.sent += n as u64;
        if n > 0 && self.sent.is_multiple_of(chunk) {
            self.stamp_out(self.sent / chunk);
        }
    }

    fn wants_permit(&self) -> bool {
        false
    }

    fn owes_answer(&self) -> bool {
        self.open && self.sent > self.echoed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::testing::effects;
    use crate::bench::client::Effect;

    #[test]
    fn chunks_echoed_in_odd_pieces_are_answered_and_a_swap_is_caught() {
        let shape = StreamShape::new(20);
        let t0 = Instant::now();
        let mut c = StreamClient::new(&shape, 3, t0);
        let _ = effects(|fx| c.handle_connected(Link::Main, t0, fx));
        let mut written = Vec::new();
        for _ in 0..3 {
            let out = c.poll_output(Link::Main).to_vec();
            written.extend_from_slice(&out);
            c.consume_output(Link::Main, out.len(), t0);
        }
        assert_eq!(written.len(), 60);
        let mut answered = 0;
        for piece in written.chunks(7) {
            for e in effects(|fx| c.handle_input(Link::Main, piece, t0, fx)) {
                answered += usize::from(matches!(e, Effect::Answered { .. }));
                assert!(!matches!(e, Effect::Failed(_)), "{e:?}");
            }
        }
        assert_eq!(answered, 3);
        // Two chunks echoed in the wrong order.
        let mut a = Vec::new();
        for _ in 0..2 {
            let out = c.poll_output(Link::Main).to_vec();
            a.extend_from_slice(&out);
            c.consume_output(Link::Main, out.len(), t0);
        }
        a.rotate_left(20);
        let fx = effects(|fx| c.handle_input(Link::Main, &a, t0, fx));
        assert_eq!(fx[0], Effect::Failed(ErrorKind::Mismatch));
    }
}
