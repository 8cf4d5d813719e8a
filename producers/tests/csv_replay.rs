//! CSV replay: complete (count = rows), in file order, exact values; pacing, outages, bad
//! rows, KRX sessions, and the benchmark hook.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickwatch_producers::csv::{self, CsvConfig, Speed, bar_ticks};
use tickwatch_producers::{MemorySink, Published};
use tickwatch_schema::history::parse_ts;
use tickwatch_schema::wire::{Candle, Interval};
use tokio_util::sync::CancellationToken;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

/// Checks that `candles` are exactly the file's rows, in order.
fn assert_matches_rows(
    candles: &[Candle],
    rows: &[Vec<String>],
    venue: &str,
    symbol: &str,
    interval: Interval,
) {
    assert_eq!(candles.len(), rows.len(), "count = rows");
    for (i, (c, r)) in candles.iter().zip(rows).enumerate() {
        let expected = Candle {
            venue: venue.into(),
            symbol: symbol.into(),
            interval,
            open_ts: parse_ts(&r[0]).expect("ts"),
            open: d(&r[1]),
            high: d(&r[2]),
            low: d(&r[3]),
            close: d(&r[4]),
            volume: d(&r[5]),
            trades: None,
            closed: true,
        };
        assert_eq!(c, &expected, "row {i}");
        // Exactly as written, not just numerically equal.
        assert_eq!(c.close.to_string(), r[4], "row {i}");
    }
}

#[tokio::test]
async fn the_fixture_reaches_the_sink_complete_and_in_order() {
    let path = common::fixture("BTCUSDT_1m.csv");
    let rows = common::rows(&path);
    let sink = Arc::new(MemorySink::new());
    let report = csv::replay(
        CsvConfig::for_file(&path),
        sink.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("replays");
    assert_eq!(
        (report.rows, report.candles, report.skipped_rows),
        (480, 480, 0)
    );
    assert!(report.completed);
    assert_eq!(
        (
            report.venue.as_str(),
            report.symbol.as_str(),
            report.interval
        ),
        ("binance", "BTCUSDT", Interval::M1)
    );
    assert_matches_rows(&sink.candles(), &rows, "binance", "BTCUSDT", Interval::M1);
}

#[tokio::test]
async fn the_full_file_reaches_the_sink_complete_and_in_order() {
    let path = common::data_file("BTCUSDT_1m.csv");
    let rows = common::rows(&path);
    assert_eq!(rows.len(), 30_240);
    let sink = Arc::new(MemorySink::new());
    let report = csv::replay(
        CsvConfig::for_file(&path),
        sink.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("replays");
    assert_eq!((report.rows, report.candles), (30_240, 30_240));
    assert_matches_rows(&sink.candles(), &rows, "binance", "BTCUSDT", Interval::M1);
}

#[tokio::test]
async fn ticks_come_before_their_bar_in_the_documented_order() {
    let path = common::fixture("BTCUSDT_1m.csv");
    let sink = Arc::new(MemorySink::new());
    let config = CsvConfig {
        ticks: true,
        batch: 7, // batches that cut through bars
        ..CsvConfig::for_file(&path)
    };
    let report = csv::replay(config, sink.clone(), CancellationToken::new())
        .await
        .expect("replays");
    assert_eq!((report.ticks, report.candles), (4 * 480, 480));
    let published = sink.published();
    for (bar_index, chunk) in published.chunks(5).enumerate() {
        let Published::Candle(bar) = &chunk[4] else {
            panic!("bar {bar_index}: the candle comes last, got {chunk:?}");
        };
        let expected: Vec<Published> = bar_ticks(bar).into_iter().map(Published::Tick).collect();
        assert_eq!(&chunk[..4], expected.as_slice(), "bar {bar_index}");
    }
    let ts: Vec<i64> = sink.ticks().iter().map(|t| t.ts).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "tick times increase");
}

#[tokio::test]
async fn speed_paces_by_market_time() {
    let dir = common::temp_dir("speed");
    let path = dir.join("BTCUSDT_1m.csv");
    let text = std::fs::read_to_string(common::fixture("BTCUSDT_1m.csv")).expect("fixture");
    std::fs::write(&path, text.lines().take(6).collect::<Vec<_>>().join("\n")).expect("write");
    let sink = Arc::new(MemorySink::new());
    let config = CsvConfig {
        speed: "600x".parse().expect("speed"),
        ..CsvConfig::for_file(&path)
    };
    let started = Instant::now();
    let report = csv::replay(config, sink.clone(), CancellationToken::new())
        .await
        .expect("replays");
    let elapsed = started.elapsed();
    // Five 1-minute bars: four minutes between the first and the last candle → 400 ms at 600x.
    assert_eq!(report.candles, 5);
    assert!(elapsed >= Duration::from_millis(390), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(Speed::Max, "max".parse().expect("max"));
}

#[tokio::test]
async fn a_broker_outage_delays_but_loses_nothing() {
    let path = common::fixture("BTCUSDT_1m.csv");
    let rows = common::rows(&path);
    let sink = Arc::new(MemorySink::new());
    sink.fail_next(3);
    let config = CsvConfig {
        batch: 100,
        ..CsvConfig::for_file(&path)
    };
    let report = csv::replay(config, sink.clone(), CancellationToken::new())
        .await
        .expect("replays");
    assert_eq!(report.candles, 480);
    assert_matches_rows(&sink.candles(), &rows, "binance", "BTCUSDT", Interval::M1);
    assert_eq!(sink.attempts(), (8, 3)); // 5 batches, 3 failed attempts
}

#[tokio::test]
async fn bad_rows_are_skipped_and_counted() {
    let dir = common::temp_dir("bad");
    let path = dir.join("ETHUSDT_1h.csv");
    std::fs::write(
        &path,
        "ts,open,high,low,close,volume\n\
         2023-03-01T00:00:00Z,1600,1610,1590,1605,10\n\
         2023-03-01T01:00:00Z,1605,abc,1600,1606,11\n\
         2023-03-01T02:00:00Z,1606,1607,1608,1606,12\n\
         2023-03-01T03:00:00Z,1606,1620,1601,1619,13\n",
    )
    .expect("write");
    let sink = Arc::new(MemorySink::new());
    let report = csv::replay(
        CsvConfig::for_file(&path),
        sink.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("replays");
    assert_eq!(
        (report.rows, report.skipped_rows, report.candles),
        (4, 2, 2)
    );
    let got: Vec<_> = sink
        .candles()
        .iter()
        .map(|c| (c.symbol.clone(), c.interval, c.close))
        .collect();
    assert_eq!(
        got,
        [
            ("ETHUSDT".to_string(), Interval::H1, d("1605")),
            ("ETHUSDT".to_string(), Interval::H1, d("1619"))
        ]
    );
}

#[tokio::test]
async fn krx_daily_bars_open_at_the_seoul_session() {
    let path = common::fixture("005930_1d.csv");
    let sink = Arc::new(MemorySink::new());
    csv::replay(
        CsvConfig::for_file(&path),
        sink.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("replays");
    let candles = sink.candles();
    assert_eq!(candles.len(), 5);
    assert_eq!(
        (candles[0].venue.as_str(), candles[0].symbol.as_str()),
        ("krx", "005930")
    );
    // 1999-01-04 00:00 KST = 1999-01-03T15:00:00Z.
    assert_eq!(
        candles[0].open_ts,
        parse_ts("1999-01-03T15:00:00Z").expect("ts")
    );
}

#[tokio::test]
async fn shutdown_stops_a_slow_replay_and_flushes() {
    let path = common::fixture("BTCUSDT_1m.csv");
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let config = CsvConfig {
        speed: "60x".parse().expect("speed"), // a minute bar per second
        ..CsvConfig::for_file(&path)
    };
    let task = tokio::spawn(csv::replay(config, sink.clone(), shutdown.clone()));
    assert!(sink.wait_for(0, 1, Duration::from_secs(5)).await);
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops promptly")
        .expect("no panic")
        .expect("replayed");
    assert!(!report.completed);
    assert!(report.candles >= 1 && report.candles < 480, "{report:?}");
    assert_eq!(report.candles as usize, sink.candles().len());
    assert_eq!(report.lost, 0);
}

#[tokio::test]
async fn the_benchmark_hook_reports_a_rate() {
    let sink = Arc::new(MemorySink::new());
    let bench = csv::bench(
        CsvConfig::for_file(common::fixture("BTCUSDT_1m.csv")),
        sink.clone(),
    )
    .await
    .expect("bench");
    assert_eq!(bench.messages, 480);
    assert!(bench.per_second > 0.0);
    assert_eq!(sink.len(), 480);
}

#[tokio::test]
async fn configuration_errors_name_the_key() {
    let sink = Arc::new(MemorySink::new());
    let err = csv::replay(CsvConfig::default(), sink.clone(), CancellationToken::new())
        .await
        .expect_err("no path")
        .to_string();
    assert!(err.contains("`csv.path`"), "{err}");
    let err = csv::replay(
        CsvConfig::for_file("/nonexistent/mystery.csv"),
        sink,
        CancellationToken::new(),
    )
    .await
    .expect_err("cannot infer")
    .to_string();
    assert!(err.contains("--interval"), "{err}");
}
