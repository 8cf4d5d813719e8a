//! The web dashboard: its page and assets (inside the binary, from `gateway/web/`), the
//! sign-in that gives a browser its session cookie, and the two reads only the page needs —
//! a symbol's candles and the caller's notifications.
//!
//! **Signing in.** The bot's `/web` sends a link `…/#login=<token>`: the token is in the
//! URL's fragment, which a browser never sends to a server (nor a link preview fetches),
//! and the page removes it from the address bar and history before it posts it to
//! `POST /v1/session`. An API key typed into the page is exchanged the same way, so the page
//! keeps no key. The answer sets the cookie `tw_session`: `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page or form sends it), `Path=/`, expiring with the
//! session (7 days), and — when the API's public URL is `https` — `Secure` and named
//! `__Host-tw_session`. Every endpoint that takes an API key takes the cookie too; with the
//! cookie, a change (any method but GET) and a stream must come from the page's own origin
//! (`Origin`), which `SameSite` alone does not ensure for a sibling subdomain or port.
//! A session made from an API key ends when the key is revoked; `/web signout` ends every
//! session of a user; a user keeps at most 20.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::Interval;
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::admin::MeOut;
use super::fields::{ApiKeyText, LinkToken, PageLimit, Symbol, TimeCursor, Venue};
use super::{ApiState, Auth, JsonBody, Params};
use crate::error::Result;
use crate::services::web::{CandleOut, MAX_CANDLES, NewSession, NotificationOut, SESSION_TTL_MS};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tw_session";
/// Its name when `Secure`: the `__Host-` prefix makes browsers refuse it from a sibling
/// domain or with a `Domain`, so no other site can plant one that shadows it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-tw_session";

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const CHARTS_JS: &str =
    include_str!("../../web/vendor/lightweight-charts.standalone.production.js");
const CHARTS_LICENSE: &str = include_str!("../../web/vendor/LICENSE-lightweight-charts");

/// The bytes a browser loads for the page: the page, its script and style, the chart
/// library.
pub const PAGE_BYTES: usize = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len() + CHARTS_JS.len();

/// The page's own scripts only; the API and its stream on the same origin. Inline styles
/// are allowed: the chart library sizes and colours its elements with them.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The page and its assets (path, content type, body).
const ASSETS: [(&str, &str, &str); 5] = [
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/app.js", "text/javascript; charset=utf-8", APP_JS),
    ("/app.css", "text/css; charset=utf-8", APP_CSS),
    (
        "/vendor/lightweight-charts.js",
        "text/javascript; charset=utf-8",
        CHARTS_JS,
    ),
    (
        "/vendor/LICENSE-lightweight-charts",
        "text/plain; charset=utf-8",
        CHARTS_LICENSE,
    ),
];

/// The page and its assets: plain routes, outside the API's document.
pub fn pages() -> Router<ApiState> {
    ASSETS
        .into_iter()
        .fold(Router::new(), |router, (path, content_type, body)| {
            // A strong validator from the content: a browser revalidates (`no-cache`, so a
            // new binary's page is never mixed with an old script) and gets a 304.
            let etag = format!("\"{}\"", &crate::services::users::hash_key(body)[..16]);
            router.route(
                path,
                get(move |headers: HeaderMap| async move {
                    asset(&headers, content_type, body, &etag)
                }),
            )
        })
}

fn asset(headers: &HeaderMap, content_type: &str, body: &'static str, etag: &str) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let common = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::REFERRER_POLICY, "no-referrer".to_string()),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY.to_string()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, content_type.to_string())],
        body,
    )
        .into_response()
}

/// The session cookie's token in a request, if any (the `__Host-` one first).
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    let named = |wanted: &str| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    };
    named(SECURE_SESSION_COOKIE).or_else(|| named(SESSION_COOKIE))
}

/// Whether a browser says the request comes from the page's own origin: `Origin`'s host
/// is the `Host` it was sent to, or, without `Origin`, `Sec-Fetch-Site` is `same-origin`
/// or `none`. A client that sends neither is no browser (and no forgery).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = text(header::ORIGIN) {
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        return authority.is_some() && authority == text(header::HOST);
    }
    match text(header::HeaderName::from_static("sec-fetch-site")) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// How to sign in: a one-time link's token or an API key, exactly one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionIn {
    /// The token of a `/web` link (`twl_…`).
    Link(LinkToken),
    /// An API key (`tw_…`).
    ApiKey(ApiKeyText),
}

impl PartialSchema for SessionIn {
    fn schema() -> RefOr<Schema> {
        super::fields::one_key_of(
            &[
                ("link", LinkToken::schema()),
                ("api_key", ApiKeyText::schema()),
            ],
            "A one-time sign-in link's token (from the bot's /web), or an API key",
        )
    }
}

impl ToSchema for SessionIn {}

/// A browser session: who signed in and until when (the cookie carries the token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionOut {
    pub user: MeOut,
    /// When the session ends (epoch ms).
    pub expires_at: i64,
}

fn cookie(state: &ApiState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = state
        .config()
        .relay
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let name = if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    let text = format!(
        "{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Signs a browser in: a one-time link or an API key becomes a session cookie.
#[utoipa::path(post, operation_id = "session_create", path = "/v1/session", tag = "session",
    // No API key: this is where a browser gets its credential (or reads its cookie).
    security(()),
    request_body = SessionIn,
    responses(
        (status = 201, description = "Signed in; `Set-Cookie: tw_session=…` carries the session", body = SessionOut),
        (status = 401, description = "The link is used up or expired, or the key is unknown", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SessionIn>,
) -> Result<Response> {
    let services = state.services();
    let NewSession {
        token,
        user_id,
        expires_at,
    } = match body {
        SessionIn::Link(LinkToken(link)) => services.sign_in_with_link(&link).await?,
        // The key's own rate limit counts sign-ins too.
        SessionIn::ApiKey(ApiKeyText(key)) => {
            let caller = super::authorize(&state, &key).await?;
            services.sign_in_with_key(&caller).await?
        }
    };
    let user = super::admin::me_of(services, user_id).await?;
    let cookie = cookie(&state, &token, SESSION_TTL_MS / 1000);
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(SessionOut { user, expires_at }),
    )
        .into_response())
}

/// Whether a browser is signed in, and as whom.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionState {
    pub signed_in: bool,
    /// The user, when signed in.
    pub user: Option<MeOut>,
}

/// Whether this browser's session cookie is good (never a 401: the page asks this before
/// it knows whether to show the sign-in form).
#[utoipa::path(get, operation_id = "session_get", path = "/v1/session", tag = "session",
    // No API key: this is where a browser gets its credential (or reads its cookie).
    security(()),
    responses((status = 200, description = "Signed in or not", body = SessionState)))]
pub async fn session_state(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<SessionState>> {
    let caller = match session_cookie(&headers) {
        Some(token) => match state.services().authenticate_session(token).await {
            Ok(caller) => Some(caller),
            Err(crate::error::Error::Unauthorized(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let user = match caller {
        Some(caller) => Some(super::admin::me_of(state.services(), caller.user_id).await?),
        None => None,
    };
    Ok(Json(SessionState {
        signed_in: user.is_some(),
        user,
    }))
}

/// Signs the browser out: ends its session and clears the cookie (no session: still 204).
#[utoipa::path(delete, operation_id = "session_delete", path = "/v1/session", tag = "session",
    // No API key: this is where a browser gets its credential (or reads its cookie).
    security(()),
    responses((status = 204, description = "Signed out")))]
pub async fn sign_out(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = session_cookie(&headers) {
        state.services().sign_out(token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&state, "", 0))],
    )
        .into_response())
}

/// How many candles one request returns: 1 to 1,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleLimit(pub u64);

impl<'de> Deserialize<'de> for CandleLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if !(1..=MAX_CANDLES).contains(&n) {
            return Err(serde::de::Error::custom(format!(
                "{n} is not between 1 and {MAX_CANDLES}"
            )));
        }
        Ok(CandleLimit(n))
    }
}

impl PartialSchema for CandleLimit {
    fn schema() -> RefOr<Schema> {
        super::fields::integer_between(KnownFormat::Int32, 1, MAX_CANDLES as f64).into()
    }
}

impl ToSchema for CandleLimit {}

/// The series of `GET /v1/candles`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    pub venue: Venue,
    pub symbol: Symbol,
    pub interval: Interval,
    /// Only bars that opened before this time (epoch ms), for the page before.
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// At most this many, the latest (default 300).
    pub limit: Option<CandleLimit>,
}

/// Recorded candles, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CandleList {
    pub items: Vec<CandleOut>,
}

/// A series' recorded candles, oldest first: the latest `limit` (before `before`).
#[utoipa::path(get, operation_id = "candles", path = "/v1/candles", tag = "market", params(CandlesQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "The candles, oldest first", body = CandleList)))]
pub async fn candles(
    State(state): State<ApiState>,
    Auth(_caller): Auth,
    Params(q): Params<CandlesQuery>,
) -> Result<Json<CandleList>> {
    if q.before.is_some_and(|b| b < 0) {
        return Err(crate::error::Error::invalid(
            "before",
            "must be epoch milliseconds",
        ));
    }
    let items = state
        .services()
        .candles(
            &q.venue.0,
            &q.symbol.0,
            q.interval,
            q.before,
            q.limit.map_or(300, |l| l.0),
        )
        .await?;
    Ok(Json(CandleList { items }))
}

/// The page of `GET /v1/notifications`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    pub limit: Option<PageLimit>,
    pub cursor: Option<TimeCursor>,
}

super::page_type!(
    /// A page of notifications, newest first.
    NotificationPage,
    NotificationOut
);

/// The notifications sent (or meant) to the caller's Telegram chat, newest first.
#[utoipa::path(get, operation_id = "notifications", path = "/v1/notifications", tag = "users", params(NotificationsQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's notifications, newest first", body = NotificationPage)))]
pub async fn notifications(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Params(q): Params<NotificationsQuery>,
) -> Result<Json<NotificationPage>> {
    let limit = state.page_size(q.limit.map(|l| l.0))?;
    let page = state
        .services()
        .notifications(caller.user_id, q.cursor.map(|c| (c.ts, c.id)), limit)
        .await?;
    Ok(Json(NotificationPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
