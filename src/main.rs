//! The `tickwatch` command line: parses arguments, loads the configuration, and hands over
//! to the library. See `tickwatch --help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tickwatch::config::Config;
use tickwatch::ops::{self, DlqAction};

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
    /// Database migrations (SQLite by default, or DATABASE_URL).
    Migrate {
        #[arg(default_value = "up", value_parser = ["up", "down", "status"])]
        action: String,
        /// How many migrations `down` rolls back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// The broker topology: declare it, print it, or export it as RabbitMQ definitions.
    Topology {
        #[arg(value_parser = ["apply", "show", "export"])]
        action: String,
    },
    /// Dead-letter queues: list them, show, replay or purge one.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// The effective configuration.
    Config {
        #[arg(value_parser = ["show"], default_value = "show")]
        action: String,
    },
    /// Benchmarks against the real services.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
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
    },
    /// Delete every message of a DLQ.
    Purge {
        queue: String,
        /// Confirms that the messages are to be dropped.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Raw lapin against tickwatch's publisher and consumer runtime.
    Broker {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
    let _log_guard = tickwatch::logging::init(&config.log)?;
    match cli.command {
        Command::Migrate { action, steps } => ops::migrate(&config, &action, steps).await,
        Command::Topology { action } => ops::topology(&config, &action).await,
        Command::Dlq { action } => {
            let action = match action {
                DlqCommand::List => DlqAction::List,
                DlqCommand::Show { queue, limit } => DlqAction::Show { queue, limit },
                DlqCommand::Replay {
                    queue,
                    limit,
                    reason,
                } => DlqAction::Replay {
                    queue,
                    limit,
                    reason,
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
        } => ops::bench_broker(&config, messages).await,
    }
}
