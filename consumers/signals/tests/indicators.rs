//! Every indicator against TA-Lib's own output on windows of the real history files.
//!
//! The fixtures (`tests/fixtures/indicators/*.csv`) hold the input bars as the history
//! files spell them and TA-Lib's values for the same window, written by
//! `scripts/talib_fixtures.py` (TA-Lib 0.8.2 from PyPI). Each test feeds the bars from the
//! first row, as a live series would see them, and compares from TA-Lib's first value on.
//!
//! Relative error is `|ours - talib| / max(|ours|, |talib|, floor)`. The floor is
//! `1e-12 × scale`, with the scale the bar's close for price-valued columns, 100 for the
//! RSI and the volume average for the volume column: a value that crosses zero (the MACD
//! histogram) is thus measured against a trillionth of what it is denominated in rather
//! than against itself, where a relative error means nothing. The bound is 1e-9; the
//! implementation in fact reproduces TA-Lib 0.8 bit for bit, which the last test pins.

use std::path::Path;

use tickwatch_schema::history::HistoryReader;
use tickwatch_schema::wire::Interval;
use tickwatch_signals::indicators::{Atr, Bollinger, Ema, Macd, RollingMax, RollingMin, Rsi, Sma};
use tickwatch_signals::num::dec_to_f64;

const COLUMNS: [&str; 15] = [
    "sma20",
    "ema20",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_mid",
    "bb_lower",
    "atr14",
    "vol_sma20",
    "sma50",
    "sma200",
    "max252",
    "min252",
];

struct Fixture {
    name: String,
    bars: Vec<[f64; 5]>,
    expected: Vec<[Option<f64>; 15]>,
}

fn load(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/indicators")
        .join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path).expect("fixture file");
    let reader = HistoryReader::new(text.as_bytes(), name, "test", "TEST", Interval::D1)
        .expect("fixture header");
    let bars = reader
        .map(|c| {
            let c = c.expect("fixture bar");
            [c.open, c.high, c.low, c.close, c.volume].map(dec_to_f64)
        })
        .collect::<Vec<_>>();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(&header[6..], &COLUMNS, "{name}: fixture columns");
    let expected = lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let mut row = [None; 15];
            for (slot, cell) in row.iter_mut().zip(&cells[6..]) {
                if !cell.is_empty() {
                    *slot = Some(cell.parse::<f64>().expect("fixture value"));
                }
            }
            row
        })
        .collect::<Vec<_>>();
    assert_eq!(bars.len(), expected.len());
    Fixture {
        name: name.to_string(),
        bars,
        expected,
    }
}

/// Our values for every column, bar by bar.
fn compute(bars: &[[f64; 5]]) -> Vec<[Option<f64>; 15]> {
    let (mut sma20, mut ema20, mut rsi) = (Sma::new(20), Ema::new(20), Rsi::new(14));
    let (mut macd, mut bb, mut atr) = (Macd::new(12, 26, 9), Bollinger::new(20, 2.0), Atr::new(14));
    let (mut vol, mut sma50, mut sma200) = (Sma::new(20), Sma::new(50), Sma::new(200));
    let (mut max, mut min) = (RollingMax::new(252), RollingMin::new(252));
    bars.iter()
        .map(|&[_, h, l, c, v]| {
            let m = macd.update(c);
            let b = bb.update(c);
            [
                sma20.update(c),
                ema20.update(c),
                rsi.update(c),
                m.map(|m| m.macd),
                m.map(|m| m.signal),
                m.map(|m| m.hist),
                b.map(|b| b.upper),
                b.map(|b| b.middle),
                b.map(|b| b.lower),
                atr.update(h, l, c),
                vol.update(v),
                sma50.update(c),
                sma200.update(c),
                max.update(h),
                min.update(l),
            ]
        })
        .collect()
}

/// The largest relative error of each column, after checking that values are present on
/// exactly the bars where TA-Lib has them.
fn errors(f: &Fixture) -> [f64; 15] {
    let ours = compute(&f.bars);
    let mut worst = [0.0f64; 15];
    for (i, (got, want)) in ours.iter().zip(&f.expected).enumerate() {
        let close = f.bars[i][3];
        let vol_scale = want[10].unwrap_or(1.0).abs().max(1.0);
        for col in 0..15 {
            match (got[col], want[col]) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    let scale = match COLUMNS[col] {
                        "rsi14" => 100.0,
                        "vol_sma20" => vol_scale,
                        _ => close,
                    };
                    let denom = a.abs().max(b.abs()).max(1e-12 * scale);
                    worst[col] = worst[col].max((a - b).abs() / denom);
                }
                (a, b) => panic!(
                    "{}: row {} column {}: ours {a:?}, TA-Lib {b:?}",
                    f.name,
                    i + 2,
                    COLUMNS[col]
                ),
            }
        }
    }
    worst
}

fn check(name: &str) {
    let f = load(name);
    let worst = errors(&f);
    for (col, err) in COLUMNS.iter().zip(worst) {
        assert!(err <= 1e-9, "{name}: {col} relative error {err:e} > 1e-9");
    }
}

#[test]
fn samsung_daily_across_the_2018_halt() {
    check("005930_halt");
}

#[test]
fn aapl_tiny_early_prices() {
    check("aapl_early");
}

#[test]
fn btcusdt_minutes_with_zero_volume() {
    check("btcusdt_1m");
}

#[test]
fn btcusdt_4h_across_an_outage() {
    check("btcusdt_4h");
}

#[test]
fn spy_2015() {
    check("spy_2015");
}

#[test]
fn ecopro_trend() {
    check("247540_trend");
}

#[test]
fn flat_window_gives_rsi_zero_and_no_deviation() {
    check("synthetic_flat");
    let f = load("synthetic_flat");
    let ours = compute(&f.bars);
    // Bars 14..29 have no price change at all: TA-Lib's RSI is 0 there, the bands close.
    for row in &ours[14..30] {
        assert_eq!(row[2], Some(0.0));
    }
    for row in &ours[19..30] {
        assert_eq!(row[6], row[8]);
    }
}

#[test]
fn reproduces_ta_lib_0_8_bit_for_bit() {
    for name in [
        "005930_halt",
        "aapl_early",
        "btcusdt_1m",
        "btcusdt_4h",
        "spy_2015",
        "247540_trend",
        "synthetic_flat",
    ] {
        let worst = errors(&load(name));
        assert!(worst.iter().all(|&e| e == 0.0), "{name}: {worst:?}");
    }
}
