//! The TradingView relay over HTTP: `POST /v1/relay/tradingview/{secret}` (what a user pastes
//! into TradingView's alert dialog as the webhook URL) and `POST /v1/me/relay` (a new URL).
//! See [`crate::services::relay`].

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::{ApiState, Auth};
use crate::error::{Error, Result};

/// The largest post the relay takes, whatever `api.max_body_bytes` allows elsewhere.
pub const MAX_RELAY_BODY: usize = 64 * 1024;

/// A post accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayAccepted {
    /// Handed to the broker for the user's Telegram (a repeat within the minute is handed
    /// over again and sent by nobody).
    pub queued: bool,
}

/// A user's relay URL, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayUrl {
    /// Paste it into TradingView's alert dialog, Notifications → Webhook URL.
    pub url: String,
}

/// The URL of a secret, on `api.relay.public_url` (else the listen address).
pub fn relay_url(state: &ApiState, secret: &str) -> String {
    let base = state
        .config()
        .relay
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config().addr));
    crate::services::relay::relay_url(&base, secret)
}

/// A TradingView alert's message to the URL's owner on Telegram. The body is the message
/// as TradingView sends it: JSON (its `message` or `text` string, else the JSON as written)
/// or plain text.
#[utoipa::path(post, operation_id = "relay_tradingview", path = "/v1/relay/tradingview/{secret}", tag = "relay",
    // No API key: the secret in the path is the credential (TradingView sets no headers).
    security(()),
    params(("secret" = String, Path, description = "The secret of the user's relay URL (48 hex digits)")),
    request_body(content = String, description = "The alert's message", content_type = "text/plain"),
    responses(
        (status = 202, description = "Handed to the broker for the user's Telegram", body = RelayAccepted),
        (status = 400, description = "An empty or non-UTF-8 body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The sender is not on api.relay.allow_ips", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such relay URL", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user has no Telegram chat to send to", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over api.relay.per_minute", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No broker, or it did not confirm in time", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn tradingview(
    State(state): State<ApiState>,
    Path(secret): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<RelayAccepted>)> {
    let allowed = &state.config().relay.allow_ips;
    if !allowed.is_empty() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        if !peer.is_some_and(|ip| allowed.iter().any(|a| a.to_canonical() == ip)) {
            return Err(Error::Forbidden(format!(
                "{} is not an allowed sender (api.relay.allow_ips)",
                peer.map_or("an unknown address".to_string(), |ip| ip.to_string())
            )));
        }
    }
    let user = state.services().relay_user(&secret).await?;
    state
        .relay_limiter()
        .check(user.id)
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    let too_large = Error::TooLarge {
        limit: MAX_RELAY_BODY,
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_RELAY_BODY) {
        return Err(too_large);
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_RELAY_BODY)
        .await
        .map_err(|e| {
            if format!("{e:?}").contains("LengthLimit") {
                too_large
            } else {
                Error::BadRequest(format!("the body could not be read: {e}"))
            }
        })?;
    state.services().relay_post(&user, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(RelayAccepted { queued: true })))
}

/// A new relay URL for the caller (the old one stops working), shown this once.
#[utoipa::path(post, operation_id = "relay_rotate", path = "/v1/me/relay", tag = "relay",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new URL", body = RelayUrl),
    ))]
pub async fn rotate(
    State(state): State<ApiState>,
    Auth(caller): Auth,
) -> Result<(StatusCode, Json<RelayUrl>)> {
    let secret = state.services().rotate_relay_token(caller.user_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(RelayUrl {
            url: relay_url(&state, &secret),
        }),
    ))
}
