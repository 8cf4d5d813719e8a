//! Paper trading in the database: strategies as stored rows, each one's account (cash and
//! entries), the trades, the equity per day, and the paper role's progress per series.
//! Decimals are stored as text, exactly.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tickwatch_schema::db::entity::{paper_equity, paper_position, paper_progress, paper_strategy};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::wire::Interval;

use crate::engine::{Account, Entry, ExitReason, OpenPosition, Trade};
use crate::error::{Error, Result};
use crate::strategy::Strategy;

/// The statuses of a `paper_positions` row.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const OPEN: &str = "open";
    pub const CLOSED: &str = "closed";
    pub const SKIPPED: &str = "skipped";
}

fn dec(field: &'static str, text: &str) -> Result<Decimal> {
    Decimal::from_str(text).map_err(|e| Error::Stored(format!("{field} `{text}`: {e}")))
}

fn dec_opt(field: &'static str, text: &Option<String>) -> Result<Decimal> {
    match text {
        Some(t) => dec(field, t),
        None => Err(Error::Stored(format!("{field} is missing"))),
    }
}

fn interval(text: &str) -> Result<Interval> {
    text.parse()
        .map_err(|e| Error::Stored(format!("interval `{text}`: {e}")))
}

/// The stored form of an exit reason (`stop_loss` …).
pub fn reason_text(reason: ExitReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn reason_from_text(text: &str) -> Option<ExitReason> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// A stored strategy as the engine runs it: the spec with the row's id, and what a paused
/// one follows (nothing new: its open positions still exit).
pub fn strategy_from_row(row: &paper_strategy::Model) -> Result<Strategy> {
    let mut strategy: Strategy = serde_json::from_str(&row.spec)
        .map_err(|e| Error::Stored(format!("paper strategy {}: {e}", row.id)))?;
    strategy.id = row.id;
    strategy.name = row.name.clone();
    strategy.since_ts = if row.active {
        row.follow_since
    } else {
        i64::MAX
    };
    Ok(strategy)
}

/// The spec stored for a strategy (its id and name live in their own columns).
pub fn spec_json(strategy: &Strategy) -> String {
    serde_json::to_string(strategy).unwrap_or_default()
}

/// Every stored strategy, with its account.
pub async fn load_strategies(
    db: &impl ConnectionTrait,
) -> Result<Vec<(paper_strategy::Model, Account)>> {
    let rows = paper_strategy::Entity::find()
        .order_by_asc(paper_strategy::Column::Id)
        .all(db)
        .await?;
    let held = paper_position::Entity::find()
        .filter(paper_position::Column::Status.is_in([status::PENDING, status::OPEN]))
        .order_by_asc(paper_position::Column::Id)
        .all(db)
        .await?;
    let mut entries: HashMap<i64, Vec<Entry>> = HashMap::new();
    for row in &held {
        match entry_from_row(row) {
            Ok(entry) => entries.entry(row.strategy_id).or_default().push(entry),
            // One unreadable row must not stop every strategy.
            Err(e) => {
                tracing::error!(strategy = row.strategy_id, entry = row.id, error = %e, "stored paper entry unreadable; left out")
            }
        }
    }
    rows.into_iter()
        .map(|row| {
            let account = Account {
                cash: dec("cash", &row.cash)?,
                entries: entries.remove(&row.id).unwrap_or_default(),
            };
            Ok((row, account))
        })
        .collect()
}

/// The strategies' ids and versions: what tells the role a strategy changed.
pub async fn strategy_versions(db: &impl ConnectionTrait) -> Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = paper_strategy::Entity::find()
        .select_only()
        .column(paper_strategy::Column::Id)
        .column(paper_strategy::Column::Version)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

fn entry_from_row(row: &paper_position::Model) -> Result<Entry> {
    let open = if row.status == status::OPEN {
        let entry_price = dec_opt("entry_price", &row.entry_price)?;
        Some(OpenPosition {
            quantity: dec_opt("quantity", &row.quantity)?,
            entry_ts: row
                .entry_ts
                .ok_or_else(|| Error::Stored("entry_ts is missing".into()))?,
            entry_price,
            entry_fee: dec_opt("entry_fee", &row.entry_fee)?,
            highest: dec_opt("highest", &row.highest)?,
            bars: u32::try_from(row.bars).unwrap_or(0),
            exit_next_open: row.exit_next_open.as_deref().and_then(reason_from_text),
            mark: match &row.mark_price {
                Some(m) => dec("mark_price", m)?,
                None => entry_price,
            },
        })
    } else {
        None
    };
    Ok(Entry {
        venue: row.venue.clone(),
        symbol: row.symbol.clone(),
        signal_id: row.signal_id.clone(),
        kind: row.signal_kind.clone(),
        interval: interval(&row.interval)?,
        signal_ts: row.signal_ts,
        open,
    })
}

/// What one write of the role stores.
#[derive(Debug, Default)]
pub struct Changes {
    /// Entries held now (pending or open), by strategy.
    pub held: Vec<(i64, Entry)>,
    pub closed: Vec<Trade>,
    /// Followed signals that bought nothing: strategy, entry (pending form), why.
    pub skipped: Vec<(i64, Entry, String)>,
    /// Each touched strategy's cash, equity and the market day to book the equity on.
    pub accounts: Vec<(i64, Decimal, Decimal, String)>,
    /// Each series' last candle gone through.
    pub progress: Vec<(String, String, Interval, i64)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
            && self.closed.is_empty()
            && self.skipped.is_empty()
            && self.accounts.is_empty()
            && self.progress.is_empty()
    }
}

fn base_row(
    strategy_id: i64,
    entry: &Entry,
    status: &str,
    now: i64,
) -> paper_position::ActiveModel {
    paper_position::ActiveModel {
        strategy_id: Set(strategy_id),
        signal_id: Set(entry.signal_id.clone()),
        signal_kind: Set(entry.kind.clone()),
        venue: Set(entry.venue.clone()),
        symbol: Set(entry.symbol.clone()),
        interval: Set(entry.interval.as_str().to_string()),
        status: Set(status.to_string()),
        signal_ts: Set(entry.signal_ts),
        quantity: Set(None),
        entry_ts: Set(None),
        entry_price: Set(None),
        entry_fee: Set(None),
        highest: Set(None),
        bars: Set(0),
        exit_next_open: Set(None),
        mark_price: Set(None),
        exit_ts: Set(None),
        exit_price: Set(None),
        exit_reason: Set(None),
        fees: Set(None),
        pnl: Set(None),
        return_pct: Set(None),
        note: Set(None),
        opened_published: Set(false),
        closed_published: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

fn held_row(strategy_id: i64, entry: &Entry, now: i64) -> paper_position::ActiveModel {
    let Some(open) = &entry.open else {
        return base_row(strategy_id, entry, status::PENDING, now);
    };
    let mut row = base_row(strategy_id, entry, status::OPEN, now);
    row.quantity = Set(Some(open.quantity.to_string()));
    row.entry_ts = Set(Some(open.entry_ts));
    row.entry_price = Set(Some(open.entry_price.to_string()));
    row.entry_fee = Set(Some(open.entry_fee.to_string()));
    row.highest = Set(Some(open.highest.to_string()));
    row.bars = Set(i32::try_from(open.bars).unwrap_or(i32::MAX));
    row.exit_next_open = Set(open.exit_next_open.map(reason_text));
    row.mark_price = Set(Some(open.mark.to_string()));
    row
}

fn closed_row(trade: &Trade, now: i64) -> paper_position::ActiveModel {
    let entry = Entry {
        venue: trade.venue.clone(),
        symbol: trade.symbol.clone(),
        signal_id: trade.signal_id.clone(),
        kind: trade.signal_kind.clone(),
        interval: trade.interval,
        signal_ts: trade.signal_ts,
        open: None,
    };
    let mut row = base_row(trade.strategy_id, &entry, status::CLOSED, now);
    row.quantity = Set(Some(trade.quantity.to_string()));
    row.entry_ts = Set(Some(trade.entry_ts));
    row.entry_price = Set(Some(trade.entry_price.to_string()));
    row.bars = Set(i32::try_from(trade.bars).unwrap_or(i32::MAX));
    row.exit_ts = Set(Some(trade.exit_ts));
    row.exit_price = Set(Some(trade.exit_price.to_string()));
    row.exit_reason = Set(Some(reason_text(trade.exit_reason)));
    row.fees = Set(Some(trade.fees.to_string()));
    row.pnl = Set(Some(trade.pnl.to_string()));
    row.return_pct = Set(Some(trade.return_pct.to_string()));
    row
}

/// Stores a write's changes (in the caller's transaction). An entry is one row per
/// strategy and signal: a pending entry becomes open, then closed, in place.
pub async fn write(db: &impl ConnectionTrait, changes: &Changes) -> Result<()> {
    let now = now_ms();
    let key = [
        paper_position::Column::StrategyId,
        paper_position::Column::SignalId,
    ];
    let state_columns = [
        paper_position::Column::Status,
        paper_position::Column::Quantity,
        paper_position::Column::EntryTs,
        paper_position::Column::EntryPrice,
        paper_position::Column::EntryFee,
        paper_position::Column::Highest,
        paper_position::Column::Bars,
        paper_position::Column::ExitNextOpen,
        paper_position::Column::MarkPrice,
        paper_position::Column::UpdatedAt,
    ];
    // Only an entry still held moves on; a closed or skipped one stays as it ended.
    let held_only = || {
        Expr::col((paper_position::Entity, paper_position::Column::Status))
            .is_in([status::PENDING, status::OPEN])
    };
    for (strategy_id, entry) in &changes.held {
        paper_position::Entity::insert(held_row(*strategy_id, entry, now))
            .on_conflict(
                OnConflict::columns(key)
                    .update_columns(state_columns)
                    .action_and_where(held_only())
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await
            .or_else(ignore_not_inserted)?;
    }
    for trade in &changes.closed {
        paper_position::Entity::insert(closed_row(trade, now))
            .on_conflict(
                OnConflict::columns(key)
                    .update_columns([
                        paper_position::Column::Status,
                        paper_position::Column::Quantity,
                        paper_position::Column::EntryTs,
                        paper_position::Column::EntryPrice,
                        paper_position::Column::Bars,
                        paper_position::Column::ExitTs,
                        paper_position::Column::ExitPrice,
                        paper_position::Column::ExitReason,
                        paper_position::Column::Fees,
                        paper_position::Column::Pnl,
                        paper_position::Column::ReturnPct,
                        // What only an open position has is cleared: a closed row is the
                        // same whether it was stored open before or not.
                        paper_position::Column::Highest,
                        paper_position::Column::ExitNextOpen,
                        paper_position::Column::MarkPrice,
                        paper_position::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    for (strategy_id, entry, reason) in &changes.skipped {
        let mut row = base_row(*strategy_id, entry, status::SKIPPED, now);
        row.note = Set(Some(reason.clone()));
        // A pending entry stored by an earlier batch becomes the skipped one.
        paper_position::Entity::insert(row)
            .on_conflict(
                OnConflict::columns(key)
                    .update_columns([
                        paper_position::Column::Status,
                        paper_position::Column::Note,
                        paper_position::Column::UpdatedAt,
                    ])
                    .action_and_where(
                        Expr::col((paper_position::Entity, paper_position::Column::Status))
                            .eq(status::PENDING),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await
            .or_else(ignore_not_inserted)?;
    }
    for (strategy_id, cash, equity, day) in &changes.accounts {
        paper_strategy::Entity::update_many()
            .col_expr(
                paper_strategy::Column::Cash,
                sea_orm::sea_query::Expr::value(cash.to_string()),
            )
            .filter(paper_strategy::Column::Id.eq(*strategy_id))
            .exec(db)
            .await?;
        paper_equity::Entity::insert(paper_equity::ActiveModel {
            strategy_id: Set(*strategy_id),
            day: Set(day.clone()),
            equity: Set(equity.to_string()),
            cash: Set(cash.to_string()),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([paper_equity::Column::StrategyId, paper_equity::Column::Day])
                .update_columns([
                    paper_equity::Column::Equity,
                    paper_equity::Column::Cash,
                    paper_equity::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    for (venue, symbol, interval, last) in &changes.progress {
        paper_progress::Entity::insert(paper_progress::ActiveModel {
            venue: Set(venue.clone()),
            symbol: Set(symbol.clone()),
            interval: Set(interval.as_str().to_string()),
            last_open_ts: Set(*last),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                paper_progress::Column::Venue,
                paper_progress::Column::Symbol,
                paper_progress::Column::Interval,
            ])
            .update_columns([
                paper_progress::Column::LastOpenTs,
                paper_progress::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

fn ignore_not_inserted(e: sea_orm::DbErr) -> std::result::Result<u64, sea_orm::DbErr> {
    match e {
        sea_orm::DbErr::RecordNotInserted => Ok(0),
        other => Err(other),
    }
}

/// Where the role got in each series.
pub async fn load_progress(
    db: &impl ConnectionTrait,
) -> Result<HashMap<(String, String, Interval), i64>> {
    let rows = paper_progress::Entity::find().all(db).await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.venue.clone(), r.symbol.clone(), interval(&r.interval)?),
                r.last_open_ts,
            ))
        })
        .collect()
}

/// A stored closed trade as the engine's [`Trade`].
pub fn trade_from_row(row: &paper_position::Model) -> Result<Trade> {
    Ok(Trade {
        strategy_id: row.strategy_id,
        venue: row.venue.clone(),
        symbol: row.symbol.clone(),
        signal_id: row.signal_id.clone(),
        signal_kind: row.signal_kind.clone(),
        interval: interval(&row.interval)?,
        signal_ts: row.signal_ts,
        quantity: dec_opt("quantity", &row.quantity)?,
        entry_ts: row
            .entry_ts
            .ok_or_else(|| Error::Stored("entry_ts is missing".into()))?,
        entry_price: dec_opt("entry_price", &row.entry_price)?,
        exit_ts: row
            .exit_ts
            .ok_or_else(|| Error::Stored("exit_ts is missing".into()))?,
        exit_price: dec_opt("exit_price", &row.exit_price)?,
        exit_reason: row
            .exit_reason
            .as_deref()
            .and_then(reason_from_text)
            .ok_or_else(|| Error::Stored("exit_reason is missing".into()))?,
        fees: dec_opt("fees", &row.fees)?,
        pnl: dec_opt("pnl", &row.pnl)?,
        return_pct: dec_opt("return_pct", &row.return_pct)?,
        bars: u32::try_from(row.bars).unwrap_or(0),
    })
}
