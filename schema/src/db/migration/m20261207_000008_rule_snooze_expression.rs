//! Two columns of `alert_rules`:
//! - `snoozed_until`: when a snoozed rule (inactive) resumes by itself (epoch ms); pausing or
//!   resuming a rule by hand clears it;
//! - `expression`: the clauses of an indicator or multi-condition rule
//!   (`condition = 'expression'`), in canonical form.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .add_column(big_integer_null("snoozed_until"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .add_column(text_null("expression"))
                .to_owned(),
        )
        .await?;
        // The bots' sweep for snoozes whose time is up reads by it.
        m.create_index(
            Index::create()
                .name("idx_alert_rules_snoozed_until")
                .table("alert_rules")
                .col("snoozed_until")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_alert_rules_snoozed_until")
                .table("alert_rules")
                .to_owned(),
        )
        .await?;
        for column in ["expression", "snoozed_until"] {
            m.alter_table(
                Table::alter()
                    .table("alert_rules")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
