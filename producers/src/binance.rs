//! Binance spot: one combined-stream connection
//! (`{ws_url}/stream?streams=btcusdt@trade/btcusdt@kline_1m/…`) carrying trades and klines.
//!
//! - `trade` events (`e,E,s,t,p,q,T,m`) become ticks: `ts` = trade time `T`, `trade_id` = `t`.
//!   Trade ids are de-duplicated across reconnects and renewals (bounded memory).
//! - `kline` events (`k{t,T,s,i,o,c,h,l,v,n,x,…}`) become a closed candle when `x` is true;
//!   forming klines only serve gap detection.
//! - Gap detection: for each symbol and interval the feed remembers the last closed kline it
//!   published. Any kline event whose open time is more than one interval past it (typically
//!   the first event after a reconnect) means closed klines were missed; they are fetched from
//!   `GET {rest_url}/api/v3/klines?symbol&interval&startTime&endTime&limit=1000` (paged) and
//!   published, in order, before anything newer of that series, so consumers see a continuous
//!   candle series. A gap longer than `backfill_max` is filled at its recent end, and any part
//!   that could not be filled is logged with its time range and counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::backoff::Backoff;
use tickwatch_schema::history::{format_ts, parse_decimal};
use tickwatch_schema::wire::{Candle, Interval, Message, Tick};
use tokio_util::sync::CancellationToken;

use crate::config::{self, BufferConfig, ConnectionConfig, duration};
use crate::dedupe::Dedupe;
use crate::error::{Error, Result};
use crate::feed::{self, Feed, excerpt, worth_logging};
use crate::metrics::{self, Metrics, MetricsSnapshot};
use crate::outbox::{Item, Pipeline};
use crate::sink::MarketSink;

/// Most klines Binance returns per REST request.
const REST_PAGE: usize = 1000;
/// Most streams Binance allows on one connection.
const MAX_STREAMS: usize = 1024;

/// The `[binance]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinanceConfig {
    /// WebSocket base, without `/stream` (`TICKWATCH_BINANCE_WS_URL`).
    pub ws_url: String,
    /// REST base for the kline backfill (`TICKWATCH_BINANCE_REST_URL`).
    pub rest_url: String,
    /// The venue name on the messages (and in their routing keys).
    pub venue: String,
    /// Symbols as Binance spells them, upper-case (`BTCUSDT`).
    pub symbols: Vec<String>,
    /// Subscribe to `<symbol>@trade` and publish ticks.
    pub trades: bool,
    /// Kline intervals to subscribe to (`<symbol>@kline_<interval>`); closed ones are published.
    pub klines: Vec<Interval>,
    /// Fill gaps in the kline series from REST after a reconnect.
    pub backfill: bool,
    /// Most klines fetched for one gap (the most recent ones are kept).
    pub backfill_max: usize,
    /// Timeout of one REST request.
    #[serde(with = "duration")]
    pub rest_timeout: Duration,
    /// REST attempts per page before the gap is given up (and logged).
    pub rest_attempts: u32,
    /// Trade ids remembered for de-duplication.
    pub dedupe_capacity: usize,
    pub connection: ConnectionConfig,
    pub buffer: BufferConfig,
}

impl Default for BinanceConfig {
    fn default() -> Self {
        BinanceConfig {
            ws_url: "wss://stream.binance.com:9443".into(),
            rest_url: "https://api.binance.com".into(),
            venue: "binance".into(),
            symbols: vec!["BTCUSDT".into()],
            trades: true,
            klines: vec![Interval::M1],
            backfill: true,
            backfill_max: 5000,
            rest_timeout: Duration::from_secs(10),
            rest_attempts: 3,
            dedupe_capacity: 100_000,
            connection: ConnectionConfig::default(),
            buffer: BufferConfig::default(),
        }
    }
}

impl BinanceConfig {
    pub fn validate(&self) -> Result<()> {
        config::validate_url("binance.ws_url", &self.ws_url, &["ws", "wss"])?;
        config::validate_url("binance.rest_url", &self.rest_url, &["http", "https"])?;
        config::validate_venue("binance.venue", &self.venue)?;
        config::validate_symbols("binance.symbols", &self.symbols)?;
        if !self.trades && self.klines.is_empty() {
            return Err(Error::config(
                "binance.klines",
                "is empty and `trades` is off: nothing to subscribe to",
            ));
        }
        for (i, interval) in self.klines.iter().enumerate() {
            if self.klines[..i].contains(interval) {
                return Err(Error::config(
                    format!("binance.klines[{i}]"),
                    format!("`{interval}` is listed twice"),
                ));
            }
        }
        let streams = self.symbols.len() * (usize::from(self.trades) + self.klines.len());
        if streams > MAX_STREAMS {
            return Err(Error::config(
                "binance.symbols",
                format!("{streams} streams; Binance allows {MAX_STREAMS} per connection"),
            ));
        }
        if !(1..=100_000).contains(&self.backfill_max) {
            return Err(Error::config(
                "binance.backfill_max",
                "must be between 1 and 100000",
            ));
        }
        config::validate_positive("binance.rest_timeout", self.rest_timeout)?;
        if self.rest_attempts == 0 {
            return Err(Error::config("binance.rest_attempts", "must be at least 1"));
        }
        if self.dedupe_capacity == 0 {
            return Err(Error::config(
                "binance.dedupe_capacity",
                "must be at least 1",
            ));
        }
        self.connection.validate("binance.connection")?;
        self.buffer.validate("binance.buffer")
    }

    /// The combined-stream URL for the configured symbols and streams.
    pub fn stream_url(&self) -> String {
        let mut streams = Vec::new();
        for symbol in &self.symbols {
            let lower = symbol.to_ascii_lowercase();
            if self.trades {
                streams.push(format!("{lower}@trade"));
            }
            for interval in &self.klines {
                streams.push(format!("{lower}@kline_{interval}"));
            }
        }
        format!(
            "{}/stream?streams={}",
            self.ws_url.trim_end_matches('/'),
            streams.join("/")
        )
    }
}

/// Runs the Binance feed until `shutdown`, then flushes; returns the final counters.
pub async fn run(
    config: BinanceConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    run_with_metrics(config, sink, Arc::new(Metrics::default()), shutdown).await
}

/// [`run`], counting into `metrics` (for a live metrics endpoint).
pub async fn run_with_metrics(
    config: BinanceConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    config.validate()?;
    let http = reqwest::Client::builder()
        .timeout(config.rest_timeout)
        .build()
        .map_err(|e| Error::Rest {
            url: config.rest_url.clone(),
            reason: format!("building the HTTP client: {e}"),
        })?;
    tracing::info!(
        symbols = ?config.symbols,
        trades = config.trades,
        klines = ?config.klines,
        "binance feed starting"
    );
    let pipeline = Pipeline::start("binance", sink, config.buffer.clone(), metrics.clone());
    let connection = config.connection.clone();
    let mut feed = BinanceFeed::new(config, http, metrics.clone());
    feed::drive(
        &mut feed,
        &connection,
        &pipeline.outbox,
        &metrics,
        &shutdown,
    )
    .await;
    pipeline.finish().await;
    Ok(metrics.snapshot())
}

#[derive(Deserialize)]
struct Envelope {
    // Not read, but required: it tells a stream event from a control answer or an error.
    #[allow(dead_code)]
    stream: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct TradeEvent {
    #[serde(rename = "s")]
    symbol: String,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p")]
    price: String,
    #[serde(rename = "q")]
    qty: String,
    #[serde(rename = "T")]
    trade_time: i64,
}

#[derive(Deserialize)]
struct KlineEvent {
    #[serde(rename = "k")]
    kline: Kline,
}

#[derive(Deserialize)]
struct Kline {
    #[serde(rename = "t")]
    open_time: i64,
    #[serde(rename = "s")]
    symbol: String,
    #[serde(rename = "i")]
    interval: String,
    #[serde(rename = "o")]
    open: String,
    #[serde(rename = "h")]
    high: String,
    #[serde(rename = "l")]
    low: String,
    #[serde(rename = "c")]
    close: String,
    #[serde(rename = "v")]
    volume: String,
    #[serde(rename = "n", default)]
    trades: Option<u64>,
    #[serde(rename = "x")]
    closed: bool,
}

struct BinanceFeed {
    config: BinanceConfig,
    url: String,
    http: reqwest::Client,
    dedupe: Dedupe,
    /// Open time of the last closed kline published, per (symbol, interval).
    last_closed: HashMap<(String, Interval), i64>,
    metrics: Arc<Metrics>,
}

impl BinanceFeed {
    fn new(config: BinanceConfig, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        BinanceFeed {
            url: config.stream_url(),
            dedupe: Dedupe::new(config.dedupe_capacity),
            config,
            http,
            last_closed: HashMap::new(),
            metrics,
        }
    }

    fn malformed(&self, what: &str, payload: &[u8]) {
        metrics::inc(&self.metrics.malformed);
        let n = self
            .metrics
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed);
        if worth_logging(n) {
            tracing::warn!(source = "binance", count = n, frame = %excerpt(payload), "malformed frame skipped: {what}");
        }
    }

    fn invalid(&self, what: String) {
        metrics::inc(&self.metrics.invalid_values);
        let n = self
            .metrics
            .invalid_values
            .load(std::sync::atomic::Ordering::Relaxed);
        if worth_logging(n) {
            tracing::warn!(source = "binance", count = n, "value skipped: {what}");
        }
    }

    fn decimal(&self, field: &str, text: &str) -> Option<Decimal> {
        match parse_decimal(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.invalid(format!("`{field}` = `{text}`: {e}"));
                None
            }
        }
    }

    fn on_trade(&mut self, event: TradeEvent, out: &mut Vec<Item>) {
        let (Some(price), Some(qty)) = (
            self.decimal("p", &event.price),
            self.decimal("q", &event.qty),
        ) else {
            return;
        };
        let tick = Tick {
            venue: self.config.venue.clone(),
            symbol: event.symbol,
            price,
            qty,
            ts: event.trade_time,
            trade_id: Some(event.trade_id.to_string()),
        };
        if let Err(e) = tick.validate() {
            self.invalid(format!("trade {}: {e}", event.trade_id));
            return;
        }
        if !self
            .dedupe
            .first_time(&tick.symbol, &event.trade_id.to_string())
        {
            metrics::inc(&self.metrics.duplicates);
            return;
        }
        out.push(Item::Tick(tick));
    }

    async fn on_kline(&mut self, kline: Kline, out: &mut Vec<Item>) {
        let Ok(interval) = kline.interval.parse::<Interval>() else {
            self.invalid(format!("kline interval `{}`", kline.interval));
            return;
        };
        let key = (kline.symbol.clone(), interval);
        let step = interval.as_ms();
        if let Some(&last) = self.last_closed.get(&key)
            && kline.open_time > last + step
        {
            self.fill_gap(&key, last + step, kline.open_time, out).await;
            // Whatever the backfill achieved, the gap is dealt with: never retry it.
            let before = kline.open_time - step;
            let entry = self.last_closed.entry(key.clone()).or_insert(before);
            *entry = (*entry).max(before);
        }
        if !kline.closed {
            return;
        }
        if self
            .last_closed
            .get(&key)
            .is_some_and(|&last| kline.open_time <= last)
        {
            metrics::inc(&self.metrics.duplicates);
            return;
        }
        let fields = [
            ("o", &kline.open),
            ("h", &kline.high),
            ("l", &kline.low),
            ("c", &kline.close),
            ("v", &kline.volume),
        ];
        let mut values = [Decimal::ZERO; 5];
        for (slot, (name, text)) in values.iter_mut().zip(fields) {
            match self.decimal(name, text) {
                Some(d) => *slot = d,
                None => return,
            }
        }
        let [open, high, low, close, volume] = values;
        let candle = Candle {
            venue: self.config.venue.clone(),
            symbol: kline.symbol,
            interval,
            open_ts: kline.open_time,
            open,
            high,
            low,
            close,
            volume,
            trades: kline.trades,
            closed: true,
        };
        if let Err(e) = candle.validate() {
            self.invalid(format!("kline {} {}: {e}", interval, kline.open_time));
            return;
        }
        self.last_closed.insert(key, candle.open_ts);
        out.push(Item::Candle(candle));
    }

    /// Fetches and publishes the closed klines opening in `[from, until)`.
    async fn fill_gap(
        &mut self,
        (symbol, interval): &(String, Interval),
        from: i64,
        until: i64,
        out: &mut Vec<Item>,
    ) {
        let step = interval.as_ms();
        let missing = (until - from) / step;
        let range = format!("{} .. {}", format_ts(from), format_ts(until));
        if !self.config.backfill {
            metrics::inc(&self.metrics.backfill_failures);
            tracing::warn!(source = "binance", %symbol, %interval, missing, %range, "gap in the kline series; backfill is off");
            return;
        }
        let max = i64::try_from(self.config.backfill_max).unwrap_or(i64::MAX);
        let start = from.max(until - max * step);
        if start > from {
            metrics::inc(&self.metrics.backfill_failures);
            tracing::warn!(source = "binance", %symbol, %interval, unfilled = %format!("{} .. {}", format_ts(from), format_ts(start)), "gap longer than backfill_max; filling only its recent end");
        }
        tracing::info!(source = "binance", %symbol, %interval, missing, %range, "backfilling klines after a gap");
        match self.fetch_klines(symbol, *interval, start, until - 1).await {
            Ok(candles) => {
                metrics::add(&self.metrics.backfilled_candles, candles.len() as u64);
                if let Some(last) = candles.last() {
                    self.last_closed
                        .insert((symbol.clone(), *interval), last.open_ts);
                }
                out.extend(candles.into_iter().map(Item::Candle));
            }
            Err(e) => {
                metrics::inc(&self.metrics.backfill_failures);
                tracing::warn!(source = "binance", %symbol, %interval, %range, error = %e, "gap could not be backfilled; the candle series has a hole");
            }
        }
    }

    /// Closed klines with open time in `[start, end]`, in order, across pages.
    async fn fetch_klines(
        &self,
        symbol: &str,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<Vec<Candle>> {
        fetch_klines(
            &self.http,
            &self.config,
            (symbol, interval),
            (start, end),
            &mut |reason| self.invalid(reason),
        )
        .await
    }
}

/// Closed klines of `symbol` with open time in `[start, end]`, in order, across pages of
/// `GET {rest_url}/api/v3/klines`; a row that is not a valid candle goes to `invalid` and
/// is skipped. The feed's gap backfill and the history load both read klines here.
pub(crate) async fn fetch_klines(
    http: &reqwest::Client,
    config: &BinanceConfig,
    (symbol, interval): (&str, Interval),
    (mut start, end): (i64, i64),
    invalid: &mut (dyn FnMut(String) + Send),
) -> Result<Vec<Candle>> {
    let url = format!("{}/api/v3/klines", config.rest_url.trim_end_matches('/'));
    let mut candles: Vec<Candle> = Vec::new();
    while start <= end {
        let rows = fetch_page(http, config, &url, symbol, interval, start, end).await?;
        let page_len = rows.len();
        for row in rows {
            match row_to_candle(&config.venue, &row, symbol, interval) {
                Ok(c) if c.open_ts >= start && c.open_ts <= end => {
                    if candles.last().is_none_or(|l| c.open_ts > l.open_ts) {
                        candles.push(c);
                    }
                }
                Ok(_) => {}
                Err(reason) => invalid(format!("REST kline row: {reason}")),
            }
        }
        match candles.last() {
            Some(last) if page_len >= REST_PAGE => start = last.open_ts + interval.as_ms(),
            _ => break,
        }
    }
    Ok(candles)
}

async fn fetch_page(
    http: &reqwest::Client,
    config: &BinanceConfig,
    url: &str,
    symbol: &str,
    interval: Interval,
    start: i64,
    end: i64,
) -> Result<Vec<Vec<serde_json::Value>>> {
    let mut last_error = String::new();
    // 1 s, 2 s, 4 s … up to 32 s between attempts: the project's one backoff.
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(32), 2.0, 0.0);
    for attempt in 0..config.rest_attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        let response = http
            .get(url)
            .query(&[
                ("symbol", symbol.to_string()),
                ("interval", interval.to_string()),
                ("startTime", start.to_string()),
                ("endTime", end.to_string()),
                ("limit", REST_PAGE.to_string()),
            ])
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(rows) => return Ok(rows),
                Err(e) => last_error = format!("unreadable body: {e}"),
            },
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                last_error = format!("HTTP {status}: {}", excerpt(body.as_bytes()));
                // A 4xx other than rate limiting will not get better by asking again.
                if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 418 {
                    break;
                }
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(Error::Rest {
        url: url.to_string(),
        reason: last_error,
    })
}

fn row_to_candle(
    venue: &str,
    row: &[serde_json::Value],
    symbol: &str,
    interval: Interval,
) -> std::result::Result<Candle, String> {
    let text = |i: usize| -> std::result::Result<Decimal, String> {
        let value = row.get(i).ok_or_else(|| format!("no column {i}"))?;
        let s = value
            .as_str()
            .ok_or_else(|| format!("column {i} is not a string"))?;
        parse_decimal(s).map_err(|e| format!("column {i} `{s}`: {e}"))
    };
    let open_ts = row
        .first()
        .and_then(serde_json::Value::as_i64)
        .ok_or("column 0 (open time) is not an integer")?;
    let candle = Candle {
        venue: venue.to_string(),
        symbol: symbol.to_string(),
        interval,
        open_ts,
        open: text(1)?,
        high: text(2)?,
        low: text(3)?,
        close: text(4)?,
        volume: text(5)?,
        trades: row.get(8).and_then(serde_json::Value::as_u64),
        closed: true,
    };
    candle.validate().map_err(|e| e.to_string())?;
    Ok(candle)
}

#[async_trait::async_trait]
impl Feed for BinanceFeed {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }

    async fn on_frame(&mut self, payload: &[u8], out: &mut Vec<Item>) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                // Valid JSON without the envelope is a control answer ({"result":…,"id":…})
                // or an error ({"code":…,"msg":…}): unknown, not malformed.
                if serde_json::from_slice::<serde_json::Value>(payload).is_ok() {
                    metrics::inc(&self.metrics.unknown_events);
                    tracing::warn!(source = "binance", frame = %excerpt(payload), "frame without a stream envelope skipped");
                } else {
                    self.malformed(&e.to_string(), payload);
                }
                return;
            }
        };
        let event = envelope
            .data
            .get("e")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        match event.as_str() {
            "trade" => match serde_json::from_value::<TradeEvent>(envelope.data) {
                Ok(trade) => self.on_trade(trade, out),
                Err(e) => self.malformed(&format!("trade: {e}"), payload),
            },
            "kline" => match serde_json::from_value::<KlineEvent>(envelope.data) {
                Ok(k) => self.on_kline(k.kline, out).await,
                Err(e) => self.malformed(&format!("kline: {e}"), payload),
            },
            _ => {
                metrics::inc(&self.metrics.unknown_events);
                let n = self
                    .metrics
                    .unknown_events
                    .load(std::sync::atomic::Ordering::Relaxed);
                if worth_logging(n) {
                    tracing::warn!(source = "binance", event = %event, count = n, "unknown event type skipped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_and_validation() {
        let config = BinanceConfig {
            ws_url: "ws://127.0.0.1:9/".into(),
            symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
            klines: vec![Interval::M1, Interval::H1],
            ..BinanceConfig::default()
        };
        config.validate().expect("valid");
        assert_eq!(
            config.stream_url(),
            "ws://127.0.0.1:9/stream?streams=btcusdt@trade/btcusdt@kline_1m/btcusdt@kline_1h/ethusdt@trade/ethusdt@kline_1m/ethusdt@kline_1h"
        );
        let bad = BinanceConfig {
            rest_url: "ftp://x".into(),
            ..BinanceConfig::default()
        };
        let err = bad.validate().expect_err("bad scheme").to_string();
        assert!(err.contains("`binance.rest_url`"), "{err}");
        let toml_like =
            serde_json::json!({"symbols": ["ETHUSDT"], "connection": {"renew_after": "25h"}});
        let parsed: BinanceConfig = serde_json::from_value(toml_like).expect("parses");
        let err = parsed.validate().expect_err("renew too late").to_string();
        assert!(err.contains("`binance.connection.renew_after`"), "{err}");
        let typo = serde_json::json!({"symbol": ["ETHUSDT"]});
        assert!(serde_json::from_value::<BinanceConfig>(typo).is_err());
    }
}
