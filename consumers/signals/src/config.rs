//! The engine's configuration: which signal kinds run, every parameter of every signal,
//! and the grade thresholds. All sections default (`#[serde(default)]`), so a TOML file
//! names only what it changes; [`SignalsConfig::validate`] names the first bad key.
//!
//! Percentages are written as percent (`min_gain_pct = 4.0` is 4 %); ratios as plain
//! factors (`surge_ratio = 3.0` is 3×).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{Grade, SignalKind};

use crate::error::Error;

/// Everything the signals engine can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalsConfig {
    /// The kinds the engine evaluates; all of them by default.
    pub enabled: Vec<SignalKind>,
    pub grades: GradeConfig,
    pub indicators: IndicatorConfig,
    pub rsi: RsiConfig,
    pub macd: MacdConfig,
    pub ma_cross: MaCrossConfig,
    pub bollinger: BollingerConfig,
    pub volume: VolumeConfig,
    pub high_52w: High52wConfig,
    pub vcp: VcpConfig,
    pub closing: ClosingConfig,
    pub intraday: IntradayConfig,
    pub sessions: SessionConfig,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            enabled: SignalKind::ALL.to_vec(),
            grades: GradeConfig::default(),
            indicators: IndicatorConfig::default(),
            rsi: RsiConfig::default(),
            macd: MacdConfig::default(),
            ma_cross: MaCrossConfig::default(),
            bollinger: BollingerConfig::default(),
            volume: VolumeConfig::default(),
            high_52w: High52wConfig::default(),
            vcp: VcpConfig::default(),
            closing: ClosingConfig::default(),
            intraday: IntradayConfig::default(),
            sessions: SessionConfig::default(),
        }
    }
}

/// Grade from score: A at or above `a`, B at or above `b`, C at or above `c`, else D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradeConfig {
    pub a: u8,
    pub b: u8,
    pub c: u8,
}

impl Default for GradeConfig {
    fn default() -> Self {
        GradeConfig {
            a: 80,
            b: 65,
            c: 50,
        }
    }
}

impl GradeConfig {
    pub fn grade(&self, score: u8) -> Grade {
        if score >= self.a {
            Grade::A
        } else if score >= self.b {
            Grade::B
        } else if score >= self.c {
            Grade::C
        } else {
            Grade::D
        }
    }
}

/// Indicators no signal section owns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndicatorConfig {
    /// The EMA kept per series (for consumers of the indicator values).
    pub ema_period: usize,
    /// ATR period; the ATR normalises distances in the scores.
    pub atr_period: usize,
}

impl Default for IndicatorConfig {
    fn default() -> Self {
        IndicatorConfig {
            ema_period: 20,
            atr_period: 14,
        }
    }
}

/// `rsi_oversold` / `rsi_overbought`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RsiConfig {
    pub period: usize,
    pub oversold: f64,
    pub overbought: f64,
}

impl Default for RsiConfig {
    fn default() -> Self {
        RsiConfig {
            period: 14,
            oversold: 30.0,
            overbought: 70.0,
        }
    }
}

/// `macd_bullish_cross` / `macd_bearish_cross`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MacdConfig {
    pub fast: usize,
    pub slow: usize,
    pub signal: usize,
}

impl Default for MacdConfig {
    fn default() -> Self {
        MacdConfig {
            fast: 12,
            slow: 26,
            signal: 9,
        }
    }
}

/// `golden_cross` / `death_cross` (and the SMAs of the VCP trend template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaCrossConfig {
    pub fast: usize,
    pub slow: usize,
    /// "Rising" means above its value this many bars ago.
    pub rising_bars: usize,
}

impl Default for MaCrossConfig {
    fn default() -> Self {
        MaCrossConfig {
            fast: 50,
            slow: 200,
            rising_bars: 20,
        }
    }
}

/// `bb_breakout_up` / `bb_breakout_down` / `bb_squeeze`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BollingerConfig {
    pub period: usize,
    pub std_devs: f64,
    /// A squeeze is the band width at its lowest of this many bars.
    pub squeeze_lookback: usize,
}

impl Default for BollingerConfig {
    fn default() -> Self {
        BollingerConfig {
            period: 20,
            std_devs: 2.0,
            squeeze_lookback: 120,
        }
    }
}

/// `volume_surge`, and the relative volume every other signal uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    /// Bars in the volume average (relative volume = volume / this average of the
    /// previous bars).
    pub period: usize,
    pub surge_ratio: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            period: 20,
            surge_ratio: 3.0,
        }
    }
}

/// `new_52w_high` (daily candles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct High52wConfig {
    pub lookback_bars: usize,
    /// After a signal, none again for this many bars (a trend makes new highs daily).
    pub cooldown_bars: usize,
}

impl Default for High52wConfig {
    fn default() -> Self {
        High52wConfig {
            lookback_bars: 252,
            cooldown_bars: 5,
        }
    }
}

/// `vcp_setup` / `vcp_breakout` (daily candles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VcpConfig {
    /// Swing points are bars whose high (low) is the extreme of `swing_bars` bars on
    /// each side; a swing is known `swing_bars` bars after it.
    pub swing_bars: usize,
    pub min_contractions: usize,
    pub max_contractions: usize,
    /// Depth of the first (deepest) pullback, at most.
    pub max_first_depth_pct: f64,
    /// Depth of the last (tightest) pullback, at most.
    pub max_last_depth_pct: f64,
    /// Pullbacks shallower than this are noise, not contractions.
    pub min_depth_pct: f64,
    /// Each pullback's depth is at most this fraction of the one before.
    pub max_contraction_ratio: f64,
    /// Later pullbacks may start at most this much above the base's first high.
    pub max_high_drift_pct: f64,
    pub min_base_bars: usize,
    pub max_base_bars: usize,
    /// Average volume during the last pullback, at most this fraction of the 50-bar
    /// average: supply has dried up.
    pub dry_up_ratio: f64,
    pub volume_period: usize,
    /// The breakout close's volume, at least this multiple of the 50-bar average.
    pub breakout_volume_ratio: f64,
    /// A setup not broken out within this many bars is dropped.
    pub max_breakout_bars: usize,
    /// Trend template: SMAs that the close must be above, each rising.
    pub trend_smas: [usize; 3],
    pub max_below_high_pct: f64,
    pub min_above_low_pct: f64,
}

impl Default for VcpConfig {
    fn default() -> Self {
        VcpConfig {
            swing_bars: 3,
            min_contractions: 2,
            max_contractions: 6,
            max_first_depth_pct: 35.0,
            max_last_depth_pct: 12.0,
            min_depth_pct: 2.0,
            max_contraction_ratio: 0.9,
            max_high_drift_pct: 3.0,
            min_base_bars: 15,
            max_base_bars: 325,
            dry_up_ratio: 0.8,
            volume_period: 50,
            breakout_volume_ratio: 1.5,
            max_breakout_bars: 40,
            trend_smas: [50, 150, 200],
            max_below_high_pct: 25.0,
            min_above_low_pct: 30.0,
        }
    }
}

/// `closing_price_setup` (daily candles; 종가 베팅).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClosingConfig {
    pub min_gain_pct: f64,
    /// Days up more than this are skipped: at KRX's ±30 % limit the close is locked and
    /// cannot be bought.
    pub max_gain_pct: f64,
    pub volume_ratio: f64,
    /// Where the close sits in the day's range: 0 at the low, 1 at the high.
    pub min_close_position: f64,
    pub sma_period: usize,
}

impl Default for ClosingConfig {
    fn default() -> Self {
        ClosingConfig {
            min_gain_pct: 4.0,
            max_gain_pct: 29.0,
            volume_ratio: 2.0,
            min_close_position: 0.8,
            sma_period: 20,
        }
    }
}

/// `gap_up` / `orb_breakout` / `vwap_reclaim` (intraday candles; `gap_up` also daily).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntradayConfig {
    pub gap_pct: f64,
    pub gap_volume_ratio: f64,
    /// The opening range: the session's first this-many minutes (at least one bar).
    pub orb_minutes: u32,
    pub orb_volume_ratio: f64,
    /// Bars the close must have spent below the VWAP before a reclaim counts.
    pub vwap_min_bars_below: usize,
}

impl Default for IntradayConfig {
    fn default() -> Self {
        IntradayConfig {
            gap_pct: 2.0,
            gap_volume_ratio: 2.0,
            orb_minutes: 30,
            orb_volume_ratio: 1.5,
            vwap_min_bars_below: 5,
        }
    }
}

/// When a trading day starts, per venue: the venue's time zone (daylight saving followed:
/// a New York session is one day whether New York is on EST or EDT), or a fixed offset.
/// Venues in neither use UTC days (crypto venues run round the clock on UTC days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// IANA time zone names by venue (`krx = "Asia/Seoul"`).
    pub time_zones: BTreeMap<String, String>,
    /// Fixed offsets east of UTC in minutes; a venue listed here uses its offset even if
    /// it also has a time zone.
    pub utc_offset_minutes: BTreeMap<String, i32>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        // KRX trades 09:00–15:30 Asia/Seoul; NYSE and Nasdaq 09:30–16:00 New York time.
        let zones = [
            ("krx", "Asia/Seoul"),
            ("nasdaq", "America/New_York"),
            ("nyse", "America/New_York"),
        ];
        SessionConfig {
            time_zones: zones
                .iter()
                .map(|(venue, zone)| (venue.to_string(), zone.to_string()))
                .collect(),
            utc_offset_minutes: BTreeMap::new(),
        }
    }
}

impl SessionConfig {
    /// The calendar of `venue`'s trading days: a fixed offset given for it wins (so a
    /// configuration that set `utc_offset_minutes` keeps its meaning), then its time zone,
    /// else UTC days. Zone names are checked by `validate`.
    pub fn calendar(&self, venue: &str) -> SessionCalendar {
        if let Some(minutes) = self.utc_offset_minutes.get(venue) {
            return SessionCalendar::Fixed(i64::from(*minutes) * 60_000);
        }
        match self
            .time_zones
            .get(venue)
            .and_then(|name| name.parse::<chrono_tz::Tz>().ok())
        {
            Some(zone) => SessionCalendar::Zone(zone),
            None => SessionCalendar::Fixed(0),
        }
    }
}

/// How a venue's trading days fall: a time zone, or a fixed offset from UTC in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCalendar {
    Zone(chrono_tz::Tz),
    Fixed(i64),
}

impl SessionCalendar {
    /// The trading day holding `ts` (epoch ms), as a day number (days since 1970-01-01 of
    /// the venue's local date).
    pub fn day(&self, ts: i64) -> i64 {
        use chrono::Datelike as _;
        const DAY_MS: i64 = 86_400_000;
        // 1970-01-01 is day 719,163 counted from 0001-01-01 (day 1).
        match self {
            SessionCalendar::Fixed(offset) => (ts + offset).div_euclid(DAY_MS),
            SessionCalendar::Zone(zone) => chrono::DateTime::from_timestamp_millis(ts)
                .map(|t| {
                    let local = t.with_timezone(zone).date_naive();
                    i64::from(local.num_days_from_ce()) - 719_163
                })
                .unwrap_or_else(|| ts.div_euclid(DAY_MS)),
        }
    }
}

impl SignalsConfig {
    /// Checks every value; the error names the first bad key (`vcp.min_contractions`).
    pub fn validate(&self) -> Result<(), Error> {
        let g = &self.grades;
        if g.a > 100 || g.a <= g.b || g.b <= g.c {
            return Err(Error::config(
                "grades",
                format!(
                    "need 100 >= a > b > c (got a={}, b={}, c={})",
                    g.a, g.b, g.c
                ),
            ));
        }
        period("indicators.ema_period", self.indicators.ema_period, 1)?;
        period("indicators.atr_period", self.indicators.atr_period, 1)?;

        period("rsi.period", self.rsi.period, 2)?;
        range("rsi.oversold", self.rsi.oversold, 0.0, 100.0)?;
        range("rsi.overbought", self.rsi.overbought, 0.0, 100.0)?;
        if self.rsi.oversold >= self.rsi.overbought {
            return Err(Error::config(
                "rsi.oversold",
                "must be below rsi.overbought",
            ));
        }

        period("macd.fast", self.macd.fast, 1)?;
        period("macd.slow", self.macd.slow, 2)?;
        period("macd.signal", self.macd.signal, 1)?;
        if self.macd.fast >= self.macd.slow {
            return Err(Error::config("macd.fast", "must be below macd.slow"));
        }

        period("ma_cross.fast", self.ma_cross.fast, 1)?;
        period("ma_cross.slow", self.ma_cross.slow, 2)?;
        period("ma_cross.rising_bars", self.ma_cross.rising_bars, 1)?;
        if self.ma_cross.fast >= self.ma_cross.slow {
            return Err(Error::config(
                "ma_cross.fast",
                "must be below ma_cross.slow",
            ));
        }

        period("bollinger.period", self.bollinger.period, 2)?;
        range("bollinger.std_devs", self.bollinger.std_devs, 0.1, 10.0)?;
        period(
            "bollinger.squeeze_lookback",
            self.bollinger.squeeze_lookback,
            2,
        )?;

        period("volume.period", self.volume.period, 1)?;
        range("volume.surge_ratio", self.volume.surge_ratio, 1.0, 1000.0)?;

        period("high_52w.lookback_bars", self.high_52w.lookback_bars, 2)?;
        if self.high_52w.cooldown_bars > MAX_PERIOD {
            return Err(Error::config(
                "high_52w.cooldown_bars",
                format!("must be at most {MAX_PERIOD}"),
            ));
        }

        let v = &self.vcp;
        period("vcp.swing_bars", v.swing_bars, 1)?;
        if v.swing_bars > 20 {
            return Err(Error::config("vcp.swing_bars", "must be at most 20"));
        }
        if !(2..=6).contains(&v.min_contractions) {
            return Err(Error::config("vcp.min_contractions", "must be 2 to 6"));
        }
        if v.max_contractions < v.min_contractions || v.max_contractions > 6 {
            return Err(Error::config(
                "vcp.max_contractions",
                "must be at least vcp.min_contractions and at most 6",
            ));
        }
        range("vcp.max_first_depth_pct", v.max_first_depth_pct, 1.0, 90.0)?;
        range("vcp.max_last_depth_pct", v.max_last_depth_pct, 0.1, 90.0)?;
        range("vcp.min_depth_pct", v.min_depth_pct, 0.0, 50.0)?;
        if v.min_depth_pct >= v.max_last_depth_pct {
            return Err(Error::config(
                "vcp.min_depth_pct",
                "must be below vcp.max_last_depth_pct",
            ));
        }
        range(
            "vcp.max_contraction_ratio",
            v.max_contraction_ratio,
            0.1,
            1.0,
        )?;
        range("vcp.max_high_drift_pct", v.max_high_drift_pct, 0.0, 50.0)?;
        period("vcp.min_base_bars", v.min_base_bars, 1)?;
        period("vcp.max_base_bars", v.max_base_bars, 2)?;
        if v.min_base_bars >= v.max_base_bars {
            return Err(Error::config(
                "vcp.min_base_bars",
                "must be below vcp.max_base_bars",
            ));
        }
        range("vcp.dry_up_ratio", v.dry_up_ratio, 0.01, 10.0)?;
        period("vcp.volume_period", v.volume_period, 1)?;
        range(
            "vcp.breakout_volume_ratio",
            v.breakout_volume_ratio,
            0.0,
            100.0,
        )?;
        period("vcp.max_breakout_bars", v.max_breakout_bars, 1)?;
        for (i, p) in v.trend_smas.iter().enumerate() {
            period(&format!("vcp.trend_smas[{i}]"), *p, 1)?;
        }
        range("vcp.max_below_high_pct", v.max_below_high_pct, 0.0, 100.0)?;
        range("vcp.min_above_low_pct", v.min_above_low_pct, 0.0, 10_000.0)?;

        let c = &self.closing;
        range("closing.min_gain_pct", c.min_gain_pct, 0.0, 1_000.0)?;
        if c.max_gain_pct <= c.min_gain_pct {
            return Err(Error::config(
                "closing.max_gain_pct",
                "must be above closing.min_gain_pct",
            ));
        }
        range("closing.volume_ratio", c.volume_ratio, 0.0, 1_000.0)?;
        range("closing.min_close_position", c.min_close_position, 0.0, 1.0)?;
        period("closing.sma_period", c.sma_period, 1)?;

        let i = &self.intraday;
        range("intraday.gap_pct", i.gap_pct, 0.0, 1_000.0)?;
        range(
            "intraday.gap_volume_ratio",
            i.gap_volume_ratio,
            0.0,
            1_000.0,
        )?;
        if i.orb_minutes == 0 || i.orb_minutes > 720 {
            return Err(Error::config("intraday.orb_minutes", "must be 1 to 720"));
        }
        range(
            "intraday.orb_volume_ratio",
            i.orb_volume_ratio,
            0.0,
            1_000.0,
        )?;
        period("intraday.vwap_min_bars_below", i.vwap_min_bars_below, 1)?;

        for (venue, zone) in &self.sessions.time_zones {
            if zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(Error::config(
                    format!("sessions.time_zones.{venue}"),
                    format!("`{zone}` is not an IANA time zone (e.g. Asia/Seoul)"),
                ));
            }
        }
        for (venue, minutes) in &self.sessions.utc_offset_minutes {
            if !(-720..=840).contains(minutes) {
                return Err(Error::config(
                    format!("sessions.utc_offset_minutes.{venue}"),
                    "must be -720 to 840 minutes",
                ));
            }
        }
        Ok(())
    }

    /// Whether `kind` is evaluated.
    pub fn is_enabled(&self, kind: SignalKind) -> bool {
        self.enabled.contains(&kind)
    }
}

/// The longest period any indicator may have (bounds memory per series).
pub const MAX_PERIOD: usize = 5_000;

fn period(key: &str, value: usize, min: usize) -> Result<(), Error> {
    if value < min || value > MAX_PERIOD {
        return Err(Error::config(
            key,
            format!("{value} is not in {min}..={MAX_PERIOD}"),
        ));
    }
    Ok(())
}

fn range(key: &str, value: f64, min: f64, max: f64) -> Result<(), Error> {
    if !value.is_finite() || value < min || value > max {
        return Err(Error::config(
            key,
            format!("{value} is not in {min}..={max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_days_follow_the_venues_time_zone() {
        let sessions = SessionConfig::default();
        let ms = |text: &str| tickwatch_schema::history::parse_ts(text).expect("time");
        let day = |venue: &str, text: &str| sessions.calendar(venue).day(ms(text));
        let date = |text: &str| ms(text) / 86_400_000;
        // New York: 09:30 to 16:00 local is one day in winter (UTC-5) and in summer
        // (UTC-4); 00:30 UTC on a summer night is still the previous New York day.
        assert_eq!(day("nyse", "2024-01-10T14:30:00Z"), date("2024-01-10"));
        assert_eq!(day("nyse", "2024-01-10T21:00:00Z"), date("2024-01-10"));
        assert_eq!(day("nyse", "2024-07-10T13:30:00Z"), date("2024-07-10"));
        assert_eq!(day("nasdaq", "2024-07-11T00:30:00Z"), date("2024-07-10"));
        // Seoul: 09:00 KST is 00:00 UTC; 23:00 UTC is the next Seoul day.
        assert_eq!(day("krx", "2024-07-10T00:00:00Z"), date("2024-07-10"));
        assert_eq!(day("krx", "2024-07-09T23:00:00Z"), date("2024-07-10"));
        // Crypto: UTC days; a fixed offset where configured.
        assert_eq!(day("binance", "2024-07-10T23:59:59Z"), date("2024-07-10"));
        let mut fixed = SessionConfig::default();
        fixed.utc_offset_minutes.insert("binance".into(), 60);
        assert_eq!(
            fixed.calendar("binance").day(ms("2024-07-10T23:30:00Z")),
            date("2024-07-11")
        );
        // An offset given for a venue that has a default zone wins.
        fixed.utc_offset_minutes.insert("nyse".into(), 0);
        assert_eq!(
            fixed.calendar("nyse").day(ms("2024-07-11T00:30:00Z")),
            date("2024-07-11")
        );
        let mut bad = SignalsConfig::default();
        bad.sessions
            .time_zones
            .insert("xetra".into(), "Europe/Frankfurt".into());
        let err = bad.validate().expect_err("no such zone").to_string();
        assert!(err.contains("sessions.time_zones.xetra"), "{err}");
    }
}
