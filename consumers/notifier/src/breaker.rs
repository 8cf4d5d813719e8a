//! A circuit breaker for Telegram outages, as a pure state machine: time is passed in.
//!
//! Closed: deliveries flow; consecutive transient failures are counted, any answer from
//! Telegram (a success, a 429, or a 4xx about the message) resets the count. At
//! `failure_threshold` the breaker opens: consumption pauses (messages stay in the queue).
//! After `probe_delay` it turns half-open: consumption resumes and the first real send is
//! the probe — something that fails exactly when sends fail (a `getMe` succeeds while
//! `sendMessage` answers 500). Other sends wait meanwhile. The probe's success closes the
//! breaker; its failure opens it again with the delay doubled (up to `max_probe_delay`).

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
    /// Telegram looks down: pause consumption; half-open at `probe_at`.
    Open { probe_at: Instant },
    /// Consumption resumes; one send at a time is let through as the probe (`probe_since`:
    /// when the one in flight left).
    HalfOpen { probe_since: Option<Instant> },
}

impl BreakerState {
    /// Whether every send may go out.
    pub fn is_closed(&self) -> bool {
        matches!(self, BreakerState::Closed)
    }

    /// Whether the consumer should take messages: not while open (half-open needs a
    /// message to probe with).
    pub fn admits_consumption(&self) -> bool {
        !matches!(self, BreakerState::Open { .. })
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

    /// Telegram answered (delivered, asked to wait, or refused the message for its own
    /// reasons): closes the breaker. Returns the new state when it changed.
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
            BreakerState::HalfOpen { .. } => {
                self.failed_probes = self.failed_probes.saturating_add(1);
                self.transition(BreakerState::Open {
                    probe_at: now + self.probe_delay(),
                })
            }
            // Already open: failures of sends that were in flight change nothing.
            _ => None,
        }
    }

    /// When open and the probe is due at `now`, turns half-open. Returns the new state
    /// when it changed.
    pub fn half_open(&mut self, now: Instant) -> Option<BreakerState> {
        match self.state {
            BreakerState::Open { probe_at } if now >= probe_at => {
                self.transition(BreakerState::HalfOpen { probe_since: None })
            }
            _ => None,
        }
    }

    /// Whether a send may go out at `now`. Half-open, the first one asking is the probe
    /// and the others are refused until it is answered — or until it has been out longer
    /// than `stale_after` (its request was abandoned), when the next one probes.
    pub fn try_send(&mut self, now: Instant, stale_after: Duration) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen { probe_since } => {
                let free = probe_since.is_none_or(|since| now >= since + stale_after);
                if free {
                    self.state = BreakerState::HalfOpen {
                        probe_since: Some(now),
                    };
                }
                free
            }
            BreakerState::Open { .. } => false,
        }
    }

    /// When the breaker turns half-open, if it is open.
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

    const STALE: Duration = Duration::from_secs(30);

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
        assert!(!b.state().admits_consumption());
        assert!(!b.try_send(now, STALE));
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
    fn half_open_lets_one_real_send_probe_and_backs_off_while_it_fails() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        assert_eq!(b.half_open(t0), None, "not due yet");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            b.half_open(t1),
            Some(BreakerState::HalfOpen { probe_since: None })
        );
        assert!(b.state().admits_consumption());
        assert!(b.try_send(t1, STALE), "the first send is the probe");
        assert!(!b.try_send(t1, STALE), "one probe at a time");
        // The probe failed: open again, the delay doubled.
        assert!(b.record_failure(t1).is_some());
        assert_eq!(b.next_probe_at(), Some(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert!(b.half_open(t2).is_some());
        assert!(b.try_send(t2, STALE));
        b.record_failure(t2);
        // Capped at max_probe_delay.
        assert_eq!(b.next_probe_at(), Some(t2 + Duration::from_secs(3)));
        let t3 = t2 + Duration::from_secs(3);
        assert!(b.half_open(t3).is_some());
        assert!(b.try_send(t3, STALE));
        assert_eq!(b.record_success(), Some(BreakerState::Closed));
        assert_eq!(b.probe_delay(), Duration::from_secs(1));
        assert!(
            b.try_send(t3, STALE) && b.try_send(t3, STALE),
            "closed: every send goes"
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_send_probe() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        b.half_open(t1);
        assert!(b.try_send(t1, STALE));
        assert!(!b.try_send(t1 + Duration::from_secs(29), STALE));
        assert!(b.try_send(t1 + STALE, STALE));
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
