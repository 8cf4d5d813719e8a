//! The daily digest: `users.digest_at` (the local time of day, `HH:MM`, a user gets it;
//! `NULL`: off) and `digests`, one row per user and local day — the database's guard that
//! a digest goes out once a day, however many bots run the schedule.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("users")
                .add_column(string_null("digest_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("digests")
                .col(big_integer("user_id"))
                // The user's local day, `YYYY-MM-DD`.
                .col(string("day"))
                .col(text("text"))
                .col(boolean("published").default(false))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("user_id").col("day"))
                .foreign_key(
                    ForeignKey::create()
                        .from("digests", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("digests").to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table("users")
                .drop_column("digest_at")
                .to_owned(),
        )
        .await
    }
}
