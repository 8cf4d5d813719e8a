//! How far the signals consumer got in each candle series, so a restart warms its engine up
//! from exactly the candles it had already processed.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("signal_progress")
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("interval"))
                .col(big_integer("last_open_ts"))
                .col(big_integer("updated_at"))
                .primary_key(Index::create().col("venue").col("symbol").col("interval"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("signal_progress").to_owned())
            .await
    }
}
