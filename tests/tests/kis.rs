//! Korean stocks live: `tickwatch run` with the KIS source, against the fake KIS, the real
//! RabbitMQ, a fresh SQLite database and the fake Telegram — KRX trades become ticks, 1m and
//! 1d candles on the Seoul session (the day closing at 15:30 KST), and a user's alert on
//! 삼성전자 reaches their chat.

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tickwatch::config::Config;
use tickwatch_gateway::Services;
use tickwatch_schema::db::entity::candle;
use tickwatch_schema::names::WorkQueue;
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_tests::db::TestDb;
use tickwatch_tests::{FakeKis, FakeTelegram, KisTrade, wait_until};
use tokio_util::sync::CancellationToken;

const CHAT: i64 = 8282;

fn trade(
    date: &str,
    time: &str,
    symbol: &str,
    price: &str,
    volume: u64,
    accumulated: u64,
) -> KisTrade {
    KisTrade {
        symbol: symbol.into(),
        date: date.into(),
        time: time.into(),
        price: price.into(),
        volume,
        accumulated,
    }
}

/// `YYYY-MM-DD HH:MM` in Seoul as epoch ms.
fn kst(text: &str) -> i64 {
    tickwatch_schema::history::parse_ts(&format!("{}:00+09:00", text.replace(' ', "T")))
        .expect("time")
}

#[tokio::test]
async fn tickwatch_run_with_kis_turns_krx_trades_into_candles_and_alerts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telegram = FakeTelegram::start().await.expect("fake telegram");
    let kis = FakeKis::start().await.expect("fake kis");
    let db = TestDb::sqlite().await.expect("sqlite");

    // A user with an alert on 삼성전자, stored before the run starts (its rule book loads it).
    let services = Services::new(db.conn.clone(), None);
    let user = services
        .create_user(tickwatch_gateway::services::users::NewUser {
            name: "minji".into(),
            telegram_chat_id: Some(CHAT),
            ..Default::default()
        })
        .await
        .expect("user");
    services
        .create_rule(
            user.id,
            RuleSpec::price(
                "krx",
                "005930",
                Condition::GreaterThan,
                "71000".parse().expect("d"),
            ),
        )
        .await
        .expect("rule");

    let mut config = Config {
        broker: tickwatch_tests::test_broker_config("kis"),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.telegram.token = Some("1:TEST".into());
    config.telegram.api_url = telegram.url();
    config.api.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    config.run.sources = vec!["kis".into()];
    config.run.demo_user = false;
    let kis_config = &mut config.producers.kis;
    kis_config.rest_url = kis.rest_url();
    kis_config.ws_url = kis.ws_url();
    kis_config.app_key = Some(tickwatch_producers::config::Secret::new("PSfakeappkey"));
    kis_config.app_secret = Some(tickwatch_producers::config::Secret::new("fakesecret"));
    kis_config.symbols = vec!["005930".into(), "000660".into()];
    let config = config.resolved().expect("valid configuration");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });

    let both: std::collections::BTreeSet<String> = ["000660", "005930"].map(String::from).into();
    assert!(
        wait_until(Duration::from_secs(60), async || kis.subscribed() == both).await,
        "the feed subscribed both symbols: {:?}",
        kis.subscriptions()
    );
    let names = config.broker.names().expect("names");
    let work_queues = [WorkQueue::Alerts, WorkQueue::Recorder].map(|q| names.queue(q));
    assert!(
        tickwatch_tests::wait_for_consumers(&config.broker, &work_queues, Duration::from_secs(60))
            .await,
        "the alerts role and the recorder consume"
    );

    // The feed starts mid-session: the first day's intraday candles are incomplete and not
    // published, its day candle is (KIS sends the day's open, high, low and volume with
    // every trade).
    assert_eq!(
        kis.trade(&[trade("20260303", "150000", "005930", "70000", 1, 1)]),
        1
    );
    assert_eq!(
        kis.trade(&[
            trade("20260304", "090000", "005930", "70500", 10, 10),
            trade("20260304", "090000", "000660", "180000", 2, 2),
            trade("20260304", "090030", "005930", "71500", 5, 15),
        ]),
        1,
        "one session holds both symbols"
    );
    // After the close (15:30 KST): a trade, but not part of the day's candle.
    kis.trade(&[trade("20260304", "153500", "005930", "72000", 3, 18)]);
    kis.pingpong();

    let alerted = wait_until(Duration::from_secs(60), async || {
        telegram
            .delivered_to(CHAT)
            .iter()
            .any(|m| m.text.contains("₩71,500"))
    })
    .await;
    assert!(
        alerted,
        "the alert reached the chat: {:#?}",
        telegram.delivered_to(CHAT)
    );

    let samsung = || {
        candle::Entity::find()
            .filter(candle::Column::Venue.eq("krx"))
            .filter(candle::Column::Symbol.eq("005930"))
    };
    let stored = wait_until(Duration::from_secs(60), async || {
        samsung().all(&db.conn).await.is_ok_and(|c| {
            c.iter()
                .any(|c| c.interval == "1d" && c.open_ts == kst("2026-03-04 00:00"))
                && c.iter().any(|c| c.interval == "1m")
        })
    })
    .await;
    let candles = samsung().all(&db.conn).await.expect("candles");
    assert!(stored, "1m and 1d candles stored: {candles:#?}");
    let day = candles
        .iter()
        .find(|c| c.interval == "1d" && c.open_ts == kst("2026-03-04 00:00"))
        .expect("1d");
    assert_eq!(day.open_ts, kst("2026-03-04 00:00"), "the Seoul day");
    assert_eq!(
        (day.open.as_str(), day.high.as_str(), day.close.as_str()),
        ("70500", "71500", "71500")
    );
    assert_eq!(day.volume, "15", "the 15:35 trade is after the close");
    let minute = candles
        .iter()
        .find(|c| c.interval == "1m" && c.open_ts == kst("2026-03-04 09:00"))
        .expect("the 09:00 minute");
    assert_eq!(
        (minute.open.as_str(), minute.close.as_str()),
        ("70500", "71500")
    );
    assert!(
        candles
            .iter()
            .all(|c| c.open_ts >= kst("2026-03-04 00:00") || c.interval == "1d"),
        "no intraday candle of the incomplete first day: {candles:#?}"
    );
    let first = candles
        .iter()
        .find(|c| c.interval == "1d" && c.open_ts == kst("2026-03-03 00:00"))
        .expect("the first day's candle, from KIS's day figures");
    assert_eq!(
        (first.close.as_str(), first.volume.as_str()),
        ("70000", "1")
    );
    assert!(
        wait_until(Duration::from_secs(10), async || kis.pingpong_echoes() >= 1).await,
        "PINGPONG was answered"
    );
    assert_eq!(kis.approvals().len(), 1, "one approval key");

    shutdown.cancel();
    run.await
        .expect("join")
        .expect("tickwatch run stops cleanly");
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
}
