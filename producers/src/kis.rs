//! KIS (한국투자증권) Open API: real-time KRX trades (`H0STCNT0`) over its WebSocket.
//!
//! The protocol, as the public reference (`koreainvestment/open-trading-api`) speaks it:
//!
//! - **Approval key.** Before each connection a session asks `POST {rest_url}/oauth2/Approval`
//!   with `{"grant_type":"client_credentials","appkey":…,"secretkey":…}` (the app secret goes
//!   in `secretkey`) and gets `{"approval_key":"…"}`. The key is reused across reconnects
//!   and fetched anew when the server refuses it (`invalid approval`).
//! - **Subscriptions.** One text frame per symbol after connecting:
//!   `{"header":{"approval_key":…,"custtype":"P","tr_type":"1","content-type":"utf-8"},
//!   "body":{"input":{"tr_id":"H0STCNT0","tr_key":"005930"}}}`. KIS allows one session per
//!   app key and 41 registrations per session, so the symbols are split over the configured
//!   accounts, at most `max_symbols_per_session` each, one session per account.
//! - **Data frames** are not JSON: `0|H0STCNT0|004|f0^f1^…` — encrypted flag, tr_id, record
//!   count, then `count × 46` fields joined by `^`. Field 0 is the symbol, 1 the trade time
//!   (HHMMSS, KST), 2 the price, 12 the trade's volume, 13 the day's accumulated volume, 33
//!   the business date (YYYYMMDD). A frame whose field count is not `count × 46` is counted
//!   as malformed and skipped whole. Encrypted frames (flag `1`) are refused and counted:
//!   `H0STCNT0` is sent in the clear, so one means a misconfigured subscription.
//! - **Control frames** are JSON: `PINGPONG` (echoed back as it came: the session's
//!   heartbeat, so the feed sends no WebSocket pings of its own), subscribe replies
//!   (`rt_cd` `"0"` is success; `ALREADY IN SUBSCRIBE` after a reconnect is fine), and
//!   errors: a refused approval key makes the session fetch a new key and reconnect; `ALREADY
//!   IN USE appkey` (another process holds the app key's one session) reconnects with backoff
//!   and says so; other refusals (a bad symbol, too many subscriptions) are logged with the
//!   symbol and counted.
//!
//! Each trade becomes a [`Tick`] of venue `krx` whose `trade_id` is the business date and the
//! accumulated volume (strictly increasing with every trade of a symbol's day), so a trade
//! seen twice is published once. Intraday candles come from the [`CandleBuilder`] on the
//! Seoul trading day with the session closing at 15:31 KST (`candles.session_close`); the 1d
//! candle comes from the day's figures every record carries (open, high, low: fields 7–9;
//! accumulated volume: 13) and the last trade's price, so it is exact even for a day the feed
//! joined late or lost a while, and closes at the close. After-hours trades are published as
//! ticks but left out of the candles; weekends and `holidays` build no candles.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::history::parse_decimal;
use tickwatch_schema::wire::{Candle, Interval, Message, Tick};
use tokio_util::sync::CancellationToken;

use crate::candles::{CandleBuilder, CandleConfig, utc_offset_ms};
use crate::config::{self, BufferConfig, ConnectionConfig, Secret, duration};
use crate::dedupe::Dedupe;
use crate::error::{Error, Result};
use crate::feed::{self, Feed, Requests, excerpt, worth_logging};
use crate::metrics::{self, Metrics, MetricsSnapshot};
use crate::outbox::{Item, Pipeline};
use crate::sink::MarketSink;

/// The real-time trades of KRX stocks.
pub const TRADES_TR_ID: &str = "H0STCNT0";
/// Fields of one `H0STCNT0` record.
pub const TRADE_FIELDS: usize = 46;
/// KIS's limit of registrations on one session.
pub const MAX_REGISTRATIONS: usize = 41;

/// One KIS app: its key and secret (from the KIS Developers portal). Each account holds
/// one WebSocket session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KisAccount {
    pub app_key: Secret,
    pub app_secret: Secret,
}

/// The `[producers.kis]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KisConfig {
    /// The REST host that issues approval keys: `https://openapi.koreainvestment.com:9443`
    /// for real trading, `https://openapivts.koreainvestment.com:29443` for paper trading.
    pub rest_url: String,
    /// The WebSocket: `ws://ops.koreainvestment.com:21000/tryitout` (real) or
    /// `ws://ops.koreainvestment.com:31000/tryitout` (paper).
    pub ws_url: String,
    /// The app key and secret of the first session (`KIS_APP_KEY`, `KIS_APP_SECRET`).
    pub app_key: Option<Secret>,
    pub app_secret: Option<Secret>,
    /// More apps for more sessions, when the symbols do not fit in one.
    pub extra_accounts: Vec<KisAccount>,
    /// KRX codes: six characters (`005930`, `0004Y0`), or `Q` and six digits for an ETN.
    pub symbols: Vec<String>,
    /// `P` for a personal account, `B` for a corporate one.
    pub custtype: String,
    /// Symbols per session, at most KIS's 41 registrations.
    pub max_symbols_per_session: usize,
    /// The pause between two subscription frames (KIS's samples pace them).
    #[serde(with = "duration")]
    pub subscribe_pause: Duration,
    /// How long the approval-key request may take.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// The venue name on the messages.
    pub venue: String,
    /// Candles built from the trades, on the Seoul session (closing at 15:30 KST).
    pub candles: CandleConfig,
    /// The pre-close scan, `HH:MM` Seoul time (`15:20`): each symbol's day candle as it
    /// stands is published once (`closed: false`), so the signals role can send the
    /// closing-price (종가) setup while it can still be bought at the close. Empty: off.
    pub pre_close_scan: String,
    /// KRX holidays, `YYYY-MM-DD`, besides weekends: no candles are built on them (a trade
    /// reported on one is still published as a tick) and no pre-close scan runs.
    pub holidays: Vec<String>,
    /// Trades remembered for de-duplication, per session.
    pub dedupe_capacity: usize,
    pub connection: ConnectionConfig,
    pub buffer: BufferConfig,
}

impl Default for KisConfig {
    fn default() -> Self {
        KisConfig {
            rest_url: "https://openapi.koreainvestment.com:9443".into(),
            ws_url: "ws://ops.koreainvestment.com:21000/tryitout".into(),
            app_key: None,
            app_secret: None,
            extra_accounts: Vec::new(),
            symbols: vec!["005930".into()],
            custtype: "P".into(),
            max_symbols_per_session: 40,
            subscribe_pause: Duration::from_millis(50),
            request_timeout: Duration::from_secs(10),
            venue: "krx".into(),
            candles: CandleConfig {
                // The closing auction (15:20–15:30) ends at a random moment up to 30 s
                // after 15:30; its trade is the day's close. After-hours trading starts
                // at 15:40.
                session_close: Some("15:31".into()),
                ..CandleConfig::default()
            },
            pre_close_scan: "15:20".into(),
            holidays: Vec::new(),
            dedupe_capacity: 200_000,
            connection: ConnectionConfig {
                // KIS keeps the session alive with PINGPONG (every few tens of seconds) and
                // refuses a second session on the same app key.
                pings: false,
                renew: false,
                idle_timeout: Duration::from_secs(150),
                ..ConnectionConfig::default()
            },
            buffer: BufferConfig::default(),
        }
    }
}

impl KisConfig {
    pub fn validate(&self) -> Result<()> {
        config::validate_url("kis.rest_url", &self.rest_url, &["http", "https"])?;
        config::validate_url("kis.ws_url", &self.ws_url, &["ws", "wss"])?;
        config::validate_venue("kis.venue", &self.venue)?;
        config::validate_symbols("kis.symbols", &self.symbols)?;
        for (i, code) in self.symbols.iter().enumerate() {
            let stock = code.len() == 6 && code.chars().all(|c| c.is_ascii_alphanumeric());
            let etn = code.len() == 7
                && code.starts_with('Q')
                && code[1..].chars().all(|c| c.is_ascii_digit());
            if !(stock || etn) {
                return Err(Error::config(
                    format!("kis.symbols[{i}]"),
                    format!("`{code}` is not a KRX code like `005930` (or an ETN's `Q500001`)"),
                ));
            }
            if self.symbols[..i].contains(code) {
                return Err(Error::config(
                    format!("kis.symbols[{i}]"),
                    format!("`{code}` is listed twice"),
                ));
            }
        }
        if self.app_key.is_none() || self.app_secret.is_none() {
            return Err(Error::config(
                "kis.app_key",
                "is missing, or `kis.app_secret` is: set both (KIS_APP_KEY and KIS_APP_SECRET, from the KIS Developers portal)",
            ));
        }
        if !["P", "B"].contains(&self.custtype.as_str()) {
            return Err(Error::config(
                "kis.custtype",
                "must be `P` (personal) or `B` (corporate)",
            ));
        }
        if !(1..=MAX_REGISTRATIONS).contains(&self.max_symbols_per_session) {
            return Err(Error::config(
                "kis.max_symbols_per_session",
                format!("must be between 1 and {MAX_REGISTRATIONS} (KIS's limit per session)"),
            ));
        }
        let sessions = self.accounts().len();
        let capacity = sessions * self.max_symbols_per_session;
        if self.symbols.len() > capacity {
            let needed = self.symbols.len().div_ceil(self.max_symbols_per_session);
            return Err(Error::config(
                "kis.symbols",
                format!(
                    "{} symbols need {needed} sessions of {} but there are {sessions}: KIS allows one session per app key, so add apps to `kis.extra_accounts` or list fewer symbols",
                    self.symbols.len(),
                    self.max_symbols_per_session
                ),
            ));
        }
        if self.dedupe_capacity == 0 {
            return Err(Error::config("kis.dedupe_capacity", "must be at least 1"));
        }
        self.pre_close_ms()?;
        self.candles.validate("kis.candles")?;
        self.holiday_dates()?;
        self.connection.validate("kis.connection")?;
        self.buffer.validate("kis.buffer")
    }

    /// [`KisConfig::holidays`] as dates.
    pub fn holiday_dates(&self) -> Result<std::collections::BTreeSet<NaiveDate>> {
        self.holidays
            .iter()
            .enumerate()
            .map(|(i, text)| {
                NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                    Error::config(
                        format!("kis.holidays[{i}]"),
                        format!("`{text}` is not a date like `2026-09-25`"),
                    )
                })
            })
            .collect()
    }

    /// Whether KRX trades on the Seoul day opening at `day_start` (epoch ms): not a weekend,
    /// not a listed holiday.
    fn is_trading_day(
        &self,
        day_start: i64,
        holidays: &std::collections::BTreeSet<NaiveDate>,
    ) -> bool {
        use chrono::Datelike;
        let Some(date) =
            chrono::DateTime::from_timestamp_millis(day_start + utc_offset_ms(&self.venue))
                .map(|t| t.date_naive())
        else {
            return true;
        };
        !matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun)
            && !holidays.contains(&date)
    }

    /// [`KisConfig::pre_close_scan`] in milliseconds after midnight, Seoul time.
    fn pre_close_ms(&self) -> Result<Option<i64>> {
        use chrono::Timelike;
        if self.pre_close_scan.trim().is_empty() {
            return Ok(None);
        }
        NaiveTime::parse_from_str(self.pre_close_scan.trim(), "%H:%M")
            .map(|t| Some(i64::from(t.num_seconds_from_midnight()) * 1000))
            .map_err(|_| {
                Error::config(
                    "kis.pre_close_scan",
                    format!(
                        "`{}` is not a time of day like `15:20`",
                        self.pre_close_scan
                    ),
                )
            })
    }

    /// Every account, the first one (`app_key`, `app_secret`) first.
    pub fn accounts(&self) -> Vec<KisAccount> {
        let first = match (&self.app_key, &self.app_secret) {
            (Some(app_key), Some(app_secret)) => Some(KisAccount {
                app_key: app_key.clone(),
                app_secret: app_secret.clone(),
            }),
            _ => None,
        };
        first
            .into_iter()
            .chain(self.extra_accounts.iter().cloned())
            .collect()
    }

    /// The subscription frame of one symbol.
    pub fn subscription(&self, approval_key: &str, symbol: &str) -> String {
        serde_json::json!({
            "header": {
                "approval_key": approval_key,
                "custtype": self.custtype,
                "tr_type": "1",
                "content-type": "utf-8",
            },
            "body": {"input": {"tr_id": TRADES_TR_ID, "tr_key": symbol}},
        })
        .to_string()
    }
}

/// Runs the KIS feed until `shutdown` — one session per account, each with its share of
/// the symbols — then flushes; returns the final counters.
pub async fn run(
    config: KisConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    run_with_metrics(config, sink, Arc::new(Metrics::default()), shutdown).await
}

/// [`run`], counting into `metrics`.
pub async fn run_with_metrics(
    config: KisConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    config.validate()?;
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(|e| Error::config("kis.rest_url", format!("HTTP client: {e}")))?;
    let holidays = Arc::new(config.holiday_dates()?);
    let config = Arc::new(config);
    let pipeline = Pipeline::start("kis", sink, config.buffer.clone(), metrics.clone());
    let sessions: Vec<_> = config
        .symbols
        .chunks(config.max_symbols_per_session)
        .zip(config.accounts())
        .enumerate()
        .map(|(index, (symbols, account))| KisFeed {
            config: config.clone(),
            index,
            account,
            symbols: symbols.to_vec(),
            http: http.clone(),
            approval_key: None,
            dedupe: Dedupe::new(config.dedupe_capacity),
            builder: CandleBuilder::new(&intraday(&config.candles)),
            days: HashMap::new(),
            closed_days: HashMap::new(),
            holidays: holidays.clone(),
            metrics: metrics.clone(),
            requests: Requests::default(),
            late_reported: 0,
            scanned_day: None,
        })
        .collect();
    tracing::info!(
        symbols = config.symbols.len(),
        sessions = sessions.len(),
        "kis feed starting"
    );
    let (outbox, counters, stop, connection) =
        (&pipeline.outbox, &*metrics, &shutdown, &config.connection);
    let runs = sessions.into_iter().map(|mut feed| async move {
        tracing::info!(source = "kis", session = feed.index, symbols = ?feed.symbols, "kis session starting");
        feed::drive(&mut feed, connection, outbox, counters, stop).await
    });
    futures_util::future::join_all(runs).await;
    pipeline.finish().await;
    Ok(metrics.snapshot())
}

/// The approval-key answer.
#[derive(Deserialize)]
struct Approval {
    approval_key: String,
}

/// A JSON control frame.
#[derive(Deserialize)]
struct Control {
    header: ControlHeader,
    body: Option<ControlBody>,
}

#[derive(Deserialize)]
struct ControlHeader {
    #[serde(default)]
    tr_id: String,
    #[serde(default)]
    tr_key: String,
}

#[derive(Deserialize)]
struct ControlBody {
    #[serde(default)]
    rt_cd: String,
    #[serde(default)]
    msg_cd: String,
    #[serde(default)]
    msg1: String,
}

/// One session: an account, its symbols, and the state of its connection.
struct KisFeed {
    config: Arc<KisConfig>,
    index: usize,
    account: KisAccount,
    symbols: Vec<String>,
    http: reqwest::Client,
    approval_key: Option<Secret>,
    dedupe: Dedupe,
    /// Every interval but the day's.
    builder: CandleBuilder,
    /// Each symbol's forming day candle, from the day's figures KIS sends with every trade
    /// (its open, high, low and accumulated volume): exact even when the feed saw only part
    /// of the day (a start or a reconnect mid-session). Empty when `1d` is not built.
    days: HashMap<String, Candle>,
    /// The last day candle published per symbol: later trades of it change nothing.
    closed_days: HashMap<String, i64>,
    holidays: Arc<BTreeSet<NaiveDate>>,
    metrics: Arc<Metrics>,
    requests: Requests,
    late_reported: u64,
    /// The Seoul day (its 1d bucket start) whose pre-close scan was published.
    scanned_day: Option<i64>,
}

/// The day's figures a trade record carries (fields 7, 8, 9 and 13).
#[derive(Debug, Clone, PartialEq)]
struct DayFigures {
    open: Option<Decimal>,
    high: Option<Decimal>,
    low: Option<Decimal>,
    volume: Decimal,
}

/// The builder's configuration: every interval but `1d`, which comes from KIS's day figures.
fn intraday(candles: &CandleConfig) -> CandleConfig {
    CandleConfig {
        intervals: candles
            .intervals
            .iter()
            .copied()
            .filter(|i| *i != Interval::D1)
            .collect(),
        ..candles.clone()
    }
}

impl KisFeed {
    /// At the pre-close time, once a day: each symbol's forming day candle, so the signals
    /// role can scan it before the close.
    fn pre_close_scan(&mut self, now_ms: i64, out: &mut Vec<Item>) {
        let Ok(Some(scan_ms)) = self.config.pre_close_ms() else {
            return;
        };
        let offset = utc_offset_ms(&self.config.venue);
        let day = crate::candles::bucket_start(now_ms, Interval::D1, offset);
        if !self.config.is_trading_day(day, &self.holidays) {
            return;
        }
        // Only between the scan time and the close: after a disconnect over the scan time,
        // a late "preliminary" candle would only race the real close.
        let close_ms = self.config.candles.session_close_ms().unwrap_or(None);
        let in_window =
            now_ms >= day + scan_ms && close_ms.is_none_or(|close| now_ms < day + close);
        if !in_window || self.scanned_day == Some(day) {
            return;
        }
        self.scanned_day = Some(day);
        let forming: Vec<Candle> = self
            .days
            .values()
            .filter(|c| c.open_ts == day)
            .cloned()
            .collect();
        if !forming.is_empty() {
            tracing::info!(
                source = "kis",
                session = self.index,
                symbols = forming.len(),
                "pre-close scan: the day's candles as they stand"
            );
        }
        out.extend(forming.into_iter().map(Item::Candle));
    }

    fn count(&self, counter: &std::sync::atomic::AtomicU64, what: impl FnOnce() -> String) {
        let session = self.index;
        feed::count_problem("kis", counter, || format!("session {session}: {}", what()));
    }

    async fn request_approval_key(&self) -> std::result::Result<Secret, String> {
        let url = format!(
            "{}/oauth2/Approval",
            self.config.rest_url.trim_end_matches('/')
        );
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "appkey": self.account.app_key.expose(),
            "secretkey": self.account.app_secret.expose(),
        });
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("approval key: {url} unreachable: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("approval key: reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "approval key refused ({status}): {}; check kis.app_key and kis.app_secret",
                excerpt(text.as_bytes())
            ));
        }
        let approval: Approval = serde_json::from_str(&text).map_err(|e| {
            format!(
                "approval key: unexpected answer ({e}): {}",
                excerpt(text.as_bytes())
            )
        })?;
        if approval.approval_key.trim().is_empty() {
            return Err("approval key: the answer holds an empty key".into());
        }
        Ok(Secret::new(approval.approval_key))
    }

    fn on_data(&mut self, text: &str, out: &mut Vec<Item>) {
        let mut parts = text.splitn(4, '|');
        let (Some(flag), Some(tr_id), Some(count), Some(payload)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.count(&self.metrics.malformed, || {
                format!("malformed data frame skipped: {}", excerpt(text.as_bytes()))
            });
            return;
        };
        if flag == "1" {
            self.count(&self.metrics.unknown_events, || {
                format!("encrypted {tr_id} frame refused: decryption is not implemented, and {TRADES_TR_ID} is sent in the clear")
            });
            return;
        }
        if tr_id != TRADES_TR_ID {
            self.count(&self.metrics.unknown_events, || {
                format!("{tr_id} frame skipped: only {TRADES_TR_ID} is subscribed")
            });
            return;
        }
        let fields: Vec<&str> = payload.split('^').collect();
        let records = match count.parse::<usize>() {
            Ok(n) if n > 0 && n.checked_mul(TRADE_FIELDS) == Some(fields.len()) => n,
            _ => {
                self.count(&self.metrics.malformed, || {
                    format!(
                        "{TRADES_TR_ID} frame skipped: {} fields for a count of `{count}` ({TRADE_FIELDS} per record): {}",
                        fields.len(),
                        excerpt(text.as_bytes())
                    )
                });
                return;
            }
        };
        for record in fields.chunks(TRADE_FIELDS).take(records) {
            match trade_tick(record, &self.config.venue) {
                Ok((tick, figures)) => self.accept(tick, &figures, out),
                Err(e) => self.count(&self.metrics.invalid_values, || {
                    format!("{} trade skipped: {e}", record[0])
                }),
            }
        }
    }

    /// Publishes a new trade after the candles it closes.
    fn accept(&mut self, tick: Tick, figures: &DayFigures, out: &mut Vec<Item>) {
        let key = tick.trade_id.clone().unwrap_or_default();
        if !self.dedupe.first_time(&tick.symbol, &key) {
            metrics::inc(&self.metrics.duplicates);
            return;
        }
        let day = crate::candles::bucket_start(tick.ts, Interval::D1, utc_offset_ms(&tick.venue));
        if !self.config.is_trading_day(day, &self.holidays) {
            // Not a KRX day: a trade, but no candle.
            out.push(Item::Tick(tick));
            return;
        }
        self.on_day(&tick, day, figures, out);
        match self.builder.on_tick(&tick) {
            Ok(closed) => out.extend(closed.into_iter().map(Item::Candle)),
            Err(late) if late.after_close => {} // after-hours: a trade, not part of the day's candle
            Err(late) => {
                metrics::inc(&self.metrics.late_ticks);
                self.late_reported += 1;
                if worth_logging(self.late_reported) {
                    tracing::warn!(source = "kis", symbol = %tick.symbol, ts = late.ts, accepted_from = late.accepted_from, "late trade left out of the candles");
                }
            }
        }
        out.push(Item::Tick(tick));
    }

    /// The day candle after a trade: a trade of a later day closes the symbol's last one;
    /// within the session the day's figures set its open, high, low and volume, the trade
    /// its close. After-hours trades are left out.
    fn on_day(&mut self, tick: &Tick, day: i64, figures: &DayFigures, out: &mut Vec<Item>) {
        if !self.config.candles.intervals.contains(&Interval::D1) {
            return;
        }
        let close_ms = self.config.candles.session_close_ms().unwrap_or(None);
        if close_ms.is_some_and(|close| tick.ts >= day + close) {
            return;
        }
        // A late trade of a day already published would publish it again, short.
        if self
            .closed_days
            .get(&tick.symbol)
            .is_some_and(|closed| day <= *closed)
        {
            return;
        }
        if let Some(held) = self.days.get(&tick.symbol) {
            if held.open_ts > day {
                return; // a late trade of a day already closed
            }
            if held.open_ts < day
                && let Some(mut done) = self.days.remove(&tick.symbol)
            {
                done.closed = true;
                self.closed_days.insert(tick.symbol.clone(), done.open_ts);
                out.push(Item::Candle(done));
            }
        }
        let candle = self
            .days
            .entry(tick.symbol.clone())
            .or_insert_with(|| Candle {
                venue: tick.venue.clone(),
                symbol: tick.symbol.clone(),
                interval: Interval::D1,
                open_ts: day,
                open: figures.open.unwrap_or(tick.price),
                high: tick.price,
                low: tick.price,
                close: tick.price,
                volume: Decimal::ZERO,
                trades: None,
                closed: false,
            });
        if let Some(open) = figures.open {
            candle.open = open;
        }
        // A record out of order (an older accumulated volume) leaves the close alone.
        let newest = figures.volume >= candle.volume;
        candle.high = candle
            .high
            .max(tick.price)
            .max(figures.high.unwrap_or(tick.price));
        candle.low = candle
            .low
            .min(tick.price)
            .min(figures.low.unwrap_or(tick.price));
        if newest {
            candle.close = tick.price;
        }
        candle.volume = candle.volume.max(figures.volume);
    }

    /// Closes the day candles whose session is over (a quiet symbol's last trade was before
    /// the close).
    fn close_days(&mut self, now_ms: i64, out: &mut Vec<Item>) {
        let close_ms = self
            .config
            .candles
            .session_close_ms()
            .unwrap_or(None)
            .unwrap_or(Interval::D1.as_ms());
        let grace = i64::try_from(self.config.candles.close_grace.as_millis()).unwrap_or(0);
        let over: Vec<String> = self
            .days
            .iter()
            .filter(|(_, c)| now_ms >= c.open_ts + close_ms + grace)
            .map(|(symbol, _)| symbol.clone())
            .collect();
        for symbol in over {
            if let Some(mut done) = self.days.remove(&symbol) {
                done.closed = true;
                self.closed_days.insert(symbol.clone(), done.open_ts);
                out.push(Item::Candle(done));
            }
        }
    }

    fn on_control(&mut self, text: &str) {
        let control: Control = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                self.count(&self.metrics.malformed, || {
                    format!(
                        "malformed control frame skipped: {e}: {}",
                        excerpt(text.as_bytes())
                    )
                });
                return;
            }
        };
        let Some(body) = control.body else {
            if control.header.tr_id == "PINGPONG" {
                // The session's heartbeat: answered with the very frame.
                self.requests.send.push(text.to_string());
            } else {
                self.count(&self.metrics.unknown_events, || {
                    format!(
                        "control frame without a body skipped: {}",
                        excerpt(text.as_bytes())
                    )
                });
            }
            return;
        };
        let symbol = control.header.tr_key;
        let (code, message) = (body.msg_cd.as_str(), body.msg1.as_str());
        let upper = message.to_ascii_uppercase();
        if body.rt_cd == "0" {
            tracing::info!(source = "kis", session = self.index, %symbol, msg_cd = code, "{message}");
        } else if code == "OPSP0002" || upper.contains("ALREADY IN SUBSCRIBE") {
            tracing::debug!(source = "kis", %symbol, "already subscribed");
        } else if code == "OPSP0011" || upper.contains("INVALID APPROVAL") {
            tracing::warn!(
                source = "kis",
                session = self.index,
                msg_cd = code,
                "KIS refused the approval key ({message}); getting a new one"
            );
            metrics::inc(&self.metrics.unknown_events);
            self.approval_key = None;
            self.requests.reconnect = Some(format!("approval key refused: {message}"));
        } else if code == "OPSP8996" || upper.contains("ALREADY IN USE") {
            tracing::error!(
                source = "kis",
                session = self.index,
                msg_cd = code,
                "KIS says another session holds this app key ({message}): KIS allows one session per app key; stop the other process or give this one its own app in kis.extra_accounts"
            );
            metrics::inc(&self.metrics.unknown_events);
            self.requests.reconnect = Some(format!("app key in use elsewhere: {message}"));
        } else {
            self.count(&self.metrics.unknown_events, || {
                format!("KIS refused `{symbol}`: {code} {message}")
            });
        }
    }
}

/// One `H0STCNT0` record as a tick.
fn trade_tick(record: &[&str], venue: &str) -> std::result::Result<(Tick, DayFigures), String> {
    let field = |i: usize| record.get(i).copied().unwrap_or_default();
    let symbol = field(0).trim().to_string();
    let date = NaiveDate::parse_from_str(field(33), "%Y%m%d")
        .map_err(|_| format!("business date `{}` is not YYYYMMDD", field(33)))?;
    let time = NaiveTime::parse_from_str(field(1), "%H%M%S")
        .map_err(|_| format!("trade time `{}` is not HHMMSS", field(1)))?;
    // KIS reports Seoul time (UTC+9, no daylight saving), whatever the venue is named.
    let ts = date.and_time(time).and_utc().timestamp_millis() - utc_offset_ms("krx");
    let price: Decimal = parse_decimal(field(2)).map_err(|e| format!("price: {e}"))?;
    let qty: Decimal = parse_decimal(field(12)).map_err(|e| format!("volume: {e}"))?;
    let accumulated = field(13);
    if accumulated.is_empty() || !accumulated.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "accumulated volume `{accumulated}` is not a number"
        ));
    }
    let tick = Tick {
        venue: venue.to_string(),
        symbol,
        price,
        qty,
        ts,
        trade_id: Some(format!("{}-{accumulated}", field(33))),
    };
    tick.validate().map_err(|e| e.to_string())?;
    // The day's open, high and low so far (0 or blank: not reported, the trades decide).
    let day_price = |i: usize| parse_decimal(field(i)).ok().filter(|p| *p > Decimal::ZERO);
    let figures = DayFigures {
        open: day_price(7),
        high: day_price(8),
        low: day_price(9),
        volume: parse_decimal(accumulated).map_err(|e| format!("accumulated volume: {e}"))?,
    };
    Ok((tick, figures))
}

#[async_trait::async_trait]
impl Feed for KisFeed {
    fn name(&self) -> &'static str {
        "kis"
    }

    fn url(&self) -> String {
        self.config.ws_url.clone()
    }

    async fn prepare(&mut self) -> std::result::Result<(), String> {
        if self.approval_key.is_none() {
            self.approval_key = Some(self.request_approval_key().await?);
            tracing::info!(source = "kis", session = self.index, "approval key issued");
        }
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        let key = self
            .approval_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .unwrap_or_default();
        self.symbols
            .iter()
            .map(|symbol| self.config.subscription(&key, symbol))
            .collect()
    }

    fn subscription_pause(&self) -> Duration {
        self.config.subscribe_pause
    }

    async fn on_frame(&mut self, payload: &[u8], out: &mut Vec<Item>) {
        let text = String::from_utf8_lossy(payload);
        match text.as_bytes().first() {
            Some(b'0' | b'1') => self.on_data(&text, out),
            Some(b'{') => self.on_control(&text),
            _ => self.count(&self.metrics.malformed, || {
                format!("frame skipped: {}", excerpt(payload))
            }),
        }
    }

    fn take_requests(&mut self) -> Requests {
        std::mem::take(&mut self.requests)
    }

    async fn on_timer(&mut self, now_ms: i64, out: &mut Vec<Item>) {
        self.pre_close_scan(now_ms, out);
        out.extend(self.builder.on_time(now_ms).into_iter().map(Item::Candle));
        self.close_days(now_ms, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as KIS sends it: 46 fields, the ones tickwatch reads filled in.
    fn record(symbol: &str, time: &str, price: &str, qty: &str, accumulated: &str) -> String {
        let mut fields = vec!["0"; TRADE_FIELDS];
        fields[0] = symbol;
        fields[1] = time;
        fields[2] = price;
        fields[12] = qty;
        fields[13] = accumulated;
        fields[33] = "20260304";
        fields.join("^")
    }

    fn feed() -> KisFeed {
        feed_with(KisConfig::default())
    }

    fn feed_with(config: KisConfig) -> KisFeed {
        let config = Arc::new(KisConfig {
            app_key: Some(Secret::new("key")),
            app_secret: Some(Secret::new("secret")),
            ..config
        });
        KisFeed {
            index: 0,
            account: config.accounts()[0].clone(),
            symbols: config.symbols.clone(),
            http: reqwest::Client::new(),
            approval_key: Some(Secret::new("approval")),
            dedupe: Dedupe::new(100),
            builder: CandleBuilder::new(&intraday(&config.candles)),
            days: HashMap::new(),
            closed_days: HashMap::new(),
            holidays: Arc::new(config.holiday_dates().expect("holidays")),
            metrics: Arc::new(Metrics::default()),
            requests: Requests::default(),
            late_reported: 0,
            scanned_day: None,
            config,
        }
    }

    fn ticks(out: &[Item]) -> Vec<&Tick> {
        out.iter()
            .filter_map(|i| match i {
                Item::Tick(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_multi_record_frame_is_every_trade_in_order() {
        let mut feed = feed();
        let frame = format!(
            "0|H0STCNT0|002|{}^{}",
            record("005930", "093000", "71500", "10", "1000"),
            record("005930", "093001", "71600", "3", "1003")
        );
        let mut out = Vec::new();
        feed.on_frame(frame.as_bytes(), &mut out).await;
        let got = ticks(&out);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].symbol, "005930");
        assert_eq!(got[0].price, Decimal::new(71500, 0));
        assert_eq!(got[0].qty, Decimal::new(10, 0));
        // 09:30:00 KST on 4 March 2026 is 00:30:00 UTC.
        assert_eq!(got[0].ts, 1_772_584_200_000);
        assert_eq!(got[1].trade_id.as_deref(), Some("20260304-1003"));
        // The same frame again (a resent trade) publishes nothing new.
        let mut again = Vec::new();
        feed.on_frame(frame.as_bytes(), &mut again).await;
        assert!(ticks(&again).is_empty());
        assert_eq!(feed.metrics.snapshot().duplicates, 2);
    }

    #[tokio::test]
    async fn a_frame_whose_count_disagrees_is_skipped_whole() {
        let mut feed = feed();
        let frame = format!(
            "0|H0STCNT0|002|{}",
            record("005930", "093000", "71500", "10", "1000")
        );
        let mut out = Vec::new();
        feed.on_frame(frame.as_bytes(), &mut out).await;
        assert!(out.is_empty());
        assert_eq!(feed.metrics.snapshot().malformed, 1);
    }

    #[tokio::test]
    async fn encrypted_frames_are_refused() {
        let mut feed = feed();
        let mut out = Vec::new();
        feed.on_frame(b"1|H0STCNT0|001|c2VjcmV0", &mut out).await;
        assert!(out.is_empty());
        assert_eq!(feed.metrics.snapshot().unknown_events, 1);
    }

    #[tokio::test]
    async fn pingpong_is_echoed_and_a_refused_key_is_dropped() {
        let mut feed = feed();
        let ping = r#"{"header":{"tr_id":"PINGPONG","datetime":"20260304093000"}}"#;
        feed.on_frame(ping.as_bytes(), &mut Vec::new()).await;
        let requests = feed.take_requests();
        assert_eq!(requests.send, vec![ping.to_string()]);
        assert!(requests.reconnect.is_none());

        let refused = r#"{"header":{"tr_id":"H0STCNT0","tr_key":"005930","encrypt":"N"},"body":{"rt_cd":"1","msg_cd":"OPSP0011","msg1":"invalid approval : NOT FOUND"}}"#;
        feed.on_frame(refused.as_bytes(), &mut Vec::new()).await;
        assert!(feed.take_requests().reconnect.is_some());
        assert!(feed.approval_key.is_none(), "a new key is fetched");
    }

    #[tokio::test]
    async fn subscribe_replies_are_not_data() {
        let mut feed = feed();
        let mut out = Vec::new();
        for reply in [
            r#"{"header":{"tr_id":"H0STCNT0","tr_key":"005930","encrypt":"N"},"body":{"rt_cd":"0","msg_cd":"OPSP0000","msg1":"SUBSCRIBE SUCCESS","output":{"iv":"0123456789abcdef","key":"0123456789abcdef0123456789abcdef"}}}"#,
            r#"{"header":{"tr_id":"H0STCNT0","tr_key":"005930","encrypt":"N"},"body":{"rt_cd":"1","msg_cd":"OPSP0002","msg1":"ALREADY IN SUBSCRIBE"}}"#,
        ] {
            feed.on_frame(reply.as_bytes(), &mut out).await;
        }
        assert!(out.is_empty());
        let requests = feed.take_requests();
        assert!(requests.send.is_empty() && requests.reconnect.is_none());
        assert_eq!(feed.metrics.snapshot().unknown_events, 0);
    }

    #[tokio::test]
    async fn the_pre_close_scan_publishes_the_forming_day_once() {
        let mut feed = feed();
        let frame = |date: &str, time: &str, acc: &str| {
            let mut r = record("005930", time, "71500", "10", acc);
            r = r.replace("20260304", date);
            format!("0|H0STCNT0|001|{r}")
        };
        let mut out = Vec::new();
        // The first day is incomplete (the feed started in it); the second is whole.
        feed.on_frame(frame("20260303", "150000", "1").as_bytes(), &mut out)
            .await;
        feed.on_frame(frame("20260304", "090000", "10").as_bytes(), &mut out)
            .await;
        out.clear();
        let kst = |hhmm: &str| {
            tickwatch_schema::history::parse_ts(&format!("2026-03-04T{hhmm}:00+09:00")).expect("ts")
        };
        feed.on_timer(kst("15:19"), &mut out).await;
        assert!(out.iter().all(
            |i| !matches!(i, Item::Candle(c) if c.interval == tickwatch_schema::wire::Interval::D1)
        ));
        feed.on_timer(kst("15:20"), &mut out).await;
        let days: Vec<_> = out
            .iter()
            .filter_map(|i| match i {
                Item::Candle(c) if c.interval == tickwatch_schema::wire::Interval::D1 => {
                    Some(c.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(days.len(), 1, "{days:?}");
        assert!(!days[0].closed);
        assert_eq!(days[0].open_ts, kst("00:00"));
        out.clear();
        feed.on_timer(kst("15:21"), &mut out).await;
        assert!(
            out.iter()
                .all(|i| !matches!(i, Item::Candle(c) if !c.closed)),
            "once a day"
        );
    }

    /// The closed day candles among `out`.
    fn days(out: &[Item]) -> Vec<Candle> {
        out.iter()
            .filter_map(|i| match i {
                Item::Candle(c) if c.interval == Interval::D1 && c.closed => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_day_seen_from_its_middle_is_exact_from_kis_day_figures() {
        let mut feed = feed();
        let frame = |time: &str, price: &str, acc: &str, (open, high, low): (&str, &str, &str)| {
            let mut fields: Vec<String> = record("005930", time, price, "10", acc)
                .split('^')
                .map(str::to_string)
                .collect();
            (fields[7], fields[8], fields[9]) = (open.into(), high.into(), low.into());
            format!("0|H0STCNT0|001|{}", fields.join("^"))
        };
        let kst = |hhmmss: &str| {
            tickwatch_schema::history::parse_ts(&format!("2026-03-04T{hhmmss}+09:00")).expect("ts")
        };
        let mut out = Vec::new();
        // The feed starts at 11:00: the day opened at 70000 and has been to 72000 and 69500.
        let figures = ("70000", "72000", "69500");
        feed.on_frame(
            frame("110000", "70500", "1000000", figures).as_bytes(),
            &mut out,
        )
        .await;
        feed.on_frame(
            frame("152500", "71000", "1500000", figures).as_bytes(),
            &mut out,
        )
        .await;
        // After the close: a trade, not part of the day.
        feed.on_frame(
            frame("154500", "71200", "1500100", figures).as_bytes(),
            &mut out,
        )
        .await;
        feed.on_timer(kst("15:30:59"), &mut out).await;
        assert!(days(&out).is_empty(), "the day is not over yet");
        feed.on_timer(kst("15:31:05"), &mut out).await;
        let day = days(&out);
        assert_eq!(day.len(), 1, "{day:?}");
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        assert_eq!(
            (
                day[0].open,
                day[0].high,
                day[0].low,
                day[0].close,
                day[0].volume
            ),
            (d("70000"), d("72000"), d("69500"), d("71000"), d("1500000"))
        );
        assert_eq!(day[0].open_ts, kst("00:00:00"));
        assert!(day[0].closed);
        // A late record of that day, after it was published, publishes nothing again.
        out.clear();
        feed.on_frame(
            frame("152900", "70900", "1499000", figures).as_bytes(),
            &mut out,
        )
        .await;
        feed.on_timer(kst("15:32:00"), &mut out).await;
        assert!(days(&out).is_empty(), "{out:?}");
    }

    #[tokio::test]
    async fn holidays_and_weekends_build_no_candles() {
        let mut feed = feed_with(KisConfig {
            holidays: vec!["2026-03-05".into()],
            ..KisConfig::default()
        });
        let frame = |date: &str, time: &str, acc: &str| {
            let r = record("005930", time, "71500", "10", acc).replace("20260304", date);
            format!("0|H0STCNT0|001|{r}")
        };
        let mut out = Vec::new();
        feed.on_frame(frame("20260304", "100000", "10").as_bytes(), &mut out)
            .await;
        out.clear();
        // A holiday (listed) and a Saturday: trades, but neither closes nor opens a candle.
        feed.on_frame(frame("20260305", "100000", "10").as_bytes(), &mut out)
            .await;
        feed.on_frame(frame("20260307", "100000", "10").as_bytes(), &mut out)
            .await;
        assert_eq!(ticks(&out).len(), 2);
        assert!(out.iter().all(|i| !matches!(i, Item::Candle(_))), "{out:?}");
        // The next trading day closes the last one.
        feed.on_frame(frame("20260309", "090000", "10").as_bytes(), &mut out)
            .await;
        let closed = days(&out);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].volume.to_string(), "10");
        let wrong = KisConfig {
            holidays: vec!["05/03/2026".into()],
            ..KisConfig::default()
        };
        assert!(
            wrong
                .holiday_dates()
                .expect_err("not a date")
                .to_string()
                .contains("kis.holidays[0]")
        );
    }

    #[test]
    fn the_subscription_is_the_documented_json() {
        let config = KisConfig::default();
        let got: serde_json::Value =
            serde_json::from_str(&config.subscription("AK", "005930")).expect("json");
        assert_eq!(
            got,
            serde_json::json!({
                "header": {"approval_key": "AK", "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
                "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}}
            })
        );
    }

    #[test]
    fn validation_names_the_key() {
        let keys = KisConfig {
            app_key: Some(Secret::new("k")),
            app_secret: Some(Secret::new("s")),
            ..KisConfig::default()
        };
        keys.validate().expect("valid");
        let cases = [
            (KisConfig::default(), "kis.app_key"),
            (
                KisConfig {
                    symbols: vec!["5930".into()],
                    ..keys.clone()
                },
                "kis.symbols[0]",
            ),
            (
                KisConfig {
                    symbols: (0..41).map(|i| format!("{i:06}")).collect(),
                    ..keys.clone()
                },
                "kis.symbols",
            ),
            (
                KisConfig {
                    max_symbols_per_session: 42,
                    ..keys.clone()
                },
                "kis.max_symbols_per_session",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }
}
