//! What the alerts role reports, as typed events: each one logs and counts itself, and the
//! metric names are written here only (the Grafana dashboard and the alert rules use them).

use crate::firing::Firing;

/// Firings published (a redelivery's republish of a stored firing is not counted).
pub const ALERTS_FIRED: &str = "tw_alerts_fired_total";
/// Active rules in the book.
pub const RULEBOOK_RULES: &str = "tw_rulebook_rules";
/// Active signal subscriptions in the book.
pub const RULEBOOK_SUBSCRIPTIONS: &str = "tw_rulebook_subscriptions";

/// The alerts role started: the firing counter exists from now on, at zero.
#[derive(Debug)]
pub struct AlertsStarted;

impl AlertsStarted {
    pub fn emit(&self) {
        metrics::counter!(ALERTS_FIRED).increment(0);
    }
}

/// A rule fired and its firing is about to be published (log it inside the firing's span).
#[derive(Debug)]
pub struct AlertFired<'a>(pub &'a Firing);

impl AlertFired<'_> {
    pub fn emit(&self) {
        let f = self.0;
        tracing::info!(rule = f.rule_id, user = f.user_id, symbol = %f.symbol, condition = f.condition.as_str(), price = %f.price, "alert fired");
        metrics::counter!(ALERTS_FIRED).increment(1);
    }
}

/// The book's size after a load or a change.
#[derive(Debug)]
pub struct RuleBookSize {
    pub rules: usize,
    pub subscriptions: usize,
}

impl RuleBookSize {
    pub fn emit(&self) {
        metrics::gauge!(RULEBOOK_RULES).set(self.rules as f64);
        metrics::gauge!(RULEBOOK_SUBSCRIPTIONS).set(self.subscriptions as f64);
    }
}
