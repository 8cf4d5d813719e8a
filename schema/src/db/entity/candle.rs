//! A recorded candle; unique on venue + symbol + interval + open time.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "candles")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    pub open_ts: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub trades: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
