//! Webhook mode: Telegram POSTs each update to `webhook.url`; this server (behind the
//! HTTPS proxy) checks the secret token and hands the update to the workers. Answering
//! only after the hand-over gives backpressure: Telegram retries what was not taken.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use teloxide::payloads::SetWebhookSetters;
use teloxide::requests::{Request, Requester};
use teloxide::types::Update;
use tickwatch_schema::secret::constant_time_eq;
use tokio_util::sync::CancellationToken;

use super::{Ctx, Dispatch, allowed_updates};
use crate::error::{Error, Result};

/// The header Telegram echoes the secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

#[derive(Clone)]
struct Hook {
    dispatch: Dispatch,
    secret: String,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // No early exit, so timing does not reveal the secret's prefix.
    if !constant_time_eq(given, hook.secret.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<Update>(&body) {
        Ok(update) => {
            if hook.dispatch.send(update).await {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
        Err(e) => {
            // Telegram would retry a 4xx/5xx forever; an update we cannot read is dropped.
            tracing::warn!(error = %e, "unreadable webhook update dropped");
            StatusCode::OK
        }
    }
}

/// The receiver at `path`.
pub(crate) fn router(dispatch: Dispatch, secret: String, path: &str) -> Router {
    let path = if path.is_empty() { "/" } else { path };
    Router::new()
        .route(path, post(receive))
        .with_state(Hook { dispatch, secret })
}

/// Registers the webhook and serves it until `shutdown` (the webhook stays set:
/// Telegram keeps updates until the bot is back).
pub(crate) async fn serve(
    ctx: &Ctx,
    dispatch: Dispatch,
    shutdown: &CancellationToken,
) -> Result<()> {
    let config = &ctx.config.webhook;
    let url_text = config
        .url
        .as_deref()
        .ok_or_else(|| Error::Config("bot.webhook.url is required in webhook mode".into()))?;
    let url = reqwest::Url::parse(url_text)
        .map_err(|e| Error::Config(format!("bot.webhook.url: {e}")))?;
    let secret = config
        .secret_token
        .as_ref()
        .map(|s| s.expose().to_string())
        .ok_or_else(|| Error::Config("bot.webhook.secret_token is required".into()))?;
    ctx.bot
        .set_webhook(url.clone())
        .secret_token(secret.clone())
        .allowed_updates(allowed_updates())
        .send()
        .await?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    tracing::info!(listen = %config.listen, path = url.path(), "telegram webhook listening");
    let app = router(dispatch, secret, url.path());
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn only_posts_with_the_secret_are_taken() {
        let (tx, mut rx) = mpsc::channel(4);
        let dispatch = Dispatch { senders: vec![tx] };
        let app = router(dispatch, "s3cret".into(), "/tg/hook");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let update = serde_json::json!({
            "update_id": 7,
            "message": {"message_id": 1, "date": 1_763_762_400, "text": "/start",
                "chat": {"id": 5, "type": "private", "first_name": "A"},
                "from": {"id": 5, "is_bot": false, "first_name": "A"}}
        });
        let url = format!("http://{addr}/tg/hook");
        let refused = client
            .post(&url)
            .header(SECRET_HEADER, "wrong")
            .json(&update)
            .send()
            .await
            .expect("post");
        assert_eq!(refused.status(), 401);
        let taken = client
            .post(&url)
            .header(SECRET_HEADER, "s3cret")
            .json(&update)
            .send()
            .await
            .expect("post");
        assert_eq!(taken.status(), 200);
        let got = rx.recv().await.expect("the update reached a worker");
        assert_eq!(got.id.0, 7);
        server.abort();
    }
}
