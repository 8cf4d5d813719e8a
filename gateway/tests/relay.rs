//! The TradingView relay end to end: a user's relay URL from `POST /v1/me/relay`, TradingView's
//! two kinds of body posted to it (JSON when the alert message is JSON, `text/plain`
//! otherwise), through the real RabbitMQ and the notifier role to the fake Telegram — one
//! message each, none for a repeat; a wrong URL is 404, a body over 64 KB 413, posts past the
//! per-user limit 429, an old URL dead after a new one is made.

mod common;

use std::time::Duration;

use reqwest::Method;
use tickwatch_gateway::config::RelayConfig;
use tickwatch_gateway::services::users::{Language, NewUser};
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_notifier::NotifierConfig;
use tickwatch_tests::{FakeTelegram, wait_until};
use tokio_util::sync::CancellationToken;

use common::{Backend, Server, broker_with_topology, database};

const TRADER: i64 = 7_301;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tradingview_posts_reach_the_users_telegram_once() {
    let db = database(Backend::Sqlite).await;
    let (broker, topology) = broker_with_topology("relay").await;
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let trader = services
        .create_user(NewUser {
            name: "trader".into(),
            telegram_chat_id: Some(TRADER),
            admin: false,
            language: Language::En,
            demo: false,
        })
        .await
        .expect("user");
    let key = services.create_api_key(trader.id).await.expect("key").key;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let notifier = {
        let mut notifier = NotifierConfig {
            telegram_bot_token: Some(tickwatch_notifier::Secret::new("123456:RELAY-TEST")),
            telegram_api_url: fake.url(),
            ..NotifierConfig::default()
        };
        notifier.limits.chat_interval_ms = 50;
        notifier
    };
    let stop = CancellationToken::new();
    let role = tokio::spawn({
        let (broker, db, stop) = (broker.clone(), db.conn.clone(), stop.clone());
        async move { tickwatch_notifier::adapter::run(&broker, db, &notifier, stop).await }
    });
    let server = Server::start(
        services,
        ApiConfig {
            relay: RelayConfig {
                public_url: Some("https://alerts.example.org/".into()),
                per_minute: 5,
                ..RelayConfig::default()
            },
            ..ApiConfig::default()
        },
    )
    .await;

    // The URL, as TradingView's alert dialog takes it.
    let (status, made) = server
        .json(Method::POST, "/v1/me/relay", Some(&key), None)
        .await;
    assert_eq!(status, 201, "{made}");
    let url = made["url"].as_str().expect("url").to_string();
    let secret = url
        .strip_prefix("https://alerts.example.org/v1/relay/tradingview/")
        .expect("on the public URL")
        .to_string();
    let path = format!("/v1/relay/tradingview/{secret}");
    let post = |body: &'static str, content_type: &'static str| {
        server
            .http
            .post(server.url(&path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // TradingView's two kinds of body.
    let plain = "BTCUSDT crossed 65000 on the 4h chart";
    let json = r#"{"message":"ETH RSI(14) below 30","ticker":"ETHUSDT","close":3120.5}"#;
    assert_eq!(
        post(plain, "text/plain; charset=utf-8")
            .await
            .expect("post")
            .status(),
        202
    );
    assert_eq!(
        post(json, "application/json").await.expect("post").status(),
        202
    );
    // A proxy's repeat of the plain post: handed over again, sent by nobody.
    assert_eq!(
        post(plain, "text/plain; charset=utf-8")
            .await
            .expect("post")
            .status(),
        202
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            fake.texts_to(TRADER).len() >= 2
        })
        .await,
        "both reached the chat: {:?}",
        fake.delivered()
    );
    // Time for a wrongly sent repeat to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.texts_to(TRADER),
        [plain, "ETH RSI(14) below 30"],
        "one message each, the JSON's message as its text"
    );

    // A wrong secret, an empty body, a body over 64 KB.
    let wrong = server
        .http
        .post(server.url(&format!("/v1/relay/tradingview/{}", "0".repeat(48))))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 404);
    assert_eq!(post("  ", "text/plain").await.expect("post").status(), 400);
    // Its own connection: the server answers before reading such a body, and closes it.
    let large = reqwest::Client::new()
        .post(server.url(&path))
        .body("x".repeat(70 * 1024))
        .send()
        .await
        .expect("post");
    assert_eq!(large.status(), 413);

    // Past the per-user limit (5 a minute, 5 used by now): 429.
    let limited = post("more", "text/plain").await.expect("post");
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    // A new URL: the old one is dead.
    let (_, again) = server
        .json(Method::POST, "/v1/me/relay", Some(&key), None)
        .await;
    assert_ne!(again["url"], made["url"]);
    let dead = post(plain, "text/plain").await.expect("post");
    assert_eq!(dead.status(), 404);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), role).await;
    server.stop().await;
    topology.delete(&broker).await.expect("cleanup topology");
    broker.close();
    let _ = db.close().await;
}
