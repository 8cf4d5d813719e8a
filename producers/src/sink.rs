//! The boundary to the broker: [`MarketSink`], and [`MemorySink`] for tests.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tickwatch_schema::wire::{Candle, Message, Tick};
use tokio::sync::Notify;

/// Why a publish did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The broker cannot take messages now (connection lost, confirm timed out, negative
    /// acknowledgement, flow control): the same messages may be published again later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// These messages will never be accepted (too large, refused by validation): retrying
    /// them is pointless.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable(_))
    }
}

/// Where producers put their messages. Implemented by the binary on the broker's confirmed
/// publisher (routing key from [`Message::routing_key`]) and by [`MemorySink`] in tests.
#[async_trait::async_trait]
pub trait MarketSink: Send + Sync + 'static {
    /// Returns only after the broker confirmed every message (publisher confirms), in order.
    async fn publish_ticks(&self, ticks: &[Tick]) -> Result<(), SinkError>;
    /// Returns only after the broker confirmed every candle, in order.
    async fn publish_candles(&self, candles: &[Candle]) -> Result<(), SinkError>;
}

/// One message as it reached a [`MemorySink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Tick(Tick),
    Candle(Candle),
}

#[derive(Debug, Default)]
struct MemoryState {
    published: Vec<Published>,
    failure: Option<SinkError>,
    fail_next: usize,
    attempts: u64,
    failed: u64,
    delay: Option<Duration>,
}

/// A sink that records everything in memory, in publish order. It can fail on demand to
/// simulate a broker outage, and it validates what it is given as the real broker sink does,
/// so a test sees a producer that emits an invalid message.
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<MemoryState>,
    changed: Notify,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every publish fails with `failure` until called again with `None`.
    pub fn set_failure(&self, failure: Option<SinkError>) {
        self.lock().failure = failure;
    }

    /// The next `n` publish calls fail as unavailable; later ones succeed.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Each publish waits this long before confirming (a slow broker).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.lock().delay = delay;
    }

    /// Everything confirmed so far, in order.
    pub fn published(&self) -> Vec<Published> {
        self.lock().published.clone()
    }

    pub fn ticks(&self) -> Vec<Tick> {
        self.lock()
            .published
            .iter()
            .filter_map(|p| match p {
                Published::Tick(t) => Some(t.clone()),
                Published::Candle(_) => None,
            })
            .collect()
    }

    pub fn candles(&self) -> Vec<Candle> {
        self.lock()
            .published
            .iter()
            .filter_map(|p| match p {
                Published::Candle(c) => Some(c.clone()),
                Published::Tick(_) => None,
            })
            .collect()
    }

    /// How many messages were confirmed.
    pub fn len(&self) -> usize {
        self.lock().published.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publish calls made, and how many of them failed.
    pub fn attempts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.attempts, state.failed)
    }

    /// Waits until at least `ticks` ticks and `candles` candles were confirmed, or `timeout`
    /// passed; says whether the counts were reached.
    pub async fn wait_for(&self, ticks: usize, candles: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            {
                let state = self.lock();
                let t = state
                    .published
                    .iter()
                    .filter(|p| matches!(p, Published::Tick(_)))
                    .count();
                if t >= ticks && state.published.len() - t >= candles {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    async fn publish(&self, messages: Vec<Published>) -> Result<(), SinkError> {
        let delay = {
            let mut state = self.lock();
            state.attempts += 1;
            let failure = if state.fail_next > 0 {
                state.fail_next -= 1;
                Some(SinkError::Unavailable("simulated outage".into()))
            } else {
                state.failure.clone()
            };
            if let Some(err) = failure {
                state.failed += 1;
                return Err(err);
            }
            state.delay
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        for m in &messages {
            let checked = match m {
                Published::Tick(t) => t.validate(),
                Published::Candle(c) => c.validate(),
            };
            checked.map_err(|e| SinkError::Rejected(e.to_string()))?;
        }
        self.lock().published.extend(messages);
        self.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait::async_trait]
impl MarketSink for MemorySink {
    async fn publish_ticks(&self, ticks: &[Tick]) -> Result<(), SinkError> {
        self.publish(ticks.iter().cloned().map(Published::Tick).collect())
            .await
    }

    async fn publish_candles(&self, candles: &[Candle]) -> Result<(), SinkError> {
        self.publish(candles.iter().cloned().map(Published::Candle).collect())
            .await
    }
}
