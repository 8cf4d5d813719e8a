//! Users (from the command line, an admin endpoint or Telegram registration), their
//! language and notification preferences, and their API keys.
//!
//! An API key is `tw_` and 40 random hex digits (160 bits). It is shown once; the database
//! keeps only its SHA-256 (hex) and its first 10 characters, to tell keys apart.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tickwatch_schema::db::entity::{alert_rule, api_key, subscription, user};
use tickwatch_schema::db::{new_user_row, now_ms};
use tickwatch_schema::wire::{Control, EventKind};
use utoipa::ToSchema;

use super::{Services, hex};
use crate::error::{Error, Result};

pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_USER: &str = "user";
/// Every API key starts with this.
pub const KEY_PREFIX: &str = "tw_";
/// Characters of a key kept for display.
const DISPLAY_PREFIX_LEN: usize = 10;
/// `last_used_at` is written at most this often per key (one write per request would
/// make every read a write).
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// The language of a user's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Ko,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ko => "ko",
        }
    }

    /// From a stored value or Telegram's `language_code` (`ko`, `ko-KR`); English otherwise.
    pub fn from_code(code: Option<&str>) -> Language {
        match code {
            Some(c) if c.to_ascii_lowercase().starts_with("ko") => Language::Ko,
            _ => Language::En,
        }
    }
}

impl FromStr for Language {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" | "english" => Ok(Language::En),
            "ko" | "korean" | "한국어" => Ok(Language::Ko),
            other => Err(Error::invalid(
                "language",
                format!("`{other}` is not a language; use en or ko"),
            )),
        }
    }
}

/// A user's choice for one event kind, as the notifier reads it from `users.prefs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preference {
    On,
    /// Delivered without sound.
    Silent,
    Off,
}

impl Preference {
    pub const ALL: [Preference; 3] = [Preference::On, Preference::Silent, Preference::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            Preference::On => "on",
            Preference::Silent => "silent",
            Preference::Off => "off",
        }
    }
}

impl FromStr for Preference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "켜기" => Ok(Preference::On),
            "silent" | "무음" => Ok(Preference::Silent),
            "off" | "끄기" => Ok(Preference::Off),
            other => Err(Error::invalid(
                "preference",
                format!("`{other}` is not on, silent or off"),
            )),
        }
    }
}

/// The preferences in a user's `prefs` JSON, every kind filled in (missing: `on`).
pub fn preferences(prefs: &str) -> BTreeMap<EventKind, Preference> {
    let stored: BTreeMap<String, String> = serde_json::from_str(prefs).unwrap_or_default();
    EventKind::ALL
        .iter()
        .map(|kind| {
            let pref = stored
                .get(kind.as_str())
                .and_then(|p| p.parse().ok())
                .unwrap_or(Preference::On);
            (*kind, pref)
        })
        .collect()
}

/// A user to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub telegram_chat_id: Option<i64>,
    pub admin: bool,
    pub language: Language,
    /// Created by `tickwatch run`'s first start; removable with `user remove --demo`.
    pub demo: bool,
}

/// A user as listings show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub telegram_chat_id: Option<i64>,
    pub language: String,
    pub active: bool,
    pub admin: bool,
    pub demo: bool,
    pub paused_reason: Option<String>,
    pub created_at: i64,
}

impl From<&user::Model> for UserInfo {
    fn from(u: &user::Model) -> Self {
        UserInfo {
            id: u.id,
            name: u.name.clone(),
            telegram_chat_id: u.telegram_chat_id,
            language: u.language.clone(),
            active: u.active,
            admin: u.role == ROLE_ADMIN,
            demo: u.demo,
            paused_reason: u.paused_reason.clone(),
            created_at: u.created_at,
        }
    }
}

/// What removing a user removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RemovedUser {
    pub user: UserInfo,
    pub rules: usize,
    pub subscriptions: usize,
    pub api_keys: u64,
}

/// A new API key: `key` is shown once and never stored.
#[derive(Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NewApiKey {
    pub id: i64,
    pub user_id: i64,
    pub key: String,
    pub prefix: String,
    pub created_at: i64,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// An API key as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Who made an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub name: String,
    pub admin: bool,
    pub key_id: i64,
}

/// What `/register` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    New,
    /// Was paused or unregistered: active again.
    Reactivated,
    Already,
}

/// SHA-256 of a key, as stored.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn new_key() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex(&bytes))
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "is empty"));
    }
    if name.chars().count() > 64 {
        return Err(Error::invalid("name", "is longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "holds control characters"));
    }
    Ok(name.to_string())
}

fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

impl Services {
    /// Creates a user. A Telegram chat id may belong to one user only.
    pub async fn create_user(&self, new: NewUser) -> Result<UserInfo> {
        let name = check_name(&new.name)?;
        if let Some(chat) = new.telegram_chat_id {
            if chat == 0 {
                return Err(Error::invalid("telegram_chat_id", "0 is no Telegram chat"));
            }
            if self.user_by_chat(chat).await?.is_some() {
                return Err(Error::Conflict(format!(
                    "Telegram chat {chat} already belongs to a user"
                )));
            }
        }
        let mut row = new_user_row(name, new.telegram_chat_id, new.language.as_str(), now_ms());
        row.role = Set(if new.admin { ROLE_ADMIN } else { ROLE_USER }.to_string());
        row.demo = Set(new.demo);
        match row.insert(self.db()).await {
            Ok(stored) => Ok(UserInfo::from(&stored)),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(
                "Telegram chat already belongs to a user".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every user by id.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::Id)
            .all(self.db())
            .await?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    pub async fn user(&self, id: i64) -> Result<user::Model> {
        user::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .ok_or_else(|| Error::not_found(format!("user {id}")))
    }

    /// A user by id (`7`), Telegram chat (`chat:123`) or exact name (`alice`; must be
    /// unambiguous), as the command line names them.
    pub async fn find_user(&self, given: &str) -> Result<UserInfo> {
        let given = given.trim();
        if let Some(chat) = given.strip_prefix("chat:") {
            let chat: i64 = chat
                .parse()
                .map_err(|_| Error::invalid("user", format!("`{chat}` is not a chat id")))?;
            return self
                .user_by_chat(chat)
                .await?
                .map(|u| UserInfo::from(&u))
                .ok_or_else(|| Error::not_found(format!("user with Telegram chat {chat}")));
        }
        if let Ok(id) = given.parse::<i64>()
            && let Some(u) = user::Entity::find_by_id(id).one(self.db()).await?
        {
            return Ok(UserInfo::from(&u));
        }
        let named = user::Entity::find()
            .filter(user::Column::Name.eq(given))
            .all(self.db())
            .await?;
        match named.as_slice() {
            [one] => Ok(UserInfo::from(one)),
            [] => Err(Error::not_found(format!("user `{given}`"))),
            many => Err(Error::Conflict(format!(
                "{} users are named `{given}`; use an id: {}",
                many.len(),
                many.iter()
                    .map(|u| u.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub async fn user_by_chat(&self, chat_id: i64) -> Result<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::TelegramChatId.eq(chat_id))
            .one(self.db())
            .await?)
    }

    /// Removes a user with their rules, subscriptions and keys; running alerts instances
    /// are told of each rule and subscription removed.
    pub async fn remove_user(&self, id: i64) -> Result<RemovedUser> {
        let row = self.user(id).await?;
        let rules = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(id))
            .all(self.db())
            .await?;
        let subs = subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(id))
            .all(self.db())
            .await?;
        alert_rule::Entity::delete_many()
            .filter(alert_rule::Column::UserId.eq(id))
            .exec(self.db())
            .await?;
        subscription::Entity::delete_many()
            .filter(subscription::Column::UserId.eq(id))
            .exec(self.db())
            .await?;
        let keys = api_key::Entity::delete_many()
            .filter(api_key::Column::UserId.eq(id))
            .exec(self.db())
            .await?
            .rows_affected;
        user::Entity::delete_by_id(id).exec(self.db()).await?;
        for rule in &rules {
            self.announce(&Control::RuleDeleted {
                rule_id: rule.id,
                user_id: id,
                version: rule.version + 1,
            })
            .await;
        }
        for sub in &subs {
            self.announce(&Control::SubscriptionDeleted {
                subscription_id: sub.id,
                version: sub.version + 1,
            })
            .await;
        }
        Ok(RemovedUser {
            user: UserInfo::from(&row),
            rules: rules.len(),
            subscriptions: subs.len(),
            api_keys: keys,
        })
    }

    /// Removes every demo user (`tickwatch user remove --demo`).
    pub async fn remove_demo_users(&self) -> Result<Vec<RemovedUser>> {
        let demos = user::Entity::find()
            .filter(user::Column::Demo.eq(true))
            .all(self.db())
            .await?;
        let mut removed = Vec::with_capacity(demos.len());
        for u in demos {
            removed.push(self.remove_user(u.id).await?);
        }
        Ok(removed)
    }

    /// A new API key for the user; the returned `key` is the only time it is seen.
    pub async fn create_api_key(&self, user_id: i64) -> Result<NewApiKey> {
        self.user(user_id).await?;
        let key = new_key();
        let prefix: String = key.chars().take(DISPLAY_PREFIX_LEN).collect();
        let now = now_ms();
        let stored = api_key::ActiveModel {
            user_id: Set(user_id),
            key_hash: Set(hash_key(&key)),
            prefix: Set(prefix.clone()),
            created_at: Set(now),
            last_used_at: Set(None),
            ..Default::default()
        }
        .insert(self.db())
        .await?;
        Ok(NewApiKey {
            id: stored.id,
            user_id,
            key,
            prefix,
            created_at: now,
        })
    }

    pub async fn list_api_keys(&self, user_id: i64) -> Result<Vec<ApiKeyInfo>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::UserId.eq(user_id))
            .order_by_asc(api_key::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(|k| ApiKeyInfo {
                id: k.id,
                prefix: k.prefix,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
            })
            .collect())
    }

    /// Revokes every key of the user; returns how many.
    pub async fn revoke_api_keys(&self, user_id: i64) -> Result<u64> {
        Ok(api_key::Entity::delete_many()
            .filter(api_key::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?
            .rows_affected)
    }

    /// The user behind a bearer key; `Unauthorized` for anything else.
    pub async fn authenticate(&self, key: &str) -> Result<Caller> {
        let key = key.trim();
        if !key.starts_with(KEY_PREFIX) || key.len() > 200 {
            return Err(Error::Unauthorized("not a tickwatch API key".into()));
        }
        let Some(found) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash_key(key)))
            .one(self.db())
            .await?
        else {
            return Err(Error::Unauthorized("unknown or revoked API key".into()));
        };
        let Some(owner) = user::Entity::find_by_id(found.user_id)
            .one(self.db())
            .await?
        else {
            return Err(Error::Unauthorized("unknown or revoked API key".into()));
        };
        let now = now_ms();
        if found
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
        {
            api_key::Entity::update_many()
                .set(api_key::ActiveModel {
                    last_used_at: Set(Some(now)),
                    ..Default::default()
                })
                .filter(api_key::Column::Id.eq(found.id))
                .exec(self.db())
                .await?;
        }
        Ok(Caller {
            user_id: owner.id,
            name: owner.name,
            admin: owner.role == ROLE_ADMIN,
            key_id: found.id,
        })
    }

    /// Registers a Telegram chat (consent to notifications): creates the user, or
    /// reactivates a paused or unregistered one.
    pub async fn register_chat(
        &self,
        chat_id: i64,
        name: &str,
        language: Language,
    ) -> Result<(user::Model, Registration)> {
        if let Some(existing) = self.user_by_chat(chat_id).await? {
            if existing.active {
                return Ok((existing, Registration::Already));
            }
            user::Entity::update_many()
                .set(user::ActiveModel {
                    active: Set(true),
                    paused_reason: Set(None),
                    ..Default::default()
                })
                .filter(user::Column::Id.eq(existing.id))
                .exec(self.db())
                .await?;
            let updated = self.user(existing.id).await?;
            return Ok((updated, Registration::Reactivated));
        }
        let name = check_name(name).unwrap_or_else(|_| format!("telegram-{chat_id}"));
        let info = self
            .create_user(NewUser {
                name,
                telegram_chat_id: Some(chat_id),
                language,
                ..Default::default()
            })
            .await?;
        Ok((self.user(info.id).await?, Registration::New))
    }

    /// Stops notifications to the user, keeping their data; `reason` is told on their next
    /// `/start`.
    pub async fn deactivate_user(&self, user_id: i64, reason: &str) -> Result<()> {
        user::Entity::update_many()
            .set(user::ActiveModel {
                active: Set(false),
                paused_reason: Set(Some(reason.to_string())),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Sets the user's message language.
    pub async fn set_language(&self, user_id: i64, language: Language) -> Result<()> {
        user::Entity::update_many()
            .set(user::ActiveModel {
                language: Set(language.as_str().to_string()),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Sets the zone the user reads times in (an IANA name; `None`: their language's).
    pub async fn set_time_zone(&self, user_id: i64, zone: Option<String>) -> Result<()> {
        if let Some(name) = &zone {
            tickwatch_schema::display::parse_time_zone(name)
                .map_err(|reason| Error::invalid("time_zone", reason))?;
        }
        user::Entity::update_many()
            .set(user::ActiveModel {
                time_zone: Set(zone),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Sets the user's preference for one event kind; returns all of them.
    pub async fn set_preference(
        &self,
        user_id: i64,
        kind: EventKind,
        preference: Preference,
    ) -> Result<BTreeMap<EventKind, Preference>> {
        let row = self.user(user_id).await?;
        let mut stored: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.prefs).unwrap_or_default();
        stored.insert(kind.as_str().to_string(), preference.as_str().into());
        let text = serde_json::Value::Object(stored).to_string();
        user::Entity::update_many()
            .set(user::ActiveModel {
                prefs: Set(text.clone()),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(preferences(&text))
    }

    /// Turns the charts sent with notifications on or off (`prefs.charts`); the stored
    /// preferences after the change.
    pub async fn set_charts(&self, user_id: i64, on: bool) -> Result<String> {
        let row = self.user(user_id).await?;
        let mut stored: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.prefs).unwrap_or_default();
        stored.insert(
            tickwatch_schema::db::PREF_CHARTS.to_string(),
            if on { "on" } else { "off" }.into(),
        );
        let text = serde_json::Value::Object(stored).to_string();
        user::Entity::update_many()
            .set(user::ActiveModel {
                prefs: Set(text.clone()),
                ..Default::default()
            })
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(text)
    }

    /// Users, and how many are active.
    pub async fn count_users(&self) -> Result<(u64, u64)> {
        let all = user::Entity::find().count(self.db()).await?;
        let active = user::Entity::find()
            .filter(user::Column::Active.eq(true))
            .count(self.db())
            .await?;
        Ok((all, active))
    }

    /// Active users with a Telegram chat, for a broadcast.
    pub async fn reachable_chats(&self) -> Result<Vec<i64>> {
        Ok(user::Entity::find()
            .filter(user::Column::Active.eq(true))
            .filter(user::Column::TelegramChatId.is_not_null())
            .order_by_asc(user::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(|u| u.telegram_chat_id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 43, "{a}");
        assert_eq!(hash_key(&a).len(), 64);
        assert_eq!(hash_key(&a), hash_key(&a));
        let shown = format!(
            "{:?}",
            NewApiKey {
                id: 1,
                user_id: 1,
                key: a.clone(),
                prefix: "tw_x".into(),
                created_at: 0
            }
        );
        assert!(!shown.contains(&a));
    }

    #[test]
    fn preferences_default_to_on() {
        let prefs = preferences(r#"{"signal":"silent","system":"off","junk":"x"}"#);
        assert_eq!(prefs[&EventKind::Alert], Preference::On);
        assert_eq!(prefs[&EventKind::Signal], Preference::Silent);
        assert_eq!(prefs[&EventKind::System], Preference::Off);
        assert_eq!(preferences("not json")[&EventKind::Alert], Preference::On);
        assert_eq!(Language::from_code(Some("ko-KR")), Language::Ko);
        assert_eq!(Language::from_code(None), Language::En);
    }
}
