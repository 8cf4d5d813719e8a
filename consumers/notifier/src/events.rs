//! What the notifier reports, as typed events: each one counts itself (and logs where the
//! notifier does not already), and the metric names are written here only.

use std::time::Duration;

/// Deliveries finished, by outcome (`sent`, `logged`, `duplicate`, `skipped`,
/// `unreachable`).
pub const SENDS: &str = "tw_telegram_sends_total";
/// Deliveries that failed this time (retried or dead-lettered), by reason.
pub const FAILURES: &str = "tw_telegram_failures_total";
/// From the tick (or candle) that caused a notification to its delivery.
pub const TICK_TO_NOTIFICATION: &str = "tw_tick_to_notification_seconds";
/// Telegram answered 429.
pub const RATE_LIMITED: &str = "tw_telegram_rate_limited_total";
/// 1 while the circuit breaker is not closed.
pub const BREAKER_OPEN: &str = "tw_notifier_breaker_open";
/// 1 while an admin halt holds notifications.
pub const HALTED: &str = "tw_notifier_halted";

/// The `outcome` label of [`SENDS`].
pub const OUTCOMES: [&str; 5] = ["sent", "logged", "duplicate", "skipped", "unreachable"];

/// The notifier started: its series exist from now on, at zero, so dashboards show 0 and
/// the first failure is an increase Prometheus sees.
#[derive(Debug)]
pub struct NotifierStarted;

impl NotifierStarted {
    pub fn emit(&self) {
        for outcome in OUTCOMES {
            metrics::counter!(SENDS, "outcome" => outcome).increment(0);
        }
        for reason in crate::Error::REASONS {
            metrics::counter!(FAILURES, "reason" => reason).increment(0);
        }
        metrics::counter!(RATE_LIMITED).increment(0);
        // Registered without a sample: rendered with empty buckets.
        let _ = metrics::histogram!(TICK_TO_NOTIFICATION);
    }
}

/// How one delivery ended.
#[derive(Debug)]
pub enum DeliveryFinished {
    /// Done (`outcome` as in [`SENDS`]); `since_origin` when it reached the user (or the
    /// log) and the notification carries its origin time.
    Done {
        outcome: &'static str,
        since_origin: Option<Duration>,
    },
    /// Failed this time (the error is logged where it is handled).
    Failed { reason: &'static str },
}

impl DeliveryFinished {
    pub fn emit(&self) {
        match self {
            DeliveryFinished::Done {
                outcome,
                since_origin,
            } => {
                metrics::counter!(SENDS, "outcome" => *outcome).increment(1);
                if let Some(latency) = since_origin {
                    metrics::histogram!(TICK_TO_NOTIFICATION).record(latency.as_secs_f64());
                }
            }
            DeliveryFinished::Failed { reason } => {
                metrics::counter!(FAILURES, "reason" => *reason).increment(1);
            }
        }
    }
}

/// Telegram asked to wait before the next message to a chat.
#[derive(Debug)]
pub struct RateLimited {
    pub chat_id: i64,
    pub wait: Duration,
}

impl RateLimited {
    pub fn emit(&self) {
        tracing::debug!(chat = self.chat_id, wait = ?self.wait, "Telegram: 429, waiting");
        metrics::counter!(RATE_LIMITED).increment(1);
    }
}

/// Whether the notifier takes messages: the breaker and the admin halt.
#[derive(Debug)]
pub struct NotifierState {
    pub breaker_open: bool,
    pub halted: bool,
}

impl NotifierState {
    pub fn emit(&self) {
        metrics::gauge!(BREAKER_OPEN).set(f64::from(u8::from(self.breaker_open)));
        metrics::gauge!(HALTED).set(f64::from(u8::from(self.halted)));
    }
}
