//! One symbol's part of the rule book: its rules in compact slots, the sorted level index
//! that finds the few rules a price move can affect, the moving-rule groups, and the
//! symbol's evaluation state (last price, redelivery cache, pending and expiry queues).
//!
//! ## The index
//! Every price rule puts its fire levels (its threshold, or its channel's bounds) into one
//! array sorted by level, as `f64` keys beside `u32` slots (12 bytes an entry). A rule that
//! fired and waits to re-arm also puts its re-arm levels into a second, small sorted array
//! until it re-arms; that keeps the big array at one or two keys a rule, and so the price
//! moves that touch nothing frequent. A move from `q` to `p` asks only the rules with a level in
//! `[min(q, p), max(q, p)]`: two searches, galloping out from where `q` sat (O(log n) at
//! worst, a cache line or two for a small move), then one exact decimal evaluation per rule
//! found. The `f64` keys are a filter, not the truth: the range is widened by 10⁻¹²
//! relative (the conversion error is below 10⁻¹⁵), so no level can be missed, and a rule
//! found by rounding alone evaluates to nothing.
//!
//! Moving rules live in groups by window and measure (percent, or amount in price units); a
//! group's keys are in its change space and a price asks the rules with a level between
//! the group's previous change and its new one.
//! A group keeps its reference price until it may change (the window's start passes the
//! next history point, or a history slot closes) and the price band in which its change
//! crosses no level, so most prices skip it without reading the history.
//!
//! ## The hot record
//! A tick on a symbol of a million-rule book finds that symbol's data cold in the cache, and
//! a miss costs ~100 ns. So each symbol also has a small [`Hot`] record, in one dense array,
//! holding what a tick that changes nothing needs: the last price, and the *quiet
//! intervals* — the nearest index keys around it, the price band in which no moving rule's
//! level is crossed, and the time of the next expiry, pending rule or reference change. A
//! tick inside all of them provably asks no rule (see [`Hot::quiet`]) and touches nothing
//! else; the others take the full path, which recomputes the record.
//!
//! Bar-close rules (`once_per_bar_close`) sit in the same slots, so ids, expiry and
//! deletion work alike, but they have no index entry: a closed candle of their interval
//! asks them (see [`BarSeries`]), a price never does.
//!
//! Deleting is lazy: a dead slot keeps its index entries until the next compaction, one
//! pass that drops them all — after the price that removed them for a small index (up to
//! 8 192 entries), else once dead entries are half of the index (amortised O(1) per
//! deletion). Either way a burst of ten thousand `once` rules firing at a round number
//! moves the array once, not ten thousand times. Slots are reused only after that pass, so
//! an entry never points at a rule it does not belong to.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use std::collections::VecDeque;

use rust_decimal::Decimal;
use tickwatch_schema::calendar::utc_offset_ms;
use tickwatch_schema::wire::Interval;

use crate::compiled::{Band, CompiledRule, NO_EXPIRY};
use crate::firing::Firing;
use crate::history::{self, History};
use crate::indicator::{ExprRule, IndicatorSeries};

pub(crate) use tickwatch_schema::decimal::to_f64;

/// Lowers `x` past any conversion error: relative 10⁻¹² plus `absolute`.
fn widen_down(x: f64, absolute: f64) -> f64 {
    x - x.abs() * 1e-12 - absolute
}

fn widen_up(x: f64, absolute: f64) -> f64 {
    x + x.abs() * 1e-12 + absolute
}

/// The most closes a bar series keeps (a 30-day window of 1m bars).
const MAX_BARS: usize = 43_200;

/// An index up to this many entries is compacted as soon as it has a dead one.
const SMALL_INDEX: usize = 8_192;

/// Prices are positive decimals; the absolute term only matters near zero.
const PRICE_SLACK: f64 = f64::MIN_POSITIVE;
/// Change percentages come from a subtraction, whose `f64` error is absolute: about
/// 10⁻¹⁴ percentage points for any sane price ratio.
const CHANGE_SLACK: f64 = 1e-9;

/// What a tick needs to know to prove it changes nothing (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hot {
    pub last_price: Decimal,
    pub last_f: f64,
    pub last_ts: i64,
    /// A hash of the last tick's trade id (0: none), to recognise a redelivery.
    pub last_trade: u64,
    /// The newest tick's time (`i64::MIN`: none); candles count only when ticks are silent.
    pub last_tick_ts: i64,
    /// The smallest index key at or above the last price (widened down), and the largest
    /// at or below it (widened up).
    key_above: f64,
    key_below: f64,
    /// Where the last price sits in the index: searches start here and gallop outwards, so
    /// a small move reads a cache line or two instead of a binary search's dozen.
    pub key_pos: u32,
    /// Prices strictly between these cross no moving rule's level.
    moving_lo: f64,
    moving_hi: f64,
    /// The finest history resolution (0: no moving rules): a new slot must be recorded.
    history_ms: i64,
    /// The first time something is due without a price move: an expiry, a pending rule, or
    /// a moving reference change.
    next_event: i64,
    /// The first time a moving group's reference may change.
    groups_until: i64,
    pub has_last: bool,
    /// Rules were added since the last full evaluation.
    pub has_fresh: bool,
    /// The book's `last_firings` is not empty.
    pub cached: bool,
    /// The last price changed since the engine last handed the changed prices out (the
    /// book is on the engine's list of them).
    pub changed: bool,
}

impl Default for Hot {
    fn default() -> Self {
        Hot {
            last_price: Decimal::ZERO,
            last_f: 0.0,
            last_ts: i64::MIN,
            last_trade: 0,
            last_tick_ts: i64::MIN,
            key_above: f64::NEG_INFINITY,
            key_below: f64::INFINITY,
            key_pos: 0,
            moving_lo: f64::INFINITY,
            moving_hi: f64::NEG_INFINITY,
            history_ms: 0,
            next_event: i64::MIN,
            // No groups yet; adding one forces the groups to be read.
            groups_until: i64::MAX,
            has_last: false,
            has_fresh: false,
            cached: false,
            changed: false,
        }
    }
}

impl Hot {
    /// Whether a price `price` at `ts` (newer than the last) provably asks no rule: no
    /// index key and no moving level lies in the widened range it moves through, no slot of
    /// the history closes, and nothing is due. Conservative: `false` only costs the full
    /// path.
    pub fn quiet(&self, price: f64, ts: i64) -> bool {
        if !self.has_last || self.has_fresh || ts >= self.next_event {
            return false;
        }
        self.moving_quiet(price, ts) && self.keys_quiet(price)
    }

    /// Whether no moving group can change at this price: no reference change is due, no
    /// history slot closes, and the price stays in every group's band.
    pub fn moving_quiet(&self, price: f64, ts: i64) -> bool {
        self.history_ms == 0
            || (self.has_last
                && ts < self.groups_until
                && ts.div_euclid(self.history_ms) == self.last_ts.div_euclid(self.history_ms)
                && price > self.moving_lo
                && price < self.moving_hi)
    }

    /// Whether the move from the last price to `price` crosses no index key: going up, the
    /// first key at or above the last price (widened) must be above `price` (widened);
    /// going down, the mirror.
    pub fn keys_quiet(&self, price: f64) -> bool {
        if price >= self.last_f {
            widen_up(price, PRICE_SLACK) < self.key_above
        } else {
            widen_down(price, PRICE_SLACK) > self.key_below
        }
    }

    /// Whether a price is the last evaluated one again: same time, same price, same trade
    /// id (by hash). Even a hash collision is harmless: a second tick at the same time and
    /// price cannot cross anything.
    pub fn is_redelivery(&self, ts: i64, trade: u64, price: Decimal) -> bool {
        self.has_last && ts == self.last_ts && trade == self.last_trade && price == self.last_price
    }

    /// Sets the last price; true when it is the first change since the changed prices were
    /// last handed out (the caller lists the book).
    #[must_use]
    pub fn set_last(&mut self, price: Decimal, price_f: f64, ts: i64, trade: u64) -> bool {
        self.last_price = price;
        self.last_f = price_f;
        self.last_ts = ts;
        self.last_trade = trade;
        self.has_last = true;
        !std::mem::replace(&mut self.changed, true)
    }
}

/// A trade id's hash for [`Hot::is_redelivery`] (never 0, which means "no trade id").
pub(crate) fn trade_hash(trade: Option<&str>) -> u64 {
    use std::hash::Hasher;
    let Some(id) = trade else {
        return 0;
    };
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(id.as_bytes());
    hasher.write_u8(0xff);
    hasher.finish() | 1
}

/// Moving rules with one window and one measure.
#[derive(Debug)]
pub(crate) struct Group {
    pub window_ms: i64,
    /// The change is an amount in price units (`moving_up`), not a percentage.
    pub amount: bool,
    pub level: u8,
    resolution_ms: i64,
    keys: Vec<f64>,
    slots: Vec<u32>,
    /// The change at the last price that moved the group (`f64`, for range queries only).
    prev_change: Option<f64>,
    /// Where `prev_change` sits in `keys` (a search hint).
    pos: u32,
    /// The history point the reference was last read from (a search hint).
    reference_at: u64,
    /// The reference read from the history; it holds while `ts < until` and no slot of the
    /// group's level closes (`until` is `i64::MIN` when it must be read again).
    reference: Decimal,
    reference_f: f64,
    until: i64,
    /// Prices strictly between these cross none of the group's levels at this reference.
    band_lo: f64,
    band_hi: f64,
}

impl Group {
    /// The reference last read (still right while the groups are quiet).
    pub fn reference(&self) -> Decimal {
        self.reference
    }

    fn new(window_ms: i64, amount: bool) -> Self {
        let level = history::level_for(window_ms);
        Group {
            window_ms,
            amount,
            level,
            resolution_ms: history::resolution_ms(level),
            keys: Vec::new(),
            slots: Vec::new(),
            prev_change: None,
            pos: 0,
            reference_at: 0,
            reference: Decimal::ZERO,
            reference_f: 0.0,
            until: i64::MIN,
            band_lo: f64::INFINITY,
            band_hi: f64::NEG_INFINITY,
        }
    }

    /// Recomputes the band around `price_f` (the change `change` against the reference)
    /// between which the change crosses none of the group's levels: widened, with margins
    /// for the `f64` inversion, and empty when the price itself is not strictly inside.
    /// The change at `price_f` against the reference, in the group's measure.
    fn change_at(&self, price_f: f64) -> Option<f64> {
        let r = self.reference_f;
        match (r > 0.0, self.amount) {
            (false, _) => None,
            (true, true) => Some(price_f - r),
            (true, false) => Some((price_f - r) * 100.0 / r),
        }
    }

    /// How far a change's `f64` error can reach: a percentage's is tiny and absolute; an
    /// amount's is relative to the prices subtracted.
    fn slack(&self) -> f64 {
        if self.amount {
            self.reference_f.abs() * 1e-11 + CHANGE_SLACK
        } else {
            CHANGE_SLACK
        }
    }

    /// The price at which the change is `k`.
    fn price_of(&self, k: f64) -> f64 {
        if self.amount {
            self.reference_f + k
        } else {
            self.reference_f * (1.0 + k / 100.0)
        }
    }

    fn rebuild_band(&mut self, change: f64, price_f: f64) {
        let reference = self.reference_f;
        (self.band_lo, self.band_hi) = (f64::INFINITY, f64::NEG_INFINITY);
        if reference <= 0.0 {
            return;
        }
        let slack = self.slack();
        let (lo, hi) = (widen_down(change, slack), widen_up(change, slack));
        let above = partition_near(&self.keys, self.pos as usize, |k| k < lo);
        let below = partition_near(&self.keys, above, |k| k <= hi);
        self.pos = u32::try_from(above).unwrap_or(u32::MAX);
        // Ten times the query's own widening, so the inversion's rounding cannot matter.
        let margin = |k: f64| k.abs() * 1e-11 + 10.0 * slack;
        let band_hi = self.keys.get(above).map_or(f64::INFINITY, |&k| {
            self.price_of(k - margin(k)) * (1.0 - 1e-12)
        });
        let band_lo = below
            .checked_sub(1)
            .and_then(|i| self.keys.get(i))
            .map_or(f64::NEG_INFINITY, |&k| {
                self.price_of(k + margin(k)) * (1.0 + 1e-12)
            });
        if band_lo < price_f && price_f < band_hi {
            (self.band_lo, self.band_hi) = (band_lo, band_hi);
        }
    }
}

/// The closed candles of one interval of a symbol that has bar-close rules: the closes the
/// rules compare with (the previous one, and as many as a moving rule's window spans), and
/// the last candle evaluated with its firings (returned again on a redelivery).
#[derive(Debug)]
pub(crate) struct BarSeries {
    pub interval: Interval,
    /// `(open_ts, close)`, oldest first; the evaluated candle is the last.
    pub closes: VecDeque<(i64, Decimal)>,
    pub last_open: Option<i64>,
    pub last_firings: Vec<Firing>,
    /// How many earlier closes the store was asked for (see `AlertEngine::history_wanted`).
    pub asked: usize,
}

impl BarSeries {
    fn new(interval: Interval) -> Self {
        BarSeries {
            interval,
            closes: VecDeque::new(),
            last_open: None,
            last_firings: Vec::new(),
            asked: 0,
        }
    }

    /// The last close before the candle opening at `open_ts`.
    pub fn close_before(&self, open_ts: i64) -> Option<(i64, Decimal)> {
        self.closes
            .iter()
            .rev()
            .find(|(o, _)| *o < open_ts)
            .copied()
    }

    /// How many closes before `open_ts` the series holds.
    pub fn count_before(&self, open_ts: i64) -> usize {
        self.closes.iter().filter(|(o, _)| *o < open_ts).count()
    }

    /// The change of the close `price` of the candle opening at `open_ts` over `window_ms`:
    /// against the close of the newest candle that closed at least `window_ms` before this
    /// one (opened at or before `open_ts − window_ms`), else the oldest close held; in price
    /// units when `amount`, else in percent.
    pub fn change(
        &self,
        open_ts: i64,
        price: Decimal,
        window_ms: i64,
        amount: bool,
    ) -> Option<Decimal> {
        let earlier = self.closes.iter().take_while(|(o, _)| *o < open_ts);
        let cutoff = open_ts.saturating_sub(window_ms);
        let reference = earlier
            .clone()
            .filter(|(o, _)| *o <= cutoff)
            .last()
            .or_else(|| earlier.clone().next())
            .map(|&(_, c)| c)?;
        if amount {
            price.checked_sub(reference)
        } else if reference > Decimal::ZERO {
            price
                .checked_sub(reference)?
                .checked_mul(Decimal::ONE_HUNDRED)?
                .checked_div(reference)
        } else {
            None
        }
    }

    /// Takes stored closes from before what the series holds (a restart, a handover, a new
    /// rule), keeping the order and at most `keep` of them before the newest.
    pub fn add_earlier(&mut self, bars: &[(i64, Decimal)], keep: usize) {
        // The closes held first: after a stable sort the dedup keeps them.
        let mut merged: Vec<(i64, Decimal)> = self.closes.iter().chain(bars).copied().collect();
        merged.sort_by_key(|(o, _)| *o);
        merged.dedup_by_key(|(o, _)| *o);
        self.closes = merged.into();
        self.trim(keep);
    }

    /// Records the evaluated candle's close.
    pub fn push(&mut self, open_ts: i64, close: Decimal, keep: usize) {
        self.closes.retain(|(o, _)| *o < open_ts);
        self.closes.push_back((open_ts, close));
        self.last_open = Some(open_ts);
        self.trim(keep);
    }

    fn trim(&mut self, keep: usize) {
        let before = self.closes.len();
        while self.closes.len() > keep.saturating_add(1) {
            self.closes.pop_front();
        }
        // Closes dropped (a wider window's rule went): a rule needing them again asks the
        // store again. A store that had fewer than asked is not asked again meanwhile.
        if self.closes.len() < before {
            self.asked = self.asked.min(self.closes.len().saturating_sub(1));
        }
    }
}

impl GroupNow {
    /// The view of a group that was not looked at.
    pub const UNSEEN: GroupNow = GroupNow {
        reference: None,
        change_f: None,
        moved: false,
        exact: None,
    };
}

/// A group's view of the current price, computed once per price.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupNow {
    /// `None` when the group was not looked at (nothing can change for it): the group's
    /// cached reference is then still right.
    pub reference: Option<Decimal>,
    pub change_f: Option<f64>,
    /// The reference changed or the price left the group's band: levels may be crossed.
    pub moved: bool,
    /// The exact change, computed the first time a rule of the group needs it.
    pub exact: Option<Option<Decimal>>,
}

// `repr(C)` keeps the fields a full evaluation reads together at the front (about four
// cache lines), instead of wherever the compiler would put them.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Book {
    /// The fire levels of the price rules (and of nothing else), sorted.
    keys: Vec<f64>,
    slots: Vec<u32>,
    /// The re-arm levels of the price rules waiting to re-arm, sorted. Usually few, so
    /// kept exact: entries come and go as rules fire and re-arm.
    rearm_keys: Vec<f64>,
    rearm_slots: Vec<u32>,
    pub rules: Vec<CompiledRule>,
    pub groups: Vec<Group>,
    pub history: History,
    /// Rules not yet evaluated: asked at the next price, whatever it is.
    pub fresh: Vec<u32>,
    /// The heads of the two queues below (`i64::MAX`: empty), so a price need not read the
    /// queues' memory to learn that nothing is due.
    next_pending: i64,
    next_expiry: i64,
    /// Index entries (price and group) in total, and how many of them point at dead slots.
    entries: usize,
    stale: usize,
    /// The firings of the last evaluated price, returned again on a redelivery.
    pub last_firings: Vec<Firing>,
    /// While loading, entries are appended and sorted once at the end.
    bulk: bool,
    /// Entries were added since the hot record's key bounds were computed.
    keys_added: bool,
    /// Moving rules were added since the groups' bands were computed.
    groups_added: bool,
    /// The smallest candle interval seen.
    pub candle_interval: Option<Interval>,
    /// The slots of the bar-close rules, and the closes they are evaluated on.
    bar_slots: Vec<u32>,
    pub bars: Vec<BarSeries>,
    /// Expression rules' clauses by slot, and the indicator series they read.
    pub exprs: rustc_hash::FxHashMap<u32, ExprRule>,
    pub indicators: Vec<IndicatorSeries>,
    /// How far east of UTC the venue's trading day starts (bars follow it).
    pub offset_ms: i64,
    /// State rules held back by their trigger mode: `(eligible_ts, slot)`.
    pending: BinaryHeap<Reverse<(i64, u32)>>,
    /// `(expires_at, slot)` of rules with an expiry.
    expiry: BinaryHeap<Reverse<(i64, u32)>>,
    /// Dead slots whose index entries may still exist.
    dead: Vec<u32>,
    /// Dead slots with no index entry left: free to reuse.
    free: Vec<u32>,
    pub venue: Arc<str>,
    pub symbol: Arc<str>,
}

impl Book {
    pub fn new(venue: Arc<str>, symbol: Arc<str>) -> Self {
        Book {
            rules: Vec::new(),
            dead: Vec::new(),
            free: Vec::new(),
            keys: Vec::new(),
            slots: Vec::new(),
            rearm_keys: Vec::new(),
            rearm_slots: Vec::new(),
            entries: 0,
            stale: 0,
            bulk: false,
            keys_added: false,
            groups_added: false,
            groups: Vec::new(),
            history: History::default(),
            fresh: Vec::new(),
            pending: BinaryHeap::new(),
            expiry: BinaryHeap::new(),
            next_pending: i64::MAX,
            next_expiry: i64::MAX,
            last_firings: Vec::new(),
            candle_interval: None,
            bar_slots: Vec::new(),
            bars: Vec::new(),
            exprs: rustc_hash::FxHashMap::default(),
            indicators: Vec::new(),
            offset_ms: utc_offset_ms(&venue),
            venue,
            symbol,
        }
    }

    pub fn rule(&self, slot: u32) -> Option<&CompiledRule> {
        self.rules.get(slot as usize)
    }

    /// Adds a rule; it is fresh until the next price. Returns its slot, or `None` when the
    /// book is full (4 billion slots, or 65 535 distinct moving windows).
    pub fn insert(&mut self, mut rule: CompiledRule, band: &Band, bulk: bool) -> Option<u32> {
        if bulk {
            self.bulk = true;
        }
        if rule.at_bar_close() {
            return self.insert_bar_close(rule);
        }
        if rule.is_moving() {
            let window_ms = i64::from(rule.window_s).saturating_mul(1_000);
            let amount = rule.condition.is_moving_amount();
            let group = match self
                .groups
                .iter()
                .position(|g| g.window_ms == window_ms && g.amount == amount)
            {
                Some(g) => g,
                None => {
                    let group = Group::new(window_ms, amount);
                    self.history.ensure(group.level);
                    self.groups.push(group);
                    self.groups.len() - 1
                }
            };
            rule.group = u16::try_from(group).ok().filter(|&g| g != u16::MAX)?;
            // New levels: the group's band no longer holds.
            if let Some(g) = self.groups.get_mut(group) {
                (g.band_lo, g.band_hi) = (f64::INFINITY, f64::NEG_INFINITY);
            }
            self.groups_added = true;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => u32::try_from(self.rules.len()).ok()?,
        };
        // A rule starts armed: a price rule is watched at its fire levels only (its re-arm
        // levels join when it fires); a moving rule at all its levels, in its group.
        let levels = if rule.is_moving() {
            rule.levels(band)
        } else {
            rule.fire_levels()
        };
        rule.set_entries(levels.as_slice().len());
        rule.live = true;
        let expires_at = rule.expires_at;
        let group = rule.group;
        match self.rules.get_mut(slot as usize) {
            Some(cell) => *cell = rule,
            None => self.rules.push(rule),
        }
        let (keys, slots) = match self.groups.get_mut(usize::from(group)) {
            Some(g) => (&mut g.keys, &mut g.slots),
            None => (&mut self.keys, &mut self.slots),
        };
        for &level in levels.as_slice() {
            insert_entry(keys, slots, to_f64(level), slot, self.bulk);
        }
        self.entries += levels.as_slice().len();
        self.keys_added = true;
        self.fresh.push(slot);
        if expires_at != NO_EXPIRY {
            self.expiry.push(Reverse((expires_at, slot)));
            self.next_expiry = self.next_expiry.min(expires_at);
        }
        Some(slot)
    }

    /// Adds a bar-close rule: a slot, no index entry.
    fn insert_bar_close(&mut self, mut rule: CompiledRule) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => u32::try_from(self.rules.len()).ok()?,
        };
        rule.set_entries(0);
        rule.live = true;
        let expires_at = rule.expires_at;
        match self.rules.get_mut(slot as usize) {
            Some(cell) => *cell = rule,
            None => self.rules.push(rule),
        }
        self.bar_slots.push(slot);
        if expires_at != NO_EXPIRY {
            self.expiry.push(Reverse((expires_at, slot)));
            self.next_expiry = self.next_expiry.min(expires_at);
        }
        Some(slot)
    }

    /// The slots of the live bar-close rules of `interval`.
    pub fn bar_slots_of(&self, interval: Interval) -> Vec<u32> {
        self.bar_slots
            .iter()
            .copied()
            .filter(|&s| self.rule(s).is_some_and(|r| r.interval == Some(interval)))
            .collect()
    }

    /// The series of `interval`'s closes, created if need be.
    pub fn series(&mut self, interval: Interval) -> &mut BarSeries {
        let at = match self.bars.iter().position(|b| b.interval == interval) {
            Some(at) => at,
            None => {
                self.bars.push(BarSeries::new(interval));
                self.bars.len() - 1
            }
        };
        &mut self.bars[at]
    }

    /// Gives the expression rule in `slot` its clauses, and starts the series they read.
    pub fn attach_expression(&mut self, slot: u32, expr: ExprRule) {
        for (series, interval) in expr.series() {
            let at = match self.indicators.iter().position(|s| s.interval == interval) {
                Some(at) => at,
                None => {
                    self.indicators.push(IndicatorSeries::new(interval));
                    self.indicators.len() - 1
                }
            };
            self.indicators[at].acquire(series);
        }
        self.exprs.insert(slot, expr);
    }

    /// How many closes before the current one the bar-close rules of `interval` use: the
    /// previous close, or as many as a moving rule's window spans (expression rules read
    /// their indicator series instead).
    pub fn bars_needed(&self, interval: Interval) -> usize {
        let len = interval.as_ms().max(1);
        self.bar_slots_of(interval)
            .iter()
            .filter_map(|&s| self.rule(s))
            .filter(|r| !r.condition.is_expression())
            .map(|r| {
                if r.is_moving() {
                    let window = i64::from(r.window_s).saturating_mul(1_000);
                    usize::try_from((window + len - 1) / len).unwrap_or(MAX_BARS)
                } else {
                    1
                }
            })
            .max()
            .unwrap_or(0)
            .min(MAX_BARS)
    }

    /// Removes the rule in `slot`; returns it (its id, version and template matter).
    pub fn remove(&mut self, slot: u32, bands: &[Band]) -> Option<CompiledRule> {
        let rule = self.rules.get(slot as usize)?;
        if !rule.is_live() {
            return None;
        }
        if rule.at_bar_close() {
            self.bar_slots.retain(|&s| s != slot);
        }
        if let Some(expr) = self.exprs.remove(&slot) {
            for (series, interval) in expr.series() {
                if let Some(at) = self.indicators.iter().position(|s| s.interval == interval) {
                    self.indicators[at].release(series);
                    if self.indicators[at].is_unused() {
                        self.indicators.swap_remove(at);
                    }
                }
            }
        }
        if rule.needs_rearm_entries() {
            let band = bands.get(usize::from(rule.band)).copied();
            if let Some(band) = band {
                self.unwatch_rearm(slot, &band);
            }
        }
        let rule = self.rules.get_mut(slot as usize)?;
        rule.live = false;
        let removed = rule.clone();
        self.stale += removed.entries();
        if removed.entries() == 0 {
            // No index entry points at it (a bar-close or expression rule): free at once.
            // An expiry queued for it checks the slot's occupant when it comes due.
            self.free.push(slot);
            return Some(removed);
        }
        self.dead.push(slot);
        Some(removed)
    }

    /// Starts watching a rule's re-arm levels (it fired and waits to re-arm).
    pub fn watch_rearm(&mut self, slot: u32, band: &Band) {
        let Some(rule) = self.rules.get(slot as usize) else {
            return;
        };
        for &level in rule.rearm_levels(band).as_slice() {
            insert_entry(
                &mut self.rearm_keys,
                &mut self.rearm_slots,
                to_f64(level),
                slot,
                false,
            );
        }
        self.keys_added = true;
    }

    /// Stops watching a rule's re-arm levels (it re-armed, or is going away).
    pub fn unwatch_rearm(&mut self, slot: u32, band: &Band) {
        let Some(rule) = self.rules.get(slot as usize) else {
            return;
        };
        for &level in rule.rearm_levels(band).as_slice() {
            let key = to_f64(level);
            let start = self.rearm_keys.partition_point(|&k| k < key);
            let found = (start..self.rearm_keys.len())
                .take_while(|&i| self.rearm_keys.get(i) == Some(&key))
                .find(|&i| self.rearm_slots.get(i) == Some(&slot));
            if let Some(i) = found {
                self.rearm_keys.remove(i);
                self.rearm_slots.remove(i);
            }
        }
    }

    /// Asks a state rule again at `eligible` (its trigger mode held it back).
    pub fn push_pending(&mut self, eligible: i64, slot: u32) {
        self.pending.push(Reverse((eligible, slot)));
        self.next_pending = self.next_pending.min(eligible);
    }

    /// Takes the slots whose expiry entry is due at `now_ms` (the caller checks each rule:
    /// a slot may have been reused since).
    pub fn due_expiries(&mut self, now_ms: i64, out: &mut Vec<u32>) {
        if now_ms < self.next_expiry {
            return;
        }
        while let Some(&Reverse((at, slot))) = self.expiry.peek() {
            if at > now_ms {
                break;
            }
            self.expiry.pop();
            out.push(slot);
        }
        self.next_expiry = head(&self.expiry);
    }

    /// Ends a load: sorts what was appended and trims the spare capacity of growth.
    pub fn finish_bulk(&mut self) {
        if !self.bulk {
            return;
        }
        self.bulk = false;
        sort_entries(&mut self.keys, &mut self.slots);
        for g in &mut self.groups {
            sort_entries(&mut g.keys, &mut g.slots);
        }
        self.shrink();
    }

    fn shrink(&mut self) {
        self.rules.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.slots.shrink_to_fit();
        for g in &mut self.groups {
            g.keys.shrink_to_fit();
            g.slots.shrink_to_fit();
        }
        self.fresh.shrink_to_fit();
        self.expiry.shrink_to_fit();
    }

    /// Drops dead entries once they are half of the index (and there are enough to bother).
    pub fn maybe_compact(&mut self) {
        // A small index is cheaper to compact at once (one pass over a few tens of KiB,
        // whatever the number of rules removed) than to keep dead keys near the price, where
        // rules fire, and take the full path for them. A large one waits until half of it
        // is dead: amortised O(1) per removal.
        let due = if self.entries <= SMALL_INDEX {
            self.stale > 0
        } else {
            self.stale >= 64 && self.stale * 2 >= self.entries
        };
        if self.bulk || !due {
            return;
        }
        let rules = &self.rules;
        let live = |slot: u32| rules.get(slot as usize).is_some_and(CompiledRule::is_live);
        retain_entries(&mut self.keys, &mut self.slots, live);
        for g in &mut self.groups {
            retain_entries(&mut g.keys, &mut g.slots, live);
        }
        self.pending.retain(|Reverse((_, slot))| live(*slot));
        self.expiry.retain(|Reverse((_, slot))| live(*slot));
        self.next_pending = head(&self.pending);
        self.next_expiry = head(&self.expiry);
        self.fresh.retain(|&slot| live(slot));
        self.entries -= self.stale;
        self.stale = 0;
        self.free.append(&mut self.dead);
    }

    /// Whether the move to `price_f` may cross an index key: not provably quiet, or keys
    /// were added since the bounds were computed.
    pub fn keys_moved(&self, hot: &Hot, price_f: f64) -> bool {
        self.keys_added || !hot.has_last || !hot.keys_quiet(price_f)
    }

    /// Whether the groups can be skipped at this price (see [`Hot::moving_quiet`]).
    pub fn groups_quiet(&self, hot: &Hot, price_f: f64, ts: i64) -> bool {
        !self.groups_added && hot.moving_quiet(price_f, ts)
    }

    /// Each group's view of a price at `ts`, the last price having been at `last_ts`. The
    /// history must already hold every slot closed by `ts`. A group re-reads its reference
    /// only when it may have changed (its time is up, or a slot of its level closed).
    pub fn view_groups(
        &mut self,
        last_ts: Option<i64>,
        ts: i64,
        price: Decimal,
        price_f: f64,
        out: &mut Vec<GroupNow>,
    ) {
        out.clear();
        for group in &mut self.groups {
            let res = group.resolution_ms;
            let same_slot = last_ts.is_some_and(|l| l.div_euclid(res) == ts.div_euclid(res));
            let reread = !same_slot || ts >= group.until;
            if reread {
                let (reference, until) = self.history.reference(
                    group.level,
                    ts,
                    group.window_ms,
                    price,
                    &mut group.reference_at,
                );
                group.reference = reference;
                group.reference_f = to_f64(reference);
                group.until = until;
            }
            out.push(GroupNow {
                reference: Some(group.reference),
                change_f: group.change_at(price_f),
                moved: reread || !(price_f > group.band_lo && price_f < group.band_hi),
                exact: None,
            });
        }
    }

    /// The indexed candidates for a price: rules with a level crossed since the last price,
    /// pending rules now eligible, and fresh rules. Sorted by slot, without duplicates.
    pub fn gather(
        &mut self,
        hot: &Hot,
        keys_moved: bool,
        price_f: f64,
        ts: i64,
        now: &[GroupNow],
        out: &mut Vec<u32>,
    ) {
        if hot.has_last && keys_moved {
            let (lo, hi) = min_max(hot.last_f, price_f);
            let (lo, hi) = (widen_down(lo, PRICE_SLACK), widen_up(hi, PRICE_SLACK));
            push_range(&self.keys, &self.slots, hot.key_pos as usize, lo, hi, out);
            let hint = self.rearm_keys.len() / 2;
            push_range(&self.rearm_keys, &self.rearm_slots, hint, lo, hi, out);
        }
        for (group, now) in self.groups.iter_mut().zip(now) {
            if !now.moved {
                continue;
            }
            if let (Some(before), Some(change)) = (group.prev_change, now.change_f) {
                let (lo, hi) = min_max(before, change);
                let slack = group.slack();
                push_range(
                    &group.keys,
                    &group.slots,
                    group.pos as usize,
                    widen_down(lo, slack),
                    widen_up(hi, slack),
                    out,
                );
            }
        }
        if ts >= self.next_pending {
            while let Some(&Reverse((eligible, slot))) = self.pending.peek() {
                if eligible > ts {
                    break;
                }
                self.pending.pop();
                out.push(slot);
            }
            self.next_pending = head(&self.pending);
        }
        out.append(&mut self.fresh);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Every live rule: the naive evaluator's candidates.
    pub fn gather_all(&mut self, out: &mut Vec<u32>) {
        self.fresh.clear();
        out.extend(
            self.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_live() && !r.at_bar_close())
                .filter_map(|(slot, _)| u32::try_from(slot).ok()),
        );
    }

    /// Recomputes the hot record after a full evaluation at `price` (`now`: the groups'
    /// view of it).
    pub fn refresh(
        &mut self,
        hot: &mut Hot,
        price_f: f64,
        keys_moved: bool,
        groups_quiet: bool,
        now: &[GroupNow],
    ) {
        if keys_moved {
            self.refresh_keys(hot, price_f);
        }
        if !groups_quiet {
            self.refresh_groups(hot, price_f, now);
        }
        hot.next_event = self
            .next_expiry
            .min(self.next_pending)
            .min(hot.groups_until);
        hot.has_fresh = !self.fresh.is_empty();
        hot.cached = !self.last_firings.is_empty();
    }

    /// The groups' bands and reference deadlines, for the hot record.
    fn refresh_groups(&mut self, hot: &mut Hot, price_f: f64, now: &[GroupNow]) {
        self.groups_added = false;
        hot.history_ms = self.history.finest_ms().unwrap_or(0);
        let (mut lo, mut hi, mut until) = (f64::NEG_INFINITY, f64::INFINITY, i64::MAX);
        for (group, now) in self.groups.iter_mut().zip(now) {
            if now.moved {
                group.prev_change = now.change_f;
                match now.change_f {
                    Some(change) => group.rebuild_band(change, price_f),
                    None => (group.band_lo, group.band_hi) = (f64::INFINITY, f64::NEG_INFINITY),
                }
            }
            until = until.min(group.until);
            lo = lo.max(group.band_lo);
            hi = hi.min(group.band_hi);
        }
        (hot.moving_lo, hot.moving_hi, hot.groups_until) = (lo, hi, until);
    }

    /// The index keys nearest the price, for the hot record. Unchanged by a move that
    /// crosses no key, so only recomputed after one (or after keys were added).
    fn refresh_keys(&mut self, hot: &mut Hot, price_f: f64) {
        self.keys_added = false;
        let (lo, hi) = (
            widen_down(price_f, PRICE_SLACK),
            widen_up(price_f, PRICE_SLACK),
        );
        let above = partition_near(&self.keys, hot.key_pos as usize, |k| k < lo);
        hot.key_pos = u32::try_from(above).unwrap_or(u32::MAX);
        hot.key_above = self.keys.get(above).copied().unwrap_or(f64::INFINITY);
        let below = partition_near(&self.keys, above, |k| k <= hi);
        hot.key_below = below
            .checked_sub(1)
            .and_then(|i| self.keys.get(i))
            .copied()
            .unwrap_or(f64::NEG_INFINITY);
        // The re-arm levels bound the quiet interval too.
        let above = self.rearm_keys.partition_point(|&k| k < lo);
        if let Some(&k) = self.rearm_keys.get(above) {
            hot.key_above = hot.key_above.min(k);
        }
        let below = self.rearm_keys.partition_point(|&k| k <= hi);
        if let Some(&k) = below.checked_sub(1).and_then(|i| self.rearm_keys.get(i)) {
            hot.key_below = hot.key_below.max(k);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.rules.capacity() * size_of::<CompiledRule>()
            + (self.dead.capacity() + self.free.capacity() + self.fresh.capacity()) * 4
            + (self.keys.capacity() + self.rearm_keys.capacity()) * 8
            + (self.slots.capacity() + self.rearm_slots.capacity()) * 4
            + self.groups.capacity() * size_of::<Group>()
            + self
                .groups
                .iter()
                .map(|g| g.keys.capacity() * 8 + g.slots.capacity() * 4)
                .sum::<usize>()
            + self.history.heap_bytes()
            + (self.pending.capacity() + self.expiry.capacity()) * size_of::<(i64, u32)>()
            + self.last_firings.capacity() * size_of::<Firing>()
            + self.bar_slots.capacity() * 4
            + self
                .indicators
                .iter()
                .map(IndicatorSeries::heap_bytes)
                .sum::<usize>()
            + self
                .bars
                .iter()
                .map(|b| b.closes.capacity() * size_of::<(i64, Decimal)>())
                .sum::<usize>()
            + self.venue.len()
            + self.symbol.len()
    }
}

fn head(queue: &BinaryHeap<Reverse<(i64, u32)>>) -> i64 {
    queue.peek().map_or(i64::MAX, |Reverse((at, _))| *at)
}

fn min_max(a: f64, b: f64) -> (f64, f64) {
    if a <= b { (a, b) } else { (b, a) }
}

fn push_range(keys: &[f64], slots: &[u32], hint: usize, lo: f64, hi: f64, out: &mut Vec<u32>) {
    let start = partition_near(keys, hint, |k| k < lo);
    let end = partition_near(keys, start, |k| k <= hi);
    if let Some(found) = slots.get(start..end) {
        out.extend_from_slice(found);
    }
}

/// `keys.partition_point(pred)` found by galloping out from `hint`: O(log distance), and a
/// small move reads only the cache lines next to the hint. Correct for any hint.
fn partition_near(keys: &[f64], hint: usize, pred: impl Fn(f64) -> bool) -> usize {
    let n = keys.len();
    let hint = hint.min(n);
    let holds = |i: usize| keys.get(i).is_some_and(|&k| pred(k));
    // Invariant: every index below `lo` holds, `hi` does not (or is `n`).
    let (lo, hi) = if holds(hint) {
        let (mut lo, mut step) = (hint + 1, 1);
        loop {
            let probe = hint.saturating_add(step);
            if probe >= n {
                break (lo, n);
            }
            if holds(probe) {
                lo = probe + 1;
                step *= 2;
            } else {
                break (lo, probe);
            }
        }
    } else {
        let (mut hi, mut step) = (hint, 1);
        loop {
            let Some(probe) = hint.checked_sub(step) else {
                break (0, hi);
            };
            if holds(probe) {
                break (probe + 1, hi);
            }
            hi = probe;
            step *= 2;
        }
    };
    lo + keys
        .get(lo..hi)
        .map_or(0, |range| range.partition_point(|&k| pred(k)))
}

fn insert_entry(keys: &mut Vec<f64>, slots: &mut Vec<u32>, key: f64, slot: u32, bulk: bool) {
    if bulk {
        keys.push(key);
        slots.push(slot);
        return;
    }
    let at = keys.partition_point(|&k| k <= key);
    keys.insert(at, key);
    slots.insert(at, slot);
}

fn sort_entries(keys: &mut [f64], slots: &mut [u32]) {
    let mut pairs: Vec<(f64, u32)> = keys.iter().copied().zip(slots.iter().copied()).collect();
    pairs.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    for ((key, slot), (k, s)) in keys.iter_mut().zip(slots.iter_mut()).zip(pairs) {
        *key = k;
        *slot = s;
    }
}

fn retain_entries(keys: &mut Vec<f64>, slots: &mut Vec<u32>, keep: impl Fn(u32) -> bool) {
    let mut kept = 0;
    for i in 0..slots.len() {
        if let (Some(&slot), Some(&key)) = (slots.get(i), keys.get(i))
            && keep(slot)
        {
            slots[kept] = slot;
            keys[kept] = key;
            kept += 1;
        }
    }
    keys.truncate(kept);
    slots.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_f64_is_close_and_ordered() {
        let cases = [
            "0.00000001234",
            "1",
            "64321.12",
            "65000",
            "99999999999.999999",
        ];
        for text in cases {
            let d: Decimal = text.parse().expect("decimal");
            let f = to_f64(d);
            let want: f64 = text.parse().expect("float");
            assert!(
                (f - want).abs() <= want.abs() * 1e-15,
                "{text}: {f} vs {want}"
            );
        }
        let a: Decimal = "1.0000000000000000001".parse().expect("decimal");
        assert!(to_f64(a) >= to_f64(Decimal::ONE));
    }

    #[test]
    fn galloping_from_any_hint_finds_the_partition_point() {
        let keys: Vec<f64> = (0..100).map(|i| f64::from(i / 3)).collect();
        for x in [-1.0, 0.0, 0.5, 7.0, 32.0, 33.0, 40.0] {
            let want = keys.partition_point(|&k| k < x);
            for hint in [0, 1, 5, 50, 98, 99, 100, 1_000] {
                assert_eq!(
                    partition_near(&keys, hint, |k| k < x),
                    want,
                    "{x} from {hint}"
                );
            }
        }
        assert_eq!(partition_near(&[], 3, |k| k < 1.0), 0);
    }

    #[test]
    fn range_query_is_inclusive_and_widened() {
        let keys = vec![1.0, 2.0, 2.0, 3.0, 4.0];
        let slots = vec![10, 20, 21, 30, 40];
        let mut out = Vec::new();
        push_range(&keys, &slots, 0, 2.0, 3.0, &mut out);
        assert_eq!(out, vec![20, 21, 30]);
        out.clear();
        push_range(
            &keys,
            &slots,
            4,
            widen_down(2.0, 0.0),
            widen_up(2.0, 0.0),
            &mut out,
        );
        assert_eq!(out, vec![20, 21]);
        out.clear();
        push_range(&keys, &slots, 2, 5.0, 6.0, &mut out);
        assert!(out.is_empty());
    }
}
