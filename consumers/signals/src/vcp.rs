//! Minervini's volatility contraction pattern (VCP) on daily candles, streaming.
//!
//! **Swings.** A bar is a swing high when its high is above the highs of the `k`
//! (`vcp.swing_bars`) bars before it and at least the highs of the `k` bars after it
//! (a swing low likewise with lows), so a swing is known `k` bars later. Consecutive
//! swings of the same kind keep the more extreme one, so highs and lows alternate.
//!
//! **Contractions.** A contraction is a swing high followed by the next swing low; its
//! depth is `(high - low) / high`. When a new swing low is confirmed, the engine walks
//! back from it through the contractions as long as each one is at least `min_depth_pct`
//! deep, starts within `max_base_bars`, and the later one's depth is at most
//! `max_contraction_ratio` of the earlier one's ("each pullback shallower than the one
//! before"), up to `max_contractions`. It then drops contractions from the old end until
//! the first one is at most `max_first_depth_pct` deep and no later one starts more than
//! `max_high_drift_pct` above the first's high (the base starts at its highest point).
//!
//! **`vcp_setup`** fires on the bar that confirms the last swing low when: at least
//! `min_contractions` remain; the last is at most `max_last_depth_pct` deep; the base
//! (first high to now) spans at least `min_base_bars`; volume dried up in the last
//! contraction (its average volume, high to low, at most `dry_up_ratio` × the 50-bar
//! average before this bar); the close is still below the pivot (the last contraction's
//! high) and above its low; and the stage-2 trend template holds: close above the three
//! `trend_smas` (50/150/200), each rising over `ma_cross.rising_bars`, within
//! `max_below_high_pct` of the 52-week high and at least `min_above_low_pct` above the
//! 52-week low.
//!
//! **`vcp_breakout`** fires on the first close above the pivot with volume at least
//! `breakout_volume_ratio` × the 50-bar average of the bars before it, within
//! `max_breakout_bars` of the setup; a close below the last contraction's low cancels the
//! setup. A close above the pivot on light volume does not cancel it.
//!
//! **Score (setup)** = 40 + 15 × each of: contraction count (2 → 1/3, 4+ → 1), tightness
//! (1 - last depth / max_last_depth), dry-up (1 - volume ratio / dry_up_ratio) and trend
//! strength (mean of: close vs SMA 200, up to +50 %; closeness to the 52-week high).
//! **Score (breakout)** = 0.7 × setup score + 30 × (volume ratio - 1.5) / 1.5, capped.

use std::collections::VecDeque;

use tickwatch_schema::wire::SignalKind;

use crate::config::VcpConfig;
use crate::hit::{Detail, Hit};
use crate::num::{at_least, at_most, clamp01, score, side_of};
use crate::series::RecentBars;

/// The trend template's verdict on the current bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    pub ok: bool,
    /// 0..1: how far above the long SMA and how close to the 52-week high.
    pub strength: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pivot {
    bar: u64,
    price: f64,
    high: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Armed {
    pivot: f64,
    pivot_bar: u64,
    low: f64,
    since: u64,
    score: f64,
    contractions: usize,
}

#[derive(Debug, Clone, Copy)]
struct Contraction {
    high: Pivot,
    low: Pivot,
    depth: f64,
}

/// Per-series VCP state: the alternating swings and a live setup. The bars themselves are
/// read from the series' [`RecentBars`], which holds at least `max_base_bars + 2k + 1`.
#[derive(Debug, Clone)]
pub(crate) struct Vcp {
    pivots: VecDeque<Pivot>,
    armed: Option<Armed>,
}

/// What the series knows about the bar besides its prices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VcpBar {
    pub index: u64,
    pub close: f64,
    /// Average volume of the `volume_period` bars before this one.
    pub volume_avg: Option<f64>,
    pub trend: Trend,
}

impl Vcp {
    /// `cfg` is the one every call is then given (the engine's configuration).
    pub fn new(cfg: &VcpConfig) -> Self {
        Vcp {
            pivots: VecDeque::with_capacity(2 * cfg.max_contractions + 3),
            armed: None,
        }
    }

    pub fn on_bar(
        &mut self,
        cfg: &VcpConfig,
        b: &VcpBar,
        recent: &RecentBars,
        setup_on: bool,
        breakout_on: bool,
        out: &mut Vec<Hit>,
    ) {
        self.check_breakout(cfg, b, recent, breakout_on, out);
        if self.confirm_swings(cfg, b.index, recent) {
            self.evaluate(cfg, b, recent, setup_on, out);
        }
    }

    fn check_breakout(
        &mut self,
        cfg: &VcpConfig,
        b: &VcpBar,
        recent: &RecentBars,
        enabled: bool,
        out: &mut Vec<Hit>,
    ) {
        let Some(armed) = self.armed else {
            return;
        };
        if b.index - armed.since > cfg.max_breakout_bars as u64
            || side_of(b.close, armed.low, b.close) < 0
        {
            self.armed = None;
            return;
        }
        if side_of(b.close, armed.pivot, b.close) <= 0 {
            return;
        }
        let Some(avg) = b.volume_avg.filter(|a| *a > 0.0) else {
            return;
        };
        let ratio = recent.at(b.index).volume / avg;
        if !at_least(ratio, cfg.breakout_volume_ratio) {
            return;
        }
        self.armed = None;
        if enabled {
            let r = cfg.breakout_volume_ratio;
            let s = 0.7 * armed.score + 30.0 * clamp01((ratio - r) / r.max(1e-9));
            out.push(
                Hit::new(SignalKind::VcpBreakout, score(s))
                    .num("pivot", armed.pivot)
                    .num("volume_ratio", ratio)
                    .with("contractions", Detail::Int(armed.contractions as u64))
                    .with("bars_since_setup", Detail::Int(b.index - armed.since)),
            );
        }
    }

    /// Looks for a swing at bar `t - k`; true when a swing low was added or deepened.
    fn confirm_swings(&mut self, cfg: &VcpConfig, t: u64, recent: &RecentBars) -> bool {
        let k = cfg.swing_bars as u64;
        if t < 2 * k {
            return false;
        }
        let c = t - k;
        let (hc, lc) = (recent.at(c).high, recent.at(c).low);
        let (mut is_high, mut is_low) = (true, true);
        // Most bars are neither: stop at the first neighbour that rules out both (the
        // pivots change only when a swing is added, so nothing else is due then). The
        // nearest neighbours first: they rule out most.
        for d in 1..=k {
            let (before, after) = (recent.at(c - d), recent.at(c + d));
            is_high &= hc > before.high && hc >= after.high;
            is_low &= lc < before.low && lc <= after.low;
            if !(is_high || is_low) {
                return false;
            }
        }
        if is_high && is_low {
            // An outside bar is both; a zigzag cannot place it, so it is left out.
            return false;
        }
        let mut low_changed = false;
        if is_high {
            self.push_pivot(Pivot {
                bar: c,
                price: hc,
                high: true,
            });
        } else if is_low {
            low_changed = self.push_pivot(Pivot {
                bar: c,
                price: lc,
                high: false,
            });
        }
        // Swings older than any base the evaluation can look at are dropped.
        let horizon = cfg.max_base_bars as u64 + 2 * k;
        while self.pivots.len() > 2 * cfg.max_contractions + 2
            || self.pivots.front().is_some_and(|p| p.bar + horizon < t)
        {
            self.pivots.pop_front();
        }
        low_changed
    }

    /// Adds a swing keeping highs and lows alternating; true if the pivot was kept.
    fn push_pivot(&mut self, p: Pivot) -> bool {
        match self.pivots.back_mut() {
            Some(last) if last.high == p.high => {
                let more_extreme = if p.high {
                    p.price > last.price
                } else {
                    p.price < last.price
                };
                if more_extreme {
                    *last = p;
                }
                more_extreme
            }
            _ => {
                self.pivots.push_back(p);
                true
            }
        }
    }

    fn evaluate(
        &mut self,
        cfg: &VcpConfig,
        b: &VcpBar,
        recent: &RecentBars,
        enabled: bool,
        out: &mut Vec<Hit>,
    ) {
        let t = b.index;
        let mut chain = [None::<Contraction>; 6];
        let mut count = 0;
        let n = self.pivots.len();
        let mut i = n;
        // chain[0] is the last contraction, chain[count-1] the oldest.
        while i >= 2 && count < cfg.max_contractions {
            let (high, low) = (self.pivots[i - 2], self.pivots[i - 1]);
            if !high.high || low.high || high.bar + (cfg.max_base_bars as u64) < t {
                break;
            }
            let depth = (high.price - low.price) / high.price;
            if depth * 100.0 < cfg.min_depth_pct {
                break;
            }
            if let Some(later) = count.checked_sub(1).and_then(|j| chain[j])
                && !at_most(later.depth, depth * cfg.max_contraction_ratio)
            {
                break;
            }
            chain[count] = Some(Contraction { high, low, depth });
            count += 1;
            i -= 2;
        }
        // The base starts at its highest, not-too-deep pullback.
        while count > 0 {
            let Some(first) = chain[count - 1] else { break };
            let drift_cap = first.high.price * (1.0 + cfg.max_high_drift_pct / 100.0);
            let later_ok = chain[..count - 1]
                .iter()
                .flatten()
                .all(|c| at_most(c.high.price, drift_cap));
            if first.depth * 100.0 <= cfg.max_first_depth_pct && later_ok {
                break;
            }
            count -= 1;
        }
        if count < cfg.min_contractions {
            return;
        }
        let (Some(last), Some(first)) = (chain[0], chain[count - 1]) else {
            return;
        };
        if last.depth * 100.0 > cfg.max_last_depth_pct
            || t - first.high.bar < cfg.min_base_bars as u64
        {
            return;
        }
        if !b.trend.ok
            || side_of(b.close, last.high.price, b.close) > 0
            || side_of(b.close, last.low.price, b.close) <= 0
        {
            return;
        }
        let Some(avg) = b.volume_avg.filter(|a| *a > 0.0) else {
            return;
        };
        let span = last.low.bar - last.high.bar + 1;
        let mut sum = 0.0;
        for bar in last.high.bar..=last.low.bar {
            sum += recent.at(bar).volume;
        }
        let dry = sum / span as f64 / avg;
        if !at_most(dry, cfg.dry_up_ratio) {
            return;
        }
        if let Some(armed) = &mut self.armed
            && armed.pivot_bar == last.high.bar
        {
            // The same base with a deeper last low: no new setup.
            armed.low = last.low.price;
            return;
        }
        let count_part = clamp01((count as f64 - 1.0) / 3.0);
        let tight = clamp01(1.0 - last.depth * 100.0 / cfg.max_last_depth_pct);
        let dry_part = clamp01(1.0 - dry / cfg.dry_up_ratio);
        let s = 40.0 + 15.0 * (count_part + tight + dry_part + clamp01(b.trend.strength));
        self.armed = Some(Armed {
            pivot: last.high.price,
            pivot_bar: last.high.bar,
            low: last.low.price,
            since: t,
            score: s,
            contractions: count,
        });
        if enabled {
            let mut depths = [0.0; 6];
            for (slot, c) in depths.iter_mut().zip(chain[..count].iter().rev().flatten()) {
                *slot = c.depth * 100.0;
            }
            out.push(
                Hit::new(SignalKind::VcpSetup, score(s))
                    .num("pivot", last.high.price)
                    .with("contractions", Detail::Int(count as u64))
                    .list("depths_pct", &depths[..count])
                    .with("base_bars", Detail::Int(t - first.high.bar))
                    .num("dry_up_ratio", dry)
                    .num("trend_strength", b.trend.strength),
            );
        }
    }
}
