//! History before the first signal, against the fake KIS (its token and daily-chart
//! endpoints serving the real 005930 daily file), the real RabbitMQ and a fresh SQLite:
//!
//! - `tickwatch history load krx 005930` stores the days up to 2023-12-19; then `tickwatch
//!   run` with the KIS source sees the trades of 2023-12-20, and the day's candle gives the
//!   very daily signals (a 52-week high among them) an engine that read the whole file gives
//!   that day — on the first live day, not 260 days later;
//! - a symbol's first alert loads its history in the background, once, with a new access
//!   token when KIS refuses the old one.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tickwatch::config::Config;
use tickwatch::history::LoadRequest;
use tickwatch_gateway::Services;
use tickwatch_producers::history::read_file;
use tickwatch_schema::db::entity::{candle, signal};
use tickwatch_schema::names::WorkQueue;
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_schema::wire::{Candle, Interval};
use tickwatch_signals::{Output, SignalEngine};
use tickwatch_tests::db::TestDb;
use tickwatch_tests::{FakeKis, KisDay, KisMinute, KisTrade, wait_until};
use tokio_util::sync::CancellationToken;

/// The first live day: 74200 74900 73800 74800, 16,870,156 shares.
const LIVE_DAY: &str = "2023-12-20";

fn samsung_days() -> Vec<Candle> {
    let path = tickwatch_schema::history::data_file("005930_1d.csv").expect("data");
    read_file(&path, None, None, None).expect("read")
}

fn kis_day(c: &Candle) -> KisDay {
    // The Seoul date: `YYYY-MM-DD…` of the open (00:00 KST) shifted to UTC's clock.
    let date =
        tickwatch_schema::history::format_ts(c.open_ts + 9 * 3_600_000)[..10].replace('-', "");
    KisDay {
        date,
        open: c.open.to_string(),
        high: c.high.to_string(),
        low: c.low.to_string(),
        close: c.close.to_string(),
        volume: c.volume.to_string(),
    }
}

fn kst(text: &str) -> i64 {
    tickwatch_schema::history::parse_ts(&format!("{text}T00:00:00+09:00")).expect("date")
}

fn trade(date: &str, time: &str, price: &str, volume: u64, accumulated: u64) -> KisTrade {
    KisTrade {
        symbol: "005930".into(),
        date: date.into(),
        time: time.into(),
        price: price.into(),
        volume,
        accumulated,
    }
}

fn config(tag: &str, db: &TestDb, kis: &FakeKis) -> Config {
    let mut config = Config {
        broker: tickwatch_tests::test_broker_config(tag),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.api.addr = "127.0.0.1:0".into();
    config.admin.addr = "127.0.0.1:0".into();
    config.run.sources = vec!["kis".into()];
    config.run.demo_user = false;
    config.history.pace.krx = Duration::ZERO;
    let kis_config = &mut config.producers.kis;
    kis_config.rest_url = kis.rest_url();
    kis_config.ws_url = kis.ws_url();
    kis_config.app_key = Some(tickwatch_producers::config::Secret::new("PSfakeappkey"));
    kis_config.app_secret = Some(tickwatch_producers::config::Secret::new("fakesecret"));
    kis_config.symbols = vec!["005930".into()];
    config.resolved().expect("valid configuration")
}

#[tokio::test]
async fn history_load_gives_daily_signals_on_the_first_live_day() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kis = FakeKis::start().await.expect("fake kis");
    let db = TestDb::sqlite().await.expect("sqlite");
    let days = samsung_days();
    let live = days
        .iter()
        .position(|c| c.open_ts == kst(LIVE_DAY))
        .expect("the live day is in the file");
    kis.set_daily("005930", days[..live].iter().map(kis_day).collect());
    let config = config("history-load", &db, &kis);

    let request = LoadRequest {
        venue: "krx".into(),
        symbols: vec!["005930".into()],
        ..LoadRequest::default()
    };
    tickwatch::history::load_command(&config, &request)
        .await
        .expect("history load");
    let bars = SignalEngine::new(config.signals.clone())
        .expect("engine")
        .warmup_bars_for(Interval::D1);
    assert!(bars >= 260, "a year of days and more: {bars}");
    let stored = tickwatch_recorder::store::recent_candles(
        &db.conn,
        "krx",
        "005930",
        Interval::D1,
        None,
        10_000,
    )
    .await
    .expect("candles");
    assert_eq!(stored.len(), bars, "the warm-up's worth of days");
    assert_eq!(stored.last().expect("last").open_ts, days[live - 1].open_ts);
    assert_eq!(
        stored,
        days[live - bars..live].to_vec(),
        "the days as KIS sent them"
    );
    assert_eq!(kis.tokens().len(), 1, "one access token for the whole load");
    let pages = kis.chart_requests().len();
    assert_eq!(pages, bars.div_ceil(100), "100 days a page");

    // Loading again changes nothing (the store's newest day is from 2023, not recent, so
    // the days are fetched again, and stored once).
    tickwatch::history::load_command(&config, &request)
        .await
        .expect("history load again");
    let again = candle::Entity::find()
        .filter(candle::Column::Symbol.eq("005930"))
        .count(&db.conn)
        .await
        .expect("count");
    assert_eq!(again as usize, bars, "idempotent");

    // The engine that read the whole file: its signals on the live day.
    let mut reference = SignalEngine::new(config.signals.clone()).expect("engine");
    let mut expected = BTreeSet::new();
    for (i, day) in days[..=live].iter().enumerate() {
        let outputs = reference.process(day);
        if i == live {
            expected.extend(
                outputs
                    .iter()
                    .filter_map(Output::as_signal)
                    .map(|s| s.kind.as_str().to_string()),
            );
        }
    }
    assert!(
        expected.contains("new_52w_high"),
        "the live day is a 52-week high: {expected:?}"
    );

    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });
    assert!(
        wait_until(Duration::from_secs(60), async || kis
            .subscribed()
            .contains("005930"))
        .await,
        "the feed subscribed"
    );
    let names = config.broker.names().expect("names");
    assert!(
        tickwatch_tests::wait_for_consumers(
            &config.broker,
            &[names.queue(WorkQueue::Signals)],
            Duration::from_secs(60)
        )
        .await,
        "the signals role consumes"
    );
    // The live day's trades come in one frame (its day figures built up as KIS sends them),
    // and the next morning's trade closes it. (No trade of 2023-12-19: this fake's figures
    // for a day come from its own trades, so a lone one would make a day candle that
    // disagrees with the loaded one — real KIS sends the day's true figures.)
    kis.trade(&[
        trade("20231220", "090000", "74200", 1, 1),
        trade("20231220", "100000", "74900", 1, 2),
        trade("20231220", "110000", "73800", 1, 3),
        trade("20231220", "152000", "74800", 16_870_153, 16_870_156),
    ]);
    kis.trade(&[trade("20231221", "090000", "74600", 1, 1)]);

    let close_ts = kst(LIVE_DAY) + Interval::D1.as_ms();
    let daily_signals = || {
        signal::Entity::find()
            .filter(signal::Column::Symbol.eq("005930"))
            .filter(signal::Column::Interval.eq("1d"))
            .filter(signal::Column::Ts.eq(close_ts))
    };
    let found = wait_until(Duration::from_secs(60), async || {
        daily_signals()
            .count(&db.conn)
            .await
            .is_ok_and(|n| n as usize >= expected.len())
    })
    .await;
    let got: BTreeSet<String> = daily_signals()
        .all(&db.conn)
        .await
        .expect("signals")
        .into_iter()
        .map(|s| s.kind)
        .collect();
    assert!(
        found,
        "the live day's daily signals: got {got:?}, want {expected:?}"
    );
    assert_eq!(
        got, expected,
        "the same signals as an engine that read the whole file"
    );

    shutdown.cancel();
    run.await
        .expect("join")
        .expect("tickwatch run stops cleanly");
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_first_alert_loads_its_symbols_history_once() {
    let kis = FakeKis::start().await.expect("fake kis");
    let db = TestDb::sqlite().await.expect("sqlite");
    let days = samsung_days();
    let recent: Vec<KisDay> = days[days.len() - 300..].iter().map(kis_day).collect();
    kis.set_daily("000660", recent.clone());
    kis.set_daily("035720", recent);
    let config = config("history-first-alert", &db, &kis);
    let broker = tickwatch::app::broker(&config, "test")
        .await
        .expect("broker");
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let shutdown = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let loader = tickwatch::history::Loader::new(
        &config,
        db.conn.clone(),
        tickwatch_broker::Publisher::start(&broker, "history"),
    )
    .expect("loader");
    let loads =
        tickwatch::history::FirstAlertLoads::start(&config, loader, &tracker, shutdown.clone())
            .expect("first-alert loads are on for a configured source");
    services.set_history_requests(loads);
    let user = services
        .create_user(tickwatch_gateway::services::users::NewUser {
            name: "jiwoo".into(),
            telegram_chat_id: Some(5151),
            ..Default::default()
        })
        .await
        .expect("user");
    let rule = |symbol: &str| {
        RuleSpec::price(
            "krx",
            symbol,
            Condition::GreaterThan,
            "1".parse().expect("d"),
        )
    };
    let count = |symbol: &'static str| {
        let db = db.conn.clone();
        async move {
            candle::Entity::find()
                .filter(candle::Column::Symbol.eq(symbol))
                .count(&db)
                .await
                .unwrap_or(0) as usize
        }
    };

    services
        .create_rule(user.id, rule("000660"))
        .await
        .expect("rule");
    assert!(
        wait_until(Duration::from_secs(30), async || count("000660").await
            == 300)
        .await,
        "the first alert's symbol has its 300 days: {}",
        count("000660").await
    );
    let requests_for = |symbol: &str| {
        kis.chart_requests()
            .iter()
            .filter(|q| q.get("FID_INPUT_ISCD").map(String::as_str) == Some(symbol))
            .count()
    };
    let first = requests_for("000660");
    assert!(first >= 4, "300 days and the empty page: {first}");

    // A second alert on it loads nothing; another symbol's first alert loads that one
    // (after the second, in order: so the second was handled by then) — with a new access
    // token, as KIS refuses the old one.
    services
        .create_rule(user.id, rule("000660"))
        .await
        .expect("rule");
    kis.expire_tokens();
    services
        .create_rule(user.id, rule("035720"))
        .await
        .expect("rule");
    assert!(
        wait_until(Duration::from_secs(30), async || count("035720").await
            == 300)
        .await,
        "the other symbol's days"
    );
    assert_eq!(requests_for("000660"), first, "one load per symbol");
    assert_eq!(kis.tokens().len(), 2, "a new token after the refusal");

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
}

/// Two Seoul sessions of minute bars (09:00–15:29, 390 a day) in KIS's shape.
fn two_sessions() -> Vec<KisMinute> {
    let mut bars = Vec::new();
    for (day, date) in ["20260303", "20260304"].iter().enumerate() {
        for i in 0..390u32 {
            let (h, m) = (9 + i / 60, i % 60);
            let close = 70_000 + (day as u32) * 1_000 + i;
            bars.push(KisMinute {
                date: (*date).into(),
                time: format!("{h:02}{m:02}00"),
                open: (close - 10).to_string(),
                high: (close + 20).to_string(),
                low: (close - 30).to_string(),
                close: close.to_string(),
                volume: (100 + i).to_string(),
            });
        }
    }
    bars
}

#[tokio::test]
async fn krx_minutes_page_back_across_days_and_build_longer_bars() {
    let kis = FakeKis::start().await.expect("fake kis");
    kis.set_minutes("005930", two_sessions());
    let mut config = tickwatch_producers::history::HistoryConfig::default();
    config.pace.krx = Duration::ZERO;
    let kis_config = tickwatch_producers::kis::KisConfig {
        rest_url: kis.rest_url(),
        app_key: Some(tickwatch_producers::config::Secret::new("PSfakeappkey")),
        app_secret: Some(tickwatch_producers::config::Secret::new("fakesecret")),
        ..Default::default()
    };
    let mut client = tickwatch_producers::history::HistoryClient::new(
        config,
        Default::default(),
        Default::default(),
        kis_config,
    )
    .expect("client");
    // The evening of the second day: both sessions are over.
    let now = tickwatch_schema::history::parse_ts("2026-03-04T20:00:00+09:00").expect("ts");
    let venue = tickwatch_producers::history::HistoryVenue::Krx;
    let minutes = client
        .fetch(venue, "005930", Interval::M1, 500, now)
        .await
        .expect("minutes");
    assert_eq!(
        minutes.len(),
        500,
        "390 of the last day and 110 of the one before"
    );
    let at = |text: &str| tickwatch_schema::history::parse_ts(text).expect("ts");
    assert_eq!(minutes[0].open_ts, at("2026-03-03T13:40:00+09:00"));
    let last = minutes.last().expect("last");
    assert_eq!(last.open_ts, at("2026-03-04T15:29:00+09:00"));
    assert_eq!(
        (last.close.to_string(), last.volume.to_string()),
        ("71389".to_string(), "489".to_string())
    );
    assert!(minutes.windows(2).all(|w| w[0].open_ts < w[1].open_ts));
    let pages = kis.chart_requests().len();
    assert_eq!(
        pages, 5,
        "120 a page, the fifth reaching back into the first day"
    );

    // Hours from the minutes on the Seoul day: 09:00 … 15:00 (the last one has 30 minutes).
    let hours = client
        .fetch(venue, "005930", Interval::H1, 7, now)
        .await
        .expect("hours");
    assert_eq!(hours.len(), 7);
    assert!(hours.iter().all(|h| h.closed));
    assert_eq!(hours[0].open_ts, at("2026-03-04T09:00:00+09:00"));
    assert_eq!(
        (
            hours[0].open.to_string(),
            hours[0].close.to_string(),
            hours[0].volume.to_string()
        ),
        (
            "70990".to_string(),
            "71059".to_string(),
            (100..160).sum::<u32>().to_string()
        )
    );
}
