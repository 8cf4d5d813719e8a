//! Recent prices of one symbol, for the moving-percentage rules.
//!
//! A window can be anything from a second to 30 days, and a busy symbol trades thousands of
//! times a second, so the history is not every tick. It is a few rings, one per resolution
//! in use: level `k` keeps the last price of every `4^k`-second slot (1 s, 4 s, 16 s, …) for
//! the last [`SLOTS`] + 1 slots. A rule with window `w` reads the finest level that reaches back
//! `w`, so its reference time is exact to within `max(1 s, w / 64)` and a ring never holds
//! more than [`SLOTS`] + 1 points, whatever the tick rate.

use std::collections::VecDeque;

use rust_decimal::Decimal;

/// Slots per ring.
pub(crate) const SLOTS: i64 = 256;
/// Finalised slots kept: the window's slots plus the one it starts in.
const CAPACITY: usize = SLOTS as usize + 1;
const BASE_RESOLUTION_MS: i64 = 1_000;
/// 4^9 s slots: 256 of them reach back about two years, well past the 30-day window limit.
const MAX_LEVEL: u8 = 9;

/// The level whose ring reaches back at least `window_ms`.
pub(crate) fn level_for(window_ms: i64) -> u8 {
    let mut level = 0;
    while resolution_ms(level).saturating_mul(SLOTS) < window_ms && level < MAX_LEVEL {
        level += 1;
    }
    level
}

pub(crate) fn resolution_ms(level: u8) -> i64 {
    BASE_RESOLUTION_MS.saturating_mul(4_i64.saturating_pow(u32::from(level)))
}

#[derive(Debug)]
struct Ring {
    level: u8,
    resolution_ms: i64,
    /// Finalised slots, `(ts, price)` of each slot's last price, oldest first. The slot in
    /// progress is not here: its last price is the book's last price, and it cannot be a
    /// reference yet (a window is at least one slot long).
    points: VecDeque<(i64, Decimal)>,
    /// Points dropped from the front so far: `popped + i` names point `i` for good.
    popped: u64,
    /// The first price read while the ring was empty: the reference until a slot closes.
    seed: Option<Decimal>,
}

#[derive(Debug, Default)]
pub(crate) struct History {
    rings: Vec<Ring>,
    /// The finest resolution kept (0: none), here so that checking for a closed slot needs
    /// no look at the rings.
    finest_ms: i64,
}

impl History {
    /// Starts keeping `level` (its ring fills from the next price on).
    pub fn ensure(&mut self, level: u8) {
        if !self.rings.iter().any(|r| r.level == level) {
            self.rings.push(Ring {
                level,
                resolution_ms: resolution_ms(level),
                points: VecDeque::new(),
                popped: 0,
                seed: None,
            });
            let resolution = resolution_ms(level);
            if self.finest_ms == 0 || resolution < self.finest_ms {
                self.finest_ms = resolution;
            }
        }
    }

    /// The finest resolution kept: a price in a new slot of it must finalise the last one.
    pub fn finest_ms(&self) -> Option<i64> {
        (self.finest_ms > 0).then_some(self.finest_ms)
    }

    /// Whether a price at `ts` closes a slot opened by the last price, at `last_ts`: slots
    /// nest, so only the finest resolution needs checking.
    pub fn closes_slot(&self, last_ts: i64, ts: i64) -> bool {
        self.finest_ms > 0 && last_ts.div_euclid(self.finest_ms) != ts.div_euclid(self.finest_ms)
    }

    /// A price at `ts` arrived after the last one, `(last_ts, last_price)`: every slot the
    /// last one closed is finalised with it (prices arrive in time order).
    pub fn finalize(&mut self, last_ts: i64, last_price: Decimal, ts: i64) {
        for ring in &mut self.rings {
            if last_ts.div_euclid(ring.resolution_ms) == ts.div_euclid(ring.resolution_ms) {
                continue;
            }
            if ring.points.capacity() == 0 {
                // Exactly the ring's size: growing by doubling would waste half.
                ring.points.reserve_exact(CAPACITY);
            }
            if ring.points.len() == CAPACITY {
                ring.points.pop_front();
                ring.popped += 1;
            }
            ring.points.push_back((last_ts, last_price));
        }
    }

    /// The reference price of a window at `ts`: the newest kept point at or before
    /// `ts − window`; while the history is shorter than the window, the oldest kept point;
    /// before the first slot closes, the first price read (`current` the first time), so the
    /// change is measured from the first price seen. Also returns until when this stays the
    /// reference if no slot is finalised meanwhile. `cursor` is where the last lookup
    /// ended (a point's lasting number): the cutoff only moves forward, so the search is a
    /// step or two from there instead of a binary search over cold memory.
    pub fn reference(
        &mut self,
        level: u8,
        ts: i64,
        window_ms: i64,
        current: Decimal,
        cursor: &mut u64,
    ) -> (Decimal, i64) {
        let Some(ring) = self.rings.iter_mut().find(|r| r.level == level) else {
            return (current, i64::MAX);
        };
        if ring.points.is_empty() {
            return (*ring.seed.get_or_insert(current), i64::MAX);
        }
        let cutoff = ts.saturating_sub(window_ms);
        let points = &ring.points;
        let at_or_before = |i: usize| points.get(i).is_some_and(|&(t, _)| t <= cutoff);
        // `newer`: the number of points at or before the cutoff.
        let mut newer = usize::try_from(cursor.saturating_sub(ring.popped))
            .unwrap_or(usize::MAX)
            .min(points.len());
        while at_or_before(newer) {
            newer += 1;
        }
        while newer > 0 && !at_or_before(newer - 1) {
            newer -= 1;
        }
        *cursor = ring.popped + newer as u64;
        let Some(&(_, reference)) = points.get(newer.saturating_sub(1)) else {
            return (current, i64::MAX);
        };
        let until = points
            .get(newer.max(1))
            .map_or(i64::MAX, |&(t, _)| t.saturating_add(window_ms));
        (reference, until)
    }

    pub fn heap_bytes(&self) -> usize {
        self.rings.capacity() * std::mem::size_of::<Ring>()
            + self
                .rings
                .iter()
                .map(|r| r.points.capacity() * std::mem::size_of::<(i64, Decimal)>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: i64) -> Decimal {
        Decimal::from(v)
    }

    #[test]
    fn levels_cover_their_windows() {
        assert_eq!(level_for(1_000), 0);
        assert_eq!(level_for(256_000), 0);
        assert_eq!(level_for(256_001), 1);
        assert_eq!(level_for(3_600_000), 2);
        let thirty_days = 30 * 86_400_000;
        let level = level_for(thirty_days);
        assert!(resolution_ms(level) * SLOTS >= thirty_days);
        // The resolution stays within 1/64 of the window above 256 s.
        assert!(resolution_ms(level) * 64 <= thirty_days);
    }

    #[test]
    fn reference_is_the_newest_finalised_point_at_or_before_the_cutoff() {
        let mut h = History::default();
        h.ensure(0);
        let now = d(999);
        // No slot closed yet: the first price read, for good until one closes.
        assert_eq!(h.reference(0, 10_000, 60_000, now, &mut 0), (now, i64::MAX));
        assert_eq!(
            h.reference(0, 10_500, 60_000, d(5), &mut 0),
            (now, i64::MAX)
        );
        // Prices at 10 s, 11 s, 12 s; each is finalised when the next slot starts.
        h.finalize(10_000, d(100), 11_000);
        h.finalize(11_000, d(101), 12_000);
        h.finalize(12_000, d(102), 13_000);
        // ts 72 s, window 60 s: cutoff 12 s → the point at 12 s, for good.
        assert_eq!(
            h.reference(0, 72_000, 60_000, now, &mut 0),
            (d(102), i64::MAX)
        );
        // cutoff 11.5 s → the point at 11 s, until the cutoff reaches 12 s.
        assert_eq!(
            h.reference(0, 71_500, 60_000, now, &mut 5),
            (d(101), 72_000)
        );
        // Shorter history than the window: the oldest point, until the cutoff reaches 11 s.
        assert_eq!(
            h.reference(0, 13_000, 60_000, now, &mut 2),
            (d(100), 71_000)
        );
        assert_eq!(h.reference(3, 13_000, 60_000, now, &mut 0), (now, i64::MAX));
    }

    #[test]
    fn a_slot_keeps_its_last_price_and_the_ring_is_bounded() {
        let mut h = History::default();
        h.ensure(0);
        // Two prices in one slot: only the one that closes the slot is kept.
        h.finalize(1_000, d(1), 1_500);
        h.finalize(1_500, d(2), 2_000);
        assert_eq!(h.reference(0, 100_000, 1, d(0), &mut 0).0, d(2));
        assert_eq!(h.rings[0].points.len(), 1);
        for s in 0..1_000 {
            h.finalize(2_000 + s * 1_000, d(s), 3_000 + s * 1_000);
        }
        assert_eq!(h.rings[0].points.len(), CAPACITY);
        assert!(h.rings[0].points.capacity() < 2 * CAPACITY);
        assert_eq!(h.finest_ms(), Some(1_000));
    }
}
