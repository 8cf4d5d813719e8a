//! End to end through the real RabbitMQ, a fresh database and the fake Telegram Bot API:
//! what a user of tickwatch would see.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::{EntityTrait, PaginatorTrait};
use tickwatch::config::Config;
use tickwatch_broker::{Broker, BrokerConfig, Publisher, Topology};
use tickwatch_gateway::Services;
use tickwatch_schema::db::entity::{alert_event, alert_rule, candle, latest_price, signal};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_schema::wire::Tick;
use tickwatch_tests::db::TestDb;
use tickwatch_tests::{FakeTelegram, wait_until};
use tokio_util::sync::CancellationToken;

const CHAT: i64 = 4242;

fn broker_config(tag: &str) -> BrokerConfig {
    BrokerConfig {
        retry_delays_ms: vec![200, 400, 800],
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        ..tickwatch_tests::test_broker_config(tag)
    }
}

/// A broker on its own prefix with the standard topology applied.
async fn broker_with_topology(tag: &str) -> (Broker, Topology) {
    let config = broker_config(tag);
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    (broker, topology)
}

/// A user whose notifications go to [`CHAT`].
async fn user_in_chat(
    services: &Services,
    name: &str,
) -> tickwatch_gateway::services::users::UserInfo {
    services
        .create_user(tickwatch_gateway::services::users::NewUser {
            name: name.into(),
            telegram_chat_id: Some(CHAT),
            ..Default::default()
        })
        .await
        .expect("user")
}

/// The rule most tests here fire: ETHUSDT on Binance crossing up through 3000.
fn eth_crossing_3000() -> RuleSpec {
    RuleSpec::price(
        "binance",
        "ETHUSDT",
        Condition::CrossingUp,
        "3000".parse().expect("d"),
    )
}

/// An ETHUSDT trade on Binance, now.
fn eth_tick(price: &str, id: &str) -> Tick {
    Tick {
        venue: "binance".into(),
        symbol: "ETHUSDT".into(),
        price: price.parse::<Decimal>().expect("price"),
        qty: Decimal::ONE,
        ts: tickwatch_schema::db::now_ms(),
        trade_id: Some(id.into()),
    }
}

/// `tickwatch run` in-process: topology, migrations, every role, the API, the bot, the demo
/// replay (at full speed here) and the demo user, whose alerts reach the admin's chat.
#[tokio::test]
async fn tickwatch_run_turns_the_demo_replay_into_alerts_in_the_admins_chat() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeTelegram::start().await.expect("fake telegram");
    let db = TestDb::sqlite().await.expect("sqlite");
    let mut config = Config {
        broker: broker_config("run"),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.telegram.token = Some("1:TEST".into());
    config.telegram.api_url = fake.url();
    config.telegram.admin_chats = vec![CHAT];
    config.api.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    config.run.demo_speed = "max".into();
    let config = config.resolved().expect("valid configuration");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });

    // The demo's `crossing_down 20000` and `crossing_up 21500` alerts fire on the replay.
    // They reach the chat behind the demo's other messages at Telegram's one message a
    // second per chat: about a minute alone, up to two with the whole suite running.
    let alerts_arrived = wait_until(Duration::from_secs(240), async || {
        let texts: Vec<String> = fake
            .delivered_to(CHAT)
            .into_iter()
            .map(|m| m.text)
            .collect();
        texts.iter().any(|t| t.contains("20,000")) && texts.iter().any(|t| t.contains("21,500"))
    })
    .await;
    let texts: Vec<String> = fake
        .delivered_to(CHAT)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(alerts_arrived, "alerts in the admin's chat: {texts:#?}");
    assert!(texts.iter().all(|t| !t.is_empty()));
    // Every candle of the replay was recorded, and signals were computed and stored.
    let all_candles = wait_until(Duration::from_secs(120), async || {
        candle::Entity::find().count(&db.conn).await.unwrap_or(0) == 4_320
    })
    .await;
    assert!(all_candles, "the recorder stored all 4,320 bars");
    assert!(
        signal::Entity::find()
            .count(&db.conn)
            .await
            .expect("signals")
            > 0,
        "signals were stored"
    );
    let events = alert_event::Entity::find()
        .all(&db.conn)
        .await
        .expect("events");
    assert!(
        events.iter().all(|e| e.published),
        "every stored firing was published"
    );
    // No alert reached the chat twice (each price alert text names its price and time).
    let alert_texts: Vec<&String> = texts.iter().filter(|t| t.starts_with("🔔")).collect();
    let distinct: std::collections::HashSet<&String> = alert_texts.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        alert_texts.len(),
        "an alert arrived twice: {alert_texts:#?}"
    );
    assert_eq!(
        alert_texts.len(),
        events.len(),
        "one message per stored firing"
    );
    shutdown.cancel();
    run.await
        .expect("join")
        .expect("tickwatch run stops cleanly");
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
}

/// What the README promises a new user: `tickwatch run` with the defaults (demo replay at
/// 600×, no Telegram token) shows signals, fired alerts and notifications written to the
/// log — labelled, never counted as sent — within a minute.
#[tokio::test]
async fn tickwatch_run_with_the_defaults_shows_alerts_within_a_minute() {
    use sea_orm::{ColumnTrait, QueryFilter};
    use tickwatch_schema::db::entity::notification;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::sqlite().await.expect("sqlite");
    let mut config = Config {
        broker: broker_config("defaults"),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.api.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    assert_eq!(config.run.demo_speed, "600x", "the default under test");
    assert!(config.telegram.token.is_none());
    let config = config.resolved().expect("valid configuration");
    let shutdown = CancellationToken::new();
    let started = std::time::Instant::now();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });
    let logged = notification::Column::Status.eq("logged");
    let shown = wait_until(Duration::from_secs(60), async || {
        let signals = signal::Entity::find().count(&db.conn).await.unwrap_or(0);
        let fired = alert_event::Entity::find()
            .count(&db.conn)
            .await
            .unwrap_or(0);
        let written = notification::Entity::find()
            .filter(logged.clone())
            .count(&db.conn)
            .await
            .unwrap_or(0);
        signals > 0 && fired > 0 && written > 0
    })
    .await;
    assert!(
        shown,
        "signals, alerts and logged notifications within a minute (after {:?})",
        started.elapsed()
    );
    let sent = notification::Entity::find()
        .filter(notification::Column::Status.eq("sent"))
        .count(&db.conn)
        .await
        .expect("count");
    assert_eq!(sent, 0, "nothing claims to have been sent without a token");

    shutdown.cancel();
    run.await
        .expect("join")
        .expect("tickwatch run stops cleanly");
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
}

/// A user registers with the bot, sets an alert, a tick crosses it, and the notification
/// arrives in the same chat — once, even though the tick is delivered twice.
#[tokio::test]
async fn a_bot_users_alert_fires_once_into_their_chat() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeTelegram::start().await.expect("fake telegram");
    let db = TestDb::sqlite().await.expect("sqlite");
    let mut config = Config {
        broker: broker_config("bot"),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.telegram.token = Some("1:TEST".into());
    config.telegram.api_url = fake.url();
    config.api.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    config.run.demo_user = false;
    config.run.sources = vec!["webhook".into()];
    config.producers.webhook.addr = "127.0.0.1:0".parse().expect("addr");
    config.bot.poll_timeout_s = 1;
    let config = config.resolved().expect("valid configuration");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });
    let user_chat = 5151;
    let say = async |text: &str| {
        let before = fake.delivered_to(user_chat).len();
        fake.push_message(user_chat, user_chat, text);
        let replied = wait_until(Duration::from_secs(20), async || {
            fake.delivered_to(user_chat).len() > before
        })
        .await;
        assert!(replied, "the bot replied to {text:?}");
        fake.delivered_to(user_chat)
            .last()
            .map(|m| m.text.clone())
            .unwrap_or_default()
    };
    say("/start").await;
    let registered = say("/register").await;
    assert!(!registered.is_empty());
    let set = say("/alert BTCUSDT crossing_up 65000").await;
    assert!(set.contains("65000") || set.contains("65,000"), "{set}");

    let broker = Broker::connect(config.broker.clone(), "test-feed")
        .await
        .expect("broker");
    let publisher = Publisher::start(&broker, "test-feed");
    let tick = |price: &str, id: &str| Tick {
        venue: "binance".into(),
        symbol: "BTCUSDT".into(),
        price: price.parse::<Decimal>().expect("price"),
        qty: Decimal::ONE,
        ts: tickwatch_schema::db::now_ms(),
        trade_id: Some(id.into()),
    };
    // Below, then across: the crossing fires. The crossing tick is published twice, as a
    // producer would after a lost confirm.
    publisher
        .publish(Exchange::Market, &tick("64000", "1"))
        .await
        .expect("tick");
    let crossing = tick("65010", "2");
    publisher
        .publish(Exchange::Market, &crossing)
        .await
        .expect("tick");
    publisher
        .publish(Exchange::Market, &crossing)
        .await
        .expect("tick again");
    let before = fake.delivered_to(user_chat).len();
    let notified = wait_until(Duration::from_secs(30), async || {
        fake.delivered_to(user_chat)
            .iter()
            .skip(before)
            .any(|m| m.text.contains("BTCUSDT"))
    })
    .await;
    assert!(
        notified,
        "the alert reached the user's chat: {:#?}",
        fake.delivered_to(user_chat)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alerts: Vec<_> = fake
        .delivered_to(user_chat)
        .into_iter()
        .skip(before)
        .filter(|m| m.text.contains("BTCUSDT"))
        .collect();
    assert_eq!(alerts.len(), 1, "exactly one notification: {alerts:#?}");
    assert_eq!(
        alert_event::Entity::find()
            .count(&db.conn)
            .await
            .expect("events"),
        1
    );
    // The alerts role's checkpoint marks the event published and records the tick's price
    // as the market's latest (the recorder is not sent ticks).
    let checkpointed = wait_until(Duration::from_secs(10), async || {
        let event = alert_event::Entity::find()
            .one(&db.conn)
            .await
            .ok()
            .flatten();
        let price =
            latest_price::Entity::find_by_id(("binance".to_string(), "BTCUSDT".to_string()))
                .one(&db.conn)
                .await
                .ok()
                .flatten();
        event.is_some_and(|e| e.published)
            && price.is_some_and(|p| p.price.parse::<Decimal>().ok() == crossing.price.into())
    })
    .await;
    assert!(
        checkpointed,
        "the event marked published and the latest price 65010"
    );
    // A `once` rule that fired is off: its notification offers deleting it only.
    let buttons = |m: &tickwatch_tests::fake_telegram::SentMessage| -> Vec<String> {
        m.reply_markup
            .as_ref()
            .and_then(|k| k["inline_keyboard"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["callback_data"].as_str().map(str::to_string))
            .collect()
    };
    let rules = alert_rule::Entity::find()
        .all(&db.conn)
        .await
        .expect("rules");
    assert_eq!(buttons(&alerts[0]), vec![format!("ndel:{}", rules[0].id)]);

    // An every-time rule's notification: pause, delete, snooze — and they work in place.
    say("/alert BTCUSDT < 64500 every 1m").await;
    let rule_id = alert_rule::Entity::find()
        .all(&db.conn)
        .await
        .expect("rules")
        .iter()
        .map(|r| r.id)
        .max()
        .expect("the new rule");
    let before = fake.delivered_to(user_chat).len();
    // The rule reaches the alerts role as a control message, beside the market's queue:
    // ticks go on until one finds it (a state rule: the first one it sees fires it).
    let mut fell = false;
    for n in 0..60 {
        publisher
            .publish(Exchange::Market, &tick("64400", &format!("fall{n}")))
            .await
            .expect("tick");
        fell = wait_until(Duration::from_millis(500), async || {
            fake.delivered_to(user_chat)
                .iter()
                .skip(before)
                .any(|m| m.text.contains("64,500"))
        })
        .await;
        if fell {
            break;
        }
    }
    assert!(fell, "the fall reached the chat");
    let fell = fake
        .delivered_to(user_chat)
        .into_iter()
        .skip(before)
        .find(|m| m.text.contains("64,500"))
        .expect("the notification");
    assert_eq!(
        buttons(&fell),
        ["npause", "ndel", "nsnooze"].map(|a| format!("{a}:{rule_id}"))
    );
    let message_id = fell.message_id.expect("delivered");
    let press = async |data: &str| -> (String, Vec<String>) {
        let edits = fake.markup_edits().len();
        fake.push_callback_query(user_chat, user_chat, message_id, data);
        assert!(
            fake.wait_for_markup_edits(edits + 1, Duration::from_secs(20))
                .await,
            "{data} changed the buttons in place"
        );
        let notice = fake
            .callback_answers()
            .last()
            .and_then(|(_, text)| text.clone())
            .unwrap_or_default();
        let markup = fake.markup_edits().last().cloned().expect("an edit");
        assert_eq!(
            markup.message_id, message_id,
            "the notification's own buttons"
        );
        let now = tickwatch_tests::fake_telegram::SentMessage {
            reply_markup: markup.reply_markup,
            ..fell.clone()
        };
        (notice, buttons(&now))
    };
    let stored = async || {
        alert_rule::Entity::find_by_id(rule_id)
            .one(&db.conn)
            .await
            .expect("read")
    };
    let (notice, now) = press(&format!("nsnooze:{rule_id}")).await;
    assert!(notice.contains("snoozed until"), "{notice}");
    assert_eq!(now, ["nresume", "ndel"].map(|a| format!("{a}:{rule_id}")));
    let snoozed = stored().await.expect("kept");
    assert!(!snoozed.active && snoozed.snoozed_until.is_some());
    let services = Services::new(db.conn.clone(), None);
    let in_two_hours = tickwatch_schema::db::now_ms() + 7_200_000;
    // Paused by hand while snoozed: the snooze ends, and the hour passing resumes nothing.
    let (notice, now) = press(&format!("npause:{rule_id}")).await;
    assert!(notice.contains("paused"), "{notice}");
    assert_eq!(now, ["nresume", "ndel"].map(|a| format!("{a}:{rule_id}")));
    let paused = stored().await.expect("kept");
    assert!(!paused.active && paused.snoozed_until.is_none());
    assert_eq!(
        services.resume_snoozed(in_two_hours).await.expect("sweep"),
        0
    );
    let (notice, now) = press(&format!("nresume:{rule_id}")).await;
    assert!(notice.contains("resumed"), "{notice}");
    assert_eq!(now.len(), 3);
    // Snoozed again, the hour passes: the bot's sweep resumes it (run here at that time).
    press(&format!("nsnooze:{rule_id}")).await;
    assert_eq!(
        services.resume_snoozed(in_two_hours).await.expect("sweep"),
        1
    );
    let resumed = stored().await.expect("kept");
    assert!(resumed.active && resumed.snoozed_until.is_none());
    let (notice, now) = press(&format!("ndel:{rule_id}")).await;
    assert!(notice.contains("deleted"), "{notice}");
    assert!(
        now.is_empty(),
        "no buttons left on a deleted alert's notification"
    );
    assert!(stored().await.is_none());
    let (notice, _) = press(&format!("npause:{rule_id}")).await;
    assert!(notice.contains("no longer exists"), "{notice}");
    // The notification's text was never replaced.
    assert!(fake.edits().iter().all(|e| e.message_id != message_id));

    publisher.close().await;
    shutdown.cancel();
    run.await.expect("join").expect("clean stop");
    Topology::standard(&config.broker)
        .expect("topology")
        .delete(&broker)
        .await
        .expect("delete");
    broker.close();
    db.close().await.expect("close");
}

/// The alerts consumer dies between storing a firing and publishing it: the restarted
/// consumer publishes it when the symbol's first message arrives — before the next
/// crossing, already queued behind it, fires (the periodic outbox sweep would send it 10 s
/// late, after that one) — and the user gets each notification once, in order.
#[tokio::test]
async fn a_crash_between_storing_and_publishing_loses_nothing_and_repeats_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    for backend in ["sqlite", "postgres"] {
        let fake = FakeTelegram::start().await.expect("fake telegram");
        let db = if backend == "sqlite" {
            TestDb::sqlite().await
        } else {
            TestDb::postgres().await
        }
        .expect("db");
        let (broker, topology) = broker_with_topology("crash").await;
        let services = Services::new(db.conn.clone(), Some(broker.clone()));
        let user = user_in_chat(&services, "carol").await;
        let mut every_crossing = eth_crossing_3000();
        every_crossing.trigger = tickwatch_schema::rule::Trigger::EveryTime;
        services
            .create_rule(user.id, every_crossing)
            .await
            .expect("rule");
        services.close().await;

        let notifier_config = tickwatch_notifier::NotifierConfig {
            telegram_bot_token: Some(tickwatch_notifier::Secret::new("1:TEST")),
            telegram_api_url: fake.url(),
            ..Default::default()
        };
        let stop_notifier = CancellationToken::new();
        let notifier = tokio::spawn({
            let (b, d, c, s) = (
                broker.clone(),
                db.conn.clone(),
                notifier_config.clone(),
                stop_notifier.clone(),
            );
            async move { tickwatch_notifier::adapter::run(&b, d, &c, s).await }
        });

        // The first alerts consumer "crashes" right after storing: it is stopped at once.
        let crashed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_first = CancellationToken::new();
        let hooks = tickwatch_alerts::adapter::Hooks {
            after_store: Some({
                let (crashed, stop) = (crashed.clone(), stop_first.clone());
                std::sync::Arc::new(move || {
                    crashed.store(true, std::sync::atomic::Ordering::SeqCst);
                    stop.cancel();
                    true
                })
            }),
            ..Default::default()
        };
        let first = tokio::spawn({
            let (b, d, s) = (broker.clone(), db.conn.clone(), stop_first.clone());
            async move {
                tickwatch_alerts::adapter::run_with_hooks(&b, d, &Default::default(), s, hooks)
                    .await
            }
        });
        let publisher = Publisher::start(&broker, "test");
        let tick = eth_tick;
        publisher
            .publish(Exchange::Market, &tick("2990", "a"))
            .await
            .expect("tick");
        publisher
            .publish(Exchange::Market, &tick("3010", "b"))
            .await
            .expect("tick");
        assert!(
            wait_until(Duration::from_secs(30), async || crashed
                .load(std::sync::atomic::Ordering::SeqCst))
            .await,
            "the firing was stored, then the consumer died"
        );
        let _ = first.await;
        let stored = alert_event::Entity::find()
            .all(&db.conn)
            .await
            .expect("events");
        assert_eq!(stored.len(), 1, "stored once");
        assert!(!stored[0].published, "not published before the crash");
        assert!(fake.delivered_to(CHAT).is_empty(), "nothing sent yet");

        // The market goes on: a fall and the next crossing wait behind the redelivered one.
        for (price, id) in [("2995", "c"), ("3020", "d")] {
            publisher
                .publish(Exchange::Market, &tick(price, id))
                .await
                .expect("tick");
        }
        // A new consumer.
        let stop_second = CancellationToken::new();
        let second = tokio::spawn({
            let (b, d, s) = (broker.clone(), db.conn.clone(), stop_second.clone());
            async move { tickwatch_alerts::adapter::run(&b, d, &Default::default(), s).await }
        });
        let delivered = wait_until(Duration::from_secs(40), async || {
            fake.delivered_to(CHAT).len() >= 2
        })
        .await;
        assert!(
            delivered,
            "both firings reached the user after the restart ({backend})"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let texts: Vec<String> = fake
            .delivered_to(CHAT)
            .into_iter()
            .map(|m| m.visible_text.unwrap_or_default())
            .collect();
        assert_eq!(
            texts.len(),
            2,
            "each notification once ({backend}): {texts:?}"
        );
        assert!(
            texts[0].contains("3,010") && texts[1].contains("3,020"),
            "the stored firing first, then the next one ({backend}): {texts:?}"
        );
        let events = alert_event::Entity::find()
            .all(&db.conn)
            .await
            .expect("events");
        assert!(events.len() == 2 && events.iter().all(|e| e.published));

        stop_second.cancel();
        second.await.expect("join").expect("clean");
        stop_notifier.cancel();
        notifier.await.expect("join").expect("clean");
        publisher.close().await;
        topology.delete(&broker).await.expect("delete");
        broker.close();
        db.close().await.expect("close");
    }
}

/// The database fails once while a firing is being stored, and later ticks are already
/// queued behind the one that fired: the tick is retried in place (not sent through the
/// retry tiers, where it would come back after the later ticks had moved the engine past
/// the cross), so the firing is stored and published once.
#[tokio::test]
async fn a_failure_after_evaluating_retries_the_tick_in_place_and_the_firing_is_kept() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::sqlite().await.expect("db");
    let (broker, topology) = broker_with_topology("inplace").await;
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let user = user_in_chat(&services, "dave").await;
    services
        .create_rule(user.id, eth_crossing_3000())
        .await
        .expect("rule");
    services.close().await;

    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hooks = tickwatch_alerts::adapter::Hooks {
        before_store: Some({
            let failures = failures.clone();
            std::sync::Arc::new(move || {
                failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
            })
        }),
        ..Default::default()
    };
    let publisher = Publisher::start(&broker, "test");
    let tick = eth_tick;
    // Queued before the consumer starts, so the later ones wait behind the crossing one.
    for (price, id) in [("2990", "a"), ("3010", "b"), ("3020", "c"), ("3030", "d")] {
        publisher
            .publish(Exchange::Market, &tick(price, id))
            .await
            .expect("tick");
    }
    let stop = CancellationToken::new();
    let alerts = tokio::spawn({
        let (b, d, s) = (broker.clone(), db.conn.clone(), stop.clone());
        async move {
            tickwatch_alerts::adapter::run_with_hooks(&b, d, &Default::default(), s, hooks).await
        }
    });
    let fired = wait_until(Duration::from_secs(30), async || {
        alert_event::Entity::find()
            .all(&db.conn)
            .await
            .is_ok_and(|events| events.len() == 1 && events[0].published)
    })
    .await;
    assert!(fired, "the crossing survived the failure");
    assert!(
        failures.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the failure was injected and the tick retried"
    );
    let events = alert_event::Entity::find()
        .all(&db.conn)
        .await
        .expect("events");
    assert_eq!(events[0].price, "3010", "fired by the crossing tick");

    stop.cancel();
    alerts.await.expect("join").expect("clean");
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}

/// The alerts instance's private control queue is lost with its connection, and so are
/// the rule changes announced while it was gone. After the reconnect the instance reloads
/// its rule book: a rule created meanwhile fires, a rule removed meanwhile does not.
#[tokio::test]
async fn after_a_lost_control_connection_the_rule_book_is_reloaded() {
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, QueryFilter};
    use tickwatch_schema::db::entity::alert_rule;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::sqlite().await.expect("db");
    let (broker, topology) = broker_with_topology("reload").await;
    let config = broker.config().clone();
    // Changes written without announcing them: what a lost control queue misses.
    let silent = Services::new(db.conn.clone(), None);
    let user = user_in_chat(&silent, "erin").await;
    let crossing = || eth_crossing_3000();
    let removed = silent.create_rule(user.id, crossing()).await.expect("rule");

    let role = format!("{}-alerts", config.prefix);
    let alerts_broker = Broker::new(config.clone(), &role).expect("alerts broker");
    let loads = Arc::new(AtomicUsize::new(0));
    let reloads = Arc::new(AtomicUsize::new(0));
    let count = |n: &Arc<AtomicUsize>| -> Option<Arc<dyn Fn() + Send + Sync>> {
        let n = n.clone();
        Some(Arc::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
        }))
    };
    let hooks = tickwatch_alerts::adapter::Hooks {
        after_load: count(&loads),
        after_reload: count(&reloads),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let alerts = tokio::spawn({
        let (b, d, s) = (alerts_broker.clone(), db.conn.clone(), stop.clone());
        async move {
            tickwatch_alerts::adapter::run_with_hooks(&b, d, &Default::default(), s, hooks).await
        }
    });
    assert!(
        wait_until(Duration::from_secs(30), async || loads
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the rule book was loaded"
    );

    alert_rule::Entity::update_many()
        .col_expr(alert_rule::Column::Active, Expr::value(false))
        .col_expr(
            alert_rule::Column::Version,
            Expr::col(alert_rule::Column::Version).add(1),
        )
        .filter(alert_rule::Column::Id.eq(removed.id))
        .exec(&db.conn)
        .await
        .expect("deactivate");
    let added = silent.create_rule(user.id, crossing()).await.expect("rule");
    // The management API lists a new connection after its next statistics round.
    assert!(
        wait_until(Duration::from_secs(30), async || {
            tickwatch_tests::broker::kill_connections(&config, &role).await >= 1
        })
        .await,
        "the alerts connection was killed"
    );
    assert!(
        wait_until(Duration::from_secs(30), async || reloads
            .load(Ordering::SeqCst)
            >= 1)
        .await,
        "the rule book was reloaded after the reconnect"
    );

    let publisher = Publisher::start(&broker, "test");
    for (price, id) in [("2990", "a"), ("3010", "b")] {
        let tick = eth_tick(price, id);
        publisher
            .publish(Exchange::Market, &tick)
            .await
            .expect("tick");
    }
    let fired = wait_until(Duration::from_secs(30), async || {
        alert_event::Entity::find()
            .all(&db.conn)
            .await
            .is_ok_and(|events| !events.is_empty())
    })
    .await;
    assert!(fired, "the rule created while the queue was gone fired");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rules: Vec<i64> = alert_event::Entity::find()
        .all(&db.conn)
        .await
        .expect("events")
        .iter()
        .map(|e| e.rule_id)
        .collect();
    assert_eq!(rules, [added.id], "only the rule still stored fired");

    stop.cancel();
    alerts.await.expect("join").expect("clean");
    publisher.close().await;
    silent.close().await;
    topology.delete(&broker).await.expect("delete");
    alerts_broker.close();
    broker.close();
    db.close().await.expect("close");
}

/// The outbox sweep publishes a stored firing left unpublished for longer than a live
/// handler could still be working on it, marks it, and leaves younger ones alone.
#[tokio::test]
async fn the_outbox_sweep_publishes_abandoned_firings_once() {
    use sea_orm::ActiveValue::Set;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::postgres().await.expect("db");
    let (broker, topology) = broker_with_topology("sweep").await;
    let services = Services::new(db.conn.clone(), None);
    let user = user_in_chat(&services, "frank").await;
    let rule = services
        .create_rule(user.id, eth_crossing_3000())
        .await
        .expect("rule");
    let now = tickwatch_schema::db::now_ms();
    let event = |age_ms: i64| alert_event::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        rule_id: Set(rule.id),
        user_id: Set(user.id),
        venue: Set("binance".into()),
        symbol: Set("ETHUSDT".into()),
        condition: Set("crossing_up".into()),
        threshold: Set("3000".into()),
        price: Set("3010".into()),
        ts: Set(now - age_ms),
        text: Set("ETHUSDT crossed 3000".into()),
        published: Set(false),
        created_at: Set(now - age_ms),
    };
    let abandoned = alert_event::Entity::insert(event(120_000))
        .exec(&db.conn)
        .await
        .expect("old event")
        .last_insert_id;
    let recent = alert_event::Entity::insert(event(1_000))
        .exec(&db.conn)
        .await
        .expect("recent event")
        .last_insert_id;

    let publisher = Publisher::start(&broker, "test");
    let sweep = || async {
        tickwatch_alerts::adapter::sweep_outbox(
            &db.conn,
            &publisher,
            90_000,
            &Default::default(),
            &Default::default(),
        )
        .await
        .expect("sweep")
    };
    assert_eq!(sweep().await, 1, "only the abandoned firing");
    let published = |id: String| {
        let conn = db.conn.clone();
        async move {
            alert_event::Entity::find_by_id(id)
                .one(&conn)
                .await
                .expect("event")
                .expect("stored")
                .published
        }
    };
    assert!(published(abandoned).await);
    assert!(
        !published(recent).await,
        "a live handler may still publish it"
    );
    assert_eq!(sweep().await, 0, "published once");

    publisher.close().await;
    services.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}

/// The start-up protocol: a rule created after the alerts instance read its rule book, but
/// before it went live, is not missed — its announcement was buffered by the control
/// queue, which was consuming before the load, and applies on top of the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_during_the_start_up_load_is_not_missed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::sqlite().await.expect("db");
    let (broker, topology) = broker_with_topology("startup").await;
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let user = user_in_chat(&services, "gina").await;

    // The hook holds the instance between its load and going live until the test says so.
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let loaded_tx = std::sync::Mutex::new(Some(loaded_tx));
    let go_rx = std::sync::Mutex::new(go_rx);
    let received = Arc::new(AtomicUsize::new(0));
    let hooks = tickwatch_alerts::adapter::Hooks {
        after_load: Some(std::sync::Arc::new(move || {
            if let Some(tx) = loaded_tx.lock().expect("lock").take() {
                let _ = tx.send(());
            }
            let _ = go_rx
                .lock()
                .expect("lock")
                .recv_timeout(Duration::from_secs(30));
        })),
        control_received: Some({
            let received = received.clone();
            Arc::new(move || {
                received.fetch_add(1, Ordering::SeqCst);
            })
        }),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let alerts = tokio::spawn({
        let (b, d, s) = (broker.clone(), db.conn.clone(), stop.clone());
        async move {
            tickwatch_alerts::adapter::run_with_hooks(&b, d, &Default::default(), s, hooks).await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), loaded_rx)
        .await
        .expect("the instance loaded its rule book")
        .expect("hook");
    // Created and announced after the load.
    let rule = services
        .create_rule(user.id, eth_crossing_3000())
        .await
        .expect("rule");
    assert!(
        wait_until(Duration::from_secs(30), async || received
            .load(Ordering::SeqCst)
            >= 1)
        .await,
        "the announcement reached the instance"
    );
    go_tx.send(()).expect("go");

    let publisher = Publisher::start(&broker, "test");
    for (price, id) in [("2990", "a"), ("3010", "b")] {
        let tick = eth_tick(price, id);
        publisher
            .publish(Exchange::Market, &tick)
            .await
            .expect("tick");
    }
    let fired = wait_until(Duration::from_secs(30), async || {
        alert_event::Entity::find()
            .all(&db.conn)
            .await
            .is_ok_and(|events| events.iter().any(|e| e.rule_id == rule.id))
    })
    .await;
    assert!(fired, "the rule created during the load fired");

    stop.cancel();
    alerts.await.expect("join").expect("clean");
    publisher.close().await;
    services.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}

/// A bar-close alert (`crossing_up 3000`, once per 1h bar close) on a symbol the alerts role
/// has never seen: the previous close comes from the candle store, a tick through the level
/// does not fire it, and the closed hourly candle above it does — once, into the user's
/// chat, at the candle's close price.
#[tokio::test]
async fn a_bar_close_alert_fires_at_the_candle_close_with_the_stored_previous_close() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    for backend in ["sqlite", "postgres"] {
        let fake = FakeTelegram::start().await.expect("fake telegram");
        let db = if backend == "sqlite" {
            TestDb::sqlite().await
        } else {
            TestDb::postgres().await
        }
        .expect("db");
        let (broker, topology) = broker_with_topology("barclose").await;
        let services = Services::new(db.conn.clone(), Some(broker.clone()));
        let user = user_in_chat(&services, "dana").await;
        let mut at_close = eth_crossing_3000();
        at_close.trigger = tickwatch_schema::rule::Trigger::OncePerBarClose;
        at_close.interval = Some(tickwatch_schema::wire::Interval::H1);
        services.create_rule(user.id, at_close).await.expect("rule");
        // An indicator rule on the same closes: the SMA warms up on the stored candle.
        let above_average =
            RuleSpec::expression("binance", "ETHUSDT", "close(1h) > sma(2,1h) and volume > 0");
        services
            .create_rule(user.id, above_average)
            .await
            .expect("expression rule");
        services.close().await;

        let hour = 3_600_000;
        let this_hour = tickwatch_schema::db::now_ms() / hour * hour;
        let bar = |open_ts: i64, close: &str| tickwatch_schema::wire::Candle {
            venue: "binance".into(),
            symbol: "ETHUSDT".into(),
            interval: tickwatch_schema::wire::Interval::H1,
            open_ts,
            open: close.parse().expect("d"),
            high: close.parse().expect("d"),
            low: close.parse().expect("d"),
            close: close.parse().expect("d"),
            volume: Decimal::ONE,
            trades: None,
            closed: true,
        };
        // What the recorder stored before: the hour before last closed under the level.
        tickwatch_recorder::store::upsert_candles(&db.conn, &[bar(this_hour - 2 * hour, "2990")])
            .await
            .expect("stored candle");

        let notifier_config = tickwatch_notifier::NotifierConfig {
            telegram_bot_token: Some(tickwatch_notifier::Secret::new("1:TEST")),
            telegram_api_url: fake.url(),
            ..Default::default()
        };
        let stop = CancellationToken::new();
        let notifier = tokio::spawn({
            let (b, d, c, s) = (
                broker.clone(),
                db.conn.clone(),
                notifier_config.clone(),
                stop.clone(),
            );
            async move { tickwatch_notifier::adapter::run(&b, d, &c, s).await }
        });
        let alerts = tokio::spawn({
            let (b, d, s) = (broker.clone(), db.conn.clone(), stop.clone());
            async move { tickwatch_alerts::adapter::run(&b, d, &Default::default(), s).await }
        });
        let publisher = Publisher::start(&broker, "test");
        for tick in [eth_tick("2995", "a"), eth_tick("3005", "b")] {
            publisher
                .publish(Exchange::Market, &tick)
                .await
                .expect("tick");
        }
        publisher
            .publish(Exchange::Market, &bar(this_hour - hour, "3010"))
            .await
            .expect("candle");
        assert!(
            wait_until(Duration::from_secs(30), async || {
                fake.delivered_to(CHAT).len() >= 2
            })
            .await,
            "the bar close reached the user ({backend})"
        );
        let texts: Vec<String> = fake
            .delivered_to(CHAT)
            .into_iter()
            .map(|m| m.visible_text.unwrap_or_default())
            .collect();
        assert!(
            texts.iter().all(|t| t.contains("3,010")),
            "at the close's price, not the tick's ({backend}): {texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("close(1h) 3010 > sma(2,1h) 3000")),
            "the expression with the values it read ({backend}): {texts:?}"
        );
        let events = alert_event::Entity::find()
            .all(&db.conn)
            .await
            .expect("events");
        assert_eq!(events.len(), 2, "the ticks fired nothing ({backend})");
        assert!(
            events.iter().all(|e| e.ts == this_hour - 1),
            "at the bar's last millisecond"
        );

        stop.cancel();
        alerts.await.expect("join").expect("clean");
        notifier.await.expect("join").expect("clean");
        publisher.close().await;
        topology.delete(&broker).await.expect("delete");
        broker.close();
        db.close().await.expect("close");
    }
}
