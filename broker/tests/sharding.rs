//! Sharded work queues: per-symbol order across two instances, and takeover.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, tick, wait_until};
use tickwatch_broker::{Broker, HandlerError, Publisher, consume};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::Tick;
use tokio_util::sync::CancellationToken;

type Log = Arc<Mutex<Vec<(&'static str, String, u64)>>>;

#[derive(Clone)]
struct Instance {
    name: &'static str,
    log: Log,
}

impl tickwatch_broker::Handler for Instance {
    async fn handle(&mut self, m: &tickwatch_broker::Incoming) -> tickwatch_broker::Outcome {
        let t: Tick = m.decode()?;
        let seq: u64 = t
            .trade_id
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|_| HandlerError::Invalid("seq".into()))?;
        self.log
            .lock()
            .expect("lock")
            .push((self.name, t.symbol, seq));
        tokio::time::sleep(Duration::from_micros(300)).await;
        Ok(tickwatch_broker::Handled::Done)
    }
}

fn start_instance(
    name: &'static str,
    broker: &Broker,
    fx: &Fixture,
    log: &Log,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<tickwatch_broker::Result<()>>> {
    fx.topology
        .work_queues
        .iter()
        .map(|shard| {
            let handler = Instance {
                name,
                log: log.clone(),
            };
            let (b, q, s) = (broker.clone(), shard.clone(), shutdown.clone());
            tokio::spawn(async move { consume(&b, &q, handler, s).await })
        })
        .collect()
}

#[tokio::test]
async fn two_instances_on_four_shards_keep_each_symbols_order_and_take_over() {
    const PER_SYMBOL: u64 = 150;
    let symbols: Vec<String> = (0..16).map(|i| format!("SYM{i}")).collect();
    let config = common::config("shard");
    let fx = Fixture::with_config(config.clone(), 4).await;
    assert_eq!(fx.topology.work_queues.len(), 4);
    let log: Log = Arc::default();

    let broker_a = Broker::connect(config.clone(), &format!("{}-a", config.prefix))
        .await
        .expect("a");
    let broker_b = Broker::connect(config.clone(), &format!("{}-b", config.prefix))
        .await
        .expect("b");
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let tasks_a = start_instance("a", &broker_a, &fx, &log, &stop_a);
    // A registers first and becomes the single active consumer of every shard; B waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks_b = start_instance("b", &broker_b, &fx, &log, &stop_b);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let publisher = Publisher::start(&fx.broker, "test");
    let mut seq = 0;
    let mut confirms = Vec::new();
    for round in 0..PER_SYMBOL {
        for symbol in &symbols {
            let mut t = tick(symbol, seq);
            t.trade_id = Some(round.to_string());
            confirms.push(publisher.send(Exchange::Market, &t).await.expect("send"));
            seq += 1;
        }
        if round == PER_SYMBOL / 3 {
            for c in confirms.drain(..) {
                c.wait().await.expect("confirmed");
            }
            // Let A work a while, then stop it: B must take over its shards.
            assert!(
                wait_until(Duration::from_secs(20), || log.lock().expect("lock").len()
                    > 300)
                .await
            );
            stop_a.cancel();
            for t in tasks_a.iter() {
                while !t.is_finished() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    for c in confirms.drain(..) {
        c.wait().await.expect("confirmed");
    }
    let total = symbols.len() as u64 * PER_SYMBOL;
    let all = wait_until(Duration::from_secs(60), || {
        let log = log.lock().expect("lock");
        let distinct: std::collections::BTreeSet<_> =
            log.iter().map(|(_, s, q)| (s.clone(), *q)).collect();
        distinct.len() as u64 == total
    })
    .await;
    let log = log.lock().expect("lock").clone();
    assert!(all, "every message processed: {} of {total} distinct", {
        let d: std::collections::BTreeSet<_> =
            log.iter().map(|(_, s, q)| (s.clone(), *q)).collect();
        d.len()
    });
    let mut per_symbol: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut duplicates = 0;
    for (_, symbol, seq) in &log {
        let seen = per_symbol.entry(symbol.clone()).or_default();
        if seen.contains(seq) {
            duplicates += 1; // a redelivery of what A had not acknowledged when it stopped
            continue;
        }
        assert!(
            seen.last().is_none_or(|last| seq > last),
            "{symbol}: {seq} after {seen:?}"
        );
        seen.push(*seq);
    }
    let by_a = log.iter().filter(|(i, ..)| *i == "a").count();
    let by_b = log.iter().filter(|(i, ..)| *i == "b").count();
    println!(
        "sharding: {total} messages, a processed {by_a}, b processed {by_b}, {duplicates} redelivered"
    );
    assert!(
        by_a > 0 && by_b > 0,
        "both instances worked: a {by_a}, b {by_b}"
    );
    stop_b.cancel();
    for t in tasks_a.into_iter().chain(tasks_b) {
        t.await.expect("join").expect("clean");
    }
    publisher.close().await;
    broker_a.close();
    broker_b.close();
    fx.cleanup().await;
}
