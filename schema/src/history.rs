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

/// Reads every bar of a history file as closed candles, in file order. Each bad line is an
/// error naming the file and line; the caller decides whether to stop or skip.
#[derive(Debug)]
pub struct HistoryReader<R> {
    lines: std::io::Lines<R>,
    path: String,
    line_no: usize,
    venue: String,
    symbol: String,
    interval: Interval,
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
        let header = lines
            .next()
            .transpose()
            .map_err(|e| csv_error(path, 1, e))?
            .ok_or_else(|| csv_error(path, 1, "the file is empty"))?;
        let columns: Vec<_> = header
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if columns.len() < 6 || columns[..6] != ["ts", "open", "high", "low", "close", "volume"] {
            return Err(csv_error(
                path,
                1,
                format!("header is `{header}`; expected `ts,open,high,low,close,volume`"),
            ));
        }
        Ok(HistoryReader {
            lines,
            path: path.to_string(),
            line_no: 1,
            venue: venue.to_string(),
            symbol: symbol.to_string(),
            interval,
        })
    }

    fn parse_line(&self, line: &str) -> Result<Candle> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 6 {
            return Err(self.error(format!("{} fields; expected 6", fields.len())));
        }
        let number = |name: &'static str, text: &str| -> Result<Decimal> {
            parse_decimal(text).map_err(|e| self.error(format!("{name} `{text}`: {e}")))
        };
        let candle = Candle {
            venue: self.venue.clone(),
            symbol: self.symbol.clone(),
            interval: self.interval,
            open_ts: parse_ts(fields[0]).map_err(|e| self.error(e))?,
            open: number("open", fields[1])?,
            high: number("high", fields[2])?,
            low: number("low", fields[3])?,
            close: number("close", fields[4])?,
            volume: number("volume", fields[5])?,
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
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(self.error(e))),
            };
            self.line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            return Some(self.parse_line(&line));
        }
    }
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

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z`, `YYYY-MM-DD` or epoch milliseconds, to epoch ms.
pub fn parse_ts(text: &str) -> std::result::Result<i64, String> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("timestamp `{text}`: {e}"));
    }
    let bad = || format!("timestamp `{text}` is not ISO-8601 UTC (2023-03-01T00:00:00Z)");
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let mut next = || -> std::result::Result<i64, String> {
        parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)
    };
    let (year, month, day) = (next()?, next()?, next()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let hms: Vec<i64> = hms
            .split(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<std::result::Result<_, _>>()?;
        if hms.len() < 2 || hms.len() > 3 || hms[0] > 23 || hms[1] > 59 {
            return Err(bad());
        }
        ms += (hms[0] * 3600 + hms[1] * 60 + hms.get(2).copied().unwrap_or(0)) * 1000;
        if !frac.is_empty() {
            let digits: String = frac.chars().take(3).collect();
            let scale = 10_i64.pow(3 - digits.len() as u32);
            ms += digits.parse::<i64>().map_err(|_| bad())? * scale;
        }
    }
    Ok(ms)
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ts(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let secs = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
        for bad in ["2023-13-01", "yesterday", "2023-03-01T25:00:00Z", ""] {
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
            err.contains("expected `ts,open,high,low,close,volume`"),
            "{err}"
        );
    }
}
