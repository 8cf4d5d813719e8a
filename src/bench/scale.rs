//! `tickwatch bench scale-out`: the signals role over `shards` shards, one instance and
//! then two splitting them, in one run. Each run starts the instances on a fresh
//! database, waits until they have split the shards, then publishes the same candles to
//! the market exchange as a producer does and times until every series is stored up to
//! its last candle. The instances run in this process, each with its own connections, as
//! separate processes would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tickwatch_broker::{Broker, Confirm, Publisher};
use tickwatch_schema::names::{Exchange, WorkQueue};
use tokio_util::sync::CancellationToken;

use super::{BenchDb, DrainDb, bench_candles, signals_done, throwaway_broker};
use crate::config::Config;

/// What `bench scale-out` runs.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    pub database: DrainDb,
    pub pg_url: String,
    pub messages: usize,
    pub shards: usize,
    /// Each count of instances, in order (e.g. 1 then 2).
    pub instances: Vec<usize>,
}

/// `tickwatch bench scale-out`: candles per second for each count of instances.
pub async fn run(config: &Config, plan: &ScalePlan) -> anyhow::Result<Vec<(usize, f64)>> {
    let candles = bench_candles(plan.messages);
    let mut rates = Vec::new();
    for &instances in &plan.instances {
        eprintln!(
            "scale-out: {instances} instance(s) of signals over {} shards, {:?} …",
            plan.shards, plan.database
        );
        let rate = one(config, plan, instances, &candles).await?;
        crate::say!(
            "  {instances} instance(s): {} candles in {:.1} s = {:.0} candles/s",
            candles.len(),
            candles.len() as f64 / rate,
            rate
        );
        rates.push((instances, rate));
    }
    if let (Some((_, one)), Some((k, more))) = (rates.first(), rates.last()) {
        crate::say!(
            "scale-out bench ({:?}, {} shards): {k} instances drain {:.2}× what one does",
            plan.database,
            plan.shards,
            more / one
        );
    }
    Ok(rates)
}

async fn one(
    config: &Config,
    plan: &ScalePlan,
    instances: usize,
    candles: &[tickwatch_schema::wire::Candle],
) -> anyhow::Result<f64> {
    let db = BenchDb::create(plan.database, &plan.pg_url).await?;
    let mut sharded = config.clone();
    sharded
        .broker
        .shards
        .insert(WorkQueue::Signals.role().to_string(), plan.shards);
    let (broker, topology) = throwaway_broker(&sharded).await?;
    topology.apply(&broker).await?;
    let broker_config = broker.config().clone();

    let stop = CancellationToken::new();
    let mut members = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..instances {
        let member = Broker::connect(broker_config.clone(), "signals").await?;
        let (b, conn, cfg, s) = (
            member.clone(),
            db.conn.clone(),
            config.signals.clone(),
            stop.clone(),
        );
        tasks.spawn(async move { tickwatch_signals::adapter::run(&b, conn, &cfg, s).await });
        members.push(member);
    }
    let shard_queues: Vec<String> = topology
        .work_queues_of(&broker.names().queue(WorkQueue::Signals))
        .into_iter()
        .map(|spec| format!("consumer:{}", spec.name))
        .collect();
    let result = async {
        // Split first (each instance active on shards / instances), then the candles.
        let even = plan.shards.div_ceil(instances);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let active: Vec<usize> = members
                .iter()
                .map(|m| active_shards(m, &shard_queues))
                .collect();
            if active.iter().sum::<usize>() == plan.shards && active.iter().all(|a| *a <= even) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the instances did not split the shards within 60 s: {active:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let publisher = Publisher::start(&broker, "bench-scale");
        let started = Instant::now();
        let mut window: VecDeque<Confirm> = VecDeque::new();
        for candle in candles {
            window.push_back(publisher.send(Exchange::Market, candle).await?);
            if window.len() >= 4_096
                && let Some(front) = window.pop_front()
            {
                front.wait().await?;
            }
        }
        for confirm in window {
            confirm.wait().await?;
        }
        publisher.close().await;
        signals_done(&db.conn, candles, started, Duration::from_secs(1_800)).await?;
        Ok(candles.len() as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    stop.cancel();
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    for member in members {
        member.close();
    }
    let _ = topology.delete(&broker).await;
    broker.close();
    db.remove().await;
    result
}

/// The shards an instance consumes now: its `consumer:<shard queue>` components that are up.
fn active_shards(member: &Broker, shard_components: &[String]) -> usize {
    let health = member.health().snapshot();
    shard_components
        .iter()
        .filter(|name| health.get(*name).is_some_and(|c| c.up))
        .count()
}
