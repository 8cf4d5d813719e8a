//! History before the first signal: `tickwatch history load` and the load a symbol's first
//! alert or subscription starts.
//!
//! A load takes the closed candles of a series from its venue's REST API or a file
//! ([`tickwatch_producers::history`]), stores them in one transaction through the
//! recorder's store (the same upsert the live candles take, so a repeated load changes
//! nothing), then publishes a [`HistoryLoaded`] notice in the series' shard: the signals
//! role warms the series up from the store before its next candle, so a daily signal is
//! possible at the next bar. A series whose store already holds the bars up to recently is
//! skipped, so an interrupted load over many symbols resumes where it stopped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tickwatch_broker::Publisher;
use tickwatch_gateway::services::HistoryRequests;
use tickwatch_producers::candles::{bucket_start, utc_offset_ms};
use tickwatch_producers::history::{HistoryClient, HistoryVenue, span};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Candle, HistoryLoaded, Interval};
use tickwatch_signals::SignalEngine;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// Loads series and tells the signals role.
pub struct Loader {
    client: Box<HistoryClient>,
    db: DatabaseConnection,
    publisher: Publisher,
    /// The signals engine's warm-up of each interval.
    warmup: std::collections::HashMap<Interval, usize>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// What one series' load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLoad {
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    /// Candles stored (0 when skipped).
    pub stored: usize,
    /// The store already held the bars: nothing was fetched.
    pub skipped: bool,
    /// `first .. last` of what was stored.
    pub span: String,
}

impl Loader {
    pub fn new(
        config: &Config,
        db: DatabaseConnection,
        publisher: Publisher,
    ) -> anyhow::Result<Self> {
        let client = HistoryClient::new(
            config.history.clone(),
            config.producers.binance.clone(),
            config.producers.upbit.clone(),
            config.producers.kis.clone(),
        )?;
        let engine = SignalEngine::new(config.signals.clone())?;
        let warmup = Interval::ALL
            .iter()
            .map(|i| (*i, engine.warmup_bars_for(*i)))
            .collect();
        Ok(Loader {
            client: Box::new(client),
            db,
            publisher,
            warmup,
        })
    }

    pub fn client(&self) -> &HistoryClient {
        &self.client
    }

    /// Bars loaded for `interval`: `history.bars`, or what the signals engine warms up on.
    pub fn bars_for(&self, interval: Interval) -> usize {
        match self.client.config().bars {
            0 => self.warmup.get(&interval).copied().unwrap_or(1),
            bars => bars,
        }
    }

    /// Loads one series from its venue, unless the store holds its bars already (`force`
    /// loads anyway).
    pub async fn load(
        &mut self,
        venue: HistoryVenue,
        symbol: &str,
        interval: Interval,
        bars: usize,
        force: bool,
    ) -> anyhow::Result<SeriesLoad> {
        let venue_name = self.client.venue_name(venue).to_string();
        self.client.check(venue, interval)?;
        if !force && let Some(stored) = self.stored(&venue_name, symbol, interval, bars).await? {
            // Told again: a notice lost after an earlier load stored the candles (a broker
            // outage) would otherwise leave the series cold; a repeat only re-warms it.
            self.notify(&venue_name, symbol, interval, &stored).await?;
            return Ok(SeriesLoad {
                venue: venue_name,
                symbol: symbol.to_string(),
                interval,
                stored: 0,
                skipped: true,
                span: String::new(),
            });
        }
        let candles = self
            .client
            .fetch(venue, symbol, interval, bars, now_ms())
            .await
            .with_context(|| format!("loading {venue_name} {symbol} {interval}"))?;
        self.store(&venue_name, symbol, interval, &candles).await
    }

    /// Stores candles read elsewhere (a history file) and tells the signals role.
    pub async fn store(
        &mut self,
        venue: &str,
        symbol: &str,
        interval: Interval,
        candles: &[Candle],
    ) -> anyhow::Result<SeriesLoad> {
        if candles.is_empty() {
            return Ok(SeriesLoad {
                venue: venue.to_string(),
                symbol: symbol.to_string(),
                interval,
                stored: 0,
                skipped: false,
                span: span(candles),
            });
        }
        let txn = self.db.begin().await?;
        tickwatch_recorder::store::upsert_candles(&txn, candles).await?;
        txn.commit().await?;
        self.notify(venue, symbol, interval, candles).await?;
        tracing::info!(%venue, %symbol, %interval, candles = candles.len(), span = %span(candles), "history loaded");
        Ok(SeriesLoad {
            venue: venue.to_string(),
            symbol: symbol.to_string(),
            interval,
            stored: candles.len(),
            skipped: false,
            span: span(candles),
        })
    }

    /// Tells the signals role that `candles` (oldest first, not empty) of a series are stored.
    async fn notify(
        &self,
        venue: &str,
        symbol: &str,
        interval: Interval,
        candles: &[Candle],
    ) -> anyhow::Result<()> {
        let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
            return Ok(());
        };
        let notice = HistoryLoaded {
            venue: venue.to_string(),
            symbol: symbol.to_string(),
            interval,
            first_open_ts: first.open_ts,
            last_open_ts: last.open_ts,
            candles: candles.len() as u64,
        };
        self.publisher
            .publish(Exchange::Market, &notice)
            .await
            .context("telling the signals role about the loaded history")?;
        Ok(())
    }

    /// The stored candles of the series when they are `bars` and the newest is recent: no
    /// older than a few bars (a weekend and a holiday for days; two weeks for weeks).
    async fn stored(
        &self,
        venue: &str,
        symbol: &str,
        interval: Interval,
        bars: usize,
    ) -> anyhow::Result<Option<Vec<Candle>>> {
        let stored = tickwatch_recorder::store::recent_candles(
            &self.db,
            venue,
            symbol,
            interval,
            None,
            bars as u64,
        )
        .await?;
        let forming = bucket_start(now_ms(), interval, utc_offset_ms(venue));
        let recent = match interval {
            Interval::W1 => 2 * interval.as_ms(),
            // Days and intraday bars: a long weekend (Seoul's Chuseok is three days).
            _ => (5 * 86_400_000_i64).max(3 * interval.as_ms()),
        };
        let loaded =
            stored.len() >= bars && stored.last().is_some_and(|c| c.open_ts >= forming - recent);
        Ok(loaded.then_some(stored))
    }
}

/// The venues a first alert loads history for: `history.venues`, else those `run.sources`
/// has a feed for.
pub fn served_venues(config: &Config) -> HashSet<HistoryVenue> {
    if !config.history.venues.is_empty() {
        return config
            .history
            .venues
            .iter()
            .filter_map(|v| HistoryVenue::parse(v))
            .collect();
    }
    config
        .run
        .sources
        .iter()
        .filter_map(|source| match source.as_str() {
            "binance" => Some(HistoryVenue::Binance),
            "upbit" => Some(HistoryVenue::Upbit),
            "kis" => Some(HistoryVenue::Krx),
            _ => None,
        })
        .collect()
}

/// Loads a symbol's history when it gets its first alert: requests go to one background
/// task (one request at a time, so the venues' pacing holds), each symbol once per process.
#[derive(Debug)]
pub struct FirstAlertLoads {
    requests: mpsc::UnboundedSender<(Option<String>, String)>,
    seen: Mutex<HashSet<(Option<String>, String)>>,
}

impl HistoryRequests for FirstAlertLoads {
    fn request(&self, venue: Option<&str>, symbol: &str) {
        let key = (venue.map(str::to_string), symbol.to_string());
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        if fresh {
            let _ = self.requests.send(key);
        }
    }
}

impl FirstAlertLoads {
    /// Starts the loading task on `tracker`; it stops at `shutdown`. `None` when the
    /// configuration turns first-alert loads off or no source serves a loadable venue.
    pub fn start(
        config: &Config,
        loader: Loader,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<Arc<FirstAlertLoads>> {
        let served = served_venues(config);
        if !config.history.load_on_first_alert {
            return None;
        }
        if served.is_empty() {
            tracing::info!(
                "history loads on first alerts are off: no venue (set history.venues, or run.sources in this process)"
            );
            return None;
        }
        let intervals = config.history.intervals.clone();
        let (requests, mut rx) = mpsc::unbounded_channel::<(Option<String>, String)>();
        tracker.spawn(async move {
            let mut loader = loader;
            loop {
                let (venue, symbol) = tokio::select! {
                    request = rx.recv() => match request {
                        Some(request) => request,
                        None => break,
                    },
                    () = shutdown.cancelled() => break,
                };
                // A subscription names only the symbol: its venue is the one its shape says.
                let venue = venue.or_else(|| tickwatch_schema::history::venue_of(&symbol));
                let Some(venue) = venue.as_deref().and_then(|v| loader.client().venue(v)) else {
                    continue;
                };
                if !served.contains(&venue) {
                    continue;
                }
                for interval in &intervals {
                    if loader.client().check(venue, *interval).is_err() {
                        continue;
                    }
                    let bars = loader.bars_for(*interval);
                    let load = loader.load(venue, &symbol, *interval, bars, false);
                    let result = tokio::select! {
                        result = load => result,
                        () = shutdown.cancelled() => return,
                    };
                    match result {
                        Ok(load) if load.skipped => {}
                        Ok(load) => tracing::info!(venue = %load.venue, symbol = %load.symbol, interval = %load.interval, candles = load.stored, "history loaded for a new alert"),
                        Err(e) => tracing::warn!(venue = venue.as_str(), %symbol, %interval, error = format!("{e:#}"), "could not load the history of a new alert's symbol; its daily signals wait for live bars"),
                    }
                }
            }
        });
        Some(Arc::new(FirstAlertLoads {
            requests,
            seen: Mutex::default(),
        }))
    }
}

/// `tickwatch history load`.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    pub venue: String,
    pub symbols: Vec<String>,
    pub intervals: Vec<Interval>,
    pub bars: Option<usize>,
    pub files: Vec<std::path::PathBuf>,
    pub force: bool,
}

/// Runs `tickwatch history load`: each series in turn, with a progress bar on a terminal
/// and a line per series; the first failure stops the load (what was stored stays).
pub async fn load_command(config: &Config, request: &LoadRequest) -> anyhow::Result<()> {
    if request.symbols.is_empty() && request.files.is_empty() {
        anyhow::bail!("name the symbols to load (or give --file with history files)");
    }
    if !request.symbols.is_empty() && !request.files.is_empty() {
        anyhow::bail!("give symbols or --file, not both");
    }
    if request.bars == Some(0) {
        anyhow::bail!("--bars must be at least 1");
    }
    let db = crate::app::database(config, crate::app::Migrations::Require).await?;
    let broker = crate::app::broker(config, "history").await?;
    let publisher = Publisher::start(&broker, "history");
    let mut loader = Loader::new(config, db, publisher.clone())?;
    let result = run_load(&mut loader, config, request).await;
    publisher.close().await;
    result
}

async fn run_load(
    loader: &mut Loader,
    config: &Config,
    request: &LoadRequest,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if !request.files.is_empty() {
        let mut total = 0;
        for path in &request.files {
            let candles = tickwatch_producers::history::read_file(
                path,
                Some(request.venue.as_str()),
                None,
                request.intervals.first().copied(),
            )
            .with_context(|| path.display().to_string())?;
            let Some(first) = candles.first() else {
                crate::say!("{}: no candles", path.display());
                continue;
            };
            let (venue, symbol, interval) =
                (first.venue.clone(), first.symbol.clone(), first.interval);
            let load = loader.store(&venue, &symbol, interval, &candles).await?;
            total += load.stored;
            crate::say!(
                "{venue} {symbol} {interval}: {} candles stored ({})",
                load.stored,
                load.span
            );
        }
        crate::say!(
            "{total} candles stored in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let venue = loader.client().venue(&request.venue).ok_or_else(|| {
        anyhow::anyhow!(
            "`{}` is not a venue history can be loaded from: use {}",
            request.venue,
            HistoryVenue::ALL.map(HistoryVenue::as_str).join(", ")
        )
    })?;
    let intervals = if request.intervals.is_empty() {
        config.history.intervals.clone()
    } else {
        request.intervals.clone()
    };
    for interval in &intervals {
        loader.client().check(venue, *interval)?;
    }
    let series: Vec<(String, Interval)> = request
        .symbols
        .iter()
        .flat_map(|s| intervals.iter().map(move |i| (s.trim().to_string(), *i)))
        .collect();
    for (symbol, _) in &series {
        tickwatch_schema::wire::validate_symbol(symbol)
            .map_err(|e| anyhow::anyhow!("`{symbol}`: {e}"))?;
    }
    let bar = progress_bar(series.len() as u64);
    let (mut stored, mut skipped) = (0usize, 0usize);
    for (symbol, interval) in &series {
        bar.set_message(format!("{symbol} {interval}"));
        let bars = request.bars.unwrap_or_else(|| loader.bars_for(*interval));
        let load = loader
            .load(venue, symbol, *interval, bars, request.force)
            .await?;
        let line = if load.skipped {
            skipped += 1;
            format!(
                "{} {symbol} {interval}: already stored, skipped (--force loads it again)",
                load.venue
            )
        } else {
            stored += load.stored;
            format!(
                "{} {symbol} {interval}: {} candles stored ({})",
                load.venue, load.stored, load.span
            )
        };
        bar.suspend(|| crate::say(&line));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let invalid = loader.client().invalid_rows;
    crate::say!(
        "{} series: {stored} candles stored, {skipped} series already stored{} ({:.1} s)",
        series.len(),
        if invalid > 0 {
            format!(", {invalid} rows the venue sent skipped as invalid")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A progress bar on a terminal's stderr; hidden otherwise.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} series {msg} ({eta})")
    {
        bar.set_style(style);
    }
    bar
}
