//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document and its page.
//! None needs an API key.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::ApiState;
use super::problem::Problem;

/// How long one readiness probe waits for the database or the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The process is alive.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// One dependency's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Check {
    pub up: bool,
    pub detail: String,
}

/// Every dependency's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: BTreeMap<String, Check>,
}

/// Liveness: answers while the process runs.
#[utoipa::path(get, operation_id = "ops_healthz", path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// A component's own words only when short and plain: a failure text can hold URLs and
/// library errors, which a probe's caller has no use for.
fn plain(detail: &str, up: bool) -> String {
    if detail.len() <= 40 && !detail.contains("://") && !detail.contains('\n') {
        detail.to_string()
    } else if up {
        "up".to_string()
    } else {
        "down".to_string()
    }
}

/// Readiness: the database answers, the broker answers, and every broker component of
/// this process (publisher, stream consumer) is connected. 503 names what is down.
#[utoipa::path(get, operation_id = "ops_readyz", path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `detail` names what is down, `checks` has each", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let mut checks = BTreeMap::new();
    let db = tokio::time::timeout(PROBE_TIMEOUT, state.services().db().ping()).await;
    checks.insert(
        "database".to_string(),
        match db {
            Ok(Ok(())) => Check {
                up: true,
                detail: "answers".into(),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: database ping failed");
                Check {
                    up: false,
                    detail: "ping failed".into(),
                }
            }
            Err(_) => Check {
                up: false,
                detail: "ping timed out".into(),
            },
        },
    );
    if let Some(broker) = state.services().broker() {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, broker.channel()).await;
        let check = match probe {
            Ok(Ok(channel)) => {
                let _ = channel.close(200, "OK".into()).await;
                Check {
                    up: true,
                    detail: "answers".into(),
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: broker unreachable");
                Check {
                    up: false,
                    detail: "unreachable".into(),
                }
            }
            Err(_) => Check {
                up: false,
                detail: "timed out".into(),
            },
        };
        checks.insert("broker".to_string(), check);
        for (component, health) in broker.health().snapshot() {
            checks.insert(
                format!("broker:{component}"),
                Check {
                    up: health.up,
                    detail: plain(&health.detail, health.up),
                },
            );
        }
    }
    let down: Vec<String> = checks
        .iter()
        .filter(|(_, c)| !c.up)
        .map(|(name, c)| format!("{name} ({})", c.detail))
        .collect();
    if down.is_empty() {
        return Json(Readiness {
            status: "ready".into(),
            checks,
        })
        .into_response();
    }
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        format!("not ready: {}", down.join(", ")),
    )
    .with("status", json!("not_ready"))
    .with("checks", json!(checks))
    .into_response()
}

/// Prometheus metrics of this process (404 when the process runs no exporter).
#[utoipa::path(get, operation_id = "ops_metrics", path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are not enabled in this process", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    match &state.inner.metrics {
        Some(render) => {
            let mut response = render().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "metrics are not enabled in this process",
        )
        .into_response(),
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, operation_id = "ops_openapi", path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(super::docs::for_server(state.config()))
}

/// A page listing every endpoint, read from `/openapi.json` (no external assets).
#[utoipa::path(get, operation_id = "ops_docs_page", path = "/docs", tag = "ops",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html")))]
pub async fn docs_page() -> Html<&'static str> {
    Html(DOCS_HTML)
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tickwatch API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:0}.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:600;font-family:monospace}
.get{color:#0a6}.post{color:#06c}.patch{color:#a60}.delete{color:#c22}
code,.p{font-family:monospace}.d{color:#555;margin:.2rem 0}.r{font-size:13px;color:#444}
table{border-collapse:collapse;font-size:13px}td{padding:0 .6rem 0 0;vertical-align:top}
</style></head><body>
<h1>tickwatch API</h1>
<p>Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code> (create one with
<code>/apikey</code> in the bot or <code>tickwatch apikey create &lt;user&gt;</code>).
Errors are <code>application/problem+json</code>. The machine-readable document is
<a href="/openapi.json">/openapi.json</a>.</p>
<div id="ops">Loading…</div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const out = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const params = (op.parameters || []).map(p =>
        `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${esc(p.description)}</td></tr>`).join("");
      const responses = Object.entries(op.responses || {}).map(([code, r]) =>
        `<b>${esc(code)}</b> ${esc(r.description)}`).join(" · ");
      out.push(`<div class="op"><span class="m ${method}">${method.toUpperCase()}</span>
        <span class="p">${esc(path)}</span>
        <div class="d">${esc(op.summary || "")} ${esc(op.description || "")}</div>
        ${params ? `<table>${params}</table>` : ""}
        <div class="r">${responses}</div></div>`);
    }
  }
  document.getElementById("ops").innerHTML = out.join("");
}).catch(e => { document.getElementById("ops").textContent = "Could not load /openapi.json: " + e; });
</script></body></html>
"#;
