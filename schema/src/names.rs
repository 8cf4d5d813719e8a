//! Exchange, queue and routing-key names. Every name tickwatch puts on the broker comes
//! from here, so a prefix change (one per test, one per deployment) moves all of them.

use std::fmt;

use crate::error::{Error, Result};
use crate::wire::{Interval, SignalKind};

/// The default name prefix of a deployment.
pub const DEFAULT_PREFIX: &str = "tw";

/// The exchanges of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// Ticks and candles (topic).
    Market,
    /// Computed signals (topic).
    Signals,
    /// Fired alerts (topic).
    Alerts,
    /// Notifications by channel (direct).
    Notify,
    /// Rule changes and halt/resume, to every alerts instance (fanout).
    Control,
    /// Where work queues and retry tiers dead-letter to (direct, keyed by queue name).
    DeadLetter,
}

impl Exchange {
    pub const ALL: [Exchange; 6] = [
        Exchange::Market,
        Exchange::Signals,
        Exchange::Alerts,
        Exchange::Notify,
        Exchange::Control,
        Exchange::DeadLetter,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Exchange::Market => "market",
            Exchange::Signals => "signals",
            Exchange::Alerts => "alerts",
            Exchange::Notify => "notify",
            Exchange::Control => "control",
            Exchange::DeadLetter => "dlx",
        }
    }
}

/// The durable work queues, one per consuming role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    Signals,
    Alerts,
    Recorder,
    NotifyTelegram,
    /// Telegram notifications of kind `system` (operators' alerts, broadcasts): a queue of
    /// their own, so an admin's halt of the others does not hold them.
    NotifySystem,
    /// Paper trading: signals and candles through the paper strategies.
    Paper,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 6] = [
        WorkQueue::Signals,
        WorkQueue::Alerts,
        WorkQueue::Recorder,
        WorkQueue::NotifyTelegram,
        WorkQueue::NotifySystem,
        WorkQueue::Paper,
    ];

    fn suffix(self) -> &'static str {
        match self {
            WorkQueue::Signals => "signals.q",
            WorkQueue::Alerts => "alerts.q",
            WorkQueue::Recorder => "recorder.q",
            WorkQueue::NotifyTelegram => "notify.telegram.q",
            WorkQueue::NotifySystem => "notify.system.q",
            WorkQueue::Paper => "paper.q",
        }
    }

    /// The role name used on the command line (`tickwatch consume <role>`).
    pub fn role(self) -> &'static str {
        match self {
            WorkQueue::Signals => "signals",
            WorkQueue::Alerts => "alerts",
            WorkQueue::Recorder => "recorder",
            WorkQueue::NotifyTelegram | WorkQueue::NotifySystem => "notifier",
            WorkQueue::Paper => "paper",
        }
    }
}

/// Names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Names {
    prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Names {
    /// A prefix is one or more of `[A-Za-z0-9_-]` segments joined by dots.
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        let bad = |reason: &str| Error::Name {
            name: prefix.clone(),
            reason: reason.to_string(),
        };
        if prefix.is_empty() || prefix.len() > 100 {
            return Err(bad("the prefix must be 1 to 100 characters"));
        }
        if prefix.split('.').any(str::is_empty) {
            return Err(bad(
                "the prefix may not start or end with a dot or hold `..`",
            ));
        }
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(bad("use only letters, digits, `_`, `-` and `.`"));
        }
        Ok(Names { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn exchange(&self, exchange: Exchange) -> String {
        format!("{}.{}", self.prefix, exchange.suffix())
    }

    pub fn queue(&self, queue: WorkQueue) -> String {
        format!("{}.{}", self.prefix, queue.suffix())
    }

    /// Retry tier `tier` (1-based) of a queue: `<q>.retry.<tier>`.
    pub fn retry_queue(queue: &str, tier: usize) -> String {
        format!("{queue}.retry.{tier}")
    }

    /// The dead-letter queue of a queue: `<q>.dlq`.
    pub fn dlq(queue: &str) -> String {
        format!("{queue}.dlq")
    }

    /// Shard `index` (0-based) of a sharded work queue: `<q>.shard.<index>`.
    pub fn shard_queue(queue: &str, index: usize) -> String {
        format!("{queue}.shard.{index}")
    }

    /// The consistent-hash exchange that spreads a sharded queue: `<q>.shards`.
    pub fn shard_exchange(queue: &str) -> String {
        format!("{queue}.shards")
    }

    /// An alerts instance's own queue on the control fanout.
    pub fn control_queue(&self, instance: &str) -> String {
        format!("{}.control.{instance}", self.prefix)
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

/// Routing keys and binding patterns of the contract.
pub mod routing {
    use super::*;

    pub const ALL_TICKS: &str = "tick.#";
    pub const ALL_CANDLES: &str = "candle.#";
    pub const ALL_HISTORY: &str = "history.#";
    pub const ALL_SIGNALS: &str = "signal.#";
    pub const ALL_ALERTS: &str = "alert.#";
    /// The direct-exchange key of Telegram notifications.
    pub const TELEGRAM: &str = "telegram";
    /// … and of those of kind `system`.
    pub const TELEGRAM_SYSTEM: &str = "telegram.system";
    /// Fanout exchanges ignore the key; this one names the traffic in the management UI.
    pub const CONTROL: &str = "control";

    pub fn tick(venue: &str, symbol: &str) -> String {
        format!("tick.{venue}.{symbol}")
    }

    pub fn candle(venue: &str, symbol: &str, interval: Interval) -> String {
        format!("candle.{venue}.{symbol}.{interval}")
    }

    /// A history load's notice (see `wire::HistoryLoaded`).
    pub fn history(venue: &str, symbol: &str, interval: Interval) -> String {
        format!("history.{venue}.{symbol}.{interval}")
    }

    /// `signal.<kind>.<venue>.<symbol>`: the venue tells the same symbol on two venues apart
    /// (before 2026-12-07 it was `signal.<kind>.<symbol>`; bodies are unchanged, and every
    /// binding of tickwatch's is `signal.#`).
    pub fn signal(kind: SignalKind, venue: &str, symbol: &str) -> String {
        format!("signal.{kind}.{venue}.{symbol}")
    }

    /// `alert.<venue>.<symbol>` (was `alert.<symbol>`).
    pub fn alert(venue: &str, symbol: &str) -> String {
        format!("alert.{venue}.{symbol}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let names = Names::default();
        assert_eq!(names.exchange(Exchange::Market), "tw.market");
        assert_eq!(names.exchange(Exchange::DeadLetter), "tw.dlx");
        assert_eq!(
            names.queue(WorkQueue::NotifyTelegram),
            "tw.notify.telegram.q"
        );
        assert_eq!(Names::retry_queue("tw.alerts.q", 2), "tw.alerts.q.retry.2");
        assert_eq!(Names::dlq("tw.alerts.q"), "tw.alerts.q.dlq");
        assert_eq!(
            routing::candle("binance", "BTCUSDT", Interval::M1),
            "candle.binance.BTCUSDT.1m"
        );
        assert_eq!(
            routing::signal(SignalKind::RsiOversold, "binance", "BTCUSDT"),
            "signal.rsi_oversold.binance.BTCUSDT"
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Names::new("t1.run-3_x").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a b", "a*", "a#"] {
            assert!(Names::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
