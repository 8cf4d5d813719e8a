//! The web dashboard's sign-in: `web_sessions` holds one-time sign-in links (`kind =
//! 'link'`, minutes long, deleted when used) and browser sessions (`kind = 'session'`, the
//! cookie's token). Only a token's SHA-256 is stored, as for API keys. A session made from
//! an API key names the key and ends with it (revoking the key signs those browsers out).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("web_sessions")
                .col(big_integer("id").auto_increment().primary_key())
                .col(string("token_hash").unique_key())
                .col(string("kind"))
                .col(big_integer("user_id"))
                .col(big_integer_null("api_key_id"))
                .col(big_integer("created_at"))
                .col(big_integer("expires_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("web_sessions", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from("web_sessions", "api_key_id")
                        .to("api_keys", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("web_sessions_user_id")
                .table("web_sessions")
                .col("user_id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("web_sessions_expires_at")
                .table("web_sessions")
                .col("expires_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("web_sessions").to_owned())
            .await
    }
}
