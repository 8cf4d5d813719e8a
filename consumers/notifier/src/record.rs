//! The delivery record in the `notifications` table, and the user lookups the notifier
//! needs (`users`: active flag, preferences).

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
};
use tickwatch_schema::db::entity::{notification, user};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::wire::EventKind;

/// The `status` values of a notification row.
pub mod status {
    /// Being delivered (or a delivery failed transiently and will be retried).
    pub const PENDING: &str = "pending";
    /// Telegram accepted it. Final: a redelivery is acknowledged without sending.
    pub const SENT: &str = "sent";
    /// The chat is unreachable, or Telegram rejected the message; `last_error` says why.
    pub const FAILED: &str = "failed";
    /// The user's preference for this kind is `off`; `last_error` = `off`. Final.
    pub const SKIPPED: &str = "skipped";
    /// No Telegram token: written to the log, never delivered to Telegram. Final.
    pub const LOGGED: &str = "logged";

    /// Statuses after which a redelivery does nothing. `failed` is not one: a failed
    /// notification comes back only by an explicit DLQ replay, which means "try again".
    pub fn is_final(status: &str) -> bool {
        matches!(status, SENT | SKIPPED | LOGGED)
    }
}

/// A user's choice for one event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    On,
    /// Delivered without sound (`disable_notification`).
    Silent,
    Off,
}

/// The preference for `kind` in a user's `prefs` JSON; missing or unreadable means `on`.
pub fn preference(prefs: &str, kind: EventKind) -> Preference {
    let Ok(map) = serde_json::from_str::<HashMap<String, serde_json::Value>>(prefs) else {
        return Preference::On;
    };
    match map.get(kind.as_str()).and_then(|v| v.as_str()) {
        Some("silent") => Preference::Silent,
        Some("off") => Preference::Off,
        _ => Preference::On,
    }
}

/// What to store for a notification (or one part of a split one).
#[derive(Debug, Clone)]
pub(crate) struct Row<'a> {
    pub id: String,
    pub dedupe_key: &'a str,
    pub chat_id: i64,
    pub kind: &'a str,
    pub text: &'a str,
}

pub(crate) async fn find(
    db: &DatabaseConnection,
    dedupe_key: &str,
) -> Result<Option<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::DedupeKey.eq(dedupe_key))
        .one(db)
        .await
}

/// Whether an insert lost a race on the unique dedupe key.
fn is_duplicate_key(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Records the row as `pending` with one more attempt, creating it if needed. Returns false
/// when another process created it at the same moment (the caller backs off).
pub(crate) async fn begin(db: &DatabaseConnection, row: &Row<'_>) -> Result<bool, DbErr> {
    let now = now_ms();
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(status::PENDING))
        .col_expr(
            notification::Column::Attempts,
            Expr::col(notification::Column::Attempts).add(1),
        )
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(notification::Column::DedupeKey.eq(row.dedupe_key))
        .exec(db)
        .await?;
    if updated.rows_affected > 0 {
        return Ok(true);
    }
    insert(db, row, status::PENDING, 1, None, now).await
}

async fn insert(
    db: &DatabaseConnection,
    row: &Row<'_>,
    status: &str,
    attempts: i32,
    last_error: Option<&str>,
    now: i64,
) -> Result<bool, DbErr> {
    let model = notification::ActiveModel {
        id: Set(row.id.clone()),
        dedupe_key: Set(row.dedupe_key.to_string()),
        chat_id: Set(row.chat_id),
        kind: Set(row.kind.to_string()),
        text: Set(row.text.to_string()),
        status: Set(status.to_string()),
        attempts: Set(attempts),
        last_error: Set(last_error.map(str::to_string)),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
    };
    match model.insert(db).await {
        Ok(_) => Ok(true),
        Err(err) if is_duplicate_key(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Marks the row sent: one UPDATE, issued right after Telegram accepted.
pub(crate) async fn mark_sent(db: &DatabaseConnection, dedupe_key: &str) -> Result<(), DbErr> {
    let now = now_ms();
    notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(status::SENT))
        .col_expr(notification::Column::SentAt, Expr::value(now))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            notification::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(notification::Column::DedupeKey.eq(dedupe_key))
        .exec(db)
        .await?;
    Ok(())
}

/// Sets the status and error of an existing row.
pub(crate) async fn mark(
    db: &DatabaseConnection,
    dedupe_key: &str,
    status: &str,
    error: &str,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(status))
        .col_expr(notification::Column::LastError, Expr::value(error))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now_ms()))
        .filter(notification::Column::DedupeKey.eq(dedupe_key))
        .exec(db)
        .await?;
    Ok(())
}

/// Records an outcome reached without sending (skipped, logged, inactive user).
pub(crate) async fn settle(
    db: &DatabaseConnection,
    row: &Row<'_>,
    status: &str,
    reason: &str,
) -> Result<(), DbErr> {
    if find(db, row.dedupe_key).await?.is_some() {
        return mark(db, row.dedupe_key, status, reason).await;
    }
    if !insert(db, row, status, 0, Some(reason), now_ms()).await? {
        // Created meanwhile by another delivery of the same key: update that row.
        mark(db, row.dedupe_key, status, reason).await?;
    }
    Ok(())
}

pub(crate) async fn find_user(
    db: &DatabaseConnection,
    chat_id: i64,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::TelegramChatId.eq(chat_id))
        .one(db)
        .await
}

/// Stops notifications to the user of `chat_id`: inactive, with the reason shown on their
/// next `/start`. Returns whether a user was found.
pub(crate) async fn deactivate_user(
    db: &DatabaseConnection,
    chat_id: i64,
    reason: &str,
) -> Result<bool, DbErr> {
    let result = user::Entity::update_many()
        .col_expr(user::Column::Active, Expr::value(false))
        .col_expr(user::Column::PausedReason, Expr::value(reason))
        .filter(user::Column::TelegramChatId.eq(chat_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_default_to_on() {
        let prefs = r#"{"alert":"on","signal":"silent","system":"off"}"#;
        assert_eq!(preference(prefs, EventKind::Alert), Preference::On);
        assert_eq!(preference(prefs, EventKind::Signal), Preference::Silent);
        assert_eq!(preference(prefs, EventKind::System), Preference::Off);
        assert_eq!(preference("{}", EventKind::Signal), Preference::On);
        assert_eq!(preference("not json", EventKind::Alert), Preference::On);
    }
}
