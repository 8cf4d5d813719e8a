//! The symbol universe: imported symbols can be delisted, and stay (their rules keep working
//! on whatever data still arrives) but are marked inactive.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("symbols")
                .add_column(boolean("active").default(true))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("symbols")
                .drop_column("active")
                .to_owned(),
        )
        .await
    }
}
