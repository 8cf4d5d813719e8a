//! The candle builder on real data: the 1-minute bars of BTCUSDT_1m.csv, replayed as ticks
//! and aggregated as bars, match a resample of the same file computed here independently
//! (grouping the text rows by their date and hour).

mod common;

use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use tickwatch_producers::candles::{CandleBuilder, CandleConfig, aggregate};
use tickwatch_producers::csv::bar_ticks;
use tickwatch_schema::history::{self, parse_ts};
use tickwatch_schema::wire::{Candle, Interval};

/// Groups rows by a key of their timestamp text; the file is in time order.
fn resample(
    rows: &[Vec<String>],
    interval: Interval,
    bucket_of: impl Fn(&str) -> String,
    trades_per_bar: Option<u64>,
) -> Vec<Candle> {
    let d = |s: &str| s.parse::<Decimal>().expect("decimal");
    let mut out: Vec<(String, Candle)> = Vec::new();
    for r in rows {
        let key = bucket_of(&r[0]);
        match out.last_mut() {
            Some((k, c)) if *k == key => {
                c.high = c.high.max(d(&r[2]));
                c.low = c.low.min(d(&r[3]));
                c.close = d(&r[4]);
                c.volume += d(&r[5]);
                c.trades = c.trades.zip(trades_per_bar).map(|(a, b)| a + b);
            }
            _ => out.push((
                key.clone(),
                Candle {
                    venue: "binance".into(),
                    symbol: "BTCUSDT".into(),
                    interval,
                    open_ts: parse_ts(&key).expect("bucket ts"),
                    open: d(&r[1]),
                    high: d(&r[2]),
                    low: d(&r[3]),
                    close: d(&r[4]),
                    volume: d(&r[5]),
                    trades: trades_per_bar,
                    closed: true,
                },
            )),
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}

/// `2023-03-01T13:37:00Z` → `2023-03-01T12:00:00Z`.
fn four_hours(ts: &str) -> String {
    let hour: u32 = ts[11..13].parse().expect("hour");
    format!("{}T{:02}:00:00Z", &ts[..10], hour / 4 * 4)
}

fn day(ts: &str) -> String {
    format!("{}T00:00:00Z", &ts[..10])
}

fn bars(path: &Path) -> Vec<Candle> {
    history::open(path, None, None, None)
        .expect("opens")
        .collect::<Result<Vec<_>, _>>()
        .expect("every row reads")
}

fn check(path: &Path, expected_4h: usize) {
    let rows = common::rows(path);
    let bars = bars(path);
    assert_eq!(bars.len(), rows.len());

    // Bars → 4h, by aggregation.
    let expected = resample(&rows, Interval::H4, four_hours, None);
    assert_eq!(expected.len(), expected_4h);
    assert_eq!(
        aggregate(bars.clone(), Interval::H4).expect("aggregates"),
        expected
    );

    // Bars → ticks → candles of 1m, 4h and 1d, by the builder.
    let mut builder = CandleBuilder::new(&CandleConfig {
        intervals: vec![Interval::D1, Interval::M1, Interval::H4],
        close_grace: Duration::ZERO,
        emit_first_bucket: true,
        session_close: None,
    });
    let mut built = Vec::new();
    for bar in &bars {
        for tick in bar_ticks(bar) {
            built.extend(builder.on_tick(&tick).expect("ticks are in order"));
        }
    }
    let end = bars.last().map(|b| b.open_ts + 60_000).expect("bars");
    built.extend(builder.on_time(end));
    assert_eq!(builder.late_ticks(), 0);
    let of = |interval| {
        built
            .iter()
            .filter(|c| c.interval == interval)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(Interval::H4),
        resample(&rows, Interval::H4, four_hours, Some(4))
    );
    // Only days that are over by the end of the data are closed.
    let days: Vec<Candle> = resample(&rows, Interval::D1, day, Some(4))
        .into_iter()
        .filter(|c| c.open_ts + Interval::D1.as_ms() <= end)
        .collect();
    assert_eq!(of(Interval::D1), days);
    assert_eq!(builder.open_candles().len(), usize::from(days.is_empty()));
    let minutes: Vec<Candle> = bars
        .iter()
        .map(|b| Candle {
            trades: Some(4),
            ..b.clone()
        })
        .collect();
    assert_eq!(of(Interval::M1), minutes);
}

#[test]
fn the_fixture_resamples_exactly() {
    check(&common::fixture("BTCUSDT_1m.csv"), 2);
}

#[test]
fn the_full_file_resamples_exactly() {
    // 21 days of minutes: 126 four-hour bars.
    check(&common::data_file("BTCUSDT_1m.csv"), 126);
}
