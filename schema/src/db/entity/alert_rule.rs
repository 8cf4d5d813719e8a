//! A user's price alert rule. Decimals are stored as text so both databases keep them exact.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_rules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub venue: String,
    pub symbol: String,
    pub condition: String,
    pub threshold: Option<String>,
    pub low: Option<String>,
    pub high: Option<String>,
    pub pct: Option<String>,
    pub window_s: Option<i64>,
    pub trigger: String,
    pub interval: Option<String>,
    pub cooldown_s: i64,
    pub expires_at: Option<i64>,
    pub hysteresis_pct: Option<String>,
    pub template: Option<String>,
    pub active: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub fired_count: i64,
    pub last_fired_at: Option<i64>,
    /// A snoozed rule (inactive) resumes by itself at this time (epoch ms).
    pub snoozed_until: Option<i64>,
    /// The clauses of an `expression` rule.
    pub expression: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
