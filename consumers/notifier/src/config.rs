//! The notifier's configuration (the `[notifier]` section).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::breaker::BreakerConfig;
use crate::limiter::RateLimits;
use crate::markdown::MAX_MESSAGE_LEN;

/// Telegram's public Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

pub use tickwatch_schema::secret::Secret;

/// How the notifier reaches Telegram. Without a token, notifications are written to the
/// log instead (see [`crate::LogSender`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierConfig {
    /// `TELEGRAM_BOT_TOKEN`; unset: log instead of sending. In the `tickwatch` binary it
    /// comes from the `[telegram]` section, so it is not a key of `[notifier]`.
    #[serde(skip)]
    pub telegram_bot_token: Option<Secret>,
    /// `TELEGRAM_API_URL`: Telegram's, a self-hosted Bot API server, or a test fake (from
    /// `[telegram]` in the binary, like the token).
    #[serde(skip)]
    pub telegram_api_url: String,
    /// Notifications delivered at once (for different chats; one chat's stay in order).
    /// Every chat gets at most one message a second, so throughput needs many in flight.
    pub concurrency: usize,
    /// One HTTP request to Telegram, in milliseconds.
    pub request_timeout_ms: u64,
    /// The longest total 429 wait spent in place before handing the message back to the
    /// broker's retry tiers, in seconds.
    pub max_retry_after_s: u64,
    /// How long a transient failure (5xx, network) is retried in place, in seconds, before
    /// the message goes to the broker's retry tiers. In place, the chat's later messages
    /// wait behind it, so they arrive in order; through the tiers they would not.
    pub transient_hold_s: u64,
    /// Messages longer than this (UTF-16 code units) are split; at most 4,096.
    pub max_message_len: usize,
    pub limits: RateLimits,
    pub breaker: BreakerConfig,
    /// Whether an admin's halt also holds `system` notifications (operators' alerts,
    /// broadcasts). Off by default: the operators' own alarms get through a halt.
    pub halt_holds_system: bool,
    /// How long a notification's chart may take (reading its candles and drawing them);
    /// past that the text goes out alone. 0: no charts.
    pub chart_budget_ms: u64,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            telegram_bot_token: None,
            telegram_api_url: DEFAULT_API_URL.to_string(),
            concurrency: 64,
            request_timeout_ms: 15_000,
            max_retry_after_s: 300,
            transient_hold_s: 30,
            max_message_len: MAX_MESSAGE_LEN,
            limits: RateLimits::default(),
            breaker: BreakerConfig::default(),
            halt_holds_system: false,
            chart_budget_ms: 300,
        }
    }
}

impl NotifierConfig {
    /// The defaults with `TELEGRAM_BOT_TOKEN` and `TELEGRAM_API_URL` applied.
    pub fn from_env() -> Self {
        let mut config = NotifierConfig::default();
        config.apply_env(|name| std::env::var(name).ok());
        config
    }

    /// Applies the well-known variables `TELEGRAM_BOT_TOKEN` and `TELEGRAM_API_URL` as read
    /// by `lookup`; an empty value counts as unset.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = set("TELEGRAM_BOT_TOKEN") {
            self.telegram_bot_token = Some(Secret::new(token));
        }
        if let Some(url) = set("TELEGRAM_API_URL") {
            self.telegram_api_url = url;
        }
    }

    pub fn transient_hold(&self) -> Duration {
        Duration::from_secs(self.transient_hold_s)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn max_retry_after(&self) -> Duration {
        Duration::from_secs(self.max_retry_after_s)
    }

    /// Checks every value; the error names the first bad one (never the token's value).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::Config(reason));
        if self.concurrency == 0 || self.concurrency > 1_000 {
            return bad(format!(
                "notifier.concurrency: {} is not between 1 and 1000",
                self.concurrency
            ));
        }
        if let Some(token) = &self.telegram_bot_token {
            let t = token.expose();
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c == '/') {
                return bad("telegram_bot_token is empty or contains whitespace or '/'".into());
            }
        }
        match reqwest::Url::parse(&self.telegram_api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return bad(format!(
                    "telegram_api_url `{}` is not an http(s) URL",
                    self.telegram_api_url
                ));
            }
        }
        if self.chart_budget_ms > 10_000 {
            return bad(format!(
                "notifier.chart_budget_ms: {} is over 10000 (a chart must never hold an alert up)",
                self.chart_budget_ms
            ));
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be positive".into());
        }
        if !(16..=MAX_MESSAGE_LEN).contains(&self.max_message_len) {
            return bad(format!("max_message_len must be 16..={MAX_MESSAGE_LEN}"));
        }
        if let Some(problem) = self.limits.problem().or_else(|| self.breaker.problem()) {
            return bad(problem);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_shows_in_debug() {
        let mut config = NotifierConfig::default();
        config.apply_env(|name| (name == "TELEGRAM_BOT_TOKEN").then(|| "123:SECRET".to_string()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(
            config.telegram_bot_token.as_ref().map(Secret::expose),
            Some("123:SECRET")
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        assert!(NotifierConfig::default().validate().is_ok());
        let config = NotifierConfig {
            telegram_api_url: "ftp://x".into(),
            ..NotifierConfig::default()
        };
        assert!(config.validate().is_err());
        let config = NotifierConfig {
            max_message_len: 5000,
            ..NotifierConfig::default()
        };
        assert!(
            matches!(config.validate(), Err(Error::Config(m)) if m.contains("max_message_len"))
        );
    }

    #[test]
    fn empty_env_token_means_unset() {
        let mut config = NotifierConfig::default();
        config.apply_env(|_| Some(" ".into()));
        assert!(config.telegram_bot_token.is_none());
        assert_eq!(config.telegram_api_url, DEFAULT_API_URL);
    }

    #[test]
    fn deserializes_with_defaults() {
        let config: NotifierConfig =
            serde_json::from_str(r#"{"concurrency":8,"limits":{"margin_ms":50}}"#)
                .expect("config parses");
        assert_eq!(config.concurrency, 8);
        assert!(
            serde_json::from_str::<NotifierConfig>(r#"{"telegram_bot_token":"1:x"}"#).is_err(),
            "the token belongs to [telegram], not [notifier]"
        );
        assert_eq!(config.limits.margin_ms, 50);
        assert_eq!(config.limits.global_per_second, 30);
        assert_eq!(config.breaker.failure_threshold, 5);
    }
}
