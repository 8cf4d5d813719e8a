//! A paper strategy's equity (cash plus positions at their last close) at the end of a
//! market day, as last seen that day.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_equity")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub strategy_id: i64,
    /// `YYYY-MM-DD`, the market's day.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    pub equity: String,
    pub cash: String,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
