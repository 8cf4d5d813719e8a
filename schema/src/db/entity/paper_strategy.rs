//! A user's paper strategy: its rules (`spec`, JSON), balance and state of the account.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_strategies")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// `tickwatch_paper::Strategy` as JSON (its `id` is the row's).
    pub spec: String,
    pub starting_balance: String,
    pub currency: String,
    /// The cash now (the paper role keeps it).
    pub cash: String,
    pub active: bool,
    /// Signals before this time (epoch ms) are not followed.
    pub follow_since: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
