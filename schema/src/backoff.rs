//! How long to wait before trying again: backon's exponential schedule (initial delay,
//! multiplied after each failure, capped), spread by a random fraction so that many clients
//! cut off at once do not come back at once. Used for broker reconnects, feed reconnects and
//! the producers' publish retries.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// One running backoff sequence; [`Backoff::reset`] after a success starts it over.
#[derive(Debug)]
pub struct Backoff {
    schedule: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    jitter: f64,
    attempts: u32,
}

impl Backoff {
    /// Delays start at `initial`, are multiplied by `multiplier` after each failure up to
    /// `max`, and each is moved randomly by up to `jitter` of itself (0.2 = ±20 %), never
    /// above `max`. `multiplier` below 1 counts as 1; `jitter` is clamped to 0..=1.
    pub fn new(initial: Duration, max: Duration, multiplier: f64, jitter: f64) -> Self {
        let max = max.max(initial);
        let schedule = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(multiplier.max(1.0) as f32)
            .without_max_times();
        Backoff {
            delays: schedule.build(),
            schedule,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            attempts: 0,
        }
    }

    /// The delay before the next attempt; each call lengthens the next one.
    pub fn next_delay(&mut self) -> Duration {
        // Without max_times the schedule never ends; `max` is only a fallback.
        let base = self.delays.next().unwrap_or(self.max);
        self.attempts = self.attempts.saturating_add(1);
        let spread = self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        base.mul_f64(1.0 + spread).min(self.max)
    }

    /// Failed attempts since the start or the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.delays = self.schedule.build();
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_jitter_it_doubles_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 800 * MS, 2.0, 0.0);
        // backon multiplies by an f32 factor: 200 ms comes out as 200.000003 ms.
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 800, 800]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let mut b = Backoff::new(100 * MS, 1000 * MS, 2.0, 0.2);
        let first = b.next_delay();
        assert!(first >= 80 * MS && first <= 120 * MS, "{first:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= 1000 * MS, "{d:?}");
        }
        // At the cap the spread only goes down.
        assert!(b.next_delay() >= 800 * MS);
    }

    #[test]
    fn a_multiplier_of_one_keeps_the_delay() {
        let mut b = Backoff::new(250 * MS, 1000 * MS, 1.0, 0.0);
        assert!((0..5).all(|_| b.next_delay() == 250 * MS));
    }
}
