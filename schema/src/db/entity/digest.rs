//! A user's daily digest of one local day: stored before it is published, so it goes out
//! once whatever runs the schedule.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "digests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    /// `YYYY-MM-DD` in the user's time zone.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    pub text: String,
    pub published: bool,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
