//! When a snoozed alert rule resumes by itself (epoch ms): a snoozed rule is inactive until
//! then. Pausing or resuming a rule by hand clears it.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .add_column(big_integer_null("snoozed_until"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .drop_column("snoozed_until")
                .to_owned(),
        )
        .await
    }
}
