//! Operator commands: database migrations, broker topology, dead-letter queues, benchmarks.

use anyhow::Context;
use sea_orm::EntityTrait;
use tickwatch_broker::{Broker, Topology, dlq};

use crate::config::Config;

/// `tickwatch migrate up|down|status`.
pub async fn migrate(config: &Config, action: &str, steps: u32) -> anyhow::Result<()> {
    let db = tickwatch_schema::db::connect(&config.database.url)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                tickwatch_broker::config::mask_url(&config.database.url)
            )
        })?;
    match action {
        "up" => {
            tickwatch_schema::db::migrate_up(&db).await?;
            crate::say!("migrations applied");
        }
        "down" => {
            tickwatch_schema::db::migrate_down(&db, steps).await?;
            crate::say!("rolled back {steps} migration(s)");
        }
        _ => {}
    }
    for (name, applied) in tickwatch_schema::db::migration_status(&db).await? {
        crate::say!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}

pub async fn broker(config: &Config, role: &str) -> anyhow::Result<Broker> {
    Ok(Broker::connect(config.broker.clone(), role).await?)
}

/// `tickwatch topology apply|show|export`.
pub async fn topology(config: &Config, action: &str) -> anyhow::Result<()> {
    let topology = Topology::standard(&config.broker)?;
    match action {
        "apply" => {
            let broker = broker(config, "topology").await?;
            topology.apply(&broker).await?;
            broker.close();
            crate::say!(
                "topology applied: {} exchanges, {} queues, {} bindings",
                topology.exchanges.len(),
                topology.queues.len(),
                topology.bindings.len()
            );
        }
        "export" => {
            let (_, _, _, vhost) = config.broker.management_base()?;
            crate::say!(
                "{}",
                serde_json::to_string_pretty(&topology.definitions(&vhost))?
            );
        }
        _ => crate::say(topology.to_string()),
    }
    Ok(())
}

#[derive(Debug)]
pub enum DlqAction {
    List,
    Show {
        queue: String,
        limit: usize,
    },
    Replay {
        queue: String,
        limit: usize,
        reason: Option<String>,
        only_queue: bool,
    },
    Purge {
        queue: String,
    },
}

/// `tickwatch dlq list|show|replay|purge`.
pub async fn dlq(config: &Config, action: DlqAction) -> anyhow::Result<()> {
    let topology = Topology::standard(&config.broker)?;
    let broker = broker(config, "dlq").await?;
    let resolve = |q: &str| dlq::resolve(&topology, broker.names(), q);
    match action {
        DlqAction::List => {
            crate::say!("{:<40} {:>7}  reasons", "dlq", "depth");
            for s in dlq::list(&broker, &topology).await? {
                let reasons: Vec<String> = s
                    .by_reason
                    .iter()
                    .map(|(r, n)| format!("{r}={n}"))
                    .collect();
                let note = if (s.scanned as u32) < s.depth {
                    format!(" (first {} read)", s.scanned)
                } else {
                    String::new()
                };
                crate::say!("{:<40} {:>7}  {}{note}", s.dlq, s.depth, reasons.join(" "));
            }
        }
        DlqAction::Show { queue, limit } => {
            let name = resolve(&queue)?;
            let messages = dlq::show(&broker, &name, limit).await?;
            if messages.is_empty() {
                crate::say!("{name} is empty");
            }
            for m in messages {
                crate::say!("{}", serde_json::to_string_pretty(&m)?);
            }
        }
        DlqAction::Replay {
            queue,
            limit,
            reason,
            only_queue,
        } => {
            let name = resolve(&queue)?;
            let target = if only_queue {
                let source = dlq::source_queue(&topology, &name)
                    .ok_or_else(|| anyhow::anyhow!("no work queue feeds {name}"))?;
                Some(source.to_string())
            } else {
                None
            };
            let report =
                dlq::replay(&broker, &name, limit, reason.as_deref(), target.as_deref()).await?;
            crate::say!(
                "replayed {} from {name} to {}; {} skipped, {} failed (left in the DLQ)",
                report.replayed,
                target.as_deref().unwrap_or("their original exchanges"),
                report.skipped,
                report.failed
            );
        }
        DlqAction::Purge { queue } => {
            let name = resolve(&queue)?;
            let n = dlq::purge(&broker, &name).await?;
            crate::say!("purged {n} message(s) from {name}");
        }
    }
    broker.close();
    Ok(())
}

/// Opens a history file for `indicators` and `scan`, inferring what is not given.
fn history(
    path: &std::path::Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<tickwatch_schema::wire::Interval>,
) -> anyhow::Result<tickwatch_schema::history::HistoryReader<std::io::BufReader<std::fs::File>>> {
    Ok(tickwatch_schema::history::open(
        path, venue, symbol, interval,
    )?)
}

/// `tickwatch indicators <csv>`: the engine's indicator values as CSV on stdout.
pub fn indicators(
    path: &std::path::Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<tickwatch_schema::wire::Interval>,
) -> anyhow::Result<()> {
    let reader = history(path, venue, symbol, interval)?;
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match tickwatch_signals::write_indicators(reader, out) {
        Ok(_) => Ok(()),
        // `tickwatch indicators … | head`: the reader left, nothing is wrong.
        Err(tickwatch_signals::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `tickwatch scan <csv>`: the signals the engine finds in a history file.
pub fn scan(
    config: &Config,
    path: &std::path::Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<tickwatch_schema::wire::Interval>,
    kinds: &[tickwatch_schema::wire::SignalKind],
) -> anyhow::Result<()> {
    let reader = history(path, venue, symbol, interval)?;
    let signals = tickwatch_signals::scan(reader, &config.signals, kinds)?;
    crate::say(tickwatch_signals::format_scan(&signals));
    crate::say!("{} signal(s)", signals.len());
    Ok(())
}

/// `tickwatch bench signals`: the pure engine over many interleaved symbols.
pub fn bench_signals(
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
        "median {:.0} candles/s (min {:.0}, max {:.0}); goal >= 2,000,000: {}",
        rates[2],
        rates[0],
        rates[4],
        if rates[2] >= 2_000_000.0 {
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
pub async fn bench_signals_through_broker(
    config: &Config,
    data_dir: &std::path::Path,
    symbols: usize,
    bars: usize,
) -> anyhow::Result<()> {
    use tickwatch_schema::db::entity::signal_progress;
    let sources = tickwatch_signals::bench::load_sources(data_dir)?;
    let universe = tickwatch_signals::bench::build_universe(&sources, symbols, bars);
    let dir =
        std::env::temp_dir().join(format!("tickwatch-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let db = tickwatch_schema::db::connect(&db_url).await?;
    tickwatch_schema::db::migrate_up(&db).await?;
    let mut broker_config = config.broker.clone();
    broker_config.prefix = format!(
        "twbench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let broker =
        tickwatch_broker::Broker::connect(broker_config.clone(), &broker_config.prefix).await?;
    let topology = Topology::standard(&broker_config)?;
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
    // Done when every series' progress reached its own last candle.
    let mut last_of: std::collections::HashMap<(String, String, String), i64> = Default::default();
    for c in &universe {
        let key = (
            c.venue.clone(),
            c.symbol.clone(),
            c.interval.as_str().to_string(),
        );
        let entry = last_of.entry(key).or_insert(c.open_ts);
        *entry = (*entry).max(c.open_ts);
    }
    loop {
        let progress = signal_progress::Entity::find().all(&db).await?;
        let done = progress
            .iter()
            .filter(|p| {
                last_of
                    .get(&(p.venue.clone(), p.symbol.clone(), p.interval.clone()))
                    .is_some_and(|last| p.last_open_ts >= *last)
            })
            .count();
        if done >= last_of.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if started.elapsed() > std::time::Duration::from_secs(3_600) {
            anyhow::bail!(
                "the signals role did not finish within an hour ({done} of {} series)",
                last_of.len()
            );
        }
    }
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

/// `tickwatch bench alerts`: the pure rule book against a naive loop, in one run.
pub fn bench_alerts(rules: usize, symbols: usize, ticks: usize) -> anyhow::Result<()> {
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

/// `tickwatch bench csv`: `produce csv --speed max` into the broker, next to raw lapin
/// publishing the same candles with confirms to the same exchange (so into the same
/// queues), in one run; each phase on a freshly applied standard topology.
pub async fn bench_csv(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    use tickwatch_schema::wire::Message;

    let mut broker_config = config.broker.clone();
    broker_config.prefix = format!(
        "twbench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let broker =
        tickwatch_broker::Broker::connect(broker_config.clone(), &broker_config.prefix).await?;
    let topology = Topology::standard(&broker_config)?;
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

/// `tickwatch user add|list|remove`, `tickwatch apikey create`.
pub mod users {
    use tickwatch_gateway::services::users::{Language, NewUser};

    use crate::config::Config;

    async fn services(config: &Config) -> anyhow::Result<tickwatch_gateway::Services> {
        let db = crate::app::database(config, crate::app::Migrations::Require).await?;
        // Removing a user retires their rules on running alerts instances when the broker
        // is there; the database change stands either way.
        let broker = match tickwatch_broker::Broker::connect(config.broker.clone(), "cli").await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "broker unreachable: changes are stored, not announced");
                None
            }
        };
        Ok(tickwatch_gateway::Services::new(db, broker))
    }

    pub async fn add(
        config: &Config,
        name: &str,
        chat: Option<i64>,
        admin: bool,
        language: &str,
    ) -> anyhow::Result<()> {
        let services = services(config).await?;
        let user = services
            .create_user(NewUser {
                name: name.to_string(),
                telegram_chat_id: chat,
                admin,
                language: Language::from_code(Some(language)),
                demo: false,
            })
            .await?;
        services.close().await;
        crate::say!(
            "user {} created: {}{}",
            user.id,
            user.name,
            if admin { " (admin)" } else { "" }
        );
        Ok(())
    }

    pub async fn list(config: &Config) -> anyhow::Result<()> {
        let services = services(config).await?;
        crate::say!(
            "{:>5}  {:<20} {:>14}  {:<5} {:<6} flags",
            "id",
            "name",
            "telegram chat",
            "lang",
            "active"
        );
        for u in services.list_users().await? {
            let mut flags = Vec::new();
            if u.admin {
                flags.push("admin");
            }
            if u.demo {
                flags.push("demo");
            }
            crate::say!(
                "{:>5}  {:<20} {:>14}  {:<5} {:<6} {}",
                u.id,
                u.name,
                u.telegram_chat_id
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                u.language,
                u.active,
                flags.join(",")
            );
        }
        services.close().await;
        Ok(())
    }

    pub async fn remove(config: &Config, user: Option<&str>, demo: bool) -> anyhow::Result<()> {
        let services = services(config).await?;
        let removed = if demo {
            services.remove_demo_users().await?
        } else {
            let Some(given) = user else {
                anyhow::bail!("name the user (id, name or chat:<id>) or give --demo");
            };
            let found = services.find_user(given).await?;
            vec![services.remove_user(found.id).await?]
        };
        services.close().await;
        for r in &removed {
            crate::say!(
                "removed user {} ({}): {} rule(s), {} subscription(s), {} API key(s)",
                r.user.id,
                r.user.name,
                r.rules,
                r.subscriptions,
                r.api_keys
            );
        }
        if removed.is_empty() {
            crate::say!("no demo user to remove");
        }
        Ok(())
    }

    pub async fn apikey(config: &Config, user: &str) -> anyhow::Result<()> {
        let services = services(config).await?;
        let found = services.find_user(user).await?;
        let key = services.create_api_key(found.id).await?;
        services.close().await;
        crate::say!(
            "API key for {} (shown once; store it now):\n{}",
            found.name,
            key.key
        );
        Ok(())
    }
}

/// `tickwatch bench broker`.
pub async fn bench_broker(config: &Config, messages: u64) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use tickwatch_broker::{BrokerConfig, Topology};

    /// `deploy/rabbitmq/definitions.json` pre-loads the topology into the compose broker;
    /// it must be exactly what `tickwatch topology export` generates from the code.
    #[test]
    fn the_checked_in_definitions_equal_the_generated_ones() {
        let generated = Topology::standard(&BrokerConfig::default())
            .expect("topology")
            .definitions("/");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/rabbitmq/definitions.json"
        );
        let text = std::fs::read_to_string(path).expect("deploy/rabbitmq/definitions.json");
        let checked_in: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            checked_in, generated,
            "deploy/rabbitmq/definitions.json is stale: run `tickwatch topology export > deploy/rabbitmq/definitions.json`"
        );
    }
}
