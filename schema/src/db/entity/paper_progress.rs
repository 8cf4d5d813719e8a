//! The last candle of each series the paper role went through (with the signals of the
//! candles before it), stored with the state that candle produced.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_progress")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub venue: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub interval: String,
    pub last_open_ts: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
