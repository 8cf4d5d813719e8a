//! System-wide operations: the admins' global halt/resume of notifications, the system
//! statistics of `/stats`, and the DLQ summary.
//!
//! A halt is persisted in `settings` under [`HALTED_KEY`] (`"true"` / `"false"`), so a
//! notifier that starts later holds messages too, and announced as `Control::Halt` /
//! `Control::Resume` for the running ones. Held messages stay in the queue.

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::Serialize;
use tickwatch_broker::dlq::{self, DlqSummary};
use tickwatch_broker::management::Management;
use tickwatch_broker::topology::Topology;
use tickwatch_schema::db::entity::{alert_rule, setting, subscription};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::wire::Control;
use utoipa::ToSchema;

use super::Services;
use crate::error::Result;

/// The `settings` key of the global notification halt.
pub const HALTED_KEY: &str = tickwatch_schema::db::SETTING_NOTIFICATIONS_HALTED;

/// One work queue as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueStat {
    pub queue: String,
    pub messages: u64,
    pub consumers: u64,
    pub dlq: String,
    pub dlq_messages: u64,
}

/// The whole system at a glance (admin `/stats`, `GET /v1/admin/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SystemStats {
    pub users: u64,
    pub active_users: u64,
    pub rules: u64,
    pub active_rules: u64,
    pub subscriptions: u64,
    pub notifications_halted: bool,
    /// `None` when the broker or its management API is not reachable.
    pub queues: Option<Vec<QueueStat>>,
}

impl Services {
    /// Whether an admin halted notifications.
    pub async fn notifications_halted(&self) -> Result<bool> {
        Ok(setting::Entity::find_by_id(HALTED_KEY.to_string())
            .one(self.db())
            .await?
            .is_some_and(|s| s.value.trim() == "true"))
    }

    async fn set_halted(&self, halted: bool) -> Result<()> {
        self.put_setting(HALTED_KEY, &halted.to_string()).await
    }

    /// Writes a `settings` row, replacing its value if the key exists.
    pub(crate) async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let row = setting::ActiveModel {
            key: Set(key.to_string()),
            value: Set(value.to_string()),
            updated_at: Set(now_ms()),
        };
        setting::Entity::insert(row)
            .on_conflict(
                OnConflict::column(setting::Column::Key)
                    .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Holds every notification in its queue until [`Services::resume_notifications`].
    pub async fn halt_notifications(&self, by_chat: Option<i64>) -> Result<()> {
        self.set_halted(true).await?;
        self.announce(&Control::Halt { by_chat }).await;
        Ok(())
    }

    /// Releases held notifications.
    pub async fn resume_notifications(&self, by_chat: Option<i64>) -> Result<()> {
        self.set_halted(false).await?;
        self.announce(&Control::Resume { by_chat }).await;
        Ok(())
    }

    /// Counts from the database and queue depths from the broker's management API.
    pub async fn system_stats(&self) -> Result<SystemStats> {
        let (users, active_users) = self.count_users().await?;
        let rules = alert_rule::Entity::find().count(self.db()).await?;
        let active_rules = alert_rule::Entity::find()
            .filter(alert_rule::Column::Active.eq(true))
            .count(self.db())
            .await?;
        let subscriptions = subscription::Entity::find().count(self.db()).await?;
        Ok(SystemStats {
            users,
            active_users,
            rules,
            active_rules,
            subscriptions,
            notifications_halted: self.notifications_halted().await?,
            queues: self.queue_stats().await,
        })
    }

    async fn queue_stats(&self) -> Option<Vec<QueueStat>> {
        let broker = self.broker()?;
        let topology = Topology::standard(broker.config()).ok()?;
        let management = Management::new(broker.config()).ok()?;
        let count = |q: &serde_json::Value, key: &str| {
            q.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
        };
        let mut out = Vec::new();
        for work in topology.work_queues.iter().filter(|w| !w.discard_failures) {
            let queue = match management.queue(&work.name).await {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(error = %e, "queue depths unavailable");
                    return None;
                }
            };
            let dlq = management.queue(&work.dlq).await.ok().flatten();
            out.push(QueueStat {
                queue: work.name.clone(),
                messages: queue.as_ref().map_or(0, |q| count(q, "messages")),
                consumers: queue.as_ref().map_or(0, |q| count(q, "consumers")),
                dlq: work.dlq.clone(),
                dlq_messages: dlq.as_ref().map_or(0, |q| count(q, "messages")),
            });
        }
        Some(out)
    }

    /// Depth and dead-letter reasons of every DLQ of the standard topology.
    pub async fn dlq_summary(&self) -> Result<Vec<DlqSummary>> {
        let broker = self.require_broker("the DLQ summary")?;
        let topology = Topology::standard(broker.config())?;
        Ok(dlq::list(broker, &topology).await?)
    }
}
