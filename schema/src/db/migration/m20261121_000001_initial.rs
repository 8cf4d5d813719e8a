//! The first schema: every table of tickwatch v1.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

fn index(
    name: &str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for col in cols {
        stmt.col(*col);
    }
    if unique {
        stmt.unique();
    }
    stmt.to_owned()
}

const TABLES: [&str; 12] = [
    "users",
    "api_keys",
    "symbols",
    "alert_rules",
    "subscriptions",
    "alert_events",
    "signals",
    "candles",
    "latest_prices",
    "notifications",
    "processed_messages",
    "settings",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("users")
                .col(big_pk_auto("id"))
                .col(string("name"))
                .col(big_integer_null("telegram_chat_id").unique_key())
                .col(string("language").default("en"))
                .col(boolean("active").default(true))
                .col(string("role").default("user"))
                .col(text("prefs").default("{}"))
                .col(text_null("paused_reason"))
                .col(boolean("demo").default(false))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("api_keys")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string("key_hash").unique_key())
                .col(string("prefix"))
                .col(big_integer("created_at"))
                .col(big_integer_null("last_used_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("api_keys", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("symbols")
                .col(big_pk_auto("id"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("name"))
                .col(text("aliases").default(""))
                .col(string("market"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "symbols_venue_symbol",
            "symbols",
            &["venue", "symbol"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("alert_rules")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("condition"))
                .col(string_null("threshold"))
                .col(string_null("low"))
                .col(string_null("high"))
                .col(string_null("pct"))
                .col(big_integer_null("window_s"))
                .col(string("trigger"))
                .col(string_null("interval"))
                .col(big_integer("cooldown_s").default(0))
                .col(big_integer_null("expires_at"))
                .col(string_null("hysteresis_pct"))
                .col(text_null("template"))
                .col(boolean("active").default(true))
                .col(big_integer("version").default(1))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .col(big_integer("fired_count").default(0))
                .col(big_integer_null("last_fired_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("alert_rules", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_rules_user",
            "alert_rules",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "alert_rules_symbol",
            "alert_rules",
            &["venue", "symbol"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("subscriptions")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string("kind"))
                .col(string_null("symbol"))
                .col(string("min_grade").default("D"))
                .col(boolean("active").default(true))
                .col(big_integer("version").default(1))
                .col(big_integer("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("subscriptions", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "subscriptions_user",
            "subscriptions",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("alert_events")
                .col(string("id").primary_key())
                .col(big_integer("rule_id"))
                .col(big_integer("user_id"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("condition"))
                .col(string("threshold"))
                .col(string("price"))
                .col(big_integer("ts"))
                .col(text("text"))
                .col(boolean("published").default(false))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_events_rule",
            "alert_events",
            &["rule_id", "ts"],
            false,
        ))
        .await?;
        m.create_index(index(
            "alert_events_unpublished",
            "alert_events",
            &["published"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("signals")
                .col(string("id").primary_key())
                .col(string("kind"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("interval"))
                .col(big_integer("ts"))
                .col(string("price"))
                .col(integer("score"))
                .col(string("grade"))
                .col(text("details").default("{}"))
                .col(double_null("ret_1"))
                .col(double_null("ret_5"))
                .col(double_null("ret_20"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "signals_symbol_ts",
            "signals",
            &["symbol", "ts"],
            false,
        ))
        .await?;
        m.create_index(index("signals_kind_ts", "signals", &["kind", "ts"], false))
            .await?;
        m.create_table(
            Table::create()
                .table("candles")
                .col(big_pk_auto("id"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("interval"))
                .col(big_integer("open_ts"))
                .col(string("open"))
                .col(string("high"))
                .col(string("low"))
                .col(string("close"))
                .col(string("volume"))
                .col(big_integer_null("trades"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "candles_key",
            "candles",
            &["venue", "symbol", "interval", "open_ts"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("latest_prices")
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("price"))
                .col(big_integer("ts"))
                .primary_key(Index::create().col("venue").col("symbol"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("notifications")
                .col(string("id").primary_key())
                .col(string("dedupe_key").unique_key())
                .col(big_integer("chat_id"))
                .col(string("kind"))
                .col(text("text"))
                .col(string("status"))
                .col(integer("attempts").default(0))
                .col(text_null("last_error"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .col(big_integer_null("sent_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("processed_messages")
                .col(string("consumer"))
                .col(string("message_id"))
                .col(big_integer("processed_at"))
                .primary_key(Index::create().col("consumer").col("message_id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("settings")
                .col(string("key").primary_key())
                .col(text("value"))
                .col(big_integer("updated_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES.iter().rev() {
            m.drop_table(Table::drop().table(*table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
