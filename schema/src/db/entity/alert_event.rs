//! One firing of a rule. The id derives from the rule and the triggering event, so a
//! redelivered tick maps to the same row; `published` is the outbox flag.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub rule_id: i64,
    pub user_id: i64,
    pub venue: String,
    pub symbol: String,
    pub condition: String,
    pub threshold: String,
    pub price: String,
    pub ts: i64,
    pub text: String,
    pub published: bool,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
