//! Streaming indicators: O(1) per closed bar, f64, and bit-for-bit TA-Lib.
//!
//! The reference is the C library shipped in the PyPI `TA-Lib` 0.8.2 wheels (TA-Lib
//! 0.8.x). Each indicator repeats TA-Lib's arithmetic in TA-Lib's order, fused
//! multiply-adds included, so on the same inputs it returns the same bits; the fixture
//! tests hold it to a relative error of 1e-9 so that older TA-Lib builds (which differ
//! in the last bits) would still pass. The conventions, bar 0 being the first bar fed:
//!
//! - [`Sma`]: running sum (add the new value, divide by N, subtract the oldest), as
//!   TA-Lib does — not re-summed, so it drifts exactly as TA-Lib's does. First value at
//!   bar N-1.
//! - [`Ema`]: seeded with the plain mean of the first N values (first value at bar N-1),
//!   then `ema = fma(x - ema, k, ema)` with `k = 2 / (N + 1)`.
//! - [`Rsi`]: Wilder. Changes from bar 1; gain = max(change, 0), loss = gain - change.
//!   The first average is the sum of the first N gains (losses) times 1/N (first value at
//!   bar N); then `avg = (avg * (N - 1) + x) * (1/N)`. RSI = `avg_gain / (avg_gain +
//!   avg_loss) * 100`, and **0** when the sum is not positive (no price change in the
//!   window), as TA-Lib gives it.
//! - [`Atr`]: Wilder. True range from bar 1 (greatest of high-low, |prev close - high|,
//!   |prev close - low|); the first ATR is the sum of the first N true ranges divided by N
//!   (first value at bar N); then `atr = fma(atr, a, tr * (1 - a))` with `a = (N-1)/N`.
//! - [`Macd`]: slow EMA from bar 0 (first at bar slow-1); the fast EMA is (re)seeded with
//!   the mean of the `fast` closes ending at bar slow-1, so both start there; the MACD
//!   line is fast - slow from bar slow-1, the signal an EMA of it, and all three outputs
//!   start at bar slow + signal - 2 (33 for 12/26/9).
//! - [`Bollinger`]: middle = the SMA above; the standard deviation is the population one,
//!   computed as TA-Lib 0.8 does: sums of `x - K` and `(x - K)^2` for a shift K (the first
//!   value, later the window mean), re-centred from scratch over the window when
//!   cancellation threatens (`mean((x-K)^2) * 1e-6 > variance`, or the leaving value's
//!   square exceeds `1e6 *` the sum), and every 32·N bars; after a re-centring a variance
//!   below `1e-12 * mean((x-K)^2)` is taken as 0. Bands are `mid ± std * k`.
//! - [`RollingMax`]/[`RollingMin`]: TA-Lib `MAX`/`MIN` (first value at bar N-1), with a
//!   monotonic deque.
//! - [`Vwap`]: not in TA-Lib. Session VWAP: `Σ(tp·v) / Σv` with the typical price
//!   `tp = (high + low + close) / 3`, reset when the session changes; no value while the
//!   session's volume is still zero.

use std::collections::VecDeque;

/// The running sum behind TA-Lib's `SMA`: add the new value, divide by N, subtract the
/// oldest value of the window just averaged. [`Sma`] keeps the window in its own ring.
#[derive(Debug, Clone)]
pub(crate) struct RunningSum {
    sum: f64,
    period: u32,
    seen: u32,
}

impl RunningSum {
    /// Periods are at most [`crate::config::MAX_PERIOD`]; 0 is treated as 1.
    pub(crate) fn new(period: usize) -> Self {
        RunningSum {
            sum: 0.0,
            period: period.clamp(1, u32::MAX as usize) as u32,
            seen: 0,
        }
    }

    /// Adds `x`; once `period` values are in, returns their mean and takes `oldest()` (the
    /// first of those values) out of the sum.
    #[inline]
    pub(crate) fn step(&mut self, x: f64, oldest: impl FnOnce() -> f64) -> Option<f64> {
        self.sum += x;
        if self.seen + 1 < self.period {
            self.seen += 1;
            return None;
        }
        self.seen = self.period;
        let v = self.sum / f64::from(self.period);
        self.sum -= oldest();
        Some(v)
    }

    pub(crate) fn period(&self) -> usize {
        self.period as usize
    }
}

/// Simple moving average (TA-Lib `SMA`).
#[derive(Debug, Clone)]
pub struct Sma {
    core: RunningSum,
    ring: Vec<f64>,
    pos: usize,
    value: Option<f64>,
}

impl Sma {
    /// A period of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let core = RunningSum::new(period);
        Sma {
            ring: vec![0.0; core.period()],
            core,
            pos: 0,
            value: None,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        let n = self.ring.len();
        self.ring[self.pos] = x;
        let next = if self.pos + 1 == n { 0 } else { self.pos + 1 };
        // `next` holds the oldest value of the window.
        let ring = &self.ring;
        if let Some(v) = self.core.step(x, || ring[next]) {
            self.value = Some(v);
        }
        self.pos = next;
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }

    pub fn period(&self) -> usize {
        self.core.period()
    }
}

/// Exponential moving average (TA-Lib `EMA`, default compatibility).
#[derive(Debug, Clone)]
pub struct Ema {
    k: f64,
    /// The sum of the first values while seeding, then the average.
    acc: f64,
    period: u32,
    seen: u32,
}

impl Ema {
    /// A period of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let period = period.clamp(1, u32::MAX as usize - 1) as u32;
        Ema {
            k: 2.0 / f64::from(period + 1),
            acc: 0.0,
            period,
            seen: 0,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.seen >= self.period {
            self.acc = (x - self.acc).mul_add(self.k, self.acc);
        } else {
            self.acc += x;
            self.seen += 1;
            if self.seen == self.period {
                self.acc /= f64::from(self.period);
            }
        }
        self.value()
    }

    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.seen >= self.period).then_some(self.acc)
    }
}

/// Relative strength index, Wilder's smoothing (TA-Lib `RSI`).
#[derive(Debug, Clone)]
pub struct Rsi {
    inv: f64,
    keep: f64,
    gain: f64,
    loss: f64,
    /// The previous close (NaN before the first).
    prev: f64,
    period: u32,
    changes: u32,
}

impl Rsi {
    /// A period below 2 is treated as 2 (TA-Lib's minimum).
    pub fn new(period: usize) -> Self {
        let period = period.clamp(2, u32::MAX as usize) as u32;
        Rsi {
            inv: 1.0 / f64::from(period),
            keep: f64::from(period - 1),
            gain: 0.0,
            loss: 0.0,
            prev: f64::NAN,
            period,
            changes: 0,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = std::mem::replace(&mut self.prev, x);
        if prev.is_nan() {
            return None;
        }
        let change = x - prev;
        let gain = if 0.0 < change { change } else { 0.0 };
        let loss = gain - change;
        if self.changes < self.period {
            self.gain += gain;
            self.loss += loss;
            self.changes += 1;
            if self.changes < self.period {
                return None;
            }
            self.gain *= self.inv;
            self.loss *= self.inv;
        } else {
            self.gain = (self.gain * self.keep + gain) * self.inv;
            self.loss = (self.loss * self.keep + loss) * self.inv;
        }
        self.value()
    }

    #[inline]
    pub fn value(&self) -> Option<f64> {
        if self.changes < self.period {
            return None;
        }
        let total = self.gain + self.loss;
        Some(if total > 0.0 {
            self.gain / total * 100.0
        } else {
            0.0
        })
    }
}

/// Average true range, Wilder's smoothing (TA-Lib `ATR`).
#[derive(Debug, Clone)]
pub struct Atr {
    a: f64,
    b: f64,
    /// The sum of the first true ranges while seeding, then the average.
    acc: f64,
    /// The previous close (NaN before the first).
    prev_close: f64,
    period: u32,
    seen: u32,
}

impl Atr {
    /// A period of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let period = period.clamp(1, u32::MAX as usize) as u32;
        let a = f64::from(period - 1) / f64::from(period);
        Atr {
            a,
            b: 1.0 - a,
            acc: 0.0,
            prev_close: f64::NAN,
            period,
            seen: 0,
        }
    }

    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let prev = std::mem::replace(&mut self.prev_close, close);
        if prev.is_nan() {
            return None;
        }
        let tr = true_range(high, low, prev);
        if self.seen >= self.period {
            self.acc = self.acc.mul_add(self.a, tr * self.b);
        } else {
            self.acc += tr;
            self.seen += 1;
            if self.seen == self.period {
                self.acc /= f64::from(self.period);
            }
        }
        self.value()
    }

    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.seen >= self.period).then_some(self.acc)
    }
}

/// TA-Lib's true range: high-low, replaced by a previous-close distance when larger.
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut greatest = high - low;
    let to_high = (prev_close - high).abs();
    if to_high > greatest {
        greatest = to_high;
    }
    let to_low = (prev_close - low).abs();
    if to_low > greatest {
        greatest = to_low;
    }
    greatest
}

/// One MACD output: the line, its signal, and the histogram (line - signal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    pub macd: f64,
    pub signal: f64,
    pub hist: f64,
}

/// Moving average convergence/divergence (TA-Lib `MACD`).
#[derive(Debug, Clone)]
pub struct Macd {
    slow: Ema,
    signal: Ema,
    fast_k: f64,
    /// The fast EMA (NaN until it is seeded at bar slow-1).
    fast: f64,
    /// The last `fast` closes, until the fast EMA is seeded.
    ring: Box<[f64]>,
    pos: u32,
}

impl Macd {
    /// `fast` must be below `slow` (the configuration checks it); periods of 0 count as 1.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        let fast = fast.max(1);
        let slow = slow.max(fast + 1);
        Macd {
            slow: Ema::new(slow),
            signal: Ema::new(signal.max(1)),
            fast_k: 2.0 / (fast + 1) as f64,
            fast: f64::NAN,
            ring: vec![0.0; fast].into_boxed_slice(),
            pos: 0,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<MacdValue> {
        let slow = self.slow.update(x);
        if !self.fast.is_nan() {
            self.fast = (x - self.fast).mul_add(self.fast_k, self.fast);
        } else {
            let n = self.ring.len();
            self.ring[self.pos as usize] = x;
            self.pos = ((self.pos as usize + 1) % n) as u32;
            if slow.is_some() {
                // TA-Lib seeds the fast EMA where the slow one starts, with the mean of the
                // `fast` closes ending there, summed oldest first.
                let mut sum = 0.0;
                for i in 0..n {
                    sum += self.ring[(self.pos as usize + i) % n];
                }
                self.fast = sum / n as f64;
            }
        }
        let slow = slow?;
        if self.fast.is_nan() {
            return None;
        }
        self.signal.update(self.fast - slow)?;
        self.value()
    }

    #[inline]
    pub fn value(&self) -> Option<MacdValue> {
        let signal = self.signal.value()?;
        let line = self.fast - self.slow.value()?;
        Some(MacdValue {
            macd: line,
            signal,
            hist: line - signal,
        })
    }
}

/// One Bollinger output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandsValue {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}

impl BandsValue {
    /// Band width relative to the middle band.
    pub fn bandwidth(&self) -> f64 {
        (self.upper - self.lower) / self.middle
    }
}

/// The arithmetic of TA-Lib 0.8's `BBANDS` (SMA middle, population deviation with a
/// shifted, self-re-centring sum of squares); [`Bollinger`] keeps the window.
#[derive(Debug, Clone)]
pub(crate) struct BandsCore {
    k: f64,
    inv: f64,
    sum: f64,
    shift: f64,
    s1: f64,
    s2: f64,
    period: u32,
    seen: u32,
    countdown: u32,
}

impl BandsCore {
    pub(crate) fn new(period: usize, k: f64) -> Self {
        // 32 × period must fit the countdown.
        let period = period.clamp(2, (u32::MAX / 32) as usize) as u32;
        BandsCore {
            k,
            inv: 1.0 / f64::from(period),
            sum: 0.0,
            shift: 0.0,
            s1: 0.0,
            s2: 0.0,
            period,
            seen: 0,
            countdown: 32 * period,
        }
    }

    pub(crate) fn period(&self) -> usize {
        self.period as usize
    }

    /// Adds `x`; `window(i)` is the i-th oldest of the `period` values ending with `x`
    /// (asked for only once `period` values are in).
    pub(crate) fn step(&mut self, x: f64, window: impl Fn(usize) -> f64) -> Option<BandsValue> {
        if self.seen == 0 {
            self.shift = x;
        }
        self.sum += x;
        let d = x - self.shift;
        self.s1 += d;
        self.s2 += d * d;
        if self.seen + 1 < self.period {
            self.seen += 1;
            return None;
        }
        self.seen = self.period;
        let m1 = self.s1 * self.inv;
        let mut var = self.s2 * self.inv - m1 * m1;
        let middle = self.sum / f64::from(self.period);
        let old = window(0);
        self.sum -= old;
        let d_old = old - self.shift;
        let d_old2 = d_old * d_old;
        self.s2 -= d_old2;
        let recenter = self.s2 * self.inv * 1e-6 > var || d_old2 > self.s2 * 1e6 || {
            self.countdown -= 1;
            self.countdown == 0
        };
        let std = if recenter {
            // Re-centre on the window mean and re-sum, oldest first, as TA-Lib does.
            let n = self.period as usize;
            let mut total = 0.0;
            for i in 0..n {
                total += window(i);
            }
            self.shift = total * self.inv;
            self.s1 = 0.0;
            self.s2 = 0.0;
            for i in 0..n {
                let dd = window(i) - self.shift;
                self.s1 += dd;
                self.s2 += dd * dd;
            }
            let m1 = self.s1 * self.inv;
            let q = self.s2 * self.inv;
            var = q - m1 * m1;
            let std = if q * 1e-12 > var || var == 0.0 {
                0.0
            } else {
                var.sqrt()
            };
            let d_old = old - self.shift;
            self.s1 -= d_old;
            self.s2 -= d_old * d_old;
            self.countdown = 32 * self.period;
            std
        } else {
            self.s1 -= d_old;
            if var == 0.0 { 0.0 } else { var.sqrt() }
        };
        let t = std * self.k;
        Some(BandsValue {
            upper: middle + t,
            middle,
            lower: middle - t,
        })
    }
}

/// Bollinger bands with an SMA middle and the population standard deviation (TA-Lib
/// `BBANDS` with `matype=SMA` and equal up/down deviations).
#[derive(Debug, Clone)]
pub struct Bollinger {
    core: BandsCore,
    ring: Vec<f64>,
    pos: usize,
    value: Option<BandsValue>,
}

impl Bollinger {
    /// A period below 2 is treated as 2 (TA-Lib's minimum).
    pub fn new(period: usize, k: f64) -> Self {
        let core = BandsCore::new(period, k);
        Bollinger {
            ring: vec![0.0; core.period()],
            core,
            pos: 0,
            value: None,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<BandsValue> {
        let n = self.ring.len();
        self.ring[self.pos] = x;
        let next = if self.pos + 1 == n { 0 } else { self.pos + 1 };
        let ring = &self.ring;
        if let Some(v) = self.core.step(x, |i| ring[(next + i) % n]) {
            self.value = Some(v);
        }
        self.pos = next;
        self.value
    }

    pub fn value(&self) -> Option<BandsValue> {
        self.value
    }
}

/// Session VWAP: resets whenever the session key changes.
#[derive(Debug, Clone, Default)]
pub struct Vwap {
    session: Option<i64>,
    pv: f64,
    volume: f64,
    value: Option<f64>,
}

impl Vwap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one bar of `session` (any key that changes when a new session starts).
    pub fn update(
        &mut self,
        session: i64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> Option<f64> {
        if self.session != Some(session) {
            self.session = Some(session);
            self.pv = 0.0;
            self.volume = 0.0;
            self.value = None;
        }
        let typical = (high + low + close) / 3.0;
        self.pv += typical * volume;
        self.volume += volume;
        if self.volume > 0.0 {
            self.value = Some(self.pv / self.volume);
        }
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Highest value of the last N (TA-Lib `MAX`), with a monotonic deque: amortised O(1).
#[derive(Debug, Clone)]
pub struct RollingMax {
    inner: Rolling<true>,
}

/// Lowest value of the last N (TA-Lib `MIN`).
#[derive(Debug, Clone)]
pub struct RollingMin {
    inner: Rolling<false>,
}

impl RollingMax {
    pub fn new(period: usize) -> Self {
        RollingMax {
            inner: Rolling::new(period),
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.inner.update(x)
    }
    /// The current extreme of the last N values, once N have been seen.
    pub fn value(&self) -> Option<f64> {
        self.inner.value()
    }
}

impl RollingMin {
    pub fn new(period: usize) -> Self {
        RollingMin {
            inner: Rolling::new(period),
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.inner.update(x)
    }
    pub fn value(&self) -> Option<f64> {
        self.inner.value()
    }
}

#[derive(Debug, Clone)]
struct Rolling<const MAX: bool> {
    period: u64,
    next: u64,
    deque: VecDeque<(u64, f64)>,
}

impl<const MAX: bool> Rolling<MAX> {
    fn new(period: usize) -> Self {
        let period = period.max(1);
        Rolling {
            period: period as u64,
            next: 0,
            deque: VecDeque::with_capacity(period + 1),
        }
    }

    fn update(&mut self, x: f64) -> Option<f64> {
        // Drop the values `x` dominates: they can never be the extreme again.
        while let Some(&(_, back)) = self.deque.back() {
            let dominated = if MAX { back <= x } else { back >= x };
            if !dominated {
                break;
            }
            self.deque.pop_back();
        }
        self.deque.push_back((self.next, x));
        self.next += 1;
        while let Some(&(idx, _)) = self.deque.front() {
            if idx + self.period > self.next - 1 {
                break;
            }
            self.deque.pop_front();
        }
        self.value()
    }

    fn value(&self) -> Option<f64> {
        if self.next >= self.period {
            self.deque.front().map(|&(_, v)| v)
        } else {
            None
        }
    }
}

/// The periods of the standard indicator set (the `tickwatch indicators` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndicatorPeriods {
    pub sma: usize,
    pub ema: usize,
    pub rsi: usize,
    pub macd_fast: usize,
    pub macd_slow: usize,
    pub macd_signal: usize,
    pub bb: usize,
    pub atr: usize,
}

impl Default for IndicatorPeriods {
    fn default() -> Self {
        IndicatorPeriods {
            sma: 20,
            ema: 20,
            rsi: 14,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            bb: 20,
            atr: 14,
        }
    }
}

/// The values of [`IndicatorSet`] after one bar (`None`: not enough bars yet).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndicatorValues {
    pub sma: Option<f64>,
    pub ema: Option<f64>,
    pub rsi: Option<f64>,
    pub macd: Option<MacdValue>,
    pub bb: Option<BandsValue>,
    pub atr: Option<f64>,
}

/// SMA, EMA, RSI, MACD, Bollinger and ATR fed together, one bar at a time.
#[derive(Debug, Clone)]
pub struct IndicatorSet {
    sma: Sma,
    ema: Ema,
    rsi: Rsi,
    macd: Macd,
    bb: Bollinger,
    atr: Atr,
}

impl IndicatorSet {
    /// Bollinger bands use 2 standard deviations.
    pub fn new(p: IndicatorPeriods, bb_k: f64) -> Self {
        IndicatorSet {
            sma: Sma::new(p.sma),
            ema: Ema::new(p.ema),
            rsi: Rsi::new(p.rsi),
            macd: Macd::new(p.macd_fast, p.macd_slow, p.macd_signal),
            bb: Bollinger::new(p.bb, bb_k),
            atr: Atr::new(p.atr),
        }
    }

    pub fn update(&mut self, high: f64, low: f64, close: f64) -> IndicatorValues {
        IndicatorValues {
            sma: self.sma.update(close),
            ema: self.ema.update(close),
            rsi: self.rsi.update(close),
            macd: self.macd.update(close),
            bb: self.bb.update(close),
            atr: self.atr.update(high, low, close),
        }
    }
}

impl Default for IndicatorSet {
    fn default() -> Self {
        IndicatorSet::new(IndicatorPeriods::default(), 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_values_arrive_where_ta_lib_puts_them() {
        let mut set = IndicatorSet::default();
        let mut first = [None::<usize>; 6];
        for i in 0..40 {
            let x = 100.0 + (i as f64 * 0.7).sin() * 5.0;
            let v = set.update(x + 1.0, x - 1.0, x);
            let has = [
                v.sma.is_some(),
                v.ema.is_some(),
                v.rsi.is_some(),
                v.macd.is_some(),
                v.bb.is_some(),
                v.atr.is_some(),
            ];
            for (slot, has) in first.iter_mut().zip(has) {
                if has && slot.is_none() {
                    *slot = Some(i);
                }
            }
        }
        assert_eq!(
            first,
            [Some(19), Some(19), Some(14), Some(33), Some(19), Some(14)]
        );
    }

    #[test]
    fn rolling_extremes_follow_the_window() {
        let mut max = RollingMax::new(3);
        let mut min = RollingMin::new(3);
        let xs = [5.0, 3.0, 4.0, 1.0, 2.0, 2.0, 7.0];
        let got: Vec<_> = xs.iter().map(|&x| (max.update(x), min.update(x))).collect();
        assert_eq!(got[1], (None, None));
        assert_eq!(got[2], (Some(5.0), Some(3.0)));
        assert_eq!(got[3], (Some(4.0), Some(1.0)));
        assert_eq!(got[5], (Some(2.0), Some(1.0)));
        assert_eq!(got[6], (Some(7.0), Some(2.0)));
    }

    #[test]
    fn vwap_resets_each_session_and_waits_for_volume() {
        let mut v = Vwap::new();
        assert_eq!(v.update(1, 10.0, 10.0, 10.0, 0.0), None);
        assert_eq!(v.update(1, 12.0, 9.0, 9.0, 2.0), Some(10.0));
        assert_eq!(v.update(1, 13.0, 13.0, 13.0, 2.0), Some(11.5));
        assert_eq!(v.update(2, 20.0, 20.0, 20.0, 1.0), Some(20.0));
    }
}
