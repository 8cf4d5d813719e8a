//! The `tickwatch` command line: parses arguments, loads the configuration, and hands over
//! to the library. See `tickwatch --help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tickwatch::app::{self, Role, Source};
use tickwatch::bench;
use tickwatch::config::Config;
use tickwatch::ops::{self, DlqAction};
use tickwatch_producers::csv::Speed;
use tickwatch_schema::wire::{Interval, SignalKind};

/// What `tickwatch config` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ConfigAction {
    /// Print the effective configuration, secrets masked.
    Show,
}

#[derive(Parser)]
#[command(
    name = "tickwatch",
    version,
    about = "Self-hosted, event-driven market alerts on RabbitMQ"
)]
struct Cli {
    /// Configuration file (default: ./tickwatch.toml when present).
    #[arg(long, global = true, env = "TICKWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, global = true, value_parser = ["human", "json"])]
    log_format: Option<String>,
    /// Also write logs to this file, rotated daily.
    #[arg(long, global = true)]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: topology, migrations, every consumer, and the demo
    /// replay unless sources are configured (`[run] sources = [...]`).
    Run,
    /// Shell completions, e.g. `tickwatch completions bash > ~/.local/share/bash-completion/completions/tickwatch`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), e.g. `tickwatch man > tickwatch.1 && man ./tickwatch.1`.
    Man,
    /// One consuming role.
    Consume {
        #[arg(value_enum)]
        role: Role,
    },
    /// The HTTP API (`TICKWATCH_API_ADDR`), with its OpenAPI document at /openapi.json.
    Api,
    /// The Telegram bot (needs TELEGRAM_BOT_TOKEN).
    Bot,
    /// One market-data source, publishing to the broker.
    Produce {
        #[command(subcommand)]
        source: ProduceCommand,
    },
    /// Database migrations (SQLite by default, or DATABASE_URL).
    Migrate {
        #[arg(value_enum, default_value_t = ops::MigrateAction::Up)]
        action: ops::MigrateAction,
        /// How many migrations `down` rolls back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// The broker topology: declare it, print it, or export it as RabbitMQ definitions.
    Topology {
        #[arg(value_enum)]
        action: ops::TopologyAction,
    },
    /// Dead-letter queues: list them, show, replay or purge one.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// The engine's indicator values for a history file, as CSV
    /// (`ts,sma20,ema20,rsi14,macd,macd_signal,macd_hist,bb_upper,bb_mid,bb_lower,atr14`).
    Indicators {
        /// A `ts,open,high,low,close,volume` file.
        path: PathBuf,
        #[arg(long)]
        symbol: Option<String>,
        /// Decides the trading day of daily and longer bars (and the sessions of the
        /// intraday signals): `krx` Seoul days, `nyse`/`nasdaq` New York days, others UTC.
        /// Inferred from the symbol when it can be (`005930` → krx); otherwise UTC days.
        #[arg(long)]
        venue: Option<String>,
        #[arg(long)]
        interval: Option<Interval>,
    },
    /// The signals the engine finds in a history file, with their scores.
    Scan {
        path: PathBuf,
        /// Only these kinds (comma-separated, e.g. `vcp_setup,vcp_breakout`); default: the
        /// configuration's enabled kinds.
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<SignalKind>,
        #[arg(long)]
        symbol: Option<String>,
        /// Decides the trading day of daily and longer bars (and the sessions of the
        /// intraday signals): `krx` Seoul days, `nyse`/`nasdaq` New York days, others UTC.
        /// Inferred from the symbol when it can be (`005930` → krx); otherwise UTC days.
        #[arg(long)]
        venue: Option<String>,
        #[arg(long)]
        interval: Option<Interval>,
    },
    /// Paper trading (모의매매): a strategy following signals, with virtual money.
    Paper {
        #[command(subcommand)]
        action: PaperCommand,
    },
    /// Users: add, list, remove.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Candle history: load closed candles so daily signals need not wait for live bars.
    History {
        #[command(subcommand)]
        action: HistoryCommand,
    },
    /// The symbol universe: import a venue's whole list of instruments.
    Symbols {
        #[command(subcommand)]
        action: SymbolsCommand,
    },
    /// API keys.
    Apikey {
        #[command(subcommand)]
        action: ApikeyCommand,
    },
    /// The effective configuration.
    Config {
        #[arg(value_enum, default_value_t = ConfigAction::Show)]
        action: ConfigAction,
    },
    /// Benchmarks against the real services.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum ProduceCommand {
    /// Binance spot trades and klines (`[producers.binance]`).
    Binance {
        /// Symbols, comma-separated (`BTCUSDT,ETHUSDT`).
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
    },
    /// Upbit KRW-market trades (`[producers.upbit]`).
    Upbit {
        /// Market codes, comma-separated (`KRW-BTC,KRW-ETH`).
        #[arg(long, value_delimiter = ',')]
        codes: Vec<String>,
    },
    /// KRX stock trades from the KIS Open API (`[producers.kis]`; KIS_APP_KEY and
    /// KIS_APP_SECRET from the KIS Developers portal).
    Kis {
        /// Six-character KRX codes, comma-separated (`005930,000660`).
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
    },
    /// Replay a history file (`ts,open,high,low,close,volume`).
    Csv {
        path: PathBuf,
        /// `60x`, `0.5x` or `max`.
        #[arg(long)]
        speed: Option<Speed>,
        /// Inferred from a file name like `BTCUSDT_1m.csv` when not given.
        #[arg(long)]
        symbol: Option<String>,
        #[arg(long)]
        venue: Option<String>,
        #[arg(long)]
        interval: Option<Interval>,
        /// Also publish four ticks per bar (open, then low/high in the bar's direction, close).
        #[arg(long)]
        ticks: bool,
    },
    /// Seeded geometric-Brownian-motion ticks (`[producers.synthetic]`).
    Synthetic {
        /// How many symbols.
        #[arg(long)]
        symbols: Option<usize>,
        /// Ticks per second over all symbols.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// The inbound webhook (`POST /ingest/ticks`, `POST /webhook/tradingview`).
    Webhook {
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every DLQ with its depth and counts by reason.
    List,
    /// Messages of one DLQ with their headers (left in place).
    Show {
        /// A role (`alerts`), work queue (`tw.alerts.q`) or DLQ name.
        queue: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Re-publish messages to their original exchange and routing key.
    Replay {
        queue: String,
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
        /// Only messages dead-lettered for this reason (invalid, exhausted, rejected).
        #[arg(long)]
        reason: Option<String>,
        /// Send them only to the queue that failed them (through the default exchange),
        /// not to their original exchange, which may route them to other queues too.
        #[arg(long)]
        only_queue: bool,
    },
    /// Delete every message of a DLQ.
    Purge {
        queue: String,
        /// Confirms that the messages are to be dropped.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PaperCommand {
    /// Replays history files through the signals engine and the paper engine; prints every
    /// trade and the summary.
    Backtest {
        /// The strategy, TOML or JSON (see consumers/paper/README.md).
        #[arg(long)]
        strategy: PathBuf,
        /// History files (CSV of bars), replayed together in time.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The venue of the files, when their names do not say it (`krx`, `binance` …).
        #[arg(long)]
        venue: Option<String>,
    },
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Load closed candles of symbols from the venue's REST API (binance klines, upbit
    /// candles, krx: KIS daily prices, which need KIS_APP_KEY and KIS_APP_SECRET) or from
    /// history files (`--file 005930_1d.csv`, symbol and interval from the file name), store
    /// them and warm the signals role up from them. Series the store already holds are
    /// skipped (so an interrupted load resumes); `--force` loads them again.
    Load {
        /// binance, upbit or krx.
        venue: String,
        /// Symbols as the venue spells them (`BTCUSDT`, `KRW-BTC`, `005930`).
        symbols: Vec<String>,
        /// Intervals (repeat or comma-separate); default: the `[history]` intervals (1d).
        #[arg(long, value_delimiter = ',')]
        interval: Vec<Interval>,
        /// Bars per series; default: what the signals engine warms up on (≥ 260 days).
        #[arg(long)]
        bars: Option<usize>,
        /// History files to load instead of the venue's API.
        #[arg(long)]
        file: Vec<PathBuf>,
        /// Load series the store already holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SymbolsCommand {
    /// Import a venue's list (again: names are updated, delisted symbols marked inactive).
    /// binance and upbit read the venue's API unless given a file or URL; krx reads KIS's
    /// master files (kospi_code.mst and kosdaq_code.mst, unzipped from
    /// https://new.real.download.dws.co.kr/common/master/kospi_code.mst.zip and
    /// …/kosdaq_code.mst.zip) or a CSV `code,name,market` — give all of them at once, as the
    /// import is the venue's complete list.
    Import {
        #[arg(value_enum)]
        source: ops::symbols::ImportSource,
        /// Files or URLs; binance and upbit default to the venue's API.
        inputs: Vec<String>,
    },
    /// Search as the bot and the API do (`삼성`, `btc`, `venue:SYMBOL`), with the time taken.
    Search {
        query: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Their Telegram chat id (where notifications go).
        #[arg(long)]
        telegram_chat: Option<i64>,
        /// Admin rights (halt/resume, broadcast, system stats).
        #[arg(long)]
        admin: bool,
        /// `en` or `ko`.
        #[arg(long, default_value = "en")]
        language: String,
    },
    /// Every user.
    List,
    /// Remove a user with their rules, subscriptions and keys.
    Remove {
        /// Id, name or `chat:<telegram chat id>`.
        user: Option<String>,
        /// Remove the demo user `tickwatch run` created.
        #[arg(long, conflicts_with = "user")]
        demo: bool,
    },
    /// A one-time sign-in link to the web dashboard (10 minutes, works once), as the bot's
    /// `/web` gives it; `tickwatch user login-link demo` for the demo user of `tickwatch run`.
    LoginLink {
        /// Id, name or `chat:<telegram chat id>`.
        user: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key for a user; it is printed once.
    Create {
        /// Id, name or `chat:<telegram chat id>`.
        user: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The pure alerts engine (indexed rule book) against a naive loop.
    Alerts {
        #[arg(long, default_value_t = 1_000_000)]
        rules: usize,
        #[arg(long, default_value_t = 1_000)]
        symbols: usize,
        #[arg(long, default_value_t = 5_000_000)]
        ticks: usize,
    },
    /// A paper-trading backtest of many symbols' real-data bars, every kind followed.
    Paper {
        #[arg(long, env = "TICKWATCH_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 300)]
        symbols: usize,
        #[arg(long, default_value_t = 1_000)]
        bars: usize,
    },
    /// The web dashboard's cost to the API: API latency alone and beside page loads.
    Web {
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Page loads a second beside the API requests; 0: back to back.
        #[arg(long, default_value_t = 20)]
        page_loads: u32,
    },
    /// A notification's chart: the last candles of real data drawn as the notifier draws
    /// them (PNG 800×450), one core.
    Chart {
        #[arg(long, env = "TICKWATCH_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 500)]
        charts: usize,
        #[arg(long, default_value_t = 60)]
        bars: u16,
    },
    /// Indicator and multi-condition alert rules evaluated at a 1m close of every symbol.
    Expressions {
        #[arg(long, default_value_t = 100_000)]
        rules: usize,
        #[arg(long, default_value_t = 1_000)]
        symbols: usize,
    },
    /// `produce csv --speed max` into the broker against raw lapin publishing.
    Csv {
        /// A history file (e.g. `$TICKWATCH_DATA_DIR/BTCUSDT_1m.csv`).
        path: PathBuf,
    },
    /// The pure signals engine: all indicators and signals, many symbols interleaved.
    Signals {
        /// The folder of history files the symbols are built from.
        #[arg(long, env = "TICKWATCH_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        symbols: usize,
        #[arg(long, default_value_t = 1_000)]
        bars: usize,
        /// Through the broker and the database (the signals role end to end) instead of
        /// the pure engine.
        #[arg(long)]
        through_broker: bool,
    },
    /// `history load` of N symbols' daily warm-up from a local fake of Binance's klines,
    /// unpaced and at the configured pace.
    History {
        #[arg(long, default_value_t = 100)]
        symbols: usize,
        #[arg(long = "db", default_value = "sqlite")]
        database: tickwatch::bench::DrainDb,
        /// Where the bench database is created on PostgreSQL.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
        pg_url: String,
    },
    /// Symbol search (the bot's free text, /v1/symbols) over a universe of symbols.
    Symbols {
        #[arg(long, default_value_t = 5_000)]
        count: usize,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Raw lapin against tickwatch's publisher and consumer runtime.
    Broker {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
    },
    /// Each batching role draining a backlog from its work queue, against raw lapin
    /// draining the same backlog from the same queue, on SQLite and PostgreSQL.
    Drain {
        #[arg(long, value_delimiter = ',', default_values = ["signals", "alerts", "recorder"])]
        roles: Vec<tickwatch::bench::DrainRole>,
        #[arg(long = "db", value_delimiter = ',', default_values = ["sqlite", "postgres"])]
        databases: Vec<tickwatch::bench::DrainDb>,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// The alerts role runs again with this share of its ticks firing (0: not).
        #[arg(long, default_value_t = 0.2)]
        fire_ratio: f64,
        /// Where bench databases are created on PostgreSQL.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
        pg_url: String,
        /// A Python interpreter with aio-pika: the alerts role is also measured against a
        /// Python consumer doing its job on the same backlog (scripts/python-bench.sh).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// The whole pipeline, every role running: the sustained input rate against the raw
    /// broker's one-queue ceiling, and tick → notification latency against a raw hop.
    Pipeline {
        #[arg(long = "db", default_value = "sqlite")]
        database: tickwatch::bench::DrainDb,
        /// Where the bench database is created on PostgreSQL.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
        pg_url: String,
        #[arg(long, default_value_t = 1_000)]
        symbols: usize,
        #[arg(long, default_value_t = 100)]
        rules_per_symbol: usize,
        /// Seconds each offered rate is held while the sustained rate is searched.
        #[arg(long, default_value_t = 8)]
        step_secs: u64,
        /// The roles that run (alerts and notifier at least): to see what the others cost.
        #[arg(long, value_delimiter = ',', default_values = ["recorder", "signals", "alerts", "notifier", "paper"])]
        roles: Vec<tickwatch::app::Role>,
    },
    /// The signals role over its shards: one instance, then several splitting them.
    ScaleOut {
        #[arg(long = "db", default_value = "sqlite")]
        database: tickwatch::bench::DrainDb,
        /// Where the bench databases are created on PostgreSQL.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
        pg_url: String,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 8)]
        shards: usize,
        #[arg(long, value_delimiter = ',', default_values = ["1", "2"])]
        instances: Vec<usize>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Printed before any configuration is read: a broken configuration must not stop them.
    let printed = match &cli.command {
        Command::Completions { shell } => {
            use clap_complete::Generator;
            let mut command = Cli::command();
            command.set_bin_name("tickwatch");
            command.build();
            Some(shell.try_generate(&command, &mut std::io::stdout()))
        }
        Command::Man => Some(clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())),
        _ => None,
    };
    match printed {
        Some(Ok(())) => return std::process::ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return std::process::ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("error: printing: {e}");
            return std::process::ExitCode::FAILURE;
        }
        None => {}
    }
    // One TLS provider for everything (lapin, reqwest, teloxide, sqlx): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if let Some(file) = cli.log_file {
        config.log.file = Some(file);
    }
    let service = command_name(&cli.command);
    let _telemetry = tickwatch::logging::init(&config.log, service)?;
    match cli.command {
        // Printed in `main`, before the configuration.
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Run => app::run(&config, app::shutdown_on_signal()).await,
        Command::Consume { role } => app::consume(&config, role, app::shutdown_on_signal()).await,
        Command::Produce { source } => {
            let source = apply_produce_flags(&mut config, source);
            config.validate()?;
            app::produce(&config, source, app::shutdown_on_signal()).await
        }
        Command::Migrate { action, steps } => ops::migrate(&config, action, steps).await,
        Command::Topology { action } => ops::topology(&config, action).await,
        Command::Dlq { action } => {
            let action = match action {
                DlqCommand::List => DlqAction::List,
                DlqCommand::Show { queue, limit } => DlqAction::Show { queue, limit },
                DlqCommand::Replay {
                    queue,
                    limit,
                    reason,
                    only_queue,
                } => DlqAction::Replay {
                    queue,
                    limit,
                    reason,
                    only_queue,
                },
                DlqCommand::Purge { queue, yes } => {
                    if !yes {
                        anyhow::bail!("purging drops the messages for good: add --yes to confirm");
                    }
                    DlqAction::Purge { queue }
                }
            };
            ops::dlq(&config, action).await
        }
        Command::Config { .. } => {
            tickwatch::say(
                config
                    .to_masked_toml()
                    .context("printing the configuration")?,
            );
            Ok(())
        }
        Command::Bench {
            what: BenchCommand::Broker { messages },
        } => bench::broker(&config, messages).await,
        Command::Bench {
            what:
                BenchCommand::Web {
                    requests,
                    page_loads,
                },
        } => bench::web(requests, page_loads).await,
        Command::Bench {
            what: BenchCommand::Symbols { count, rounds },
        } => bench::symbols::run(&config, count, rounds).await,
        Command::Bench {
            what:
                BenchCommand::History {
                    symbols,
                    database,
                    pg_url,
                },
        } => bench::history::run(&config, symbols, database, &pg_url).await,
        Command::Bench {
            what:
                BenchCommand::Drain {
                    roles,
                    databases,
                    messages,
                    fire_ratio,
                    pg_url,
                    python,
                },
        } => {
            let plan = bench::DrainPlan {
                roles,
                databases,
                messages,
                fire_ratio,
                pg_url,
                python,
            };
            bench::drain(&config, &plan).await.map(drop)
        }
        Command::Bench {
            what:
                BenchCommand::Signals {
                    data_dir,
                    symbols,
                    bars,
                    through_broker,
                },
        } => {
            if through_broker {
                bench::signals_through_broker(&config, &data_dir, symbols, bars).await
            } else {
                bench::signals(&config, &data_dir, symbols, bars)
            }
        }
        Command::Bench {
            what:
                BenchCommand::Alerts {
                    rules,
                    symbols,
                    ticks,
                },
        } => bench::alerts(rules, symbols, ticks),
        Command::Bench {
            what: BenchCommand::Expressions { rules, symbols },
        } => bench::expressions(rules, symbols),
        Command::Bench {
            what:
                BenchCommand::Paper {
                    data_dir,
                    symbols,
                    bars,
                },
        } => bench::paper(&config, &data_dir, symbols, bars),
        Command::Bench {
            what:
                BenchCommand::Chart {
                    data_dir,
                    charts,
                    bars,
                },
        } => bench::chart(&data_dir, charts, bars),
        Command::Bench {
            what: BenchCommand::Csv { path },
        } => bench::csv(&config, &path).await,
        Command::Bench {
            what:
                BenchCommand::Pipeline {
                    database,
                    pg_url,
                    symbols,
                    rules_per_symbol,
                    step_secs,
                    roles,
                },
        } => {
            let plan = bench::pipeline::PipelinePlan {
                database,
                pg_url,
                symbols,
                rules_per_symbol,
                step: std::time::Duration::from_secs(step_secs.max(1)),
                roles,
                ..Default::default()
            };
            bench::pipeline::run(&config, &plan).await.map(drop)
        }
        Command::Bench {
            what:
                BenchCommand::ScaleOut {
                    database,
                    pg_url,
                    messages,
                    shards,
                    instances,
                },
        } => {
            let plan = bench::scale::ScalePlan {
                database,
                pg_url,
                messages,
                shards,
                instances,
            };
            bench::scale::run(&config, &plan).await.map(drop)
        }
        Command::History {
            action:
                HistoryCommand::Load {
                    venue,
                    symbols,
                    interval,
                    bars,
                    file,
                    force,
                },
        } => {
            let request = tickwatch::history::LoadRequest {
                venue,
                symbols,
                intervals: interval,
                bars,
                files: file,
                force,
            };
            tickwatch::history::load_command(&config, &request).await
        }
        Command::Symbols { action } => match action {
            SymbolsCommand::Import { source, inputs } => {
                ops::symbols::import(&config, source, &inputs).await
            }
            SymbolsCommand::Search { query, limit } => {
                ops::symbols::search(&config, &query, limit).await
            }
        },
        Command::User { action } => match action {
            UserCommand::Add {
                name,
                telegram_chat,
                admin,
                language,
            } => ops::users::add(&config, &name, telegram_chat, admin, &language).await,
            UserCommand::List => ops::users::list(&config).await,
            UserCommand::Remove { user, demo } => {
                ops::users::remove(&config, user.as_deref(), demo).await
            }
            UserCommand::LoginLink { user } => ops::users::login_link(&config, &user).await,
        },
        Command::Apikey {
            action: ApikeyCommand::Create { user },
        } => ops::users::apikey(&config, &user).await,
        Command::Api => app::gateway(&config, true, app::shutdown_on_signal()).await,
        Command::Bot => app::gateway(&config, false, app::shutdown_on_signal()).await,
        Command::Indicators {
            path,
            symbol,
            venue,
            interval,
        } => ops::indicators(&path, venue.as_deref(), symbol.as_deref(), interval),
        Command::Paper {
            action:
                PaperCommand::Backtest {
                    strategy,
                    files,
                    venue,
                },
        } => ops::paper_backtest(&config, &strategy, &files, venue.as_deref()),
        Command::Scan {
            path,
            kinds,
            symbol,
            venue,
            interval,
        } => ops::scan(
            &config,
            &path,
            venue.as_deref(),
            symbol.as_deref(),
            interval,
            &kinds,
        ),
    }
}

/// The process's role, as named in traces (`tickwatch-<role>`).
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Run => "run",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
        Command::Consume { role } => role.name(),
        Command::Produce { .. } => "producer",
        Command::Api => "api",
        Command::Bot => "bot",
        _ => "cli",
    }
}

/// Command-line flags of `produce` override the source's configuration section.
fn apply_produce_flags(config: &mut Config, command: ProduceCommand) -> Source {
    let p = &mut config.producers;
    match command {
        ProduceCommand::Binance { symbols } => {
            if !symbols.is_empty() {
                p.binance.symbols = symbols.iter().map(|s| s.to_ascii_uppercase()).collect();
            }
            Source::Binance
        }
        ProduceCommand::Upbit { codes } => {
            if !codes.is_empty() {
                p.upbit.codes = codes.iter().map(|s| s.to_ascii_uppercase()).collect();
            }
            Source::Upbit
        }
        ProduceCommand::Kis { symbols } => {
            if !symbols.is_empty() {
                p.kis.symbols = symbols.iter().map(|s| s.to_ascii_uppercase()).collect();
            }
            Source::Kis
        }
        ProduceCommand::Csv {
            path,
            speed,
            symbol,
            venue,
            interval,
            ticks,
        } => {
            p.csv.path = path;
            if let Some(speed) = speed {
                p.csv.speed = speed;
            }
            p.csv.symbol = symbol.or(p.csv.symbol.take());
            p.csv.venue = venue.or(p.csv.venue.take());
            p.csv.interval = interval.or(p.csv.interval);
            p.csv.ticks |= ticks;
            Source::Csv
        }
        ProduceCommand::Synthetic {
            symbols,
            rate,
            seed,
        } => {
            if let Some(n) = symbols {
                p.synthetic.symbols = n;
            }
            if let Some(r) = rate {
                p.synthetic.rate = r;
            }
            if let Some(s) = seed {
                p.synthetic.seed = s;
            }
            Source::Synthetic
        }
        ProduceCommand::Webhook { addr } => {
            if let Some(a) = addr {
                p.webhook.addr = a;
            }
            Source::Webhook
        }
    }
}
