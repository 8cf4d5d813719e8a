//! Loading the fixture windows as candles.
#![allow(dead_code)]

use std::path::Path;

use tickwatch_schema::history::{HistoryReader, format_ts};
use tickwatch_schema::wire::{Candle, Interval, Signal, SignalKind};
use tickwatch_signals::{SignalsConfig, scan};

/// A fixture file (`indicators/…` or `windows/…`) as the candles of one series.
pub fn candles(file: &str, venue: &str, symbol: &str, interval: Interval) -> Vec<Candle> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("fixture file");
    HistoryReader::new(text.as_bytes(), file, venue, symbol, interval)
        .expect("fixture header")
        .map(|c| c.expect("fixture bar"))
        .collect()
}

pub fn daily(file: &str, venue: &str, symbol: &str) -> Vec<Candle> {
    candles(file, venue, symbol, Interval::D1)
}

/// The signals of one kind the default engine finds in `bars`.
pub fn fired(bars: &[Candle], kind: SignalKind) -> Vec<Signal> {
    scan(bars.iter().cloned().map(Ok), &SignalsConfig::default(), &[])
        .expect("scan")
        .into_iter()
        .filter(|s| s.kind == kind)
        .collect()
}

/// The bar a signal fired on, as `YYYY-MM-DD` (daily) or full ISO time.
pub fn bar_time(s: &Signal) -> String {
    let t = format_ts(s.ts - s.interval.as_ms());
    if s.interval.is_daily_or_longer() {
        t[..10].to_string()
    } else {
        t
    }
}

pub fn times(signals: &[Signal]) -> Vec<String> {
    signals.iter().map(bar_time).collect()
}
