//! Candle building, pure (no I/O, no clock): ticks → candles for a list of intervals
//! ([`CandleBuilder`]), and closed bars → bars of a longer interval ([`BarAggregator`],
//! [`aggregate`]).
//!
//! Buckets follow the venue's trading day: UTC for crypto venues, Asia/Seoul (UTC+9, no
//! daylight saving) for `krx`, so a KRX 1d candle is one Seoul session and its `open_ts` is
//! 00:00 KST. Weekly buckets start on Monday, as the exchanges' do. Shorter buckets are laid
//! on the same local grid; for KRX that differs from UTC's only for 2h, 4h, 6h and 12h
//! (9 h is a multiple of every other length).
//!
//! A candle is emitted, closed, when its bucket ends: on the first tick after the end, or by
//! [`CandleBuilder::on_time`] so a quiet market still closes it. Empty buckets produce no
//! candle. A tick older than an open bucket of the symbol is late: it is counted and dropped,
//! never merged into a bucket it does not belong to, so every interval of a symbol is built
//! from the same ticks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{Candle, Interval, Tick};

use crate::config::duration;
use crate::error::{Error, Result};

/// The intervals built when none are configured.
pub const DEFAULT_INTERVALS: [Interval; 6] = [
    Interval::M1,
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];

pub use tickwatch_schema::calendar::{bucket_start, utc_offset_ms};

/// What to build from ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CandleConfig {
    /// Intervals to build; empty builds none.
    pub intervals: Vec<Interval>,
    /// A timer closes a bucket only this long after its end, so ticks still in flight with
    /// an exchange timestamp inside the bucket are not turned into late ticks.
    #[serde(with = "duration")]
    pub close_grace: Duration,
    /// Publish the bucket that was already running when the builder saw a symbol's first
    /// tick. Off by default: that candle would miss the ticks before the start and show a
    /// wrong open and volume. Sources that start the market themselves (synthetic, a file)
    /// turn it on.
    pub emit_first_bucket: bool,
    /// When the venue's regular session ends, `HH:MM` on its trading day's clock (`15:30`
    /// for KRX): the day's candle and the intraday bucket running at that time close then,
    /// not at midnight, and later trades that day (after-hours) are left out of the candles.
    /// Weekly candles still close at the week's end.
    pub session_close: Option<String>,
}

impl Default for CandleConfig {
    fn default() -> Self {
        CandleConfig {
            intervals: DEFAULT_INTERVALS.to_vec(),
            close_grace: Duration::from_secs(2),
            emit_first_bucket: false,
            session_close: None,
        }
    }
}

impl CandleConfig {
    pub fn validate(&self, key: &str) -> Result<()> {
        for (i, interval) in self.intervals.iter().enumerate() {
            if self.intervals[..i].contains(interval) {
                return Err(Error::config(
                    format!("{key}.intervals[{i}]"),
                    format!("`{interval}` is listed twice"),
                ));
            }
        }
        if self.close_grace > Duration::from_secs(3600) {
            return Err(Error::config(
                format!("{key}.close_grace"),
                "must be at most 1h",
            ));
        }
        self.session_close_ms_named(key)?;
        Ok(())
    }

    /// [`CandleConfig::session_close`] as milliseconds after the trading day's start.
    pub fn session_close_ms(&self) -> Result<Option<i64>> {
        self.session_close_ms_named("candles")
    }

    fn session_close_ms_named(&self, key: &str) -> Result<Option<i64>> {
        let Some(text) = &self.session_close else {
            return Ok(None);
        };
        use chrono::Timelike;
        let parsed = chrono::NaiveTime::parse_from_str(text, "%H:%M")
            .ok()
            .filter(|t| *t != chrono::NaiveTime::MIN)
            .map(|t| i64::from(t.num_seconds_from_midnight()) * 1000);
        parsed.map(Some).ok_or_else(|| {
            Error::config(
                format!("{key}.session_close"),
                format!("`{text}` is not a time of day like `15:30`"),
            )
        })
    }
}

/// A tick older than an open bucket of its symbol; it was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateTick {
    pub ts: i64,
    /// The oldest timestamp the builder still accepted for this symbol.
    pub accepted_from: i64,
    /// Not late but after the session close of its day (an after-hours trade).
    pub after_close: bool,
}

#[derive(Debug, Clone)]
struct OpenBucket {
    candle: Candle,
    publish: bool,
}

#[derive(Debug, Clone)]
struct SymbolState {
    offset_ms: i64,
    /// One slot per configured interval.
    open: Vec<Option<OpenBucket>>,
    /// Ticks before this are late: the newest open bucket start or closed bucket end.
    accepted_from: i64,
}

/// Builds candles from the ticks of any number of symbols.
#[derive(Debug, Clone)]
pub struct CandleBuilder {
    intervals: Vec<Interval>,
    grace_ms: i64,
    emit_first_bucket: bool,
    session_close_ms: Option<i64>,
    symbols: BTreeMap<(String, String), SymbolState>,
    late_ticks: u64,
    skipped_first: u64,
}

impl CandleBuilder {
    pub fn new(config: &CandleConfig) -> Self {
        let mut intervals = config.intervals.clone();
        intervals.sort();
        intervals.dedup();
        CandleBuilder {
            intervals,
            grace_ms: i64::try_from(config.close_grace.as_millis()).unwrap_or(i64::MAX),
            emit_first_bucket: config.emit_first_bucket,
            // `validate` names a bad value; unvalidated, a bad one means no session close.
            session_close_ms: config.session_close_ms().ok().flatten(),
            symbols: BTreeMap::new(),
            late_ticks: 0,
            skipped_first: 0,
        }
    }

    /// The intervals built, shortest first.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Adds a tick; returns the candles its arrival closed (shortest interval first), or
    /// [`LateTick`] if it was dropped as late.
    pub fn on_tick(&mut self, tick: &Tick) -> std::result::Result<Vec<Candle>, LateTick> {
        if self.intervals.is_empty() {
            return Ok(Vec::new());
        }
        let key = (tick.venue.clone(), tick.symbol.clone());
        let first_tick = !self.symbols.contains_key(&key);
        let state = self.symbols.entry(key).or_insert_with(|| SymbolState {
            offset_ms: utc_offset_ms(&tick.venue),
            open: vec![None; self.intervals.len()],
            accepted_from: i64::MIN,
        });
        if tick.ts < state.accepted_from {
            self.late_ticks += 1;
            return Err(LateTick {
                ts: tick.ts,
                accepted_from: state.accepted_from,
                after_close: false,
            });
        }
        if let Some(close_at) = session_close_at(tick.ts, state.offset_ms, self.session_close_ms)
            && tick.ts >= close_at
        {
            self.late_ticks += 1;
            return Err(LateTick {
                ts: tick.ts,
                accepted_from: state.accepted_from,
                after_close: true,
            });
        }
        let mut closed = Vec::new();
        for (slot, &interval) in state.open.iter_mut().zip(&self.intervals) {
            let start = bucket_start(tick.ts, interval, state.offset_ms);
            match slot {
                Some(open) if open.candle.open_ts == start => {
                    let c = &mut open.candle;
                    c.high = c.high.max(tick.price);
                    c.low = c.low.min(tick.price);
                    c.close = tick.price;
                    c.volume += tick.qty;
                    c.trades = c.trades.map(|n| n + 1);
                    continue;
                }
                Some(_) => {
                    // `accepted_from` guarantees `start` is later: the open bucket is over.
                    if let Some(done) = slot.take()
                        && done.publish
                    {
                        closed.push(Candle {
                            closed: true,
                            ..done.candle
                        });
                    }
                }
                None => {}
            }
            let publish = !first_tick || self.emit_first_bucket;
            if !publish {
                self.skipped_first += 1;
            }
            *slot = Some(OpenBucket {
                candle: Candle {
                    venue: tick.venue.clone(),
                    symbol: tick.symbol.clone(),
                    interval,
                    open_ts: start,
                    open: tick.price,
                    high: tick.price,
                    low: tick.price,
                    close: tick.price,
                    volume: tick.qty,
                    trades: Some(1),
                    closed: false,
                },
                publish,
            });
            state.accepted_from = state.accepted_from.max(start);
        }
        Ok(closed)
    }

    /// Closes every bucket that ended at least the close grace before `now_ms`; returns the
    /// closed candles, by symbol, shortest interval first.
    pub fn on_time(&mut self, now_ms: i64) -> Vec<Candle> {
        let mut closed = Vec::new();
        for state in self.symbols.values_mut() {
            for (slot, &interval) in state.open.iter_mut().zip(&self.intervals) {
                let end = match slot {
                    Some(open) => bucket_end(
                        open.candle.open_ts,
                        interval,
                        state.offset_ms,
                        self.session_close_ms,
                    ),
                    None => continue,
                };
                if end.saturating_add(self.grace_ms) > now_ms {
                    continue;
                }
                if let Some(done) = slot.take()
                    && done.publish
                {
                    closed.push(Candle {
                        closed: true,
                        ..done.candle
                    });
                }
                state.accepted_from = state.accepted_from.max(end);
            }
        }
        closed
    }

    /// The candles still forming (`closed: false`), e.g. for a status page.
    pub fn open_candles(&self) -> Vec<Candle> {
        self.symbols
            .values()
            .flat_map(|s| s.open.iter().flatten())
            .map(|o| o.candle.clone())
            .collect()
    }

    /// The forming candles of `interval` that will be published when they close (not a
    /// first bucket the builder saw only part of), `closed: false`.
    pub fn forming(&self, interval: Interval) -> Vec<Candle> {
        let Some(slot) = self.intervals.iter().position(|&i| i == interval) else {
            return Vec::new();
        };
        self.symbols
            .values()
            .filter_map(|s| s.open[slot].as_ref())
            .filter(|o| o.publish)
            .map(|o| o.candle.clone())
            .collect()
    }

    /// Ticks dropped as late so far.
    pub fn late_ticks(&self) -> u64 {
        self.late_ticks
    }

    /// First buckets not published because they started before the builder did.
    pub fn skipped_first_buckets(&self) -> u64 {
        self.skipped_first
    }
}

/// When the session of the trading day holding `ts` closes (epoch ms), if there is a close.
fn session_close_at(ts: i64, offset_ms: i64, close_ms: Option<i64>) -> Option<i64> {
    close_ms.map(|close| bucket_start(ts, Interval::D1, offset_ms) + close)
}

/// When the bucket starting at `open_ts` ends: its length, cut at the session close when
/// that falls inside it (weekly buckets run to the week's end).
fn bucket_end(open_ts: i64, interval: Interval, offset_ms: i64, close_ms: Option<i64>) -> i64 {
    let end = open_ts + interval.as_ms();
    match session_close_at(open_ts, offset_ms, close_ms) {
        Some(close_at) if interval < Interval::W1 && open_ts < close_at && close_at < end => {
            close_at
        }
        _ => end,
    }
}

/// Aggregates the closed bars of one series into bars of a longer interval, as they come.
#[derive(Debug, Clone)]
pub struct BarAggregator {
    target: Interval,
    offset_ms: i64,
    current: Option<Candle>,
    /// End of the last bar merged into `current`, to tell whether the bucket is complete.
    last_end: i64,
}

impl BarAggregator {
    /// `offset_ms` is the trading day's offset east of UTC (see [`utc_offset_ms`]).
    pub fn new(target: Interval, offset_ms: i64) -> Self {
        BarAggregator {
            target,
            offset_ms,
            current: None,
            last_end: i64::MIN,
        }
    }

    /// Adds the next bar; returns the previous bucket's bar once this bar starts a new one.
    /// Bars must be in time order and of an interval that divides the target.
    pub fn push(&mut self, bar: &Candle) -> Result<Option<Candle>> {
        let (from, to) = (bar.interval.as_ms(), self.target.as_ms());
        if from > to || to % from != 0 {
            return Err(Error::config(
                "interval",
                format!(
                    "{} bars do not aggregate into {} bars",
                    bar.interval, self.target
                ),
            ));
        }
        let start = bucket_start(bar.open_ts, self.target, self.offset_ms);
        let mut finished = None;
        if let Some(current) = &mut self.current {
            if bar.open_ts < self.last_end {
                return Err(Error::config(
                    "bars",
                    format!(
                        "bar at {} is not after the previous one; bars must be in time order",
                        bar.open_ts
                    ),
                ));
            }
            if current.open_ts == start {
                current.high = current.high.max(bar.high);
                current.low = current.low.min(bar.low);
                current.close = bar.close;
                current.volume += bar.volume;
                current.trades = current.trades.zip(bar.trades).map(|(a, b)| a + b);
                self.last_end = bar.open_ts + from;
                return Ok(None);
            }
            finished = self.current.take().map(|c| Candle { closed: true, ..c });
        }
        self.current = Some(Candle {
            interval: self.target,
            open_ts: start,
            closed: false,
            ..bar.clone()
        });
        self.last_end = bar.open_ts + from;
        Ok(finished)
    }

    /// The last bucket's bar: closed if its last bar reached the bucket's end.
    pub fn finish(self) -> Option<Candle> {
        let end = self.current.as_ref()?.open_ts + self.target.as_ms();
        let complete = self.last_end >= end;
        self.current.map(|c| Candle {
            closed: complete,
            ..c
        })
    }
}

/// Aggregates a series of closed bars into `target` bars (the last one closed only if its
/// bucket is complete). The trading day follows the venue of the first bar.
pub fn aggregate(bars: impl IntoIterator<Item = Candle>, target: Interval) -> Result<Vec<Candle>> {
    let mut out = Vec::new();
    let mut aggregator: Option<BarAggregator> = None;
    for bar in bars {
        let agg =
            aggregator.get_or_insert_with(|| BarAggregator::new(target, utc_offset_ms(&bar.venue)));
        out.extend(agg.push(&bar)?);
    }
    out.extend(aggregator.and_then(BarAggregator::finish));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use tickwatch_schema::history::parse_ts;

    use super::*;

    fn ts(text: &str) -> i64 {
        parse_ts(text).expect("test timestamp")
    }

    fn tick(venue: &str, at: &str, price: i64, qty: i64) -> Tick {
        Tick {
            venue: venue.into(),
            symbol: if venue == "krx" { "005930" } else { "BTCUSDT" }.into(),
            price: Decimal::new(price, 0),
            qty: Decimal::new(qty, 0),
            ts: ts(at),
            trade_id: None,
        }
    }

    fn builder(intervals: &[Interval]) -> CandleBuilder {
        CandleBuilder::new(&CandleConfig {
            intervals: intervals.to_vec(),
            close_grace: Duration::ZERO,
            emit_first_bucket: true,
            session_close: None,
        })
    }

    /// KRX's regular session ends at 15:30 KST (06:30 UTC): the 1d candle and the 15:00
    /// hourly bucket close then, and a trade after it stays out of the candles.
    #[test]
    fn a_session_close_ends_the_day_and_the_running_bucket() {
        let mut b = CandleBuilder::new(&CandleConfig {
            intervals: vec![Interval::H1, Interval::D1],
            close_grace: Duration::ZERO,
            emit_first_bucket: true,
            session_close: Some("15:30".into()),
        });
        b.on_tick(&tick("krx", "2023-03-02T00:00:00Z", 60_000, 10))
            .expect("09:00 KST");
        b.on_tick(&tick("krx", "2023-03-02T06:29:59Z", 61_000, 5))
            .expect("15:29:59 KST");
        let after = b
            .on_tick(&tick("krx", "2023-03-02T06:30:00Z", 99_000, 7))
            .expect_err("15:30 KST is after the close");
        assert!(after.after_close);
        assert!(b.on_time(ts("2023-03-02T06:29:59Z")).is_empty());
        let closed = b.on_time(ts("2023-03-02T06:30:00Z"));
        let day = closed
            .iter()
            .find(|c| c.interval == Interval::D1)
            .expect("1d");
        assert_eq!(day.open_ts, ts("2023-03-01T15:00:00Z"), "00:00 KST");
        assert_eq!(
            (day.open, day.close),
            (Decimal::new(60_000, 0), Decimal::new(61_000, 0))
        );
        assert_eq!(
            day.volume,
            Decimal::new(15, 0),
            "the after-hours trade is left out"
        );
        let hour = closed
            .iter()
            .find(|c| c.interval == Interval::H1)
            .expect("1h");
        assert_eq!(
            hour.open_ts,
            ts("2023-03-02T06:00:00Z"),
            "the 15:00 KST bucket"
        );
        // The next session opens the next day's candles as usual.
        b.on_tick(&tick("krx", "2023-03-03T00:00:00Z", 62_000, 1))
            .expect("next day");
    }

    #[test]
    fn a_session_close_must_be_a_time_of_day() {
        for bad in ["25:00", "15", "3pm", "00:00"] {
            let config = CandleConfig {
                session_close: Some(bad.into()),
                ..CandleConfig::default()
            };
            let err = config.validate("kis.candles").expect_err(bad).to_string();
            assert!(err.contains("kis.candles.session_close"), "{err}");
        }
    }

    #[test]
    fn buckets_follow_the_trading_day() {
        let t = ts("2023-03-01T16:30:00Z"); // 01:30 KST on 2 March
        assert_eq!(bucket_start(t, Interval::D1, 0), ts("2023-03-01T00:00:00Z"));
        assert_eq!(
            bucket_start(t, Interval::D1, utc_offset_ms("krx")),
            ts("2023-03-01T15:00:00Z")
        );
        assert_eq!(bucket_start(t, Interval::H4, 0), ts("2023-03-01T16:00:00Z"));
        assert_eq!(
            bucket_start(t, Interval::M15, 0),
            ts("2023-03-01T16:30:00Z")
        );
        // 2023-03-01 was a Wednesday; the week began on Monday 27 February.
        assert_eq!(bucket_start(t, Interval::W1, 0), ts("2023-02-27T00:00:00Z"));
        assert_eq!(bucket_start(-1, Interval::M1, 0), -60_000);
    }

    #[test]
    fn ticks_close_buckets_on_the_next_tick_and_by_timer() {
        let mut b = builder(&[Interval::M1, Interval::M5]);
        assert_eq!(
            b.on_tick(&tick("binance", "2023-03-01T00:00:10Z", 10, 1)),
            Ok(vec![])
        );
        assert_eq!(
            b.on_tick(&tick("binance", "2023-03-01T00:00:50Z", 12, 2)),
            Ok(vec![])
        );
        assert_eq!(
            b.on_tick(&tick("binance", "2023-03-01T00:00:55Z", 9, 1)),
            Ok(vec![])
        );
        // Empty minute 00:01 → no candle for it; 00:02 closes 00:00.
        let closed = b
            .on_tick(&tick("binance", "2023-03-01T00:02:05Z", 11, 3))
            .expect("in time");
        assert_eq!(closed.len(), 1);
        let c = &closed[0];
        assert_eq!(
            (c.interval, c.open_ts, c.closed),
            (Interval::M1, ts("2023-03-01T00:00:00Z"), true)
        );
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume, c.trades),
            (
                Decimal::new(10, 0),
                Decimal::new(12, 0),
                Decimal::new(9, 0),
                Decimal::new(9, 0),
                Decimal::new(4, 0),
                Some(3)
            )
        );
        // A tick inside the already closed minute is late.
        let late = b.on_tick(&tick("binance", "2023-03-01T00:01:30Z", 11, 1));
        assert!(late.is_err());
        assert_eq!(b.late_ticks(), 1);
        // A quiet market: the timer closes 00:02 (1m) and 00:00 (5m).
        assert!(b.on_time(ts("2023-03-01T00:02:59Z")).is_empty());
        let closed = b.on_time(ts("2023-03-01T00:05:00Z"));
        let got: Vec<_> = closed
            .iter()
            .map(|c| (c.interval, c.open_ts, c.volume))
            .collect();
        assert_eq!(
            got,
            [
                (Interval::M1, ts("2023-03-01T00:02:00Z"), Decimal::new(3, 0)),
                (Interval::M5, ts("2023-03-01T00:00:00Z"), Decimal::new(7, 0)),
            ]
        );
        assert!(
            b.on_tick(&tick("binance", "2023-03-01T00:04:59Z", 11, 1))
                .is_err()
        );
        assert!(b.open_candles().is_empty());
    }

    #[test]
    fn the_first_bucket_is_skipped_unless_asked_for() {
        let mut b = CandleBuilder::new(&CandleConfig {
            intervals: vec![Interval::M1],
            close_grace: Duration::ZERO,
            emit_first_bucket: false,
            session_close: None,
        });
        assert_eq!(
            b.on_tick(&tick("binance", "2023-03-01T00:00:30Z", 10, 1)),
            Ok(vec![])
        );
        assert_eq!(
            b.on_tick(&tick("binance", "2023-03-01T00:01:00Z", 10, 1)),
            Ok(vec![])
        );
        let closed = b
            .on_tick(&tick("binance", "2023-03-01T00:02:00Z", 10, 1))
            .expect("in time");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].open_ts, ts("2023-03-01T00:01:00Z"));
        assert_eq!(b.skipped_first_buckets(), 1);
    }

    #[test]
    fn a_krx_day_is_a_seoul_session() {
        let mut b = builder(&[Interval::D1]);
        // 09:00 and 15:20 KST on 2 March; then the next session.
        b.on_tick(&tick("krx", "2023-03-02T00:00:00Z", 60_000, 10))
            .expect("in time");
        b.on_tick(&tick("krx", "2023-03-02T06:20:00Z", 61_000, 5))
            .expect("in time");
        let closed = b
            .on_tick(&tick("krx", "2023-03-03T00:00:00Z", 62_000, 1))
            .expect("in time");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].open_ts, ts("2023-03-01T15:00:00Z")); // 00:00 KST, 2 March
        assert_eq!(closed[0].volume, Decimal::new(15, 0));
        // The timer closes the session at 00:00 KST the next day, not at 00:00 UTC.
        assert!(b.on_time(ts("2023-03-03T14:59:59Z")).is_empty());
        assert_eq!(b.on_time(ts("2023-03-03T15:00:00Z")).len(), 1);
    }

    #[test]
    fn bars_aggregate_and_the_last_bucket_is_closed_only_when_complete() {
        let bar = |at: &str, o, h, l, c, v| Candle {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            interval: Interval::M1,
            open_ts: ts(at),
            open: Decimal::new(o, 0),
            high: Decimal::new(h, 0),
            low: Decimal::new(l, 0),
            close: Decimal::new(c, 0),
            volume: Decimal::new(v, 0),
            trades: Some(2),
            closed: true,
        };
        let bars = vec![
            bar("2023-03-01T00:00:00Z", 10, 12, 9, 11, 1),
            bar("2023-03-01T00:01:00Z", 11, 15, 10, 14, 2),
            bar("2023-03-01T00:02:00Z", 14, 14, 8, 9, 3),
            bar("2023-03-01T00:03:00Z", 9, 9, 9, 9, 0),
            bar("2023-03-01T00:04:00Z", 9, 10, 9, 10, 1),
        ];
        let out = aggregate(bars.clone(), Interval::M3).expect("aggregates");
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].open,
                out[0].high,
                out[0].low,
                out[0].close,
                out[0].volume,
                out[0].trades,
                out[0].closed
            ),
            (
                Decimal::new(10, 0),
                Decimal::new(15, 0),
                Decimal::new(8, 0),
                Decimal::new(9, 0),
                Decimal::new(6, 0),
                Some(6),
                true
            )
        );
        assert_eq!(
            (out[1].open_ts, out[1].closed),
            (ts("2023-03-01T00:03:00Z"), false)
        );
        assert!(aggregate(bars.clone(), Interval::M1).is_ok());
        let mut reversed = bars;
        reversed.swap(0, 1);
        assert!(aggregate(reversed, Interval::M5).is_err());
        let mut agg = BarAggregator::new(Interval::M5, 0);
        let three = Candle {
            interval: Interval::M3,
            ..bar("2023-03-01T00:00:00Z", 1, 1, 1, 1, 1)
        };
        assert!(agg.push(&three).is_err());
    }
}
