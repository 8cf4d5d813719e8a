//! Logs and traces via `tracing`: human-readable logs by default, JSON for machines,
//! optionally also to a file rotated daily for hosts without a log collector; and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported over OTLP (gRPC).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogConfig;

/// Spans exported to OpenTelemetry: tickwatch's own at info, never the HTTP/gRPC clients'
/// (the exporter's own requests would otherwise trace themselves). Separate from the log
/// filter, so quieter logs do not break the traces.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,lapin=off,sqlx=off,sea_orm=off";

/// Keeps the log file writer and the trace exporter alive; dropping it flushes both.
pub struct Telemetry {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
    tracer: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting_traces", &self.tracer.is_some())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take() {
            let _ = provider.shutdown();
        }
    }
}

pub fn init(config: &LogConfig, service: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .with_context(|| format!("log.level: `{}` is not a tracing filter", config.level))?;
    let json = config.format == "json";
    let (file_layer, file_guard) = match &config.file {
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
            let layer = if json {
                layer.json().boxed()
            } else {
                layer.boxed()
            };
            (Some(layer.with_filter(filter.clone()).boxed()), Some(guard))
        }
        None => (None, None),
    };
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if json {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    let (otel_layer, tracer) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.trim())
                .build()
                .context("OTEL_EXPORTER_OTLP_ENDPOINT: building the OTLP exporter")?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(format!("tickwatch-{service}"))
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("tickwatch"))
                .with_filter(EnvFilter::new(TRACE_FILTER))
                .boxed();
            (Some(layer), Some(provider))
        }
        _ => (None, None),
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(file_layer)
        .with(otel_layer)
        .try_init()
        .context("installing the logger")?;
    Ok(Telemetry {
        _file: file_guard,
        tracer,
    })
}
