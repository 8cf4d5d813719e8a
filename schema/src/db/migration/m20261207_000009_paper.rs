//! Paper trading (모의매매): a user's strategies, each one's simulated entries (pending,
//! open, closed or skipped — one row per followed signal, unique per strategy and signal,
//! so a redelivered signal never enters twice), its equity per day, and how far the paper
//! role got in each candle series.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("paper_strategies")
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                .col(string("name"))
                // The strategy's rules as JSON (`tickwatch_paper::Strategy` without its id).
                .col(text("spec"))
                .col(string("starting_balance"))
                .col(string("currency"))
                .col(string("cash"))
                .col(boolean("active").default(true))
                // Signals before this time are not followed (creation, or the last change of
                // what it follows).
                .col(big_integer("follow_since"))
                .col(big_integer("version").default(1))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("paper_strategies", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_paper_strategies_user")
                .table("paper_strategies")
                .col("user_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("paper_positions")
                .col(big_pk_auto("id"))
                .col(big_integer("strategy_id"))
                .col(string("signal_id"))
                .col(string("signal_kind"))
                .col(string("venue"))
                .col(string("symbol"))
                .col(string("interval"))
                // `pending`, `open`, `closed` or `skipped`.
                .col(string("status"))
                .col(big_integer("signal_ts"))
                .col(string_null("quantity"))
                .col(big_integer_null("entry_ts"))
                .col(string_null("entry_price"))
                .col(string_null("entry_fee"))
                .col(string_null("highest"))
                .col(integer("bars").default(0))
                .col(string_null("exit_next_open"))
                .col(string_null("mark_price"))
                .col(big_integer_null("exit_ts"))
                .col(string_null("exit_price"))
                .col(string_null("exit_reason"))
                .col(string_null("fees"))
                .col(string_null("pnl"))
                .col(string_null("return_pct"))
                .col(text_null("note"))
                // Whether the opening and the closing message went out (an outbox).
                .col(boolean("opened_published").default(false))
                .col(boolean("closed_published").default(false))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("paper_positions", "strategy_id")
                        .to("paper_strategies", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_paper_positions_signal")
                .table("paper_positions")
                .col("strategy_id")
                .col("signal_id")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_paper_positions_status")
                .table("paper_positions")
                .col("strategy_id")
                .col("status")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("paper_equity")
                .col(big_integer("strategy_id"))
                // The market's day (`YYYY-MM-DD`, KRX in Seoul time).
                .col(string("day"))
                .col(string("equity"))
                .col(string("cash"))
                .col(big_integer("updated_at"))
                .primary_key(Index::create().col("strategy_id").col("day"))
                .foreign_key(
                    ForeignKey::create()
                        .from("paper_equity", "strategy_id")
                        .to("paper_strategies", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("paper_progress")
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
        for table in [
            "paper_progress",
            "paper_equity",
            "paper_positions",
            "paper_strategies",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
