//! The state of one (venue, symbol, interval) series and the classic signals.
//!
//! Every bar first updates the indicators, then each enabled detector looks at this bar's
//! values against the previous bar's. Comparisons go through a 1e-9 relative dead band
//! ([`crate::num`]), so a value that sits exactly on a line never flips a state.
//!
//! The classic signals (any interval):
//!
//! - **`rsi_oversold`**: RSI crosses from below `rsi.oversold` (30) to above it — it
//!   leaves oversold. Score = 40 + 2 × (30 - lowest RSI of the dip) + 10 if the close is
//!   above the long SMA (a dip in an uptrend).
//! - **`rsi_overbought`**: RSI crosses from above `rsi.overbought` (70) to below it.
//!   Score = 40 + 2 × (highest RSI - 70) + 10 if the close is below the long SMA.
//! - **`macd_bullish_cross`** / **`macd_bearish_cross`**: the MACD line crosses above
//!   (below) its signal line. Score = 50 + 25 × (distance of the MACD line below (above)
//!   zero, in ATRs, capped at 1) + 15 if the close is on the trend's side of the long SMA
//!   + 10 if relative volume ≥ 1.
//! - **`golden_cross`** / **`death_cross`**: SMA `ma_cross.fast` (50) crosses above
//!   (below) SMA `ma_cross.slow` (200). Score = 50 + 20 if the slow SMA is rising
//!   (falling) over `rising_bars` + 15 if the close is above (below) the fast SMA + 15 ×
//!   (relative volume - 1, capped).
//! - **`bb_breakout_up`** / **`bb_breakout_down`**: the close crosses above the upper
//!   (below the lower) Bollinger band. Score = 50 + 25 × (distance beyond the band in
//!   ATRs, capped at 1) + 25 × (relative volume - 1) / 2, capped.
//! - **`bb_squeeze`**: the band width `(upper - lower) / middle` becomes the lowest of
//!   the last `squeeze_lookback` (120) bars (fires on entering that state, not again while
//!   it lasts). Score = 40 + 60 × (1 - width / its average over the lookback).
//! - **`volume_surge`**: volume ≥ `surge_ratio` (3) × the average volume of the previous
//!   `volume.period` (20) bars ("relative volume"). Score = 50 + 50 × (ratio - k) / 2k.
//! - **`new_52w_high`** (daily candles): the close is above the highest high of the
//!   previous `lookback_bars` (252) bars; at most once per `cooldown_bars`. Score = 50 + 30
//!   × (bars since the previous such close, 120 → full) + 20 × (relative volume - 1).
//!
//! - **`closing_price_setup`** (daily candles, 종가 베팅): a strong day to buy at the close
//!   and sell at the next morning's open: gain over the previous close between
//!   `min_gain_pct` (4 %) and `max_gain_pct` (29 %), relative volume ≥ `volume_ratio` (2),
//!   close in the top of the day's range (`(close - low) / (high - low)` ≥ 0.8), close
//!   above SMA `sma_period` (20). Score = 40 + 20 × each of: gain beyond the minimum (3×
//!   the minimum → full), volume beyond the ratio (3× → full), close position beyond the
//!   minimum.
//!
//! VCP and the intraday scanner have their own modules ([`crate::vcp`],
//! [`crate::intraday`]).

use std::collections::VecDeque;

use tickwatch_schema::wire::{Interval, SignalKind};
use uuid::Uuid;

use crate::config::SignalsConfig;
use crate::hit::{Detail, Hit};
use crate::indicators::{Atr, BandsCore, BandsValue, Ema, Macd, MacdValue, Rsi, RunningSum};
use crate::intraday::{Intraday, IntradayBar, IntradayKinds, gap_hit};
use crate::num::{Cross, Crossing, ge, le, score, side, unit};
use crate::vcp::{Trend, Vcp, VcpBar};

/// The forward-return horizons of signal outcomes, in bars.
pub const HORIZONS: [u32; 3] = [1, 5, 20];

/// One closed, non-halted bar in f64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// The set of enabled kinds, as a bitmask over `SignalKind::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds(u32);

impl Kinds {
    pub fn from_config(cfg: &SignalsConfig) -> Self {
        Kinds(cfg.enabled.iter().fold(0, |m, k| m | bit(*k)))
    }
    pub fn has(self, kind: SignalKind) -> bool {
        self.0 & bit(kind) != 0
    }
    fn any(self, kinds: &[SignalKind]) -> bool {
        kinds.iter().any(|k| self.has(*k))
    }
}

/// `SignalKind::ALL` lists the kinds in declaration order, so a kind's discriminant is its
/// position there (a test pins it).
fn bit(kind: SignalKind) -> u32 {
    1u32 << (kind as usize).min(31)
}

/// A signal waiting for its forward returns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub id: Uuid,
    pub kind: SignalKind,
    pub close: f64,
    pub bar: u64,
}

/// One bar of a series' recent history.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rec {
    pub close: f64,
    pub high: f64,
    pub low: f64,
    pub volume: f64,
}

/// The last bars of a series (a power-of-two ring), for what needs whole windows: the
/// Bollinger re-centring and the VCP's swings and contraction volumes.
#[derive(Debug, Clone)]
pub(crate) struct Hist {
    recs: Box<[Rec]>,
    mask: u64,
}

impl Hist {
    fn new(min_len: usize) -> Self {
        let cap = min_len.max(2).next_power_of_two();
        Hist {
            recs: vec![Rec::default(); cap].into_boxed_slice(),
            mask: cap as u64 - 1,
        }
    }

    /// Bar number `bar` (must be one of the last `capacity` bars).
    #[inline]
    pub fn at(&self, bar: u64) -> &Rec {
        &self.recs[(bar & self.mask) as usize]
    }

    #[inline]
    fn set(&mut self, bar: u64, rec: Rec) {
        self.recs[(bar & self.mask) as usize] = rec;
    }
}

/// What a delay channel carries (while channels are being laid out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Close,
    Volume,
    Width,
    /// The value of SMA slot `i` (see `Series::sma_values`).
    Sma(usize),
    /// Block suffix extremes of [`BlockExtreme`] number `i`.
    Suffix(usize),
}

/// The channels of a series' delay lines, each a (source, delay) pair.
type Plan = Vec<(Source, u64)>;

/// The channel carrying `source` with delay `d`, added to the plan if new. A channel is
/// the position of its value in a bar's record, skipping the last value of each cache
/// line ([`SCRATCH`]).
fn channel(plan: &mut Plan, source: Source, d: u64) -> u8 {
    let i = match plan.iter().position(|c| *c == (source, d)) {
        Some(i) => i,
        None => {
            plan.push((source, d));
            plan.len() - 1
        }
    };
    (i + i / 7) as u8
}

/// The value of each record line that no channel uses: written ahead of the bar that
/// reads the record, to pull the line into the cache (see [`Delays::warm`]).
const SCRATCH: usize = 7;

/// Delay lines: a value needed `d` bars from now (the oldest value of a moving window
/// when it leaves, an SMA's value for a "rising" check, a block extreme) is written now
/// into the record of bar `t + d`, so that each bar reads one record — the one written
/// for it — instead of one distant ring slot per window. The writes are scattered but
/// never wait; distant reads were what stalled with a thousand series interleaved.
#[derive(Debug, Clone)]
struct Delays {
    /// Records of `1 << shift` values (a power of two of whole cache lines), one per bar
    /// of the ring.
    lines: Box<[Line]>,
    /// The ring's bar mask, shifted to a value index.
    mask: usize,
    shift: u32,
}

#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line([f64; 8]);

impl Delays {
    fn new(plan: &Plan) -> Self {
        let longest = plan.iter().map(|c| c.1).max().unwrap_or(0) as usize;
        let cap = (longest + 1).max(2).next_power_of_two();
        let slots = plan.len() + plan.len().div_ceil(7);
        let stride = slots.max(1).next_power_of_two().max(8);
        let shift = stride.trailing_zeros();
        Delays {
            lines: vec![Line([f64::NAN; 8]); cap * stride / 8].into_boxed_slice(),
            mask: (cap - 1) << shift,
            shift,
        }
    }

    /// The value index of channel `ch` at bar `bar`.
    #[inline]
    fn index(&self, ch: u8, bar: u64) -> usize {
        ((bar as usize) << self.shift & self.mask) | usize::from(ch)
    }

    /// What channel `ch` delivers at bar `t`.
    #[inline]
    fn get(&self, ch: u8, t: u64) -> f64 {
        let i = self.index(ch, t);
        self.lines[i >> 3].0[i & 7]
    }

    /// Writes `x` for channel `ch` at bar `t` (at most the channel's delay ahead).
    #[inline]
    fn put(&mut self, ch: u8, t: u64, x: f64) {
        let i = self.index(ch, t);
        self.lines[i >> 3].0[i & 7] = x;
    }

    /// Writes the scratch value of every line of bar `t`'s record: the record was last
    /// written tens of bars ago and has left the caches, and its reads would stall the
    /// bar; a store fetches the lines without stalling (see `SignalEngine::process`).
    #[inline]
    fn warm(&mut self, t: u64) {
        let first = self.index(0, t) >> 3;
        let lines = (1usize << self.shift) >> 3;
        if let Some(ls) = self.lines.get_mut(first..first + lines) {
            for l in ls {
                l.0[SCRATCH] = 0.0;
            }
        }
    }

    /// One value of every cache line of bar `t`'s record (see [`Series::touch`]).
    #[inline]
    fn touch(&self, t: u64) -> u64 {
        let first = self.index(0, t) >> 3;
        let lines = (1usize << self.shift) >> 3;
        self.lines
            .get(first..first + lines)
            .map_or(0, |ls| ls.iter().fold(0, |x, l| x ^ l.0[0].to_bits()))
    }
}

/// A moving average whose leaving values come down a delay channel.
#[derive(Debug, Clone)]
struct Window {
    sum: RunningSum,
    delay: u32,
    channel: u8,
}

impl Window {
    fn new(period: usize, source: Source, plan: &mut Plan) -> Self {
        let sum = RunningSum::new(period);
        let d = sum.period() as u64 - 1;
        Window {
            channel: channel(plan, source, d),
            delay: d as u32,
            sum,
        }
    }

    /// Adds bar `t`'s value: sends it to where it will leave the window, then averages.
    #[inline]
    fn step(&mut self, x: f64, delays: &mut Delays, t: u64) -> Option<f64> {
        delays.put(self.channel, t + u64::from(self.delay), x);
        let ch = self.channel;
        let delays = &*delays;
        self.sum.step(x, || delays.get(ch, t))
    }
}

/// Highest (or lowest) of the last n values, fed once per bar, in O(1) amortised without
/// a deque (van Herk / Gil-Werman): the inputs are cut into blocks of n; a window is the
/// tail of the previous block and the head of the current one. The head's extreme is a
/// running value; the tails' extremes are computed once per block, when it ends, and
/// each is sent down a delay channel to the bar that needs it — so a bar reads only the
/// record its other delayed values share. Exact: the same value a scan would find.
#[derive(Debug, Clone)]
struct BlockExtreme<const MAX: bool> {
    block: Box<[f64]>,
    head: f64,
    /// The last result (NaN: none yet).
    value: f64,
    /// A whole block has been seen (so every window is full).
    full: bool,
    /// Position of the next value in its block.
    k: u32,
    channel: u8,
}

impl<const MAX: bool> BlockExtreme<MAX> {
    fn new(n: usize, id: usize, plan: &mut Plan) -> Self {
        let n = n.max(1);
        BlockExtreme {
            block: vec![0.0; n].into_boxed_slice(),
            head: 0.0,
            value: f64::NAN,
            full: false,
            k: 0,
            channel: channel(plan, Source::Suffix(id), n as u64 - 1),
        }
    }

    #[inline]
    fn better(a: f64, b: f64) -> f64 {
        if (a >= b) == MAX { a } else { b }
    }

    fn value(&self) -> Option<f64> {
        opt(self.value)
    }

    /// Feeds bar `t`'s value; the extreme of the last n values once n are in.
    #[inline]
    fn update(&mut self, x: f64, t: u64, delays: &mut Delays) -> Option<f64> {
        let k = self.k as usize;
        let n = self.block.len();
        let last = k + 1 >= n;
        if let Some(slot) = self.block.get_mut(k) {
            *slot = x;
        }
        self.head = if k == 0 {
            x
        } else {
            Self::better(self.head, x)
        };
        if last {
            self.full = true;
            self.value = self.head;
            self.end_block(x, t, delays);
        } else {
            self.k += 1;
            self.value = if self.full {
                Self::better(delays.get(self.channel, t), self.head)
            } else {
                f64::NAN
            };
        }
        self.value()
    }

    /// The block (ending with `x` at bar `t`) is whole: the window starting at its
    /// position j ends at bar t + j, and gets the extreme of the block from j on.
    #[cold]
    fn end_block(&mut self, x: f64, t: u64, delays: &mut Delays) {
        let mut tail = x;
        for (j, &v) in self.block.iter().enumerate().skip(1).rev() {
            tail = Self::better(v, tail);
            delays.put(self.channel, t + j as u64, tail);
        }
        self.k = 0;
    }
}

/// One of the trend template's SMAs: its own window, or the moving-average cross's
/// fast or slow one when the period is the same (then the values are the same bits).
#[derive(Debug, Clone)]
enum TrendSma {
    Fast,
    Slow,
    Own(Window),
}

/// This bar's SMAs the daily detectors use.
#[derive(Debug, Clone, Copy)]
struct DailySmas {
    closing: Option<f64>,
    fast: Option<f64>,
    slow: Option<f64>,
}

/// `Some(x)` unless `x` is the NaN that marks "no value" in the compact state.
#[inline]
fn opt(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// Lag slots: the long SMA, then the trend template's three.
const LAGGED: usize = 4;
const NO_CHANNEL: u8 = u8::MAX;

/// All state of one series. Laid out (`repr(C)`) with what every bar touches first and
/// packed (NaN for "no value"): with a thousand series interleaved, each bar's cost is
/// the cache lines it pulls in.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Series {
    /// Written, never read: a store into the first cache line, which holds what
    /// [`Series::warm_next`] reads (see `SignalEngine::process`).
    reserve: u8,
    delays: Delays,
    /// Non-halted bars processed so far.
    pub bars: u64,
    prev_close: f64,
    vol_avg_value: f64,
    vol_avg_long_value: f64,
    rsi_extreme: f64,
    /// This bar's SMAs for the "rising" checks: the long one, then the trend three.
    sma_values: [f64; LAGGED],
    hist: Hist,
    /// `None` when it is the Bollinger middle band (same period: the same running sum).
    closing_sma: Option<Window>,
    fast_sma: Window,
    slow_sma: Window,
    vol_avg: Window,
    width_avg: Window,
    ema: Ema,
    rsi: Rsi,
    atr: Atr,
    bb: BandsCore,
    macd: Macd,
    width_min: BlockExtreme<false>,
    pub pending: VecDeque<Pending>,
    kinds: Kinds,
    lag_delay: u32,
    lag_channels: [u8; LAGGED],
    bb_channel: u8,
    bb_delay: u32,
    daily: bool,
    intraday_interval: bool,
    squeezed: bool,
    rsi_low: Cross,
    rsi_high: Cross,
    macd_cross: Cross,
    ma_cross: Cross,
    upper_cross: Cross,
    lower_cross: Cross,

    // Daily series only.
    high_max: Option<BlockExtreme<true>>,
    low_min: Option<BlockExtreme<false>>,
    /// The trend template's SMAs and the 50-bar volume average (VCP series only).
    trend_sma: Option<[TrendSma; 3]>,
    vol_avg_long: Option<Window>,
    last_new_high: Option<u64>,
    last_high_signal: Option<u64>,
    /// Inline, not boxed: one cache miss less on the way to it every bar.
    vcp: Option<Vcp>,
    // Intraday series only.
    intraday: Option<Intraday>,
}

impl Series {
    pub fn new(cfg: &SignalsConfig, kinds: Kinds, venue: &str, interval: Interval) -> Self {
        let daily = interval == Interval::D1;
        let intraday_interval = interval < Interval::D1;
        let vcp_on = daily && kinds.any(&[SignalKind::VcpSetup, SignalKind::VcpBreakout]);
        let intraday_on = intraday_interval
            && kinds.any(&[
                SignalKind::GapUp,
                SignalKind::OpeningRangeBreakout,
                SignalKind::VwapReclaim,
            ]);
        let mut history = cfg.bollinger.period;
        if vcp_on {
            history = history.max(cfg.vcp.max_base_bars + 2 * cfg.vcp.swing_bars + 1);
        }
        // Channels are laid out so that those written with the same delay share a cache
        // line of the record they are written to: each bar then writes one line per
        // distinct delay (the records are far apart, and every line is a cache miss).
        // First the delays of the Bollinger and volume windows and of the fast SMA, with
        // the block extremes (which write only when a block ends) filling that line; then
        // the lags of the "rising" checks and the long windows.
        let mut plan = Plan::new();
        let [t0, t1, t2] = cfg.vcp.trend_smas;
        let lag = cfg.ma_cross.rising_bars as u64;
        let vol_avg = Window::new(cfg.volume.period, Source::Volume, &mut plan);
        let bb = BandsCore::new(cfg.bollinger.period, cfg.bollinger.std_devs);
        // The Bollinger's leaving value comes down a channel too.
        let bb_delay = bb.period() as u64 - 1;
        let bb_channel = channel(&mut plan, Source::Close, bb_delay);
        // An SMA of the closes with the period of one computed anyway is that one: the
        // same additions, division and subtractions in the same order, from bar 0.
        let closing_sma = (cfg.closing.sma_period != cfg.bollinger.period
            || cfg.bollinger.period < 2)
            .then(|| Window::new(cfg.closing.sma_period, Source::Close, &mut plan));
        let fast_sma = Window::new(cfg.ma_cross.fast, Source::Close, &mut plan);
        let vol_avg_long =
            vcp_on.then(|| Window::new(cfg.vcp.volume_period, Source::Volume, &mut plan));
        let width_min = BlockExtreme::new(cfg.bollinger.squeeze_lookback, 0, &mut plan);
        let high_max = daily.then(|| BlockExtreme::new(cfg.high_52w.lookback_bars, 1, &mut plan));
        let low_min = daily.then(|| BlockExtreme::new(cfg.high_52w.lookback_bars, 2, &mut plan));
        let mut lag_channels = [NO_CHANNEL; LAGGED];
        let lagged_slots = if vcp_on { LAGGED } else { 1 };
        for (slot, lag_ch) in lag_channels.iter_mut().enumerate().take(lagged_slots) {
            *lag_ch = channel(&mut plan, Source::Sma(slot), lag);
        }
        let slow_sma = Window::new(cfg.ma_cross.slow, Source::Close, &mut plan);
        let width_avg = Window::new(cfg.bollinger.squeeze_lookback, Source::Width, &mut plan);
        let mut trend = |period: usize| {
            if period.max(1) == cfg.ma_cross.fast.max(1) {
                TrendSma::Fast
            } else if period.max(1) == cfg.ma_cross.slow.max(1) {
                TrendSma::Slow
            } else {
                TrendSma::Own(Window::new(period, Source::Close, &mut plan))
            }
        };
        let trend_sma = vcp_on.then(|| [trend(t0), trend(t1), trend(t2)]);
        Series {
            reserve: 0,
            bars: 0,
            prev_close: f64::NAN,
            vol_avg_value: f64::NAN,
            vol_avg_long_value: f64::NAN,
            rsi_extreme: 50.0,
            sma_values: [f64::NAN; LAGGED],
            hist: Hist::new(history + 1),
            delays: Delays::new(&plan),
            closing_sma,
            fast_sma,
            slow_sma,
            vol_avg,
            width_avg,
            ema: Ema::new(cfg.indicators.ema_period),
            rsi: Rsi::new(cfg.rsi.period),
            atr: Atr::new(cfg.indicators.atr_period),
            bb,
            macd: Macd::new(cfg.macd.fast, cfg.macd.slow, cfg.macd.signal),
            width_min,
            pending: VecDeque::new(),
            kinds,
            lag_delay: lag as u32,
            lag_channels,
            bb_channel,
            bb_delay: bb_delay as u32,
            daily,
            intraday_interval,
            squeezed: false,
            rsi_low: Cross::default(),
            rsi_high: Cross::default(),
            macd_cross: Cross::default(),
            ma_cross: Cross::default(),
            upper_cross: Cross::default(),
            lower_cross: Cross::default(),
            high_max,
            low_min,
            trend_sma,
            vol_avg_long,
            last_new_high: None,
            last_high_signal: None,
            vcp: vcp_on.then(|| Vcp::new(&cfg.vcp)),
            intraday: intraday_on.then(|| {
                Intraday::new(
                    cfg.intraday,
                    cfg.sessions.offset_ms(venue),
                    interval.as_ms(),
                )
            }),
        }
    }

    /// Reads one value from each cache line outside this struct that the next bar reads
    /// — its delay-line record, the oldest pending signal, the VCP's recent history —
    /// and returns them mixed. With a thousand series interleaved these lines have left
    /// the near caches since the series' last bar; loaded together up front, their
    /// misses overlap instead of each stalling the bar where it is first used. (Safe
    /// Rust has no prefetch instruction; loads whose results are kept do the same.
    /// Lines the bar only writes are left out: a store miss does not stall.)
    #[inline]
    pub fn touch(&self, cfg: &SignalsConfig) -> u64 {
        let t = self.bars;
        let mut x = self.delays.touch(t);
        if let Some(p) = self.pending.front() {
            x ^= p.bar;
        }
        if let Some(vcp) = &self.vcp {
            x ^= vcp.touch(&cfg.vcp, &self.hist, t);
        }
        x
    }

    /// Pulls this struct's first cache line towards the core without waiting for it: a
    /// store retires at once, and the line is fetched in the background.
    #[inline]
    pub fn reserve(&mut self) {
        self.reserve = 0;
    }

    /// Pulls the delay-line record of the next bar towards the core without waiting
    /// for it (stores into its scratch values; see [`Delays::warm`]). Reads only this
    /// struct's first cache line.
    #[inline]
    pub fn warm_next(&mut self) {
        self.delays.warm(self.bars);
    }

    /// Updates every indicator with `bar` and appends what fires to `out`.
    pub fn on_bar(&mut self, bar: &Bar, cfg: &SignalsConfig, out: &mut Vec<Hit>) {
        let t = self.bars;
        self.bars += 1;
        let c = bar.close;
        let prev_close = opt(std::mem::replace(&mut self.prev_close, c));
        self.hist.set(
            t,
            Rec {
                close: c,
                high: bar.high,
                low: bar.low,
                volume: bar.volume,
            },
        );

        // Averages "of the previous bars" are read before this bar enters them.
        let vol_avg_prev = opt(self.vol_avg_value);
        self.vol_avg_value = self
            .vol_avg
            .step(bar.volume, &mut self.delays, t)
            .unwrap_or(f64::NAN);
        let rel_volume = vol_avg_prev.filter(|a| *a > 0.0).map(|a| bar.volume / a);
        let closing_sma = match &mut self.closing_sma {
            Some(w) => w.step(c, &mut self.delays, t),
            None => None, // taken from the bands below
        };
        let fast = self.fast_sma.step(c, &mut self.delays, t);
        let slow = self.slow_sma.step(c, &mut self.delays, t);
        self.sma_values[0] = slow.unwrap_or(f64::NAN);

        self.ema.update(c);
        let rsi = self.rsi.update(c);
        let macd = self.macd.update(c);
        let (bb_ch, n) = (self.bb_channel, self.bb.period() as u64);
        self.delays.put(bb_ch, t + u64::from(self.bb_delay), c);
        let (hist, delays) = (&self.hist, &self.delays);
        // The leaving value by its channel; the whole window (re-centring) from history.
        let bands = self.bb.step(c, |i| {
            if i == 0 {
                delays.get(bb_ch, t)
            } else {
                hist.at(t + 1 - n + i as u64).close
            }
        });
        let atr = self.atr.update(bar.high, bar.low, c);
        let closing_sma = match &self.closing_sma {
            Some(_) => closing_sma,
            None => bands.map(|b| b.middle),
        };

        if let Some(rsi) = rsi {
            self.rsi_signals(rsi, c, slow, &cfg.rsi, out);
        }
        if let Some(m) = macd {
            self.macd_signals(m, c, atr, slow, rel_volume, out);
        }
        if let (Some(fast), Some(slow)) = (fast, slow) {
            self.ma_cross_signals(fast, slow, c, rel_volume, out);
        }
        if let Some(b) = bands {
            self.band_signals(t, b, c, atr, rel_volume, out);
        }
        if let Some(rel) = rel_volume {
            let k = cfg.volume.surge_ratio;
            if self.kinds.has(SignalKind::VolumeSurge) && ge(rel, k) {
                let s = 50.0 + 50.0 * unit((rel - k) / (2.0 * k));
                out.push(
                    Hit::new(SignalKind::VolumeSurge, score(s))
                        .num("volume_ratio", rel)
                        .num(
                            "change_pct",
                            prev_close.map_or(0.0, |p| (c / p - 1.0) * 100.0),
                        )
                        .with(
                            "bar",
                            Detail::Text(if c >= bar.open { "up" } else { "down" }),
                        ),
                );
            }
        }

        if self.daily {
            let smas = DailySmas {
                closing: closing_sma,
                fast,
                slow,
            };
            self.daily_signals(t, bar, prev_close, smas, rel_volume, cfg, out);
        }
        if self.intraday_interval
            && let Some(day) = &mut self.intraday
        {
            let ib = IntradayBar {
                ts: bar.ts,
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: c,
                volume: bar.volume,
                prev_close,
                rel_volume,
            };
            let kinds = IntradayKinds {
                gap: self.kinds.has(SignalKind::GapUp),
                orb: self.kinds.has(SignalKind::OpeningRangeBreakout),
                vwap: self.kinds.has(SignalKind::VwapReclaim),
            };
            day.on_bar(&ib, kinds, out);
        }
        // This bar's SMAs, for the "rising" checks `rising_bars` from now.
        let at = t + u64::from(self.lag_delay);
        for slot in 0..LAGGED {
            let ch = self.lag_channels[slot];
            if ch != NO_CHANNEL {
                self.delays.put(ch, at, self.sma_values[slot]);
            }
        }
    }

    /// +1 rising, -1 falling, 0 unknown or flat, for lag slot `slot`.
    fn slope(&self, slot: usize, scale: f64) -> i8 {
        let ch = self.lag_channels[slot];
        if ch == NO_CHANNEL {
            return 0;
        }
        let then = self.delays.get(ch, self.bars - 1);
        let now = self.sma_values[slot];
        if now.is_nan() || then.is_nan() {
            0
        } else {
            side(now, then, scale)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn daily_signals(
        &mut self,
        t: u64,
        bar: &Bar,
        prev_close: Option<f64>,
        smas: DailySmas,
        rel_volume: Option<f64>,
        cfg: &SignalsConfig,
        out: &mut Vec<Hit>,
    ) {
        let c = bar.close;
        let high_max_prev = self.high_max.as_ref().and_then(BlockExtreme::value);
        let delays = &mut self.delays;
        let high_max = self
            .high_max
            .as_mut()
            .and_then(|m| m.update(bar.high, t, delays));
        let low_min = self
            .low_min
            .as_mut()
            .and_then(|m| m.update(bar.low, t, delays));
        if let Some(prev_high) = high_max_prev {
            self.new_high_signal(t, c, prev_high, rel_volume, cfg, out);
        }
        if let (Some(prev), Some(sma)) = (prev_close, smas.closing) {
            self.closing_signal(bar, prev, sma, rel_volume, cfg, out);
        }
        if let (Some(prev), Some(rel)) = (prev_close, rel_volume)
            && self.kinds.has(SignalKind::GapUp)
            && prev > 0.0
        {
            out.extend(gap_hit(bar.open / prev - 1.0, rel, &cfg.intraday));
        }
        let (Some(trend_sma), Some(vol_long)) = (&mut self.trend_sma, &mut self.vol_avg_long)
        else {
            return;
        };
        let vol_long_prev = opt(self.vol_avg_long_value);
        self.vol_avg_long_value = vol_long
            .step(bar.volume, &mut self.delays, t)
            .unwrap_or(f64::NAN);
        for (i, sma) in trend_sma.iter_mut().enumerate() {
            let value = match sma {
                TrendSma::Fast => smas.fast,
                TrendSma::Slow => smas.slow,
                TrendSma::Own(w) => w.step(c, &mut self.delays, t),
            };
            self.sma_values[i + 1] = value.unwrap_or(f64::NAN);
        }
        let trend = self.trend_template(c, high_max, low_min, cfg);
        let vb = VcpBar {
            index: t,
            close: c,
            volume_avg: vol_long_prev,
            trend,
        };
        let setup = self.kinds.has(SignalKind::VcpSetup);
        let breakout = self.kinds.has(SignalKind::VcpBreakout);
        if let Some(vcp) = &mut self.vcp {
            vcp.on_bar(&cfg.vcp, &vb, &self.hist, setup, breakout, out);
        }
    }

    /// The VCP's stage-2 trend template on the current bar.
    fn trend_template(
        &self,
        close: f64,
        high_52w: Option<f64>,
        low_52w: Option<f64>,
        cfg: &SignalsConfig,
    ) -> Trend {
        let no = Trend {
            ok: false,
            strength: 0.0,
        };
        let (Some(hi), Some(lo)) = (high_52w, low_52w) else {
            return no;
        };
        let mut longest = None;
        for slot in 1..LAGGED {
            let Some(v) = opt(self.sma_values[slot]) else {
                return no;
            };
            if side(close, v, close) <= 0 || self.slope(slot, close) <= 0 {
                return no;
            }
            longest = Some(v);
        }
        let v = &cfg.vcp;
        let below_high = (hi - close) / hi * 100.0;
        let above_low = (close / lo - 1.0) * 100.0;
        if !le(below_high, v.max_below_high_pct) || !ge(above_low, v.min_above_low_pct) {
            return no;
        }
        let over_sma = longest.map_or(0.0, |s| unit((close / s - 1.0) / 0.5));
        let near_high = unit(1.0 - below_high / v.max_below_high_pct.max(1e-9));
        Trend {
            ok: true,
            strength: 0.5 * (over_sma + near_high),
        }
    }

    fn rsi_signals(
        &mut self,
        rsi: f64,
        close: f64,
        long_sma: Option<f64>,
        cfg: &crate::config::RsiConfig,
        out: &mut Vec<Hit>,
    ) {
        // Track the extreme of the current excursion before the crossing updates the side.
        if side(rsi, cfg.oversold, 100.0) < 0 {
            self.rsi_extreme = if self.rsi_low.last() < 0 {
                self.rsi_extreme.min(rsi)
            } else {
                rsi
            };
        }
        let dip = self.rsi_extreme;
        if self.rsi_low.update(rsi, cfg.oversold, 100.0) == Crossing::Up
            && self.kinds.has(SignalKind::RsiOversold)
        {
            let with_trend = long_sma.is_some_and(|s| close > s);
            let s = 40.0 + 2.0 * (cfg.oversold - dip) + if with_trend { 10.0 } else { 0.0 };
            out.push(
                Hit::new(SignalKind::RsiOversold, score(s))
                    .num("rsi", rsi)
                    .num("min_rsi", dip),
            );
        }
        if side(rsi, cfg.overbought, 100.0) > 0 {
            self.rsi_extreme = if self.rsi_high.last() > 0 {
                self.rsi_extreme.max(rsi)
            } else {
                rsi
            };
        }
        let peak = self.rsi_extreme;
        if self.rsi_high.update(rsi, cfg.overbought, 100.0) == Crossing::Down
            && self.kinds.has(SignalKind::RsiOverbought)
        {
            let against = long_sma.is_some_and(|s| close < s);
            let s = 40.0 + 2.0 * (peak - cfg.overbought) + if against { 10.0 } else { 0.0 };
            out.push(
                Hit::new(SignalKind::RsiOverbought, score(s))
                    .num("rsi", rsi)
                    .num("max_rsi", peak),
            );
        }
    }

    fn macd_signals(
        &mut self,
        m: MacdValue,
        close: f64,
        atr: Option<f64>,
        long_sma: Option<f64>,
        rel_volume: Option<f64>,
        out: &mut Vec<Hit>,
    ) {
        let crossing = self.macd_cross.update(m.macd, m.signal, close);
        let (kind, sign) = match crossing {
            Crossing::Up => (SignalKind::MacdBullishCross, 1.0),
            Crossing::Down => (SignalKind::MacdBearishCross, -1.0),
            Crossing::None => return,
        };
        if !self.kinds.has(kind) {
            return;
        }
        let stretch = atr
            .filter(|a| *a > 0.0)
            .map_or(0.0, |a| unit(-sign * m.macd / a));
        let with_trend = long_sma.is_some_and(|s| sign * (close - s) > 0.0);
        let volume = rel_volume.is_some_and(|r| r >= 1.0);
        let s = 50.0
            + 25.0 * stretch
            + if with_trend { 15.0 } else { 0.0 }
            + if volume { 10.0 } else { 0.0 };
        out.push(
            Hit::new(kind, score(s))
                .num("macd", m.macd)
                .num("signal", m.signal)
                .num("hist", m.hist),
        );
    }

    fn ma_cross_signals(
        &mut self,
        fast: f64,
        slow: f64,
        close: f64,
        rel_volume: Option<f64>,
        out: &mut Vec<Hit>,
    ) {
        let (kind, sign) = match self.ma_cross.update(fast, slow, close) {
            Crossing::Up => (SignalKind::GoldenCross, 1),
            Crossing::Down => (SignalKind::DeathCross, -1),
            Crossing::None => return,
        };
        if !self.kinds.has(kind) {
            return;
        }
        let slope = self.slope(0, close);
        let slope_ok = slope == sign;
        let side_ok = side(close, fast, close) == sign;
        let vol = rel_volume.map_or(0.0, |r| unit(r - 1.0));
        let s = 50.0
            + if slope_ok { 20.0 } else { 0.0 }
            + if side_ok { 15.0 } else { 0.0 }
            + 15.0 * vol;
        out.push(
            Hit::new(kind, score(s))
                .num("sma_fast", fast)
                .num("sma_slow", slow)
                .with(
                    "slow_trend",
                    Detail::Text(match slope {
                        1 => "rising",
                        -1 => "falling",
                        _ => "flat",
                    }),
                ),
        );
    }

    fn band_signals(
        &mut self,
        t: u64,
        b: BandsValue,
        close: f64,
        atr: Option<f64>,
        rel_volume: Option<f64>,
        out: &mut Vec<Hit>,
    ) {
        let vol = rel_volume.map_or(0.0, |r| unit((r - 1.0) / 2.0));
        let beyond = |d: f64| atr.filter(|a| *a > 0.0).map_or(0.0, |a| unit(d / a));
        if self.upper_cross.update(close, b.upper, close) == Crossing::Up
            && self.kinds.has(SignalKind::BollingerBreakoutUp)
        {
            let s = 50.0 + 25.0 * beyond(close - b.upper) + 25.0 * vol;
            out.push(
                Hit::new(SignalKind::BollingerBreakoutUp, score(s))
                    .num("upper", b.upper)
                    .num("middle", b.middle),
            );
        }
        if self.lower_cross.update(close, b.lower, close) == Crossing::Down
            && self.kinds.has(SignalKind::BollingerBreakoutDown)
        {
            let s = 50.0 + 25.0 * beyond(b.lower - close) + 25.0 * vol;
            out.push(
                Hit::new(SignalKind::BollingerBreakoutDown, score(s))
                    .num("lower", b.lower)
                    .num("middle", b.middle),
            );
        }
        let width = b.bandwidth();
        let lowest = self.width_min.update(width, t, &mut self.delays);
        // The window's widths are those of its last n bars, all of which had bands.
        let average = self.width_avg.step(width, &mut self.delays, t);
        if let (Some(lowest), Some(average)) = (lowest, average) {
            let at_low = le(width, lowest);
            if at_low && !self.squeezed && self.kinds.has(SignalKind::BollingerSqueeze) {
                let ratio = if average > 0.0 { width / average } else { 1.0 };
                let s = 40.0 + 60.0 * unit(1.0 - ratio);
                out.push(
                    Hit::new(SignalKind::BollingerSqueeze, score(s))
                        .num("bandwidth", width)
                        .num("avg_bandwidth", average),
                );
            }
            self.squeezed = at_low;
        }
    }

    fn new_high_signal(
        &mut self,
        index: u64,
        close: f64,
        prev_high: f64,
        rel_volume: Option<f64>,
        cfg: &SignalsConfig,
        out: &mut Vec<Hit>,
    ) {
        if side(close, prev_high, close) <= 0 {
            return;
        }
        let cap = 120;
        let since = self.last_new_high.map_or(cap, |b| (index - b).min(cap));
        self.last_new_high = Some(index);
        let cooled = self
            .last_high_signal
            .is_none_or(|b| index - b > cfg.high_52w.cooldown_bars as u64);
        if !cooled || !self.kinds.has(SignalKind::New52wHigh) {
            return;
        }
        self.last_high_signal = Some(index);
        let vol = rel_volume.map_or(0.0, |r| unit(r - 1.0));
        let s = 50.0 + 30.0 * unit(since as f64 / cap as f64) + 20.0 * vol;
        out.push(
            Hit::new(SignalKind::New52wHigh, score(s))
                .num("prior_high", prev_high)
                .with("bars_since_last_high", Detail::Int(since)),
        );
    }

    fn closing_signal(
        &mut self,
        bar: &Bar,
        prev: f64,
        sma: f64,
        rel_volume: Option<f64>,
        cfg: &SignalsConfig,
        out: &mut Vec<Hit>,
    ) {
        if !self.kinds.has(SignalKind::ClosingPriceSetup) || prev <= 0.0 {
            return;
        }
        let c = &cfg.closing;
        let gain = (bar.close / prev - 1.0) * 100.0;
        let range = bar.high - bar.low;
        let Some(rel) = rel_volume else { return };
        if !(ge(gain, c.min_gain_pct) && le(gain, c.max_gain_pct) && ge(rel, c.volume_ratio)) {
            return;
        }
        if range <= 0.0 || side(bar.close, sma, bar.close) <= 0 {
            return;
        }
        let position = (bar.close - bar.low) / range;
        if !ge(position, c.min_close_position) {
            return;
        }
        let gain_part = unit((gain - c.min_gain_pct) / (2.0 * c.min_gain_pct).max(1e-9));
        let vol_part = unit((rel - c.volume_ratio) / (2.0 * c.volume_ratio).max(1e-9));
        let pos_part =
            unit((position - c.min_close_position) / (1.0 - c.min_close_position).max(1e-9));
        let s = 40.0 + 20.0 * (gain_part + vol_part + pos_part);
        out.push(
            Hit::new(SignalKind::ClosingPriceSetup, score(s))
                .num("gain_pct", gain)
                .num("volume_ratio", rel)
                .num("close_position", position)
                .with("exit", Detail::Text("next_open")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_numbered_by_their_position() {
        for (i, k) in SignalKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        assert!(SignalKind::ALL.len() <= 32);
    }

    #[test]
    fn block_extremes_equal_a_scan() {
        for n in [1usize, 2, 3, 7, 20] {
            let mut plan = Plan::new();
            let mut hi = BlockExtreme::<true>::new(n, 0, &mut plan);
            let mut lo = BlockExtreme::<false>::new(n, 1, &mut plan);
            let mut delays = Delays::new(&plan);
            let xs: Vec<f64> = (0..200u64)
                .map(|i| ((i * 7919) % 97) as f64 - (i % 5) as f64)
                .collect();
            for (t, &x) in xs.iter().enumerate() {
                let got = (
                    hi.update(x, t as u64, &mut delays),
                    lo.update(x, t as u64, &mut delays),
                );
                let want = if t + 1 >= n {
                    let w = &xs[t + 1 - n..=t];
                    (
                        Some(w.iter().copied().fold(f64::MIN, f64::max)),
                        Some(w.iter().copied().fold(f64::MAX, f64::min)),
                    )
                } else {
                    (None, None)
                };
                assert_eq!(got, want, "n={n} t={t}");
            }
        }
    }
}
