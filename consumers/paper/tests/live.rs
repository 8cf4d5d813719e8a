//! The live `paper` role through the real broker: real daily candles of Samsung Electronics
//! (005930) and EcoPro BM (247540) published to `tw.market` in one burst, the signals role
//! and the paper role running, two stored strategies. The trades stored are exactly those
//! `tickwatch paper backtest` gives on the same candles (which the backtest tests check
//! against trades computed independently); candles published again (a redelivery) open
//! nothing twice; each opening and closing reaches `tw.notify` once, for the owner's chat.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tickwatch_broker::{Broker, Publisher, Topology};
use tickwatch_paper::store::{self, status};
use tickwatch_paper::{Sizing, Strategy, Trade, backtest};
use tickwatch_schema::db::entity::{
    paper_equity, paper_position, paper_progress, paper_strategy, user,
};
use tickwatch_schema::history::{HistoryReader, data_file};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Candle, EventKind, Grade, Interval, Notification, SignalKind};
use tickwatch_signals::SignalsConfig;
use tickwatch_tests::db::TestDb;
use tokio_util::sync::CancellationToken;

const CHAT: i64 = 424_242;

fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn daily(file: &str, symbol: &str) -> Vec<Candle> {
    let path = data_file(file).expect("TICKWATCH_DATA_DIR holds the shared data");
    let text = std::fs::read_to_string(&path).expect("history file");
    HistoryReader::new(text.as_bytes(), file, "krx", symbol, Interval::D1)
        .expect("header")
        .map(|c| c.expect("bar"))
        .collect()
}

fn strategies() -> Vec<Strategy> {
    let base = Strategy {
        id: 1,
        name: "macd".into(),
        kinds: vec![SignalKind::MacdBullishCross],
        min_grade: Grade::D,
        venues: vec!["krx".into()],
        symbols: Vec::new(),
        starting_balance: d("100000000"),
        currency: "KRW".into(),
        sizing: Sizing::Fixed(d("10000000")),
        take_profit_pct: Some(d("8")),
        stop_loss_pct: Some(d("4")),
        trailing_stop_pct: None,
        max_bars: Some(20),
        exit_on_opposite: false,
        fees: None,
        since_ts: 0,
    };
    let breakout = Strategy {
        id: 2,
        name: "breakouts".into(),
        kinds: vec![SignalKind::BollingerBreakoutUp, SignalKind::GoldenCross],
        sizing: Sizing::Fixed(d("5000000")),
        take_profit_pct: None,
        stop_loss_pct: Some(d("7")),
        trailing_stop_pct: Some(d("6")),
        max_bars: Some(30),
        exit_on_opposite: true,
        ..base.clone()
    };
    vec![base, breakout]
}

/// The fields a user sees of a trade.
fn seen(
    t: &Trade,
) -> (
    i64,
    String,
    String,
    i64,
    Decimal,
    i64,
    Decimal,
    String,
    Decimal,
    Decimal,
    Decimal,
) {
    (
        t.strategy_id,
        t.symbol.clone(),
        t.signal_id.clone(),
        t.entry_ts,
        t.entry_price,
        t.exit_ts,
        t.exit_price,
        store::reason_text(t.exit_reason),
        t.quantity,
        t.fees,
        t.pnl,
    )
}

async fn live_equals_backtest(db: TestDb) {
    let conn = db.conn.clone();
    let samsung = daily("005930_1d.csv", "005930");
    let ecopro = daily("247540_1d.csv", "247540");
    let mut candles: Vec<Candle> = samsung.iter().chain(&ecopro).cloned().collect();
    candles.sort_by_key(|c| (c.open_ts, c.symbol.clone()));

    let owner = user::ActiveModel {
        name: Set("trader".into()),
        telegram_chat_id: Set(Some(CHAT)),
        language: Set("ko".into()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        demo: Set(false),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&conn)
    .await
    .expect("user");
    for strategy in strategies() {
        let row = paper_strategy::ActiveModel {
            user_id: Set(owner.id),
            name: Set(strategy.name.clone()),
            spec: Set(store::spec_json(&strategy)),
            starting_balance: Set(strategy.starting_balance.to_string()),
            currency: Set(strategy.currency.clone()),
            cash: Set(strategy.starting_balance.to_string()),
            active: Set(true),
            follow_since: Set(0),
            version: Set(1),
            created_at: Set(0),
            updated_at: Set(0),
            ..Default::default()
        }
        .insert(&conn)
        .await
        .expect("strategy");
        assert_eq!(row.id, strategy.id, "fresh ids");
    }

    let config = tickwatch_tests::test_broker_config("paper");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let stop = CancellationToken::new();
    let notes: tickwatch_tests::broker::Heard<Notification> =
        tickwatch_tests::broker::listen(&broker, Exchange::Notify, "telegram", &stop).await;
    let signals = tokio::spawn({
        let (b, d, s) = (broker.clone(), conn.clone(), stop.clone());
        async move { tickwatch_signals::adapter::run(&b, d, &SignalsConfig::default(), s).await }
    });
    let paper = tokio::spawn({
        let (b, d, s) = (broker.clone(), conn.clone(), stop.clone());
        async move { tickwatch_paper::adapter::run(&b, d, s).await }
    });

    let publisher = Publisher::start(&broker, "test");
    for candle in &candles {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("candle");
    }
    // The last weeks again, as after a producer's crash: nothing may enter twice.
    for candle in &candles[candles.len() - 20..] {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("again");
    }
    let last: BTreeMap<&str, i64> = [
        ("005930", samsung.last().expect("bars").open_ts),
        ("247540", ecopro.last().expect("bars").open_ts),
    ]
    .into();
    let done = tickwatch_tests::wait_until(Duration::from_secs(120), async || {
        let rows = paper_progress::Entity::find()
            .all(&conn)
            .await
            .unwrap_or_default();
        last.iter().all(|(symbol, ts)| {
            rows.iter()
                .any(|r| r.symbol == *symbol && r.last_open_ts == *ts)
        })
    })
    .await;
    assert!(done, "the paper role went through both series");

    let expected =
        backtest::run(strategies(), &candles, &SignalsConfig::default()).expect("backtest");
    assert!(
        expected.trades.len() >= 20,
        "enough trades to compare: {}",
        expected.trades.len()
    );
    let rows = paper_position::Entity::find()
        .filter(paper_position::Column::Status.eq(status::CLOSED))
        .order_by_asc(paper_position::Column::Id)
        .all(&conn)
        .await
        .expect("trades");
    let mut live: Vec<_> = rows
        .iter()
        .map(|r| seen(&store::trade_from_row(r).expect("a stored trade")))
        .collect();
    let mut want: Vec<_> = expected.trades.iter().map(seen).collect();
    live.sort();
    want.sort();
    assert_eq!(live.len(), want.len(), "trade count");
    for (i, (l, w)) in live.iter().zip(&want).enumerate() {
        assert_eq!(l, w, "trade {i}");
    }
    // One row per followed signal and strategy, whatever was delivered twice.
    let all = paper_position::Entity::find()
        .all(&conn)
        .await
        .expect("rows");
    let mut keys: Vec<_> = all
        .iter()
        .map(|r| (r.strategy_id, r.signal_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "no signal entered twice");
    // The cash is what the trades made (no position is open at the end, or it is counted).
    for strategy in strategies() {
        let row = paper_strategy::Entity::find_by_id(strategy.id)
            .one(&conn)
            .await
            .expect("read")
            .expect("strategy");
        let made: Decimal = expected
            .trades
            .iter()
            .filter(|t| t.strategy_id == strategy.id)
            .map(|t| t.pnl)
            .sum();
        let open: Vec<_> = all
            .iter()
            .filter(|r| r.strategy_id == strategy.id && r.status == status::OPEN)
            .collect();
        let cost: Decimal = open
            .iter()
            .map(|r| {
                let q: Decimal = r.quantity.as_deref().expect("qty").parse().expect("dec");
                let p: Decimal = r
                    .entry_price
                    .as_deref()
                    .expect("price")
                    .parse()
                    .expect("dec");
                let f: Decimal = r.entry_fee.as_deref().expect("fee").parse().expect("dec");
                q * p + f
            })
            .sum();
        let cash: Decimal = row.cash.parse().expect("cash");
        assert_eq!(
            cash,
            strategy.starting_balance + made - cost,
            "{}: cash",
            strategy.name
        );
        let days = paper_equity::Entity::find()
            .filter(paper_equity::Column::StrategyId.eq(strategy.id))
            .all(&conn)
            .await
            .expect("equity");
        assert!(days.len() >= 10, "{}: an equity curve", strategy.name);
    }

    // Every opening and closing, once, in the owner's chat and language.
    let opened = all
        .iter()
        .filter(|r| r.status == status::OPEN || r.status == status::CLOSED)
        .count();
    let wanted = opened + rows.len();
    let told =
        tickwatch_tests::wait_until(Duration::from_secs(30), async || notes.len() >= wanted).await;
    let notes = notes.all();
    assert!(told, "{} of {wanted} messages", notes.len());
    let mut dedupe: Vec<&str> = notes.iter().map(|n| n.dedupe_key.as_str()).collect();
    dedupe.sort_unstable();
    dedupe.dedup();
    assert_eq!(dedupe.len(), wanted, "each message once");
    assert!(
        notes
            .iter()
            .all(|n| n.chat_id == CHAT && n.kind == EventKind::Paper)
    );
    assert!(
        notes
            .iter()
            .any(|n| n.text.contains("모의매수") && n.text.contains("005930"))
    );
    assert!(
        notes
            .iter()
            .any(|n| n.text.contains("모의매도") && n.text.contains("손익"))
    );

    stop.cancel();
    signals.await.expect("join").expect("signals ran");
    paper.await.expect("join").expect("paper ran");
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_role_trades_as_the_backtest_on_sqlite() {
    live_equals_backtest(TestDb::sqlite().await.expect("sqlite")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_role_trades_as_the_backtest_on_postgres() {
    live_equals_backtest(TestDb::postgres().await.expect("postgres")).await;
}
