//! Counters of what a source read, skipped, dropped and published. Every skip and drop in
//! this crate is counted here as well as logged; the binary exports a [`MetricsSnapshot`] as
//! Prometheus counters (`tickwatch_producer_<name>_total`, `buffered` as a gauge).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        /// Live counters of one source; share it with `Arc` and read it with [`Metrics::snapshot`].
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)+
        }

        /// The counters at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)+
        }

        impl Metrics {
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)+ }
            }
        }

        impl MetricsSnapshot {
            /// Every counter with its name, for exporting.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name)),+].into_iter()
            }
        }
    };
}

counters! {
    /// WebSocket data frames, CSV rows or webhook requests received.
    frames,
    /// Ticks the sink confirmed.
    ticks_published,
    /// Candles the sink confirmed.
    candles_published,
    /// Frames or rows that could not be parsed at all (not JSON, wrong shape, bad CSV line).
    malformed,
    /// Well-formed frames of an event type the source does not handle.
    unknown_events,
    /// Parsed messages with an unusable value (a non-numeric price, a zero price, a bad
    /// symbol), skipped.
    invalid_values,
    /// Ticks seen before (same trade id, e.g. across a reconnect) and candles already
    /// published, skipped.
    duplicates,
    /// Ticks older than the open candle bucket, dropped by the candle builder.
    late_ticks,
    /// Messages dropped because the buffer was full during a broker outage.
    dropped_overflow,
    /// Messages the sink rejected for good (not retryable), dropped.
    dropped_rejected,
    /// Messages still unconfirmed when the shutdown grace ran out.
    dropped_shutdown,
    /// Failed publish attempts that were retried.
    publish_retries,
    /// Connections made after the first one (reconnects and renewals).
    reconnects,
    /// Candles fetched over REST to fill a gap after a reconnect.
    backfilled_candles,
    /// Gaps that could not be filled (REST failed); each is logged with its time range.
    backfill_failures,
    /// Messages waiting in the buffer now (a gauge, not a counter).
    buffered,
    /// 1 while a feed's WebSocket is connected (a gauge).
    connected,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

pub(crate) fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}
