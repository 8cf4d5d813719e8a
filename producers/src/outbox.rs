//! The bounded buffer between a live source and the sink, and the task that drains it.
//!
//! A live feed must keep reading its socket (and answering pings) whatever the broker does,
//! so it only pushes here; one publisher task takes runs of same-kind messages in order,
//! publishes them as one batch, and retries with backoff while the sink is unavailable. When
//! the buffer is full the oldest tick is dropped (candles are rarer and carry the series, so
//! they go last), counted and logged. On shutdown the task gets a grace period to publish
//! what is left; what still is not confirmed then is counted as dropped and logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tickwatch_schema::wire::{Candle, Tick};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Backoff, BufferConfig};
use crate::metrics::{self, Metrics};
use crate::sink::{MarketSink, SinkError};

/// One message on its way to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Tick(Tick),
    Candle(Candle),
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    closed: bool,
    /// Drops since the last report, so a long outage logs a running total, not every drop.
    dropped_unreported: u64,
}

/// The producer side of the buffer.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
    metrics: Arc<Metrics>,
    source: &'static str,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, item: Item) {
        let mut state = self.lock();
        if state.closed {
            // Only reachable through a bug in a source's shutdown order; still never silent.
            metrics::inc(&self.metrics.dropped_shutdown);
            tracing::warn!(
                source = self.source,
                "message pushed after shutdown; dropped"
            );
            return;
        }
        if state.queue.len() >= self.capacity {
            let victim = state
                .queue
                .iter()
                .position(|i| matches!(i, Item::Tick(_)))
                .unwrap_or(0);
            state.queue.remove(victim);
            metrics::inc(&self.metrics.dropped_overflow);
            if state.dropped_unreported == 0 {
                tracing::warn!(
                    source = self.source,
                    capacity = self.capacity,
                    "buffer full while the broker is unavailable: dropping the oldest messages"
                );
            }
            state.dropped_unreported += 1;
            if state.dropped_unreported.is_multiple_of(10_000) {
                tracing::warn!(
                    source = self.source,
                    dropped = state.dropped_unreported,
                    "still dropping: broker unavailable and buffer full"
                );
            }
        }
        state.queue.push_back(item);
        metrics::set(&self.metrics.buffered, state.queue.len() as u64);
        drop(state);
        self.ready.notify_one();
    }

    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = Item>) {
        for item in items {
            self.push(item);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next run of same-kind messages, up to `max`; `None` once closed and empty.
    async fn take_batch(&self, max: usize) -> Option<Batch> {
        loop {
            {
                let mut state = self.lock();
                if let Some(first) = state.queue.front() {
                    let want_tick = matches!(first, Item::Tick(_));
                    let n = state
                        .queue
                        .iter()
                        .take(max)
                        .take_while(|i| matches!(i, Item::Tick(_)) == want_tick)
                        .count();
                    let items = state.queue.drain(..n);
                    let batch = if want_tick {
                        Batch::Ticks(
                            items
                                .filter_map(|i| match i {
                                    Item::Tick(t) => Some(t),
                                    Item::Candle(_) => None,
                                })
                                .collect(),
                        )
                    } else {
                        Batch::Candles(
                            items
                                .filter_map(|i| match i {
                                    Item::Candle(c) => Some(c),
                                    Item::Tick(_) => None,
                                })
                                .collect(),
                        )
                    };
                    metrics::set(&self.metrics.buffered, state.queue.len() as u64);
                    return Some(batch);
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Once the queue is back under half its capacity after an overflow, the number of
    /// messages dropped in that episode (and the episode ends); 0 otherwise.
    fn recovered_drops(&self) -> u64 {
        let mut state = self.lock();
        if state.dropped_unreported > 0 && state.queue.len() < self.capacity / 2 {
            std::mem::take(&mut state.dropped_unreported)
        } else {
            0
        }
    }

    fn drain_all(&self) -> usize {
        let mut state = self.lock();
        let n = state.queue.len();
        state.queue.clear();
        metrics::set(&self.metrics.buffered, 0);
        n
    }
}

/// A run of same-kind messages published as one call.
#[derive(Debug, Clone)]
pub(crate) enum Batch {
    Ticks(Vec<Tick>),
    Candles(Vec<Candle>),
}

impl Batch {
    /// Splits messages into order-preserving runs of one kind, each at most `max` long.
    pub(crate) fn runs(items: impl IntoIterator<Item = Item>, max: usize) -> Vec<Batch> {
        let mut runs: Vec<Batch> = Vec::new();
        for item in items {
            match (runs.last_mut(), item) {
                (Some(Batch::Ticks(t)), Item::Tick(tick)) if t.len() < max => t.push(tick),
                (Some(Batch::Candles(c)), Item::Candle(candle)) if c.len() < max => c.push(candle),
                (_, Item::Tick(tick)) => runs.push(Batch::Ticks(vec![tick])),
                (_, Item::Candle(candle)) => runs.push(Batch::Candles(vec![candle])),
            }
        }
        runs
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Batch::Ticks(t) => t.len(),
            Batch::Candles(c) => c.len(),
        }
    }

    async fn publish(&self, sink: &dyn MarketSink) -> Result<(), SinkError> {
        match self {
            Batch::Ticks(t) => sink.publish_ticks(t).await,
            Batch::Candles(c) => sink.publish_candles(c).await,
        }
    }

    fn singles(self) -> Vec<Batch> {
        match self {
            Batch::Ticks(t) => t.into_iter().map(|t| Batch::Ticks(vec![t])).collect(),
            Batch::Candles(c) => c.into_iter().map(|c| Batch::Candles(vec![c])).collect(),
        }
    }

    fn count(&self, metrics: &Metrics) {
        match self {
            Batch::Ticks(t) => metrics::add(&metrics.ticks_published, t.len() as u64),
            Batch::Candles(c) => metrics::add(&metrics.candles_published, c.len() as u64),
        }
    }
}

/// An outbox with its publisher task running.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) outbox: Arc<Outbox>,
    task: JoinHandle<()>,
    hard_stop: CancellationToken,
    config: BufferConfig,
    source: &'static str,
}

impl Pipeline {
    pub(crate) fn start(
        source: &'static str,
        sink: Arc<dyn MarketSink>,
        config: BufferConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: config.capacity,
            metrics: metrics.clone(),
            source,
        });
        let hard_stop = CancellationToken::new();
        let task = tokio::spawn(publisher(
            outbox.clone(),
            sink,
            config.clone(),
            metrics,
            hard_stop.clone(),
        ));
        Pipeline {
            outbox,
            task,
            hard_stop,
            config,
            source,
        }
    }

    /// Stops taking messages and publishes what is buffered, for at most the shutdown grace.
    pub(crate) async fn finish(self) {
        self.outbox.close();
        let mut task = self.task;
        if tokio::time::timeout(self.config.shutdown_grace, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                source = self.source,
                grace = ?self.config.shutdown_grace,
                "shutdown grace over with messages unconfirmed"
            );
            self.hard_stop.cancel();
            if let Err(e) = task.await {
                tracing::error!(source = self.source, error = %e, "publisher task failed");
            }
        }
    }
}

async fn publisher(
    outbox: Arc<Outbox>,
    sink: Arc<dyn MarketSink>,
    config: BufferConfig,
    metrics: Arc<Metrics>,
    hard_stop: CancellationToken,
) {
    let mut backoff = config.retry.backoff();
    while let Some(batch) = outbox.take_batch(config.batch_max).await {
        let published = publish_batch(
            batch,
            &*sink,
            outbox.source,
            &metrics,
            &mut backoff,
            &hard_stop,
        )
        .await;
        let dropped = outbox.recovered_drops();
        if dropped > 0 {
            tracing::warn!(
                source = outbox.source,
                dropped,
                "buffer has room again; messages were dropped while it was full"
            );
        }
        if !published {
            let left = outbox.drain_all() as u64;
            metrics::add(&metrics.dropped_shutdown, left);
            if left > 0 {
                tracing::error!(
                    source = outbox.source,
                    dropped = left,
                    "shutdown: buffered messages were never confirmed and are lost"
                );
            }
            return;
        }
    }
}

/// Publishes one batch, retrying while the sink is unavailable; a rejected batch is retried
/// message by message so only the bad ones are dropped. False when the hard stop came first.
pub(crate) async fn publish_batch(
    batch: Batch,
    sink: &dyn MarketSink,
    source: &'static str,
    metrics: &Metrics,
    backoff: &mut Backoff,
    hard_stop: &CancellationToken,
) -> bool {
    let mut work = vec![batch];
    while let Some(batch) = work.pop() {
        loop {
            let result = tokio::select! {
                r = batch.publish(sink) => r,
                () = hard_stop.cancelled() => {
                    let n = batch.len() + work.iter().map(Batch::len).sum::<usize>();
                    metrics::add(&metrics.dropped_shutdown, n as u64);
                    tracing::error!(source, dropped = n, "shutdown: publish not confirmed; messages lost");
                    return false;
                }
            };
            match result {
                Ok(()) => {
                    batch.count(metrics);
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            source,
                            failed_attempts = backoff.attempts(),
                            "broker available again"
                        );
                        backoff.reset();
                    }
                    break;
                }
                Err(e) if e.is_retryable() => {
                    metrics::inc(&metrics.publish_retries);
                    let delay = backoff.next_delay();
                    // 1st, 2nd, 4th, 8th… failure: a long outage stays visible without flooding.
                    if backoff.attempts().is_power_of_two() {
                        tracing::warn!(source, error = %e, attempts = backoff.attempts(), "publish failed; buffering and retrying");
                    } else {
                        tracing::debug!(source, error = %e, ?delay, "publish retry failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = hard_stop.cancelled() => {}
                    }
                }
                Err(e) if batch.len() > 1 => {
                    tracing::warn!(source, error = %e, size = batch.len(), "batch rejected; publishing one by one to isolate it");
                    // Reversed because `work` is a stack and order must hold.
                    work.extend(batch.singles().into_iter().rev());
                    break;
                }
                Err(e) => {
                    metrics::inc(&metrics.dropped_rejected);
                    tracing::error!(source, error = %e, "message rejected by the sink; dropped");
                    break;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rust_decimal::Decimal;

    use super::*;
    use crate::config::BackoffConfig;
    use crate::sink::MemorySink;

    fn tick(n: i64) -> Item {
        Item::Tick(Tick {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            price: Decimal::new(100 + n, 0),
            qty: Decimal::ONE,
            ts: 1_700_000_000_000 + n,
            trade_id: Some(n.to_string()),
        })
    }

    fn fast(capacity: usize) -> BufferConfig {
        BufferConfig {
            capacity,
            batch_max: 3,
            retry: BackoffConfig {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(20),
                ..BackoffConfig::default()
            },
            shutdown_grace: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn outage_buffers_then_drops_the_oldest_and_counts() {
        let sink = Arc::new(MemorySink::new());
        sink.set_failure(Some(SinkError::Unavailable("down".into())));
        let metrics = Arc::new(Metrics::default());
        let pipeline = Pipeline::start("test", sink.clone(), fast(5), metrics.clone());
        for n in 0..3 {
            pipeline.outbox.push(tick(n));
        }
        // Let the publisher take 0..3 as its in-flight batch and fail on it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for n in 3..10 {
            pipeline.outbox.push(tick(n));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        sink.set_failure(None);
        assert!(sink.wait_for(1, 0, Duration::from_secs(2)).await);
        pipeline.finish().await;
        let ids: Vec<_> = sink
            .ticks()
            .into_iter()
            .filter_map(|t| t.trade_id)
            .collect();
        // 0..3 were in flight; the queue of 5 kept the newest of the rest (3 and 4 dropped).
        assert_eq!(ids, ["0", "1", "2", "5", "6", "7", "8", "9"]);
        let m = metrics.snapshot();
        assert_eq!(m.dropped_overflow, 2);
        assert_eq!(m.ticks_published, 8);
        assert!(m.publish_retries > 0);
    }

    #[tokio::test]
    async fn shutdown_grace_counts_what_is_lost() {
        let sink = Arc::new(MemorySink::new());
        sink.set_failure(Some(SinkError::Unavailable("down".into())));
        let metrics = Arc::new(Metrics::default());
        let pipeline = Pipeline::start("test", sink.clone(), fast(100), metrics.clone());
        for n in 0..7 {
            pipeline.outbox.push(tick(n));
        }
        pipeline.finish().await;
        assert_eq!(metrics.snapshot().dropped_shutdown, 7);
        assert!(sink.is_empty());
    }

    #[tokio::test]
    async fn a_rejected_message_is_isolated() {
        let sink = Arc::new(MemorySink::new());
        let metrics = Arc::new(Metrics::default());
        let pipeline = Pipeline::start("test", sink.clone(), fast(100), metrics.clone());
        pipeline.outbox.push(tick(1));
        if let Item::Tick(mut bad) = tick(2) {
            bad.price = Decimal::ZERO; // the memory sink validates like the broker sink
            pipeline.outbox.push(Item::Tick(bad));
        }
        pipeline.outbox.push(tick(3));
        pipeline.finish().await;
        let ids: Vec<_> = sink
            .ticks()
            .into_iter()
            .filter_map(|t| t.trade_id)
            .collect();
        assert_eq!(ids, ["1", "3"]);
        assert_eq!(metrics.snapshot().dropped_rejected, 1);
    }
}
