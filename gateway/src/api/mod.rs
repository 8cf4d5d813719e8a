//! The HTTP API (axum 0.8): [`ApiState`], [`router`] and [`serve`].
//!
//! Every handler is registered once, with its OpenAPI description, in [`api_routes`]
//! (utoipa-axum's `routes!`), so the router and the document cannot disagree. What every
//! operation shares — 401 and 429 for the authenticated ones, 400/413/415/422 for a body or
//! parameters, a problem+json `default` — is added to the document once, in
//! [`docs::finish`]. Request bodies are typed ([`JsonBody`]): serde parses them (an error
//! names its field) and utoipa documents the very same types ([`fields`]). Handlers live by
//! resource: `alerts`, `subscriptions`, `paper` (paper strategies), `market` (signals, stats, symbols, prices), `admin`,
//! [`alertmanager`] (Alertmanager's webhook, behind its own shared secret),
//! `ops` (health, readiness, metrics, the document and its page) and [`stream`] (WebSocket
//! and SSE).

pub mod admin;
pub mod alertmanager;
pub mod alerts;
pub mod docs;
pub mod fields;
pub mod market;
pub mod ops;
pub mod paper;
pub mod problem;
pub mod ratelimit;
pub mod relay;
pub mod stream;
pub mod subscriptions;
pub mod web;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{ApiConfig, RateLimitConfig};
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
    /// Relay posts per user.
    relay_limiter: RateLimiter,
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
                relay_limiter: RateLimiter::new(RateLimitConfig {
                    enabled: config.relay.per_minute > 0,
                    per_second: f64::from(config.relay.per_minute.max(1)) / 60.0,
                    burst: config.relay.per_minute.max(1),
                }),
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

    pub(crate) fn relay_limiter(&self) -> &RateLimiter {
        &self.inner.relay_limiter
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }
}

/// Every endpoint, each registered once with its description. Adding one is a handler
/// with `#[utoipa::path]` and a line here.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::docs_page))
        .routes(routes!(admin::me))
        .routes(routes!(alerts::list, alerts::create))
        .routes(routes!(alerts::get_one, alerts::update, alerts::remove))
        .routes(routes!(alerts::events))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(subscriptions::get_one, subscriptions::remove))
        .routes(routes!(paper::list, paper::create))
        .routes(routes!(paper::get_one, paper::update, paper::remove))
        .routes(routes!(paper::positions))
        .routes(routes!(paper::trades))
        .routes(routes!(paper::equity))
        .routes(routes!(paper::summary))
        .routes(routes!(market::signals))
        .routes(routes!(market::signal_stats))
        .routes(routes!(market::symbols))
        .routes(routes!(market::price))
        .routes(routes!(web::candles))
        .routes(routes!(web::notifications))
        .routes(routes!(web::session_state, web::sign_in, web::sign_out))
        .routes(routes!(stream::stream))
        .routes(routes!(stream::sse_only))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::remove_user))
        .routes(routes!(admin::create_api_key))
        .routes(routes!(admin::stats))
        .routes(routes!(admin::dlq))
        .routes(routes!(admin::import_symbols))
        .routes(routes!(alertmanager::receive))
        .routes(routes!(relay::tradingview))
        .routes(routes!(relay::rotate))
}

/// The OpenAPI document of every route, with what they share added ([`docs::finish`]);
/// the limits that come from the configuration are set per server ([`docs::for_server`]).
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, doc) = api_routes().split_for_parts();
        let mut doc = serde_json::to_value(doc).unwrap_or_default();
        docs::finish(&mut doc);
        doc
    })
}

/// The whole API as an axum router.
pub fn router(state: ApiState) -> Router {
    let (router, _) = api_routes().split_for_parts();
    let limit = state.config().max_body_bytes;
    router
        .merge(web::pages())
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
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
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
    crate::events::ApiRequest {
        method,
        route,
        status: response.status().as_u16(),
        took: started.elapsed(),
    }
    .emit();
    response
}

/// The caller of an authenticated endpoint (API key checked, rate limit taken).
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

impl FromRequestParts<ApiState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
        // A change must come from the page's own origin when the cookie is its credential.
        let changes = !matches!(parts.method, Method::GET | Method::HEAD);
        authorize_request(state, &parts.headers, None, changes)
            .await
            .map(Auth)
    }
}

/// Authenticates a request by its bearer key, else `key` (a stream's `access_token`), else
/// its session cookie (the web dashboard's), and takes a token from the caller's
/// rate-limit bucket. With the cookie and `same_origin_only`, a browser request from
/// another origin is refused: `SameSite=Strict` keeps other sites out, but not a sibling
/// subdomain or another port of the same host.
pub(crate) async fn authorize_request(
    state: &ApiState,
    headers: &HeaderMap,
    key: Option<&str>,
    same_origin_only: bool,
) -> Result<Caller> {
    if let Some(key) = bearer(headers).or(key) {
        return authorize(state, key).await;
    }
    let Some(session) = web::session_cookie(headers) else {
        return Err(Error::Unauthorized("no API key".into()));
    };
    if same_origin_only && !web::same_origin(headers) {
        return Err(Error::Forbidden(
            "a request with the session cookie must come from the dashboard's own origin".into(),
        ));
    }
    let caller = state.services().authenticate_session(session).await?;
    take_budget(state, caller)
}

/// Authenticates a key and takes a token from its rate-limit bucket.
pub(crate) async fn authorize(state: &ApiState, key: &str) -> Result<Caller> {
    let caller = state.services().authenticate(key).await?;
    take_budget(state, caller)
}

fn take_budget(state: &ApiState, caller: Caller) -> Result<Caller> {
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

/// A JSON request body of type `T`: a wrong content type is 415, a body too large 413,
/// anything but JSON 400, and a value that does not fit `T` 422 naming the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        match content_type.as_deref() {
            Some("application/json") => {}
            Some(ct) if ct.starts_with("application/") && ct.ends_with("+json") => {}
            Some(other) => {
                return Err(Error::UnsupportedMediaType(format!(
                    "`{other}` is not JSON; send Content-Type: application/json"
                )));
            }
            None => {
                return Err(Error::UnsupportedMediaType(
                    "no Content-Type; send Content-Type: application/json".into(),
                ));
            }
        }
        let limit = state.config().max_body_bytes;
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge { limit }
            } else {
                Error::BadRequest("the request body could not be read".into())
            }
        })?;
        parse_json(&body).map(JsonBody)
    }
}

/// Parses JSON into `T`; see [`JsonBody`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_json reports a value of the wrong kind where an enum is expected as a
        // syntax error; in a body that is JSON it is the field's fault.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        body_error(e, is_json)
    })?;
    de.end()
        .map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))?;
    Ok(value)
}

/// Turns serde's error into a 400 (not JSON) or a 422 naming the field.
fn body_error(err: serde_path_to_error::Error<serde_json::Error>, is_json: bool) -> Error {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !is_json {
        return Error::BadRequest(format!("the body is not JSON: {inner}"));
    }
    if inner.is_syntax() {
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        return Error::invalid(field, "has the wrong type");
    }
    let text = inner.to_string();
    // serde appends where in the text it stopped; the field is what the client needs.
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(field) = named("unknown field `") {
        let known = message
            .split_once("expected one of ")
            .map_or(String::new(), |(_, known)| {
                format!("; the fields are {}", known.replace('`', ""))
            });
        return Error::invalid(field, format!("is not a field here{known}"));
    }
    if let Some(field) = named("missing field `") {
        let field = if path == "." {
            field
        } else {
            format!("{path}.{field}")
        };
        return Error::invalid(field, "is required");
    }
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    Error::invalid(field, message.to_string())
}

/// Query parameters of type `T`, a bad one a 422 naming it.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Params(t)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                let field = detail
                    .strip_prefix("unknown field `")
                    .or_else(|| detail.strip_prefix("missing field `"))
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
}

/// A positive integer id from the path; anything else is no such thing.
pub(crate) fn path_id(text: &str, what: &str) -> Result<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::not_found(format!("{what} `{text}`")))
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
