//! Logs via `tracing`: human-readable by default, JSON for machines, optionally also to a
//! file rotated daily for hosts without a log collector.

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogConfig;

/// Keeps the file writer flushing; hold it until the process ends.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

pub fn init(config: &LogConfig) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .with_context(|| format!("log.level: `{}` is not a tracing filter", config.level))?;
    let json = config.format == "json";
    let (file_layer, guard) = match &config.file {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let name = path
                .file_name()
                .context("log.file: give a file name")?
                .to_string_lossy()
                .into_owned();
            std::fs::create_dir_all(dir)
                .with_context(|| format!("log.file: creating {}", dir.display()))?;
            let appender = tracing_appender::rolling::daily(dir, name);
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false);
            (
                Some(if json {
                    layer.json().boxed()
                } else {
                    layer.boxed()
                }),
                Some(guard),
            )
        }
        None => (None, None),
    };
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init()
        .context("installing the logger")?;
    Ok(guard)
}

use tracing_subscriber::Layer;
