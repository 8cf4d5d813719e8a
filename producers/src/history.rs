//! History: the closed candles of a series before now, from its venue's REST API or from a
//! history file — what `tickwatch history load` and a symbol's first alert store so that
//! the daily signals need not wait months for their first bar.
//!
//! - **Binance**: `GET {rest_url}/api/v3/klines` (the feed's gap backfill, paged by 1,000).
//! - **Upbit**: `GET {rest_url}/v1/candles/{days|weeks|minutes/N}?market&count=200&to`, newest
//!   first, paged backwards with `to` (exclusive, UTC). Upbit has no 2h, 6h or 12h candles.
//! - **KRX (KIS Open API)**: an access token from `POST {rest_url}/oauth2/tokenP` (issued at
//!   most once a minute by KIS, so one is kept per client), then
//!   `GET {rest_url}/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice`
//!   (`tr_id` `FHKST03010100`, the newest 100 rows of the date range per call), paged
//!   backwards: each page's range ends the day before the oldest row of the last.
//!   Intraday bars come from KIS's daily minute chart (`inquire-time-dailychartprice`,
//!   `FHKST03010230`, 120 minutes a call, about a year kept), longer ones built from them.
//! - **Files**: the `ts,open,high,low,close,volume` CSV the replay reads, with the same day
//!   boundary (a KRX day is a Seoul session).
//!
//! A candle is loaded only once its bucket is over, by a minute ([`SETTLE_MS`]): the forming
//! bar, and one just closed, are the live feed's. Requests to one venue are spaced by its
//! `pace` (Binance's pages of one series follow each other), and a failed request is retried with
//! backoff (not a 4xx other than rate limiting). Candles are in open-time order, one per
//! bucket, with the same `open_ts` the live candle builder gives the bucket.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::backoff::Backoff;
use tickwatch_schema::history::{format_ts, parse_decimal};
use tickwatch_schema::wire::{Candle, Interval, Message};

use crate::binance::BinanceConfig;
use crate::candles::{bucket_start, utc_offset_ms};
use crate::config::duration;
use crate::error::{Error, Result};
use crate::feed::excerpt;
use crate::kis::KisConfig;
use crate::upbit::{UpbitConfig, json_decimal};

/// A bucket closed less than this long ago is left to the live feed, whose candle of it may
/// still be on its way: a load that stored it first would make the live one look old to the
/// signals role, and its signals would be lost.
pub const SETTLE_MS: i64 = 60_000;
/// Upbit's most candles per request.
const UPBIT_PAGE: usize = 200;
/// The KIS daily chart's most rows per request.
const KIS_PAGE: usize = 100;
/// The KIS daily chart (국내주식기간별시세).
pub const KIS_DAILY_TR_ID: &str = "FHKST03010100";
/// The KIS daily minute chart (주식일별분봉조회).
pub const KIS_MINUTES_TR_ID: &str = "FHKST03010230";
/// KIS's answer when the access token has expired (`기간이 만료된 token`) or is unknown.
const KIS_TOKEN_REFUSED: [&str; 2] = ["EGW00123", "EGW00121"];
/// KIS's answer when requests come faster than the app's limit.
const KIS_TOO_FAST: &str = "EGW00201";

/// The `[history]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Load a symbol's history when it gets its first alert or signal subscription, for
    /// the venues `tickwatch run` has a source for.
    pub load_on_first_alert: bool,
    /// The venues (`binance`, `upbit`, `krx`) a first alert loads history from; empty: those
    /// `run.sources` has a feed for (set it for an API or bot process that runs no source).
    pub venues: Vec<String>,
    /// The intervals loaded; `1d` feeds the daily signals (52-week high, VCP, golden cross).
    pub intervals: Vec<Interval>,
    /// Bars per series; `0` means as many as the signals engine warms up on for the
    /// interval (≥ 260 daily bars with the default signals).
    pub bars: usize,
    /// The shortest time between two requests to one venue.
    pub pace: HistoryPace,
    /// Timeout of one request.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Attempts per request before the series is given up.
    pub attempts: u32,
}

/// Per-venue request spacing: Binance allows 6,000 request weight a minute, Upbit 10
/// candle requests a second, KIS 20 calls a second on a real account and 2 on a paper one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryPace {
    #[serde(with = "duration")]
    pub binance: Duration,
    #[serde(with = "duration")]
    pub upbit: Duration,
    #[serde(with = "duration")]
    pub krx: Duration,
}

impl Default for HistoryPace {
    fn default() -> Self {
        HistoryPace {
            binance: Duration::from_millis(100),
            upbit: Duration::from_millis(120),
            krx: Duration::from_millis(100),
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            load_on_first_alert: true,
            venues: Vec::new(),
            intervals: vec![Interval::D1],
            bars: 0,
            pace: HistoryPace::default(),
            request_timeout: Duration::from_secs(15),
            attempts: 4,
        }
    }
}

/// The most bars one series may ask for (Binance 1m for ten weeks is ~100,000).
pub const MAX_BARS: usize = 100_000;

impl HistoryConfig {
    pub fn validate(&self) -> Result<()> {
        if self.intervals.is_empty() {
            return Err(Error::config(
                "history.intervals",
                "is empty: name at least one interval (`1d`)",
            ));
        }
        if self.bars > MAX_BARS {
            return Err(Error::config(
                "history.bars",
                format!("{} is over the most, {MAX_BARS}", self.bars),
            ));
        }
        if self.attempts == 0 {
            return Err(Error::config("history.attempts", "must be at least 1"));
        }
        for (i, venue) in self.venues.iter().enumerate() {
            if HistoryVenue::parse(venue).is_none() {
                return Err(Error::config(
                    format!("history.venues[{i}]"),
                    format!("`{venue}` is not binance, upbit or krx"),
                ));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config(
                "history.request_timeout",
                "must be longer than 0",
            ));
        }
        Ok(())
    }
}

/// The venues history can be loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryVenue {
    Binance,
    Upbit,
    /// KRX stocks, from the KIS Open API.
    Krx,
}

impl HistoryVenue {
    pub const ALL: [HistoryVenue; 3] = [
        HistoryVenue::Binance,
        HistoryVenue::Upbit,
        HistoryVenue::Krx,
    ];

    /// `binance`, `upbit` or `krx` (also `kis`).
    pub fn parse(name: &str) -> Option<HistoryVenue> {
        match name.trim().to_ascii_lowercase().as_str() {
            "binance" => Some(HistoryVenue::Binance),
            "upbit" => Some(HistoryVenue::Upbit),
            "krx" | "kis" => Some(HistoryVenue::Krx),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryVenue::Binance => "binance",
            HistoryVenue::Upbit => "upbit",
            HistoryVenue::Krx => "krx",
        }
    }
}

/// Fetches closed candles from the venues' REST APIs, one request at a time per client.
pub struct HistoryClient {
    http: reqwest::Client,
    config: HistoryConfig,
    binance: BinanceConfig,
    upbit: UpbitConfig,
    kis: KisConfig,
    last_request: HashMap<HistoryVenue, Instant>,
    kis_token: Option<String>,
    /// Rows a venue sent that were no candle (skipped, counted here).
    pub invalid_rows: u64,
}

impl std::fmt::Debug for HistoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the KIS token or app secret.
        f.debug_struct("HistoryClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HistoryClient {
    pub fn new(
        config: HistoryConfig,
        binance: BinanceConfig,
        upbit: UpbitConfig,
        kis: KisConfig,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::config("history", format!("HTTP client: {e}")))?;
        Ok(HistoryClient {
            http,
            config,
            binance,
            upbit,
            kis,
            last_request: HashMap::new(),
            kis_token: None,
            invalid_rows: 0,
        })
    }

    /// A client for Upbit alone (the feed's backfill after a reconnect): short timeouts and
    /// one retry, as the feed reads no frame while it waits.
    pub fn for_upbit(upbit: UpbitConfig) -> Result<Self> {
        HistoryClient::new(
            HistoryConfig {
                request_timeout: Duration::from_secs(5),
                attempts: 2,
                ..HistoryConfig::default()
            },
            BinanceConfig::default(),
            upbit,
            KisConfig::default(),
        )
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Which venue a venue name on the messages is (as the sources are configured).
    pub fn venue(&self, name: &str) -> Option<HistoryVenue> {
        if name == self.binance.venue {
            Some(HistoryVenue::Binance)
        } else if name == self.upbit.venue {
            Some(HistoryVenue::Upbit)
        } else if name == self.kis.venue {
            Some(HistoryVenue::Krx)
        } else {
            None
        }
    }

    /// The venue name the candles of `venue` carry.
    pub fn venue_name(&self, venue: HistoryVenue) -> &str {
        match venue {
            HistoryVenue::Binance => &self.binance.venue,
            HistoryVenue::Upbit => &self.upbit.venue,
            HistoryVenue::Krx => &self.kis.venue,
        }
    }

    /// Whether `venue` can serve `interval` at all (a clear error before any request).
    pub fn check(&self, venue: HistoryVenue, interval: Interval) -> Result<()> {
        match venue {
            HistoryVenue::Binance => Ok(()),
            HistoryVenue::Upbit => upbit_path(interval).map(drop),
            HistoryVenue::Krx => {
                if self.kis.app_key.is_none() || self.kis.app_secret.is_none() {
                    return Err(Error::config(
                        "producers.kis.app_key",
                        "KRX history comes from the KIS Open API: set KIS_APP_KEY and KIS_APP_SECRET",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The last `bars` closed candles of a series at `now_ms`, oldest first (fewer when
    /// the venue has fewer).
    pub async fn fetch(
        &mut self,
        venue: HistoryVenue,
        symbol: &str,
        interval: Interval,
        bars: usize,
        now_ms: i64,
    ) -> Result<Vec<Candle>> {
        self.check(venue, interval)?;
        if bars == 0 {
            return Ok(Vec::new());
        }
        let offset = utc_offset_ms(self.venue_name(venue));
        // The forming bucket, and one that has only just closed, are the live feed's: only
        // those before are loaded.
        let settled = now_ms - SETTLE_MS;
        let forming = bucket_start(settled, interval, offset);
        let mut candles = match venue {
            HistoryVenue::Binance => self.binance_klines(symbol, interval, bars, forming).await?,
            HistoryVenue::Upbit => {
                self.upbit_candles(symbol, interval, bars, forming, i64::MIN)
                    .await?
            }
            HistoryVenue::Krx if interval.is_daily_or_longer() => {
                self.kis_days(symbol, interval, bars, settled).await?
            }
            HistoryVenue::Krx => self.kis_minutes(symbol, interval, bars, settled).await?,
        };
        candles.sort_by_key(|c| c.open_ts);
        candles.dedup_by_key(|c| c.open_ts);
        if candles.len() > bars {
            candles.drain(..candles.len() - bars);
        }
        Ok(candles)
    }

    /// Waits until `venue` may be asked again.
    async fn pace(&mut self, venue: HistoryVenue) {
        let gap = match venue {
            HistoryVenue::Binance => self.config.pace.binance,
            HistoryVenue::Upbit => self.config.pace.upbit,
            HistoryVenue::Krx => self.config.pace.krx,
        };
        if let Some(last) = self.last_request.get(&venue) {
            let wait = gap.saturating_sub(last.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        self.last_request.insert(venue, Instant::now());
    }

    async fn binance_klines(
        &mut self,
        symbol: &str,
        interval: Interval,
        bars: usize,
        forming: i64,
    ) -> Result<Vec<Candle>> {
        let step = interval.as_ms();
        let start = forming
            - step
                * i64::try_from(bars)
                    .unwrap_or(i64::MAX / step)
                    .min(i64::MAX / step);
        self.pace(HistoryVenue::Binance).await;
        let mut binance = self.binance.clone();
        binance.rest_attempts = self.config.attempts;
        let mut invalid = 0u64;
        let candles = crate::binance::fetch_klines(
            &self.http,
            &binance,
            (symbol, interval),
            (start, forming - 1),
            &mut |reason| {
                invalid += 1;
                tracing::warn!(source = "binance", %symbol, "history row skipped: {reason}");
            },
        )
        .await?;
        self.invalid_rows += invalid;
        Ok(candles)
    }

    /// Upbit's closed candles of `market` opening in `[from, to]`, oldest first: what a
    /// disconnect cost the feed's own candles (Upbit leaves out buckets without trades).
    pub(crate) async fn upbit_range(
        &mut self,
        market: &str,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>> {
        let step = interval.as_ms();
        let buckets = usize::try_from((to - from) / step + 1)
            .unwrap_or(1)
            .min(MAX_BARS);
        let mut candles = self
            .upbit_candles(market, interval, buckets, to + step, from)
            .await?;
        candles.retain(|c| c.open_ts >= from && c.open_ts <= to);
        candles.sort_by_key(|c| c.open_ts);
        candles.dedup_by_key(|c| c.open_ts);
        Ok(candles)
    }

    /// Up to `bars` candles opening before `forming`, newest first, paging back no further
    /// than `not_before`.
    async fn upbit_candles(
        &mut self,
        market: &str,
        interval: Interval,
        bars: usize,
        forming: i64,
        not_before: i64,
    ) -> Result<Vec<Candle>> {
        let path = upbit_path(interval)?;
        let url = format!(
            "{}/v1/candles/{path}",
            self.upbit.rest_url.trim_end_matches('/')
        );
        let mut candles: Vec<Candle> = Vec::new();
        let mut to = forming;
        while candles.len() < bars {
            let count = (bars - candles.len()).min(UPBIT_PAGE);
            self.pace(HistoryVenue::Upbit).await;
            let request = self.http.get(&url).query(&[
                ("market", market.to_string()),
                ("count", count.to_string()),
                ("to", upbit_time(to)),
            ]);
            let body = self.send(request, &url).await?;
            let rows = body.as_array().ok_or_else(|| Error::Rest {
                url: url.clone(),
                reason: format!(
                    "expected a list of candles, got {}",
                    excerpt(body.to_string().as_bytes())
                ),
            })?;
            let page = rows.len();
            let mut oldest = to;
            for row in rows {
                match upbit_candle(&self.upbit.venue, market, interval, row) {
                    Ok(candle) if candle.open_ts < to => {
                        oldest = oldest.min(candle.open_ts);
                        candles.push(candle);
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        self.invalid_rows += 1;
                        tracing::warn!(source = "upbit", %market, "history row skipped: {reason}");
                    }
                }
            }
            if page < count || oldest >= to || oldest <= not_before {
                break;
            }
            to = oldest;
        }
        Ok(candles)
    }

    async fn kis_days(
        &mut self,
        symbol: &str,
        interval: Interval,
        bars: usize,
        now_ms: i64,
    ) -> Result<Vec<Candle>> {
        let url = format!(
            "{}/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice",
            self.kis.rest_url.trim_end_matches('/')
        );
        let period = if interval == Interval::W1 { "W" } else { "D" };
        let offset = utc_offset_ms(&self.kis.venue);
        let today = chrono::DateTime::from_timestamp_millis(now_ms + offset)
            .map(|t| t.date_naive())
            .unwrap_or_default();
        // A day is over at the session's close (15:31 KST by default): before that, today's
        // row is the forming bar.
        let close = self
            .kis
            .candles
            .session_close
            .as_deref()
            .and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok())
            .unwrap_or(NaiveTime::from_hms_opt(15, 31, 0).unwrap_or_default());
        let local_now = chrono::DateTime::from_timestamp_millis(now_ms + offset)
            .map(|t| t.naive_utc().time())
            .unwrap_or_default();
        let forming = bucket_start(now_ms, interval, offset);
        let day_over = local_now >= close;
        let mut candles: Vec<Candle> = Vec::new();
        let mut end = today;
        // KIS answers the newest 100 rows of the range: the range starts at the earliest
        // date it has, and each page ends the day before the oldest row of the last.
        let start = NaiveDate::from_ymd_opt(1980, 1, 1).unwrap_or_default();
        while candles.len() < bars && end >= start {
            self.pace(HistoryVenue::Krx).await;
            let query = [
                ("FID_COND_MRKT_DIV_CODE", "J".to_string()),
                ("FID_INPUT_ISCD", symbol.to_string()),
                ("FID_INPUT_DATE_1", start.format("%Y%m%d").to_string()),
                ("FID_INPUT_DATE_2", end.format("%Y%m%d").to_string()),
                ("FID_PERIOD_DIV_CODE", period.to_string()),
                // Adjusted prices, so splits do not show as crashes in the indicators.
                ("FID_ORG_ADJ_PRC", "0".to_string()),
            ];
            let rows = self.kis_page(&url, KIS_DAILY_TR_ID, &query).await?;
            let mut oldest: Option<NaiveDate> = None;
            for row in &rows {
                match kis_candle(&self.kis.venue, symbol, interval, row) {
                    Ok(Some((date, candle))) => {
                        oldest = Some(oldest.map_or(date, |o| o.min(date)));
                        let closed = candle.open_ts < forming
                            || (interval == Interval::D1 && candle.open_ts == forming && day_over);
                        if closed {
                            candles.push(candle);
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        self.invalid_rows += 1;
                        tracing::warn!(source = "kis", %symbol, "history row skipped: {reason}");
                    }
                }
            }
            match oldest {
                Some(date) if rows.len() >= KIS_PAGE => end = date - chrono::Duration::days(1),
                _ => break,
            }
        }
        Ok(candles)
    }

    /// One page of the KIS daily chart, with a fresh token when the old one is refused.
    /// KRX minute bars from KIS's daily minute chart (KIS keeps about a year of them), 120
    /// a request, newest first, paged back by the oldest bar's date and time (the request's
    /// `FID_PW_DATA_INCU_YN=Y` carries on into earlier days); a longer interval is built from
    /// them on the Seoul day. A bar's `stck_cntg_hour` is taken as its minute's start.
    async fn kis_minutes(
        &mut self,
        symbol: &str,
        interval: Interval,
        bars: usize,
        settled: i64,
    ) -> Result<Vec<Candle>> {
        let url = format!(
            "{}/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice",
            self.kis.rest_url.trim_end_matches('/')
        );
        let offset = utc_offset_ms(&self.kis.venue);
        let minutes_a_bar = usize::try_from(interval.as_ms() / 60_000)
            .unwrap_or(1)
            .max(1);
        // One bar more than asked: the oldest built bar may lack its first minutes.
        let wanted = bars
            .saturating_add(usize::from(minutes_a_bar > 1))
            .saturating_mul(minutes_a_bar)
            .min(MAX_BARS);
        let forming = bucket_start(settled, Interval::M1, offset);
        let local = chrono::DateTime::from_timestamp_millis(settled + offset)
            .map(|t| t.naive_utc())
            .unwrap_or_default();
        let (mut date, mut hour) = (
            local.format("%Y%m%d").to_string(),
            local.format("%H%M%S").to_string(),
        );
        let mut minutes: Vec<Candle> = Vec::new();
        let mut oldest: Option<i64> = None;
        let mut empty_days = 0;
        while minutes.len() < wanted {
            self.pace(HistoryVenue::Krx).await;
            let query = [
                ("FID_COND_MRKT_DIV_CODE", "J".to_string()),
                ("FID_INPUT_ISCD", symbol.to_string()),
                ("FID_INPUT_HOUR_1", hour.clone()),
                ("FID_INPUT_DATE_1", date.clone()),
                ("FID_PW_DATA_INCU_YN", "Y".to_string()),
                ("FID_FAKE_TICK_INCU_YN", String::new()),
            ];
            let rows = self.kis_page(&url, KIS_MINUTES_TR_ID, &query).await?;
            let mut page_oldest: Option<(i64, String, String)> = None;
            for row in &rows {
                match kis_minute(&self.kis.venue, symbol, row) {
                    Ok(Some(candle)) => {
                        if oldest.is_some_and(|o| candle.open_ts >= o) {
                            continue; // seen on the last page
                        }
                        if page_oldest
                            .as_ref()
                            .is_none_or(|(ts, _, _)| candle.open_ts < *ts)
                        {
                            let text = |k: &str| {
                                row.get(k)
                                    .and_then(serde_json::Value::as_str)
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            page_oldest = Some((
                                candle.open_ts,
                                text("stck_bsop_date"),
                                text("stck_cntg_hour"),
                            ));
                        }
                        if candle.open_ts < forming {
                            minutes.push(candle);
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        self.invalid_rows += 1;
                        tracing::warn!(source = "kis", %symbol, "history row skipped: {reason}");
                    }
                }
            }
            match page_oldest {
                Some((ts, next_date, next_hour)) => {
                    oldest = Some(ts);
                    (date, hour) = (next_date, next_hour);
                    empty_days = 0;
                }
                // Nothing older from here: a weekend or holiday, unless KIS carried on across
                // it; step back a day at the close, and stop after ten empty ones (KIS keeps
                // about a year).
                None => {
                    empty_days += 1;
                    let Some(earlier) = NaiveDate::parse_from_str(&date, "%Y%m%d")
                        .ok()
                        .and_then(|d| d.pred_opt())
                    else {
                        break;
                    };
                    if empty_days > 10 {
                        break;
                    }
                    (date, hour) = (earlier.format("%Y%m%d").to_string(), "153000".into());
                }
            }
        }
        minutes.sort_by_key(|c| c.open_ts);
        minutes.dedup_by_key(|c| c.open_ts);
        if interval == Interval::M1 {
            return Ok(minutes);
        }
        // Longer bars from the minutes; a bucket not over by `settled` is the live feed's.
        let longer = crate::candles::aggregate(minutes, interval)?;
        // The oldest built bar may lack its first minutes (the fetch began inside it): left
        // out. (The session's last bucket is short — 15:00–15:30 of an hour — and over all
        // the same.)
        Ok(longer
            .into_iter()
            .skip(1)
            .filter(|c| c.open_ts + interval.as_ms() <= settled)
            .map(|c| Candle { closed: true, ..c })
            .collect())
    }

    /// One page of a KIS chart (`tr_id` with its query), with a fresh token when the old
    /// one is refused.
    async fn kis_page(
        &mut self,
        url: &str,
        tr_id: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<serde_json::Value>> {
        let mut renewed = false;
        loop {
            let token = self.kis_token().await?;
            let (app_key, app_secret) = self.kis_credentials()?;
            let request = self
                .http
                .get(url)
                .header("content-type", "application/json; charset=utf-8")
                .header("authorization", format!("Bearer {token}"))
                .header("appkey", app_key)
                .header("appsecret", app_secret)
                .header("tr_id", tr_id)
                .header("custtype", self.kis.custtype.as_str())
                .query(query);
            match self.send(request, url).await {
                Ok(body) => {
                    return Ok(body
                        .get("output2")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default());
                }
                Err(Error::Rest { reason, .. })
                    if !renewed && KIS_TOKEN_REFUSED.iter().any(|code| reason.contains(code)) =>
                {
                    tracing::info!(source = "kis", "access token refused; asking for a new one");
                    self.kis_token = None;
                    renewed = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn kis_credentials(&self) -> Result<(String, String)> {
        match (&self.kis.app_key, &self.kis.app_secret) {
            (Some(key), Some(secret)) => {
                Ok((key.expose().to_string(), secret.expose().to_string()))
            }
            _ => Err(Error::config(
                "producers.kis.app_key",
                "KRX history comes from the KIS Open API: set KIS_APP_KEY and KIS_APP_SECRET",
            )),
        }
    }

    /// The access token, asked for once per client (KIS issues one a minute at most).
    async fn kis_token(&mut self) -> Result<String> {
        if let Some(token) = &self.kis_token {
            return Ok(token.clone());
        }
        let (app_key, app_secret) = self.kis_credentials()?;
        let url = format!("{}/oauth2/tokenP", self.kis.rest_url.trim_end_matches('/'));
        self.pace(HistoryVenue::Krx).await;
        let request = self.http.post(&url).json(&serde_json::json!({
            "grant_type": "client_credentials",
            "appkey": app_key,
            "appsecret": app_secret,
        }));
        let body = self.send(request, &url).await?;
        let token = body
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Rest {
                url: url.clone(),
                reason: "the answer holds no access_token".into(),
            })?
            .to_string();
        self.kis_token = Some(token.clone());
        Ok(token)
    }

    /// Sends a request with retries: a network error, a 5xx, 429 or KIS's rate-limit answer
    /// is tried again after a backoff; another 4xx, or KIS's `rt_cd` other than `0`, is an
    /// error at once. Returns the JSON body.
    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<serde_json::Value> {
        let mut last_error = String::new();
        // 0.5 s, 1 s, 2 s … up to 8 s between attempts: the project's one backoff.
        let mut backoff =
            Backoff::new(Duration::from_millis(500), Duration::from_secs(8), 2.0, 0.0);
        for attempt in 0..self.config.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            let Some(request) = request.try_clone() else {
                break;
            };
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let body: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            // KIS answers errors as JSON with `rt_cd` ≠ "0" (and `msg_cd`, `msg1`), often
            // with HTTP 500.
            let kis_error = body.as_ref().and_then(|b| {
                let rt_cd = b.get("rt_cd")?.as_str()?;
                (rt_cd != "0").then(|| {
                    let field =
                        |k: &str| b.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
                    (
                        field("msg_cd").to_string(),
                        field("msg1").trim().to_string(),
                    )
                })
            });
            if let Some((code, message)) = kis_error {
                last_error = format!("KIS {code}: {message}");
                if code == KIS_TOO_FAST {
                    continue;
                }
                break;
            }
            if status.is_success() {
                match body {
                    Some(body) => return Ok(body),
                    None => {
                        last_error = format!("unreadable body: {}", excerpt(text.as_bytes()));
                        continue;
                    }
                }
            }
            last_error = format!("HTTP {status}: {}", excerpt(text.as_bytes()));
            if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 418 {
                break;
            }
        }
        Err(Error::Rest {
            url: url.to_string(),
            reason: last_error,
        })
    }
}

/// Upbit's candle path for an interval.
fn upbit_path(interval: Interval) -> Result<String> {
    Ok(match interval {
        Interval::D1 => "days".into(),
        Interval::W1 => "weeks".into(),
        Interval::M1
        | Interval::M3
        | Interval::M5
        | Interval::M15
        | Interval::M30
        | Interval::H1
        | Interval::H4 => {
            format!("minutes/{}", interval.as_ms() / 60_000)
        }
        other => {
            return Err(Error::config(
                "history.intervals",
                format!(
                    "Upbit has no {other} candles (it has 1m, 3m, 5m, 15m, 30m, 1h, 4h, 1d and 1w)"
                ),
            ));
        }
    })
}

/// Upbit's `to`: UTC, `yyyy-MM-ddTHH:mm:ssZ`, exclusive.
fn upbit_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// One Upbit candle: `candle_date_time_utc` (the bucket's start, no zone), `opening_price`,
/// `high_price`, `low_price`, `trade_price` (the close), `candle_acc_trade_volume`.
fn upbit_candle(
    venue: &str,
    market: &str,
    interval: Interval,
    row: &serde_json::Value,
) -> std::result::Result<Candle, String> {
    let field = |name: &str| -> std::result::Result<Decimal, String> {
        let value = row.get(name).ok_or_else(|| format!("no `{name}`"))?;
        json_decimal(value).map_err(|e| format!("`{name}`: {e}"))
    };
    let time = row
        .get("candle_date_time_utc")
        .and_then(serde_json::Value::as_str)
        .ok_or("no `candle_date_time_utc`")?;
    let open_ts = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| format!("`candle_date_time_utc` `{time}`: {e}"))?
        .and_utc()
        .timestamp_millis();
    if let Some(code) = row.get("market").and_then(serde_json::Value::as_str)
        && code != market
    {
        return Err(format!("a candle of {code}, not {market}"));
    }
    let candle = Candle {
        venue: venue.to_string(),
        symbol: market.to_string(),
        interval,
        open_ts: bucket_start(open_ts, interval, 0),
        open: field("opening_price")?,
        high: field("high_price")?,
        low: field("low_price")?,
        close: field("trade_price")?,
        volume: field("candle_acc_trade_volume")?,
        trades: None,
        closed: true,
    };
    candle.validate().map_err(|e| e.to_string())?;
    Ok(candle)
}

/// One KIS daily row: `stck_bsop_date` (YYYYMMDD), `stck_oprc`, `stck_hgpr`, `stck_lwpr`,
/// `stck_clpr`, `acml_vol`. KIS pads a short answer with rows of empty strings: `None`.
fn kis_candle(
    venue: &str,
    symbol: &str,
    interval: Interval,
    row: &serde_json::Value,
) -> std::result::Result<Option<(NaiveDate, Candle)>, String> {
    let text = |name: &str| {
        row.get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .trim()
    };
    let date_text = text("stck_bsop_date");
    if date_text.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(date_text, "%Y%m%d")
        .map_err(|e| format!("`stck_bsop_date` `{date_text}`: {e}"))?;
    let number = |name: &str| -> std::result::Result<Decimal, String> {
        parse_decimal(text(name)).map_err(|e| format!("`{name}` `{}`: {e}", text(name)))
    };
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or("a date without a midnight")?
        .and_utc()
        .timestamp_millis();
    // A KRX day is a Seoul session: its bucket opens at 00:00 KST. A weekly row is dated by
    // its first trading day; its bucket is that day's week.
    let open_ts = bucket_start(
        midnight - utc_offset_ms(venue),
        interval,
        utc_offset_ms(venue),
    );
    let candle = Candle {
        venue: venue.to_string(),
        symbol: symbol.to_string(),
        interval,
        open_ts,
        open: number("stck_oprc")?,
        high: number("stck_hgpr")?,
        low: number("stck_lwpr")?,
        close: number("stck_clpr")?,
        volume: number("acml_vol")?,
        trades: None,
        closed: true,
    };
    candle.validate().map_err(|e| e.to_string())?;
    Ok(Some((date, candle)))
}

/// One KIS minute bar: `stck_bsop_date`, `stck_cntg_hour` (HHMMSS, Seoul), `stck_oprc`,
/// `stck_hgpr`, `stck_lwpr`, `stck_prpr` (the close), `cntg_vol`; padding rows are `None`.
fn kis_minute(
    venue: &str,
    symbol: &str,
    row: &serde_json::Value,
) -> std::result::Result<Option<Candle>, String> {
    let text = |name: &str| {
        row.get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .trim()
    };
    let (date_text, hour_text) = (text("stck_bsop_date"), text("stck_cntg_hour"));
    if date_text.is_empty() || hour_text.is_empty() {
        return Ok(None);
    }
    let at =
        chrono::NaiveDateTime::parse_from_str(&format!("{date_text}{hour_text}"), "%Y%m%d%H%M%S")
            .map_err(|e| format!("`{date_text} {hour_text}`: {e}"))?;
    let number = |name: &str| -> std::result::Result<Decimal, String> {
        parse_decimal(text(name)).map_err(|e| format!("`{name}` `{}`: {e}", text(name)))
    };
    let ts = at.and_utc().timestamp_millis() - utc_offset_ms(venue);
    let candle = Candle {
        venue: venue.to_string(),
        symbol: symbol.to_string(),
        interval: Interval::M1,
        open_ts: bucket_start(ts, Interval::M1, utc_offset_ms(venue)),
        open: number("stck_oprc")?,
        high: number("stck_hgpr")?,
        low: number("stck_lwpr")?,
        close: number("stck_prpr")?,
        volume: number("cntg_vol")?,
        trades: None,
        closed: true,
    };
    candle.validate().map_err(|e| e.to_string())?;
    Ok(Some(candle))
}

/// The closed candles of a history file, as the replay reads them (a daily bar of a venue
/// whose day is not UTC's opens at that venue's midnight), oldest first; a bad line is an
/// error naming the file and line.
pub fn read_file(
    path: &Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<Interval>,
) -> Result<Vec<Candle>> {
    let reader = tickwatch_schema::history::open(path, venue, symbol, interval)?;
    let mut candles = Vec::new();
    for bar in reader {
        let mut bar = bar?;
        if bar.interval.is_daily_or_longer() {
            bar.open_ts -= utc_offset_ms(&bar.venue);
        }
        candles.push(bar);
    }
    candles.sort_by_key(|c| c.open_ts);
    candles.dedup_by_key(|c| c.open_ts);
    Ok(candles)
}

/// `first .. last` of a load, for logs.
pub fn span(candles: &[Candle]) -> String {
    match (candles.first(), candles.last()) {
        (Some(first), Some(last)) => format!(
            "{} .. {}",
            format_ts(first.open_ts),
            format_ts(last.open_ts)
        ),
        _ => "nothing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> i64 {
        tickwatch_schema::history::parse_ts(text).expect("test value")
    }

    #[test]
    fn an_upbit_candle_opens_at_its_utc_start() {
        let row = json!({
            "market": "KRW-BTC", "candle_date_time_utc": "2024-01-02T00:00:00",
            "candle_date_time_kst": "2024-01-02T09:00:00", "opening_price": 58_000_000.0,
            "high_price": 59_500_000.0, "low_price": 57_800_000.0, "trade_price": 59_000_000.0,
            "timestamp": 1_704_239_999_000_i64, "candle_acc_trade_price": 1.0e11,
            "candle_acc_trade_volume": 1234.56789012
        });
        let candle = upbit_candle("upbit", "KRW-BTC", Interval::D1, &row).expect("test value");
        assert_eq!(candle.open_ts, at("2024-01-02T00:00:00Z"));
        assert_eq!(candle.close.to_string(), "59000000");
        assert_eq!(candle.volume.to_string(), "1234.56789012");
        let other = json!({"market": "KRW-ETH", "candle_date_time_utc": "2024-01-02T00:00:00"});
        assert!(upbit_candle("upbit", "KRW-BTC", Interval::D1, &other).is_err());
    }

    #[test]
    fn a_kis_day_opens_at_seoul_midnight_and_padding_rows_are_skipped() {
        let row = json!({
            "stck_bsop_date": "20240102", "stck_oprc": "78200", "stck_hgpr": "79800",
            "stck_lwpr": "78200", "stck_clpr": "79600", "acml_vol": "17142847",
            "acml_tr_pbmn": "1356958778000", "flng_cls_code": "00", "mod_yn": "N"
        });
        let (date, candle) = kis_candle("krx", "005930", Interval::D1, &row)
            .expect("test value")
            .expect("test value");
        assert_eq!(
            date,
            NaiveDate::from_ymd_opt(2024, 1, 2).expect("test value")
        );
        assert_eq!(candle.open_ts, at("2024-01-02T00:00:00+09:00"));
        assert_eq!(candle.volume.to_string(), "17142847");
        let padding = json!({"stck_bsop_date": "", "stck_oprc": "", "stck_clpr": ""});
        assert_eq!(
            kis_candle("krx", "005930", Interval::D1, &padding).expect("test value"),
            None
        );
        let broken = json!({"stck_bsop_date": "20240102", "stck_oprc": "x"});
        assert!(kis_candle("krx", "005930", Interval::D1, &broken).is_err());
    }

    #[test]
    fn upbit_paths_and_times() {
        assert_eq!(upbit_path(Interval::M15).expect("test value"), "minutes/15");
        assert_eq!(upbit_path(Interval::H4).expect("test value"), "minutes/240");
        assert_eq!(upbit_path(Interval::D1).expect("test value"), "days");
        assert!(
            upbit_path(Interval::H2)
                .expect_err("an error")
                .to_string()
                .contains("no 2h")
        );
        assert_eq!(
            upbit_time(at("2024-01-02T00:00:00Z")),
            "2024-01-02T00:00:00Z"
        );
    }

    #[test]
    fn a_history_file_day_is_the_venue_day() {
        let dir = std::env::temp_dir().join(format!("tw-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test value");
        let path = dir.join("005930_1d.csv");
        std::fs::write(
            &path,
            "ts,open,high,low,close,volume\n2024-01-03,1,2,1,2,10\n2024-01-02,1,2,1,1,10\n",
        )
        .expect("test value");
        let candles = read_file(&path, None, None, None).expect("test value");
        assert_eq!(candles.len(), 2);
        assert_eq!(candles[0].venue, "krx");
        assert_eq!(candles[0].open_ts, at("2024-01-02T00:00:00+09:00"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn configuration_is_checked() {
        assert!(HistoryConfig::default().validate().is_ok());
        let empty = HistoryConfig {
            intervals: vec![],
            ..HistoryConfig::default()
        };
        assert!(
            empty
                .validate()
                .expect_err("an error")
                .to_string()
                .contains("history.intervals")
        );
        let client = HistoryClient::new(
            HistoryConfig::default(),
            BinanceConfig::default(),
            UpbitConfig::default(),
            KisConfig::default(),
        )
        .expect("test value");
        assert_eq!(client.venue("krx"), Some(HistoryVenue::Krx));
        assert_eq!(client.venue("nyse"), None);
        let minutes = client
            .check(HistoryVenue::Krx, Interval::M1)
            .expect_err("an error");
        assert!(minutes.to_string().contains("KIS_APP_KEY"), "{minutes}");
        let no_key = client
            .check(HistoryVenue::Krx, Interval::D1)
            .expect_err("an error");
        assert!(no_key.to_string().contains("KIS_APP_KEY"), "{no_key}");
    }
}
