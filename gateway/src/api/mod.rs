//! The HTTP API (axum 0.8): [`ApiState`], [`router`] and [`serve`].
//!
//! Every route is declared once, in [`routes`]; the router is built from that table and a
//! test checks the OpenAPI document ([`docs::ApiDoc`]) against it, so the document
//! describes exactly what is served. Handlers live by resource: `alerts`,
//! `subscriptions`, `market` (signals, stats, symbols, prices), `admin`, `ops` (health,
//! readiness, metrics, the document and its page) and [`stream`] (WebSocket and SSE).

pub mod admin;
pub mod alerts;
pub mod docs;
pub mod market;
pub mod ops;
pub mod problem;
pub mod ratelimit;
pub mod stream;
pub mod subscriptions;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::services::Services;
use crate::services::users::Caller;
use ratelimit::RateLimiter;

/// Renders the process's metrics in the Prometheus text format (the binary passes its
/// exporter's handle).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    config: ApiConfig,
    limiter: RateLimiter,
    hub: Hub,
    metrics: Option<MetricsRender>,
    /// Cancelled when serving stops: open streams close with a reason.
    closing: CancellationToken,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("config", &self.inner.config)
            .field("services", &self.inner.services)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Checks the configuration and prepares the state (no I/O).
    pub fn new(
        services: Services,
        config: ApiConfig,
        metrics: Option<MetricsRender>,
    ) -> Result<Self> {
        config.validate()?;
        Ok(ApiState {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(config.rate_limit.clone()),
                hub: Hub::new(&config.stream),
                services,
                config,
                metrics,
                closing: CancellationToken::new(),
            }),
        })
    }

    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The live-stream hub (tests and embedders may publish into it directly).
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }
}

/// Every route: method, path (as the OpenAPI document spells it) and handler.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<ApiState>)> {
    vec![
        (Method::GET, "/healthz", get(ops::healthz)),
        (Method::GET, "/readyz", get(ops::readyz)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/openapi.json", get(ops::openapi)),
        (Method::GET, "/docs", get(ops::docs_page)),
        (Method::GET, "/v1/me", get(admin::me)),
        (Method::GET, "/v1/alerts", get(alerts::list)),
        (Method::POST, "/v1/alerts", post(alerts::create)),
        (Method::GET, "/v1/alerts/{id}", get(alerts::get_one)),
        (Method::PATCH, "/v1/alerts/{id}", patch(alerts::update)),
        (Method::DELETE, "/v1/alerts/{id}", delete(alerts::remove)),
        (Method::GET, "/v1/alerts/{id}/events", get(alerts::events)),
        (Method::GET, "/v1/subscriptions", get(subscriptions::list)),
        (
            Method::POST,
            "/v1/subscriptions",
            post(subscriptions::create),
        ),
        (
            Method::GET,
            "/v1/subscriptions/{id}",
            get(subscriptions::get_one),
        ),
        (
            Method::DELETE,
            "/v1/subscriptions/{id}",
            delete(subscriptions::remove),
        ),
        (Method::GET, "/v1/signals", get(market::signals)),
        (Method::GET, "/v1/signals/stats", get(market::signal_stats)),
        (Method::GET, "/v1/symbols", get(market::symbols)),
        (
            Method::GET,
            "/v1/prices/{venue}/{symbol}",
            get(market::price),
        ),
        (Method::GET, "/v1/stream", get(stream::stream)),
        (Method::GET, "/v1/stream/sse", get(stream::sse_only)),
        (Method::GET, "/v1/admin/users", get(admin::list_users)),
        (Method::POST, "/v1/admin/users", post(admin::create_user)),
        (
            Method::DELETE,
            "/v1/admin/users/{id}",
            delete(admin::remove_user),
        ),
        (
            Method::POST,
            "/v1/admin/users/{id}/apikeys",
            post(admin::create_api_key),
        ),
        (Method::GET, "/v1/admin/stats", get(admin::stats)),
        (Method::GET, "/v1/admin/dlq", get(admin::dlq)),
    ]
}

/// The whole API as an axum router.
pub fn router(state: ApiState) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        router = router.route(path, handler);
    }
    let limit = state.config().max_body_bytes;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`; with a broker, also feeds the live
/// streams from this process's private queue. Open streams are closed with a reason
/// when shutting down, so the graceful shutdown does not wait on them.
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let feed = state.services().broker().cloned().map(|broker| {
        let hub = state.hub().clone();
        let config = state.config().stream.clone();
        let token = shutdown.child_token();
        tokio::spawn(async move {
            if let Err(e) = hub.feed(broker, config, token).await {
                tracing::error!(error = %e, "the live-stream feed stopped");
            }
        })
    });
    let closing = state.closing().clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        closing.cancel();
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    if let Some(feed) = feed {
        let _ = feed.await;
    }
    Ok(())
}

async fn not_found() -> Error {
    Error::not_found("such endpoint; the endpoints are listed at /openapi.json and /docs")
}

async fn method_not_allowed() -> Response {
    problem::Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method; see /openapi.json",
    )
    .into_response()
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tw_api_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tw_api_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The caller of an authenticated endpoint (API key checked, rate limit taken).
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

impl FromRequestParts<ApiState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
        let token =
            bearer(&parts.headers).ok_or_else(|| Error::Unauthorized("no API key".into()))?;
        authorize(state, token).await.map(Auth)
    }
}

/// Authenticates a key and takes a token from its rate-limit bucket.
pub(crate) async fn authorize(state: &ApiState, key: &str) -> Result<Caller> {
    let caller = state.services().authenticate(key).await?;
    state
        .inner
        .limiter
        .check(caller.key_id)
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    Ok(caller)
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub Caller);

impl FromRequestParts<ApiState> for AdminAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        if !caller.admin {
            return Err(Error::Forbidden("this endpoint is for admins".into()));
        }
        Ok(AdminAuth(caller))
    }
}

/// The key of `Authorization: Bearer <key>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// A JSON object body: a wrong content type, a body too large or malformed JSON are told
/// apart.
pub(crate) fn json_object(
    state: &ApiState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Value> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(Error::BadRequest(format!(
                "Content-Type `{ct}` is not JSON; send application/json"
            )));
        }
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge {
                limit: state.config().max_body_bytes,
            }
        } else {
            Error::BadRequest("the request body could not be read".into())
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "the body is not JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    Ok(value)
}

/// Query parameters with the rejection turned into a 422 naming the parameter.
pub(crate) fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    match q {
        Ok(Query(t)) => Ok(t),
        Err(rejection) => {
            let text = rejection.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize query string: ")
                .unwrap_or(&text)
                .to_string();
            let field = detail
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
                .or_else(|| {
                    detail
                        .split_once(": ")
                        .map(|(f, _)| f.to_string())
                        .filter(|f| !f.contains(' '))
                })
                .unwrap_or_else(|| "query".to_string());
            Err(Error::invalid(field, detail))
        }
    }
}

/// A positive integer id from the path; anything else is no such thing.
pub(crate) fn path_id(text: &str, what: &str) -> Result<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::not_found(format!("{what} `{text}`")))
}

/// `limit` and `cursor` of a paginated listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ApiState {
    /// The page size a request asked for, checked.
    pub(crate) fn page_size(&self, limit: Option<u32>) -> Result<u64> {
        let max = self.config().max_page_size;
        match limit {
            None => Ok(u64::from(self.config().default_page_size)),
            Some(n) if n >= 1 && n <= max => Ok(u64::from(n)),
            Some(n) => Err(Error::invalid(
                "limit",
                format!("{n} is not between 1 and {max}"),
            )),
        }
    }
}

/// Declares a page type: `items` and the cursor of the next page (`null` on the last).
macro_rules! page_type {
    ($(#[$meta:meta])* $name:ident, $item:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; `null` on the last page.
            pub next_cursor: Option<String>,
        }
    };
}
pub(crate) use page_type;
