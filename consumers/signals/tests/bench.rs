//! The throughput benchmark: a small smoke run on the fixtures, and the real measurement
//! (`cargo test --release -p tickwatch-signals --test bench -- --ignored --nocapture`) on
//! the shared data folder.

mod common;

use tickwatch_schema::wire::Interval;
use tickwatch_signals::bench::{BenchConfig, bench, bench_dir, build_universe};

#[test]
fn bench_runs_on_the_fixtures() {
    let sources = vec![
        common::daily("indicators/spy_2015.csv", "nyse", "SPY"),
        common::candles(
            "indicators/btcusdt_1m.csv",
            "binance",
            "BTCUSDT",
            Interval::M1,
        ),
    ];
    let cfg = BenchConfig {
        symbols: 20,
        bars_per_symbol: 300,
        ..BenchConfig::default()
    };
    let universe = build_universe(&sources, 20, 300);
    assert_eq!(universe.len(), 6_000);
    // Interleaved: the first 20 candles are the first bar of each symbol.
    let first: std::collections::HashSet<_> =
        universe[..20].iter().map(|c| c.symbol.clone()).collect();
    assert_eq!(first.len(), 20);
    // Scaled per symbol: two symbols on the same source do not share prices.
    assert_ne!(universe[0].close, universe[2].close);
    let report = bench(&sources, &cfg).expect("bench");
    assert_eq!((report.candles, report.series), (6_000, 20));
    assert!(report.signals > 0 && report.outcomes > 0, "{report}");
}

#[test]
#[ignore = "measurement: run in release on the shared data (TICKWATCH_DATA_DIR)"]
fn throughput_1000_symbols() {
    let dir = tickwatch_schema::history::data_dir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = BenchConfig::default();
    let report = bench_dir(&dir, &cfg).expect("bench on the shared data");
    println!("{report}");
}
