//! The roles of tickwatch and `tickwatch run`, which starts them all in one process.
//!
//! Each role is a task on a shared [`CancellationToken`]: Ctrl-C (or SIGTERM) cancels it,
//! every role stops taking work, finishes and acknowledges what it holds, and closes; the
//! first role that fails for good stops the others and its error is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tickwatch_broker::{Broker, Publisher, Topology};
use tickwatch_gateway::Services;
use tickwatch_gateway::api::ApiState;
use tickwatch_producers::broker_sink::PublisherSink;
use tickwatch_producers::csv::{CsvConfig, Speed};
use tickwatch_producers::{MarketSink, Metrics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminBind;
use crate::config::Config;

/// The consuming roles (`tickwatch consume <role>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Signals,
    Alerts,
    Recorder,
    Notifier,
    /// Paper trading: the users' paper strategies on signals and candles.
    Paper,
}

impl Role {
    /// As on the command line, and as `WorkQueue::role` names a queue's role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Signals => "signals",
            Role::Alerts => "alerts",
            Role::Recorder => "recorder",
            Role::Notifier => "notifier",
            Role::Paper => "paper",
        }
    }
}

/// The market-data sources (`tickwatch produce <source>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Binance,
    Upbit,
    /// KRX stocks from the KIS Open API (한국투자증권).
    Kis,
    Csv,
    Synthetic,
    Webhook,
}

impl Source {
    pub fn parse(name: &str) -> anyhow::Result<Source> {
        <Source as clap::ValueEnum>::from_str(name, true)
            .map_err(|_| anyhow::anyhow!("`{name}` is not a source"))
    }
}

/// A token cancelled by Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            "shutting down: finishing and acknowledging work in progress (Ctrl-C again to force)"
        );
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("forced exit");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether opening the database also applies pending migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// `tickwatch run`: one process owns the database, so it migrates.
    Apply,
    /// A role among several: migrating is `tickwatch migrate up`'s job (one-shot, no race
    /// between replicas); a database that is behind is an error that says so.
    Require,
}

/// Opens the database, applying or requiring its migrations.
pub async fn database(
    config: &Config,
    migrations: Migrations,
) -> anyhow::Result<DatabaseConnection> {
    let shown = tickwatch_broker::config::mask_url(&config.database.url);
    let db = tickwatch_schema::db::connect_pool(&config.database.url, config.database.pool_size)
        .await
        .with_context(|| format!("opening the database {shown}"))?;
    match migrations {
        Migrations::Apply => tickwatch_schema::db::migrate_up(&db)
            .await
            .with_context(|| format!("migrating the database {shown}"))?,
        Migrations::Require => {
            let pending: Vec<String> = tickwatch_schema::db::migration_status(&db)
                .await?
                .into_iter()
                .filter(|(_, applied)| !applied)
                .map(|(name, _)| name)
                .collect();
            if !pending.is_empty() {
                anyhow::bail!(
                    "the database {shown} has {} pending migration(s) ({}): run `tickwatch migrate up` first",
                    pending.len(),
                    pending.join(", ")
                );
            }
        }
    }
    Ok(db)
}

/// Connects to RabbitMQ and declares the topology (idempotent).
pub async fn broker(config: &Config, role: &str) -> anyhow::Result<Broker> {
    let broker = Broker::connect(config.broker.clone(), role).await?;
    Topology::standard(&config.broker)?.apply(&broker).await?;
    Ok(broker)
}

/// Named role tasks that stop together, and the background tasks that serve them (the
/// admin server, metric mirrors), which stop with the shutdown token and are waited for
/// after the roles.
#[derive(Debug)]
pub struct Roles {
    tasks: JoinSet<(String, anyhow::Result<()>)>,
    background: TaskTracker,
    shutdown: CancellationToken,
}

impl Roles {
    pub fn new(shutdown: &CancellationToken) -> Self {
        Roles {
            tasks: JoinSet::new(),
            background: TaskTracker::new(),
            shutdown: shutdown.clone(),
        }
    }

    /// Where background tasks go: each must end once the shutdown token is cancelled.
    pub fn background(&self) -> &TaskTracker {
        &self.background
    }

    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn spawn<F>(&mut self, name: &str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.to_string();
        tracing::info!(role = %name, "starting");
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Waits for every role; the first failure stops the rest and is returned.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = match joined {
                Ok(done) => done,
                Err(e) => (
                    "a role".to_string(),
                    Err(anyhow::anyhow!("task failed: {e}")),
                ),
            };
            match result {
                Ok(()) => tracing::info!(role = %name, "stopped"),
                Err(e) => {
                    tracing::error!(role = %name, error = %format!("{e:#}"), "role failed; stopping the others");
                    self.shutdown.cancel();
                    first_error.get_or_insert(e.context(format!("{name} failed")));
                }
            }
        }
        // Every role is done (a replay that finished, or a shutdown): so is the process.
        self.shutdown.cancel();
        self.background.close();
        self.background.wait().await;
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts a consuming role on `roles`.
pub fn start_role(
    roles: &mut Roles,
    role: Role,
    config: &Config,
    broker: &Broker,
    db: &DatabaseConnection,
) {
    let (broker, db, shutdown) = (broker.clone(), db.clone(), roles.token());
    match role {
        Role::Signals => {
            let cfg = config.signals.clone();
            roles.spawn("signals", async move {
                Ok(tickwatch_signals::adapter::run(&broker, db, &cfg, shutdown).await?)
            });
        }
        Role::Alerts => {
            let cfg = config.alerts.clone();
            roles.spawn("alerts", async move {
                Ok(tickwatch_alerts::adapter::run(&broker, db, &cfg, shutdown).await?)
            });
        }
        Role::Recorder => {
            roles.spawn("recorder", async move {
                Ok(tickwatch_recorder::adapter::run(&broker, db, shutdown).await?)
            });
        }
        Role::Notifier => {
            let cfg = config.notifier.clone();
            roles.spawn("notifier", async move {
                Ok(tickwatch_notifier::adapter::run(&broker, db, &cfg, shutdown).await?)
            });
        }
        Role::Paper => {
            roles.spawn("paper", async move {
                Ok(tickwatch_paper::adapter::run(&broker, db, shutdown).await?)
            });
        }
    }
}

/// A process's wiring, in the order every process starts: the database (if it uses one),
/// the broker with its topology, the admin endpoints; then its roles, started by the
/// caller on [`Process::roles`]; then [`Process::finish`] waits for them and closes.
#[derive(Debug)]
pub struct Process {
    pub broker: Broker,
    pub db: Option<DatabaseConnection>,
    pub roles: Roles,
}

impl Process {
    /// Opens what the process `name` needs; `migrations` `None`: no database.
    pub async fn start(
        config: &Config,
        name: &str,
        migrations: Option<Migrations>,
        admin: AdminBind,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Process> {
        let db = match migrations {
            Some(migrations) => Some(database(config, migrations).await?),
            None => None,
        };
        let broker = broker(config, name).await?;
        let roles = Roles::new(shutdown);
        crate::admin::spawn(
            config,
            crate::admin::Readiness {
                broker: Some(broker.clone()),
                db: db.clone(),
            },
            shutdown,
            roles.background(),
            admin,
        )
        .await?;
        Ok(Process { broker, db, roles })
    }

    /// The database; only for processes started with migrations.
    pub fn db(&self) -> anyhow::Result<&DatabaseConnection> {
        self.db
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this process has no database"))
    }

    /// Waits for every role (the first failure stops the others), then closes the
    /// gateway's services, if any, and the broker.
    pub async fn finish(self, services: Option<Services>) -> anyhow::Result<()> {
        let result = self.roles.wait().await;
        if let Some(services) = services {
            services.close().await;
        }
        self.broker.close();
        result
    }
}

/// `tickwatch consume <role>`.
pub async fn consume(
    config: &Config,
    role: Role,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let name = format!("{role:?}").to_lowercase();
    let mut process = Process::start(
        config,
        &name,
        Some(Migrations::Require),
        AdminBind::Required,
        &shutdown,
    )
    .await?;
    let db = process.db()?.clone();
    start_role(&mut process.roles, role, config, &process.broker, &db);
    process.finish(None).await
}

/// A sink publishing to the broker, confirmed.
pub fn market_sink(broker: &Broker, name: &str) -> (Arc<dyn MarketSink>, Publisher) {
    let publisher = Publisher::start(broker, name);
    (Arc::new(PublisherSink::new(publisher.clone())), publisher)
}

/// Starts a source on `roles`, with the configuration `config.producers.<source>`.
pub fn start_source(roles: &mut Roles, source: Source, config: &Config, broker: &Broker) {
    let source_name = format!("{source:?}").to_lowercase();
    let name = format!("producer:{source_name}");
    let (sink, publisher) = market_sink(broker, &name);
    let shutdown = roles.token();
    let p = config.producers.clone();
    let counters = Arc::new(Metrics::default());
    roles.background().spawn(mirror_producer_metrics(
        source_name,
        counters.clone(),
        shutdown.clone(),
    ));
    roles.spawn(&name.clone(), async move {
        use tickwatch_producers::{binance, csv, kis, synthetic, upbit, webhook};
        let outcome: anyhow::Result<()> = match source {
            Source::Binance => binance::run_with_metrics(p.binance, sink, counters, shutdown)
                .await
                .map(drop)
                .map_err(Into::into),
            Source::Upbit => upbit::run_with_metrics(p.upbit, sink, counters, shutdown)
                .await
                .map(drop)
                .map_err(Into::into),
            Source::Kis => kis::run_with_metrics(p.kis, sink, counters, shutdown)
                .await
                .map(drop)
                .map_err(Into::into),
            Source::Synthetic => synthetic::run_with_metrics(p.synthetic, sink, counters, shutdown)
                .await
                .map(drop)
                .map_err(Into::into),
            Source::Webhook => match tokio::net::TcpListener::bind(p.webhook.addr).await {
                Ok(listener) => webhook::serve_on(listener, sink, p.webhook, counters, shutdown)
                    .await
                    .map_err(Into::into),
                Err(e) => Err(anyhow::anyhow!(
                    "producers.webhook.addr {}: {e}",
                    p.webhook.addr
                )),
            },
            Source::Csv => match csv::replay_with_metrics(p.csv, sink, counters, shutdown).await {
                Ok(report) => {
                    tracing::info!(?report, "replay finished");
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
        };
        publisher.close().await;
        outcome
    });
}

/// Copies a source's counters into Prometheus every few seconds.
async fn mirror_producer_metrics(
    source: String,
    counters: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        for (event, value) in counters.snapshot().iter() {
            crate::events::ProducerCounter {
                source: &source,
                event,
                value,
            }
            .emit();
        }
    }
}

/// `tickwatch produce <source>`.
pub async fn produce(
    config: &Config,
    source: Source,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let name = format!("produce-{source:?}").to_lowercase();
    let mut process = Process::start(config, &name, None, AdminBind::Required, &shutdown).await?;
    start_source(&mut process.roles, source, config, &process.broker);
    process.finish(None).await
}

/// Real BTCUSDT minute bars (10–12 March 2023), built into the binary: the demo's source.
pub const DEMO_BARS: &[u8] = include_bytes!("../data/demo/BTCUSDT_1m.csv");

/// The demo's history file: the configured one, or the copy built into the binary.
pub fn demo_file(config: &Config) -> anyhow::Result<PathBuf> {
    if config.run.demo_file.exists() {
        return Ok(config.run.demo_file.clone());
    }
    let dir = std::env::temp_dir().join("tickwatch-demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("BTCUSDT_1m.csv");
    if std::fs::read(&path).ok().as_deref() != Some(DEMO_BARS) {
        std::fs::write(&path, DEMO_BARS).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// The demo source: the shipped minute bars replayed fast, as candles and ticks.
pub fn demo_csv(config: &Config, path: &Path) -> anyhow::Result<CsvConfig> {
    let mut csv = CsvConfig::for_file(path);
    csv.speed = config
        .run
        .demo_speed
        .parse::<Speed>()
        .map_err(|e| anyhow::anyhow!("run.demo_speed: {e}"))?;
    csv.ticks = true;
    csv.progress = false;
    Ok(csv)
}

/// The service layer of the API and the bot, announcing changes on the broker.
pub fn services(db: &DatabaseConnection, broker: Option<&Broker>) -> Services {
    Services::new(db.clone(), broker.cloned())
}

/// Loads a symbol's candle history when it gets its first alert or subscription (the
/// `[history]` section; venues of the configured sources only), in the background.
pub fn load_history_on_first_alert(
    roles: &Roles,
    config: &Config,
    services: &Services,
    broker: &Broker,
) -> anyhow::Result<()> {
    let loader = crate::history::Loader::new(
        config,
        services.db().clone(),
        Publisher::start(broker, "history"),
    )?;
    if let Some(loads) =
        crate::history::FirstAlertLoads::start(config, loader, roles.background(), roles.token())
    {
        services.set_history_requests(loads);
    }
    Ok(())
}

/// Starts the HTTP API on `roles`; its address must be free.
pub async fn start_api(
    roles: &mut Roles,
    config: &Config,
    services: &Services,
) -> anyhow::Result<()> {
    let handle = crate::admin::metrics_handle()?;
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || handle.render());
    let state = ApiState::new(services.clone(), config.api.clone(), Some(render))?;
    let listener = tokio::net::TcpListener::bind(&config.api.addr)
        .await
        .with_context(|| {
            format!(
                "api.addr {}: cannot listen (TICKWATCH_API_ADDR)",
                config.api.addr
            )
        })?;
    let shutdown = roles.token();
    roles.spawn("api", async move {
        Ok(tickwatch_gateway::api::serve(state, listener, shutdown).await?)
    });
    Ok(())
}

/// Starts the Telegram bot on `roles`.
pub fn start_bot(roles: &mut Roles, config: &Config, services: &Services) {
    let (mut bot, services, shutdown) = (config.bot.clone(), services.clone(), roles.token());
    // `/relay` shows a URL of the HTTP API.
    bot.relay_base_url = Some(
        config
            .api
            .relay
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.api.addr)),
    );
    roles.spawn("bot", async move {
        Ok(tickwatch_gateway::bot::run(bot, services, shutdown).await?)
    });
}

/// `tickwatch api` or `tickwatch bot`.
pub async fn gateway(
    config: &Config,
    api: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !api && config.bot.token.is_none() {
        anyhow::bail!("the bot needs TELEGRAM_BOT_TOKEN (or [telegram] token) from @BotFather");
    }
    let name = if api { "api" } else { "bot" };
    let mut process = Process::start(
        config,
        name,
        Some(Migrations::Require),
        AdminBind::Required,
        &shutdown,
    )
    .await?;
    let services = services(process.db()?, Some(&process.broker));
    load_history_on_first_alert(&process.roles, config, &services, &process.broker)?;
    if api {
        start_api(&mut process.roles, config, &services).await?;
    } else {
        start_bot(&mut process.roles, config, &services);
    }
    process.finish(Some(services)).await
}

/// `tickwatch run`: every role in one process.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut process = Process::start(
        config,
        "run",
        Some(Migrations::Apply),
        AdminBind::BestEffort,
        &shutdown,
    )
    .await?;
    tracing::info!(
        database = %tickwatch_broker::config::mask_url(&config.database.url),
        broker = %tickwatch_broker::config::mask_url(&config.broker.url),
        "topology applied and database migrated"
    );
    let (broker, db) = (process.broker.clone(), process.db()?.clone());
    let services = services(&db, Some(&broker));
    let roles = &mut process.roles;
    if config.run.demo_user {
        crate::demo::ensure(config, &services).await?;
    }
    load_history_on_first_alert(roles, config, &services, &broker)?;
    for role in [
        Role::Recorder,
        Role::Signals,
        Role::Alerts,
        Role::Notifier,
        Role::Paper,
    ] {
        start_role(roles, role, config, &broker, &db);
    }
    start_api(roles, config, &services).await?;
    tracing::info!(
        url = %format!("http://{}/", config.api.addr),
        sign_in = "`tickwatch user login-link demo` (or /web to the bot)",
        "web dashboard"
    );
    if config.bot.token.is_some() {
        start_bot(roles, config, &services);
    } else {
        tracing::info!("no TELEGRAM_BOT_TOKEN: the Telegram bot is not started (the HTTP API is)");
    }
    if config.run.sources.is_empty() {
        let file = demo_file(config)?;
        let mut with_demo = config.clone();
        with_demo.producers.csv = demo_csv(config, &file)?;
        tracing::info!(file = %file.display(), speed = %config.run.demo_speed, "demo source: replaying real BTCUSDT minute bars");
        start_source(roles, Source::Csv, &with_demo, &broker);
    } else {
        for name in &config.run.sources {
            start_source(roles, Source::parse(name)?, config, &broker);
        }
    }
    process.finish(Some(services)).await
}
