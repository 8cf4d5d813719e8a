//! A request budget per API key, in memory: `burst` requests at once, refilled at
//! `per_second` — `governor`'s keyed GCRA limiter (the token bucket's exact equivalent).
//! Per process: behind N API processes a key gets N times the rate, which is fine for
//! protecting each process.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as KeyedLimiter};

use crate::config::RateLimitConfig;

/// Keys kept before those whose budget is full again are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// governor's per-key limiter on clock `C`.
type PerKey<C> =
    KeyedLimiter<i64, DefaultKeyedStateStore<i64>, C, NoOpMiddleware<<C as Clock>::Instant>>;

#[derive(Debug)]
pub struct RateLimiter<C: Clock = DefaultClock> {
    /// `None`: limits are off.
    limiter: Option<PerKey<C>>,
    clock: C,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(config: RateLimitConfig, clock: C) -> Self {
        // The configuration is validated at start (rate above 0, burst at least 1).
        let quota = Duration::try_from_secs_f64(1.0 / config.per_second)
            .ok()
            .and_then(Quota::with_period)
            .map(|q| q.allow_burst(NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN)));
        RateLimiter {
            limiter: quota
                .filter(|_| config.enabled)
                .map(|q| KeyedLimiter::new(q, DefaultKeyedStateStore::default(), clock.clone())),
            clock,
        }
    }

    /// Takes one request from `key`'s budget; when none is left, how long until one is.
    pub fn check(&self, key: i64) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn bursts_then_refills_per_key() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(
            RateLimitConfig {
                enabled: true,
                per_second: 2.0,
                burst: 3,
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert!(limiter.check(1).is_ok());
        }
        let wait = limiter.check(1).expect_err("empty");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.check(2).is_ok(), "another key has its own budget");
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check(1).is_ok());
        assert!(limiter.check(1).is_err());
    }

    #[test]
    fn disabled_limits_let_everything_through() {
        let limiter = RateLimiter::new(RateLimitConfig {
            enabled: false,
            per_second: 1.0,
            burst: 1,
        });
        assert!((0..100).all(|_| limiter.check(7).is_ok()));
    }
}
