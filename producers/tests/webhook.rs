//! The webhook over real HTTP: 202 after the sink confirmed, 400/401/413/422/502/503 with
//! problem+json bodies that name the field and never leak broker errors.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use tickwatch_producers::config::Secret;
use tickwatch_producers::webhook::{self, WebhookConfig};
use tickwatch_producers::{MemorySink, Metrics, SinkError};
use tickwatch_schema::wire::Tick;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "s3cret-s3cret-s3cret";

struct Server {
    base: String,
    sink: Arc<MemorySink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let sink = Arc::new(MemorySink::new());
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let config = WebhookConfig {
            secret: Some(Secret::new(SECRET)),
            max_ticks: 3,
            publish_timeout: Duration::from_millis(500),
            ..WebhookConfig::default()
        };
        tokio::spawn(webhook::serve_on(
            listener,
            sink.clone(),
            config,
            metrics.clone(),
            shutdown.clone(),
        ));
        Server {
            base,
            sink,
            metrics,
            shutdown,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Option<String>, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Tickwatch-Secret", SECRET)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> (u16, Option<String>, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, content_type, json)
}

const TICK: &str = r#"{"venue":"krx","symbol":"005930","price":"71500","qty":"10","ts":1763762400123,"trade_id":"8812"}"#;

fn krx_tick() -> Tick {
    Tick {
        venue: "krx".into(),
        symbol: "005930".into(),
        price: Decimal::from(71_500),
        qty: Decimal::from(10),
        ts: 1_763_762_400_123,
        trade_id: Some("8812".into()),
    }
}

#[tokio::test]
async fn accepted_only_after_the_sink_confirmed() {
    let s = Server::start().await;
    let (status, _, body) = s.post("/ingest/ticks", TICK).await;
    assert_eq!((status, body), (202, serde_json::json!({"accepted": 1})));
    assert_eq!(s.sink.ticks(), [krx_tick()]);

    let many = format!(
        r#"[{TICK},{{"venue":"krx","symbol":"000660","price":120500,"qty":3,"ts":1763762400999}}]"#
    );
    let (status, _, body) = s.post("/ingest/ticks", &many).await;
    assert_eq!((status, body), (202, serde_json::json!({"accepted": 2})));
    let last = s.sink.ticks().pop().expect("tick");
    assert_eq!(
        (last.symbol.as_str(), last.price, last.trade_id),
        ("000660", Decimal::from(120_500), None)
    );

    // TradingView: JSON sent as text/plain, secret in the URL.
    let response = s
        .client
        .post(format!("{}/webhook/tradingview?secret={SECRET}", s.base))
        .header("content-type", "text/plain; charset=utf-8")
        .body(r#"{"ticker":"BINANCE:BTCUSDT","close":"64321.12","time":"2025-11-21T12:00:00Z"}"#)
        .send()
        .await
        .expect("request");
    let (status, _, _) = read(response).await;
    assert_eq!(status, 202);
    let tv = s.sink.ticks().pop().expect("tick");
    assert_eq!(
        (tv.venue.as_str(), tv.symbol.as_str(), tv.ts),
        ("binance", "BTCUSDT", 1_763_726_400_000)
    );
    assert_eq!(tv.price.to_string(), "64321.12");
    assert_eq!(s.metrics.snapshot().ticks_published, 4);
    s.shutdown.cancel();
}

#[tokio::test]
async fn unparsable_bodies_are_400() {
    let s = Server::start().await;
    for body in ["{not json", r#""a string""#, "[1, 2]"] {
        let (status, content_type, problem) = s.post("/ingest/ticks", body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(problem["status"], 400);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (status, _, _) = s.post("/webhook/tradingview", "price: 1").await;
    assert_eq!(status, 400);
    assert!(s.sink.is_empty());
}

#[tokio::test]
async fn invalid_values_are_422_naming_the_field() {
    let s = Server::start().await;
    let cases = [
        (
            r#"{"venue":"krx","symbol":"005930","price":"abc","qty":"1","ts":1763762400123}"#,
            "price",
        ),
        (
            r#"{"venue":"krx","symbol":"005930","price":"0","qty":"1","ts":1763762400123}"#,
            "price",
        ),
        (
            r#"{"venue":"krx","symbol":"005930","price":"1","ts":1763762400123}"#,
            "qty",
        ),
        (
            r#"{"venue":"krx","symbol":"samsung","price":"1","qty":"1","ts":1763762400123}"#,
            "symbol",
        ),
        (
            r#"{"venue":"krx","symbol":"005930","price":"1","qty":"1","ts":1763762400}"#,
            "ts",
        ),
        (
            r#"{"venue":"KRX","symbol":"005930","price":"1","qty":"1","ts":1763762400123}"#,
            "venue",
        ),
    ];
    for (body, field) in cases {
        let (status, content_type, problem) = s.post("/ingest/ticks", body).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // In an array, the index of the bad tick; nothing of the array is published.
    let body = format!(
        r#"[{TICK}, {{"venue":"krx","symbol":"005930","price":"x","qty":"1","ts":1763762400123}}]"#
    );
    let (status, _, problem) = s.post("/ingest/ticks", &body).await;
    assert_eq!(
        (status, &problem["field"], &problem["index"]),
        (422, &serde_json::json!("price"), &serde_json::json!(1))
    );
    let (status, _, problem) = s.post("/webhook/tradingview", r#"{"ticker":"AAPL"}"#).await;
    assert_eq!(
        (status, &problem["field"]),
        (422, &serde_json::json!("price"))
    );
    let (status, _, _) = s.post("/ingest/ticks", "[]").await;
    assert_eq!(status, 422);
    let four = format!("[{TICK},{TICK},{TICK},{TICK}]");
    let (status, _, _) = s.post("/ingest/ticks", &four).await;
    assert_eq!(status, 413);
    assert!(s.sink.is_empty());
    assert!(s.metrics.snapshot().invalid_values >= 8);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_401() {
    let s = Server::start().await;
    let post = |url: String, header: Option<&'static str>| {
        let mut request = s.client.post(url).body(TICK);
        if let Some(h) = header {
            request = request.header("X-Tickwatch-Secret", h);
        }
        request.send()
    };
    let (status, content_type, problem) = read(
        post(format!("{}/ingest/ticks", s.base), None)
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, content_type.as_deref()),
        (401, Some("application/problem+json"))
    );
    assert!(!problem.to_string().contains(SECRET));
    let (status, _, _) = read(
        post(format!("{}/ingest/ticks", s.base), Some("guess"))
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = read(
        post(format!("{}/webhook/tradingview?secret=guess", s.base), None)
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    // The secret is checked before the body is looked at.
    let (status, _, _) = read(
        s.client
            .post(format!("{}/ingest/ticks", s.base))
            .body("{garbage")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = read(
        post(format!("{}/ingest/ticks?secret={SECRET}", s.base), None)
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn broker_trouble_is_503_or_502_without_its_text() {
    let s = Server::start().await;
    s.sink.set_failure(Some(SinkError::Unavailable(
        "amqp channel 7 closed: internal detail xyzzy".into(),
    )));
    let response = s
        .client
        .post(format!("{}/ingest/ticks", s.base))
        .header("X-Tickwatch-Secret", SECRET)
        .body(TICK)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let (status, content_type, problem) = read(response).await;
    assert_eq!(
        (status, content_type.as_deref()),
        (503, Some("application/problem+json"))
    );
    assert!(!problem.to_string().contains("xyzzy"), "{problem}");

    s.sink.set_failure(Some(SinkError::Rejected(
        "frame too large: internal detail xyzzy".into(),
    )));
    let (status, _, problem) = s
        .post("/webhook/tradingview", r#"{"ticker":"AAPL","price":1}"#)
        .await;
    assert_eq!(status, 502);
    assert!(!problem.to_string().contains("xyzzy"), "{problem}");

    // A broker that does not confirm in time.
    s.sink.set_failure(None);
    s.sink.set_delay(Some(Duration::from_secs(2)));
    let (status, _, _) = s.post("/ingest/ticks", TICK).await;
    assert_eq!(status, 503);
    s.shutdown.cancel();
}
