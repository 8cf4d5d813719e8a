//! The HTTP API against real databases (SQLite and PostgreSQL) and, where it talks to
//! one, the real RabbitMQ.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait};
use serde_json::{Value, json};
use tickwatch_broker::{Broker, BrokerConfig};
use tickwatch_gateway::config::RateLimitConfig;
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_schema::db::entity::{alert_event, candle, latest_price, setting, signal};
use tickwatch_schema::wire::Control;
use tokio_util::sync::CancellationToken;

use common::{Backend, Server, broker_config, database, listen_to_controls, user_with_key};

const PROBLEM: &str = "application/problem+json";

async fn server_on(db: &tickwatch_tests::db::TestDb) -> Server {
    Server::start(Services::new(db.conn.clone(), None), ApiConfig::default()).await
}

fn rule_body() -> Value {
    json!({"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up",
           "threshold":"65000","trigger":"once","cooldown_s":0,"expires_at":null})
}

// ---------------------------------------------------------------- alerts and authz

async fn alerts_crud_and_ownership(backend: Backend) {
    let db = database(backend).await;
    let server = server_on(&db).await;
    let (_, alice) = user_with_key(&server.services, "alice", false).await;
    let (_, bob) = user_with_key(&server.services, "bob", false).await;

    let (status, created) = server
        .json(Method::POST, "/v1/alerts", Some(&alice), Some(rule_body()))
        .await;
    assert_eq!(status, 201, "{created}");
    let keys: BTreeSet<&str> = created
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "id",
        "venue",
        "symbol",
        "condition",
        "threshold",
        "trigger",
        "cooldown_s",
        "expires_at",
        "active",
        "created_at",
        // Only in a create's answer, and only while something may keep the rule from
        // firing: here no price of BTCUSDT has arrived.
        "warnings",
    ]
    .into();
    assert_eq!(keys, expected, "exactly the design's JSON: {created}");
    assert!(
        created["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("no price of binance:BTCUSDT has arrived yet")),
        "{created}"
    );
    assert_eq!(created["threshold"], "65000");
    assert_eq!(created["active"], true);
    assert_eq!(created["expires_at"], Value::Null);
    let id = created["id"].as_i64().expect("id");
    let path = format!("/v1/alerts/{id}");

    let (status, list) = server
        .json(Method::GET, "/v1/alerts", Some(&alice), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["next_cursor"], Value::Null);

    // Bob can neither see, change nor delete Alice's rule; it looks missing to him.
    let (status, list) = server
        .json(Method::GET, "/v1/alerts", Some(&bob), None)
        .await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"threshold":"1"}))),
        (Method::DELETE, None),
    ] {
        let response = server.call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(response.status(), 404, "{method} by another user");
        assert_eq!(response.headers()["content-type"], PROBLEM);
    }
    let (status, events) = server
        .json(Method::GET, &format!("{path}/events"), Some(&bob), None)
        .await;
    assert_eq!(status, 404, "{events}");
    let (_, still) = server.json(Method::GET, &path, Some(&alice), None).await;
    assert_eq!(still["threshold"], "65000", "unchanged by Bob");

    // Alice changes it: a merge patch, validated as a whole.
    let (status, patched) = server
        .json(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(json!({"threshold":"66000.5","trigger":"every_time","cooldown_s":60})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (
            patched["threshold"].as_str(),
            patched["cooldown_s"].as_u64()
        ),
        (Some("66000.5"), Some(60))
    );
    let (status, paused) = server
        .json(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(json!({"active":false})),
        )
        .await;
    assert_eq!((status, paused["active"].as_bool()), (200, Some(false)));
    let (status, bad) = server
        .json(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(json!({"condition":"entering_channel"})),
        )
        .await;
    assert_eq!(
        (status, bad["field"].as_str()),
        (422, Some("threshold")),
        "{bad}"
    );

    // Events of the rule.
    let now = tickwatch_schema::db::now_ms();
    for i in 0..3i64 {
        alert_event::ActiveModel {
            id: Set(format!("ev-{i}")),
            rule_id: Set(id),
            user_id: Set(0),
            venue: Set("binance".into()),
            symbol: Set("BTCUSDT".into()),
            condition: Set("crossing_up".into()),
            threshold: Set("65000".into()),
            price: Set("65001".into()),
            ts: Set(now + i),
            text: Set("fired".into()),
            published: Set(true),
            created_at: Set(now),
        }
        .insert(&db.conn)
        .await
        .expect("event");
    }
    // The rows above belong to user 0; only Alice's own count.
    let (status, events) = server
        .json(Method::GET, &format!("{path}/events"), Some(&alice), None)
        .await;
    assert_eq!(
        (status, events["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let alice_id = server.services.find_user("alice").await.expect("alice").id;
    alert_event::Entity::update_many()
        .set(alert_event::ActiveModel {
            user_id: Set(alice_id),
            ..Default::default()
        })
        .exec(&db.conn)
        .await
        .expect("reassign");
    let (_, first) = server
        .json(
            Method::GET,
            &format!("{path}/events?limit=2"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(first["items"][0]["id"], "ev-2", "newest first");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = server
        .json(
            Method::GET,
            &format!("{path}/events?limit=2&cursor={cursor}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["next_cursor"], Value::Null);

    let response = server.call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(response.status(), 204);
    let (status, _) = server.json(Method::GET, &path, Some(&alice), None).await;
    assert_eq!(status, 404);

    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn alerts_crud_and_ownership_sqlite() {
    alerts_crud_and_ownership(Backend::Sqlite).await;
}

#[tokio::test]
async fn alerts_crud_and_ownership_postgres() {
    alerts_crud_and_ownership(Backend::Postgres).await;
}

// ---------------------------------------------------------------- validation, problems

async fn validation_and_problems(backend: Backend) {
    let db = database(backend).await;
    let server = server_on(&db).await;
    let (_, key) = user_with_key(&server.services, "carol", false).await;

    let with = |k: &str, v: Value| {
        let mut body = rule_body();
        body[k] = v;
        body
    };
    let mut missing = rule_body();
    missing.as_object_mut().map(|m| m.remove("condition"));
    for (body, field) in [
        (with("threshold", json!(65000)), "threshold"),
        (with("threshold", json!("-5")), "threshold"),
        (with("condition", json!("sideways")), "condition"),
        (with("treshold", json!("1")), "treshold"),
        (with("symbol", json!("btcusdt")), "symbol"),
        (with("trigger", json!("once_per_bar")), "interval"),
        (with("trigger", json!("once_per_bar_close")), "interval"),
        (with("condition", json!("moving_up")), "window_s"),
        (with("condition", json!("inside_channel")), "threshold"),
        (with("condition", json!("expression")), "threshold"),
        (missing, "condition"),
    ] {
        let response = server
            .call(Method::POST, "/v1/alerts", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(response.headers()["content-type"], PROBLEM);
        let problem: Value = response.json().await.expect("problem json");
        assert_eq!(problem["field"], field, "{problem}");
        assert_eq!(problem["status"], 422);
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(field)),
            "{problem}"
        );
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:tickwatch:problem:"))
        );
        assert_eq!(problem["errors"][0]["field"], field);
    }

    let response = server
        .http
        .post(server.url("/v1/alerts"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], PROBLEM);

    // A body that is not JSON by its type is 415; one over the limit is 413.
    let response = server
        .http
        .post(server.url("/v1/alerts"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(rule_body().to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["content-type"], PROBLEM);
    let response = server
        .http
        .post(server.url("/v1/alerts"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"template\":\"{}\"}}", "x".repeat(70_000)))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], PROBLEM);

    // What JSON Schema allows is accepted: a whole float for an integer, channel bounds
    // either way round (stored in order), an expiry already past (stored expired).
    let (status, rule) = server
        .json(
            Method::POST,
            "/v1/alerts",
            Some(&key),
            Some(
                json!({"venue":"binance","symbol":"BTCUSDT","condition":"entering_channel",
                "low":"70000","high":"60000","trigger":"every_time","cooldown_s":60.0}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(
        (&rule["low"], &rule["high"], &rule["cooldown_s"]),
        (&json!("60000"), &json!("70000"), &json!(60))
    );
    // Indicator and multi-condition rules: stored as written, with a warning while the
    // candle store is too short to evaluate them; a mistake names what was expected.
    let expression = json!({"venue":"binance","symbol":"BTCUSDT","condition":"expression",
        "expression":"rsi(14,1h) < 30 and close(1d) x> sma(200,1d)","trigger":"every_time",
        "cooldown_s":3600});
    let (status, rule) = server
        .json(
            Method::POST,
            "/v1/alerts",
            Some(&key),
            Some(expression.clone()),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(rule["expression"], expression["expression"]);
    let warnings = rule["warnings"].to_string();
    assert!(
        warnings.contains("rsi(14,1h) has no value until 15 closed 1h candles")
            && warnings.contains("sma(200,1d) has no value until 200 closed 1d candles"),
        "{rule}"
    );
    // The API takes the canonical form (every interval written), which its schema states.
    for (text, needle) in [
        ("rsi(14,1h) < 30 and", "up to five clauses"),
        ("rsi(14) < 30", "explicit intervals"),
        ("close(1h) inside 3", "a band"),
    ] {
        let mut body = expression.clone();
        body["expression"] = json!(text);
        let (status, problem) = server
            .json(Method::POST, "/v1/alerts", Some(&key), Some(body))
            .await;
        assert_eq!(status, 422, "{text}: {problem}");
        assert_eq!(problem["field"], "expression");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(needle)),
            "{text}: {problem}"
        );
    }

    // Every TradingView operator and trigger.
    for body in [
        json!({"venue":"binance","symbol":"BTCUSDT","condition":"inside_channel",
            "low":"60000","high":"70000"}),
        json!({"venue":"binance","symbol":"BTCUSDT","condition":"outside_channel",
            "low":"60000","high":"70000","trigger":"every_time","cooldown_s":600}),
        json!({"venue":"binance","symbol":"BTCUSDT","condition":"moving_down",
            "threshold":"2000","window_s":3600}),
        json!({"venue":"krx","symbol":"005930","condition":"crossing_up",
            "threshold":"75000","trigger":"once_per_bar_close","interval":"1d"}),
    ] {
        let (status, rule) = server
            .json(Method::POST, "/v1/alerts", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{body} → {rule}");
        for (field, value) in body.as_object().expect("object") {
            assert_eq!(&rule[field], value, "{field} of {rule}");
        }
    }
    let (status, expired) = server
        .json(
            Method::POST,
            "/v1/alerts",
            Some(&key),
            Some(with("expires_at", json!(1_000_000_000_000i64))),
        )
        .await;
    assert_eq!(
        (status, &expired["active"]),
        (201, &json!(false)),
        "{expired}"
    );
    // `null` is refused where the document does not allow it.
    let (status, problem) = server
        .json(
            Method::POST,
            "/v1/alerts",
            Some(&key),
            Some(with("trigger", Value::Null)),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("trigger")));

    let response = server.call(Method::GET, "/v1/alerts", None, None).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, problem) = server
        .json(Method::GET, "/v1/alerts", Some("tw_0000"), None)
        .await;
    assert_eq!(status, 401, "{problem}");
    let (status, _) = server
        .json(Method::GET, "/v1/admin/users", Some(&key), None)
        .await;
    assert_eq!(status, 403, "not an admin");
    let (status, problem) = server
        .json(Method::GET, "/v1/nothing", Some(&key), None)
        .await;
    assert_eq!((status, problem["status"].as_u64()), (404, Some(404)));
    let response = server
        .call(Method::PUT, "/v1/alerts", Some(&key), None)
        .await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["content-type"], PROBLEM);
    let (status, problem) = server
        .json(Method::GET, "/v1/alerts/abc", Some(&key), None)
        .await;
    assert_eq!(status, 404, "{problem}");

    // Subscriptions share the rules of the road.
    let (status, sub) = server
        .json(
            Method::POST,
            "/v1/subscriptions",
            Some(&key),
            Some(json!({"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"B"})),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    let (status, again) = server
        .json(
            Method::POST,
            "/v1/subscriptions",
            Some(&key),
            Some(json!({"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"A"})),
        )
        .await;
    assert_eq!(
        (status, again["id"].clone(), again["min_grade"].as_str()),
        (200, sub["id"].clone(), Some("A"))
    );
    let (status, problem) = server
        .json(
            Method::POST,
            "/v1/subscriptions",
            Some(&key),
            Some(json!({"kind":"rsi_oversold","colour":"red"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("colour")));
    let (_, list) = server
        .json(Method::GET, "/v1/subscriptions", Some(&key), None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let sub_path = format!("/v1/subscriptions/{}", sub["id"]);
    assert_eq!(
        server
            .call(Method::DELETE, &sub_path, Some(&key), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        server
            .call(Method::GET, &sub_path, Some(&key), None)
            .await
            .status(),
        404
    );

    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn validation_and_problems_sqlite() {
    validation_and_problems(Backend::Sqlite).await;
}

#[tokio::test]
async fn validation_and_problems_postgres() {
    validation_and_problems(Backend::Postgres).await;
}

// ---------------------------------------------------------------- signals, market data

async fn signals_pages_and_stats(backend: Backend) {
    let db = database(backend).await;
    let server = server_on(&db).await;
    let (_, key) = user_with_key(&server.services, "dave", false).await;
    let base = 1_763_762_400_000i64;
    // Seven signals: rsi_oversold (bullish) and rsi_overbought (bearish), two sharing a ts.
    let rows = [
        ("s1", "rsi_oversold", base, Some(0.02)),
        ("s2", "rsi_oversold", base + 60_000, Some(-0.01)),
        ("s3", "rsi_oversold", base + 120_000, Some(0.03)),
        ("s4", "rsi_overbought", base + 120_000, Some(-0.04)),
        ("s5", "rsi_overbought", base + 180_000, Some(0.01)),
        ("s6", "rsi_overbought", base + 240_000, None),
        ("s7", "rsi_oversold", base + 300_000, None),
    ];
    for (id, kind, ts, ret) in rows {
        signal::ActiveModel {
            id: Set(id.into()),
            kind: Set(kind.into()),
            venue: Set("binance".into()),
            symbol: Set(if id == "s7" { "ETHUSDT" } else { "BTCUSDT" }.into()),
            interval: Set("1m".into()),
            ts: Set(ts),
            price: Set("64000".into()),
            score: Set(70),
            grade: Set("B".into()),
            details: Set(r#"{"rsi":27.4}"#.into()),
            ret_1: Set(ret),
            ret_5: Set(ret),
            ret_20: Set(None),
            created_at: Set(ts),
        }
        .insert(&db.conn)
        .await
        .expect("signal");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/signals?limit=3&cursor={c}"),
            None => "/v1/signals?limit=3".to_string(),
        };
        let (status, page) = server.json(Method::GET, &path, Some(&key), None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["s7", "s6", "s5", "s4", "s3", "s2", "s1"],
        "newest first, each once"
    );

    let (_, filtered) = server
        .json(
            Method::GET,
            &format!("/v1/signals?kind=rsi_overbought&since={}", base + 150_000),
            Some(&key),
            None,
        )
        .await;
    let ids: Vec<&str> = filtered["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, ["s6", "s5"]);
    let (_, by_symbol) = server
        .json(Method::GET, "/v1/signals?symbol=ETHUSDT", Some(&key), None)
        .await;
    assert_eq!(by_symbol["items"][0]["details"]["rsi"], 27.4);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("cursor=zz", "cursor"),
        ("kind=weather", "kind"),
        ("colour=red", "colour"),
    ] {
        let (status, problem) = server
            .json(
                Method::GET,
                &format!("/v1/signals?{query}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (422, Some(field)),
            "{query}: {problem}"
        );
    }

    let (status, stats) = server
        .json(Method::GET, "/v1/signals/stats", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    let kind = |name: &str| -> Value {
        stats["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|k| k["kind"] == name)
            .cloned()
            .expect(name)
    };
    let bull = kind("rsi_oversold");
    assert_eq!(
        (bull["count"].as_u64(), bull["direction"].as_str()),
        (Some(4), Some("bullish"))
    );
    let one = &bull["horizons"][0];
    assert_eq!(
        (
            one["bars"].as_u64(),
            one["count"].as_u64(),
            one["hits"].as_u64()
        ),
        (Some(1), Some(3), Some(2))
    );
    assert!((one["mean_return"].as_f64().expect("mean") - 0.04 / 3.0).abs() < 1e-9);
    let bear = kind("rsi_overbought");
    assert_eq!(
        bear["horizons"][0]["hits"].as_u64(),
        Some(1),
        "a fall is a bearish hit"
    );
    assert_eq!(
        bear["horizons"][2]["hit_rate"],
        Value::Null,
        "no 20-bar outcomes yet"
    );

    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn signals_pages_and_stats_sqlite() {
    signals_pages_and_stats(Backend::Sqlite).await;
}

#[tokio::test]
async fn signals_pages_and_stats_postgres() {
    signals_pages_and_stats(Backend::Postgres).await;
}

async fn symbols_and_prices(backend: Backend) {
    let db = database(backend).await;
    let server = server_on(&db).await;
    let (_, key) = user_with_key(&server.services, "erin", false).await;

    let (_, found) = server
        .json(
            Method::GET,
            "/v1/symbols?query=%EC%82%BC%EC%84%B1",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        found["items"][0]["symbol"], "005930",
        "삼성 → Samsung Electronics: {found}"
    );
    let (_, btc) = server
        .json(Method::GET, "/v1/symbols?query=btc", Some(&key), None)
        .await;
    let venues: BTreeSet<&str> = btc["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["venue"].as_str())
        .collect();
    assert!(
        venues.contains("binance") && venues.contains("upbit"),
        "{btc}"
    );

    let ts = 1_763_762_400_000i64; // 22:00 UTC
    latest_price::ActiveModel {
        venue: Set("binance".into()),
        symbol: Set("BTCUSDT".into()),
        price: Set("66000".into()),
        ts: Set(ts),
    }
    .insert(&db.conn)
    .await
    .expect("price");
    let (status, price) = server
        .json(Method::GET, "/v1/prices/binance/BTCUSDT", Some(&key), None)
        .await;
    assert_eq!(
        (status, price["day_change"].clone()),
        (200, Value::Null),
        "no candles: {price}"
    );

    // A 1m candle since the UTC day began: the day's first candle is the reference.
    let day = ts - ts.rem_euclid(86_400_000);
    let bar = |interval: &str, open_ts: i64, open: &str| candle::ActiveModel {
        venue: Set("binance".into()),
        symbol: Set("BTCUSDT".into()),
        interval: Set(interval.into()),
        open_ts: Set(open_ts),
        open: Set(open.into()),
        high: Set(open.into()),
        low: Set(open.into()),
        close: Set(open.into()),
        volume: Set("1".into()),
        trades: Set(None),
        ..Default::default()
    };
    bar("1m", day - 60_000, "1")
        .insert(&db.conn)
        .await
        .expect("yesterday's bar");
    bar("1m", day + 60_000, "60000")
        .insert(&db.conn)
        .await
        .expect("today's first");
    let (_, price) = server
        .json(Method::GET, "/v1/prices/binance/BTCUSDT", Some(&key), None)
        .await;
    assert_eq!(
        price["day_change"]["source"], "first_candle_of_day",
        "{price}"
    );
    assert_eq!(price["day_change"]["change"], "6000");
    assert_eq!(price["day_change"]["change_pct"], "10.00");

    // A daily candle wins.
    bar("1d", day, "64000")
        .insert(&db.conn)
        .await
        .expect("daily");
    let (_, price) = server
        .json(Method::GET, "/v1/prices/binance/BTCUSDT", Some(&key), None)
        .await;
    assert_eq!(price["day_change"]["source"], "daily_open");
    assert_eq!(price["day_change"]["reference"], "64000");
    assert_eq!(price["price"], "66000");

    let (status, _) = server
        .json(Method::GET, "/v1/prices/binance/DOGEUSDT", Some(&key), None)
        .await;
    assert_eq!(status, 404);
    let (status, problem) = server
        .json(
            Method::GET,
            "/v1/prices/Bin%20ance/BTCUSDT",
            Some(&key),
            None,
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("venue")));

    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn symbols_and_prices_sqlite() {
    symbols_and_prices(Backend::Sqlite).await;
}

#[tokio::test]
async fn symbols_and_prices_postgres() {
    symbols_and_prices(Backend::Postgres).await;
}

// ---------------------------------------------------------------- admin

#[tokio::test]
async fn admins_manage_users_and_keys_sqlite() {
    admins_manage_users_and_keys(Backend::Sqlite).await;
}

#[tokio::test]
async fn admins_manage_users_and_keys_postgres() {
    admins_manage_users_and_keys(Backend::Postgres).await;
}

async fn admins_manage_users_and_keys(backend: Backend) {
    let db = database(backend).await;
    let server = server_on(&db).await;
    let (_, admin) = user_with_key(&server.services, "root", true).await;
    let (status, created) = server
        .json(
            Method::POST,
            "/v1/admin/users",
            Some(&admin),
            Some(json!({"name":"frank","telegram_chat_id":4242,"api_key":true})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let frank_key = created["api_key"]["key"]
        .as_str()
        .expect("a key shown once")
        .to_string();
    let (status, me) = server
        .json(Method::GET, "/v1/me", Some(&frank_key), None)
        .await;
    assert_eq!(
        (status, me["name"].as_str(), me["admin"].as_bool()),
        (200, Some("frank"), Some(false))
    );
    let (status, dup) = server
        .json(
            Method::POST,
            "/v1/admin/users",
            Some(&admin),
            Some(json!({"name":"frank2","telegram_chat_id":4242})),
        )
        .await;
    assert_eq!(status, 409, "{dup}");
    let (status, bad) = server
        .json(
            Method::POST,
            "/v1/admin/users",
            Some(&admin),
            Some(json!({"nme":"x"})),
        )
        .await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("nme")));
    let (_, users) = server
        .json(Method::GET, "/v1/admin/users", Some(&admin), None)
        .await;
    assert_eq!(users["items"].as_array().map(Vec::len), Some(2));
    let id = created["user"]["id"].as_i64().expect("id");
    let (status, key) = server
        .json(
            Method::POST,
            &format!("/v1/admin/users/{id}/apikeys"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, key["prefix"].as_str().map(|p| p.len())),
        (201, Some(10))
    );
    let (status, stats) = server
        .json(Method::GET, "/v1/admin/stats", Some(&admin), None)
        .await;
    assert_eq!(
        (status, stats["users"].as_u64(), stats["queues"].clone()),
        (200, Some(2), Value::Null)
    );
    let (status, problem) = server
        .json(Method::GET, "/v1/admin/dlq", Some(&admin), None)
        .await;
    assert_eq!(status, 503, "no broker in this test: {problem}");
    let (status, removed) = server
        .json(
            Method::DELETE,
            &format!("/v1/admin/users/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, removed["api_keys"].as_u64()), (200, Some(2)));
    let (status, _) = server
        .json(Method::GET, "/v1/me", Some(&frank_key), None)
        .await;
    assert_eq!(status, 401, "a removed user's keys stop working");
    server.stop().await;
    db.close().await.expect("cleanup");
}

// ---------------------------------------------------------------- rate limit

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let db = database(Backend::Sqlite).await;
    let config = ApiConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            per_second: 0.5,
            burst: 3,
        },
        ..Default::default()
    };
    let server = Server::start(Services::new(db.conn.clone(), None), config).await;
    let (_, key) = user_with_key(&server.services, "greta", false).await;
    let (_, other) = user_with_key(&server.services, "hank", false).await;
    for _ in 0..3 {
        assert_eq!(
            server
                .call(Method::GET, "/v1/me", Some(&key), None)
                .await
                .status(),
            200
        );
    }
    let response = server.call(Method::GET, "/v1/me", Some(&key), None).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["content-type"], PROBLEM);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        server
            .call(Method::GET, "/v1/me", Some(&other), None)
            .await
            .status(),
        200,
        "per key"
    );
    server.stop().await;
    db.close().await.expect("cleanup");
}

// ---------------------------------------------------------------- OpenAPI

/// A concrete path for a templated one, to probe it.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{venue}", "binance")
        .replace("{symbol}", "BTCUSDT")
}

#[tokio::test]
async fn openapi_describes_every_route_exactly() {
    let db = database(Backend::Sqlite).await;
    let server = server_on(&db).await;
    let (status, doc) = server.json(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("operations")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    // The router and the document come from one registration; this is the list users
    // rely on.
    let served: BTreeSet<(String, String)> = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/v1/me"),
        ("GET", "/v1/alerts"),
        ("POST", "/v1/alerts"),
        ("GET", "/v1/alerts/{id}"),
        ("PATCH", "/v1/alerts/{id}"),
        ("DELETE", "/v1/alerts/{id}"),
        ("GET", "/v1/alerts/{id}/events"),
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions/{id}"),
        ("DELETE", "/v1/subscriptions/{id}"),
        ("GET", "/v1/paper/strategies"),
        ("POST", "/v1/paper/strategies"),
        ("GET", "/v1/paper/strategies/{id}"),
        ("PATCH", "/v1/paper/strategies/{id}"),
        ("DELETE", "/v1/paper/strategies/{id}"),
        ("GET", "/v1/paper/strategies/{id}/positions"),
        ("GET", "/v1/paper/strategies/{id}/trades"),
        ("GET", "/v1/paper/strategies/{id}/equity"),
        ("GET", "/v1/paper/strategies/{id}/summary"),
        ("GET", "/v1/signals"),
        ("GET", "/v1/signals/stats"),
        ("GET", "/v1/symbols"),
        ("GET", "/v1/prices/{venue}/{symbol}"),
        ("GET", "/v1/candles"),
        ("GET", "/v1/notifications"),
        ("GET", "/v1/session"),
        ("POST", "/v1/session"),
        ("DELETE", "/v1/session"),
        ("GET", "/v1/stream"),
        ("GET", "/v1/stream/sse"),
        ("GET", "/v1/admin/users"),
        ("POST", "/v1/admin/users"),
        ("DELETE", "/v1/admin/users/{id}"),
        ("POST", "/v1/admin/users/{id}/apikeys"),
        ("GET", "/v1/admin/stats"),
        ("GET", "/v1/admin/dlq"),
        ("POST", "/v1/admin/alertmanager"),
        ("POST", "/v1/admin/symbols/import"),
        ("POST", "/v1/me/relay"),
        ("POST", "/v1/relay/tradingview/{secret}"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_string(), path.to_string()))
    .collect();
    assert_eq!(documented, served, "the documented endpoints");

    // Each documented method is what the handler serves (never 405), and nothing else is.
    let methods = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::PUT,
    ];
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in &methods {
            if path.starts_with("/v1/stream") && *method == Method::GET {
                continue; // would open a stream
            }
            let response = server
                .call(method.clone(), &concrete(path), None, None)
                .await;
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            assert_eq!(
                response.status() != 405,
                is_documented,
                "{method} {path}: {}",
                response.status()
            );
        }
        // Every /v1 endpoint documents its security.
        if path.starts_with("/v1") {
            for op in doc["paths"][path.as_str()]
                .as_object()
                .expect("ops")
                .values()
            {
                assert!(op["security"].is_array(), "{path} without security");
            }
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The web page's cookie is declared, and taken wherever a key is.
    let session = &doc["components"]["securitySchemes"]["session"];
    assert_eq!(
        (&session["type"], &session["in"], &session["name"]),
        (&json!("apiKey"), &json!("cookie"), &json!("tw_session"))
    );
    assert_eq!(
        doc["paths"]["/v1/alerts"]["get"]["security"],
        json!([{"bearer": []}, {"session": []}])
    );
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("ops").values())
        .map(|op| op["operationId"].as_str().expect("an operationId"))
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique: {ids:?}");
    // Every schema the document refers to is in it.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in all {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{reference} is not in the document"
        );
    }
    let response = server.call(Method::GET, "/docs", None, None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("/openapi.json")
    );
    let (status, _) = server.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    let metrics = server.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.text().await.expect("text"), "tw_up 1\n");
    server.stop().await;
    db.close().await.expect("cleanup");
}

// ---------------------------------------------------------------- readiness

#[tokio::test]
async fn readyz_names_an_unreachable_broker() {
    let db = database(Backend::Sqlite).await;
    // Nothing listens on port 1: the broker is down.
    let config = BrokerConfig {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        publish_timeout_ms: 1_000,
        ..broker_config("ready")
    };
    let broker = Broker::new(config, "test-ready").expect("a broker handle");
    let server = Server::start(
        Services::new(db.conn.clone(), Some(broker)),
        ApiConfig::default(),
    )
    .await;
    let response = server.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], PROBLEM);
    let problem: Value = response.json().await.expect("problem");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains("broker"), "{detail}");
    assert!(!detail.contains("guest"), "no URL or credentials: {detail}");
    assert_eq!(problem["checks"]["database"]["up"], true);
    assert_eq!(problem["checks"]["broker"]["up"], false);
    server.stop().await;

    let ready = server_on(&db).await;
    let (status, body) = ready.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    ready.stop().await;
    db.close().await.expect("cleanup");
}

// ---------------------------------------------------------------- control messages

#[tokio::test]
async fn rule_changes_are_announced_on_the_control_exchange() {
    let db = database(Backend::Sqlite).await;
    let broker = Broker::connect(broker_config("ctl"), "gateway-test")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let stop = CancellationToken::new();
    let (controls, topology, listener) = listen_to_controls(&broker, stop.clone()).await;
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let server = Server::start(services, ApiConfig::default()).await;
    let (user_id, key) = user_with_key(&server.services, "ivy", false).await;

    let (_, created) = server
        .json(Method::POST, "/v1/alerts", Some(&key), Some(rule_body()))
        .await;
    let id = created["id"].as_i64().expect("id");
    let path = format!("/v1/alerts/{id}");
    server
        .json(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"active":false})),
        )
        .await;
    server.call(Method::DELETE, &path, Some(&key), None).await;
    server
        .json(
            Method::POST,
            "/v1/subscriptions",
            Some(&key),
            Some(json!({"kind":"golden_cross"})),
        )
        .await;

    let seen = controls.wait_for(4).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    match &seen[0] {
        Control::RuleUpserted { rule } => {
            assert_eq!(
                (rule.id, rule.user_id, rule.version, rule.active),
                (id, user_id, 1, true)
            );
            assert_eq!(rule.spec.symbol, "BTCUSDT");
        }
        other => panic!("expected the upsert, got {other:?}"),
    }
    match &seen[1] {
        Control::RuleUpserted { rule } => assert_eq!((rule.version, rule.active), (2, false)),
        other => panic!("expected the pause, got {other:?}"),
    }
    assert_eq!(
        seen[2],
        Control::RuleDeleted {
            rule_id: id,
            user_id,
            version: 3
        }
    );
    assert!(
        matches!(&seen[3], Control::SubscriptionUpserted { subscription } if subscription.version == 1)
    );

    // Halt is persisted and announced too.
    server
        .services
        .halt_notifications(Some(1))
        .await
        .expect("halt");
    let seen = controls.wait_for(5).await;
    assert_eq!(seen.get(4), Some(&Control::Halt { by_chat: Some(1) }));
    let halted = setting::Entity::find_by_id("notifications_halted".to_string())
        .one(&db.conn)
        .await
        .expect("query")
        .expect("persisted");
    assert_eq!(halted.value, "true");

    server.stop().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), listener).await;
    topology.delete(&broker).await.expect("cleanup topology");
    common::delete_standard_topology(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}

/// What an admin sees of the queues: depths, consumers and DLQ counts, from the broker's
/// own management API.
#[tokio::test]
async fn admins_see_queue_depths_and_dead_letters() {
    use tickwatch_broker::publisher::OutgoingMessage;
    use tickwatch_broker::{Publisher, Topology};

    let db = database(Backend::Sqlite).await;
    let config = broker_config("stats");
    let broker = Broker::connect(config.clone(), "gateway-test")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let names = broker.names().clone();
    let recorder = names.queue(tickwatch_schema::names::WorkQueue::Recorder);
    let alerts_dlq = format!(
        "{}.dlq",
        names.queue(tickwatch_schema::names::WorkQueue::Alerts)
    );
    let publisher = Publisher::start(&broker, "test");
    // Two messages waiting for the recorder (none runs here), one dead letter for alerts.
    for queue in [&recorder, &recorder, &alerts_dlq] {
        publisher
            .send_raw(OutgoingMessage {
                exchange: String::new(),
                routing_key: queue.clone(),
                body: b"{}".to_vec(),
                properties: Default::default(),
                mandatory: true,
            })
            .await
            .expect("send")
            .wait()
            .await
            .expect("confirmed");
    }
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let server = Server::start(services, ApiConfig::default()).await;
    let (_, admin) = user_with_key(&server.services, "root", true).await;

    // The management API refreshes its figures every few seconds.
    let mut seen = Value::Null;
    for _ in 0..100 {
        let (status, stats) = server
            .json(Method::GET, "/v1/admin/stats", Some(&admin), None)
            .await;
        assert_eq!(status, 200);
        seen = stats["queues"].clone();
        let of = |name: &str| {
            seen.as_array()
                .and_then(|qs| qs.iter().find(|q| q["queue"] == name))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let alerts = of(&names.queue(tickwatch_schema::names::WorkQueue::Alerts));
        if of(&recorder)["messages"] == 2 && alerts["dlq_messages"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = seen.as_array().expect("queue figures with a broker");
    assert_eq!(
        rows.len(),
        tickwatch_schema::names::WorkQueue::ALL.len(),
        "every work queue: {seen}"
    );
    assert!(
        rows.iter()
            .any(|q| q["queue"] == recorder.as_str() && q["messages"] == 2 && q["consumers"] == 0),
        "the recorder's backlog: {seen}"
    );
    assert!(
        rows.iter()
            .any(|q| q["dlq"] == alerts_dlq.as_str() && q["dlq_messages"] == 1),
        "the alerts DLQ: {seen}"
    );

    server.stop().await;
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("cleanup");
}

/// Inserts `copies` copies of the first row of `E`, each with a new `id`.
async fn copy_first_row<E>(db: &sea_orm::DatabaseConnection, id: E::Column, copies: u64)
where
    E: EntityTrait,
    E::Model: sea_orm::IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + sea_orm::ActiveModelBehavior + Send,
{
    use sea_orm::IntoActiveModel;
    let row = E::find().one(db).await.expect("read").expect("a row");
    for _ in 0..copies {
        let mut copy = row.clone().into_active_model();
        copy.not_set(id);
        copy.insert(db).await.expect("copy");
    }
}

/// Creations racing for a user's last place: exactly one gets it, the others a 409, and
/// the limit holds (the count and the insert run in one transaction that holds the user's
/// row).
async fn the_last_place_goes_to_one_request(backend: Backend) {
    use sea_orm::PaginatorTrait;
    use tickwatch_gateway::services::{
        paper::MAX_PAPER_STRATEGIES_PER_USER, rules::MAX_RULES_PER_USER,
    };
    use tickwatch_schema::db::entity::{alert_rule, paper_strategy};
    let db = database(backend).await;
    let mut config = ApiConfig::default();
    config.rate_limit = RateLimitConfig {
        enabled: false,
        ..Default::default()
    };
    let server = Server::start(Services::new(db.conn.clone(), None), config).await;
    let (_, key) = user_with_key(&server.services, "racer", false).await;
    let strategy = json!({"name":"race","kinds":["golden_cross"],"starting_balance":"1000000",
                          "currency":"KRW","sizing":{"fixed":"100000"}});
    for (path, body, limit) in [
        ("/v1/alerts", rule_body(), MAX_RULES_PER_USER),
        (
            "/v1/paper/strategies",
            strategy,
            MAX_PAPER_STRATEGIES_PER_USER,
        ),
    ] {
        let (status, created) = server
            .json(Method::POST, path, Some(&key), Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{path}: {created}");
        // Copies of the created row fill every place but the last.
        if path == "/v1/alerts" {
            copy_first_row::<alert_rule::Entity>(&db.conn, alert_rule::Column::Id, limit - 2).await;
        } else {
            copy_first_row::<paper_strategy::Entity>(
                &db.conn,
                paper_strategy::Column::Id,
                limit - 2,
            )
            .await;
        }
        let statuses = race(&server, &key, path, &body).await;
        one_created_the_rest(&statuses, 409, path);
        let count = if path == "/v1/alerts" {
            alert_rule::Entity::find().count(&db.conn).await
        } else {
            paper_strategy::Entity::find().count(&db.conn).await
        };
        assert_eq!(count.expect("count"), limit, "{path}");
    }
    // The same subscription asked for 16 times at once is made once, then changed.
    let subscription = json!({"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"B"});
    let statuses = race(&server, &key, "/v1/subscriptions", &subscription).await;
    one_created_the_rest(&statuses, 200, "/v1/subscriptions");
    let rows = tickwatch_schema::db::entity::subscription::Entity::find()
        .count(&db.conn)
        .await
        .expect("count");
    assert_eq!(rows, 1);
    server.stop().await;
    db.close().await.expect("close");
}

/// Exactly one of the racers got 201, every other `rest`.
fn one_created_the_rest(statuses: &[u16], rest: u16, path: &str) {
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{path}: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == rest),
        "{path}: {statuses:?}"
    );
}

/// The statuses of 16 identical POSTs sent at once, each from its own task.
async fn race(server: &Server, key: &str, path: &str, body: &Value) -> Vec<u16> {
    let racers = (0..16).map(|_| {
        let (http, url, key, body) = (
            server.http.clone(),
            server.url(path),
            key.to_string(),
            body.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("request");
            response.status().as_u16()
        })
    });
    futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|joined| joined.expect("racer"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_place_goes_to_one_request_sqlite() {
    the_last_place_goes_to_one_request(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_place_goes_to_one_request_postgres() {
    the_last_place_goes_to_one_request(Backend::Postgres).await;
}
