//! What the web dashboard needs beyond the API's other resources: signing in (a one-time
//! link from the bot's `/web`, or an API key, exchanged for a browser session), a symbol's
//! candle history, and a user's recent notifications.
//!
//! Links and sessions are rows of `web_sessions`, stored as the SHA-256 of their token like
//! API keys. A link is used by deleting it (one row affected: this request won it), so two
//! tabs racing with one link make one session.

use rand::RngCore;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, Condition as Where, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use tickwatch_schema::db::entity::{api_key, candle, notification, user, web_session};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::wire::Interval;
use utoipa::ToSchema;

use super::users::{Caller, ROLE_ADMIN, hash_key};
use super::{Before, Page, Services, hex, time_cursor};
use crate::error::{Error, Result};

/// How long a sign-in link from `/web` can be used.
pub const LINK_TTL_MS: i64 = 10 * 60 * 1000;
/// How long a browser session lasts (the cookie's `Max-Age`).
pub const SESSION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most candles one request returns.
pub const MAX_CANDLES: u64 = 1000;
/// The most browser sessions a user keeps; a new one beyond ends the oldest.
pub const MAX_SESSIONS_PER_USER: u64 = 20;

const KIND_LINK: &str = "link";
const KIND_SESSION: &str = "session";
const LINK_PREFIX: &str = "twl_";
const SESSION_PREFIX: &str = "tws_";

/// A new browser session: the cookie's token (shown to no one but the browser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token: String,
    pub user_id: i64,
    pub expires_at: i64,
}

/// A recorded candle as the dashboard draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CandleOut {
    /// The bar's open time (epoch ms).
    pub open_ts: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub trades: Option<i64>,
}

/// A notification sent (or meant) to the user's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NotificationOut {
    pub id: String,
    /// `alert`, `signal`, `paper`, `digest`, `system`, …
    pub kind: String,
    /// The text as Telegram shows it (Telegram HTML).
    pub text: String,
    /// `pending`, `sent`, `failed`, `skipped` or `logged`.
    pub status: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

impl Services {
    /// A one-time sign-in link's token for the user (valid [`LINK_TTL_MS`]).
    pub async fn create_web_link(&self, user_id: i64) -> Result<String> {
        self.user(user_id).await?;
        let token = new_token(LINK_PREFIX);
        self.store_web_token(&token, KIND_LINK, user_id, None, LINK_TTL_MS)
            .await?;
        Ok(token)
    }

    /// Exchanges a sign-in link for a session; a link works once.
    pub async fn sign_in_with_link(&self, link: &str) -> Result<NewSession> {
        let refused = || {
            Error::Unauthorized(
                "the sign-in link is used up or expired; send /web to the bot for a new one".into(),
            )
        };
        let link = link.trim();
        if !link.starts_with(LINK_PREFIX) || link.len() > 200 {
            return Err(refused());
        }
        let now = now_ms();
        let Some(row) = web_session::Entity::find()
            .filter(web_session::Column::TokenHash.eq(hash_key(link)))
            .filter(web_session::Column::Kind.eq(KIND_LINK))
            .filter(web_session::Column::ExpiresAt.gt(now))
            .one(self.db())
            .await?
        else {
            return Err(refused());
        };
        let used = web_session::Entity::delete_many()
            .filter(web_session::Column::Id.eq(row.id))
            .exec(self.db())
            .await?;
        if used.rows_affected != 1 {
            return Err(refused());
        }
        self.start_session(row.user_id, None).await
    }

    /// A session for a caller authenticated by an API key (so the page never keeps the
    /// key): it ends when the key is revoked.
    pub async fn sign_in_with_key(&self, caller: &Caller) -> Result<NewSession> {
        self.start_session(caller.user_id, Some(caller.key_id))
            .await
    }

    async fn start_session(&self, user_id: i64, api_key_id: Option<i64>) -> Result<NewSession> {
        let token = new_token(SESSION_PREFIX);
        let expires_at = self
            .store_web_token(&token, KIND_SESSION, user_id, api_key_id, SESSION_TTL_MS)
            .await?;
        // Past the most a user keeps, the oldest sessions end (a few rows: the cap holds).
        let ids: Vec<i64> = web_session::Entity::find()
            .select_only()
            .column(web_session::Column::Id)
            .filter(web_session::Column::UserId.eq(user_id))
            .filter(web_session::Column::Kind.eq(KIND_SESSION))
            .order_by_desc(web_session::Column::Id)
            .into_tuple()
            .all(self.db())
            .await?;
        let beyond: Vec<i64> = ids
            .into_iter()
            .skip(MAX_SESSIONS_PER_USER as usize)
            .collect();
        if !beyond.is_empty() {
            web_session::Entity::delete_many()
                .filter(web_session::Column::Id.is_in(beyond))
                .exec(self.db())
                .await?;
        }
        Ok(NewSession {
            token,
            user_id,
            expires_at,
        })
    }

    /// Ends every browser session and unused sign-in link of the user (`/web signout`);
    /// returns how many sessions ended.
    pub async fn sign_out_everywhere(&self, user_id: i64) -> Result<u64> {
        let sessions = web_session::Entity::find()
            .filter(web_session::Column::UserId.eq(user_id))
            .filter(web_session::Column::Kind.eq(KIND_SESSION))
            .filter(web_session::Column::ExpiresAt.gt(now_ms()))
            .count(self.db())
            .await?;
        web_session::Entity::delete_many()
            .filter(web_session::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(sessions)
    }

    async fn store_web_token(
        &self,
        token: &str,
        kind: &str,
        user_id: i64,
        api_key_id: Option<i64>,
        ttl_ms: i64,
    ) -> Result<i64> {
        let now = now_ms();
        // Expired links and sessions go whenever a new one is made.
        web_session::Entity::delete_many()
            .filter(web_session::Column::ExpiresAt.lte(now))
            .exec(self.db())
            .await?;
        let expires_at = now + ttl_ms;
        web_session::Entity::insert(web_session::ActiveModel {
            token_hash: Set(hash_key(token)),
            kind: Set(kind.to_string()),
            user_id: Set(user_id),
            api_key_id: Set(api_key_id),
            created_at: Set(now),
            expires_at: Set(expires_at),
            ..Default::default()
        })
        .exec(self.db())
        .await?;
        Ok(expires_at)
    }

    /// The user behind a session cookie. The caller's `key_id` is minus the session's id,
    /// so a session has a rate-limit budget of its own, apart from every API key's.
    pub async fn authenticate_session(&self, token: &str) -> Result<Caller> {
        let refused = || Error::Unauthorized("the session expired; sign in again".into());
        let token = token.trim();
        if !token.starts_with(SESSION_PREFIX) || token.len() > 200 {
            return Err(refused());
        }
        let Some(row) = web_session::Entity::find()
            .filter(web_session::Column::TokenHash.eq(hash_key(token)))
            .filter(web_session::Column::Kind.eq(KIND_SESSION))
            .filter(web_session::Column::ExpiresAt.gt(now_ms()))
            .one(self.db())
            .await?
        else {
            return Err(refused());
        };
        // A session made from a key ends with the key.
        if let Some(key_id) = row.api_key_id
            && api_key::Entity::find_by_id(key_id)
                .one(self.db())
                .await?
                .is_none()
        {
            return Err(refused());
        }
        let Some(owner) = user::Entity::find_by_id(row.user_id).one(self.db()).await? else {
            return Err(refused());
        };
        Ok(Caller {
            user_id: owner.id,
            name: owner.name,
            admin: owner.role == ROLE_ADMIN,
            key_id: -row.id,
        })
    }

    /// Ends a session (signing out); an unknown token is no error.
    pub async fn sign_out(&self, token: &str) -> Result<()> {
        web_session::Entity::delete_many()
            .filter(web_session::Column::TokenHash.eq(hash_key(token.trim())))
            .filter(web_session::Column::Kind.eq(KIND_SESSION))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Up to `limit` recorded candles of a series before `before` (all when `None`),
    /// oldest first.
    pub async fn candles(
        &self,
        venue: &str,
        symbol: &str,
        interval: Interval,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<CandleOut>> {
        let mut query = candle::Entity::find()
            .filter(candle::Column::Venue.eq(venue))
            .filter(candle::Column::Symbol.eq(symbol))
            .filter(candle::Column::Interval.eq(interval.as_str()))
            .order_by_desc(candle::Column::OpenTs)
            .limit(limit.min(MAX_CANDLES));
        if let Some(before) = before {
            query = query.filter(candle::Column::OpenTs.lt(before));
        }
        let mut rows: Vec<CandleOut> = query
            .all(self.db())
            .await?
            .into_iter()
            .map(|c| CandleOut {
                open_ts: c.open_ts,
                open: c.open,
                high: c.high,
                low: c.low,
                close: c.close,
                volume: c.volume,
                trades: c.trades,
            })
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// The user's notifications, newest first (none without a Telegram chat).
    pub async fn notifications(
        &self,
        user_id: i64,
        before: Option<Before>,
        limit: u64,
    ) -> Result<Page<NotificationOut>> {
        let owner = self.user(user_id).await?;
        let Some(chat) = owner.telegram_chat_id else {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let mut query = notification::Entity::find()
            .filter(notification::Column::ChatId.eq(chat))
            .order_by_desc(notification::Column::CreatedAt)
            .order_by_desc(notification::Column::Id)
            .limit(limit + 1);
        if let Some((ts, id)) = before {
            query = query.filter(
                Where::any()
                    .add(notification::Column::CreatedAt.lt(ts))
                    .add(
                        Where::all()
                            .add(notification::Column::CreatedAt.eq(ts))
                            .add(notification::Column::Id.lt(id)),
                    ),
            );
        }
        let rows = query
            .all(self.db())
            .await?
            .into_iter()
            .map(|n| NotificationOut {
                id: n.id,
                kind: n.kind,
                text: n.text,
                status: n.status,
                created_at: n.created_at,
                sent_at: n.sent_at,
            })
            .collect();
        Ok(Page::of(rows, limit, |n| time_cursor(n.created_at, &n.id)))
    }
}
