//! What the engine hands the adapter: a rule's [`Firing`] and a subscription's
//! [`SubscriptionHit`], with the wire message each becomes.

use std::sync::Arc;

use rust_decimal::Decimal;
use tickwatch_schema::rule::{Condition, Trigger};
use tickwatch_schema::wire::{AlertTriggered, Grade, SignalKind};
use uuid::Uuid;

use crate::template::{self, Locale};

/// Which way the price went through the level that fired the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One rule fired on one price. Everything the adapter stores, publishes and renders.
///
/// `id` is deterministic: `deterministic_id(ts, ["alert", rule_id, trade_id])` when the
/// triggering tick has a trade id, else `deterministic_id(ts, ["alert", rule_id, ts,
/// price])` (price normalised, e.g. `65000.5`). A redelivered tick therefore yields the same
/// id, and the unique key on `alert_events.id` makes the effect exactly-once.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub id: Uuid,
    pub rule_id: i64,
    /// The rule version that fired: the adapter disables a `once` rule with
    /// `… WHERE id = rule_id AND version = rule_version` so a concurrent edit wins.
    pub rule_version: i64,
    pub user_id: i64,
    pub venue: Arc<str>,
    pub symbol: Arc<str>,
    pub condition: Condition,
    pub direction: Direction,
    /// The reported threshold: the threshold, the channel bound crossed, or the percentage.
    pub threshold: Decimal,
    /// Channel bounds (channel conditions only).
    pub low: Option<Decimal>,
    pub high: Option<Decimal>,
    /// Moving conditions only: the rule's percentage (`moving_*_pct`), window, and the
    /// change measured — in percent (`change_pct`), or in price units (`change`, for
    /// `moving_up` / `moving_down`, whose amount is the `threshold`).
    pub pct: Option<Decimal>,
    pub window_s: Option<u32>,
    pub change_pct: Option<Decimal>,
    pub change: Option<Decimal>,
    /// Expression rules: the clauses with the values they read, e.g.
    /// `rsi(14,1h) 28.41 < 30`.
    pub expression: Option<String>,
    /// The price that fired the rule and its time (epoch ms).
    pub price: Decimal,
    pub ts: i64,
    /// The rule's interval (bar rules, expressions): what its chart shows.
    pub interval: Option<tickwatch_schema::wire::Interval>,
    pub trigger: Trigger,
    /// `once` rules: disable the rule in the same transaction that stores this event (the
    /// engine has already dropped it from the book).
    pub disable_rule: bool,
    /// The rule's own message template, if it has one.
    pub template: Option<Arc<str>>,
}

impl Firing {
    /// The `AlertTriggered` message for `tw.alerts` (routing key `alert.<venue>.<symbol>`).
    pub fn to_wire(&self) -> AlertTriggered {
        AlertTriggered {
            id: self.id,
            rule_id: self.rule_id,
            user_id: self.user_id,
            venue: self.venue.to_string(),
            symbol: self.symbol.to_string(),
            condition: self.condition,
            threshold: self.threshold,
            price: self.price,
            ts: self.ts,
        }
    }

    /// The notification text: the rule's template, or the default one for `lang`.
    pub fn message(&self, locale: Locale) -> String {
        template::render_firing(locale, self)
    }

    /// The notification's dedupe key (the notifier sends a key once).
    /// The chart its notification carries: the rule's interval (hourly candles for a
    /// rule without one), the level crossed, the firing's candle.
    pub fn chart(&self) -> tickwatch_schema::wire::ChartRequest {
        tickwatch_schema::wire::ChartRequest {
            venue: self.venue.to_string(),
            symbol: self.symbol.to_string(),
            interval: self.interval.unwrap_or(crate::adapter::CHART_INTERVAL),
            level: (self.expression.is_none()).then_some(self.threshold),
            marker_ts: Some(self.ts),
            bars: crate::adapter::CHART_BARS,
        }
    }

    pub fn dedupe_key(&self) -> String {
        format!("alert:{}", self.id)
    }
}

impl From<&Firing> for AlertTriggered {
    fn from(firing: &Firing) -> Self {
        firing.to_wire()
    }
}

/// A signal matched one of a user's subscriptions.
///
/// `id` is `deterministic_id(signal.ts, ["signal-sub", subscription_id, signal.id])`, so a
/// redelivered signal maps to the same notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionHit {
    pub id: Uuid,
    pub subscription_id: i64,
    pub user_id: i64,
    pub signal_id: Uuid,
    pub kind: SignalKind,
    pub grade: Grade,
}

impl SubscriptionHit {
    /// The notification's dedupe key.
    pub fn dedupe_key(&self) -> String {
        format!("signal:{}", self.id)
    }
}
