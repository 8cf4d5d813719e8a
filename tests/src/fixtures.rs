//! Market-data fixtures shared by the end-to-end tests.

use std::path::PathBuf;

use tickwatch_schema::wire::Candle;

/// SPY's 2015 daily bars, from the signals crate's TA-Lib fixture (its first six columns:
/// the fixture also holds TA-Lib's outputs).
pub fn spy_2015_daily() -> Vec<Candle> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../consumers/signals/tests/fixtures/indicators/spy_2015.csv"
    ));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let trimmed: String = text
        .lines()
        .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n");
    tickwatch_schema::history::HistoryReader::new(
        trimmed.as_bytes(),
        "spy_2015.csv",
        "nyse",
        "SPY",
        tickwatch_schema::wire::Interval::D1,
    )
    .expect("header")
    .collect::<Result<Vec<_>, _>>()
    .expect("bars")
}
