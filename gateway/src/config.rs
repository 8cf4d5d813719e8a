//! Settings of the two doors: [`ApiConfig`] (the `[api]` section) and [`BotConfig`] (the
//! `[bot]` or `[telegram]` section). Every key has a serde default, so an empty section
//! works; `validate()` names the first bad key.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Telegram's public Bot API.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// The HTTP API's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API listens (`TICKWATCH_API_ADDR`).
    pub addr: String,
    /// Requests per API key.
    pub rate_limit: RateLimitConfig,
    /// Live streams (`GET /v1/stream`).
    pub stream: StreamConfig,
    /// Items per page when a request does not say (`limit`).
    pub default_page_size: u32,
    /// The most items per page a request may ask for.
    pub max_page_size: u32,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The shared secret Alertmanager sends as `Authorization: Bearer …` to
    /// `POST /v1/admin/alertmanager` (`TICKWATCH_API__ALERTMANAGER_SECRET`); unset, the
    /// endpoint refuses every post.
    pub alertmanager_secret: Option<Secret>,
    /// The TradingView relay (`POST /v1/relay/tradingview/{secret}`).
    pub relay: RelayConfig,
}

/// The TradingView relay: each user's webhook URL, whose posts go to their Telegram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Where users' TradingView reaches this API from outside (`https://alerts.example.org`),
    /// to show them their URL; unset, the listen address is shown.
    pub public_url: Option<String>,
    /// Posts a minute per user (a burst of as many); 0: no limit.
    pub per_minute: u32,
    /// Sender addresses allowed (TradingView posts from 52.89.214.238, 34.212.75.30,
    /// 54.218.53.128 and 52.32.178.7); empty: any. Checked on the connection's address, so
    /// behind a proxy enforce it at the proxy.
    pub allow_ips: Vec<std::net::IpAddr>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            public_url: None,
            per_minute: 30,
            allow_ips: Vec::new(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: "127.0.0.1:8080".to_string(),
            rate_limit: RateLimitConfig::default(),
            stream: StreamConfig::default(),
            default_page_size: 50,
            max_page_size: 500,
            max_body_bytes: 64 * 1024,
            alertmanager_secret: None,
            relay: RelayConfig::default(),
        }
    }
}

/// A token bucket per API key, kept in memory (per API process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second per key (the refill rate).
    pub per_second: f64,
    /// Requests a key may make at once after being idle (the bucket size).
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // Generous for a dashboard polling a handful of endpoints, tight enough that a
        // runaway script cannot monopolise a small server.
        RateLimitConfig {
            enabled: true,
            per_second: 10.0,
            burst: 40,
        }
    }
}

/// Live stream settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Events buffered per process for the slowest client; a client that falls this far
    /// behind is closed with a reason instead of being buffered without bound.
    pub buffer: usize,
    /// Seconds between heartbeats on an idle stream.
    pub heartbeat_s: u64,
    /// A single write to a client taking longer than this closes it as too slow.
    pub send_timeout_ms: u64,
    /// Streams open at once per process; more are refused with 503.
    pub max_clients: usize,
    /// Topics one stream may subscribe to.
    pub max_topics: usize,
    /// The process's broker queue keeps at most this many messages (oldest dropped).
    pub queue_max_length: i64,
    /// Messages older than this in the process's broker queue are dropped (live data).
    pub queue_ttl_ms: i64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            buffer: 1024,
            heartbeat_s: 15,
            send_timeout_ms: 5_000,
            max_clients: 1_000,
            max_topics: 32,
            queue_max_length: 10_000,
            queue_ttl_ms: 10_000,
        }
    }
}

impl StreamConfig {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_s)
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }
}

impl ApiConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("api.{key}: {why}")));
        if let Err(e) = self.addr.parse::<SocketAddr>() {
            return bad("addr", format!("`{}` is not host:port ({e})", self.addr));
        }
        if let Some(secret) = &self.alertmanager_secret
            && secret.expose().trim().len() < 16
        {
            return bad(
                "alertmanager_secret",
                "use at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
            );
        }
        if let Some(url) = &self.relay.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(
                "relay.public_url",
                format!("`{url}` must be an http(s) URL"),
            );
        }
        let rl = &self.rate_limit;
        if rl.enabled && !(rl.per_second.is_finite() && rl.per_second > 0.0) {
            return bad(
                "rate_limit.per_second",
                format!("{} must be above 0", rl.per_second),
            );
        }
        if rl.enabled && rl.burst == 0 {
            return bad("rate_limit.burst", "must be at least 1".into());
        }
        let s = &self.stream;
        if s.buffer == 0 || s.buffer > 1_000_000 {
            return bad(
                "stream.buffer",
                format!("{} is not between 1 and 1000000", s.buffer),
            );
        }
        if s.heartbeat_s == 0 || s.heartbeat_s > 3_600 {
            return bad(
                "stream.heartbeat_s",
                format!("{} is not between 1 and 3600", s.heartbeat_s),
            );
        }
        if s.send_timeout_ms == 0 {
            return bad("stream.send_timeout_ms", "must be above 0".into());
        }
        if s.max_clients == 0 {
            return bad("stream.max_clients", "must be at least 1".into());
        }
        if s.max_topics == 0 {
            return bad("stream.max_topics", "must be at least 1".into());
        }
        if s.queue_max_length <= 0 || s.queue_ttl_ms <= 0 {
            return bad(
                "stream.queue_max_length/queue_ttl_ms",
                "must be above 0".into(),
            );
        }
        if self.max_page_size == 0 {
            return bad("max_page_size", "must be at least 1".into());
        }
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return bad(
                "default_page_size",
                format!(
                    "{} is not between 1 and max_page_size ({})",
                    self.default_page_size, self.max_page_size
                ),
            );
        }
        if self.max_body_bytes < 1_024 {
            return bad("max_body_bytes", "must be at least 1024".into());
        }
        Ok(())
    }
}

pub use tickwatch_schema::secret::Secret;

/// How the bot receives updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    /// `getUpdates` long polling: works behind NAT, needs nothing public. The default.
    #[default]
    Polling,
    /// Telegram POSTs updates to `webhook.url`; the bot listens on `webhook.listen`
    /// (put a TLS-terminating proxy in front: Telegram requires HTTPS).
    Webhook,
}

/// Webhook mode settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The public HTTPS URL Telegram posts to, e.g. `https://bot.example.org/telegram`.
    pub url: Option<String>,
    /// Where the bot's webhook server listens (behind the proxy).
    pub listen: String,
    /// Telegram sends it back in `X-Telegram-Bot-Api-Secret-Token`; other posts are
    /// refused. Required in webhook mode: without it anyone could forge updates.
    pub secret_token: Option<Secret>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            listen: "127.0.0.1:8443".to_string(),
            secret_token: None,
        }
    }
}

/// The Telegram bot's settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// `TELEGRAM_BOT_TOKEN`, from @BotFather. The bot cannot run without it. In the
    /// `tickwatch` binary this, `api_url` and `admin_chats` come from `[telegram]`.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// `TELEGRAM_API_URL`: Telegram's, a self-hosted Bot API server, or a test fake.
    #[serde(skip)]
    pub api_url: String,
    /// `TICKWATCH_ADMIN_CHATS`: chats with admin rights (`[1, 2]` or `"1,2"`).
    #[serde(skip)]
    pub admin_chats: Vec<i64>,
    pub mode: BotMode,
    /// Seconds one `getUpdates` long poll waits.
    pub poll_timeout_s: u32,
    pub webhook: WebhookConfig,
    /// Updates handled at once (one chat's updates always in order).
    pub workers: usize,
    /// Where the HTTP API is reached from outside, for the URLs of `/relay` and `/web` (in the `tickwatch`
    /// binary: `api.relay.public_url`, else the API's listen address).
    #[serde(skip)]
    pub relay_base_url: Option<String>,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            token: None,
            api_url: DEFAULT_TELEGRAM_API_URL.to_string(),
            admin_chats: Vec::new(),
            mode: BotMode::Polling,
            poll_timeout_s: 10,
            webhook: WebhookConfig::default(),
            workers: 4,
            relay_base_url: None,
        }
    }
}

impl fmt::Debug for BotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotConfig")
            .field("token", &self.token)
            .field("api_url", &self.api_url)
            .field("admin_chats", &self.admin_chats)
            .field("mode", &self.mode)
            .field("poll_timeout_s", &self.poll_timeout_s)
            .field("webhook", &self.webhook)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl BotConfig {
    /// Applies the well-known variables `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL` and
    /// `TICKWATCH_ADMIN_CHATS` as read by `lookup`; an empty value counts as unset.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<()> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = set("TELEGRAM_BOT_TOKEN") {
            self.token = Some(Secret::new(token));
        }
        if let Some(url) = set("TELEGRAM_API_URL") {
            self.api_url = url;
        }
        if let Some(chats) = set("TICKWATCH_ADMIN_CHATS") {
            self.admin_chats = parse_chat_list(&chats).map_err(Error::Config)?;
        }
        Ok(())
    }

    pub fn is_admin_chat(&self, chat_id: i64) -> bool {
        self.admin_chats.contains(&chat_id)
    }

    /// Checks every key; the error names the first bad one (never the token's value).
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("bot.{key}: {why}")));
        if let Some(token) = &self.token {
            let t = token.expose();
            if !t.contains(':') || t.chars().any(|c| c.is_whitespace() || c == '/') {
                return bad(
                    "token",
                    "a bot token looks like `123456:ABC…` (from @BotFather)".into(),
                );
            }
        }
        match reqwest::Url::parse(&self.api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return bad(
                    "api_url",
                    format!("`{}` is not an http(s) URL", self.api_url),
                );
            }
        }
        if self.api_url.ends_with('/') {
            // teloxide joins `{base}/bot<token>`: a trailing slash gives `//bot…`.
            return bad(
                "api_url",
                "remove the trailing `/` (teloxide would request `//bot…`)".into(),
            );
        }
        if self.poll_timeout_s == 0 || self.poll_timeout_s > 50 {
            return bad(
                "poll_timeout_s",
                format!("{} is not between 1 and 50", self.poll_timeout_s),
            );
        }
        if self.workers == 0 || self.workers > 256 {
            return bad(
                "workers",
                format!("{} is not between 1 and 256", self.workers),
            );
        }
        if self.mode == BotMode::Webhook {
            match self.webhook.url.as_deref().map(reqwest::Url::parse) {
                Some(Ok(url)) if url.scheme() == "https" => {}
                Some(Ok(_)) => return bad("webhook.url", "Telegram requires https".into()),
                Some(Err(e)) => return bad("webhook.url", format!("not a URL: {e}")),
                None => return bad("webhook.url", "is required in webhook mode".into()),
            }
            if let Err(e) = self.webhook.listen.parse::<SocketAddr>() {
                return bad(
                    "webhook.listen",
                    format!("`{}` is not host:port ({e})", self.webhook.listen),
                );
            }
            match &self.webhook.secret_token {
                Some(s)
                    if !s.expose().is_empty()
                        && s.expose().len() <= 256
                        && s.expose()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
                _ => {
                    return bad(
                        "webhook.secret_token",
                        "is required in webhook mode: 1-256 of A-Z a-z 0-9 _ -".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Parses `"1, -100200"` into chat ids.
pub fn parse_chat_list(text: &str) -> std::result::Result<Vec<i64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("`{s}` is not a chat id"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ApiConfig::default().validate().expect("api defaults");
        BotConfig::default().validate().expect("bot defaults");
    }

    #[test]
    fn bad_keys_are_named() {
        let cases: Vec<(ApiConfig, &str)> = vec![
            (
                ApiConfig {
                    addr: "nowhere".into(),
                    ..Default::default()
                },
                "api.addr",
            ),
            (
                ApiConfig {
                    rate_limit: RateLimitConfig {
                        per_second: 0.0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "api.rate_limit.per_second",
            ),
            (
                ApiConfig {
                    default_page_size: 1_000,
                    ..Default::default()
                },
                "api.default_page_size",
            ),
            (
                ApiConfig {
                    alertmanager_secret: Some(Secret::new("short")),
                    ..Default::default()
                },
                "api.alertmanager_secret",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
        let bot = BotConfig {
            api_url: "http://fake/".into(),
            ..Default::default()
        };
        assert!(
            bot.validate()
                .expect_err("slash")
                .to_string()
                .contains("bot.api_url")
        );
        let webhook = BotConfig {
            mode: BotMode::Webhook,
            webhook: WebhookConfig {
                url: Some("https://bot.example.org/tg".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            webhook
                .validate()
                .expect_err("no secret")
                .to_string()
                .contains("webhook.secret_token")
        );
    }

    #[test]
    fn token_is_masked_and_env_applies() {
        let mut config = BotConfig::default();
        config
            .apply_env(|name| match name {
                "TELEGRAM_BOT_TOKEN" => Some("123:SECRET".into()),
                "TICKWATCH_ADMIN_CHATS" => Some("5, -1001".into()),
                _ => None,
            })
            .expect("env");
        assert_eq!(config.admin_chats, vec![5, -1001]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let json = serde_json::to_string(&config).expect("serialize");
        assert!(!json.contains("SECRET"), "{json}");
        // The token, API URL and admin chats come from `[telegram]` in the binary; in the
        // `[bot]` section they are unknown keys.
        let refused = serde_json::from_str::<BotConfig>(r#"{"token":"1:x"}"#);
        assert!(refused.is_err(), "token is not a [bot] key");
        let parsed: BotConfig = serde_json::from_str(r#"{"workers":2}"#).expect("parse");
        assert_eq!(parsed.workers, 2);
    }
}
