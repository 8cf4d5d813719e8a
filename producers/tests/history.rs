//! History loads against fakes of Binance's klines and Upbit's candles REST endpoints,
//! serving a real history file (`BTCUSDT_1d.csv`) in each venue's wire format: the last N
//! closed bars come back exactly, across pages, without the forming bar.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tickwatch_producers::binance::BinanceConfig;
use tickwatch_producers::history::{HistoryClient, HistoryConfig, HistoryVenue, read_file};
use tickwatch_producers::kis::KisConfig;
use tickwatch_producers::upbit::UpbitConfig;
use tickwatch_schema::wire::{Candle, Interval};

const DAY: i64 = 86_400_000;

type Calls = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

#[derive(Clone)]
struct Venue {
    days: Arc<Vec<Candle>>,
    calls: Calls,
}

fn btc_days() -> Vec<Candle> {
    let path = tickwatch_schema::history::data_file("BTCUSDT_1d.csv").expect("data");
    read_file(&path, Some("binance"), None, None).expect("read")
}

/// `GET /api/v3/klines`: up to `limit` klines opening in `[startTime, endTime]`, oldest first.
async fn klines(State(v): State<Venue>, Query(q): Query<HashMap<String, String>>) -> Response {
    v.calls
        .lock()
        .expect("lock")
        .push(("klines".into(), q.clone()));
    let num = |k: &str| q.get(k).and_then(|x| x.parse::<i64>().ok());
    let (Some(start), Some(end), Some(limit)) = (num("startTime"), num("endTime"), num("limit"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"code":-1102,"msg":"Mandatory parameter was not sent"}"#,
        )
            .into_response();
    };
    if q.get("interval").map(String::as_str) != Some("1d") {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"code":-1120,"msg":"Invalid interval."}"#,
        )
            .into_response();
    }
    let rows: Vec<serde_json::Value> = v
        .days
        .iter()
        .filter(|c| c.open_ts >= start && c.open_ts <= end)
        .take(limit as usize)
        .map(|c| {
            serde_json::json!([
                c.open_ts,
                c.open.to_string(),
                c.high.to_string(),
                c.low.to_string(),
                c.close.to_string(),
                c.volume.to_string(),
                c.open_ts + DAY - 1,
                "0",
                42,
                "0",
                "0",
                "0"
            ])
        })
        .collect();
    axum::Json(rows).into_response()
}

/// `GET /v1/candles/days`: `count` candles opening before `to` (exclusive), newest first,
/// prices as JSON numbers.
async fn upbit_days(
    State(v): State<Venue>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    v.calls
        .lock()
        .expect("lock")
        .push((kind.clone(), q.clone()));
    if kind != "days" {
        return (
            StatusCode::NOT_FOUND,
            r#"{"error":{"name":404,"message":"Not found"}}"#,
        )
            .into_response();
    }
    let count: usize = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    if count > 200 {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"name":"invalid_parameter","message":"count"}}"#,
        )
            .into_response();
    }
    let to = q
        .get("to")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MAX);
    let market = q.get("market").cloned().unwrap_or_default();
    let number = |d: &rust_decimal::Decimal| -> serde_json::Value {
        serde_json::from_str(&d.to_string()).expect("a decimal is a JSON number")
    };
    let rows: Vec<serde_json::Value> = v
        .days
        .iter()
        .rev()
        .filter(|c| c.open_ts < to)
        .take(count)
        .map(|c| {
            let utc = chrono::DateTime::from_timestamp_millis(c.open_ts).expect("ts");
            serde_json::json!({
                "market": market,
                "candle_date_time_utc": utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "candle_date_time_kst": (utc + chrono::Duration::hours(9)).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "opening_price": number(&c.open), "high_price": number(&c.high),
                "low_price": number(&c.low), "trade_price": number(&c.close),
                "timestamp": c.open_ts + DAY - 1, "candle_acc_trade_price": 1.0,
                "candle_acc_trade_volume": number(&c.volume), "prev_closing_price": 1.0,
                "change_price": 0.0, "change_rate": 0.0
            })
        })
        .collect();
    axum::Json(rows).into_response()
}

async fn fake_venues(days: Vec<Candle>) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let app = Router::new()
        .route("/api/v3/klines", get(klines))
        .route("/v1/candles/{kind}", get(upbit_days))
        .with_state(Venue {
            days: Arc::new(days),
            calls: calls.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

fn client(base: &str) -> HistoryClient {
    let mut config = HistoryConfig::default();
    config.pace.binance = std::time::Duration::ZERO;
    config.pace.upbit = std::time::Duration::ZERO;
    let binance = BinanceConfig {
        rest_url: base.to_string(),
        ..BinanceConfig::default()
    };
    let upbit = UpbitConfig {
        rest_url: base.to_string(),
        ..UpbitConfig::default()
    };
    HistoryClient::new(config, binance, upbit, KisConfig::default()).expect("client")
}

fn same_bars(got: &[Candle], want: &[Candle]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (
                g.open_ts, g.open, g.high, g.low, g.close, g.volume, g.closed
            ),
            (w.open_ts, w.open, w.high, w.low, w.close, w.volume, true)
        );
    }
}

#[tokio::test]
async fn binance_history_is_the_last_closed_klines_across_pages() {
    let days = btc_days();
    let (base, calls) = fake_venues(days.clone()).await;
    let mut client = client(&base);
    // Noon of the file's last day: that day is still forming.
    let now = days.last().expect("days").open_ts + DAY / 2;
    let got = client
        .fetch(HistoryVenue::Binance, "BTCUSDT", Interval::D1, 1500, now)
        .await
        .expect("fetch");
    let closed = &days[..days.len() - 1];
    same_bars(&got, &closed[closed.len() - 1500..]);
    assert!(
        got.iter()
            .all(|c| c.venue == "binance" && c.symbol == "BTCUSDT")
    );
    assert_eq!(calls.lock().expect("lock").len(), 2, "1,000 klines a page");
    assert_eq!(client.invalid_rows, 0);
}

#[tokio::test]
async fn upbit_history_pages_backwards_with_to() {
    let days = btc_days();
    let (base, calls) = fake_venues(days.clone()).await;
    let mut client = client(&base);
    let now = days.last().expect("days").open_ts + DAY / 2;
    let got = client
        .fetch(HistoryVenue::Upbit, "KRW-BTC", Interval::D1, 450, now)
        .await
        .expect("fetch");
    let closed = &days[..days.len() - 1];
    same_bars(&got, &closed[closed.len() - 450..]);
    assert!(
        got.iter()
            .all(|c| c.venue == "upbit" && c.symbol == "KRW-BTC")
    );
    let calls = calls.lock().expect("lock").clone();
    let counts: Vec<&str> = calls.iter().map(|(_, q)| q["count"].as_str()).collect();
    assert_eq!(counts, ["200", "200", "50"]);
    assert!(
        calls[0].1["to"].ends_with('Z'),
        "`to` is UTC: {:?}",
        calls[0].1
    );

    // Upbit has no 2h candles: refused before any request.
    let refused = client
        .fetch(HistoryVenue::Upbit, "KRW-BTC", Interval::H2, 10, now)
        .await
        .expect_err("no 2h");
    assert!(refused.to_string().contains("no 2h"), "{refused}");
}

#[tokio::test]
async fn a_venue_error_is_reported_with_its_text() {
    let (base, _) = fake_venues(btc_days()).await;
    let mut client = client(&base);
    // The fake serves only 1d klines: a 4xx is not retried, and its body is in the error.
    let error = client
        .fetch(
            HistoryVenue::Binance,
            "BTCUSDT",
            Interval::H1,
            10,
            1_700_000_000_000,
        )
        .await
        .expect_err("1h is refused");
    assert!(error.to_string().contains("Invalid interval"), "{error}");
}
