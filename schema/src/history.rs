//! History files: `ts,open,high,low,close,volume` CSV, one bar a line, `ts` the bar's open as
//! ISO-8601 UTC (`2023-03-01T00:00:00Z`), a date (`2023-03-01`) or epoch milliseconds.
//! The CSV replay producer, `tickwatch scan` and `tickwatch indicators` all read them here.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::db::migration::m20261121_000002_seed_symbols::SEED;
use crate::error::{Error, Result};
use crate::wire::{Candle, Interval, Message};

/// What a file name says about its contents: `BTCUSDT_1m.csv` → BTCUSDT, 1m, binance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inferred {
    pub symbol: Option<String>,
    pub interval: Option<Interval>,
    pub venue: Option<String>,
}

/// The setting that names the directory of the project's market-data files (the real
/// history the benchmarks, demos and some tests run on).
pub const DATA_DIR_VAR: &str = "TICKWATCH_DATA_DIR";

/// The directory `TICKWATCH_DATA_DIR` names: the one way tests and benchmarks find the
/// shared data, so that missing data is an error that says what to set, never a test
/// that quietly passes without it. (`scripts/test.sh` sets the variable.)
pub fn data_dir() -> std::result::Result<PathBuf, String> {
    let dir = std::env::var_os(DATA_DIR_VAR)
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "{DATA_DIR_VAR} is not set: point it at the directory holding the market-data files"
            )
        })?;
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "{DATA_DIR_VAR}={} is not a directory",
            dir.display()
        ))
    }
}

/// The file `name` of [`data_dir`].
pub fn data_file(name: &str) -> std::result::Result<PathBuf, String> {
    let path = data_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found ({DATA_DIR_VAR} names the data directory)",
            path.display()
        ))
    }
}

/// Reads `<SYMBOL>_<interval>.csv` (also `-` as separator); the venue comes from the known
/// symbols, or from the symbol's shape (`…USDT` → binance, `KRW-…` → upbit, six digits → krx).
pub fn infer_from_path(path: &Path) -> Inferred {
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return Inferred::default();
    };
    let (symbol, interval) = match stem.rsplit_once(['_', '-']) {
        Some((sym, iv)) => match iv.parse::<Interval>() {
            Ok(interval) => (sym.to_string(), Some(interval)),
            Err(_) => (stem.to_string(), None),
        },
        None => (stem.to_string(), None),
    };
    let symbol = symbol.to_ascii_uppercase();
    let venue = venue_of(&symbol);
    Inferred {
        symbol: (!symbol.is_empty()).then_some(symbol),
        interval,
        venue,
    }
}

/// The venue a symbol most likely trades on.
pub fn venue_of(symbol: &str) -> Option<String> {
    if let Some((venue, ..)) = SEED.iter().find(|(_, s, ..)| *s == symbol) {
        return Some((*venue).to_string());
    }
    let venue = if symbol.starts_with("KRW-") {
        "upbit"
    } else if ["USDT", "USDC", "BUSD", "FDUSD", "BTC"]
        .iter()
        .any(|q| symbol.len() > q.len() && symbol.ends_with(q))
    {
        "binance"
    } else if symbol.len() == 6 && symbol.chars().all(|c| c.is_ascii_digit()) {
        "krx"
    } else {
        return None;
    };
    Some(venue.to_string())
}

/// The names a column may go by in a header (compared case-insensitively), so that files
/// exported by common tools (`Date,Open,High,Low,Close,Adj Close,Volume`) read as they are.
const COLUMNS: [(&str, &[&str]); 6] = [
    (
        "ts",
        &["ts", "time", "timestamp", "date", "datetime", "open_time"],
    ),
    ("open", &["open"]),
    ("high", &["high"]),
    ("low", &["low"]),
    ("close", &["close"]),
    ("volume", &["volume"]),
];

/// Reads every bar of a history file as closed candles, in file order: CSV (quoted fields
/// allowed, one record a line) with a header naming the columns
/// `ts,open,high,low,close,volume` in any order, other columns ignored; blank lines are
/// skipped. Each bad line is an error naming the file and line; the caller decides
/// whether to stop or skip.
pub struct HistoryReader<R> {
    lines: std::io::Lines<R>,
    /// Where each of `COLUMNS` is in a record.
    positions: [usize; 6],
    path: String,
    line_no: usize,
    venue: String,
    symbol: String,
    interval: Interval,
}

impl<R> std::fmt::Debug for HistoryReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader")
            .field("path", &self.path)
            .field("line_no", &self.line_no)
            .field("symbol", &self.symbol)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> HistoryReader<R> {
    /// Checks the header line and prepares to read bars.
    pub fn new(
        reader: R,
        path: &str,
        venue: &str,
        symbol: &str,
        interval: Interval,
    ) -> Result<Self> {
        let mut lines = reader.lines();
        let first = lines
            .next()
            .transpose()
            .map_err(|e| csv_error(path, 1, e))?
            .ok_or_else(|| csv_error(path, 1, "the file is empty"))?;
        let header = parse_csv_line(&first).map_err(|e| csv_error(path, 1, e))?;
        let names: Vec<String> = header
            .iter()
            .map(|c| c.trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let times: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| COLUMNS[0].1.contains(n))
            .collect();
        if times.len() > 1 {
            // `Date,Time,…`: taking one would give every intraday bar the same time.
            return Err(csv_error(
                path,
                1,
                format!(
                    "header has {} time columns ({}); give one `ts` column with the date and time",
                    times.len(),
                    times.join(", ")
                ),
            ));
        }
        let mut positions = [0; 6];
        for (position, (column, aliases)) in positions.iter_mut().zip(COLUMNS) {
            *position = names
                .iter()
                .position(|n| aliases.contains(&n.as_str()))
                .ok_or_else(|| {
                    csv_error(
                        path,
                        1,
                        format!(
                            "header `{}` has no `{column}` column; expected ts,open,high,low,close,volume",
                            header.iter().collect::<Vec<_>>().join(",")
                        ),
                    )
                })?;
        }
        Ok(HistoryReader {
            lines,
            positions,
            path: path.to_string(),
            line_no: 1,
            venue: venue.to_string(),
            symbol: symbol.to_string(),
            interval,
        })
    }

    fn parse_record(&self, record: &csv::StringRecord) -> Result<Candle> {
        let field = |i: usize| -> Result<&str> {
            let (column, _) = COLUMNS[i];
            record
                .get(self.positions[i])
                .filter(|f| !f.is_empty())
                .ok_or_else(|| self.error(format!("no `{column}` value")))
        };
        let number = |i: usize| -> Result<Decimal> {
            let text = field(i)?;
            parse_decimal(text).map_err(|e| self.error(format!("{} `{text}`: {e}", COLUMNS[i].0)))
        };
        let candle = Candle {
            venue: self.venue.clone(),
            symbol: self.symbol.clone(),
            interval: self.interval,
            open_ts: parse_ts(field(0)?).map_err(|e| self.error(e))?,
            open: number(1)?,
            high: number(2)?,
            low: number(3)?,
            close: number(4)?,
            volume: number(5)?,
            trades: None,
            closed: true,
        };
        candle.validate().map_err(|e| self.error(e))?;
        Ok(candle)
    }

    fn error(&self, message: impl ToString) -> Error {
        csv_error(&self.path, self.line_no, message)
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<Candle>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.line_no += 1;
            let record = match line {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => parse_csv_line(&line),
                Err(e) => return Some(Err(self.error(e))),
            };
            return Some(
                record
                    .map_err(|e| self.error(e))
                    .and_then(|r| self.parse_record(&r)),
            );
        }
    }
}

/// One CSV line's fields (trimmed, quotes removed), by the `csv` crate. Lines are read
/// one at a time so that an error names the file's own line number.
fn parse_csv_line(line: &str) -> std::result::Result<csv::StringRecord, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .buffer_capacity(line.len().max(64))
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    reader.read_record(&mut record)?;
    Ok(record)
}

/// Opens a history file, inferring what the caller did not say from the file name.
pub fn open(
    path: &Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<Interval>,
) -> Result<HistoryReader<std::io::BufReader<std::fs::File>>> {
    let shown = path.display().to_string();
    let inferred = infer_from_path(path);
    let symbol = symbol
        .map(str::to_string)
        .or(inferred.symbol)
        .ok_or_else(|| {
            csv_error(
                &shown,
                0,
                "cannot tell the symbol from the file name; give --symbol",
            )
        })?;
    let interval = interval.or(inferred.interval).ok_or_else(|| {
        csv_error(
            &shown,
            0,
            "cannot tell the interval from the file name (e.g. `_1m`); give --interval",
        )
    })?;
    let venue = venue
        .map(str::to_string)
        .or(inferred.venue)
        .ok_or_else(|| {
            csv_error(
                &shown,
                0,
                "cannot tell the venue of this symbol; give --venue",
            )
        })?;
    crate::wire::validate_symbol(&symbol)?;
    crate::wire::validate_venue(&venue)?;
    let file = std::fs::File::open(path).map_err(|e| csv_error(&shown, 0, e))?;
    HistoryReader::new(
        std::io::BufReader::new(file),
        &shown,
        &venue,
        &symbol,
        interval,
    )
}

fn csv_error(path: &str, line: usize, message: impl ToString) -> Error {
    Error::Csv {
        path: path.to_string(),
        line,
        message: message.to_string(),
    }
}

/// Parses a decimal as history files write it (`23140.48`, `1e-05`).
pub fn parse_decimal(text: &str) -> std::result::Result<Decimal, String> {
    text.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|e| e.to_string())
}

/// Parses a bar time to epoch ms: RFC 3339 (`2023-03-01T00:00:00Z`, `…+09:00`), the
/// same without an offset or with a space for `T` (read as UTC; seconds and fractions
/// optional), a date (`2023-03-01`, midnight UTC) or epoch milliseconds. Dates that do
/// not exist (`2023-02-31`) are refused.
pub fn parse_ts(text: &str) -> std::result::Result<i64, String> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("timestamp `{text}`: {e}"));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let bad = || format!("timestamp `{text}` is not ISO-8601 UTC (2023-03-01T00:00:00Z)");
    let local = text.trim_end_matches('Z').replacen(' ', "T", 1);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(&local, format).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(&local, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(bad)
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ts("2023-03-01T00:01:00Z"), Ok(1_677_628_860_000));
        assert_eq!(parse_ts("2023-03-01"), Ok(1_677_628_800_000));
        assert_eq!(parse_ts("1677628860000"), Ok(1_677_628_860_000));
        assert_eq!(parse_ts("2024-02-29T12:30:15.5Z"), Ok(1_709_209_815_500));
        assert_eq!(format_ts(1_709_209_815_000), "2024-02-29T12:30:15Z");
        assert_eq!(format_ts(345_427_200_000), "1980-12-12T00:00:00Z");
        assert_eq!(parse_ts("2023-03-01T09:01:00+09:00"), Ok(1_677_628_860_000));
        assert_eq!(parse_ts("2023-03-01 00:01"), Ok(1_677_628_860_000));
        for bad in [
            "2023-13-01",
            "2023-02-31",
            "2023-02-29T00:00:00Z",
            "yesterday",
            "2023-03-01T25:00:00Z",
            "",
        ] {
            assert!(parse_ts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_tell_symbol_interval_and_venue() {
        let i = infer_from_path(Path::new("../shared/data/BTCUSDT_1m.csv"));
        assert_eq!(i.symbol.as_deref(), Some("BTCUSDT"));
        assert_eq!(i.interval, Some(Interval::M1));
        assert_eq!(i.venue.as_deref(), Some("binance"));
        let i = infer_from_path(Path::new("005930_1d.csv"));
        assert_eq!(
            (i.venue.as_deref(), i.interval),
            (Some("krx"), Some(Interval::D1))
        );
        let i = infer_from_path(Path::new("AAPL_1d.csv"));
        assert_eq!(i.venue.as_deref(), Some("nasdaq"));
        let i = infer_from_path(Path::new("mystery.csv"));
        assert_eq!(
            (i.symbol.as_deref(), i.interval, i.venue),
            (Some("MYSTERY"), None, None)
        );
    }

    #[test]
    fn reads_bars_and_names_bad_lines() {
        let text = "ts,open,high,low,close,volume\n\
                    2023-03-01T00:00:00Z,23140.48,23150.77,23128.52,23142.31,2.131777\n\
                    2023-03-01T00:01:00Z,23143.89,oops,23137.61,23137.77,0.881378\n\
                    \n\
                    2023-03-01T00:02:00Z,1,2,3,1,0\n";
        let rows: Vec<_> =
            HistoryReader::new(text.as_bytes(), "t.csv", "binance", "BTCUSDT", Interval::M1)
                .expect("header")
                .collect();
        assert_eq!(rows.len(), 3);
        let first = rows[0].as_ref().expect("first bar");
        assert_eq!(first.close.to_string(), "23142.31");
        assert_eq!(first.open_ts, 1_677_628_800_000);
        let err = rows[1].as_ref().expect_err("bad high").to_string();
        assert!(err.starts_with("t.csv:3: high `oops`"), "{err}");
        let err = rows[2].as_ref().expect_err("high below low").to_string();
        assert!(
            err.starts_with("t.csv:5:") && err.contains("below low"),
            "{err}"
        );
        let err = HistoryReader::new("a,b\n".as_bytes(), "x.csv", "v", "S", Interval::M1)
            .expect_err("bad header")
            .to_string();
        assert!(
            err.contains("no `ts` column; expected ts,open,high,low,close,volume"),
            "{err}"
        );
    }

    #[test]
    fn columns_are_found_by_name_and_fields_may_be_quoted() {
        let text = "Date,Open,High,Low,Close,Adj Close,Volume\n\
                    2023-03-01,\"1,000.5\",2000,900,1500,1490,\"10\"\n\
                    2023-03-02, 1500 ,1600,1400,1550,1540,12\n";
        let rows: Vec<_> =
            HistoryReader::new(text.as_bytes(), "y.csv", "nasdaq", "AAPL", Interval::D1)
                .expect("header")
                .collect();
        // A thousands separator is not a decimal: named as such, on its own line.
        let err = rows[0].as_ref().expect_err("1,000.5").to_string();
        assert!(err.starts_with("y.csv:2: open `1,000.5`"), "{err}");
        let bar = rows[1].as_ref().expect("second bar");
        assert_eq!(
            (bar.open.to_string(), bar.volume.to_string()),
            ("1500".into(), "12".into())
        );
        let reordered = "volume,close,low,high,open,ts\n5,2,1,3,1.5,1677628800000\n";
        let bar = HistoryReader::new(reordered.as_bytes(), "r.csv", "v", "S", Interval::M1)
            .expect("header")
            .next()
            .expect("a bar")
            .expect("valid");
        assert_eq!(bar.open.to_string(), "1.5");
        assert_eq!(bar.open_ts, 1_677_628_800_000);
        let split = "Date,Time,Open,High,Low,Close,Volume\n";
        let err = HistoryReader::new(split.as_bytes(), "s.csv", "v", "S", Interval::M1)
            .expect_err("two time columns")
            .to_string();
        assert!(err.contains("2 time columns (date, time)"), "{err}");
    }
}
