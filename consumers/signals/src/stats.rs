//! Prediction history: per-kind statistics of signal outcomes, for the API and the bot.
//!
//! A **hit** is an outcome whose return went the way the signal pointed: up for bullish
//! kinds and for the direction-less ones (`bb_squeeze`, `volume_surge`: a long bias),
//! down for bearish kinds (`rsi_overbought`, `macd_bearish_cross`, `death_cross`,
//! `bb_breakout_down`). A return of exactly 0 is no hit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{SignalDirection, SignalKind};

/// Statistics of one kind at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    pub kind: SignalKind,
    pub horizon_bars: u32,
    pub count: u64,
    pub hits: u64,
    /// `hits / count`.
    pub hit_rate: f64,
    /// Mean of the raw forward returns (not sign-adjusted).
    pub mean_ret: f64,
}

/// Aggregates outcomes `(kind, horizon_bars, return)` into statistics per kind and
/// horizon, sorted by kind then horizon. Non-finite returns are ignored.
pub fn outcome_stats<I>(outcomes: I) -> Vec<KindStats>
where
    I: IntoIterator<Item = (SignalKind, u32, f64)>,
{
    let mut acc: BTreeMap<(SignalKind, u32), (u64, u64, f64)> = BTreeMap::new();
    for (kind, horizon, ret) in outcomes {
        if !ret.is_finite() {
            continue;
        }
        let hit = match kind.direction() {
            SignalDirection::Bearish => ret < 0.0,
            SignalDirection::Bullish | SignalDirection::Neutral => ret > 0.0,
        };
        let e = acc.entry((kind, horizon)).or_insert((0, 0, 0.0));
        e.0 += 1;
        e.1 += u64::from(hit);
        e.2 += ret;
    }
    acc.into_iter()
        .map(|((kind, horizon_bars), (count, hits, sum))| KindStats {
            kind,
            horizon_bars,
            count,
            hits,
            hit_rate: hits as f64 / count as f64,
            mean_ret: sum / count as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_follow_the_signal_direction() {
        let stats = outcome_stats([
            (SignalKind::GoldenCross, 5, 0.02),
            (SignalKind::GoldenCross, 5, -0.01),
            (SignalKind::GoldenCross, 1, 0.0),
            (SignalKind::DeathCross, 5, -0.03),
            (SignalKind::DeathCross, 5, f64::NAN),
        ]);
        assert_eq!(stats.len(), 3);
        let golden5 = &stats[1];
        assert_eq!(
            (
                golden5.kind,
                golden5.horizon_bars,
                golden5.count,
                golden5.hits
            ),
            (SignalKind::GoldenCross, 5, 2, 1)
        );
        assert!((golden5.mean_ret - 0.005).abs() < 1e-15);
        assert_eq!(stats[0].hits, 0);
        assert_eq!(
            (stats[2].kind, stats[2].count, stats[2].hit_rate),
            (SignalKind::DeathCross, 1, 1.0)
        );
    }
}
