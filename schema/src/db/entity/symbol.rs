//! A tradable instrument and the names users search it by.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "symbols")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub venue: String,
    pub symbol: String,
    pub name: String,
    /// Search terms, `|`-separated, lower-case where the script has case
    /// (`삼성전자|삼성|samsung|samsung electronics`).
    pub aliases: String,
    /// `crypto`, `krx` or `us`: decides the trading day of daily candles.
    pub market: String,
    /// False once a re-import no longer lists it (delisted): still found, and its rules
    /// keep working on whatever data arrives, but users are told.
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
