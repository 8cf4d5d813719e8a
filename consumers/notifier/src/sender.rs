//! Sending one message: to Telegram ([`TelegramSender`]) or, without a token, to the log
//! ([`LogSender`]).
//!
//! The sender holds a teloxide [`Bot`] (its HTTP client, token and API URL) but performs
//! `sendMessage` itself, with teloxide's payload type, for three reasons found in
//! teloxide-core 0.13: its request path sleeps 10 s after every 5xx before returning; it
//! drops `error_code`, so a 5xx and an unknown 4xx look alike; and its `Throttle` adaptor
//! freezes *every* chat on one chat's 429 and queues at most `messages_per_sec_overall`
//! requests, so 30 waiting messages for one chat stall all others. [`crate::limiter`] keeps
//! the limits per chat instead.

use std::time::{Duration, Instant};

use serde::Deserialize;
use teloxide::Bot;
use teloxide::payloads::SendMessage;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, ParseMode as TgParseMode,
};
use tickwatch_schema::wire::{Button, ParseMode};

use crate::Error;
use crate::config::NotifierConfig;
use crate::limiter::Limiter;

/// One message for one chat (a notification, or one part of a split one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub chat_id: i64,
    pub text: String,
    pub parse_mode: Option<ParseMode>,
    /// Deliver without sound (the user's `silent` preference).
    pub disable_notification: bool,
    /// Inline buttons under the message (rows).
    pub buttons: Vec<Vec<Button>>,
    /// A PNG sent with the text as its caption (`sendPhoto`); the text must then fit a
    /// caption (1,024 characters).
    pub photo: Option<std::sync::Arc<Vec<u8>>>,
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Telegram accepted it.
    Delivered { message_id: i64 },
    /// 429: send again to this chat after this long.
    RetryAfter(Duration),
    /// 5xx, network error, timeout, a bad token or URL: try again later.
    Transient(String),
    /// The chat cannot be reached (blocked, deactivated, not found, kicked): stop sending to
    /// it.
    Unreachable(String),
    /// Telegram refused the message itself (bad markup, too long): never retry it.
    Rejected(String),
}

/// Sends through the Telegram Bot API, keeping the rate limits.
pub struct TelegramSender {
    bot: Bot,
    base_url: String,
    limiter: Limiter,
    max_retry_wait: Duration,
}

impl std::fmt::Debug for TelegramSender {
    // `Bot`'s own Debug prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSender")
            .field("base_url", &self.base_url)
            .field("limits", self.limiter.limits())
            .finish_non_exhaustive()
    }
}

impl TelegramSender {
    /// A sender for the configured token and API URL. Fails without a token.
    pub fn new(config: &NotifierConfig) -> Result<Self, Error> {
        config.validate()?;
        let token = config
            .telegram_bot_token
            .as_ref()
            .ok_or_else(|| Error::Config("no telegram_bot_token: use the LogSender".into()))?;
        // Only ring is compiled in; installing it here keeps a forgotten call in main from
        // panicking at the first request. A second install is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = teloxide::net::default_reqwest_settings()
            .timeout(config.request_timeout())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", e.without_url())))?;
        let url = reqwest::Url::parse(&config.telegram_api_url)
            .map_err(|e| Error::Config(format!("telegram_api_url: {e}")))?;
        let bot = Bot::with_client(token.expose(), client).set_api_url(url);
        Ok(TelegramSender {
            bot,
            // A base with a path must not end in '/': `http://h/tg/` would give `/tg//bot…`.
            base_url: config.telegram_api_url.trim_end_matches('/').to_string(),
            limiter: Limiter::new(config.limits.clone()),
            max_retry_wait: config.max_retry_after(),
        })
    }

    /// The teloxide bot (its client, token and URL), e.g. for other Bot API calls.
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Sends, waiting out 429s for this chat only (other chats keep their slots) as long as
    /// the total wait stays within `max_retry_after_s`; beyond that returns the
    /// `RetryAfter`. Any other outcome is returned as it comes.
    pub async fn send(&self, message: &OutgoingMessage) -> SendOutcome {
        let mut waited = Duration::ZERO;
        loop {
            match self.send_once(message).await {
                SendOutcome::RetryAfter(wait) if waited + wait <= self.max_retry_wait => {
                    // `post` deferred the chat: the next slot is after the wait.
                    waited += wait;
                }
                outcome => return outcome,
            }
        }
    }

    /// One attempt, but `proceed` is asked when the chat's slot has come, right before the
    /// request: `None` when it said no and nothing was sent. A slot can be seconds away
    /// (many chats ahead of this one, or a 429's wait), and much can change meanwhile: the
    /// circuit breaker may have opened.
    pub async fn send_once_if(
        &self,
        message: &OutgoingMessage,
        proceed: impl FnOnce() -> bool,
    ) -> Option<SendOutcome> {
        self.limiter.acquire(message.chat_id).await;
        if !proceed() {
            return None;
        }
        Some(self.post(message).await)
    }

    /// The longest total 429 wait one message spends in place (`max_retry_after_s`).
    pub fn max_retry_wait(&self) -> Duration {
        self.max_retry_wait
    }

    /// One attempt: waits for the chat's slot, sends, classifies the answer.
    pub async fn send_once(&self, message: &OutgoingMessage) -> SendOutcome {
        self.limiter.acquire(message.chat_id).await;
        self.post(message).await
    }

    /// Sends now (the slot was acquired) and classifies the answer; a 429 holds the chat.
    async fn post(&self, message: &OutgoingMessage) -> SendOutcome {
        let mut payload = SendMessage::new(ChatId(message.chat_id), message.text.clone());
        payload.parse_mode = message.parse_mode.map(|mode| match mode {
            ParseMode::MarkdownV2 => TgParseMode::MarkdownV2,
            ParseMode::Html => TgParseMode::Html,
        });
        if message.disable_notification {
            payload.disable_notification = Some(true);
        }
        if !message.buttons.is_empty() {
            let rows = message.buttons.iter().map(|row| {
                row.iter()
                    .map(|b| InlineKeyboardButton::callback(b.text.clone(), b.data.clone()))
            });
            payload.reply_markup = Some(InlineKeyboardMarkup::new(rows).into());
        }
        let answer = match &message.photo {
            None => self.call("sendMessage", &payload).await,
            Some(png) => self.call_photo(&payload, png).await,
        };
        let outcome = match answer {
            Ok((status, body)) => classify(status, &body),
            Err(error) => SendOutcome::Transient(error),
        };
        if let SendOutcome::RetryAfter(wait) = outcome {
            crate::events::RateLimited {
                chat_id: message.chat_id,
                wait,
            }
            .emit();
            self.limiter.defer(message.chat_id, Instant::now() + wait);
        }
        outcome
    }

    /// POSTs a JSON body to a Bot API method; the status and body, or a network error with
    /// the token kept out.
    async fn call(
        &self,
        method: &str,
        payload: &impl serde::Serialize,
    ) -> Result<(u16, String), String> {
        self.post_to(method, |request| request.json(payload)).await
    }

    /// POSTs to a Bot API method with the body `body` puts on the request.
    async fn post_to(
        &self,
        method: &str,
        body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(u16, String), String> {
        let token = self.bot.token();
        let url = format!("{}/bot{token}/{method}", self.base_url);
        let response = body(self.bot.client().post(url))
            .send()
            .await
            .map_err(|e| self.redact(&network_error(e)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| self.redact(&network_error(e)))?;
        Ok((status, body))
    }

    /// `sendPhoto` as `multipart/form-data`: the message's fields as text parts (the text
    /// as the caption), the PNG as a file part.
    async fn call_photo(&self, message: &SendMessage, png: &[u8]) -> Result<(u16, String), String> {
        use reqwest::multipart::{Form, Part};
        let mut form = Form::new()
            .text("chat_id", message.chat_id.to_string())
            .text("caption", message.text.clone());
        if let Some(mode) = message.parse_mode {
            let mode = match mode {
                TgParseMode::Html => "HTML",
                _ => "MarkdownV2",
            };
            form = form.text("parse_mode", mode);
        }
        if message.disable_notification == Some(true) {
            form = form.text("disable_notification", "true");
        }
        if let Some(markup) = &message.reply_markup {
            let json = serde_json::to_string(markup).map_err(|e| e.to_string())?;
            form = form.text("reply_markup", json);
        }
        let file = Part::bytes(png.to_vec())
            .file_name("chart.png")
            .mime_str("image/png")
            .map_err(|e| e.to_string())?;
        form = form.part("photo", file);
        self.post_to("sendPhoto", |request| request.multipart(form))
            .await
    }

    fn redact(&self, text: &str) -> String {
        let token = self.bot.token();
        if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, "***")
        }
    }
}

fn network_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect error"
    } else {
        "network error"
    };
    // The URL holds the token: drop it from the message.
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct ApiReply {
    ok: Option<bool>,
    result: Option<serde_json::Value>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<ReplyParameters>,
}

#[derive(Deserialize)]
struct ReplyParameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// 400 descriptions that mean the chat, not the message, is the problem.
const UNREACHABLE_400: [&str; 11] = [
    "chat not found",
    "user not found",
    "user is deactivated",
    "peer_id_invalid",
    "bot was blocked",
    "bot was kicked",
    "not enough rights to send",
    "have no rights to send",
    "chat_write_forbidden",
    "group chat was deactivated",
    "bot is not a member",
];

/// Classifies a Bot API answer by HTTP status, `error_code`, `parameters` and description.
pub fn classify(status: u16, body: &str) -> SendOutcome {
    let Ok(reply) = serde_json::from_str::<ApiReply>(body) else {
        // Not a Bot API answer at all: a proxy's error page, a cut connection.
        let snippet: String = body.chars().take(200).collect();
        return SendOutcome::Transient(format!("HTTP {status}: {snippet}"));
    };
    if reply.ok == Some(true) {
        let message_id = reply
            .result
            .as_ref()
            .and_then(|r| r.get("message_id"))
            .and_then(serde_json::Value::as_i64)
            .unwrap_or_default();
        return SendOutcome::Delivered { message_id };
    }
    let code = reply.error_code.unwrap_or(i64::from(status));
    let description = reply
        .description
        .unwrap_or_else(|| format!("HTTP {status}"));
    let parameters = reply.parameters.as_ref();
    if let Some(seconds) = parameters.and_then(|p| p.retry_after) {
        return SendOutcome::RetryAfter(Duration::from_secs(seconds));
    }
    if let Some(to) = parameters.and_then(|p| p.migrate_to_chat_id) {
        return SendOutcome::Unreachable(format!(
            "{description} (the group is now supergroup {to})"
        ));
    }
    let lower = description.to_ascii_lowercase();
    match code {
        403 => SendOutcome::Unreachable(description),
        400 if UNREACHABLE_400.iter().any(|d| lower.contains(d)) => {
            SendOutcome::Unreachable(description)
        }
        // 401/404: a wrong token or API URL is the deployment's fault, not the message's:
        // keep the messages (retry, breaker) until it is fixed.
        401 | 404 | 429 | 500..=599 => SendOutcome::Transient(format!("{code}: {description}")),
        400..=499 => SendOutcome::Rejected(description),
        _ => SendOutcome::Transient(format!("{code}: {description}")),
    }
}

/// Without a Telegram token: writes each message to the log, labelled as not sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSender;

impl LogSender {
    pub fn send(&self, message: &OutgoingMessage) {
        tracing::info!(
            target: "tickwatch::notifier",
            chat_id = message.chat_id,
            silent = message.disable_notification,
            "NOT SENT (no TELEGRAM_BOT_TOKEN) chat={}{} text={}",
            message.chat_id,
            message
                .photo
                .as_ref()
                .map_or(String::new(), |p| format!(" chart={} bytes", p.len())),
            message.text
        );
    }
}

/// The notifier's way out.
#[derive(Debug)]
pub enum Sender {
    Telegram(Box<TelegramSender>),
    Log(LogSender),
}

impl Sender {
    /// Telegram when a token is configured, the log otherwise.
    pub fn from_config(config: &NotifierConfig) -> Result<Self, Error> {
        config.validate()?;
        match config.telegram_bot_token {
            Some(_) => Ok(Sender::Telegram(Box::new(TelegramSender::new(config)?))),
            None => Ok(Sender::Log(LogSender)),
        }
    }

    pub fn is_telegram(&self) -> bool {
        matches!(self, Sender::Telegram(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(200, r#"{"ok":true,"result":{"message_id":7}}"#),
            SendOutcome::Delivered { message_id: 7 }
        );
        assert_eq!(
            classify(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#
            ),
            SendOutcome::RetryAfter(Duration::from_secs(3))
        );
        assert!(matches!(
            classify(
                500,
                r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#
            ),
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            classify(502, "<html>Bad Gateway</html>"),
            SendOutcome::Transient(_)
        ));
        assert_eq!(
            classify(
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
            ),
            SendOutcome::Unreachable("Forbidden: bot was blocked by the user".into())
        );
        assert!(matches!(
            classify(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            SendOutcome::Unreachable(_)
        ));
        assert_eq!(
            classify(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities: x"}"#
            ),
            SendOutcome::Rejected("Bad Request: can't parse entities: x".into())
        );
        assert!(matches!(
            classify(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            classify(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001}}"#),
            SendOutcome::Unreachable(d) if d.contains("-1001")
        ));
    }
}
