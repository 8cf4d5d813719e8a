//! `tickwatch bench …`: the benchmarks, each measuring tickwatch and its reference in one
//! run on this machine's broker and databases.
//!
//! - `broker`, `csv`: the publisher and consumer runtime, and the CSV replay, against raw
//!   lapin on identical topology.
//! - `signals`, `alerts`: the pure engines (and the signals role through the broker).
//! - `drain`: each batching role draining a backlog from its work queue, against raw lapin
//!   draining the same backlog from the same queue, on SQLite and PostgreSQL.
//! - [`pipeline`]: every role at once — the sustained input rate and tick → notification
//!   latency, against the raw broker's ceiling and a raw hop.
//! - [`scale`]: one instance of the signals role against two splitting its shards.
//! - [`symbols`]: symbol search over thousands of Korean and English names.

pub mod history;
pub mod pipeline;
pub mod scale;
pub mod symbols;

use std::time::{Duration, Instant};

use anyhow::Context;
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait};
use tickwatch_broker::{Broker, Topology};
use tickwatch_schema::names::WorkQueue;
use tickwatch_schema::wire::{Candle, Message, Tick};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// `tickwatch bench signals`: the pure engine over many interleaved symbols.
pub fn signals(
    config: &Config,
    data_dir: &std::path::Path,
    symbols: usize,
    bars: usize,
) -> anyhow::Result<()> {
    let bench = tickwatch_signals::bench::BenchConfig {
        symbols,
        bars_per_symbol: bars,
        signals: config.signals.clone(),
    };
    let sources = tickwatch_signals::bench::load_sources(data_dir)?;
    // One run to warm the allocator and caches (a live engine has its memory already),
    // then five measured: the median is the figure, the spread shows the noise.
    tickwatch_signals::bench::bench(&sources, &bench)?;
    let mut rates = Vec::new();
    crate::say!("signals bench (pure engine, one core; a warm-up run, then five):");
    for _ in 0..5 {
        let report = tickwatch_signals::bench::bench(&sources, &bench)?;
        crate::say!("  {report}");
        rates.push(report.candles_per_sec);
    }
    rates.sort_by(f64::total_cmp);
    crate::say!(
        "median {:.0} candles/s (min {:.0}, max {:.0}); goal >= 1,000,000 (the broker feeds ~20,000 msg/s): {}",
        rates[2],
        rates[0],
        rates[4],
        if rates[2] >= 1_000_000.0 {
            "met"
        } else {
            "not met"
        }
    );
    Ok(())
}

/// `tickwatch bench signals --through-broker`: the signals role end to end — candles
/// published to the broker, consumed, evaluated, stored (SQLite in a temporary folder) and
/// the signals published — candles per second until the last candle is done.
pub async fn signals_through_broker(
    config: &Config,
    data_dir: &std::path::Path,
    symbols: usize,
    bars: usize,
) -> anyhow::Result<()> {
    let sources = tickwatch_signals::bench::load_sources(data_dir)?;
    let universe = tickwatch_signals::bench::build_universe(&sources, symbols, bars);
    let dir =
        std::env::temp_dir().join(format!("tickwatch-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let db = tickwatch_schema::db::connect(&db_url).await?;
    tickwatch_schema::db::migrate_up(&db).await?;
    let (broker, topology) = throwaway_broker(config).await?;
    topology.apply(&broker).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let role = tokio::spawn({
        let (b, d, c, s) = (
            broker.clone(),
            db.clone(),
            config.signals.clone(),
            stop.clone(),
        );
        async move { tickwatch_signals::adapter::run(&b, d, &c, s).await }
    });
    let publisher = tickwatch_broker::Publisher::start(&broker, "bench-signals");
    let started = std::time::Instant::now();
    let mut confirms = std::collections::VecDeque::new();
    for candle in &universe {
        confirms.push_back(
            publisher
                .send(tickwatch_schema::names::Exchange::Market, candle)
                .await?,
        );
        if confirms.len() >= 1_000
            && let Some(c) = confirms.pop_front()
        {
            c.wait().await?;
        }
    }
    for c in confirms {
        c.wait().await?;
    }
    signals_done(&db, &universe, started, Duration::from_secs(3_600)).await?;
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = role.await;
    publisher.close().await;
    topology.delete(&broker).await?;
    broker.close();
    let _ = std::fs::remove_dir_all(&dir);
    crate::say!(
        "signals through the broker: {} candles of {} symbols in {:.1} s = {:.0} candles/s (each stored with its signals in SQLite)",
        universe.len(),
        symbols,
        elapsed.as_secs_f64(),
        universe.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Waits until the signals role stored its progress up to each series' last candle in
/// `candles` (`timeout` after `started` at most).
async fn signals_done(
    db: &DatabaseConnection,
    candles: &[Candle],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    use tickwatch_schema::db::entity::signal_progress;
    let mut last_of: std::collections::HashMap<(String, String, String), i64> = Default::default();
    for c in candles {
        let key = (
            c.venue.clone(),
            c.symbol.clone(),
            c.interval.as_str().to_string(),
        );
        let entry = last_of.entry(key).or_insert(c.open_ts);
        *entry = (*entry).max(c.open_ts);
    }
    loop {
        let progress = signal_progress::Entity::find().all(db).await?;
        let done = progress
            .iter()
            .filter(|p| {
                last_of
                    .get(&(p.venue.clone(), p.symbol.clone(), p.interval.clone()))
                    .is_some_and(|last| p.last_open_ts >= *last)
            })
            .count();
        if done >= last_of.len() {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the signals role did not finish within {timeout:?} ({done} of {} series)",
            last_of.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tickwatch bench alerts`: the pure rule book against a naive loop, in one run.
pub fn alerts(rules: usize, symbols: usize, ticks: usize) -> anyhow::Result<()> {
    let config = tickwatch_alerts::bench::BenchConfig {
        rules,
        symbols,
        ticks,
        ..Default::default()
    };
    let report = tickwatch_alerts::bench::run(&config)?;
    crate::say!("alerts bench (pure engine, one core):\n{report}");
    Ok(())
}

/// `tickwatch bench paper`: a backtest of `symbols` × `bars` real-data bars (the signals
/// bench's universe) with one strategy following every bullish and neutral kind — the
/// signals engine and the paper engine together, candles per second on one core — beside
/// the signals engine alone on the same candles.
/// Draws `charts` charts of `bars` real BTCUSDT 4-hour candles (a different window each
/// time), as the notifier draws a notification's: the time per chart and the PNG's size.
pub fn chart(data_dir: &std::path::Path, charts: usize, bars: u16) -> anyhow::Result<()> {
    use tickwatch_schema::history::HistoryReader;
    use tickwatch_schema::wire::{ChartRequest, Interval};
    let path = data_dir.join("BTCUSDT_4h.csv");
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let candles: Vec<_> = HistoryReader::new(
        text.as_bytes(),
        "BTCUSDT_4h.csv",
        "binance",
        "BTCUSDT",
        Interval::H4,
    )?
    .collect::<Result<_, _>>()?;
    let n = usize::from(bars);
    anyhow::ensure!(candles.len() > n, "the file has {} bars", candles.len());
    let mut times = Vec::with_capacity(charts);
    let mut sizes = Vec::with_capacity(charts);
    for i in 0..charts {
        let start = (i * 7) % (candles.len() - n);
        let window = &candles[start..start + n];
        let request = ChartRequest {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            interval: Interval::H4,
            level: Some(window[n - 1].close),
            marker_ts: Some(window[n - 1].open_ts),
            bars,
        };
        let started = std::time::Instant::now();
        let png = tickwatch_notifier::chart::render(
            &request,
            window,
            tickwatch_schema::display::KOREAN_DEFAULT,
        )?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        sizes.push(png.len());
    }
    times.sort_by(f64::total_cmp);
    sizes.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    crate::say!(
        "chart bench (one core): {charts} charts of {bars} real 4h candles, PNG {}×{}\n  per chart: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n  size: median {:.1} KB, max {:.1} KB",
        tickwatch_notifier::chart::WIDTH,
        tickwatch_notifier::chart::HEIGHT,
        at(0.5),
        at(0.99),
        times[times.len() - 1],
        sizes[sizes.len() / 2] as f64 / 1024.0,
        sizes[sizes.len() - 1] as f64 / 1024.0
    );
    Ok(())
}

pub fn paper(
    config: &Config,
    data_dir: &std::path::Path,
    symbols: usize,
    bars: usize,
) -> anyhow::Result<()> {
    use tickwatch_schema::wire::{SignalDirection, SignalKind};
    let sources = tickwatch_signals::bench::load_sources(data_dir)?;
    let candles = tickwatch_signals::bench::build_universe(&sources, symbols, bars);
    let kinds: Vec<SignalKind> = SignalKind::ALL
        .iter()
        .copied()
        .filter(|k| k.direction() != SignalDirection::Bearish)
        .collect();
    let strategy = tickwatch_paper::Strategy {
        id: 1,
        name: "every kind".into(),
        kinds,
        min_grade: tickwatch_schema::wire::Grade::D,
        venues: Vec::new(),
        symbols: Vec::new(),
        starting_balance: rust_decimal::Decimal::from(1_000_000_000),
        currency: "USD".into(),
        sizing: tickwatch_paper::Sizing::PctEquity(rust_decimal::Decimal::ONE),
        take_profit_pct: Some(rust_decimal::Decimal::from(10)),
        stop_loss_pct: Some(rust_decimal::Decimal::from(5)),
        trailing_stop_pct: Some(rust_decimal::Decimal::from(8)),
        max_bars: Some(20),
        exit_on_opposite: true,
        fees: None,
        since_ts: 0,
    };
    let mut signals_config = config.signals.clone();
    signals_config.enabled = SignalKind::ALL.to_vec();
    let started = std::time::Instant::now();
    let result = tickwatch_paper::backtest::run(vec![strategy], &candles, &signals_config)?;
    let both = started.elapsed();
    let started = std::time::Instant::now();
    let signals = tickwatch_signals::scan(candles.iter().cloned().map(Ok), &signals_config, &[])?;
    let alone = started.elapsed();
    let rate = |d: std::time::Duration| candles.len() as f64 / d.as_secs_f64().max(1e-9);
    crate::say!(
        "paper bench (backtest, one core): {} symbols × {} bars = {} candles, {} signals, {} trades\n  signals + paper engines: {:.0} candles/s ({:.2?})\n  signals engine alone:    {:.0} candles/s ({:.2?}, {} signals)",
        symbols,
        bars,
        candles.len(),
        result.signals,
        result.trades.len(),
        rate(both),
        both,
        rate(alone),
        alone,
        signals.len()
    );
    Ok(())
}

/// `tickwatch bench expressions`: indicator and multi-condition rules at a 1m close.
pub fn expressions(rules: usize, symbols: usize) -> anyhow::Result<()> {
    let config = tickwatch_alerts::bench::ExpressionBenchConfig {
        rules,
        symbols,
        ..Default::default()
    };
    let report = tickwatch_alerts::bench::run_expressions(&config)?;
    crate::say!("expression alerts bench (pure engine, one core):\n{report}");
    Ok(())
}

/// The configured broker under a throwaway `twbench-…` prefix (connected), and the
/// standard topology under that prefix (not applied yet).
async fn throwaway_broker(config: &Config) -> anyhow::Result<(Broker, Topology)> {
    let mut broker_config = config.broker.clone();
    broker_config.prefix = format!(
        "twbench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let topology = Topology::standard(&broker_config)?;
    let broker = Broker::connect(broker_config.clone(), &broker_config.prefix).await?;
    Ok((broker, topology))
}

/// `tickwatch bench csv`: `produce csv --speed max` into the broker, next to raw lapin
/// publishing the same candles with confirms to the same exchange (so into the same
/// queues), in one run; each phase on a freshly applied standard topology.
pub async fn csv(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    use tickwatch_schema::wire::Message;

    let (broker, topology) = throwaway_broker(config).await?;
    let csv = tickwatch_producers::csv::CsvConfig::for_file(path);

    // The messages the replay publishes, encoded up front for the raw side.
    let captured = std::sync::Arc::new(tickwatch_producers::sink::MemorySink::new());
    tickwatch_producers::csv::bench(csv.clone(), captured.clone()).await?;
    let encoded = captured
        .candles()
        .iter()
        .map(|candle| {
            let e = tickwatch_schema::wire::encode(candle)?;
            Ok((
                e.meta.routing_key,
                tickwatch_schema::wire::Candle::KIND.as_str(),
                e.body,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    topology.apply(&broker).await?;
    let exchange = broker
        .names()
        .exchange(tickwatch_schema::names::Exchange::Market);
    let raw = tickwatch_broker::bench::raw_publish(&broker, &exchange, &encoded).await;
    topology.delete(&broker).await?;

    topology.apply(&broker).await?;
    let publisher = tickwatch_broker::Publisher::start(&broker, "bench-csv");
    let sink: std::sync::Arc<dyn tickwatch_producers::MarketSink> = std::sync::Arc::new(
        tickwatch_producers::broker_sink::PublisherSink::new(publisher.clone()),
    );
    let replay = tickwatch_producers::csv::bench(csv, sink).await;
    publisher.close().await;
    let _ = topology.delete(&broker).await;
    broker.close();
    let (replay, raw) = (replay?, raw?);
    crate::say!(
        "csv replay bench: {} candles from {} to the market exchange (fanned out to the signals, alerts and recorder queues)\n  produce csv --speed max: {:>9.0} msg/s\n  raw lapin publish:       {:>9.0} msg/s (the same candles, pre-encoded)\n  ratio:                   {:>9.2}",
        replay.messages,
        path.display(),
        replay.per_second,
        raw,
        replay.per_second / raw
    );
    Ok(())
}

/// `tickwatch bench broker`.
pub async fn broker(config: &Config, messages: u64) -> anyhow::Result<()> {
    eprintln!(
        "publishing and consuming {messages} persistent messages three times (raw lapin, tickwatch, raw lapin on a plain queue)…"
    );
    let report = tickwatch_broker::bench::run(config.broker.clone(), messages).await?;
    crate::say!(
        "broker bench: {} messages of {} bytes, through the market exchange to a work queue\n  as tickwatch declares it (quorum, at-least-once dead-lettering, delivery limit, single active consumer)\n  raw lapin:          {:>9.0} msg/s\n  tickwatch runtime:  {:>9.0} msg/s\n  ratio:              {:>9.2}\n  for reference, raw lapin on a plain quorum queue: {:.0} msg/s",
        report.messages,
        report.body_bytes,
        report.raw_msgs_per_s,
        report.runtime_msgs_per_s,
        report.ratio,
        report.raw_plain_queue_msgs_per_s
    );
    Ok(())
}

/// A role `bench drain` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrainRole {
    Signals,
    Alerts,
    Recorder,
}

/// A database `bench drain` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrainDb {
    Sqlite,
    Postgres,
}

/// What `bench drain` runs.
#[derive(Debug, Clone)]
pub struct DrainPlan {
    pub roles: Vec<DrainRole>,
    pub databases: Vec<DrainDb>,
    /// Messages in each backlog.
    pub messages: usize,
    /// The alerts role also runs with this share of its ticks firing (0 for none).
    pub fire_ratio: f64,
    /// The PostgreSQL server's admin database, where bench databases are created.
    pub pg_url: String,
    /// A Python with aio-pika: the alerts role is also measured against
    /// `scripts/alerts_baseline.py` draining the same backlog.
    pub python: Option<std::path::PathBuf>,
}

/// One line of the `bench drain` table.
#[derive(Debug, Clone)]
pub struct DrainRow {
    pub role: String,
    pub database: DrainDb,
    pub messages: usize,
    pub role_per_s: f64,
    /// Raw lapin, one ack per message.
    pub raw_per_s: f64,
    /// Raw lapin, a cumulative ack every 128 messages: the drain ceiling.
    pub raw_batched_per_s: f64,
    /// The Python aio-pika baseline doing the alerts role's job, when measured.
    pub python_per_s: Option<f64>,
}

/// `tickwatch bench drain`.
pub async fn drain(config: &Config, plan: &DrainPlan) -> anyhow::Result<Vec<DrainRow>> {
    let mut rows = Vec::new();
    for &database in &plan.databases {
        for &role in &plan.roles {
            let mut ratios = vec![0.0];
            if role == DrainRole::Alerts && plan.fire_ratio > 0.0 {
                ratios.push(plan.fire_ratio);
            }
            for fire_ratio in ratios {
                eprintln!("drain: {role:?} on {database:?} (fire ratio {fire_ratio}) …");
                let row = drain_one(config, plan, role, database, fire_ratio).await?;
                crate::say!("{}", drain_line(&row));
                rows.push(row);
            }
        }
    }
    crate::say!("\n{}", drain_table(&rows));
    Ok(rows)
}

fn drain_line(r: &DrainRow) -> String {
    let python = r.python_per_s.map_or(String::new(), |p| {
        format!(
            "; Python aio-pika {p:.0} msg/s (role {:.1}x)",
            r.role_per_s / p
        )
    });
    format!(
        "{:<22} {:<9} {:>7} messages: role {:>7.0} msg/s; raw lapin {:>7.0} msg/s (ratio {:.2}), with cumulative acks {:>7.0} msg/s (ratio {:.2}){python}",
        r.role,
        format!("{:?}", r.database),
        r.messages,
        r.role_per_s,
        r.raw_per_s,
        r.role_per_s / r.raw_per_s,
        r.raw_batched_per_s,
        r.role_per_s / r.raw_batched_per_s
    )
}

/// The rows as a Markdown table.
pub fn drain_table(rows: &[DrainRow]) -> String {
    let mut out = String::from(
        "| role | database | messages | role msg/s | raw lapin, ack each | ratio | raw lapin, cumulative acks | ratio | Python aio-pika (role ×) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let python = r.python_per_s.map_or("—".to_string(), |p| {
            format!("{p:.0} ({:.1}×)", r.role_per_s / p)
        });
        out.push_str(&format!(
            "| {} | {:?} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {python} |\n",
            r.role,
            r.database,
            r.messages,
            r.role_per_s,
            r.raw_per_s,
            r.role_per_s / r.raw_per_s,
            r.raw_batched_per_s,
            r.role_per_s / r.raw_batched_per_s
        ));
    }
    out
}

/// A fresh database for one run, dropped afterwards.
struct BenchDb {
    conn: DatabaseConnection,
    drop: Option<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

impl BenchDb {
    async fn create(kind: DrainDb, pg_url: &str) -> anyhow::Result<BenchDb> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (conn, drop, dir) = match kind {
            DrainDb::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tickwatch-bench-{id}"));
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
                (tickwatch_schema::db::connect(&url).await?, None, Some(dir))
            }
            DrainDb::Postgres => {
                let name = format!("twbench_{}", &id[..12]);
                let admin = tickwatch_schema::db::connect(pg_url)
                    .await
                    .with_context(|| {
                        format!(
                            "PostgreSQL at {}",
                            tickwatch_broker::config::mask_url(pg_url)
                        )
                    })?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                admin.close().await?;
                let url = match pg_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => anyhow::bail!("--pg-url needs a database: postgres://…/test"),
                };
                let conn = tickwatch_schema::db::connect(&url).await?;
                (conn, Some((pg_url.to_string(), name)), None)
            }
        };
        tickwatch_schema::db::migrate_up(&conn).await?;
        Ok(BenchDb { conn, drop, dir })
    }

    async fn remove(self) {
        let _ = self.conn.close().await;
        if let Some((admin_url, name)) = self.drop
            && let Ok(admin) = tickwatch_schema::db::connect(&admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn drain_one(
    config: &Config,
    plan: &DrainPlan,
    role: DrainRole,
    database: DrainDb,
    fire_ratio: f64,
) -> anyhow::Result<DrainRow> {
    let db = BenchDb::create(database, &plan.pg_url).await?;
    let (broker, topology) = throwaway_broker(config).await?;
    topology.apply(&broker).await?;
    let (queue, messages) = match role {
        DrainRole::Signals | DrainRole::Recorder => {
            let candles = bench_candles(plan.messages);
            let queue = if role == DrainRole::Signals {
                WorkQueue::Signals
            } else {
                WorkQueue::Recorder
            };
            (queue, encode_all(&candles)?)
        }
        DrainRole::Alerts => {
            let ticks = alert_workload(&db.conn, plan.messages, fire_ratio).await?;
            (WorkQueue::Alerts, encode_all(&ticks)?)
        }
    };
    let queue = broker.names().queue(queue);
    let n = messages.len();

    tickwatch_broker::bench::fill(&broker, &queue, &messages).await?;
    let raw = tickwatch_broker::bench::raw_drain(&broker, &queue, n as u64, 1).await?;
    tickwatch_broker::bench::fill(&broker, &queue, &messages).await?;
    let raw_batched = tickwatch_broker::bench::raw_drain(&broker, &queue, n as u64, 128).await?;
    let python_per_s = match (&plan.python, role) {
        (Some(python), DrainRole::Alerts) => {
            tickwatch_broker::bench::fill(&broker, &queue, &messages).await?;
            Some(python_baseline(python, &broker, &db.conn, &queue, n).await?)
        }
        _ => None,
    };

    tickwatch_broker::bench::fill(&broker, &queue, &messages).await?;
    let stop = CancellationToken::new();
    let component = format!("consumer:{queue}");
    let task = {
        let (broker, conn, stop) = (broker.clone(), db.conn.clone(), stop.clone());
        let (signals, alerts) = (config.signals.clone(), config.alerts.clone());
        tokio::spawn(async move {
            let result: anyhow::Result<()> = match role {
                DrainRole::Signals => {
                    tickwatch_signals::adapter::run(&broker, conn, &signals, stop)
                        .await
                        .map_err(Into::into)
                }
                DrainRole::Alerts => tickwatch_alerts::adapter::run(&broker, conn, &alerts, stop)
                    .await
                    .map_err(Into::into),
                DrainRole::Recorder => tickwatch_recorder::adapter::run(&broker, conn, stop)
                    .await
                    .map_err(Into::into),
            };
            result
        })
    };
    // From the moment the role consumes (its start-up, a rule load, is not the drain) to
    // the moment the backlog is gone and the role has acknowledged it (a graceful stop).
    let deadline = Instant::now() + Duration::from_secs(900);
    while !broker
        .health()
        .snapshot()
        .get(&component)
        .is_some_and(|c| c.up)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the role did not start consuming"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    while tickwatch_broker::bench::ready(&broker, &queue).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the role did not drain its queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    task.await??;
    let elapsed = started.elapsed();
    topology.delete(&broker).await?;
    broker.close();
    db.remove().await;
    let name = match (role, fire_ratio > 0.0) {
        (DrainRole::Alerts, true) => format!("alerts ({:.0} % firing)", fire_ratio * 100.0),
        (role, _) => format!("{role:?}").to_lowercase(),
    };
    Ok(DrainRow {
        role: name,
        database,
        messages: n,
        role_per_s: n as f64 / elapsed.as_secs_f64(),
        raw_per_s: raw,
        raw_batched_per_s: raw_batched,
        python_per_s,
    })
}

/// `scripts/alerts_baseline.py` (built into the binary) draining the `messages` in
/// `queue` with the database's rules: its messages per second.
async fn python_baseline(
    python: &std::path::Path,
    broker: &Broker,
    db: &DatabaseConnection,
    queue: &str,
    messages: usize,
) -> anyhow::Result<f64> {
    use tickwatch_schema::db::entity::{alert_rule, user};
    const SCRIPT: &str = include_str!("../../scripts/alerts_baseline.py");
    let chats: std::collections::HashMap<i64, i64> = user::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|u| Some((u.id, u.telegram_chat_id?)))
        .collect();
    let mut rules: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for rule in alert_rule::Entity::find().all(db).await? {
        let (Some(chat), Some(threshold)) = (chats.get(&rule.user_id), rule.threshold) else {
            continue;
        };
        rules
            .entry(format!("{}:{}", rule.venue, rule.symbol))
            .or_default()
            .push(serde_json::json!([
                rule.id,
                chat,
                rule.condition,
                threshold
            ]));
    }
    let dir = std::env::temp_dir().join(format!(
        "tickwatch-baseline-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let (script, rules_file) = (dir.join("alerts_baseline.py"), dir.join("rules.json"));
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(&rules_file, serde_json::to_vec(&rules)?)?;
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .args(["--amqp", &broker.config().url])
        .args(["--queue", queue])
        .args([
            "--exchange",
            &broker
                .names()
                .exchange(tickwatch_schema::names::Exchange::Notify),
        ])
        .arg("--rules")
        .arg(&rules_file)
        .args(["--messages", &messages.to_string()])
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        output.status.success(),
        "the Python baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the Python baseline's report")?;
    report["per_second"]
        .as_f64()
        .context("the Python baseline's report has no per_second")
}

fn encode_all<M: Message>(messages: &[M]) -> anyhow::Result<Vec<(String, &'static str, Vec<u8>)>> {
    messages
        .iter()
        .map(|m| {
            let e = tickwatch_schema::wire::encode(m)?;
            Ok((e.meta.routing_key, M::KIND.as_str(), e.body))
        })
        .collect()
}

/// 100 symbols (or fewer for a small run) of real BTCUSDT minute bars from the demo file,
/// each symbol its own stretch of the file and price scale, interleaved by time.
fn bench_candles(total: usize) -> Vec<Candle> {
    let bars: Vec<Candle> = tickwatch_schema::history::HistoryReader::new(
        crate::app::DEMO_BARS,
        "BTCUSDT_1m.csv",
        "binance",
        "BTCUSDT",
        tickwatch_schema::wire::Interval::M1,
    )
    .expect("the demo file has its header")
    .filter_map(Result::ok)
    .collect();
    let symbols = 100.min(total.max(1));
    let per_symbol = total.div_ceil(symbols).min(bars.len());
    let mut out = Vec::with_capacity(total);
    for i in 0..per_symbol {
        for s in 0..symbols {
            let start = (s * 37) % (bars.len() - per_symbol + 1);
            let mut c = bars[start + i].clone();
            let scale = Decimal::new(100 + s as i64, 2);
            c.symbol = format!("BENCH{s}");
            c.open_ts = bars[i].open_ts;
            c.open *= scale;
            c.high *= scale;
            c.low *= scale;
            c.close *= scale;
            out.push(c);
            if out.len() == total {
                return out;
            }
        }
    }
    out
}

/// 10,000 rules on 1,000 symbols (10 per symbol, 100 users with a chat each), and ticks
/// that make `fire_ratio` of them cross a rule (and fall back below right after).
async fn alert_workload(
    db: &DatabaseConnection,
    ticks: usize,
    fire_ratio: f64,
) -> anyhow::Result<Vec<Tick>> {
    const SYMBOLS: usize = 1_000;
    seed_alert_rules(db, SYMBOLS, 10, 100).await?;
    let now = tickwatch_schema::db::now_ms();
    // Per symbol, every `every`-th tick rises to 101.5 (one firing); the others sit at
    // 100 or just above, below every threshold.
    let every = if fire_ratio > 0.0 {
        (1.0 / fire_ratio).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    let mut out = Vec::with_capacity(ticks);
    for i in 0..ticks {
        let (s, round) = (i % SYMBOLS, i / SYMBOLS);
        let price = if round % every == every - 1 {
            Decimal::new(1015, 1)
        } else {
            Decimal::from(100) + Decimal::new((round % 7) as i64, 2)
        };
        out.push(Tick {
            venue: "binance".into(),
            symbol: format!("BENCH{s}"),
            price,
            qty: Decimal::ONE,
            ts: now + i as i64,
            trade_id: Some(i.to_string()),
        });
    }
    Ok(out)
}

/// `users` users with a chat each (`10,000 + n`), and `per_symbol` active `crossing_up`
/// rules (every time, no hysteresis) on each of the symbols `BENCH0`…: thresholds 101,
/// 102, …, so a rise to 101.5 crosses exactly the first.
async fn seed_alert_rules(
    db: &DatabaseConnection,
    symbols: usize,
    per_symbol: usize,
    users: usize,
) -> anyhow::Result<()> {
    use tickwatch_schema::db::entity::alert_rule;
    use tickwatch_schema::db::{new_rule_row, new_user_row};
    use tickwatch_schema::rule::{Condition, RuleSpec, Trigger};
    let now = tickwatch_schema::db::now_ms();
    let mut user_ids = Vec::with_capacity(users);
    for u in 0..users {
        let row = new_user_row(format!("bench{u}"), Some(10_000 + u as i64), "en", now)
            .insert(db)
            .await?;
        user_ids.push(row.id);
    }
    let mut rows = Vec::with_capacity(symbols * per_symbol);
    for s in 0..symbols {
        for r in 0..per_symbol {
            let mut spec = RuleSpec::price(
                "binance",
                &format!("BENCH{s}"),
                Condition::CrossingUp,
                Decimal::from(101 + r as i64),
            );
            spec.trigger = Trigger::EveryTime;
            spec.hysteresis_pct = Some(Decimal::ZERO);
            let user = user_ids[(s * per_symbol + r) % users];
            rows.push(new_rule_row(user, &spec, true, now));
        }
    }
    for chunk in rows.chunks(1_000) {
        alert_rule::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The web dashboard's cost to the API: `GET /v1/alerts` latency with nobody loading the
/// page, and while browsers load the page and its assets `page_loads` times a second (0:
/// back to back, a stress rather than a use) — alternating, in rounds, so drift hits both
/// alike. SQLite in a temporary directory, no broker; the API in this process on a free
/// port.
pub async fn web(requests: usize, page_loads: u32) -> anyhow::Result<()> {
    use tickwatch_gateway::services::users::NewUser;
    let dir = std::env::temp_dir().join(format!(
        "tickwatch-bench-web-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let db = tickwatch_schema::db::connect(&url).await?;
    tickwatch_schema::db::migrate_up(&db).await?;
    let services = tickwatch_gateway::Services::new(db, None);
    let user = services
        .create_user(NewUser {
            name: "bench".into(),
            ..Default::default()
        })
        .await?;
    let key = services.create_api_key(user.id).await?.key;
    let config = tickwatch_gateway::ApiConfig {
        rate_limit: tickwatch_gateway::config::RateLimitConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let state = tickwatch_gateway::api::ApiState::new(services, config, None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(tickwatch_gateway::api::serve(
        state,
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let api = |n: usize| {
        let (client, key, url) = (client.clone(), key.clone(), format!("{base}/v1/alerts"));
        async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let started = std::time::Instant::now();
                let response = client.get(&url).bearer_auth(&key).send().await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                response.bytes().await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        }
    };
    let page = ["/", "/app.js", "/app.css", "/vendor/lightweight-charts.js"];
    api(200).await?; // warm-up
    let (mut alone, mut beside, mut loads) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = 10;
    for _ in 0..rounds {
        alone.extend(api(requests / rounds).await?);
        let stop = tokio_util::sync::CancellationToken::new();
        let loader = {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut pace = (page_loads > 0).then(|| {
                    tokio::time::interval(std::time::Duration::from_secs_f64(
                        1.0 / f64::from(page_loads),
                    ))
                });
                while !stop.is_cancelled() {
                    if let Some(pace) = pace.as_mut() {
                        pace.tick().await;
                    }
                    let started = std::time::Instant::now();
                    for path in page {
                        let response = client.get(format!("{base}{path}")).send().await?;
                        anyhow::ensure!(response.status().is_success(), "{path}");
                        response.bytes().await?;
                    }
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(times)
            })
        };
        beside.extend(api(requests / rounds).await?);
        stop.cancel();
        loads.extend(loader.await??);
    }
    shutdown.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    let at = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    crate::say!(
        "web bench: GET /v1/alerts ({} requests each way, SQLite, one client)\n  alone:                 p50 {:.3} ms, p99 {:.3} ms\n  beside page loads ({}): p50 {:.3} ms, p99 {:.3} ms\n  page + assets ({} KB): p50 {:.2} ms, p99 {:.2} ms per load ({} loads)",
        alone.len(),
        at(&mut alone, 0.5),
        at(&mut alone, 0.99),
        if page_loads == 0 {
            "back to back".to_string()
        } else {
            format!("{page_loads}/s")
        },
        at(&mut beside, 0.5),
        at(&mut beside, 0.99),
        (tickwatch_gateway::api::web::PAGE_BYTES as f64 / 1024.0).round(),
        at(&mut loads, 0.5),
        at(&mut loads, 0.99),
        loads.len()
    );
    Ok(())
}
