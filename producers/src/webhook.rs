//! Inbound webhooks, for venues tickwatch has no feed for (a KRX broker bridge, a script,
//! TradingView alerts). An axum [`router`]; [`serve`] runs it until shutdown.
//!
//! ## `POST /ingest/ticks`
//! One tick or an array of ticks in the wire shape:
//! `{"venue":"krx","symbol":"005930","price":"71500","qty":"10","ts":1763762400123,"trade_id":"8812"}`
//! (`trade_id` optional; `price` and `qty` may also be JSON numbers, read through their
//! shortest decimal spelling). All or none: one bad tick rejects the request.
//!
//! ## `POST /webhook/tradingview`
//! A TradingView alert whose message is JSON, e.g.
//! `{"ticker":"{{ticker}}","exchange":"{{exchange}}","price":{{close}},"time":"{{timenow}}","volume":{{volume}}}`:
//! - `ticker` (required): the symbol, upper-cased; `BINANCE:BTCUSDT` also names the exchange;
//! - `price` or `close` (required): number or decimal string;
//! - `exchange` (optional): the venue, lower-cased (`BINANCE` → `binance`); without it the
//!   configured `tradingview_venue`;
//! - `timenow` or `time` (optional, `timenow` preferred): ISO-8601 UTC or epoch milliseconds;
//!   without either, the time the request arrived;
//! - `volume` (optional): the tick's `qty`, else 0.
//!
//! TradingView sends JSON as `text/plain`, so the content type is not checked.
//!
//! ## Both
//! - Secret (when configured): `?secret=…` in the URL (TradingView cannot set headers) or the
//!   `X-Tickwatch-Secret` header; missing or wrong → 401.
//! - 202 `{"accepted":n}` only after the sink confirmed the publish.
//! - Errors are `application/problem+json`: 400 when the body is not JSON or not the expected
//!   shape; 422 for a bad value, naming the `field` (and the `index` in an array); 413 for too
//!   many ticks or too large a body; 503 (with `Retry-After`) when the broker is unavailable;
//!   502 when the broker rejected the message. Broker error text never reaches the response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tickwatch_schema::history::{parse_decimal, parse_ts};
use tickwatch_schema::wire::{Message, Tick};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Secret, duration};
use crate::error::{Error, Result};
use crate::feed::now_ms;
use crate::metrics::{self, Metrics, MetricsSnapshot};
use crate::sink::MarketSink;

/// The header carrying the shared secret.
pub const SECRET_HEADER: &str = "x-tickwatch-secret";

/// The `[webhook]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where [`run`] listens.
    pub addr: SocketAddr,
    /// The shared secret; required unless `addr` is a loopback address. Never logged.
    pub secret: Option<Secret>,
    /// The venue of TradingView alerts that name no exchange.
    pub tradingview_venue: String,
    pub max_body_bytes: usize,
    /// Most ticks in one `/ingest/ticks` request.
    pub max_ticks: usize,
    /// How long a request waits for the broker's confirm before answering 503.
    #[serde(with = "duration")]
    pub publish_timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8090)),
            secret: None,
            tradingview_venue: "tradingview".into(),
            max_body_bytes: 1 << 20,
            max_ticks: 10_000,
            publish_timeout: Duration::from_secs(10),
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<()> {
        match &self.secret {
            None if !self.addr.ip().is_loopback() => {
                return Err(Error::config(
                    "webhook.secret",
                    format!(
                        "is required when listening on {}, which is not a loopback address",
                        self.addr
                    ),
                ));
            }
            Some(secret) if secret.expose().len() < 16 => {
                return Err(Error::config(
                    "webhook.secret",
                    "must be at least 16 characters",
                ));
            }
            _ => {}
        }
        config::validate_venue("webhook.tradingview_venue", &self.tradingview_venue)?;
        if self.max_body_bytes < 1024 {
            return Err(Error::config(
                "webhook.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.max_ticks == 0 {
            return Err(Error::config("webhook.max_ticks", "must be at least 1"));
        }
        config::validate_positive("webhook.publish_timeout", self.publish_timeout)
    }
}

struct App {
    config: WebhookConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
}

/// The routes, validated against `config`.
pub fn router(config: WebhookConfig, sink: Arc<dyn MarketSink>) -> Result<Router> {
    router_with_metrics(config, sink, Arc::new(Metrics::default()))
}

/// [`router`], counting into `metrics`.
pub fn router_with_metrics(
    config: WebhookConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
) -> Result<Router> {
    config.validate()?;
    if config.secret.is_none() {
        tracing::warn!(addr = %config.addr, "webhook has no secret: anyone who reaches it can publish");
    }
    let limit = config.max_body_bytes;
    let app = Arc::new(App {
        config,
        sink,
        metrics,
    });
    Ok(Router::new()
        .route("/ingest/ticks", post(ingest_ticks))
        .route("/webhook/tradingview", post(tradingview))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app))
}

/// Serves the routes on `addr` until `shutdown`; in-flight requests finish first.
pub async fn serve(
    addr: SocketAddr,
    sink: Arc<dyn MarketSink>,
    config: WebhookConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding the webhook on {addr}"), e))?;
    serve_on(
        listener,
        sink,
        config,
        Arc::new(Metrics::default()),
        shutdown,
    )
    .await
}

/// [`serve`] on a bound listener (port 0 in tests), counting into `metrics`.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    sink: Arc<dyn MarketSink>,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = router_with_metrics(config, sink, metrics)?;
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "webhook listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| Error::io("serving the webhook", e))
}

/// Serves on `config.addr` until `shutdown`; returns the counters.
pub async fn run(
    config: WebhookConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    let metrics = Arc::new(Metrics::default());
    let addr = config.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding the webhook on {addr}"), e))?;
    serve_on(listener, sink, config, metrics.clone(), shutdown).await?;
    Ok(metrics.snapshot())
}

/// An error answer, as RFC 9457 problem details.
struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    field: Option<String>,
    index: Option<usize>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            field: None,
            index: None,
        }
    }

    fn field(field: &str, detail: impl Into<String>) -> Self {
        Problem {
            field: Some(field.to_string()),
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid value", detail)
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        if let Some(index) = self.index {
            body["index"] = json!(index);
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

fn check_secret(
    app: &App,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> std::result::Result<(), Problem> {
    let Some(secret) = &app.config.secret else {
        return Ok(());
    };
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("secret").map(String::as_str));
    match given {
        Some(given) if secret.matches(given) => Ok(()),
        Some(_) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the secret is wrong",
        )),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a secret is required: `?secret=` or the X-Tickwatch-Secret header",
        )),
    }
}

fn parse_json(body: &[u8]) -> std::result::Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Unparsable body",
            format!("the body is not JSON: {e}"),
        )
    })
}

/// A JSON number or string as a decimal; numbers through their shortest decimal spelling.
fn decimal(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> std::result::Result<Option<Decimal>, Problem> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse_decimal(&n.to_string())
            .map(|d| Some(d.normalize()))
            .map_err(|e| Problem::field(field, format!("`{n}`: {e}"))),
        Some(Value::String(s)) => parse_decimal(s.trim())
            .map(Some)
            .map_err(|_| Problem::field(field, format!("`{s}` is not a decimal number"))),
        Some(other) => Err(Problem::field(
            field,
            format!("{other} is not a decimal number"),
        )),
    }
}

fn string<'a>(
    obj: &'a serde_json::Map<String, Value>,
    field: &str,
) -> std::result::Result<Option<&'a str>, Problem> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(Problem::field(field, format!("{other} is not a string"))),
    }
}

fn required<T>(value: Option<T>, field: &str) -> std::result::Result<T, Problem> {
    value.ok_or_else(|| Problem::field(field, "is required"))
}

/// Runs the schema's checks; `names` maps its field names onto the request's.
fn validated(tick: Tick, names: &[(&str, &str)]) -> std::result::Result<Tick, Problem> {
    match tick.validate() {
        Ok(()) => Ok(tick),
        Err(tickwatch_schema::Error::Invalid { field, reason }) => {
            let shown = names
                .iter()
                .find(|(schema, _)| *schema == field)
                .map_or(field, |(_, ours)| ours);
            Err(Problem::field(shown, reason))
        }
        Err(e) => Err(Problem::field("body", e.to_string())),
    }
}

fn wire_tick(value: &Value) -> std::result::Result<Tick, Problem> {
    let Some(obj) = value.as_object() else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Unparsable body",
            "a tick must be a JSON object",
        ));
    };
    let ts = match obj.get("ts") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Problem::field("ts", format!("`{n}` is not whole epoch milliseconds"))
        })?,
        None | Some(Value::Null) => return Err(Problem::field("ts", "is required")),
        Some(other) => {
            return Err(Problem::field(
                "ts",
                format!("{other} is not epoch milliseconds"),
            ));
        }
    };
    let trade_id = match obj.get("trade_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(Problem::field(
                "trade_id",
                format!("{other} is not a string"),
            ));
        }
    };
    let tick = Tick {
        venue: required(string(obj, "venue")?, "venue")?.to_string(),
        symbol: required(string(obj, "symbol")?, "symbol")?.to_string(),
        price: required(decimal(obj, "price")?, "price")?,
        qty: required(decimal(obj, "qty")?, "qty")?,
        ts,
        trade_id,
    };
    validated(tick, &[])
}

fn tradingview_tick(value: &Value, default_venue: &str) -> std::result::Result<Tick, Problem> {
    let Some(obj) = value.as_object() else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Unparsable body",
            "the alert message must be a JSON object",
        ));
    };
    let ticker = required(string(obj, "ticker")?, "ticker")?.trim();
    let (exchange_prefix, symbol) = match ticker.split_once(':') {
        Some((exchange, symbol)) => (Some(exchange), symbol),
        None => (None, ticker),
    };
    let exchange = string(obj, "exchange")?.or(exchange_prefix);
    let venue = exchange.map_or_else(
        || default_venue.to_string(),
        |e| e.trim().to_ascii_lowercase(),
    );
    let price = match decimal(obj, "price")? {
        Some(p) => p,
        None => required(decimal(obj, "close")?, "price")?,
    };
    let time_field = if obj.get("timenow").is_some_and(|v| !v.is_null()) {
        "timenow"
    } else {
        "time"
    };
    let ts = match obj.get(time_field) {
        None | Some(Value::Null) => now_ms(),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Problem::field(time_field, format!("`{n}` is not whole epoch milliseconds"))
        })?,
        Some(Value::String(s)) => parse_ts(s.trim()).map_err(|e| Problem::field(time_field, e))?,
        Some(other) => return Err(Problem::field(time_field, format!("{other} is not a time"))),
    };
    let tick = Tick {
        venue,
        symbol: symbol.trim().to_ascii_uppercase(),
        price,
        qty: decimal(obj, "volume")?.unwrap_or(Decimal::ZERO),
        ts,
        trade_id: None,
    };
    validated(
        tick,
        &[
            ("venue", "exchange"),
            ("symbol", "ticker"),
            ("qty", "volume"),
            ("ts", time_field),
        ],
    )
}

async fn publish(app: &App, ticks: &[Tick]) -> Response {
    match tokio::time::timeout(app.config.publish_timeout, app.sink.publish_ticks(ticks)).await {
        Ok(Ok(())) => {
            metrics::add(&app.metrics.ticks_published, ticks.len() as u64);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "accepted": ticks.len() })),
            )
                .into_response()
        }
        Ok(Err(e)) if e.is_retryable() => {
            tracing::warn!(error = %e, "webhook publish failed: broker unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Broker unavailable",
                "the broker is unavailable; retry later",
            )
            .into_response()
        }
        Ok(Err(e)) => {
            metrics::add(&app.metrics.dropped_rejected, ticks.len() as u64);
            tracing::error!(error = %e, "webhook publish rejected by the broker");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "Rejected by the broker",
                "the broker refused the message",
            )
            .into_response()
        }
        Err(_) => {
            tracing::warn!(timeout = ?app.config.publish_timeout, "webhook publish not confirmed in time");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Broker unavailable",
                "the broker did not confirm in time; retry later",
            )
            .into_response()
        }
    }
}

fn count_problem(app: &App, problem: &Problem) {
    match problem.status {
        StatusCode::BAD_REQUEST => metrics::inc(&app.metrics.malformed),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::PAYLOAD_TOO_LARGE => {
            metrics::inc(&app.metrics.invalid_values)
        }
        _ => {}
    }
}

async fn ingest_ticks(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    metrics::inc(&app.metrics.frames);
    let parsed = check_secret(&app, &query, &headers).and_then(|()| {
        let value = parse_json(&body)?;
        let items = match value {
            Value::Array(items) => items,
            Value::Object(_) => vec![value],
            _ => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Unparsable body",
                    "expected a tick object or an array of ticks",
                ));
            }
        };
        if items.is_empty() {
            return Err(Problem::field("body", "the array holds no ticks"));
        }
        if items.len() > app.config.max_ticks {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too many ticks",
                format!(
                    "{} ticks; at most {} per request",
                    items.len(),
                    app.config.max_ticks
                ),
            ));
        }
        let many = items.len() > 1;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                wire_tick(item).map_err(|mut p| {
                    if many {
                        p.index = Some(i);
                    }
                    p
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    });
    match parsed {
        Ok(ticks) => publish(&app, &ticks).await,
        Err(problem) => {
            count_problem(&app, &problem);
            problem.into_response()
        }
    }
}

async fn tradingview(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    metrics::inc(&app.metrics.frames);
    let parsed = check_secret(&app, &query, &headers)
        .and_then(|()| parse_json(&body))
        .and_then(|value| tradingview_tick(&value, &app.config.tradingview_venue));
    match parsed {
        Ok(tick) => publish(&app, std::slice::from_ref(&tick)).await,
        Err(problem) => {
            count_problem(&app, &problem);
            problem.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tradingview_shapes() {
        let t = tradingview_tick(
            &json!({"ticker":"BINANCE:btcusdt","price":64321.12,"timenow":"2025-11-21T12:00:00Z","volume":"1.5"}),
            "tradingview",
        )
        .map_err(|p| p.detail)
        .expect("valid");
        assert_eq!(
            (t.venue.as_str(), t.symbol.as_str()),
            ("binance", "BTCUSDT")
        );
        assert_eq!(t.price.to_string(), "64321.12");
        assert_eq!(t.qty.to_string(), "1.5");
        assert_eq!(t.ts, 1_763_726_400_000);
        let t = tradingview_tick(
            &json!({"ticker":"005930","exchange":"KRX","close":"71500","time":1763726400000_i64}),
            "tv",
        )
        .map_err(|p| p.detail)
        .expect("valid");
        assert_eq!(
            (t.venue.as_str(), t.qty, t.ts),
            ("krx", Decimal::ZERO, 1_763_726_400_000)
        );
        let p =
            tradingview_tick(&json!({"ticker":"AAPL","price":"abc"}), "tv").expect_err("bad price");
        assert_eq!(
            (p.status, p.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("price"))
        );
        let p =
            tradingview_tick(&json!({"ticker":"AAPL","price":"-1"}), "tv").expect_err("negative");
        assert_eq!(p.field.as_deref(), Some("price"));
        let p =
            tradingview_tick(&json!({"ticker":"AA PL","price":"1"}), "tv").expect_err("bad ticker");
        assert_eq!(p.field.as_deref(), Some("ticker"));
        let p = tradingview_tick(
            &json!({"ticker":"AAPL","price":"1","time":1763726400}),
            "tv",
        )
        .expect_err("seconds");
        assert_eq!(p.field.as_deref(), Some("time"));
        assert!(p.detail.contains("seconds"), "{}", p.detail);
    }

    #[test]
    fn config_needs_a_secret_off_loopback() {
        let open = WebhookConfig {
            addr: "0.0.0.0:8090".parse().expect("addr"),
            ..WebhookConfig::default()
        };
        let err = open.validate().expect_err("no secret").to_string();
        assert!(err.contains("`webhook.secret`"), "{err}");
        let shown = format!(
            "{:?}",
            WebhookConfig {
                secret: Some(Secret::new("correct horse battery staple")),
                ..open
            }
        );
        assert!(!shown.contains("horse") && shown.contains("***"), "{shown}");
    }
}
