//! The admin endpoints every tickwatch process serves: `/healthz` (the process is alive),
//! `/readyz` (database and broker reachable, consumers connected; 503 naming what is down)
//! and `/metrics` (Prometheus). Their bodies use the HTTP API's types (`Health`,
//! `Readiness` of `tickwatch_gateway::api::ops`): `{"status":"ok"}` and
//! `{"status":"ready"|"not_ready","checks":{…}}` — here also with a 503, where the API
//! answers problem+json; the admin port is internal, so its details are not scrubbed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;
use tickwatch_broker::Broker;
use tickwatch_gateway::api::ops::{Check, Readiness as ReadinessBody};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The process's Prometheus handle (installed on first use; every `metrics::` call of
/// every crate lands there).
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = install_metrics()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tickwatch_broker::events::HANDLER_SECONDS.into()),
            &latency,
        )?
        .set_buckets_for_metric(
            Matcher::Full(tickwatch_notifier::events::TICK_TO_NOTIFICATION.into()),
            &latency,
        )?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// How long the readiness probe waits for the database (a hung ping must neither hang
/// `/readyz` nor the process's shutdown, which waits for the probe).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub broker: Option<Broker>,
    pub db: Option<DatabaseConnection>,
}

impl Readiness {
    /// Every dependency's state, by name: the database, then each broker component of this
    /// process.
    pub async fn checks(&self) -> BTreeMap<String, Check> {
        let mut checks = BTreeMap::new();
        if let Some(db) = &self.db {
            let check = match tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await {
                Ok(Ok(())) => Check {
                    up: true,
                    detail: "answers".into(),
                },
                Ok(Err(e)) => Check {
                    up: false,
                    detail: e.to_string(),
                },
                Err(_) => Check {
                    up: false,
                    detail: format!("no answer within {PROBE_TIMEOUT:?}"),
                },
            };
            checks.insert("database".to_string(), check);
        }
        if let Some(broker) = &self.broker {
            for (component, state) in broker.health().snapshot() {
                checks.insert(
                    component,
                    Check {
                        up: state.up,
                        detail: state.detail,
                    },
                );
            }
        }
        checks
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let checks = state.readiness.checks().await;
    let ready = checks.values().all(|c| c.up);
    crate::events::ReadinessChecked { ready }.emit();
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = ReadinessBody {
        status: word.to_string(),
        checks,
    };
    (status, axum::Json(body))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The admin routes, for a server of their own or merged into the API.
pub fn router(readiness: Readiness, metrics_handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(tickwatch_gateway::api::ops::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            metrics: metrics_handle,
        })
}

/// Whether a process must have its admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBind {
    /// A role in a deployment: without `/readyz` its pod is never ready, so an address in
    /// use is an error at start.
    Required,
    /// `tickwatch run` on a developer's machine: runs on without them, with a warning.
    BestEffort,
}

/// Serves `/healthz`, `/readyz` and `/metrics` on the configured admin address.
pub async fn spawn(
    config: &crate::Config,
    readiness: Readiness,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    bind: AdminBind,
) -> anyhow::Result<()> {
    let addr: SocketAddr = config
        .admin
        .addr
        .parse()
        .map_err(|e| anyhow::anyhow!("admin.addr: {e}"))?;
    let router = router(readiness.clone(), metrics_handle()?);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tasks.spawn(serve(listener, router, shutdown.clone()));
        }
        Err(e) if bind == AdminBind::Required => anyhow::bail!(
            "cannot serve /healthz, /readyz and /metrics on {addr}: {e}; \
             set TICKWATCH_ADMIN_ADDR (or [admin] addr) to a free address"
        ),
        Err(e) => tracing::warn!(
            %addr,
            error = %e,
            "admin endpoints (/healthz, /readyz, /metrics) not served; set TICKWATCH_ADMIN_ADDR to a free address"
        ),
    }
    // `tw_ready` for alerting, also when nobody polls /readyz.
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let ready = readiness.checks().await.values().all(|c| c.up);
            crate::events::ReadinessChecked { ready }.emit();
        }
    });
    Ok(())
}

/// Serves the admin routes on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: CancellationToken) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, "admin endpoints: /healthz /readyz /metrics");
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin port answers with the API's shapes: `{"status":"ok"}`, and
    /// `{"status":"ready","checks":{…}}` naming each dependency.
    #[tokio::test]
    async fn health_and_readiness_have_the_apis_shapes() {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let readiness = Readiness {
            broker: None,
            db: Some(db),
        };
        let app = router(readiness, metrics_handle().expect("metrics"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &'static str| async move {
            let response = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("json"),
            )
        };
        assert_eq!(
            get("/healthz").await,
            (200, serde_json::json!({"status": "ok"}))
        );
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["database"]["up"], true);
        server.abort();
    }
}
