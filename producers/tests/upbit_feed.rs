//! The Upbit feed against a fake server sending binary JSON frames in Upbit's DEFAULT and
//! SIMPLE shapes: exact ticks out, candles from the builder.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Step, fake_ws};
use rust_decimal::Decimal;
use tickwatch_producers::candles::CandleConfig;
use tickwatch_producers::config::{BackoffConfig, ConnectionConfig};
use tickwatch_producers::upbit::{self, UpbitConfig};
use tickwatch_producers::{MemorySink, Published};
use tickwatch_schema::wire::{Candle, Interval, Tick};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_677_628_800_000; // 2023-03-01T00:00:00Z

fn trade_default(sid: u64, ts: i64, price: &str, volume: &str, stream_type: &str) -> Step {
    Step::Binary(
        format!(
            r#"{{"type":"trade","code":"KRW-BTC","timestamp":{tms},"trade_date":"2023-03-01","trade_time":"00:00:01","trade_timestamp":{ts},"trade_price":{price},"trade_volume":{volume},"ask_bid":"BID","prev_closing_price":31100000.0,"change":"RISE","change_price":100000.0,"sequential_id":{sid},"best_ask_price":31210000.0,"best_ask_size":0.2,"best_bid_price":31200000.0,"best_bid_size":0.3,"stream_type":"{stream_type}"}}"#,
            tms = ts + 34
        )
        .into_bytes(),
    )
}

fn trade_simple(sid: u64, ts: i64, price: &str, volume: &str) -> Step {
    Step::Binary(
        format!(
            r#"{{"ty":"trade","cd":"KRW-BTC","tms":{tms},"td":"2023-03-01","ttm":"00:00:30","ttms":{ts},"tp":{price},"tv":{volume},"ab":"ASK","pcp":31100000.0,"c":"RISE","cp":110000.0,"sid":{sid},"st":"REALTIME"}}"#,
            tms = ts + 12
        )
        .into_bytes(),
    )
}

fn ticker(ts: i64, price: &str, volume: &str) -> Step {
    Step::Binary(
        format!(
            r#"{{"type":"ticker","code":"KRW-BTC","opening_price":31100000.0,"high_price":31250000.0,"low_price":31050000.0,"trade_price":{price},"prev_closing_price":31100000.0,"change":"RISE","change_price":110000.0,"signed_change_price":110000.0,"change_rate":0.0035369775,"signed_change_rate":0.0035369775,"trade_volume":{volume},"acc_trade_volume":1234.5,"acc_trade_volume_24h":3456.7,"acc_trade_price":38456789012.3,"acc_trade_price_24h":107654321098.7,"trade_date":"20230301","trade_time":"000030","trade_timestamp":{ts},"ask_bid":"ASK","acc_ask_volume":600.1,"acc_bid_volume":634.4,"highest_52_week_price":57678000.0,"highest_52_week_date":"2022-03-28","lowest_52_week_price":20700000.0,"lowest_52_week_date":"2022-12-30","market_state":"ACTIVE","is_trading_suspended":false,"delisting_date":null,"market_warning":"NONE","timestamp":{tms},"stream_type":"REALTIME"}}"#,
            tms = ts + 80
        )
        .into_bytes(),
    )
}

fn config(ws: &str) -> UpbitConfig {
    UpbitConfig {
        ws_url: format!("{ws}/websocket/v1"),
        candles: CandleConfig {
            intervals: vec![Interval::M1],
            close_grace: Duration::ZERO,
            emit_first_bucket: true,
            session_close: None,
        },
        connection: ConnectionConfig {
            connect_timeout: Duration::from_secs(2),
            reconnect: BackoffConfig {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                ..BackoffConfig::default()
            },
            ..ConnectionConfig::default()
        },
        // Reconnect backfill has a test of its own, against a fake REST server.
        backfill: false,
        ..UpbitConfig::default()
    }
}

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

fn tick(price: &str, qty: &str, ts: i64, id: Option<&str>) -> Tick {
    Tick {
        venue: "upbit".into(),
        symbol: "KRW-BTC".into(),
        price: d(price),
        qty: d(qty),
        ts,
        trade_id: id.map(str::to_string),
    }
}

#[tokio::test]
async fn trades_in_both_shapes_garbage_reconnect_snapshot_and_candles() {
    let ws = fake_ws(vec![
        vec![
            Step::AwaitReceived(1),
            trade_default(1, T0 + 1000, "31200000.0", "0.0123", "REALTIME"),
            trade_simple(2, T0 + 30_000, "31210000.0", "0.5"),
            ticker(T0 + 30_000, "31210000.0", "0.5"),
            Step::Binary(b"\x00\x01garbage".to_vec()),
            Step::Binary(br#"{"type":"orderbook","code":"KRW-BTC","orderbook_units":[]}"#.to_vec()),
            trade_default(3, T0 + 31_000, r#""abc""#, "0.1", "REALTIME"),
            Step::Text(r#"{"status":"UP"}"#.into()),
            Step::Binary(br#"{"error":{"name":"INVALID_PARAM","message":"bad"}}"#.to_vec()),
            Step::Sleep(100),
            Step::Drop,
        ],
        vec![
            Step::AwaitReceived(1),
            // Upbit's snapshot of the last trade after subscribing: already published.
            trade_default(2, T0 + 30_000, "31210000.0", "0.5", "SNAPSHOT"),
            trade_default(4, T0 + 65_000, "31180000.0", "0.1", "REALTIME"),
            Step::Hold,
        ],
    ])
    .await;
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(upbit::run(config(&ws.base), sink.clone(), shutdown.clone()));
    // The second candle is closed by the timer (within about a second).
    assert!(
        sink.wait_for(3, 2, Duration::from_secs(10)).await,
        "{:?}",
        sink.published()
    );
    shutdown.cancel();
    let m = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");

    let candle = |open_ts, o: &str, h: &str, l: &str, c: &str, v: &str, n| Candle {
        venue: "upbit".into(),
        symbol: "KRW-BTC".into(),
        interval: Interval::M1,
        open_ts,
        open: d(o),
        high: d(h),
        low: d(l),
        close: d(c),
        volume: d(v),
        trades: Some(n),
        closed: true,
    };
    assert_eq!(
        sink.published(),
        [
            Published::Tick(tick("31200000", "0.0123", T0 + 1000, Some("1"))),
            Published::Tick(tick("31210000", "0.5", T0 + 30_000, Some("2"))),
            // The minute's candle comes before the tick that closed it.
            Published::Candle(candle(
                T0, "31200000", "31210000", "31200000", "31210000", "0.5123", 2
            )),
            Published::Tick(tick("31180000", "0.1", T0 + 65_000, Some("4"))),
            Published::Candle(candle(
                T0 + 60_000,
                "31180000",
                "31180000",
                "31180000",
                "31180000",
                "0.1",
                1
            )),
        ]
    );

    let seen = ws.seen();
    assert_eq!(seen[0].path, "/websocket/v1");
    let Some(Message::Text(sub)) = seen[0].received.first() else {
        panic!("no subscription: {:?}", seen[0].received);
    };
    let sub: serde_json::Value = serde_json::from_str(sub.as_str()).expect("subscription is JSON");
    assert!(
        sub[0]["ticket"]
            .as_str()
            .is_some_and(|t| t.starts_with("tickwatch-"))
    );
    assert_eq!(
        sub[1],
        serde_json::json!({"type":"trade","codes":["KRW-BTC"]})
    );
    assert_eq!(
        sub[2],
        serde_json::json!({"type":"ticker","codes":["KRW-BTC"]})
    );
    assert_eq!(sub[3], serde_json::json!({"format":"DEFAULT"}));
    assert_eq!(sub.as_array().map(Vec::len), Some(4));
    // A fresh ticket for each connection, the same request otherwise.
    assert!(matches!(seen[1].received.first(), Some(Message::Text(_))));

    assert_eq!(m.malformed, 1, "{m:?}");
    assert_eq!(m.unknown_events, 2, "{m:?}");
    assert_eq!(m.invalid_values, 1, "{m:?}");
    assert_eq!(m.duplicates, 1, "{m:?}");
    assert_eq!(m.reconnects, 1, "{m:?}");
    assert_eq!((m.ticks_published, m.candles_published), (3, 2), "{m:?}");
}

#[tokio::test]
async fn ticker_ticks_when_trades_are_off() {
    let ws = fake_ws(vec![vec![
        Step::AwaitReceived(1),
        ticker(T0 + 1000, "31200000.0", "0.01"),
        ticker(T0 + 1000, "31200000.0", "0.01"), // repeated: same trade time
        ticker(T0 + 2000, "31201000.0", "0.02"),
        Step::Hold,
    ]])
    .await;
    let mut cfg = config(&ws.base);
    cfg.trades = false;
    cfg.ticker_ticks = true;
    cfg.candles.intervals.clear();
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(upbit::run(cfg, sink.clone(), shutdown.clone()));
    assert!(sink.wait_for(2, 0, Duration::from_secs(5)).await);
    shutdown.cancel();
    let m = task.await.expect("no panic").expect("ran");
    assert_eq!(
        sink.ticks(),
        [
            tick("31200000", "0.01", T0 + 1000, None),
            tick("31201000", "0.02", T0 + 2000, None)
        ]
    );
    assert_eq!(m.duplicates, 1);
    let Some(Message::Text(sub)) = ws.seen()[0].received.first().cloned() else {
        panic!("no subscription");
    };
    assert!(
        !sub.as_str().contains(r#""type":"trade""#),
        "{}",
        sub.as_str()
    );
}

/// The connection scenarios Binance's feed is tested on, for Upbit: a server ping is
/// answered, a server-initiated close and a silent (half-open) connection are both
/// replaced, and no trade is lost or repeated across them.
#[tokio::test]
async fn pings_answered_closes_and_silent_connections_replaced() {
    let ws = fake_ws(vec![
        vec![
            Step::AwaitReceived(1),
            trade_default(1, T0 + 1000, "31200000.0", "0.1", "REALTIME"),
            Step::Ping(b"hb-1".to_vec()),
            trade_default(2, T0 + 2000, "31201000.0", "0.1", "REALTIME"),
            Step::Sleep(100),
            Step::Close(1001, "going away"),
        ],
        vec![
            Step::AwaitReceived(1),
            trade_default(3, T0 + 3000, "31202000.0", "0.1", "REALTIME"),
            // Then neither data nor pongs: a half-open connection.
            Step::Stall(10_000),
        ],
        vec![
            Step::AwaitReceived(1),
            trade_default(3, T0 + 3000, "31202000.0", "0.1", "SNAPSHOT"),
            trade_default(4, T0 + 4000, "31203000.0", "0.1", "REALTIME"),
            Step::Hold,
        ],
    ])
    .await;
    let mut cfg = config(&ws.base);
    cfg.connection.ping_interval = Duration::from_millis(100);
    cfg.connection.idle_timeout = Duration::from_millis(400);
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(upbit::run(cfg, sink.clone(), shutdown.clone()));
    let mut all = false;
    for _ in 0..100 {
        if sink.ticks().len() >= 4 {
            all = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(all, "{:?}", sink.published());
    shutdown.cancel();
    let m = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");
    let ids: Vec<String> = sink
        .ticks()
        .into_iter()
        .filter_map(|t| t.trade_id)
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4"], "each trade once, in order");
    assert!(
        ws.seen()[0]
            .received
            .iter()
            .any(|m| *m == Message::Pong(b"hb-1".to_vec().into())),
        "the server's ping was answered"
    );
    assert_eq!(m.reconnects, 2, "{m:?}");
    assert_eq!(m.duplicates, 1, "the snapshot repeat: {m:?}");
}

/// `GET /v1/candles/minutes/1`: the given candles opening before `to` (exclusive), newest
/// first, at most `count`, prices as JSON numbers — Upbit leaves out minutes without trades.
async fn fake_minutes(candles: Vec<Candle>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::{Query, State};
    use std::collections::HashMap;
    type Calls = Arc<std::sync::Mutex<Vec<String>>>;
    async fn minutes(
        State((candles, calls)): State<(Arc<Vec<Candle>>, Calls)>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::Json<Vec<serde_json::Value>> {
        let to = q
            .get("to")
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MAX);
        let count: usize = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
        calls.lock().expect("lock").push(format!(
            "{} {count}",
            q.get("to").cloned().unwrap_or_default()
        ));
        let number = |d: &Decimal| -> serde_json::Value {
            serde_json::from_str(&d.to_string()).expect("number")
        };
        axum::Json(
            candles
                .iter()
                .rev()
                .filter(|c| c.open_ts < to)
                .take(count)
                .map(|c| {
                    let utc = chrono::DateTime::from_timestamp_millis(c.open_ts).expect("ts");
                    serde_json::json!({
                        "market": "KRW-BTC",
                        "candle_date_time_utc": utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
                        "candle_date_time_kst": (utc + chrono::Duration::hours(9)).format("%Y-%m-%dT%H:%M:%S").to_string(),
                        "opening_price": number(&c.open), "high_price": number(&c.high),
                        "low_price": number(&c.low), "trade_price": number(&c.close),
                        "timestamp": c.open_ts + 59_000, "candle_acc_trade_price": 1.0,
                        "candle_acc_trade_volume": number(&c.volume), "unit": 1
                    })
                })
                .collect(),
        )
    }
    let calls: Calls = Arc::default();
    let app = axum::Router::new()
        .route("/v1/candles/minutes/1", axum::routing::get(minutes))
        .with_state((Arc::new(candles), calls.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

#[tokio::test]
async fn after_a_reconnect_the_cut_buckets_come_from_upbits_rest_candles() {
    // Minutes ahead of the clock, so only trades close buckets (not the timer).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let base = (now / 60_000 + 10) * 60_000;
    let rest_candle = |minute: i64, o: &str, h: &str, l: &str, c: &str, v: &str| Candle {
        venue: "upbit".into(),
        symbol: "KRW-BTC".into(),
        interval: Interval::M1,
        open_ts: base + minute * 60_000,
        open: d(o),
        high: d(h),
        low: d(l),
        close: d(c),
        volume: d(v),
        trades: None,
        closed: true,
    };
    // Upbit's own minutes: the first holds a trade the feed missed (at 0:50), the second
    // happened wholly during the disconnect, the third (2) had no trades, the fourth holds
    // a missed trade (3:02) before the first one the feed sees again.
    let upbit_minutes = vec![
        rest_candle(0, "100", "102", "99", "102", "3"),
        rest_candle(1, "102", "103", "101", "101", "2"),
        rest_candle(3, "103", "104", "103", "104", "2"),
    ];
    let (rest_url, calls) = fake_minutes(upbit_minutes.clone()).await;
    let ws = fake_ws(vec![
        vec![
            Step::AwaitReceived(1),
            trade_default(1, base + 5_000, "100.0", "1.0", "REALTIME"),
            trade_default(2, base + 30_000, "101.0", "1.0", "REALTIME"),
            Step::Sleep(100),
            Step::Drop,
        ],
        vec![
            Step::AwaitReceived(1),
            trade_default(5, base + 190_000, "104.0", "1.0", "REALTIME"),
            trade_default(6, base + 241_000, "105.0", "1.0", "REALTIME"),
            Step::Hold,
        ],
    ])
    .await;
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let feed_config = UpbitConfig {
        rest_url,
        backfill: true,
        candles: CandleConfig {
            emit_first_bucket: true,
            ..config(&ws.base).candles
        },
        ..config(&ws.base)
    };
    let task = tokio::spawn(upbit::run(feed_config, sink.clone(), shutdown.clone()));
    assert!(
        sink.wait_for(4, 3, Duration::from_secs(10)).await,
        "{:?}",
        sink.published()
    );
    shutdown.cancel();
    let metrics = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");
    let candles: Vec<Candle> = sink
        .published()
        .into_iter()
        .filter_map(|p| match p {
            Published::Candle(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(
        candles, upbit_minutes,
        "the cut minutes as Upbit has them, none of the feed's partial ones"
    );
    assert_eq!(metrics.backfilled_candles, 3);
    assert_eq!(metrics.backfill_failures, 0);
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].ends_with(" 1") && calls[1].ends_with(" 3"),
        "{calls:?}"
    );
}
