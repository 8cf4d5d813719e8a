//! Summary statistics of a strategy's trades: how many, how often they won, what they
//! returned, profit factor, the deepest drawdown of the equity after each trade, and how
//! much of the time money was in the market.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::Trade;

/// The summary of a set of trades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub trades: usize,
    pub wins: usize,
    /// Percent of trades that made money after fees.
    pub win_rate_pct: Decimal,
    /// Mean of the trades' returns, percent.
    pub average_return_pct: Decimal,
    /// Gross profit over gross loss (`None` without a losing trade).
    pub profit_factor: Option<Decimal>,
    /// The deepest fall of the equity (starting balance plus closed trades' profits, taken
    /// after each trade in exit order) from its peak, percent.
    pub max_drawdown_pct: Decimal,
    /// Total profit after fees, and as a share of the starting balance (percent).
    pub net_profit: Decimal,
    pub total_return_pct: Decimal,
    /// Percent of the span from the first entry to the last exit during which at least one
    /// position was open.
    pub exposure_pct: Decimal,
}

/// Summarises `trades` of a strategy that started with `starting_balance`.
pub fn summarize(trades: &[Trade], starting_balance: Decimal) -> Summary {
    let hundred = Decimal::ONE_HUNDRED;
    let count = trades.len();
    let wins = trades.iter().filter(|t| t.pnl > Decimal::ZERO).count();
    let ratio = |part: Decimal, whole: Decimal| {
        if whole.is_zero() {
            Decimal::ZERO
        } else {
            (part / whole * hundred).round_dp(2)
        }
    };
    let gross_profit: Decimal = trades.iter().map(|t| t.pnl.max(Decimal::ZERO)).sum();
    let gross_loss: Decimal = trades.iter().map(|t| (-t.pnl).max(Decimal::ZERO)).sum();
    let net: Decimal = trades.iter().map(|t| t.pnl).sum();
    let mut by_exit: Vec<&Trade> = trades.iter().collect();
    by_exit.sort_by_key(|t| (t.exit_ts, t.entry_ts));
    let (mut equity, mut peak, mut deepest) = (starting_balance, starting_balance, Decimal::ZERO);
    for t in &by_exit {
        equity += t.pnl;
        peak = peak.max(equity);
        if peak > Decimal::ZERO {
            deepest = deepest.max((peak - equity) / peak);
        }
    }
    // Time in the market: the union of the holding spans.
    let mut spans: Vec<(i64, i64)> = trades.iter().map(|t| (t.entry_ts, t.exit_ts)).collect();
    spans.sort_unstable();
    let (mut covered, mut end) = (0_i64, i64::MIN);
    for (from, to) in &spans {
        let from = (*from).max(end);
        if *to > from {
            covered += to - from;
        }
        end = end.max(*to);
    }
    let span = match (spans.first(), spans.iter().map(|s| s.1).max()) {
        (Some(first), Some(last)) => last - first.0,
        _ => 0,
    };
    Summary {
        trades: count,
        wins,
        win_rate_pct: ratio(Decimal::from(wins), Decimal::from(count)),
        average_return_pct: if count == 0 {
            Decimal::ZERO
        } else {
            (trades.iter().map(|t| t.return_pct).sum::<Decimal>() / Decimal::from(count))
                .round_dp(4)
        },
        profit_factor: (gross_loss > Decimal::ZERO)
            .then(|| (gross_profit / gross_loss).round_dp(4)),
        max_drawdown_pct: (deepest * hundred).round_dp(2),
        net_profit: net,
        total_return_pct: ratio(net, starting_balance),
        exposure_pct: ratio(Decimal::from(covered), Decimal::from(span)),
    }
}
