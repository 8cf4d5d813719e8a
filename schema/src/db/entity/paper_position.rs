//! One followed signal of a paper strategy: a pending entry, an open position, a closed
//! trade, or an entry skipped (with why). Unique per strategy and signal.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "paper_positions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub strategy_id: i64,
    pub signal_id: String,
    pub signal_kind: String,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    /// `pending`, `open`, `closed` or `skipped`.
    pub status: String,
    /// The followed signal's time: a pending entry buys at the first open at or after it.
    pub signal_ts: i64,
    pub quantity: Option<String>,
    pub entry_ts: Option<i64>,
    pub entry_price: Option<String>,
    pub entry_fee: Option<String>,
    /// The highest high since the entry (the trailing stop's reference).
    pub highest: Option<String>,
    pub bars: i32,
    /// Set when the position sells at the next open (`next_open`, `opposite_signal`).
    pub exit_next_open: Option<String>,
    /// The symbol's last close the position was valued at.
    pub mark_price: Option<String>,
    pub exit_ts: Option<i64>,
    pub exit_price: Option<String>,
    pub exit_reason: Option<String>,
    pub fees: Option<String>,
    pub pnl: Option<String>,
    pub return_pct: Option<String>,
    /// Why an entry was skipped.
    pub note: Option<String>,
    pub opened_published: bool,
    pub closed_published: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
