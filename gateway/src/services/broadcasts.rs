//! Admin broadcasts as durable `system` notifications. A broadcast is a row of `settings`
//! (`broadcast:<id>`, JSON: the text, the users to reach, the last user handed to the
//! broker) and goes out through `tw.notify` in batches of [`BATCH`] users, each batch
//! confirmed by the broker before the row moves on. A process that stops or dies part-way
//! resumes from the row at its next start ([`Services::resume_broadcasts`]); a batch
//! handed over twice is sent once, by its dedupe key `broadcast:<id>:<chat>`. From there
//! a broadcast is a notification like any other: rate-limited, in order per chat, each
//! user's `system` preference (on/silent/off) applied, held by an admin halt.

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tickwatch_schema::db::entity::{notification, setting, user};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Channel, EventKind, Notification};

use super::Services;
use crate::error::{Error, Result};

/// Users handed to the broker per step.
pub const BATCH: u64 = 200;
const KEY_PREFIX: &str = "broadcast:";

/// What is stored of a broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    text: String,
    /// Reachable users when it started.
    total: u64,
    /// Notifications handed to the broker so far.
    published: u64,
    /// The last user id handed over (users go in id order).
    after_user: i64,
    done: bool,
    started_at: i64,
}

/// A broadcast as `/broadcast status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastProgress {
    pub id: String,
    pub total: u64,
    /// Handed to the broker.
    pub published: u64,
    /// Accepted by Telegram.
    pub delivered: u64,
    /// Every user handed over.
    pub done: bool,
    pub started_at: i64,
}

impl Services {
    /// Stores a new broadcast of `text` to every active user with a chat; its id and how
    /// many users it is for. [`Services::run_broadcast`] sends it.
    pub async fn start_broadcast(&self, text: &str) -> Result<(String, u64)> {
        if self.inner.publisher.is_none() {
            return Err(Error::Unavailable(
                "broadcasts go through the broker, and this process has none".into(),
            ));
        }
        let total = user::Entity::find()
            .filter(user::Column::Active.eq(true))
            .filter(user::Column::TelegramChatId.is_not_null())
            .count(self.db())
            .await?;
        let id = uuid::Uuid::now_v7().simple().to_string()[..12].to_string();
        let stored = Stored {
            text: text.to_string(),
            total,
            published: 0,
            after_user: 0,
            done: false,
            started_at: now_ms(),
        };
        self.store_broadcast(&id, &stored).await?;
        Ok((id, total))
    }

    /// Hands the broadcast's remaining users to the broker, a confirmed batch at a time.
    pub async fn run_broadcast(&self, id: &str) -> Result<BroadcastProgress> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(Error::Unavailable("broadcasts need the broker".into()));
        };
        let mut stored = self
            .load_broadcast(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("broadcast {id}")))?;
        while !stored.done {
            let batch = user::Entity::find()
                .filter(user::Column::Active.eq(true))
                .filter(user::Column::TelegramChatId.is_not_null())
                .filter(user::Column::Id.gt(stored.after_user))
                .order_by_asc(user::Column::Id)
                .limit(BATCH)
                .all(self.db())
                .await?;
            let Some(last) = batch.last().map(|u| u.id) else {
                stored.done = true;
                self.store_broadcast(id, &stored).await?;
                break;
            };
            let mut confirms = Vec::with_capacity(batch.len());
            for chat_id in batch.iter().filter_map(|u| u.telegram_chat_id) {
                let notification = Notification {
                    id: uuid::Uuid::now_v7(),
                    channel: Channel::Telegram,
                    chat_id,
                    text: stored.text.clone(),
                    parse_mode: None,
                    dedupe_key: format!("{KEY_PREFIX}{id}:{chat_id}"),
                    kind: EventKind::System,
                    origin_ts: None,
                    buttons: Vec::new(),
                    chart: None,
                };
                confirms.push(publisher.send(Exchange::Notify, &notification).await?);
            }
            for confirm in confirms {
                confirm.wait().await?;
            }
            stored.published += batch.len() as u64;
            stored.after_user = last;
            self.store_broadcast(id, &stored).await?;
        }
        self.progress_of(id.to_string(), &stored).await
    }

    /// Runs every broadcast a previous process left unfinished; how many.
    pub async fn resume_broadcasts(&self) -> Result<usize> {
        let mut resumed = 0;
        for (id, stored) in self.broadcasts().await? {
            if !stored.done {
                tracing::info!(broadcast = %id, published = stored.published, total = stored.total, "resuming a broadcast");
                self.run_broadcast(&id).await?;
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// The `limit` newest broadcasts, newest first, with their deliveries.
    pub async fn broadcast_progress(&self, limit: usize) -> Result<Vec<BroadcastProgress>> {
        let mut all = self.broadcasts().await?;
        all.sort_by(|a, b| b.1.started_at.cmp(&a.1.started_at).then(b.0.cmp(&a.0)));
        let mut out = Vec::new();
        for (id, stored) in all.into_iter().take(limit) {
            out.push(self.progress_of(id, &stored).await?);
        }
        Ok(out)
    }

    async fn progress_of(&self, id: String, stored: &Stored) -> Result<BroadcastProgress> {
        let delivered = notification::Entity::find()
            .filter(notification::Column::DedupeKey.starts_with(format!("{KEY_PREFIX}{id}:")))
            .filter(notification::Column::Status.eq("sent"))
            .count(self.db())
            .await?;
        Ok(BroadcastProgress {
            id,
            total: stored.total,
            published: stored.published,
            delivered,
            done: stored.done,
            started_at: stored.started_at,
        })
    }

    async fn broadcasts(&self) -> Result<Vec<(String, Stored)>> {
        Ok(setting::Entity::find()
            .filter(setting::Column::Key.starts_with(KEY_PREFIX))
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(|row| {
                let stored = serde_json::from_str(&row.value).ok()?;
                Some((row.key.strip_prefix(KEY_PREFIX)?.to_string(), stored))
            })
            .collect())
    }

    async fn load_broadcast(&self, id: &str) -> Result<Option<Stored>> {
        Ok(setting::Entity::find_by_id(format!("{KEY_PREFIX}{id}"))
            .one(self.db())
            .await?
            .and_then(|row| serde_json::from_str(&row.value).ok()))
    }

    async fn store_broadcast(&self, id: &str, stored: &Stored) -> Result<()> {
        let value = serde_json::to_string(stored)
            .map_err(|e| Error::Unavailable(format!("a broadcast's state: {e}")))?;
        self.put_setting(&format!("{KEY_PREFIX}{id}"), &value).await
    }
}
