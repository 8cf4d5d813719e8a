//! Each user's TradingView relay URL: the SHA-256 of its secret (the secret itself is shown
//! once, when made), unique so a post finds its user.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("users")
                .add_column(string_null("relay_token_hash"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("users_relay_token_hash")
                .table("users")
                .col("relay_token_hash")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("users_relay_token_hash")
                .table("users")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("users")
                .drop_column("relay_token_hash")
                .to_owned(),
        )
        .await
    }
}
