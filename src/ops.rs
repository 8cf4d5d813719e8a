//! Operator commands: database migrations, broker topology, dead-letter queues, history
//! files (`indicators`, `scan`), users and API keys. (Benchmarks are in `bench`.)

use anyhow::Context;
use tickwatch_broker::{Broker, Topology, dlq};

use crate::config::Config;

/// What `tickwatch migrate` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back `--steps` migrations.
    Down,
    /// Only list the migrations, applied or pending.
    Status,
}

/// What `tickwatch topology` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopologyAction {
    /// Declare it on the broker.
    Apply,
    /// Print it.
    Show,
    /// Print it as RabbitMQ definitions JSON.
    Export,
}

/// `tickwatch migrate up|down|status`.
pub async fn migrate(config: &Config, action: MigrateAction, steps: u32) -> anyhow::Result<()> {
    let db = tickwatch_schema::db::connect_pool(&config.database.url, config.database.pool_size)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                tickwatch_broker::config::mask_url(&config.database.url)
            )
        })?;
    match action {
        MigrateAction::Up => {
            tickwatch_schema::db::migrate_up(&db).await?;
            crate::say!("migrations applied");
        }
        MigrateAction::Down => {
            tickwatch_schema::db::migrate_down(&db, steps).await?;
            crate::say!("rolled back {steps} migration(s)");
        }
        MigrateAction::Status => {}
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
pub async fn topology(config: &Config, action: TopologyAction) -> anyhow::Result<()> {
    let topology = Topology::standard(&config.broker)?;
    match action {
        TopologyAction::Apply => {
            let broker = broker(config, "topology").await?;
            topology.apply(&broker).await?;
            broker.close();
            crate::say!(
                "topology applied: {} exchanges, {} queues, {} bindings ({} retired ones removed where present)",
                topology.exchanges.len(),
                topology.queues.len(),
                topology.bindings.len(),
                topology.retired_bindings.len()
            );
        }
        TopologyAction::Export => {
            let (_, _, _, vhost) = config.broker.management_base()?;
            crate::say!(
                "{}",
                serde_json::to_string_pretty(&topology.definitions(&vhost))?
            );
        }
        TopologyAction::Show => crate::say(topology.to_string()),
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

/// Opens a history file for `indicators` and `scan`, inferring what is not given. A venue
/// that cannot be inferred only decides the trading day here: UTC days, said on stderr.
fn history(
    path: &std::path::Path,
    venue: Option<&str>,
    symbol: Option<&str>,
    interval: Option<tickwatch_schema::wire::Interval>,
) -> anyhow::Result<tickwatch_schema::history::HistoryReader<std::io::BufReader<std::fs::File>>> {
    let inferred = tickwatch_schema::history::infer_from_path(path);
    let symbol_known = symbol.is_some() || inferred.symbol.is_some();
    let venue = match venue {
        Some(v) => Some(v.to_string()),
        None => inferred.venue.or_else(|| {
            symbol_known.then(|| {
                eprintln!(
                    "note: the venue of {} is not known; days are UTC days (--venue krx for Seoul days, nyse or nasdaq for New York)",
                    path.display()
                );
                UNKNOWN_VENUE.to_string()
            })
        }),
    };
    Ok(tickwatch_schema::history::open(
        path,
        venue.as_deref(),
        symbol,
        interval,
    )?)
}

/// The venue `indicators` and `scan` give a file whose venue they cannot tell (UTC days).
const UNKNOWN_VENUE: &str = "file";

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

/// `tickwatch paper backtest --strategy <file> <history files…>`: the files through the
/// signals engine and the paper engine (the live role's two engines), the trades, and the
/// strategy's summary.
pub fn paper_backtest(
    config: &Config,
    strategy: &std::path::Path,
    paths: &[std::path::PathBuf],
    venue: Option<&str>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(strategy)
        .with_context(|| format!("reading the strategy {}", strategy.display()))?;
    let strategy: tickwatch_paper::Strategy = if strategy.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)?
    } else {
        toml::from_str(&text)?
    };
    strategy.validate()?;
    anyhow::ensure!(!paths.is_empty(), "give at least one history file");
    let mut candles = Vec::new();
    for path in paths {
        for candle in history(path, venue, None, None)? {
            candles.push(candle?);
        }
    }
    // Several files replay together, in the order their candles close (a day's candle
    // after that day's hours), as the broker delivers them live.
    candles.sort_by_key(|c| c.open_ts.saturating_add(c.interval.as_ms()));
    let starting = strategy.starting_balance;
    let currency = strategy.currency.clone();
    let result = tickwatch_paper::backtest::run(vec![strategy], &candles, &config.signals)?;
    for t in &result.trades {
        crate::say!(
            "{} {} {} {} → {} {} ({:?}, {} bars): {} {} ({}%)",
            t.venue,
            t.symbol,
            tickwatch_schema::history::format_ts(t.entry_ts),
            t.entry_price,
            tickwatch_schema::history::format_ts(t.exit_ts),
            t.exit_price,
            t.exit_reason,
            t.bars,
            t.pnl.round_dp(2),
            currency,
            t.return_pct.round_dp(2),
        );
    }
    let s = tickwatch_paper::summarize(&result.trades, starting);
    crate::say!(
        "{} candles, {} signals; {} trades ({} skipped for cash): win rate {}%, average return {}%, profit factor {}, max drawdown {}%, net {} {} ({}%), exposure {}%",
        result.candles,
        result.signals,
        s.trades,
        result.skipped,
        s.win_rate_pct,
        s.average_return_pct.round_dp(2),
        s.profit_factor
            .map_or("—".to_string(), |p| p.round_dp(2).to_string()),
        s.max_drawdown_pct,
        s.net_profit.round_dp(2),
        currency,
        s.total_return_pct,
        s.exposure_pct,
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

    pub async fn login_link(config: &Config, user: &str) -> anyhow::Result<()> {
        let services = services(config).await?;
        let found = services.find_user(user).await?;
        let token = services.create_web_link(found.id).await?;
        services.close().await;
        let base = config
            .api
            .relay
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.api.addr));
        crate::say!(
            "Sign-in link to the dashboard for {} (works once, within 10 minutes):\n{}/#login={token}",
            found.name,
            base.trim_end_matches('/')
        );
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

/// `tickwatch symbols import|search`.
pub mod symbols {
    use std::path::Path;
    use std::time::Instant;

    use anyhow::Context;
    use tickwatch_gateway::services::universe::{self, Listed};

    use crate::config::Config;

    /// Where a symbol list comes from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum ImportSource {
        /// Binance spot: `GET /api/v3/exchangeInfo` (symbols that are TRADING).
        Binance,
        /// Upbit: `GET /v1/market/all?isDetails=true` (Korean and English names).
        Upbit,
        /// KRX stocks: KIS's master files (`*.mst`) or a CSV `code,name,market`.
        Krx,
    }

    impl ImportSource {
        fn venue(self) -> &'static str {
            match self {
                ImportSource::Binance => "binance",
                ImportSource::Upbit => "upbit",
                ImportSource::Krx => "krx",
            }
        }

        fn default_url(self) -> Option<&'static str> {
            match self {
                ImportSource::Binance => Some("https://api.binance.com/api/v3/exchangeInfo"),
                ImportSource::Upbit => Some("https://api.upbit.com/v1/market/all?isDetails=true"),
                ImportSource::Krx => None,
            }
        }
    }

    /// A file's bytes, or a URL's body.
    async fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
        if input.starts_with("http://") || input.starts_with("https://") {
            let response = reqwest::Client::new()
                .get(input)
                .timeout(std::time::Duration::from_secs(60))
                .send()
                .await
                .with_context(|| {
                    format!("{input} unreachable (on a machine without internet, give a file)")
                })?;
            let status = response.status();
            anyhow::ensure!(status.is_success(), "{input} answered {status}");
            Ok(response.bytes().await?.to_vec())
        } else {
            std::fs::read(input).with_context(|| format!("cannot read {input}"))
        }
    }

    fn parse(source: ImportSource, input: &str, bytes: &[u8]) -> anyhow::Result<Vec<Listed>> {
        let text = || universe::decode_text(bytes);
        Ok(match source {
            ImportSource::Binance => universe::parse_binance_exchange_info(&text())?,
            ImportSource::Upbit => universe::parse_upbit_markets(&text())?,
            ImportSource::Krx if input.to_ascii_lowercase().ends_with(".csv") => {
                universe::parse_krx_csv(&text())?
            }
            ImportSource::Krx => {
                let name = Path::new(input)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tail = universe::master_tail(&name).with_context(|| {
                    format!("{input}: a KIS master file is named kospi_code.mst or kosdaq_code.mst (or give a .csv)")
                })?;
                universe::parse_krx_master(bytes, tail)?
            }
        })
    }

    pub async fn import(
        config: &Config,
        source: ImportSource,
        inputs: &[String],
    ) -> anyhow::Result<()> {
        let inputs: Vec<String> = match (inputs.is_empty(), source.default_url()) {
            (false, _) => inputs.to_vec(),
            (true, Some(url)) => vec![url.to_string()],
            (true, None) => anyhow::bail!(
                "krx: give KIS's master files (kospi_code.mst kosdaq_code.mst) or a CSV code,name,market"
            ),
        };
        // Each import is the venue's complete list: one master file alone would mark the
        // other market's stocks delisted.
        let masters: Vec<usize> = inputs
            .iter()
            .filter_map(|i| {
                let name = Path::new(i)
                    .file_name()?
                    .to_string_lossy()
                    .to_ascii_lowercase();
                name.ends_with(".mst")
                    .then(|| universe::master_tail(&name))
                    .flatten()
            })
            .collect();
        if source == ImportSource::Krx
            && !masters.is_empty()
            && !(masters.contains(&universe::KOSPI_TAIL)
                && masters.contains(&universe::KOSDAQ_TAIL))
        {
            anyhow::bail!(
                "krx: give both kospi_code.mst and kosdaq_code.mst in one import (it is the venue's complete list; one file alone would mark the other market's stocks delisted)"
            );
        }
        let mut listed = Vec::new();
        for input in &inputs {
            let bytes = read_input(input).await?;
            let found = parse(source, input, &bytes).with_context(|| input.to_string())?;
            crate::say!("{input}: {} symbols", found.len());
            listed.extend(found);
        }
        let db = crate::app::database(config, crate::app::Migrations::Require).await?;
        let services = tickwatch_gateway::Services::new(db, None);
        let started = Instant::now();
        let report = services.import_symbols(source.venue(), listed).await?;
        crate::say!(
            "{}: {} listed — {} added, {} updated, {} unchanged, {} marked inactive ({:.1} s)",
            report.venue,
            report.listed,
            report.added,
            report.updated,
            report.unchanged,
            report.deactivated,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    pub async fn search(config: &Config, query: &str, limit: usize) -> anyhow::Result<()> {
        let db = crate::app::database(config, crate::app::Migrations::Require).await?;
        let services = tickwatch_gateway::Services::new(db, None);
        // The first search reads the table; later ones (as in a running API or bot) use
        // the list in memory.
        let first = Instant::now();
        services.search_symbols(query, limit).await?;
        let cold = first.elapsed();
        let warm = Instant::now();
        let found = services.search_symbols(query, limit).await?;
        let warm = warm.elapsed();
        for s in &found {
            crate::say!(
                "{:<8} {:<12} {}{}",
                s.venue,
                s.symbol,
                s.name,
                if s.active { "" } else { "  (delisted)" }
            );
        }
        crate::say!(
            "{} found; {:.2} ms from the database, {:.2} ms from memory",
            found.len(),
            cold.as_secs_f64() * 1000.0,
            warm.as_secs_f64() * 1000.0
        );
        Ok(())
    }
}
