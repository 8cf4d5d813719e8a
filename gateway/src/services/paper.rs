//! Paper strategies (모의매매): a user's own, like alert rules — another user's strategy is
//! "not found". The paper role runs what is stored here (it picks a change up within a
//! second); this side writes the rules, the role writes the account (cash, entries,
//! trades, equity).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tickwatch_paper::store::{self, status};
use tickwatch_paper::{Fees, Sizing, Strategy, Summary, summarize};
use tickwatch_schema::db::entity::{paper_equity, paper_position, paper_strategy};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::wire::{Grade, SignalKind};

use super::{Page, Services};
use crate::error::{Error, Result};

/// The most paper strategies one user may have.
pub const MAX_PAPER_STRATEGIES_PER_USER: u64 = 200;

/// A stored strategy with its account's cash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyView {
    pub strategy: Strategy,
    pub active: bool,
    pub cash: Decimal,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change to a strategy: `None` leaves a field; `Some(None)` removes an optional one.
/// The starting balance and currency stay (the account started with them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrategyPatch {
    pub name: Option<String>,
    pub kinds: Option<Vec<SignalKind>>,
    pub min_grade: Option<Grade>,
    pub venues: Option<Vec<String>>,
    pub symbols: Option<Vec<String>>,
    pub sizing: Option<Sizing>,
    pub take_profit_pct: Option<Option<Decimal>>,
    pub stop_loss_pct: Option<Option<Decimal>>,
    pub trailing_stop_pct: Option<Option<Decimal>>,
    pub max_bars: Option<Option<u32>>,
    pub exit_on_opposite: Option<bool>,
    pub fees: Option<Option<Fees>>,
    /// `false` pauses it: it follows no new signal; its open positions still exit.
    pub active: Option<bool>,
}

/// A strategy's statistics: all its closed trades, and per signal kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperSummary {
    pub view: StrategyView,
    /// Cash plus the open positions at their last close.
    pub equity: Decimal,
    pub open_positions: usize,
    pub overall: Summary,
    pub by_kind: Vec<(String, Summary)>,
}

fn invalid(e: tickwatch_paper::Error) -> Error {
    match e {
        tickwatch_paper::Error::Invalid { field, reason } => Error::invalid(field, reason),
        other => Error::Data(other.to_string()),
    }
}

fn to_view(row: &paper_strategy::Model) -> Result<StrategyView> {
    let mut strategy = store::strategy_from_row(row).map_err(|e| Error::Data(e.to_string()))?;
    strategy.since_ts = row.follow_since;
    Ok(StrategyView {
        strategy,
        active: row.active,
        cash: row
            .cash
            .parse()
            .map_err(|e| Error::Data(format!("paper strategy {} cash: {e}", row.id)))?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn decimal(text: &Option<String>) -> Option<Decimal> {
    text.as_deref().and_then(|t| t.parse().ok())
}

/// Lists without repeats, in the order given.
fn distinct<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl Services {
    async fn own_strategy(&self, user_id: i64, id: i64) -> Result<paper_strategy::Model> {
        paper_strategy::Entity::find_by_id(id)
            .filter(paper_strategy::Column::UserId.eq(user_id))
            .one(self.db())
            .await?
            .ok_or_else(|| Error::not_found(format!("paper strategy {id}")))
    }

    /// Stores a new strategy; it follows signals from now on.
    pub async fn create_paper_strategy(
        &self,
        user_id: i64,
        mut strategy: Strategy,
    ) -> Result<StrategyView> {
        strategy.kinds = distinct(strategy.kinds);
        strategy.venues = distinct(strategy.venues);
        strategy.symbols = distinct(strategy.symbols);
        strategy.id = 0;
        strategy.since_ts = 0;
        strategy.validate().map_err(invalid)?;
        let txn = self.lock_user(user_id).await?;
        let count = paper_strategy::Entity::find()
            .filter(paper_strategy::Column::UserId.eq(user_id))
            .count(&txn)
            .await?;
        if count >= MAX_PAPER_STRATEGIES_PER_USER {
            return Err(Error::Conflict(format!(
                "you have {count} paper strategies, the most allowed; remove some first"
            )));
        }
        let now = now_ms();
        let row = paper_strategy::ActiveModel {
            user_id: Set(user_id),
            name: Set(strategy.name.clone()),
            spec: Set(store::spec_json(&strategy)),
            starting_balance: Set(strategy.starting_balance.to_string()),
            currency: Set(strategy.currency.clone()),
            cash: Set(strategy.starting_balance.to_string()),
            active: Set(true),
            follow_since: Set(now),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        to_view(&row)
    }

    /// The user's strategies, oldest first.
    pub async fn list_paper_strategies(&self, user_id: i64) -> Result<Vec<StrategyView>> {
        paper_strategy::Entity::find()
            .filter(paper_strategy::Column::UserId.eq(user_id))
            .order_by_asc(paper_strategy::Column::Id)
            .all(self.db())
            .await?
            .iter()
            .map(to_view)
            .collect()
    }

    pub async fn get_paper_strategy(&self, user_id: i64, id: i64) -> Result<StrategyView> {
        to_view(&self.own_strategy(user_id, id).await?)
    }

    /// Changes a strategy's rules (its account stays). A change of what it follows counts
    /// from now: earlier signals are not followed again.
    pub async fn patch_paper_strategy(
        &self,
        user_id: i64,
        id: i64,
        patch: StrategyPatch,
    ) -> Result<StrategyView> {
        let row = self.own_strategy(user_id, id).await?;
        let mut strategy =
            store::strategy_from_row(&row).map_err(|e| Error::Data(e.to_string()))?;
        // What it follows, as sets: the same kinds in another order change nothing.
        let follows = |s: &Strategy| {
            (
                s.kinds
                    .iter()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>(),
                s.min_grade,
                s.venues
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>(),
                s.symbols
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>(),
            )
        };
        let before = follows(&strategy);
        if let Some(name) = patch.name {
            strategy.name = name;
        }
        if let Some(kinds) = patch.kinds {
            strategy.kinds = distinct(kinds);
        }
        if let Some(grade) = patch.min_grade {
            strategy.min_grade = grade;
        }
        if let Some(venues) = patch.venues {
            strategy.venues = distinct(venues);
        }
        if let Some(symbols) = patch.symbols {
            strategy.symbols = distinct(symbols);
        }
        if let Some(sizing) = patch.sizing {
            strategy.sizing = sizing;
        }
        if let Some(v) = patch.take_profit_pct {
            strategy.take_profit_pct = v;
        }
        if let Some(v) = patch.stop_loss_pct {
            strategy.stop_loss_pct = v;
        }
        if let Some(v) = patch.trailing_stop_pct {
            strategy.trailing_stop_pct = v;
        }
        if let Some(v) = patch.max_bars {
            strategy.max_bars = v;
        }
        if let Some(v) = patch.exit_on_opposite {
            strategy.exit_on_opposite = v;
        }
        if let Some(v) = patch.fees {
            strategy.fees = v;
        }
        strategy.since_ts = 0;
        strategy.validate().map_err(invalid)?;
        let after = follows(&strategy);
        let now = now_ms();
        let active = patch.active.unwrap_or(row.active);
        // Resuming, or following something else, starts from now.
        let follow_since = if before != after || (active && !row.active) {
            now
        } else {
            row.follow_since
        };
        let result = paper_strategy::Entity::update_many()
            .col_expr(
                paper_strategy::Column::Name,
                Expr::value(strategy.name.clone()),
            )
            .col_expr(
                paper_strategy::Column::Spec,
                Expr::value(store::spec_json(&strategy)),
            )
            .col_expr(paper_strategy::Column::Active, Expr::value(active))
            .col_expr(
                paper_strategy::Column::FollowSince,
                Expr::value(follow_since),
            )
            .col_expr(
                paper_strategy::Column::Version,
                Expr::value(row.version + 1),
            )
            .col_expr(paper_strategy::Column::UpdatedAt, Expr::value(now))
            .filter(paper_strategy::Column::Id.eq(id))
            .filter(paper_strategy::Column::Version.eq(row.version))
            .exec(self.db())
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Conflict(
                "the strategy changed meanwhile; try again".into(),
            ));
        }
        self.get_paper_strategy(user_id, id).await
    }

    /// Removes a strategy with its positions, trades and equity.
    pub async fn delete_paper_strategy(&self, user_id: i64, id: i64) -> Result<()> {
        self.own_strategy(user_id, id).await?;
        // One transaction, children first: SQLite may run without foreign keys enforced,
        // and the paper role must not find half a strategy.
        let txn = self.db().begin().await?;
        paper_position::Entity::delete_many()
            .filter(paper_position::Column::StrategyId.eq(id))
            .exec(&txn)
            .await?;
        paper_equity::Entity::delete_many()
            .filter(paper_equity::Column::StrategyId.eq(id))
            .exec(&txn)
            .await?;
        paper_strategy::Entity::delete_many()
            .filter(paper_strategy::Column::Id.eq(id))
            .filter(paper_strategy::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A strategy's pending entries and open positions.
    pub async fn paper_positions(
        &self,
        user_id: i64,
        id: i64,
    ) -> Result<Vec<paper_position::Model>> {
        self.own_strategy(user_id, id).await?;
        Ok(paper_position::Entity::find()
            .filter(paper_position::Column::StrategyId.eq(id))
            .filter(paper_position::Column::Status.is_in([status::PENDING, status::OPEN]))
            .order_by_asc(paper_position::Column::Id)
            .all(self.db())
            .await?)
    }

    /// A strategy's closed trades, newest first, `limit` at a time after the cursor (the
    /// last id of the page before).
    pub async fn paper_trades(
        &self,
        user_id: i64,
        id: i64,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Page<paper_position::Model>> {
        self.own_strategy(user_id, id).await?;
        let mut query = paper_position::Entity::find()
            .filter(paper_position::Column::StrategyId.eq(id))
            .filter(paper_position::Column::Status.eq(status::CLOSED))
            .order_by_desc(paper_position::Column::Id)
            .limit(limit + 1);
        if let Some(before) = before {
            query = query.filter(paper_position::Column::Id.lt(before));
        }
        let rows = query.all(self.db()).await?;
        Ok(Page::of(rows, limit, |r| r.id.to_string()))
    }

    /// A strategy's equity at the end of each market day it traded, oldest first.
    pub async fn paper_equity(&self, user_id: i64, id: i64) -> Result<Vec<paper_equity::Model>> {
        self.own_strategy(user_id, id).await?;
        Ok(paper_equity::Entity::find()
            .filter(paper_equity::Column::StrategyId.eq(id))
            .order_by_asc(paper_equity::Column::Day)
            .all(self.db())
            .await?)
    }

    /// A strategy's statistics over its closed trades, overall and per signal kind.
    pub async fn paper_summary(&self, user_id: i64, id: i64) -> Result<PaperSummary> {
        let row = self.own_strategy(user_id, id).await?;
        let view = to_view(&row)?;
        let rows = paper_position::Entity::find()
            .filter(paper_position::Column::StrategyId.eq(id))
            .filter(paper_position::Column::Status.is_in([status::OPEN, status::CLOSED]))
            .all(self.db())
            .await?;
        let mut trades = Vec::new();
        let mut equity = view.cash;
        let mut open_positions = 0;
        for r in &rows {
            if r.status == status::CLOSED {
                trades.push(store::trade_from_row(r).map_err(|e| Error::Data(e.to_string()))?);
            } else {
                open_positions += 1;
                let quantity = decimal(&r.quantity).unwrap_or_default();
                let mark = decimal(&r.mark_price)
                    .or_else(|| decimal(&r.entry_price))
                    .unwrap_or_default();
                equity += quantity * mark;
            }
        }
        let start = view.strategy.starting_balance;
        let mut kinds: BTreeMap<String, Vec<tickwatch_paper::Trade>> = BTreeMap::new();
        for t in &trades {
            kinds
                .entry(t.signal_kind.clone())
                .or_default()
                .push(t.clone());
        }
        Ok(PaperSummary {
            overall: summarize(&trades, start),
            by_kind: kinds
                .into_iter()
                .map(|(kind, trades)| (kind, summarize(&trades, start)))
                .collect(),
            equity,
            open_positions,
            view,
        })
    }
}
