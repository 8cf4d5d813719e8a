//! The web dashboard: its sign-in (a one-time link or an API key → a strict session
//! cookie that the API takes like a key), the reads only the page makes (candles,
//! notifications), the stream's candle topic, and the page itself in a real browser
//! (headless Chromium driven by `tests/web/dashboard.mjs`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{COOKIE, SET_COOKIE};
use rust_decimal::Decimal;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use tickwatch_broker::{Broker, Publisher};
use tickwatch_gateway::services::users::{Language, NewUser};
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_schema::db::entity::{notification, signal};
use tickwatch_schema::history::{HistoryReader, data_file};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Candle, Interval, Tick};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::{Backend, Server, broker_config, connect, database, next_json, user_with_key};

/// Samsung Electronics' recorded daily candles (real data, `005930_1d.csv`).
fn samsung_daily() -> Vec<Candle> {
    let file = "005930_1d.csv";
    let path = data_file(file).expect("TICKWATCH_DATA_DIR holds the shared data");
    let text = std::fs::read_to_string(&path).expect("history file");
    HistoryReader::new(text.as_bytes(), file, "krx", "005930", Interval::D1)
        .expect("header")
        .map(|c| c.expect("bar"))
        .collect()
}

/// Stores candles as the recorder role does.
async fn record(services: &Services, candles: &[Candle]) {
    tickwatch_recorder::store::upsert_candles(services.db(), candles)
        .await
        .expect("candles recorded");
}

/// The `tw_session=…` pair of a response's `Set-Cookie`, and the whole header.
fn session_cookie(response: &reqwest::Response) -> (String, String) {
    let header = response
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .expect("text")
        .to_string();
    let pair = header.split(';').next().expect("a pair").to_string();
    (pair, header)
}

async fn with_cookie(server: &Server, method: Method, path: &str, cookie: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, server.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn sign_out(server: &Server, cookie: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(server.url("/v1/session"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("request")
}

async fn sign_in(server: &Server, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/v1/session"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn signing_in_gives_a_strict_session_cookie_on(backend: Backend) {
    let db = database(backend).await;
    let services = Services::new(db.conn.clone(), None);
    let server = Server::start(services.clone(), ApiConfig::default()).await;
    let (user_id, key) = user_with_key(&services, "hana", false).await;

    // Not signed in: the page asks without a 401 (no red line in the browser's console).
    let (status, state) = server.json(Method::GET, "/v1/session", None, None).await;
    assert_eq!(
        (status, &state["signed_in"]),
        (200, &json!(false)),
        "{state}"
    );

    // A one-time link from /web.
    let link = services
        .create_web_link(user_id)
        .await
        .expect("a sign-in link");
    let response = sign_in(&server, json!({ "link": link })).await;
    assert_eq!(response.status().as_u16(), 201);
    let (cookie, header) = session_cookie(&response);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(header.contains(flag), "{header} lacks {flag}");
    }
    assert!(
        !header.contains("Secure"),
        "no Secure flag on plain HTTP: {header}"
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["user"]["name"], "hana", "{body}");

    // The link works once.
    let again = sign_in(&server, json!({ "link": link })).await;
    assert_eq!(again.status().as_u16(), 401);

    // The cookie is a credential like a key.
    let (status, me) = with_cookie(&server, Method::GET, "/v1/me", &cookie).await;
    assert_eq!((status, &me["id"]), (200, &json!(user_id)), "{me}");
    let (status, state) = with_cookie(&server, Method::GET, "/v1/session", &cookie).await;
    assert_eq!(
        (status, &state["signed_in"]),
        (200, &json!(true)),
        "{state}"
    );
    let (status, _) = with_cookie(&server, Method::GET, "/v1/alerts", &cookie).await;
    assert_eq!(status, 200);

    // With the cookie, a change from another origin (a sibling subdomain, another port)
    // is refused; from the page's own origin it is made.
    let host = server.base.trim_start_matches("http://").to_string();
    let alert = json!({"venue": "binance", "symbol": "BTCUSDT", "condition": "crossing_up", "threshold": "65000"});
    for (origin, expected) in [
        ("http://evil.example.org".to_string(), 403),
        (format!("http://{host}"), 201),
    ] {
        let response = reqwest::Client::new()
            .post(server.url("/v1/alerts"))
            .header(COOKIE, &cookie)
            .header("Origin", &origin)
            .json(&alert)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), expected, "from {origin}");
    }

    // Signing out ends the session and clears the cookie.
    let response = sign_out(&server, &cookie).await;
    assert_eq!(response.status().as_u16(), 204);
    let (_, cleared) = session_cookie(&response);
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, _) = with_cookie(&server, Method::GET, "/v1/me", &cookie).await;
    assert_eq!(status, 401);

    // An API key signs in too, for as long as the key lives; a bad one, or both at once,
    // does not.
    let response = sign_in(&server, json!({ "api_key": key })).await;
    assert_eq!(response.status().as_u16(), 201);
    let (from_key, _) = session_cookie(&response);
    let (status, _) = with_cookie(&server, Method::GET, "/v1/me", &from_key).await;
    assert_eq!(status, 200);
    services.revoke_api_keys(user_id).await.expect("revoked");
    let (status, _) = with_cookie(&server, Method::GET, "/v1/me", &from_key).await;
    assert_eq!(status, 401, "the key's session ended with it");
    let key = services.create_api_key(user_id).await.expect("key").key;
    let unknown = format!("tw_{}", "0".repeat(40));
    assert_eq!(
        sign_in(&server, json!({ "api_key": unknown }))
            .await
            .status()
            .as_u16(),
        401
    );
    let both = sign_in(&server, json!({ "api_key": key, "link": link })).await;
    assert_eq!(both.status().as_u16(), 422);
    let junk = sign_in(&server, json!({ "link": "twl_nope" })).await;
    assert_eq!(junk.status().as_u16(), 422);

    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn signing_in_gives_a_strict_session_cookie_sqlite() {
    signing_in_gives_a_strict_session_cookie_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn signing_in_gives_a_strict_session_cookie_postgres() {
    signing_in_gives_a_strict_session_cookie_on(Backend::Postgres).await;
}

#[tokio::test]
async fn signing_out_closes_the_sessions_stream() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let db = database(Backend::Sqlite).await;
    let services = Services::new(db.conn.clone(), None);
    let config = ApiConfig {
        stream: tickwatch_gateway::config::StreamConfig {
            heartbeat_s: 1,
            ..Default::default()
        },
        ..ApiConfig::default()
    };
    let server = Server::start(services.clone(), config).await;
    let (user_id, _) = user_with_key(&services, "sora", false).await;
    let link = services.create_web_link(user_id).await.expect("link");
    let (cookie, _) = session_cookie(&sign_in(&server, json!({ "link": link })).await);
    let host = server.base.trim_start_matches("http://").to_string();
    let open = |origin: String| {
        let mut request = format!("ws://{host}/v1/stream?topics=alerts:mine")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Cookie", cookie.parse().expect("header"));
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        tokio_tungstenite::connect_async(request)
    };
    assert!(
        open("http://evil.example.org".into()).await.is_err(),
        "another origin's page gets no stream"
    );
    let (mut ws, _) = open(format!("http://{host}"))
        .await
        .expect("the page's stream");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let response = sign_out(&server, &cookie).await;
    assert_eq!(response.status().as_u16(), 204);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = futures_util::StreamExt::next(&mut ws).await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = frame {
                return frame.map(|f| f.reason.to_string());
            }
        }
        None
    })
    .await
    .expect("closed within a few heartbeats");
    assert!(
        closed
            .as_deref()
            .is_some_and(|r| r.contains("session ended")),
        "{closed:?}"
    );
    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn the_page_is_served_from_the_binary() {
    let db = database(Backend::Sqlite).await;
    let server = Server::start(Services::new(db.conn.clone(), None), ApiConfig::default()).await;
    for (path, kind, needle) in [
        ("/", "text/html", "lightweight-charts.js"),
        ("/app.js", "text/javascript", "tickwatchPage"),
        ("/app.css", "text/css", ".chart"),
        (
            "/vendor/lightweight-charts.js",
            "text/javascript",
            "Lightweight Charts",
        ),
        (
            "/vendor/LICENSE-lightweight-charts",
            "text/plain",
            "Apache License",
        ),
    ] {
        let response = reqwest::get(server.url(path)).await.expect("request");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        let content_type = headers["content-type"].to_str().expect("text");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("text")
                .contains("script-src 'self'"),
            "{path}"
        );
        let etag = headers["etag"].to_str().expect("text").to_string();
        let body = response.text().await.expect("body");
        assert!(body.contains(needle), "{path} lacks {needle}");
        // Revalidated, not downloaded again.
        let again = reqwest::Client::new()
            .get(server.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    // Anything else is still the API's problem+json 404.
    let (status, body) = server.json(Method::GET, "/nothing.js", None, None).await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn candles_and_notifications_for_the_page() {
    let db = database(Backend::Sqlite).await;
    let services = Services::new(db.conn.clone(), None);
    let server = Server::start(services.clone(), ApiConfig::default()).await;
    let user = services
        .create_user(NewUser {
            name: "min".into(),
            telegram_chat_id: Some(4242),
            ..Default::default()
        })
        .await
        .expect("user");
    let key = services.create_api_key(user.id).await.expect("key").key;
    let daily = samsung_daily();
    record(&services, &daily).await;

    let path = "/v1/candles?venue=krx&symbol=005930&interval=1d&limit=30";
    let (status, page) = server.json(Method::GET, path, Some(&key), None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 30);
    let last = daily.last().expect("bars");
    assert_eq!(items[29]["open_ts"], json!(last.open_ts), "the latest last");
    assert_eq!(items[29]["close"], json!(last.close.to_string()));
    assert!(items[0]["open_ts"].as_i64() < items[29]["open_ts"].as_i64());
    let before = items[0]["open_ts"].as_i64().expect("ts");
    let (_, earlier) = server
        .json(
            Method::GET,
            &format!("{path}&before={before}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        earlier["items"][29]["open_ts"].as_i64(),
        Some(daily[daily.len() - 31].open_ts),
        "the page before"
    );
    let (status, _) = server
        .json(
            Method::GET,
            "/v1/candles?venue=krx&symbol=005930&interval=2d",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 422, "an interval that does not exist");

    for n in 0..3_i64 {
        notification::Entity::insert(notification::ActiveModel {
            id: Set(format!("0193-{n}")),
            dedupe_key: Set(format!("test:{n}")),
            chat_id: Set(if n == 2 { 1 } else { 4242 }),
            kind: Set("alert".into()),
            text: Set(format!("<b>alert {n}</b>")),
            status: Set("sent".into()),
            attempts: Set(1),
            last_error: Set(None),
            created_at: Set(1_000 + n),
            updated_at: Set(1_000 + n),
            sent_at: Set(Some(1_000 + n)),
        })
        .exec(services.db())
        .await
        .expect("notification stored");
    }
    let (status, page) = server
        .json(Method::GET, "/v1/notifications?limit=1", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["text"], "<b>alert 1</b>", "newest first");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, next) = server
        .json(
            Method::GET,
            &format!("/v1/notifications?limit=5&cursor={cursor}"),
            Some(&key),
            None,
        )
        .await;
    let texts: Vec<&str> = next["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["<b>alert 0</b>"], "another chat's are not shown");
    assert_eq!(next["next_cursor"], Value::Null);

    server.stop().await;
    db.close().await.expect("cleanup");
}

/// A tick of 005930 at `price`, now.
fn tick(price: Decimal, n: u64) -> Tick {
    Tick {
        venue: "krx".into(),
        symbol: "005930".into(),
        price,
        qty: Decimal::from(10),
        ts: tickwatch_schema::db::now_ms(),
        trade_id: Some(format!("web-{n}")),
    }
}

#[tokio::test]
async fn the_candle_topic_builds_the_forming_bar_from_ticks() {
    let db = database(Backend::Sqlite).await;
    let broker = Broker::connect(broker_config("web"), "gateway-web-test")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let server = Server::start(services.clone(), ApiConfig::default()).await;
    let (_, key) = user_with_key(&services, "jun", false).await;
    common::wait_component(&broker, ".stream.").await;
    let mut ws = connect(&server, &key, "candles:005930:1d").await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let publisher = Publisher::start(&broker, "test-publisher");
    for (n, price) in [70_000, 71_500, 69_800].into_iter().enumerate() {
        publisher
            .publish(Exchange::Market, &tick(Decimal::from(price), n as u64))
            .await
            .expect("tick published");
    }
    let mut last = Value::Null;
    for _ in 0..3 {
        last = next_json(&mut ws).await;
        assert_eq!(last["type"], "candle", "{last}");
        assert_eq!(last["from_ticks"], true, "{last}");
        assert_eq!(last["topic"], "candles:005930:1d");
    }
    let bar = &last["data"];
    assert_eq!(
        (
            &bar["open"],
            &bar["high"],
            &bar["low"],
            &bar["close"],
            &bar["volume"]
        ),
        (
            &json!("70000"),
            &json!("71500"),
            &json!("69800"),
            &json!("69800"),
            &json!("30")
        ),
        "{bar}"
    );
    let day = tickwatch_schema::calendar::bucket_start(
        tickwatch_schema::db::now_ms(),
        Interval::D1,
        tickwatch_schema::calendar::utc_offset_ms("krx"),
    );
    assert_eq!(bar["open_ts"], json!(day), "a Seoul day");
    assert_eq!(bar["closed"], false);

    // A producer's closed candle passes as it is.
    let closed = Candle {
        venue: "krx".into(),
        symbol: "005930".into(),
        interval: Interval::D1,
        open_ts: day,
        open: Decimal::from(70_100),
        high: Decimal::from(71_500),
        low: Decimal::from(69_000),
        close: Decimal::from(69_900),
        volume: Decimal::from(12_345),
        trades: None,
        closed: true,
    };
    publisher
        .publish(Exchange::Market, &closed)
        .await
        .expect("candle published");
    let message = next_json(&mut ws).await;
    assert_eq!(
        (
            &message["type"],
            &message["from_ticks"],
            &message["data"]["close"]
        ),
        (&json!("candle"), &Value::Null, &json!("69900")),
        "{message}"
    );

    publisher.close().await;
    server.stop().await;
    common::delete_standard_topology(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}

fn tool(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/test.sh (scripts/tools.sh installs Chromium and \
             playwright-core and sets it)"
        )
    })
}

/// Where the browser test leaves its screenshots: `TICKWATCH_ARTIFACTS`, else
/// `target/artifacts` of the workspace.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("TICKWATCH_ARTIFACTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let (playwright, chromium) = (tool("TICKWATCH_PLAYWRIGHT"), tool("TICKWATCH_CHROMIUM"));
    let db = database(Backend::Sqlite).await;
    let broker = Broker::connect(broker_config("webui"), "gateway-webui-test")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let server = Server::start(services.clone(), ApiConfig::default()).await;
    let user = services
        .create_user(NewUser {
            name: "지민".into(),
            telegram_chat_id: Some(777),
            language: Language::Ko,
            ..Default::default()
        })
        .await
        .expect("user");
    let key = services.create_api_key(user.id).await.expect("key").key;
    let daily = samsung_daily();
    record(&services, &daily).await;
    // Three signals on the chart's bars, and one of another interval that is not.
    let n = daily.len();
    for (i, (kind, grade, bar, interval)) in [
        ("macd_bullish_cross", "A", n - 10, "1d"),
        ("rsi_overbought", "B", n - 30, "1d"),
        ("volume_surge", "C", n - 60, "1d"),
        ("rsi_oversold", "B", n - 5, "1h"),
    ]
    .into_iter()
    .enumerate()
    {
        signal::Entity::insert(signal::ActiveModel {
            id: Set(format!("0193-web-{i}")),
            kind: Set(kind.into()),
            venue: Set("krx".into()),
            symbol: Set("005930".into()),
            interval: Set(interval.into()),
            ts: Set(daily[bar].open_ts),
            price: Set(daily[bar].close.to_string()),
            score: Set(80),
            grade: Set(grade.into()),
            details: Set("{}".into()),
            ret_1: Set(Some(0.012)),
            ret_5: Set(Some(-0.02)),
            ret_20: Set(None),
            created_at: Set(daily[bar].open_ts),
        })
        .exec(services.db())
        .await
        .expect("signal stored");
    }
    common::wait_component(&broker, ".stream.").await;
    let link = services.create_web_link(user.id).await.expect("link");
    let shots = artifacts();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web/dashboard.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("TW_LOGIN_URL", server.url(&format!("/#login={link}")))
        .env("TW_SCREENSHOTS", &shots)
        .env("TICKWATCH_PLAYWRIGHT", &playwright)
        .env("TICKWATCH_CHROMIUM", &chromium)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let publisher = Publisher::start(&broker, "test-publisher");
    let tick_price = (daily.last().expect("bars").close * Decimal::new(15, 1)).round();
    let mut ticking: Option<tokio::task::JoinHandle<()>> = None;
    let outcome = loop {
        let line = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .expect("the browser script answers within 3 minutes")
            .expect("its output")
            .expect("a result before it ends");
        let message: Value = serde_json::from_str(&line).expect("JSON from the script");
        if message["need"] == "tick" {
            // Until the page has it: the stream may subscribe a moment after it asks.
            let publisher = publisher.clone();
            ticking = Some(tokio::spawn(async move {
                for n in 0.. {
                    let _ = publisher
                        .publish(Exchange::Market, &tick(tick_price, n))
                        .await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }));
            let reply = format!("{}\n", json!({ "ticked": tick_price.to_string() }));
            stdin
                .write_all(reply.as_bytes())
                .await
                .expect("to the script");
        } else {
            break message;
        }
    };
    if let Some(ticking) = ticking {
        ticking.abort();
    }
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    assert!(
        outcome.get("failed").is_none(),
        "the browser script failed: {}",
        outcome
    );
    let done = &outcome["done"];
    println!("dashboard: {done}");
    assert_eq!(done["problems"], json!([]), "{done}");
    assert_eq!(done["title"], "삼성전자", "found by its Korean name");
    assert_eq!(done["bars"], json!(daily.len().min(500)), "{done}");
    assert_eq!(
        done["markers"], 3,
        "the daily signals, on their bars: {done}"
    );
    assert_eq!(
        done["signalRows"], 4,
        "every interval's in the table: {done}"
    );
    assert_eq!(
        done["barsAfterTick"].as_u64(),
        done["bars"].as_u64().map(|n| n + 1),
        "today's bar from the tick"
    );
    assert_eq!(done["heading"], "My alerts", "English after the switch");

    // The alert made in the page, and moved by dragging its line, is in the API.
    let (status, alert) = server
        .json(
            Method::GET,
            &format!("/v1/alerts/{}", done["alertId"]),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{alert}");
    assert_eq!(
        (&alert["symbol"], &alert["condition"]),
        (&json!("005930"), &json!("crossing_up"))
    );
    let level: f64 = done["level"].as_str().expect("level").parse().expect("n");
    let moved: f64 = alert["threshold"]
        .as_str()
        .expect("threshold")
        .parse()
        .expect("n");
    assert!(
        moved > level,
        "dragged up, from {level} to {moved}: {alert}"
    );
    assert_eq!(
        done["movedTo"].as_str().map(|s| s.parse::<f64>().ok()),
        Some(Some(moved)),
        "the table shows what was saved"
    );
    for shot in ["dashboard.png", "dashboard-phone.png"] {
        let bytes = std::fs::read(shots.join(shot)).expect("a screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot}");
    }

    publisher.close().await;
    server.stop().await;
    common::delete_standard_topology(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}
