//! The day-trading scanner on intraday candles: gap up, opening-range breakout, VWAP
//! reclaim. All three live within a trading session, the venue's calendar day
//! (`sessions.time_zones`: Asia/Seoul for `krx`, New York for `nyse` and `nasdaq`, with
//! daylight saving; UTC days for crypto); its first bar is the session's open.
//!
//! A series' first session is only partly seen (the engine may start mid-day), so nothing
//! fires in it: a session counts once the series has seen a bar of the session before.
//!
//! - **`gap_up`**: on a session's first bar, the open is at least `gap_pct` above the
//!   previous session's last close, and the bar's volume is at least `gap_volume_ratio`
//!   × the previous session's average volume per bar. (On daily candles each bar is a
//!   session: the open against the previous close, volume against the 20-bar average.)
//!   Score = 50 + 25 × (gap - x) / 2x + 25 × (volume ratio - r) / 2r, each capped.
//! - **`orb_breakout`**: the opening range is the high and low of the bars that open in
//!   the session's first `orb_minutes` (at least the first bar). The first later close
//!   above the range high is the breakout; it fires if that bar's relative volume (vs the
//!   20 bars before) is at least `orb_volume_ratio`. Either way the session's breakout is
//!   spent. Score = 50 + 30 × (volume ratio - r) / 2r + 20 × earliness (4 h after the
//!   open → 0).
//! - **`vwap_reclaim`**: the close crosses from below the session VWAP to above it after
//!   at least `vwap_min_bars_below` consecutive closes below it. Score = 50 + 25 × time
//!   below (30 bars → full) + 25 × relative volume (1× → 0, 3× → full).

use tickwatch_schema::wire::SignalKind;

use crate::config::{IntradayConfig, SessionCalendar};
use crate::hit::{Detail, Hit};
use crate::indicators::Vwap;
use crate::num::{Cross, Crossing, at_least, clamp01, score, side_of};

/// One intraday bar and what the series knows around it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntradayBar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub prev_close: Option<f64>,
    /// Volume over the average of the previous bars.
    pub rel_volume: Option<f64>,
}

/// Which of the three scanners are enabled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntradayKinds {
    pub gap: bool,
    pub orb: bool,
    pub vwap: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Intraday {
    cfg: IntradayConfig,
    calendar: SessionCalendar,
    orb_ms: i64,
    session: Option<i64>,
    /// The current session was seen from its first bar.
    complete: bool,
    open_ts: i64,
    bars: u32,
    volume: f64,
    /// Bars and volume of the previous session, if it was seen whole.
    previous: Option<(u32, f64)>,
    orb_high: f64,
    orb_low: f64,
    orb_spent: bool,
    vwap: Vwap,
    vwap_cross: Cross,
    below: usize,
}

impl Intraday {
    pub fn new(cfg: IntradayConfig, calendar: SessionCalendar, interval_ms: i64) -> Self {
        Intraday {
            cfg,
            calendar,
            orb_ms: (i64::from(cfg.orb_minutes) * 60_000).max(interval_ms),
            session: None,
            complete: false,
            open_ts: 0,
            bars: 0,
            volume: 0.0,
            previous: None,
            orb_high: f64::MIN,
            orb_low: f64::MAX,
            orb_spent: false,
            vwap: Vwap::new(),
            vwap_cross: Cross::default(),
            below: 0,
        }
    }

    pub fn on_bar(&mut self, b: &IntradayBar, kinds: IntradayKinds, out: &mut Vec<Hit>) {
        let day = self.calendar.day(b.ts);
        if self.session != Some(day) {
            self.start_session(day, b, kinds.gap, out);
        }
        self.bars += 1;
        self.volume += b.volume;

        if b.ts < self.open_ts + self.orb_ms {
            self.orb_high = self.orb_high.max(b.high);
            self.orb_low = self.orb_low.min(b.low);
        } else if !self.orb_spent && side_of(b.close, self.orb_high, b.close) > 0 {
            self.orb_spent = true;
            let ratio = b.rel_volume.unwrap_or(0.0);
            let r = self.cfg.orb_volume_ratio;
            if kinds.orb && self.complete && at_least(ratio, r) {
                let minutes = (b.ts - self.open_ts) as f64 / 60_000.0;
                let s = 50.0
                    + 30.0 * clamp01((ratio - r) / (2.0 * r).max(1e-9))
                    + 20.0 * clamp01(1.0 - minutes / 240.0);
                out.push(
                    Hit::new(SignalKind::OpeningRangeBreakout, score(s))
                        .num("range_high", self.orb_high)
                        .num("range_low", self.orb_low)
                        .num("volume_ratio", ratio)
                        .with("minutes_after_open", Detail::Int(minutes as u64)),
                );
            }
        }

        if let Some(vwap) = self.vwap.update(day, b.high, b.low, b.close, b.volume) {
            let run = self.below;
            match side_of(b.close, vwap, b.close) {
                -1 => self.below += 1,
                1 => self.below = 0,
                _ => {}
            }
            let crossed = self.vwap_cross.update(b.close, vwap, b.close) == Crossing::Up;
            if crossed && kinds.vwap && self.complete && run >= self.cfg.vwap_min_bars_below {
                let rel = b.rel_volume.unwrap_or(0.0);
                let s =
                    50.0 + 25.0 * clamp01(run as f64 / 30.0) + 25.0 * clamp01((rel - 1.0) / 2.0);
                out.push(
                    Hit::new(SignalKind::VwapReclaim, score(s))
                        .num("vwap", vwap)
                        .with("bars_below", Detail::Int(run as u64))
                        .num("volume_ratio", rel),
                );
            }
        }
    }

    fn start_session(&mut self, day: i64, b: &IntradayBar, gap_on: bool, out: &mut Vec<Hit>) {
        let seen_before = self.session.is_some();
        self.previous = (self.complete && self.bars > 0).then_some((self.bars, self.volume));
        self.session = Some(day);
        self.complete = seen_before;
        self.open_ts = b.ts;
        self.bars = 0;
        self.volume = 0.0;
        self.orb_high = f64::MIN;
        self.orb_low = f64::MAX;
        self.orb_spent = false;
        self.vwap_cross.reset();
        self.below = 0;

        let (Some(prev_close), Some((bars, volume))) = (b.prev_close, self.previous) else {
            return;
        };
        let per_bar = volume / f64::from(bars);
        if !gap_on || !self.complete || per_bar <= 0.0 || prev_close <= 0.0 {
            return;
        }
        let gap = b.open / prev_close - 1.0;
        let ratio = b.volume / per_bar;
        if let Some(hit) = gap_hit(gap, ratio, &self.cfg) {
            out.push(hit);
        }
    }
}

/// `gap_up` if the gap and the volume ratio meet the thresholds (shared with daily bars).
pub(crate) fn gap_hit(gap: f64, ratio: f64, cfg: &IntradayConfig) -> Option<Hit> {
    let x = cfg.gap_pct / 100.0;
    let r = cfg.gap_volume_ratio;
    if !(at_least(gap, x) && at_least(ratio, r)) {
        return None;
    }
    let s = 50.0
        + 25.0 * clamp01((gap - x) / (2.0 * x).max(1e-9))
        + 25.0 * clamp01((ratio - r) / (2.0 * r).max(1e-9));
    Some(
        Hit::new(SignalKind::GapUp, score(s))
            .num("gap_pct", gap * 100.0)
            .num("volume_ratio", ratio),
    )
}
