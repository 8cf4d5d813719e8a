//! Live streams: WebSocket and SSE, topic filtering, heartbeats, the clean close of a slow
//! client, and the broker feed (a tick published on the market exchange reaches a
//! WebSocket client).

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tickwatch_broker::{Broker, Publisher};
use tickwatch_gateway::config::StreamConfig;
use tickwatch_gateway::hub::StreamEvent;
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::rule::Condition;
use tickwatch_schema::wire::{AlertTriggered, Tick};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use common::{Backend, Server, broker_config, connect, database, next_json, user_with_key};

fn tick(symbol: &str, n: i64) -> Tick {
    Tick {
        venue: "binance".into(),
        symbol: symbol.into(),
        price: Decimal::new(6_500_000 + n, 2),
        qty: Decimal::ONE,
        ts: 1_763_762_400_000 + n,
        trade_id: Some(n.to_string()),
    }
}

fn alert(user_id: i64) -> AlertTriggered {
    AlertTriggered {
        id: uuid::Uuid::new_v4(),
        rule_id: 1,
        user_id,
        venue: "binance".into(),
        symbol: "BTCUSDT".into(),
        condition: Condition::CrossingUp,
        threshold: Decimal::from(65_000),
        price: Decimal::from(65_001),
        ts: 1_763_762_400_000,
    }
}

#[tokio::test]
async fn websocket_topics_protocol_and_slow_clients() {
    let db = database(Backend::Sqlite).await;
    let config = ApiConfig {
        stream: StreamConfig {
            buffer: 8,
            heartbeat_s: 1,
            ..StreamConfig::default()
        },
        ..ApiConfig::default()
    };
    let server = Server::start(Services::new(db.conn.clone(), None), config).await;
    let (alice_id, alice) = user_with_key(&server.services, "alice", false).await;
    let (bob_id, _) = user_with_key(&server.services, "bob", false).await;
    let hub = server.state.hub().clone();

    let mut ws = connect(&server, &alice, "ticks:BTCUSDT,alerts:mine").await;
    let hello = next_json(&mut ws).await;
    assert_eq!(
        hello,
        json!({"type":"subscribed","topics":["ticks:BTCUSDT","alerts:mine"]})
    );

    hub.publish(StreamEvent::Tick(tick("ETHUSDT", 1)));
    hub.publish(StreamEvent::Alert(alert(bob_id)));
    hub.publish(StreamEvent::Alert(alert(alice_id)));
    hub.publish(StreamEvent::Tick(tick("BTCUSDT", 2)));
    let first = next_json(&mut ws).await;
    assert_eq!(
        (first["type"].as_str(), first["topic"].as_str()),
        (Some("alert"), Some("alerts:mine")),
        "{first}"
    );
    assert_eq!(first["data"]["user_id"], alice_id, "only Alice's own alert");
    let second = next_json(&mut ws).await;
    assert_eq!(
        (second["type"].as_str(), second["topic"].as_str()),
        (Some("tick"), Some("ticks:BTCUSDT"))
    );
    assert_eq!(second["data"]["price"], "65000.02");

    // Heartbeats arrive on an idle stream.
    let beat = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if v["type"] == "heartbeat" {
                    return v;
                }
            }
        }
    })
    .await
    .expect("a heartbeat");
    assert!(beat["ts"].as_i64().is_some());

    // Changing topics, and a bad request that keeps the stream open.
    ws.send(Message::Text(
        r#"{"op":"subscribe","topics":["signals:*"]}"#.into(),
    ))
    .await
    .expect("send");
    let changed = next_json(&mut ws).await;
    assert_eq!(
        changed["topics"],
        json!(["ticks:BTCUSDT", "signals:*", "alerts:mine"])
    );
    ws.send(Message::Text(
        r#"{"op":"subscribe","topics":["weather:*"]}"#.into(),
    ))
    .await
    .expect("send");
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.contains("weather")),
        "{error}"
    );
    ws.send(Message::Text(r#"{"op":"ping"}"#.into()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));

    // A client that falls more than `buffer` events behind is closed with a reason. The
    // events are published without yielding, so the stream's task cannot keep up.
    for n in 0..100 {
        hub.publish(StreamEvent::Tick(tick("BTCUSDT", n)));
    }
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 10 s")
    .expect("a close frame with a reason");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(
        close.reason.as_str().starts_with("slow consumer"),
        "{}",
        close.reason
    );

    // Bad requests before the upgrade are problems; a plain GET is a request for SSE.
    let (status, problem) = server
        .json(
            reqwest::Method::GET,
            "/v1/stream?topics=alerts:*",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 403, "alerts:* is for admins: {problem}");
    let response = server
        .http
        .get(server.url("/v1/stream/sse?topics=alerts:*"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 403, "alerts:* is for admins");
    let response = server
        .http
        .get(server.url("/v1/stream/sse"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);

    server.stop().await;
    db.close().await.expect("cleanup");
}

/// Reads SSE text until `needle` appears; returns everything read.
async fn read_sse_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !text.contains(needle) {
            match response.chunk().await.expect("chunk") {
                Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("`{needle}` within 10 s; got {text}"));
    text
}

#[tokio::test]
async fn server_sent_events_with_accept_header_and_slow_close() {
    let db = database(Backend::Sqlite).await;
    let config = ApiConfig {
        stream: StreamConfig {
            buffer: 4,
            heartbeat_s: 1,
            ..StreamConfig::default()
        },
        ..ApiConfig::default()
    };
    let server = Server::start(Services::new(db.conn.clone(), None), config).await;
    let (_, key) = user_with_key(&server.services, "carol", false).await;
    let hub = server.state.hub().clone();

    let mut response = server
        .http
        .get(server.url("/v1/stream?topics=ticks:*"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("SSE opens");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    read_sse_until(&mut response, "event: subscribed").await;
    hub.publish(StreamEvent::Tick(tick("SOLUSDT", 7)));
    let text = read_sse_until(&mut response, "event: tick").await;
    assert!(text.contains("SOLUSDT"), "{text}");
    read_sse_until(&mut response, "event: heartbeat").await;

    for n in 0..50 {
        hub.publish(StreamEvent::Tick(tick("SOLUSDT", n)));
    }
    let text = read_sse_until(&mut response, "event: close").await;
    assert!(text.contains("slow consumer"), "{text}");
    assert!(
        response.chunk().await.expect("end").is_none(),
        "the stream ends after close"
    );
    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn broker_events_reach_websocket_clients() {
    let db = database(Backend::Sqlite).await;
    let broker = Broker::connect(broker_config("stream"), "gateway-stream-test")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let server = Server::start(
        Services::new(db.conn.clone(), Some(broker.clone())),
        ApiConfig::default(),
    )
    .await;
    let (user_id, key) = user_with_key(&server.services, "dora", false).await;
    // The hub's own queue is bound once it consumes.
    common::wait_component(&broker, ".stream.").await;
    let mut ws = connect(&server, &key, "ticks:BTCUSDT,alerts:mine").await;
    next_json(&mut ws).await;

    let publisher = Publisher::start(&broker, "test-publisher");
    publisher
        .publish(Exchange::Alerts, &alert(user_id))
        .await
        .expect("alert published");
    publisher
        .publish(Exchange::Market, &tick("BTCUSDT", 5))
        .await
        .expect("tick published (routable to the hub's queue)");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "alert", "{first}");
    let second = next_json(&mut ws).await;
    assert_eq!(
        (second["type"].as_str(), second["data"]["trade_id"].as_str()),
        (Some("tick"), Some("5"))
    );

    // The stream's consumer shows in readiness.
    let (status, ready) = server
        .json(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready["checks"]
            .as_object()
            .expect("checks")
            .keys()
            .any(|k| k.contains(".stream.")),
        "{ready}"
    );

    publisher.close().await;
    server.stop().await;
    common::delete_standard_topology(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}
