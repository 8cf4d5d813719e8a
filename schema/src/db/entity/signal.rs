//! A computed signal and its outcome: the forward return after 1, 5 and 20 bars.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "signals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    pub ts: i64,
    pub price: String,
    pub score: i32,
    pub grade: String,
    /// JSON object of the values behind the signal.
    pub details: String,
    pub ret_1: Option<f64>,
    pub ret_5: Option<f64>,
    pub ret_20: Option<f64>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
