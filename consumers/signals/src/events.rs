//! What the signals role reports, as typed events: each one logs and counts itself, and the
//! metric names are written here only.

use tickwatch_schema::wire::Signal;

/// Signals published, by kind.
pub const SIGNALS_EMITTED: &str = "tw_signals_emitted_total";

/// The signals role started: a series per kind exists from now on, at zero, so a
/// dashboard shows 0 for a kind that has not fired yet.
#[derive(Debug)]
pub struct SignalsStarted;

impl SignalsStarted {
    pub fn emit(&self) {
        for kind in tickwatch_schema::wire::SignalKind::ALL {
            metrics::counter!(SIGNALS_EMITTED, "kind" => kind.as_str()).increment(0);
        }
    }
}

/// A signal fired and is about to be published (log it inside its candle's span).
#[derive(Debug)]
pub struct SignalEmitted<'a>(pub &'a Signal);

impl SignalEmitted<'_> {
    pub fn emit(&self) {
        let s = self.0;
        tracing::info!(
            kind = s.kind.as_str(),
            symbol = %s.symbol,
            interval = %s.interval,
            price = %s.price,
            score = s.score,
            grade = s.grade.as_str(),
            "signal"
        );
        metrics::counter!(SIGNALS_EMITTED, "kind" => s.kind.as_str()).increment(1);
    }
}
