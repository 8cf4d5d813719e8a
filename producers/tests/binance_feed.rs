//! The Binance feed against a fake combined-stream server and a fake REST endpoint:
//! exact frames in, exact ticks and candles out.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Step, fake_ws};
use rust_decimal::Decimal;
use tickwatch_producers::binance::{self, BinanceConfig};
use tickwatch_producers::config::{BackoffConfig, BufferConfig, ConnectionConfig};
use tickwatch_producers::{MemorySink, MetricsSnapshot};
use tickwatch_schema::history::parse_ts;
use tickwatch_schema::wire::{Candle, Interval};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_677_628_800_000; // 2023-03-01T00:00:00Z, the fixture's first bar
const MIN: i64 = 60_000;

fn trade(id: u64, price: &str, qty: &str, ts: i64) -> Step {
    Step::Text(format!(
        r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{e},"s":"BTCUSDT","t":{id},"p":"{price}","q":"{qty}","T":{ts},"m":true,"M":true}}}}"#,
        e = ts + 3
    ))
}

/// A kline event with the fixture bar `row` (0 = 00:00).
fn kline(rows: &[Vec<String>], row: usize, closed: bool) -> Step {
    let r = &rows[row];
    let t = T0 + row as i64 * MIN;
    Step::Text(format!(
        r#"{{"stream":"btcusdt@kline_1m","data":{{"e":"kline","E":{e},"s":"BTCUSDT","k":{{"t":{t},"T":{end},"s":"BTCUSDT","i":"1m","f":100,"L":530,"o":"{o}","c":"{c}","h":"{h}","l":"{l}","v":"{v}","n":431,"x":{closed},"q":"49337.1","V":"1.1","Q":"25456.7","B":"123456"}}}}}}"#,
        e = t + 59_000,
        end = t + MIN - 1,
        o = r[1],
        h = r[2],
        l = r[3],
        c = r[4],
        v = r[5],
    ))
}

fn candle(rows: &[Vec<String>], row: usize, trades: u64) -> Candle {
    let r = &rows[row];
    let d = |s: &str| s.parse::<Decimal>().expect("fixture decimal");
    Candle {
        venue: "binance".into(),
        symbol: "BTCUSDT".into(),
        interval: Interval::M1,
        open_ts: T0 + row as i64 * MIN,
        open: d(&r[1]),
        high: d(&r[2]),
        low: d(&r[3]),
        close: d(&r[4]),
        volume: d(&r[5]),
        trades: Some(trades),
        closed: true,
    }
}

type Calls = Arc<Mutex<Vec<HashMap<String, String>>>>;

#[derive(Clone)]
struct Rest {
    rows: Arc<Vec<Vec<String>>>,
    calls: Calls,
    fail: bool,
}

async fn klines(State(rest): State<Rest>, Query(q): Query<HashMap<String, String>>) -> Response {
    rest.calls.lock().expect("lock").push(q.clone());
    if rest.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"code":-1000,"msg":"boom"}"#,
        )
            .into_response();
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let (start, end) = (num("startTime"), num("endTime"));
    let body: Vec<serde_json::Value> = rest
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let t = parse_ts(&r[0]).expect("fixture ts");
            (t >= start && t <= end).then(|| {
                serde_json::json!([
                    t,
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    t + MIN - 1,
                    "1000.0",
                    100 + i,
                    "0.5",
                    "500.0",
                    "0"
                ])
            })
        })
        .collect();
    axum::Json(body).into_response()
}

async fn fake_rest(rows: Vec<Vec<String>>, fail: bool) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let app = Router::new()
        .route("/api/v3/klines", get(klines))
        .with_state(Rest {
            rows: Arc::new(rows),
            calls: calls.clone(),
            fail,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind rest");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

fn config(ws: &str, rest: &str) -> BinanceConfig {
    let fast = BackoffConfig {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        ..BackoffConfig::default()
    };
    BinanceConfig {
        ws_url: ws.into(),
        rest_url: rest.into(),
        rest_timeout: Duration::from_secs(2),
        rest_attempts: 2,
        connection: ConnectionConfig {
            connect_timeout: Duration::from_secs(2),
            reconnect: fast.clone(),
            ..ConnectionConfig::default()
        },
        buffer: BufferConfig {
            retry: fast,
            ..BufferConfig::default()
        },
        ..BinanceConfig::default()
    }
}

async fn stop(
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<tickwatch_producers::Result<MetricsSnapshot>>,
) -> MetricsSnapshot {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("feed stops on shutdown")
        .expect("task did not panic")
        .expect("feed ran")
}

fn trade_ids(sink: &MemorySink) -> Vec<String> {
    sink.ticks()
        .into_iter()
        .filter_map(|t| t.trade_id)
        .collect()
}

#[tokio::test]
async fn trades_klines_garbage_ping_disconnect_close_and_backfill() {
    let rows = common::rows(&common::fixture("BTCUSDT_1m.csv"));
    let ws = fake_ws(vec![
        vec![
            trade(100, "23140.48", "0.01", T0 + 1000),
            trade(101, "23141.00", "0.02", T0 + 2000),
            Step::Text("this is not json{".into()),
            Step::Text(r#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1677628803000,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}"#.into()),
            trade(102, "abc", "0.01", T0 + 3000),
            kline(&rows, 0, false),
            Step::Ping(b"hb-1".to_vec()),
            kline(&rows, 0, true),
            Step::Binary(vec![0xff, 0x00, 0x13]),
            kline(&rows, 1, false),
            Step::Sleep(100),
            Step::Drop, // mid-stream, no close frame
        ],
        vec![
            trade(101, "23141.00", "0.02", T0 + 2000), // seen before the disconnect
            trade(103, "23150.10", "0.5", T0 + 4 * MIN + 500),
            kline(&rows, 4, false), // 00:01..00:03 were missed: backfill
            kline(&rows, 4, true),
            Step::Sleep(100),
            Step::Close(1001, "going away"),
        ],
        vec![trade(104, "23168.89", "0.25", T0 + 5 * MIN + 100), Step::Hold],
    ])
    .await;
    let (rest, calls) = fake_rest(rows.clone(), false).await;
    let sink = Arc::new(MemorySink::new());
    sink.fail_next(2); // the broker is away at first: the outbox retries, order holds
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(binance::run(
        config(&ws.base, &rest),
        sink.clone(),
        shutdown.clone(),
    ));

    assert!(
        sink.wait_for(4, 5, Duration::from_secs(10)).await,
        "got {:?}",
        sink.published()
    );
    let m = stop(shutdown, task).await;

    assert_eq!(trade_ids(&sink), ["100", "101", "103", "104"]);
    let ticks = sink.ticks();
    assert_eq!(ticks[0].price, "23140.48".parse::<Decimal>().expect("d"));
    assert_eq!(ticks[0].qty, "0.01".parse::<Decimal>().expect("d"));
    assert_eq!(
        (
            ticks[0].ts,
            ticks[0].venue.as_str(),
            ticks[0].symbol.as_str()
        ),
        (T0 + 1000, "binance", "BTCUSDT")
    );
    assert_eq!(
        sink.candles(),
        [
            candle(&rows, 0, 431),
            candle(&rows, 1, 101),
            candle(&rows, 2, 102),
            candle(&rows, 3, 103),
            candle(&rows, 4, 431)
        ]
    );

    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1);
    let q = &calls[0];
    assert_eq!(q.get("symbol").map(String::as_str), Some("BTCUSDT"));
    assert_eq!(q.get("interval").map(String::as_str), Some("1m"));
    assert_eq!(q.get("startTime"), Some(&(T0 + MIN).to_string()));
    assert_eq!(q.get("endTime"), Some(&(T0 + 4 * MIN - 1).to_string()));
    assert_eq!(q.get("limit").map(String::as_str), Some("1000"));

    let seen = ws.seen();
    assert!(seen.len() >= 3);
    assert_eq!(
        seen[0].path,
        "/stream?streams=btcusdt@trade/btcusdt@kline_1m"
    );
    assert!(
        seen[0]
            .received
            .iter()
            .any(|m| *m == Message::Pong(b"hb-1".to_vec().into())),
        "the ping was answered: {:?}",
        seen[0].received
    );

    assert_eq!(m.malformed, 2, "{m:?}");
    assert_eq!(m.unknown_events, 1, "{m:?}");
    assert_eq!(m.invalid_values, 1, "{m:?}");
    assert_eq!(m.duplicates, 1, "{m:?}");
    assert_eq!(m.reconnects, 2, "{m:?}");
    assert_eq!(m.backfilled_candles, 3, "{m:?}");
    assert_eq!(m.backfill_failures, 0, "{m:?}");
    assert_eq!((m.ticks_published, m.candles_published), (4, 5), "{m:?}");
    assert_eq!(m.publish_retries, 2, "{m:?}");
    assert_eq!(
        (m.dropped_overflow, m.dropped_shutdown, m.buffered),
        (0, 0, 0),
        "{m:?}"
    );
}

#[tokio::test]
async fn a_failed_backfill_is_counted_and_the_series_goes_on() {
    let rows = common::rows(&common::fixture("BTCUSDT_1m.csv"));
    let ws = fake_ws(vec![
        vec![kline(&rows, 0, true), Step::Sleep(50), Step::Drop],
        vec![
            kline(&rows, 3, false),
            kline(&rows, 3, true),
            kline(&rows, 4, false),
            Step::Hold,
        ],
    ])
    .await;
    let (rest, calls) = fake_rest(rows.clone(), true).await;
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(binance::run(
        config(&ws.base, &rest),
        sink.clone(),
        shutdown.clone(),
    ));
    assert!(sink.wait_for(0, 2, Duration::from_secs(10)).await);
    // Give a wrong retry of the same gap the time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = stop(shutdown, task).await;
    assert_eq!(
        sink.candles(),
        [candle(&rows, 0, 431), candle(&rows, 3, 431)]
    );
    assert_eq!(m.backfill_failures, 1, "{m:?}");
    assert_eq!(
        calls.lock().expect("lock").len(),
        2,
        "two attempts for one gap"
    );
}

#[tokio::test]
async fn renewal_is_make_before_break_without_loss_or_duplicates() {
    let ws = fake_ws(vec![
        vec![
            trade(1, "100", "1", T0 + 1),
            trade(2, "101", "1", T0 + 2),
            Step::Sleep(400),
            trade(3, "102", "1", T0 + 3), // may come before or after the switch
            Step::Hold,
        ],
        vec![
            trade(2, "101", "1", T0 + 2),
            trade(3, "102", "1", T0 + 3),
            trade(4, "103", "1", T0 + 4),
            Step::Hold,
        ],
    ])
    .await;
    let mut cfg = config(&ws.base, "http://127.0.0.1:9");
    cfg.klines = vec![];
    cfg.connection.renew_after = Duration::from_millis(300);
    cfg.connection.overlap = Duration::from_millis(150);
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(binance::run(cfg, sink.clone(), shutdown.clone()));
    assert!(
        sink.wait_for(4, 0, Duration::from_secs(10)).await,
        "{:?}",
        sink.published()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = stop(shutdown, task).await;
    assert_eq!(trade_ids(&sink), ["1", "2", "3", "4"]);
    assert!(m.reconnects >= 1 && m.duplicates >= 1, "{m:?}");
    // The old connection was closed by the client, with a close frame.
    let seen = ws.seen();
    assert!(
        seen[0]
            .received
            .iter()
            .any(|m| matches!(m, Message::Close(_))),
        "{:?}",
        seen[0].received
    );
}

#[tokio::test]
async fn a_silent_connection_is_replaced() {
    let ws = fake_ws(vec![
        // Sends one trade, then neither data nor pongs: a half-open connection.
        vec![trade(1, "100", "1", T0 + 1), Step::Stall(10_000)],
        vec![trade(2, "101", "1", T0 + 2), Step::Hold],
    ])
    .await;
    let mut cfg = config(&ws.base, "http://127.0.0.1:9");
    cfg.klines = vec![];
    cfg.connection.ping_interval = Duration::from_millis(100);
    cfg.connection.idle_timeout = Duration::from_millis(400);
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let started = std::time::Instant::now();
    let task = tokio::spawn(binance::run(cfg, sink.clone(), shutdown.clone()));
    assert!(
        sink.wait_for(2, 0, Duration::from_secs(5)).await,
        "{:?}",
        sink.published()
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    let m = stop(shutdown, task).await;
    assert_eq!(trade_ids(&sink), ["1", "2"]);
    assert_eq!(m.reconnects, 1, "{m:?}");
}
