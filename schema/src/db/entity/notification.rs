//! One notification toward a chat; `dedupe_key` makes delivery once per key.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub dedupe_key: String,
    pub chat_id: i64,
    pub kind: String,
    pub text: String,
    /// `pending`, `sent`, `failed` (not final: a DLQ replay tries again), `skipped` (the
    /// user turned this kind off) or `logged` (no Telegram token: written to the log only).
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
