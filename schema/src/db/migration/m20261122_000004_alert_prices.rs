//! The last price each symbol's alert rules were evaluated at, saved by the alerts consumer
//! every second and at shutdown: a restarted engine compares the next price against it, so
//! a crossing during the restart is not missed.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("alert_prices")
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("price"))
                .col(big_integer("ts"))
                .primary_key(Index::create().col("venue").col("symbol"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("alert_prices").to_owned())
            .await
    }
}
