//! A circuit breaker for Telegram outages, as a pure state machine: time is passed in.
//!
//! Closed: deliveries flow; consecutive transient failures are counted, any answer from
//! Telegram (a success, or a 4xx about the message) resets the count. At
//! `failure_threshold` the breaker opens: consumption pauses (messages stay in the queue)
//! and one probe is due after `probe_delay`. A probe that fails reopens it with the delay
//! doubled (up to `max_probe_delay`); the first success closes it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// When to open and how to probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the breaker.
    pub failure_threshold: u32,
    /// Wait before the first probe, in milliseconds.
    pub probe_delay_ms: u64,
    /// The longest wait between probes, in milliseconds.
    pub max_probe_delay_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            probe_delay_ms: 5_000,
            max_probe_delay_ms: 300_000,
        }
    }
}

impl BreakerConfig {
    /// What is wrong with this configuration, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.failure_threshold == 0 {
            return Some("breaker.failure_threshold must be at least 1".into());
        }
        if self.probe_delay_ms == 0 || self.max_probe_delay_ms < self.probe_delay_ms {
            return Some("breaker: need 0 < probe_delay_ms <= max_probe_delay_ms".into());
        }
        None
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries flow.
    Closed,
    /// Telegram looks down: pause consumption; a probe is due at `probe_at`.
    Open { probe_at: Instant },
    /// A probe is in flight; consumption stays paused.
    Probing,
}

impl BreakerState {
    /// Whether the consumer should take messages.
    pub fn is_closed(&self) -> bool {
        matches!(self, BreakerState::Closed)
    }
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    /// Probes failed since it opened; the delay doubles with each.
    failed_probes: u32,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            failed_probes: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Telegram answered (delivered, or refused the message for its own reasons): closes the
    /// breaker. Returns the new state when it changed.
    pub fn record_success(&mut self) -> Option<BreakerState> {
        self.consecutive_failures = 0;
        self.failed_probes = 0;
        self.transition(BreakerState::Closed)
    }

    /// A transient failure (5xx, network, timeout). Returns the new state when it changed.
    pub fn record_failure(&mut self, now: Instant) -> Option<BreakerState> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            BreakerState::Closed if self.consecutive_failures >= self.config.failure_threshold => {
                self.transition(BreakerState::Open {
                    probe_at: now + self.probe_delay(),
                })
            }
            BreakerState::Probing => {
                self.failed_probes = self.failed_probes.saturating_add(1);
                self.transition(BreakerState::Open {
                    probe_at: now + self.probe_delay(),
                })
            }
            // Already open: failures of sends that were in flight change nothing.
            _ => None,
        }
    }

    /// When open and the probe is due at `now`, moves to probing and returns true: the
    /// caller sends one probe and reports it with `record_success` / `record_failure`.
    pub fn try_probe(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Open { probe_at } if now >= probe_at => {
                self.state = BreakerState::Probing;
                true
            }
            _ => false,
        }
    }

    /// When the next probe is due, if the breaker is open.
    pub fn next_probe_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { probe_at } => Some(probe_at),
            _ => None,
        }
    }

    /// The wait before the next probe: `probe_delay × 2^failed_probes`, capped.
    pub fn probe_delay(&self) -> Duration {
        let base = Duration::from_millis(self.config.probe_delay_ms);
        let max = Duration::from_millis(self.config.max_probe_delay_ms);
        let factor = 1u32
            .checked_shl(self.failed_probes.min(20))
            .unwrap_or(u32::MAX);
        base.saturating_mul(factor).min(max)
    }

    fn transition(&mut self, to: BreakerState) -> Option<BreakerState> {
        if self.state == to {
            return None;
        }
        self.state = to;
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            probe_delay_ms: 1_000,
            max_probe_delay_ms: 3_000,
        })
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut b = breaker();
        let now = Instant::now();
        assert_eq!(b.record_failure(now), None);
        assert_eq!(b.record_failure(now), None);
        let opened = b.record_failure(now);
        assert_eq!(
            opened,
            Some(BreakerState::Open {
                probe_at: now + Duration::from_secs(1)
            })
        );
        assert!(!b.state().is_closed());
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = breaker();
        let now = Instant::now();
        b.record_failure(now);
        b.record_failure(now);
        assert_eq!(b.record_success(), None);
        b.record_failure(now);
        b.record_failure(now);
        assert!(b.state().is_closed());
    }

    #[test]
    fn probes_back_off_then_close_on_success() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        assert!(!b.try_probe(t0), "not due yet");
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.try_probe(t1));
        assert_eq!(b.state(), BreakerState::Probing);
        assert!(!b.try_probe(t1), "one probe at a time");
        // Failed probe: the delay doubles.
        b.record_failure(t1);
        assert_eq!(b.next_probe_at(), Some(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert!(b.try_probe(t2));
        b.record_failure(t2);
        // Capped at max_probe_delay.
        assert_eq!(b.next_probe_at(), Some(t2 + Duration::from_secs(3)));
        let t3 = t2 + Duration::from_secs(3);
        assert!(b.try_probe(t3));
        assert_eq!(b.record_success(), Some(BreakerState::Closed));
        assert_eq!(b.probe_delay(), Duration::from_secs(1));
    }

    #[test]
    fn failures_while_open_do_not_move_the_probe() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let due = b.next_probe_at();
        assert_eq!(b.record_failure(t0 + Duration::from_millis(500)), None);
        assert_eq!(b.next_probe_at(), due);
    }
}
