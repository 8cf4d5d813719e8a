//! The last price the alert rules of a symbol were evaluated at (for restarts).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_prices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub venue: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    pub price: String,
    pub ts: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
