//! The deadlines of an event loop's connections: a binary min-heap with at
//! most one entry per connection slot, and each slot's place in it, so that
//! a connection that ends takes its deadline with it.
//!
//! The heap holds live connections only. A heap of (instant, slot,
//! generation) that leaves a closed connection's entry to expire would hold
//! one entry per connection accepted during the last timeout: at 40,000
//! connections a second and a 20 s header timeout, 800,000 entries
//! (25 MiB) on a loop serving fifty, every push and pop walking cold pages.
//! Here the count is bounded by the loop's connections, and filing,
//! moving and cancelling cost O(log n) in them.
//!
//! A deadline moved later is not moved in the heap: it fires early, the
//! connection, which checks its own deadline, finds nothing due, and the
//! driver files the later one. That keeps the keep-alive path, where every
//! request moves the idle deadline later, to one comparison.

use std::time::Instant;

/// No place in the heap.
const NONE: u32 = u32::MAX;

/// Deadlines by connection slot.
#[derive(Debug, Default)]
pub struct Timers {
    /// The min-heap of (deadline, slot).
    heap: Vec<(Instant, usize)>,
    /// Each slot's index in `heap`, or `NONE`.
    place: Vec<u32>,
}

impl Timers {
    /// Files deadline `at` for the connection in `slot`, unless it already
    /// has one as early.
    pub fn file(&mut self, slot: usize, at: Instant) {
        if slot >= self.place.len() {
            self.place.resize(slot + 1, NONE);
        }
        match self.place[slot] {
            NONE => {
                let i = self.heap.len();
                self.heap.push((at, slot));
                self.place[slot] = to_place(i);
                self.up(i);
            }
            i if at < self.heap[i as usize].0 => {
                self.heap[i as usize].0 = at;
                self.up(i as usize);
            }
            _ => {}
        }
    }

    /// Forgets the deadline of `slot`, if it has one: its connection ended.
    pub fn cancel(&mut self, slot: usize) {
        let Some(&i) = self.place.get(slot) else {
            return;
        };
        if i != NONE {
            self.remove_at(i as usize);
        }
    }

    /// The earliest deadline filed.
    pub fn next(&self) -> Option<Instant> {
        self.heap.first().map(|&(at, _)| at)
    }

    /// How many connections have a deadline.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no connection has a deadline.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Takes every deadline due at `now` out of the heap and puts its slot
    /// in `due`. The caller serves them after, so a deadline that stays in
    /// the past is served once per turn of the loop, not forever within
    /// one.
    pub fn take_due(&mut self, now: Instant, due: &mut Vec<usize>) {
        while let Some(&(at, slot)) = self.heap.first() {
            if at > now {
                break;
            }
            self.remove_at(0);
            due.push(slot);
        }
    }

    fn remove_at(&mut self, i: usize) {
        let (_, slot) = self.heap.swap_remove(i);
        self.place[slot] = NONE;
        if i < self.heap.len() {
            self.place[self.heap[i].1] = to_place(i);
            // The element moved into `i` came from the bottom: it may
            // belong above or below.
            let i = self.up(i);
            self.down(i);
        }
    }

    /// Moves the element at `i` up to its place; returns where it ended.
    fn up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].0 <= self.heap[i].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    /// Moves the element at `i` down to its place.
    fn down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.heap[right].0 < self.heap[left].0 {
                right
            } else {
                left
            };
            if self.heap[i].0 <= self.heap[child].0 {
                break;
            }
            self.swap(i, child);
            i = child;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place[self.heap[a].1] = to_place(a);
        self.place[self.heap[b].1] = to_place(b);
    }
}

fn to_place(i: usize) -> u32 {
    // Slots index a loop's connections, far fewer than 2^32.
    u32::try_from(i).expect("fewer than 2^32 timers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn due_deadlines_come_out_in_order_and_once() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.file(3, at(t0, 30));
        timers.file(1, at(t0, 10));
        timers.file(2, at(t0, 20));
        assert_eq!(timers.next(), Some(at(t0, 10)));
        let mut due = Vec::new();
        timers.take_due(at(t0, 20), &mut due);
        assert_eq!(due, [1, 2]);
        due.clear();
        timers.take_due(at(t0, 20), &mut due);
        assert!(due.is_empty());
        assert_eq!(timers.next(), Some(at(t0, 30)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn an_earlier_deadline_replaces_a_later_one_but_not_the_reverse() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.file(0, at(t0, 50));
        timers.file(0, at(t0, 10));
        assert_eq!(timers.next(), Some(at(t0, 10)));
        timers.file(0, at(t0, 90));
        assert_eq!(timers.next(), Some(at(t0, 10)));
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn a_cancelled_connection_leaves_nothing_behind() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        // A loop that accepts and closes many connections through a few
        // slots keeps a heap the size of its live connections.
        for i in 0..10_000u64 {
            let slot = (i % 4) as usize;
            timers.cancel(slot);
            timers.file(slot, at(t0, 20_000 + i));
        }
        assert_eq!(timers.len(), 4);
        for slot in 0..4 {
            timers.cancel(slot);
        }
        assert!(timers.is_empty());
        assert_eq!(timers.next(), None);
        timers.cancel(99);
        assert!(timers.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        File(usize, u64),
        Cancel(usize),
        TakeDue(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..12, 0u64..100).prop_map(|(s, t)| Op::File(s, t)),
            (0usize..12).prop_map(Op::Cancel),
            (0u64..100).prop_map(Op::TakeDue),
        ]
    }

    proptest! {
        /// Against a map of slot to deadline: the same deadlines, the
        /// earliest first, each due one taken once.
        #[test]
        fn behaves_as_a_map_of_slot_to_earliest_deadline(ops in prop::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut timers = Timers::default();
            let mut model: BTreeMap<usize, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::File(slot, t) => {
                        timers.file(slot, at(t0, t));
                        let e = model.entry(slot).or_insert(t);
                        *e = (*e).min(t);
                    }
                    Op::Cancel(slot) => {
                        timers.cancel(slot);
                        model.remove(&slot);
                    }
                    Op::TakeDue(t) => {
                        let mut due = Vec::new();
                        timers.take_due(at(t0, t), &mut due);
                        let mut expected: Vec<(u64, usize)> = model
                            .iter()
                            .filter(|&(_, &d)| d <= t)
                            .map(|(&s, &d)| (d, s))
                            .collect();
                        expected.sort();
                        model.retain(|_, d| *d > t);
                        // Equal deadlines may come out in either order.
                        let deadlines: Vec<u64> = due
                            .iter()
                            .map(|&s| expected.iter().find(|e| e.1 == s).map_or(u64::MAX, |e| e.0))
                            .collect();
                        let mut sorted = due.clone();
                        sorted.sort_unstable();
                        let mut want: Vec<usize> = expected.iter().map(|e| e.1).collect();
                        want.sort_unstable();
                        prop_assert_eq!(sorted, want);
                        prop_assert!(deadlines.windows(2).all(|w| w[0] <= w[1]));
                    }
                }
                prop_assert_eq!(timers.len(), model.len());
                prop_assert_eq!(timers.next(), model.values().min().map(|&t| at(t0, t)));
            }
        }
    }
}
