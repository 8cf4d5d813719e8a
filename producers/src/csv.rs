//! Replay of history files (`ts,open,high,low,close,volume`, read by the schema's
//! [`history`] module) as closed candles, and optionally as ticks synthesised from each bar.
//!
//! - Order: rows are published in file order; each bar's ticks come before the bar's candle.
//!   Count: one candle per good row (bad rows are logged with file and line, counted and
//!   skipped).
//! - Ticks from a bar ([`bar_ticks`]): four, spread over the bar at its open and ¼, ½, ¾ of its
//!   duration: open → low → high → close for an up (or flat) bar, open → high → low → close
//!   for a down bar; each carries a quarter of the volume, so they add up to the bar exactly.
//! - Pacing: with `speed = "60x"` a message is published when its market time, counted from
//!   the first message, divided by 60 has passed (a candle's time is its bar's end, a tick's
//!   its own `ts`); `max` publishes as fast as the sink confirms.
//! - Sessions: a daily (or weekly) bar of a venue whose trading day is not UTC (KRX) carries
//!   only a date label in these files; its `open_ts` is moved to 00:00 of that date in the
//!   venue's time zone, as the [`candles`](crate::candles) builder would have it.
//! - The broker being away does not lose rows: the replay waits, retrying with backoff. On
//!   shutdown it stops reading and publishes what it holds (for `shutdown_grace`).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::history;
use tickwatch_schema::wire::{Candle, Interval, Tick};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::candles::utc_offset_ms;
use crate::config::{self, Backoff, BackoffConfig, duration};
use crate::error::{Error, Result};
use crate::feed::worth_logging;
use crate::metrics::{self, Metrics};
use crate::outbox::{Batch, Item, publish_batch};
use crate::sink::MarketSink;

/// How fast to replay: a multiple of market time, or as fast as the broker confirms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Max,
    Factor(f64),
}

impl FromStr for Speed {
    type Err = Error;

    /// `max`, `60x`, `60`, `0.5x`.
    fn from_str(s: &str) -> Result<Self> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let number = text.strip_suffix(['x', 'X']).unwrap_or(text);
        match number.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(Error::config(
                "speed",
                format!("`{s}` is not a speed; write `max` or a factor like `60x`"),
            )),
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Factor(k) => write!(f, "{k}x"),
        }
    }
}

impl Serialize for Speed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The `[csv]` section (and the `produce csv` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvConfig {
    /// The history file.
    pub path: PathBuf,
    /// Venue, symbol, interval: inferred from a name like `BTCUSDT_1m.csv` when not given.
    pub venue: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<Interval>,
    pub speed: Speed,
    /// Publish each bar as a closed candle.
    pub candles: bool,
    /// Publish four ticks synthesised from each bar.
    pub ticks: bool,
    /// Messages per publish call (one confirm round) at `max` speed.
    pub batch: usize,
    /// Show a progress bar (only ever on a terminal).
    pub progress: bool,
    /// Backoff while the broker is unavailable.
    pub retry: BackoffConfig,
    /// On shutdown, how long to keep trying to publish what is held.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            path: PathBuf::new(),
            venue: None,
            symbol: None,
            interval: None,
            speed: Speed::Max,
            candles: true,
            ticks: false,
            batch: 1000,
            progress: true,
            retry: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
                ..BackoffConfig::default()
            },
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl CsvConfig {
    /// A configuration for one file, everything else default.
    pub fn for_file(path: impl Into<PathBuf>) -> Self {
        CsvConfig {
            path: path.into(),
            ..CsvConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::config("csv.path", "is required"));
        }
        if let Some(venue) = &self.venue {
            config::validate_venue("csv.venue", venue)?;
        }
        if let Some(symbol) = &self.symbol {
            tickwatch_schema::wire::validate_symbol(symbol)
                .map_err(|e| Error::config("csv.symbol", e))?;
        }
        if !self.candles && !self.ticks {
            return Err(Error::config(
                "csv.candles",
                "is off and so is `ticks`: nothing to publish",
            ));
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(Error::config("csv.batch", "must be between 1 and 100000"));
        }
        self.retry.validate("csv.retry")
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    /// Data rows read (good and bad).
    pub rows: u64,
    /// Rows that could not be read, skipped.
    pub skipped_rows: u64,
    /// Candles and ticks the sink confirmed.
    pub candles: u64,
    pub ticks: u64,
    /// Messages the sink rejected for good.
    pub rejected: u64,
    /// Messages still unconfirmed when the shutdown grace ran out.
    pub lost: u64,
    /// False when a shutdown stopped the replay before the end of the file.
    pub completed: bool,
    #[serde(with = "duration")]
    pub elapsed: Duration,
}

impl ReplayReport {
    pub fn messages(&self) -> u64 {
        self.candles + self.ticks
    }

    /// Confirmed messages per second of wall time.
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.messages() as f64 / secs
        } else {
            0.0
        }
    }
}

/// The result of [`bench()`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub messages: u64,
    #[serde(with = "duration")]
    pub elapsed: Duration,
    pub per_second: f64,
}

/// The four ticks a bar is replayed as (see the module docs for order, times and volume).
pub fn bar_ticks(bar: &Candle) -> [Tick; 4] {
    let prices = if bar.close >= bar.open {
        [bar.open, bar.low, bar.high, bar.close]
    } else {
        [bar.open, bar.high, bar.low, bar.close]
    };
    let quarter = (bar.volume / Decimal::from(4)).round_dp(bar.volume.scale() + 2);
    let last = bar.volume - quarter * Decimal::from(3);
    let step = bar.interval.as_ms() / 4;
    let mut i = 0;
    prices.map(|price| {
        let tick = Tick {
            venue: bar.venue.clone(),
            symbol: bar.symbol.clone(),
            price,
            qty: if i == 3 { last } else { quarter },
            ts: bar.open_ts + step * i,
            trade_id: None,
        };
        i += 1;
        tick
    })
}

/// Replays the file into `sink` until its end or `shutdown`.
pub async fn replay(
    config: CsvConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<ReplayReport> {
    replay_with_metrics(config, sink, Arc::new(Metrics::default()), shutdown).await
}

/// The same as [`replay`]; named like the other sources' entry point.
pub async fn run(
    config: CsvConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<ReplayReport> {
    replay(config, sink, shutdown).await
}

/// Replays the file at `max` speed (no progress bar) and reports the confirmed rate: the
/// hook for comparing `csv --speed max` with raw publishing. Candles only unless
/// `config.ticks` is set.
pub async fn bench(mut config: CsvConfig, sink: Arc<dyn MarketSink>) -> Result<BenchReport> {
    config.speed = Speed::Max;
    config.progress = false;
    let report = replay(config, sink, CancellationToken::new()).await?;
    Ok(BenchReport {
        messages: report.messages(),
        elapsed: report.elapsed,
        per_second: report.per_second(),
    })
}

/// [`replay`], counting into `metrics`.
pub async fn replay_with_metrics(
    config: CsvConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<ReplayReport> {
    config.validate()?;
    let reader = history::open(
        &config.path,
        config.venue.as_deref(),
        config.symbol.as_deref(),
        config.interval,
    )?;
    let inferred = history::infer_from_path(&config.path);
    let (venue, symbol, interval) = (
        config.venue.clone().or(inferred.venue).unwrap_or_default(),
        config
            .symbol
            .clone()
            .or(inferred.symbol)
            .unwrap_or_default(),
        config
            .interval
            .or(inferred.interval)
            .unwrap_or(Interval::M1),
    );
    let shown = config.path.display().to_string();
    tracing::info!(file = %shown, %venue, %symbol, %interval, speed = %config.speed, "csv replay starting");

    let progress = if config.progress && std::io::stderr().is_terminal() {
        Some(progress_bar(&config.path).await)
    } else {
        None
    };

    // The file is read on a blocking thread; rows come through a bounded channel.
    let (tx, mut rows) = tokio::sync::mpsc::channel::<std::result::Result<Candle, String>>(4096);
    let reader_task = tokio::task::spawn_blocking(move || {
        for row in reader {
            if tx.blocking_send(row.map_err(|e| e.to_string())).is_err() {
                break; // the replay stopped
            }
        }
    });

    // The grace clock starts when shutdown is asked for; until then retries are unbounded.
    let hard_stop = CancellationToken::new();
    let grace_task = {
        let (shutdown, hard_stop, grace) =
            (shutdown.clone(), hard_stop.clone(), config.shutdown_grace);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
            hard_stop.cancel();
        })
    };

    let mut replay = Replayer {
        sink,
        metrics: metrics.clone(),
        backoff: config.retry.backoff(),
        hard_stop: hard_stop.clone(),
        held: Vec::new(),
        batch: config.batch,
        gave_up: false,
    };
    let session_shift = if interval.is_daily_or_longer() {
        utc_offset_ms(&venue)
    } else {
        0
    };
    let started = Instant::now();
    let mut market_start: Option<i64> = None;
    let mut rows_read = 0u64;
    let mut skipped = 0u64;
    let mut completed = true;

    'rows: loop {
        let row = tokio::select! {
            row = rows.recv() => row,
            () = shutdown.cancelled() => { completed = false; break 'rows; }
        };
        let Some(row) = row else { break };
        rows_read += 1;
        metrics::inc(&metrics.frames);
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        let mut bar = match row {
            Ok(bar) => bar,
            Err(e) => {
                skipped += 1;
                metrics::inc(&metrics.malformed);
                if worth_logging(skipped) {
                    tracing::warn!(error = %e, skipped, "bad row skipped");
                }
                continue;
            }
        };
        bar.open_ts -= session_shift;
        let mut items: Vec<(i64, Item)> = Vec::with_capacity(5);
        if config.ticks {
            items.extend(bar_ticks(&bar).into_iter().map(|t| (t.ts, Item::Tick(t))));
        }
        if config.candles {
            items.push((bar.open_ts + bar.interval.as_ms(), Item::Candle(bar)));
        }
        for (due, item) in items {
            if let Speed::Factor(k) = config.speed {
                let first = *market_start.get_or_insert(due);
                let wait = Duration::from_secs_f64((due - first).max(0) as f64 / 1000.0 / k);
                let at = started + wait;
                if at > Instant::now() {
                    // Publish what is due before waiting for the next message's time.
                    if !replay.flush().await {
                        completed = false;
                        break 'rows;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = shutdown.cancelled() => {
                            replay.held.push(item);
                            completed = false;
                            break 'rows;
                        }
                    }
                }
            }
            replay.held.push(item);
            if replay.held.len() >= replay.batch && !replay.flush().await {
                completed = false;
                break 'rows;
            }
        }
    }
    drop(rows);
    replay.flush().await;
    grace_task.abort();
    if let Err(e) = reader_task.await {
        tracing::error!(error = %e, "csv reader thread failed");
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    let m = metrics.snapshot();
    let report = ReplayReport {
        venue,
        symbol,
        interval,
        rows: rows_read,
        skipped_rows: skipped,
        candles: m.candles_published,
        ticks: m.ticks_published,
        rejected: m.dropped_rejected,
        lost: m.dropped_shutdown,
        completed: completed && !replay.gave_up,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        file = %shown,
        rows = report.rows,
        skipped = report.skipped_rows,
        candles = report.candles,
        ticks = report.ticks,
        rejected = report.rejected,
        lost = report.lost,
        rate = format!("{:.0}/s", report.per_second()),
        "csv replay finished"
    );
    Ok(report)
}

struct Replayer {
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    hard_stop: CancellationToken,
    held: Vec<Item>,
    batch: usize,
    gave_up: bool,
}

impl Replayer {
    /// Publishes everything held, in order; false once the shutdown grace ran out.
    async fn flush(&mut self) -> bool {
        if self.gave_up {
            let lost = self.held.len() as u64;
            self.held.clear();
            metrics::add(&self.metrics.dropped_shutdown, lost);
            return false;
        }
        let runs = Batch::runs(self.held.drain(..), self.batch);
        let mut runs = runs.into_iter();
        while let Some(run) = runs.next() {
            let ok = publish_batch(
                run,
                &*self.sink,
                "csv",
                &self.metrics,
                &mut self.backoff,
                &self.hard_stop,
            )
            .await;
            if !ok {
                let lost: usize = runs.map(|r| r.len()).sum();
                metrics::add(&self.metrics.dropped_shutdown, lost as u64);
                self.gave_up = true;
                return false;
            }
        }
        true
    }
}

async fn progress_bar(path: &Path) -> ProgressBar {
    let path = path.to_path_buf();
    let total = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&path)
            .map(|f| std::io::BufReader::new(f).lines().count().saturating_sub(1))
            .unwrap_or(0)
    })
    .await
    .unwrap_or(0);
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} bars  {per_sec}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>().expect("max"), Speed::Max);
        assert_eq!("60x".parse::<Speed>().expect("60x"), Speed::Factor(60.0));
        assert_eq!("2.5".parse::<Speed>().expect("2.5"), Speed::Factor(2.5));
        for bad in ["0x", "-1x", "fast", "", "infx"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
        assert_eq!(Speed::Factor(60.0).to_string(), "60x");
    }

    #[test]
    fn bars_become_four_ticks_in_the_documented_order() {
        let bar = Candle {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            interval: Interval::M1,
            open_ts: 1_677_628_800_000,
            open: "23140.48".parse().expect("d"),
            high: "23150.77".parse().expect("d"),
            low: "23128.52".parse().expect("d"),
            close: "23142.31".parse().expect("d"),
            volume: "2.131777".parse().expect("d"),
            trades: None,
            closed: true,
        };
        let ticks = bar_ticks(&bar);
        let prices: Vec<_> = ticks.iter().map(|t| t.price).collect();
        assert_eq!(prices, [bar.open, bar.low, bar.high, bar.close]);
        let times: Vec<_> = ticks.iter().map(|t| t.ts - bar.open_ts).collect();
        assert_eq!(times, [0, 15_000, 30_000, 45_000]);
        let volume: Decimal = ticks.iter().map(|t| t.qty).sum();
        assert_eq!(volume, bar.volume);
        let down = Candle {
            close: "23130".parse().expect("d"),
            ..bar.clone()
        };
        let prices: Vec<_> = bar_ticks(&down).iter().map(|t| t.price).collect();
        assert_eq!(prices, [down.open, down.high, down.low, down.close]);
    }
}
