//! The TradingView relay: each user's own webhook URL (a secret in the path), whose posts —
//! the text of a TradingView alert — go to that user's Telegram through `tw.notify`.
//!
//! TradingView posts the alert's message as it is: `application/json` when the message is
//! valid JSON, `text/plain` otherwise. JSON with a `message` (or `text`) string sends that
//! string; other JSON is sent as written. A post handed over twice (a proxy retrying) is sent
//! once: the notification's dedupe key is the user, a hash of the body and the minute.
//! Only the secret's SHA-256 is stored; the URL is shown once, when made (like an API key).

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use tickwatch_schema::db::entity::user;
use tickwatch_schema::db::now_ms;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Channel, EventKind, Notification};

use super::{Services, hex};
use crate::error::{Error, Result};

/// Telegram's longest message; a longer alert is cut (and says so).
const MAX_TEXT_CHARS: usize = 4000;

/// What a relayed post became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub user_id: i64,
    /// The notification's dedupe key: a repeat within the minute has the same one.
    pub dedupe_key: String,
}

/// The relay URL of a secret on the API's public base (`https://alerts.example.org`).
pub fn relay_url(base: &str, secret: &str) -> String {
    format!(
        "{}/v1/relay/tradingview/{secret}",
        base.trim_end_matches('/')
    )
}

/// A new relay secret: 24 random bytes, hex.
fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The text a post sends: a JSON body's `message` or `text` string, else the body as
/// written; cut to Telegram's length.
pub fn relay_text(body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::BadRequest("the body is not UTF-8 text".into()))?
        .trim();
    if text.is_empty() {
        return Err(Error::BadRequest(
            "the body is empty: TradingView sends the alert's message".into(),
        ));
    }
    let chosen = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| {
            ["message", "text"]
                .iter()
                .find_map(|k| value.get(k)?.as_str().map(str::to_string))
        })
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| text.to_string());
    if chosen.chars().count() > MAX_TEXT_CHARS {
        let cut: String = chosen.chars().take(MAX_TEXT_CHARS).collect();
        return Ok(format!("{cut}… (cut)"));
    }
    Ok(chosen)
}

impl Services {
    /// Makes the user a new relay secret (the old URL stops working) and returns it.
    pub async fn rotate_relay_token(&self, user_id: i64) -> Result<String> {
        self.user(user_id).await?;
        let secret = new_secret();
        user::Entity::update_many()
            .set(user::ActiveModel {
                relay_token_hash: Set(Some(secret_hash(&secret))),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(secret)
    }

    /// The user a relay secret belongs to.
    pub async fn relay_user(&self, secret: &str) -> Result<user::Model> {
        if secret.len() != 48 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::not_found("relay URL"));
        }
        user::Entity::find()
            .filter(user::Column::RelayTokenHash.eq(secret_hash(secret)))
            .one(self.db())
            .await?
            .ok_or_else(|| Error::not_found("relay URL"))
    }

    /// Sends a TradingView post to its user's Telegram; answers once the broker has it.
    pub async fn relay_post(&self, user: &user::Model, body: &[u8]) -> Result<Relayed> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(Error::Unavailable("relaying needs the broker".into()));
        };
        let chat_id = match (user.active, user.telegram_chat_id) {
            (true, Some(chat)) => chat,
            _ => {
                return Err(Error::Conflict(
                    "no Telegram chat to send to: /start the bot (and /register) first".into(),
                ));
            }
        };
        let text = relay_text(body)?;
        let now = now_ms();
        let digest = hex(&Sha256::digest(body));
        let dedupe_key = format!("tradingview:{}:{}:{}", user.id, &digest[..32], now / 60_000);
        let notification = Notification {
            id: uuid::Uuid::now_v7(),
            channel: Channel::Telegram,
            chat_id,
            text,
            parse_mode: None,
            dedupe_key: dedupe_key.clone(),
            kind: EventKind::Alert,
            origin_ts: Some(now),
            buttons: Vec::new(),
            chart: None,
        };
        let confirm = publisher.send(Exchange::Notify, &notification).await?;
        match tokio::time::timeout(self.inner.announce_timeout, confirm.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "the broker did not confirm within {:?}",
                    self.inner.announce_timeout
                )));
            }
        }
        Ok(Relayed {
            user_id: user.id,
            dedupe_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_of_a_post() {
        assert_eq!(
            relay_text(b"BTCUSDT crossed 65000").expect("text"),
            "BTCUSDT crossed 65000"
        );
        assert_eq!(
            relay_text(br#"{"message":"RSI < 30 on ETH","ticker":"ETHUSDT"}"#).expect("json"),
            "RSI < 30 on ETH"
        );
        assert_eq!(
            relay_text(br#"{"ticker":"ETHUSDT","close":3120.5}"#).expect("json"),
            r#"{"ticker":"ETHUSDT","close":3120.5}"#
        );
        assert!(relay_text(b"  ").is_err());
        assert!(relay_text(&[0xff, 0xfe]).is_err());
        let long = "x".repeat(5000);
        assert!(
            relay_text(long.as_bytes())
                .expect("long")
                .ends_with("… (cut)")
        );
        assert_eq!(new_secret().len(), 48);
    }
}
