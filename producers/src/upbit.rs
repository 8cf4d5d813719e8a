//! Upbit: the public WebSocket (`wss://api.upbit.com/websocket/v1`) for KRW markets.
//!
//! After connecting the feed sends one request,
//! `[{"ticket":"…"},{"type":"trade","codes":["KRW-BTC"]},{"type":"ticker","codes":[…]},{"format":"DEFAULT"}]`;
//! frames arrive as binary (sometimes text) JSON. Both field spellings are read: DEFAULT
//! (`type`, `code`, `trade_price`, `trade_volume`, `trade_timestamp`, `sequential_id`) and
//! SIMPLE (`ty`, `cd`, `tp`, `tv`, `ttms`, `sid`). Upbit writes prices as JSON numbers; they
//! are read through their shortest decimal spelling, never through float arithmetic.
//!
//! - `trade` → a tick, `trade_id` = `sequential_id`. Trades are the ground truth. Upbit sends a
//!   snapshot of the last trade after every (re)subscription; de-duplication by sequential id
//!   drops it when it was already published.
//! - `ticker` → never a tick while trades are subscribed: a ticker repeats the last trade
//!   (its price, volume and time), so publishing both would double every trade. Ticker frames
//!   are parsed, checked and counted as liveness. With `trades = false` and
//!   `ticker_ticks = true` they become ticks instead (`qty` = the last trade's volume, no
//!   trade id, de-duplicated on code and trade time) — a coarser price stream.
//! - Candles come from the [`CandleBuilder`] over the published
//!   ticks; a tick that closes a bucket is published after that bucket's candle, and a timer
//!   closes the buckets of a quiet market. A late tick (older than an open bucket) is still
//!   published as the trade it is, but left out of the candles and counted (`late_ticks`).
//! - After a reconnect, the trades of the disconnect are lost to the feed, so the buckets it
//!   cut into — from the last trade before it to the first after — are taken from Upbit's
//!   REST candles (`GET {rest_url}/v1/candles/minutes/N|days|weeks`) as each closes, the
//!   buckets with no trade seen included; when REST fails the feed's own candle goes out
//!   and `backfill_failures` counts it (`backfill = false` turns this off).

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::history::{format_ts, parse_decimal};
use tickwatch_schema::wire::{Candle, Interval, Message, Tick};
use tokio_util::sync::CancellationToken;

use crate::candles::{CandleBuilder, CandleConfig, bucket_start};
use crate::config::{self, BufferConfig, ConnectionConfig};
use crate::dedupe::Dedupe;
use crate::error::{Error, Result};
use crate::feed::{self, Feed, excerpt, worth_logging};
use crate::history::HistoryClient;
use crate::metrics::{self, Metrics, MetricsSnapshot};
use crate::outbox::{Item, Pipeline};
use crate::sink::MarketSink;

/// The `[upbit]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpbitConfig {
    /// The WebSocket endpoint (`TICKWATCH_UPBIT_WS_URL`).
    pub ws_url: String,
    /// The REST base for candle history (`TICKWATCH_UPBIT_REST_URL`).
    pub rest_url: String,
    /// The venue name on the messages.
    pub venue: String,
    /// Market codes as Upbit spells them (`KRW-BTC`).
    pub codes: Vec<String>,
    /// Subscribe to `trade` and publish each trade as a tick.
    pub trades: bool,
    /// Subscribe to `ticker` (liveness, or ticks with `ticker_ticks`).
    pub ticker: bool,
    /// Publish ticker frames as ticks; only allowed with `trades = false`.
    pub ticker_ticks: bool,
    /// Candles built from the ticks (empty `intervals` builds none).
    pub candles: CandleConfig,
    /// Trade ids remembered for de-duplication.
    pub dedupe_capacity: usize,
    /// After a reconnect, take the candles of the buckets the disconnect cut into from
    /// Upbit's REST candles (`rest_url`) instead of publishing them short of its trades.
    pub backfill: bool,
    pub connection: ConnectionConfig,
    pub buffer: BufferConfig,
}

impl Default for UpbitConfig {
    fn default() -> Self {
        UpbitConfig {
            ws_url: "wss://api.upbit.com/websocket/v1".into(),
            rest_url: "https://api.upbit.com".into(),
            venue: "upbit".into(),
            codes: vec!["KRW-BTC".into()],
            trades: true,
            ticker: true,
            ticker_ticks: false,
            candles: CandleConfig::default(),
            dedupe_capacity: 100_000,
            backfill: true,
            connection: ConnectionConfig::default(),
            buffer: BufferConfig::default(),
        }
    }
}

impl UpbitConfig {
    pub fn validate(&self) -> Result<()> {
        config::validate_url("upbit.ws_url", &self.ws_url, &["ws", "wss"])?;
        config::validate_url("upbit.rest_url", &self.rest_url, &["http", "https"])?;
        config::validate_venue("upbit.venue", &self.venue)?;
        config::validate_symbols("upbit.codes", &self.codes)?;
        for (i, code) in self.codes.iter().enumerate() {
            let shaped = code
                .split_once('-')
                .is_some_and(|(q, b)| !q.is_empty() && !b.is_empty());
            if !shaped {
                return Err(Error::config(
                    format!("upbit.codes[{i}]"),
                    format!("`{code}` is not a market code like `KRW-BTC`"),
                ));
            }
        }
        if !self.trades && !self.ticker {
            return Err(Error::config(
                "upbit.trades",
                "is off and so is `ticker`: nothing to subscribe to",
            ));
        }
        if self.ticker_ticks && self.trades {
            return Err(Error::config(
                "upbit.ticker_ticks",
                "needs `trades = false`: a ticker repeats the last trade, so every trade would be published twice",
            ));
        }
        if self.ticker_ticks && !self.ticker {
            return Err(Error::config("upbit.ticker_ticks", "needs `ticker = true`"));
        }
        if self.dedupe_capacity == 0 {
            return Err(Error::config("upbit.dedupe_capacity", "must be at least 1"));
        }
        self.candles.validate("upbit.candles")?;
        self.connection.validate("upbit.connection")?;
        self.buffer.validate("upbit.buffer")
    }

    /// The subscription request sent after each connect, keys in Upbit's documented order.
    pub fn subscription(&self, ticket: &str) -> String {
        // Serialising strings cannot fail; the fallbacks only keep this free of unwrap.
        let codes = serde_json::to_string(&self.codes).unwrap_or_else(|_| "[]".into());
        let ticket = serde_json::to_string(ticket).unwrap_or_else(|_| "\"tickwatch\"".into());
        let mut parts = vec![format!(r#"{{"ticket":{ticket}}}"#)];
        if self.trades {
            parts.push(format!(r#"{{"type":"trade","codes":{codes}}}"#));
        }
        if self.ticker {
            parts.push(format!(r#"{{"type":"ticker","codes":{codes}}}"#));
        }
        parts.push(r#"{"format":"DEFAULT"}"#.to_string());
        format!("[{}]", parts.join(","))
    }
}

/// Runs the Upbit feed until `shutdown`, then flushes; returns the final counters.
pub async fn run(
    config: UpbitConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    run_with_metrics(config, sink, Arc::new(Metrics::default()), shutdown).await
}

/// [`run`], counting into `metrics`.
pub async fn run_with_metrics(
    config: UpbitConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    config.validate()?;
    tracing::info!(codes = ?config.codes, trades = config.trades, ticker = config.ticker, "upbit feed starting");
    let pipeline = Pipeline::start("upbit", sink, config.buffer.clone(), metrics.clone());
    let connection = config.connection.clone();
    let mut feed = UpbitFeed::new(config, metrics.clone());
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
struct Trade {
    #[serde(alias = "cd")]
    code: String,
    #[serde(alias = "tp")]
    trade_price: serde_json::Value,
    #[serde(alias = "tv")]
    trade_volume: serde_json::Value,
    #[serde(alias = "ttms")]
    trade_timestamp: i64,
    #[serde(alias = "sid")]
    sequential_id: serde_json::Value,
}

#[derive(Deserialize)]
struct Ticker {
    #[serde(alias = "cd")]
    code: String,
    #[serde(alias = "tp")]
    trade_price: serde_json::Value,
    #[serde(alias = "tv")]
    trade_volume: serde_json::Value,
    #[serde(alias = "ttms")]
    trade_timestamp: i64,
}

/// A JSON number or string as an exact decimal: numbers go through their shortest decimal
/// spelling (`140000000.0` → `140000000`), so no float rounding enters the price.
pub(crate) fn json_decimal(value: &serde_json::Value) -> std::result::Result<Decimal, String> {
    match value {
        // A float has no trailing zeros to keep: `140000000.0` is the integer it spells.
        serde_json::Value::Number(n) => parse_decimal(&n.to_string()).map(|d| d.normalize()),
        serde_json::Value::String(s) => parse_decimal(s),
        other => Err(format!("{other} is not a number")),
    }
}

struct UpbitFeed {
    config: UpbitConfig,
    dedupe: Dedupe,
    builder: CandleBuilder,
    metrics: Arc<Metrics>,
    late_reported: u64,
    /// Connections made (each one after the first follows a disconnect).
    sessions: u64,
    /// The time of the last trade taken, per market.
    last_trade: HashMap<String, i64>,
    /// Buckets whose candles lost trades to a disconnect, per (market, interval): from
    /// the bucket of the last trade before it to that of the first trade after it (`None`
    /// until that trade). Their candles come from Upbit's REST candles instead.
    tainted: HashMap<(String, Interval), (i64, Option<i64>)>,
    /// Upbit's REST candles (`None` with `backfill = false`).
    rest: Option<Box<HistoryClient>>,
    /// Closed candles waiting behind a REST backfill, in order.
    backlog: std::collections::VecDeque<Candle>,
    /// When the current connection was made: a trade older than that (Upbit's snapshot of
    /// its last trade) does not end a disconnect's cut.
    connected_at: i64,
}

/// The most buckets one backfill asks for (the gap's recent end): one page of Upbit's, so a
/// backfill is one request.
const MAX_BACKFILL_BARS: i64 = 200;

impl UpbitFeed {
    fn new(config: UpbitConfig, metrics: Arc<Metrics>) -> Self {
        let rest = if config.backfill {
            match HistoryClient::for_upbit(config.clone()) {
                Ok(rest) => Some(Box::new(rest)),
                Err(e) => {
                    tracing::warn!(source = "upbit", error = %e, "no REST client: candles are not backfilled after a reconnect");
                    None
                }
            }
        } else {
            None
        };
        UpbitFeed {
            dedupe: Dedupe::new(config.dedupe_capacity),
            builder: CandleBuilder::new(&config.candles),
            config,
            metrics,
            late_reported: 0,
            sessions: 0,
            last_trade: HashMap::new(),
            tainted: HashMap::new(),
            rest,
            backlog: std::collections::VecDeque::new(),
            connected_at: i64::MIN,
        }
    }

    /// Publishes closed candles; one of a bucket a disconnect cut into is replaced by
    /// Upbit's REST candles of every bucket from the first cut one up to it (those the feed
    /// saw no trade in included). When REST fails, the feed's own candle goes out and the
    /// failure is counted. At most one REST request per frame or timer tick, so the socket
    /// keeps being read: candles wait in `backlog`, in order, until theirs is done.
    async fn settle(&mut self, closed: Vec<Candle>, out: &mut Vec<Item>) {
        self.backlog.extend(closed);
        let mut fetched = false;
        while let Some(front) = self.backlog.front() {
            if fetched && self.is_cut(front) {
                break;
            }
            let Some(candle) = self.backlog.pop_front() else {
                break;
            };
            match self.cut_range(&candle) {
                None => out.push(Item::Candle(candle)),
                Some(first) => {
                    fetched = true;
                    self.backfill(candle, first, out).await;
                }
            }
        }
    }

    /// Whether a candle's bucket was cut by a disconnect.
    fn is_cut(&self, candle: &Candle) -> bool {
        self.tainted
            .get(&(candle.symbol.clone(), candle.interval))
            .is_some_and(|&(first, last)| {
                candle.open_ts >= first && last.is_none_or(|l| candle.open_ts <= l)
            })
    }

    /// Where the REST range of a candle cut by a disconnect starts; `None` for a whole one.
    /// Taking the answer moves the cut on past the candle.
    fn cut_range(&mut self, candle: &Candle) -> Option<i64> {
        let key = (candle.symbol.clone(), candle.interval);
        let &(first, last) = self.tainted.get(&key)?;
        if last.is_some_and(|l| candle.open_ts > l) {
            self.tainted.remove(&key);
            return None;
        }
        if candle.open_ts < first {
            return None;
        }
        let next = candle.open_ts + candle.interval.as_ms();
        if last.is_some_and(|l| next > l) {
            self.tainted.remove(&key);
        } else if let Some(entry) = self.tainted.get_mut(&key) {
            entry.0 = next;
        }
        // A longer gap is filled at its recent end, as Binance's is.
        let step = candle.interval.as_ms();
        Some(first.max(candle.open_ts - step * (MAX_BACKFILL_BARS - 1)))
    }

    async fn backfill(&mut self, candle: Candle, first: i64, out: &mut Vec<Item>) {
        let Some(rest) = self.rest.as_mut() else {
            out.push(Item::Candle(candle));
            return;
        };
        let range = format!("{} .. {}", format_ts(first), format_ts(candle.open_ts));
        match rest
            .upbit_range(&candle.symbol, candle.interval, first, candle.open_ts)
            .await
        {
            Ok(fetched) if fetched.last().is_some_and(|c| c.open_ts == candle.open_ts) => {
                tracing::info!(source = "upbit", market = %candle.symbol, interval = %candle.interval, %range, candles = fetched.len(), "candles after a reconnect taken from Upbit's REST candles");
                metrics::add(&self.metrics.backfilled_candles, fetched.len() as u64);
                out.extend(fetched.into_iter().map(|c| {
                    Item::Candle(Candle {
                        venue: candle.venue.clone(),
                        ..c
                    })
                }));
            }
            Ok(fetched) => {
                metrics::inc(&self.metrics.backfill_failures);
                tracing::warn!(source = "upbit", market = %candle.symbol, interval = %candle.interval, %range, "Upbit's REST candles lack the bucket; the earlier ones and the feed's own candle (missing the disconnect's trades) go out");
                // The gap's earlier buckets Upbit does have still go out, before the feed's.
                out.extend(
                    fetched
                        .into_iter()
                        .filter(|c| c.open_ts < candle.open_ts)
                        .map(|c| {
                            Item::Candle(Candle {
                                venue: candle.venue.clone(),
                                ..c
                            })
                        }),
                );
                out.push(Item::Candle(candle));
            }
            Err(e) => {
                metrics::inc(&self.metrics.backfill_failures);
                tracing::warn!(source = "upbit", market = %candle.symbol, interval = %candle.interval, %range, error = %e, "candles after a reconnect could not be backfilled; the feed's own candle (missing the disconnect's trades) goes out");
                out.push(Item::Candle(candle));
            }
        }
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64, what: impl FnOnce() -> String) {
        feed::count_problem("upbit", counter, what);
    }

    fn tick(
        &self,
        code: String,
        price: &serde_json::Value,
        volume: &serde_json::Value,
        ts: i64,
        trade_id: Option<String>,
    ) -> Option<Tick> {
        let price = match json_decimal(price) {
            Ok(p) => p,
            Err(e) => {
                self.count(&self.metrics.invalid_values, || {
                    format!("{code}: trade_price {e}")
                });
                return None;
            }
        };
        let qty = match json_decimal(volume) {
            Ok(q) => q,
            Err(e) => {
                self.count(&self.metrics.invalid_values, || {
                    format!("{code}: trade_volume {e}")
                });
                return None;
            }
        };
        let tick = Tick {
            venue: self.config.venue.clone(),
            symbol: code,
            price,
            qty,
            ts,
            trade_id,
        };
        match tick.validate() {
            Ok(()) => Some(tick),
            Err(e) => {
                self.count(&self.metrics.invalid_values, || {
                    format!("{}: {e}", tick.symbol)
                });
                None
            }
        }
    }

    /// Publishes a new tick after the candles it closes.
    async fn accept(&mut self, tick: Tick, dedupe_key: &str, out: &mut Vec<Item>) {
        if !self.dedupe.first_time(&tick.symbol, dedupe_key) {
            metrics::inc(&self.metrics.duplicates);
            return;
        }
        // The first trade after a disconnect ends the buckets it cut into: at the trade, or at
        // the reconnect for an older one (Upbit's snapshot of its last trade).
        let resumed = tick.ts.max(self.connected_at);
        for interval in &self.config.candles.intervals {
            if let Some((_, last @ None)) = self.tainted.get_mut(&(tick.symbol.clone(), *interval))
            {
                *last = Some(bucket_start(resumed, *interval, 0));
            }
        }
        let newest = self
            .last_trade
            .entry(tick.symbol.clone())
            .or_insert(tick.ts);
        *newest = (*newest).max(tick.ts);
        match self.builder.on_tick(&tick) {
            Ok(closed) => self.settle(closed, out).await,
            Err(late) => {
                metrics::inc(&self.metrics.late_ticks);
                self.late_reported += 1;
                if worth_logging(self.late_reported) {
                    tracing::warn!(source = "upbit", symbol = %tick.symbol, ts = late.ts, accepted_from = late.accepted_from, "late tick left out of the candles");
                }
            }
        }
        // A late tick is still a real trade: it is published, only not merged into candles.
        out.push(Item::Tick(tick));
    }
}

#[async_trait::async_trait]
impl Feed for UpbitFeed {
    fn name(&self) -> &'static str {
        "upbit"
    }

    fn url(&self) -> String {
        self.config.ws_url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![
            self.config
                .subscription(&format!("tickwatch-{}", uuid::Uuid::new_v4())),
        ]
    }

    async fn on_frame(&mut self, payload: &[u8], out: &mut Vec<Item>) {
        let value: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                self.count(&self.metrics.malformed, || {
                    format!("malformed frame skipped: {e}: {}", excerpt(payload))
                });
                return;
            }
        };
        let kind = value
            .get("type")
            .or_else(|| value.get("ty"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            "trade" => match serde_json::from_value::<Trade>(value) {
                Ok(t) if self.config.trades => {
                    let id = match &t.sequential_id {
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::String(s) => s.clone(),
                        _ => String::new(),
                    };
                    if id.is_empty() {
                        self.count(&self.metrics.invalid_values, || {
                            format!("{}: sequential_id missing or not a number", t.code)
                        });
                        return;
                    }
                    if let Some(tick) = self.tick(
                        t.code,
                        &t.trade_price,
                        &t.trade_volume,
                        t.trade_timestamp,
                        Some(id.clone()),
                    ) {
                        self.accept(tick, &id, out).await;
                    }
                }
                Ok(_) => {}
                Err(e) => self.count(&self.metrics.malformed, || {
                    format!("malformed trade skipped: {e}: {}", excerpt(payload))
                }),
            },
            "ticker" => match serde_json::from_value::<Ticker>(value) {
                Ok(t) => {
                    let Some(tick) = self.tick(
                        t.code,
                        &t.trade_price,
                        &t.trade_volume,
                        t.trade_timestamp,
                        None,
                    ) else {
                        return;
                    };
                    if self.config.ticker_ticks {
                        let key = format!("ticker:{}", tick.ts);
                        self.accept(tick, &key, out).await;
                    }
                }
                Err(e) => self.count(&self.metrics.malformed, || {
                    format!("malformed ticker skipped: {e}: {}", excerpt(payload))
                }),
            },
            _ if value.get("status").is_some() => {} // the answer to a "PING" text
            _ => {
                let what = match value.get("error") {
                    Some(error) => format!("Upbit error: {error}"),
                    None => format!("unknown event skipped: {}", excerpt(payload)),
                };
                self.count(&self.metrics.unknown_events, || what);
            }
        }
    }

    async fn prepare(&mut self) -> std::result::Result<(), String> {
        self.sessions += 1;
        self.connected_at = feed::now_ms();
        if self.sessions > 1 && self.rest.is_some() {
            // Trades during the disconnect are lost to the feed: the buckets from the last
            // trade seen onwards (until the first trade after it) are Upbit's to tell.
            for (code, last) in &self.last_trade {
                for interval in &self.config.candles.intervals {
                    let start = bucket_start(*last, *interval, 0);
                    let entry = self
                        .tainted
                        .entry((code.clone(), *interval))
                        .or_insert((start, None));
                    entry.0 = entry.0.min(start);
                    entry.1 = None;
                }
            }
        }
        Ok(())
    }

    async fn on_timer(&mut self, now_ms: i64, out: &mut Vec<Item>) {
        let closed = self.builder.on_time(now_ms);
        self.settle(closed, out).await;
    }

    /// Candles still waiting behind a backfill go out as the feed built them.
    fn on_shutdown(&mut self, out: &mut Vec<Item>) {
        out.extend(self.backlog.drain(..).map(Item::Candle));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_keep_their_decimal_spelling() {
        let v: serde_json::Value =
            serde_json::from_str(r#"[140000000.0, 0.00012345, 1e-5, "93.5", true]"#).expect("json");
        let got: Vec<_> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|x| json_decimal(x).map(|d| d.to_string()))
            .collect();
        assert_eq!(got[0].as_deref(), Ok("140000000"));
        assert_eq!(got[1].as_deref(), Ok("0.00012345"));
        assert_eq!(got[2].as_deref(), Ok("0.00001"));
        assert_eq!(got[3].as_deref(), Ok("93.5"));
        assert!(got[4].is_err());
    }

    #[test]
    fn subscription_and_validation() {
        let config = UpbitConfig {
            codes: vec!["KRW-BTC".into(), "KRW-ETH".into()],
            ..UpbitConfig::default()
        };
        config.validate().expect("valid");
        assert_eq!(
            config.subscription("t1"),
            r#"[{"ticket":"t1"},{"type":"trade","codes":["KRW-BTC","KRW-ETH"]},{"type":"ticker","codes":["KRW-BTC","KRW-ETH"]},{"format":"DEFAULT"}]"#
        );
        let both = UpbitConfig {
            ticker_ticks: true,
            ..UpbitConfig::default()
        };
        let err = both.validate().expect_err("double ticks").to_string();
        assert!(err.contains("`upbit.ticker_ticks`"), "{err}");
        let bad = UpbitConfig {
            codes: vec!["BTC".into()],
            ..UpbitConfig::default()
        };
        assert!(
            bad.validate()
                .expect_err("no dash")
                .to_string()
                .contains("`upbit.codes[0]`")
        );
    }
}
