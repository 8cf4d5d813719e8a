//! tickwatch-producers: market data in, normalised to [`Tick`](tickwatch_schema::wire::Tick)
//! and [`Candle`](tickwatch_schema::wire::Candle), handed to a [`MarketSink`] that returns only
//! once the broker has confirmed the publish.
//!
//! The crate knows nothing of AMQP: [`broker_sink::PublisherSink`] implements [`MarketSink`]
//! on the broker crate's confirmed publisher, and the tests use [`MemorySink`]. How the
//! modules fit:
//!
//! - Sources, each with a serde config (`#[serde(default)]`, `validate()` naming the bad key)
//!   and a `run(config, sink, shutdown)` that stops cleanly on its
//!   [`CancellationToken`](tokio_util::sync::CancellationToken), flushing what it holds:
//!   - [`binance`]: the spot combined stream (trades, klines) with REST kline backfill after a gap;
//!   - [`upbit`]: the KRW market stream (trades, tickers), candles from the [`candles`] builder,
//!     the buckets a disconnect cut into taken from Upbit's REST candles;
//!   - [`kis`]: KRX stock trades from the KIS Open API WebSocket (approval key, one session
//!     per app key, PINGPONG), candles on the Seoul session closing at 15:30;
//!   - [`csv`]: replay of history files at a speed (`60x`, `max`), plus the benchmark hook;
//!   - [`synthetic`]: seeded geometric-Brownian-motion ticks at a target rate;
//!   - [`webhook`]: the axum router for pushed ticks and TradingView alerts.
//! - [`history`]: closed candles before now from the venues' REST APIs (Binance klines,
//!   Upbit candles, KIS daily prices) or a history file, for `tickwatch history load`.
//! - Shared machinery: `feed` (the WebSocket session driver: pings, idle detection, reconnect
//!   with backoff, make-before-break renewal), `outbox` (the bounded buffer between a live
//!   source and the sink, with batching, retry and counted drops), `dedupe` (trade ids across
//!   reconnects), [`candles`] (pure tick → candle and bar → bar aggregation), [`metrics`]
//!   (counters for skipped, dropped and published messages) and [`config`] (durations,
//!   backoff, buffer, secrets).
//!
//! Live sources never block on the sink: frames are read (and pings answered) while the
//! outbox retries a broker outage; the file replay instead waits for the broker, since a file
//! can wait and every row must arrive.

pub mod binance;
pub mod broker_sink;
pub mod candles;
pub mod config;
pub mod csv;
mod dedupe;
pub mod error;
mod feed;
pub mod history;
pub mod kis;
pub mod metrics;
mod outbox;
pub mod sink;
pub mod synthetic;
pub mod upbit;
pub mod webhook;

pub use error::{Error, Result};
pub use metrics::{Metrics, MetricsSnapshot};
pub use sink::{MarketSink, MemorySink, Published, SinkError};
