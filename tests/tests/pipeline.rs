//! Producers and the signals consumer through the real broker: a history file replayed into
//! `tw.market` arrives complete and in order; candles sent through the broker come back as
//! the signals the engine computes on the same data, stored once even when delivered twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use tickwatch_broker::{
    Broker, BrokerConfig, ConsumeOptions, Handler, Incoming, Publisher, Topology, consume_with,
};
use tickwatch_producers::broker_sink::PublisherSink;
use tickwatch_producers::csv::CsvConfig;
use tickwatch_schema::db::entity::signal;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Candle, Signal};
use tickwatch_tests::db::TestDb;
use tokio_util::sync::CancellationToken;

fn broker_config(tag: &str) -> BrokerConfig {
    tickwatch_tests::test_broker_config(tag)
}

/// Collects what arrives on a private queue.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Incoming>>>);

impl Handler for Collect {
    async fn handle(&mut self, message: &Incoming) -> tickwatch_broker::Outcome {
        self.0.lock().expect("lock").push(message.clone());
        Ok(tickwatch_broker::Handled::Done)
    }
}

impl Collect {
    fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
}

/// A private queue bound to `exchange` with `key`, consumed into a [`Collect`].
async fn listen(
    broker: &Broker,
    exchange: Exchange,
    key: &str,
    stop: &CancellationToken,
) -> (
    Collect,
    tokio::task::JoinHandle<tickwatch_broker::Result<()>>,
) {
    let mut topology = Topology::default();
    let name = format!(
        "{}.listen.{}",
        broker.config().prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let spec = topology
        .add_private_queue(
            broker.config(),
            &name,
            &[(broker.names().exchange(exchange), key.to_string())],
        )
        .expect("queue");
    let collect = Collect::default();
    let task = tokio::spawn({
        let (b, c, s) = (broker.clone(), collect.clone(), stop.clone());
        let options = ConsumeOptions {
            declare: Some(Arc::new(topology)),
            ..Default::default()
        };
        async move { consume_with(&b, &spec, c, s, options).await }
    });
    let component = format!("consumer:{name}");
    for _ in 0..300 {
        if broker
            .health()
            .snapshot()
            .get(&component)
            .is_some_and(|c| c.up)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (collect, task)
}

fn data_file(name: &str) -> PathBuf {
    tickwatch_schema::history::data_file(name).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_csv_replay_reaches_the_broker_complete_and_in_order() {
    let config = broker_config("csv");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let stop = CancellationToken::new();
    let (collect, listener) = listen(&broker, Exchange::Market, "candle.#", &stop).await;

    // The real 30,240-row file.
    let file = data_file("BTCUSDT_1m.csv");
    let rows = std::fs::read_to_string(&file)
        .expect("file")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let publisher = Publisher::start(&broker, "csv");
    let sink: Arc<dyn tickwatch_producers::MarketSink> =
        Arc::new(PublisherSink::new(publisher.clone()));
    let mut csv = CsvConfig::for_file(&file);
    csv.progress = false;
    let report = tickwatch_producers::csv::replay(csv, sink, CancellationToken::new())
        .await
        .expect("replay");
    assert_eq!(report.candles as usize, rows, "every row became a candle");

    let mut arrived = false;
    for _ in 0..600 {
        if collect.len() >= rows {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(arrived, "{} of {rows} candles arrived", collect.len());
    let candles: Vec<Candle> = collect
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.decode().expect("a candle"))
        .collect();
    assert_eq!(candles.len(), rows, "no duplicates");
    assert!(
        candles.windows(2).all(|w| w[0].open_ts < w[1].open_ts),
        "in file order"
    );
    let first_line = std::fs::read_to_string(&file)
        .expect("file")
        .lines()
        .nth(1)
        .map(str::to_string)
        .expect("row");
    assert!(
        first_line.contains(&candles[0].close.to_string()),
        "as written: {first_line} vs {:?}",
        candles[0]
    );

    stop.cancel();
    listener.await.expect("join").expect("clean");
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
}

#[tokio::test]
async fn candles_through_the_broker_come_back_as_the_engines_signals_stored_once() {
    let config = broker_config("signals");
    let db = TestDb::sqlite().await.expect("sqlite");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let stop = CancellationToken::new();
    let (collect, listener) = listen(&broker, Exchange::Signals, "signal.#", &stop).await;
    let signals_task = tokio::spawn({
        let (b, d, s) = (broker.clone(), db.conn.clone(), stop.clone());
        async move { tickwatch_signals::adapter::run(&b, d, &Default::default(), s).await }
    });

    let candles = tickwatch_tests::fixtures::spy_2015_daily();
    let expected =
        tickwatch_signals::scan(candles.iter().cloned().map(Ok), &Default::default(), &[])
            .expect("scan");
    assert!(!expected.is_empty(), "the window has signals");
    let publisher = Publisher::start(&broker, "test");
    for candle in &candles {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("candle");
    }
    // A redelivery of the last candle (as after a crash): same signals, stored once.
    if let Some(last) = candles.last() {
        publisher
            .publish(Exchange::Market, last)
            .await
            .expect("again");
    }
    let mut arrived = false;
    for _ in 0..300 {
        if collect.len() >= expected.len() {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        arrived,
        "{} of {} signals arrived",
        collect.len(),
        expected.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received: Vec<Signal> = collect
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.decode().expect("a signal"))
        .collect();
    let mut by_id: BTreeMap<uuid::Uuid, Signal> = BTreeMap::new();
    for s in &received {
        by_id.insert(s.id, s.clone());
    }
    let expected_ids: BTreeMap<uuid::Uuid, &Signal> = expected.iter().map(|s| (s.id, s)).collect();
    assert_eq!(
        by_id.keys().collect::<Vec<_>>(),
        expected_ids.keys().collect::<Vec<_>>(),
        "the engine's signals, by id"
    );
    for (id, s) in &by_id {
        assert_eq!(s, expected_ids[id], "as the engine computed it");
    }
    assert_eq!(
        signal::Entity::find().count(&db.conn).await.expect("count") as usize,
        expected.len(),
        "each signal stored once"
    );
    stop.cancel();
    signals_task.await.expect("join").expect("clean");
    listener.await.expect("join").expect("clean");
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}

/// The signals role restarts halfway through a series: the new instance warms its engine
/// up from the stored candles and goes on exactly as an uninterrupted engine would — the
/// same signals, with the same ids, none missing and none extra.
#[tokio::test]
async fn a_restarted_signals_role_warms_up_from_the_database_and_continues_exactly() {
    use tickwatch_schema::db::entity::signal_progress;

    let config = broker_config("warmup");
    let db = TestDb::sqlite().await.expect("sqlite");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let stop_listener = CancellationToken::new();
    let (collect, listener) = listen(&broker, Exchange::Signals, "signal.#", &stop_listener).await;
    let candles = tickwatch_tests::fixtures::spy_2015_daily();
    let expected =
        tickwatch_signals::scan(candles.iter().cloned().map(Ok), &Default::default(), &[])
            .expect("scan");
    let (first, second) = candles.split_at(candles.len() / 2);
    assert!(
        expected.iter().any(|s| s.ts > second[0].open_ts),
        "the second half has signals of its own"
    );
    let start_role = |stop: &CancellationToken| {
        let (b, d, s) = (broker.clone(), db.conn.clone(), stop.clone());
        tokio::spawn(
            async move { tickwatch_signals::adapter::run(&b, d, &Default::default(), s).await },
        )
    };
    let publisher = Publisher::start(&broker, "test");

    let stop_first = CancellationToken::new();
    let first_role = start_role(&stop_first);
    for candle in first {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("candle");
    }
    let last_of_first = first.last().expect("bars").open_ts;
    let mut done = false;
    for _ in 0..300 {
        let progress = signal_progress::Entity::find()
            .one(&db.conn)
            .await
            .expect("progress");
        if progress.is_some_and(|p| p.last_open_ts == last_of_first) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the first instance processed the first half");
    stop_first.cancel();
    first_role.await.expect("join").expect("clean");

    let stop_second = CancellationToken::new();
    let second_role = start_role(&stop_second);
    for candle in second {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("candle");
    }
    let mut arrived = false;
    for _ in 0..300 {
        if collect.len() >= expected.len() {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received: BTreeMap<uuid::Uuid, Signal> = collect
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.decode::<Signal>().expect("a signal"))
        .map(|s| (s.id, s))
        .collect();
    let expected: BTreeMap<uuid::Uuid, Signal> = expected.into_iter().map(|s| (s.id, s)).collect();
    assert!(
        arrived,
        "{} of {} signals arrived",
        received.len(),
        expected.len()
    );
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the uninterrupted engine's signals, by id"
    );
    for (id, s) in &received {
        assert_eq!(s, &expected[id], "as the uninterrupted engine computed it");
    }

    stop_second.cancel();
    second_role.await.expect("join").expect("clean");
    stop_listener.cancel();
    listener.await.expect("join").expect("clean");
    publisher.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}
