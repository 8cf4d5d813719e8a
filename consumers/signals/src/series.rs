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
use crate::indicators::{
    Atr, BandsValue, Bollinger, Ema, Macd, MacdValue, RollingMax, RollingMin, Rsi, Sma,
};
use crate::intraday::{Intraday, IntradayBar, IntradayKinds, gap_hit};
use crate::num::{Cross, Crossing, at_least, at_most, clamp01, score, side_of};
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

/// What the VCP detector remembers of one bar.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BarRecord {
    pub high: f64,
    pub low: f64,
    pub volume: f64,
}

/// The last bars of a series, looked up by bar number, for the VCP's swings and
/// contraction volumes.
#[derive(Debug, Clone)]
pub(crate) struct RecentBars {
    ring: Vec<BarRecord>,
}

impl RecentBars {
    fn new(len: usize) -> Self {
        RecentBars {
            ring: vec![BarRecord::default(); len.max(1)],
        }
    }

    /// Bar number `bar` (must be one of the last `len` bars).
    pub fn at(&self, bar: u64) -> &BarRecord {
        &self.ring[(bar % self.ring.len() as u64) as usize]
    }

    fn set(&mut self, bar: u64, record: BarRecord) {
        let len = self.ring.len() as u64;
        self.ring[(bar % len) as usize] = record;
    }
}

/// An SMA's values over the last `lag` bars and this one, to tell whether it is rising.
#[derive(Debug, Clone)]
struct Slope {
    values: VecDeque<Option<f64>>,
    lag: usize,
}

impl Slope {
    fn new(lag: usize) -> Self {
        Slope {
            values: VecDeque::with_capacity(lag + 1),
            lag,
        }
    }

    /// This bar's value.
    fn push(&mut self, value: Option<f64>) {
        if self.values.len() > self.lag {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    /// +1 rising, -1 falling over the last `lag` bars; 0 when flat or not known yet.
    fn direction(&self, scale: f64) -> i8 {
        if self.values.len() <= self.lag {
            return 0;
        }
        match (self.values.back(), self.values.front()) {
            (Some(Some(now)), Some(Some(then))) => side_of(*now, *then, scale),
            _ => 0,
        }
    }
}

/// One SMA of the trend template: the moving-average cross's fast or slow one when the
/// period is the same (the same values, computed once), or its own.
#[derive(Debug, Clone)]
enum TrendSma {
    SameAsFast,
    SameAsSlow,
    Own(Sma),
}

/// A trend-template SMA's value on this bar and whether it is rising.
#[derive(Debug, Clone)]
struct TrendLine {
    sma: TrendSma,
    slope: Slope,
    value: Option<f64>,
}

/// Minervini's trend template and the VCP detector: daily series with a VCP kind on.
#[derive(Debug, Clone)]
struct VcpState {
    /// The template's three SMAs (50, 150, 200 by default), shortest first.
    trend: [TrendLine; 3],
    /// The volume average the contractions and the breakout are measured against.
    volume_avg: Sma,
    recent: RecentBars,
    detector: Vcp,
}

/// This bar's SMAs the daily detectors use.
#[derive(Debug, Clone, Copy)]
struct DailySmas {
    closing: Option<f64>,
    fast: Option<f64>,
    slow: Option<f64>,
}

/// The 52-week range of a daily series.
#[derive(Debug, Clone)]
struct YearRange {
    highest: RollingMax,
    lowest: RollingMin,
    last_new_high: Option<u64>,
    last_high_signal: Option<u64>,
}

/// All state of one series: its indicators, the detectors' memory, and the signals
/// waiting for their outcomes.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Non-halted bars processed so far.
    pub bars: u64,
    pub pending: VecDeque<Pending>,
    kinds: Kinds,
    prev_close: Option<f64>,
    ema: Ema,
    rsi: Rsi,
    atr: Atr,
    macd: Macd,
    bands: Bollinger,
    volume_avg: Sma,
    /// The closing-price setup's trend filter.
    closing_sma: Sma,
    fast_sma: Sma,
    slow_sma: Sma,
    /// Whether the slow SMA rose over `ma_cross.rising_bars`.
    slow_slope: Slope,
    /// Band widths: the lowest and the average of the last `squeeze_lookback`.
    width_min: RollingMin,
    width_avg: Sma,
    squeezed: bool,
    /// The RSI's most extreme value in the current excursion beyond a threshold.
    rsi_extreme: f64,
    rsi_low: Cross,
    rsi_high: Cross,
    macd_cross: Cross,
    ma_cross: Cross,
    upper_cross: Cross,
    lower_cross: Cross,
    /// Daily series only.
    year: Option<YearRange>,
    /// Daily series with a VCP kind on.
    vcp: Option<Box<VcpState>>,
    /// Intraday series with an intraday kind on.
    intraday: Option<Intraday>,
}

/// Minervini's stage-2 trend template on the current bar: the close above each of the
/// three SMAs, each of them rising, near the 52-week high and well above the low.
fn trend_template(
    lines: &[TrendLine; 3],
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
    for line in lines {
        let Some(v) = line.value else {
            return no;
        };
        if side_of(close, v, close) <= 0 || line.slope.direction(close) <= 0 {
            return no;
        }
        longest = Some(v);
    }
    let v = &cfg.vcp;
    let below_high = (hi - close) / hi * 100.0;
    let above_low = (close / lo - 1.0) * 100.0;
    if !at_most(below_high, v.max_below_high_pct) || !at_least(above_low, v.min_above_low_pct) {
        return no;
    }
    let over_sma = longest.map_or(0.0, |s| clamp01((close / s - 1.0) / 0.5));
    let near_high = clamp01(1.0 - below_high / v.max_below_high_pct.max(1e-9));
    Trend {
        ok: true,
        strength: 0.5 * (over_sma + near_high),
    }
}

impl Series {
    pub fn new(cfg: &SignalsConfig, kinds: Kinds, venue: &str, interval: Interval) -> Self {
        let daily = interval == Interval::D1;
        let vcp_on = daily && kinds.any(&[SignalKind::VcpSetup, SignalKind::VcpBreakout]);
        let intraday_on = interval < Interval::D1
            && kinds.any(&[
                SignalKind::GapUp,
                SignalKind::OpeningRangeBreakout,
                SignalKind::VwapReclaim,
            ]);
        let lag = cfg.ma_cross.rising_bars;
        Series {
            bars: 0,
            pending: VecDeque::new(),
            kinds,
            prev_close: None,
            ema: Ema::new(cfg.indicators.ema_period),
            rsi: Rsi::new(cfg.rsi.period),
            atr: Atr::new(cfg.indicators.atr_period),
            macd: Macd::new(cfg.macd.fast, cfg.macd.slow, cfg.macd.signal),
            bands: Bollinger::new(cfg.bollinger.period, cfg.bollinger.std_devs),
            volume_avg: Sma::new(cfg.volume.period),
            closing_sma: Sma::new(cfg.closing.sma_period),
            fast_sma: Sma::new(cfg.ma_cross.fast),
            slow_sma: Sma::new(cfg.ma_cross.slow),
            slow_slope: Slope::new(lag),
            width_min: RollingMin::new(cfg.bollinger.squeeze_lookback),
            width_avg: Sma::new(cfg.bollinger.squeeze_lookback),
            squeezed: false,
            rsi_extreme: 50.0,
            rsi_low: Cross::default(),
            rsi_high: Cross::default(),
            macd_cross: Cross::default(),
            ma_cross: Cross::default(),
            upper_cross: Cross::default(),
            lower_cross: Cross::default(),
            year: daily.then(|| YearRange {
                highest: RollingMax::new(cfg.high_52w.lookback_bars),
                lowest: RollingMin::new(cfg.high_52w.lookback_bars),
                last_new_high: None,
                last_high_signal: None,
            }),
            vcp: vcp_on.then(|| {
                let v = &cfg.vcp;
                Box::new(VcpState {
                    trend: v.trend_smas.map(|period| TrendLine {
                        sma: if period.max(1) == cfg.ma_cross.fast.max(1) {
                            TrendSma::SameAsFast
                        } else if period.max(1) == cfg.ma_cross.slow.max(1) {
                            TrendSma::SameAsSlow
                        } else {
                            TrendSma::Own(Sma::new(period))
                        },
                        slope: Slope::new(lag),
                        value: None,
                    }),
                    volume_avg: Sma::new(v.volume_period),
                    recent: RecentBars::new(v.max_base_bars + 2 * v.swing_bars + 2),
                    detector: Vcp::new(v),
                })
            }),
            intraday: intraday_on.then(|| {
                Intraday::new(cfg.intraday, cfg.sessions.calendar(venue), interval.as_ms())
            }),
        }
    }

    /// Updates every indicator with `bar` and appends what fires to `out`.
    pub fn on_bar(&mut self, bar: &Bar, cfg: &SignalsConfig, out: &mut Vec<Hit>) {
        let t = self.bars;
        self.bars += 1;
        let c = bar.close;
        let prev_close = self.prev_close.replace(c);

        // Averages "of the previous bars" are read before this bar enters them.
        let volume_avg_prev = self.volume_avg.value();
        self.volume_avg.update(bar.volume);
        let rel_volume = volume_avg_prev.filter(|a| *a > 0.0).map(|a| bar.volume / a);
        let closing_sma = self.closing_sma.update(c);
        let fast = self.fast_sma.update(c);
        let slow = self.slow_sma.update(c);
        self.slow_slope.push(slow);
        self.ema.update(c);
        let rsi = self.rsi.update(c);
        let macd = self.macd.update(c);
        let bands = self.bands.update(c);
        let atr = self.atr.update(bar.high, bar.low, c);

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
            self.band_signals(b, c, atr, rel_volume, out);
        }
        if let Some(rel) = rel_volume {
            let k = cfg.volume.surge_ratio;
            if self.kinds.has(SignalKind::VolumeSurge) && at_least(rel, k) {
                let s = 50.0 + 50.0 * clamp01((rel - k) / (2.0 * k));
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

        if self.year.is_some() {
            let smas = DailySmas {
                closing: closing_sma,
                fast,
                slow,
            };
            self.daily_signals(t, bar, prev_close, smas, rel_volume, cfg, out);
        }
        if let Some(day) = &mut self.intraday {
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
        let Some(year) = &mut self.year else { return };
        let prev_high = year.highest.value();
        let high_52w = year.highest.update(bar.high);
        let low_52w = year.lowest.update(bar.low);
        if let Some(prev_high) = prev_high {
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
        let setup = self.kinds.has(SignalKind::VcpSetup);
        let breakout = self.kinds.has(SignalKind::VcpBreakout);
        let Some(vcp) = &mut self.vcp else { return };
        vcp.recent.set(
            t,
            BarRecord {
                high: bar.high,
                low: bar.low,
                volume: bar.volume,
            },
        );
        let volume_avg_prev = vcp.volume_avg.value();
        vcp.volume_avg.update(bar.volume);
        for line in &mut vcp.trend {
            line.value = match &mut line.sma {
                TrendSma::SameAsFast => smas.fast,
                TrendSma::SameAsSlow => smas.slow,
                TrendSma::Own(sma) => sma.update(c),
            };
            line.slope.push(line.value);
        }
        let trend = trend_template(&vcp.trend, c, high_52w, low_52w, cfg);
        let vb = VcpBar {
            index: t,
            close: c,
            volume_avg: volume_avg_prev,
            trend,
        };
        vcp.detector
            .on_bar(&cfg.vcp, &vb, &vcp.recent, setup, breakout, out);
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
        if side_of(rsi, cfg.oversold, 100.0) < 0 {
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
        if side_of(rsi, cfg.overbought, 100.0) > 0 {
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
            .map_or(0.0, |a| clamp01(-sign * m.macd / a));
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
        let slope = self.slow_slope.direction(close);
        let slope_ok = slope == sign;
        let side_ok = side_of(close, fast, close) == sign;
        let vol = rel_volume.map_or(0.0, |r| clamp01(r - 1.0));
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
        b: BandsValue,
        close: f64,
        atr: Option<f64>,
        rel_volume: Option<f64>,
        out: &mut Vec<Hit>,
    ) {
        let vol = rel_volume.map_or(0.0, |r| clamp01((r - 1.0) / 2.0));
        let beyond = |d: f64| atr.filter(|a| *a > 0.0).map_or(0.0, |a| clamp01(d / a));
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
        let lowest = self.width_min.update(width);
        // The window's widths are those of its last n bars, all of which had bands.
        let average = self.width_avg.update(width);
        if let (Some(lowest), Some(average)) = (lowest, average) {
            let at_low = at_most(width, lowest);
            if at_low && !self.squeezed && self.kinds.has(SignalKind::BollingerSqueeze) {
                let ratio = if average > 0.0 { width / average } else { 1.0 };
                let s = 40.0 + 60.0 * clamp01(1.0 - ratio);
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
        if side_of(close, prev_high, close) <= 0 {
            return;
        }
        let Some(year) = &mut self.year else { return };
        let cap = 120;
        let since = year.last_new_high.map_or(cap, |b| (index - b).min(cap));
        year.last_new_high = Some(index);
        let cooled = year
            .last_high_signal
            .is_none_or(|b| index - b > cfg.high_52w.cooldown_bars as u64);
        if !cooled || !self.kinds.has(SignalKind::New52wHigh) {
            return;
        }
        year.last_high_signal = Some(index);
        let vol = rel_volume.map_or(0.0, |r| clamp01(r - 1.0));
        let s = 50.0 + 30.0 * clamp01(since as f64 / cap as f64) + 20.0 * vol;
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
        if !(at_least(gain, c.min_gain_pct)
            && at_most(gain, c.max_gain_pct)
            && at_least(rel, c.volume_ratio))
        {
            return;
        }
        if range <= 0.0 || side_of(bar.close, sma, bar.close) <= 0 {
            return;
        }
        let position = (bar.close - bar.low) / range;
        if !at_least(position, c.min_close_position) {
            return;
        }
        let gain_part = clamp01((gain - c.min_gain_pct) / (2.0 * c.min_gain_pct).max(1e-9));
        let vol_part = clamp01((rel - c.volume_ratio) / (2.0 * c.volume_ratio).max(1e-9));
        let pos_part =
            clamp01((position - c.min_close_position) / (1.0 - c.min_close_position).max(1e-9));
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
}
