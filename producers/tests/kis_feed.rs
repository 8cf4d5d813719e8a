//! The KIS feed against a fake KIS: its approval-key endpoint (`POST /oauth2/Approval`) and
//! its WebSocket speaking KIS's frames — `0|H0STCNT0|<count>|f0^f1^…` data with several
//! records per frame, JSON subscribe replies and errors, PINGPONG, an encrypted frame, a
//! disconnect and a refused approval key.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::{Step, eventually, fake_ws};
use rust_decimal::Decimal;
use tickwatch_producers::candles::CandleConfig;
use tickwatch_producers::config::{BackoffConfig, ConnectionConfig, Secret};
use tickwatch_producers::kis::{self, KisConfig, TRADE_FIELDS};
use tickwatch_producers::{MemorySink, Published};
use tickwatch_schema::wire::{Interval, Tick};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The fake approval endpoint: answers each request with the next key, or refuses all.
#[derive(Clone, Default)]
struct Approvals {
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
    refuse: bool,
}

async fn approval(
    State(approvals): State<Approvals>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    let n = {
        let mut requests = approvals.requests.lock().expect("lock");
        requests.push(body);
        requests.len()
    };
    if approvals.refuse {
        // What KIS answers for an unknown app key.
        return (
            StatusCode::FORBIDDEN,
            Json(
                serde_json::json!({"error_description":"유효하지 않은 AppKey입니다.","error_code":"EGW00103"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "approval_key": format!("AK-{n}") })),
    )
}

async fn fake_approvals(approvals: Approvals) -> String {
    let app = axum::Router::new()
        .route("/oauth2/Approval", axum::routing::post(approval))
        .with_state(approvals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// One H0STCNT0 record (46 fields) on 4 March 2026, KST.
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

fn frame(records: &[String]) -> Step {
    Step::Text(format!(
        "0|H0STCNT0|{:03}|{}",
        records.len(),
        records.join("^")
    ))
}

fn reply(symbol: &str, rt_cd: &str, msg_cd: &str, msg1: &str) -> Step {
    Step::Text(format!(
        r#"{{"header":{{"tr_id":"H0STCNT0","tr_key":"{symbol}","encrypt":"N"}},"body":{{"rt_cd":"{rt_cd}","msg_cd":"{msg_cd}","msg1":"{msg1}","output":{{"iv":"0123456789abcdef","key":"0123456789abcdef0123456789abcdef"}}}}}}"#
    ))
}

const PINGPONG: &str = r#"{"header":{"tr_id":"PINGPONG","datetime":"20260304093001"}}"#;

fn config(rest: &str, ws: &str) -> KisConfig {
    KisConfig {
        rest_url: rest.into(),
        ws_url: format!("{ws}/tryitout"),
        app_key: Some(Secret::new("PSappkey")),
        app_secret: Some(Secret::new("appsecret")),
        symbols: vec!["005930".into(), "000660".into()],
        subscribe_pause: Duration::ZERO,
        candles: CandleConfig {
            intervals: vec![Interval::D1],
            close_grace: Duration::ZERO,
            emit_first_bucket: true,
            ..KisConfig::default().candles
        },
        connection: ConnectionConfig {
            connect_timeout: Duration::from_secs(2),
            reconnect: BackoffConfig {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                ..BackoffConfig::default()
            },
            ..KisConfig::default().connection
        },
        ..KisConfig::default()
    }
}

/// 4 March 2026, `hhmmss` KST, as epoch ms.
fn kst(hhmmss: &str) -> i64 {
    let (h, rest) = hhmmss.split_at(2);
    let (m, s) = rest.split_at(2);
    let secs = |x: &str| x.parse::<i64>().expect("digits");
    // 2026-03-04T00:00:00+09:00
    1_772_550_000_000 + ((secs(h) * 60 + secs(m)) * 60 + secs(s)) * 1000
}

fn tick(symbol: &str, hhmmss: &str, price: i64, qty: i64, accumulated: u64) -> Tick {
    Tick {
        venue: "krx".into(),
        symbol: symbol.into(),
        price: Decimal::new(price, 0),
        qty: Decimal::new(qty, 0),
        ts: kst(hhmmss),
        trade_id: Some(format!("20260304-{accumulated}")),
    }
}

fn sent_texts(received: &[Message]) -> Vec<String> {
    received
        .iter()
        .filter_map(|m| match m {
            Message::Text(t) => Some(t.as_str().to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn trades_pingpong_errors_a_disconnect_and_a_refused_key() {
    let approvals = Approvals::default();
    let rest = fake_approvals(approvals.clone()).await;
    let ws = fake_ws(vec![
        vec![
            Step::AwaitReceived(2),
            reply("005930", "0", "OPSP0000", "SUBSCRIBE SUCCESS"),
            reply(
                "000660",
                "1",
                "OPSP8992",
                "SUBSCRIBE ERROR : invalid tr_key",
            ),
            // The day's trades in one frame, two symbols; the last one is the closing
            // auction's, stamped after 15:30 (its random end).
            frame(&[
                record("005930", "093000", "71500", "10", "1000"),
                record("000660", "093000", "180000", "2", "500"),
                record("005930", "093001", "71600", "3", "1003"),
                record("005930", "152959", "72000", "5", "2000"),
                record("005930", "153012", "72300", "4", "2004"),
            ]),
            Step::Text(PINGPONG.into()),
            Step::Text("1|H0STCNT0|001|U2FsdGVkX1+encrypted".into()),
            Step::Text("0|H0STCNT0|002|005930^093002".into()),
            Step::Text("garbage".into()),
            Step::AwaitReceived(3),
            Step::Drop,
        ],
        vec![
            Step::AwaitReceived(2),
            reply("005930", "1", "OPSP0002", "ALREADY IN SUBSCRIBE"),
            // The last trade again (resent after the reconnect).
            frame(&[record("005930", "153012", "72300", "4", "2004")]),
            reply("005930", "1", "OPSP0011", "invalid approval : NOT FOUND"),
            Step::Hold,
        ],
        vec![
            Step::AwaitReceived(2),
            // After the close: a trade, but not part of the day's candle.
            frame(&[record("005930", "153500", "72100", "7", "2011")]),
            Step::Hold,
        ],
    ])
    .await;
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(kis::run(
        config(&rest, &ws.base),
        sink.clone(),
        shutdown.clone(),
    ));
    // Six distinct trades and the two day candles (closed by the timer: the day is over).
    assert!(
        sink.wait_for(6, 2, Duration::from_secs(15)).await,
        "{:#?}",
        sink.published()
    );
    shutdown.cancel();
    let m = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");

    assert_eq!(
        sink.ticks(),
        [
            tick("005930", "093000", 71500, 10, 1000),
            tick("000660", "093000", 180000, 2, 500),
            tick("005930", "093001", 71600, 3, 1003),
            tick("005930", "152959", 72000, 5, 2000),
            tick("005930", "153012", 72300, 4, 2004),
            tick("005930", "153500", 72100, 7, 2011),
        ]
    );
    let day = sink
        .candles()
        .into_iter()
        .find(|c| c.symbol == "005930")
        .expect("005930's day");
    assert_eq!(day.open_ts, kst("000000"));
    assert_eq!(
        (day.open, day.high, day.low, day.close),
        (
            Decimal::new(71500, 0),
            Decimal::new(72300, 0),
            Decimal::new(71500, 0),
            Decimal::new(72300, 0)
        ),
        "the closing auction's trade is the day's close"
    );
    assert_eq!(
        day.volume,
        Decimal::new(2004, 0),
        "KIS's accumulated volume at the day's last trade before the close (the feed saw only \
         22 of it; the 15:35 trade is after the close)"
    );
    assert!(sink.published().iter().all(|p| match p {
        Published::Candle(c) => c.closed,
        Published::Tick(_) => true,
    }));

    // What the fake KIS saw: one approval request per key, with the documented body.
    let requests = approvals.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2, "a new key only after the refusal");
    assert_eq!(
        requests[0],
        serde_json::json!({"grant_type":"client_credentials","appkey":"PSappkey","secretkey":"appsecret"})
    );
    let seen = ws.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].path, "/tryitout");
    let first = sent_texts(&seen[0].received);
    let subscription: serde_json::Value = serde_json::from_str(&first[0]).expect("json");
    assert_eq!(
        subscription,
        serde_json::json!({
            "header": {"approval_key": "AK-1", "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
            "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}}
        })
    );
    assert!(first[1].contains(r#""tr_key":"000660""#));
    assert_eq!(first[2], PINGPONG, "PINGPONG is echoed as it came");
    // The same key after the disconnect, a new one after the refusal.
    assert!(sent_texts(&seen[1].received)[0].contains(r#""approval_key":"AK-1""#));
    assert!(sent_texts(&seen[2].received)[0].contains(r#""approval_key":"AK-2""#));
    assert!(
        seen.iter()
            .all(|s| s.received.iter().all(|m| !matches!(m, Message::Ping(_)))),
        "no WebSocket pings: KIS has PINGPONG"
    );

    assert_eq!(m.malformed, 2, "the short frame and the garbage: {m:?}");
    // The encrypted frame, the subscribe error, the refused key.
    assert_eq!(m.unknown_events, 3, "{m:?}");
    assert_eq!(m.duplicates, 1, "{m:?}");
    assert_eq!(m.reconnects, 2, "{m:?}");
    assert_eq!((m.ticks_published, m.candles_published), (6, 2), "{m:?}");
}

#[tokio::test]
async fn a_refused_app_key_is_retried_and_no_session_is_opened() {
    let approvals = Approvals {
        refuse: true,
        ..Approvals::default()
    };
    let rest = fake_approvals(approvals.clone()).await;
    let ws = fake_ws(vec![]).await;
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(kis::run(
        config(&rest, &ws.base),
        sink.clone(),
        shutdown.clone(),
    ));
    assert!(
        eventually(10, || approvals.requests.lock().expect("lock").len() >= 3).await,
        "retried with backoff"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");
    assert!(ws.seen().is_empty(), "no WebSocket without a key");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn symbols_beyond_one_session_need_another_app_key() {
    let config = KisConfig {
        app_key: Some(Secret::new("k")),
        app_secret: Some(Secret::new("s")),
        symbols: (0..45).map(|i| format!("{:06}", i + 1)).collect(),
        ..KisConfig::default()
    };
    let err = config.validate().expect_err("45 symbols, one session");
    assert!(err.to_string().contains("kis.extra_accounts"), "{err}");
    let two = KisConfig {
        extra_accounts: vec![kis::KisAccount {
            app_key: Secret::new("k2"),
            app_secret: Secret::new("s2"),
        }],
        ..config
    };
    two.validate().expect("two sessions hold 80");
}

/// A session KIS refuses (another process holds the app key) is retried with a growing
/// delay: the refusal is a frame, but not data, so it does not restart the backoff.
#[tokio::test]
async fn refusals_back_off() {
    let approvals = Approvals::default();
    let rest = fake_approvals(approvals.clone()).await;
    let refused = vec![
        Step::AwaitReceived(1),
        reply("005930", "9", "OPSP8996", "ALREADY IN USE appkey"),
        Step::Hold,
    ];
    let ws = fake_ws(vec![refused; 8]).await;
    let mut config = config(&rest, &ws.base);
    config.symbols = vec!["005930".into()];
    config.connection.reconnect = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        multiplier: 2.0,
        jitter: 0.2,
    };
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let started = std::time::Instant::now();
    let task = tokio::spawn(kis::run(config, sink.clone(), shutdown.clone()));
    assert!(
        eventually(15, || ws.seen().len() >= 5).await,
        "reconnected after each refusal"
    );
    let elapsed = started.elapsed();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");
    // Four waits between five sessions: 100, 200, 400, 400 ms, each at least 80 %.
    assert!(
        elapsed >= Duration::from_millis(880),
        "the delays grew: five sessions in {elapsed:?}"
    );
    assert_eq!(
        approvals.requests.lock().expect("lock").len(),
        1,
        "the key itself was not refused"
    );
}
