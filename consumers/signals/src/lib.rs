//! tickwatch-signals: the pure signals engine behind `tickwatch consume signals`,
//! `tickwatch scan` and `tickwatch indicators`.
//!
//! Candles go in, [`Signal`](tickwatch_schema::wire::Signal)s and signal outcomes come
//! out of [`SignalEngine::process`], with no I/O and no clock; [`adapter`] is the one
//! module that talks to the broker and the database: it feeds the engine and stores and
//! publishes what it returns.
//!
//! - [`indicators`]: streaming SMA, EMA, RSI, MACD, Bollinger, ATR, VWAP, rolling
//!   highest/lowest — O(1) per bar and bit-for-bit TA-Lib.
//! - [`engine`]: finds each candle's series, and keeps idempotency, halted bars,
//!   outcomes and warm-up; `series` holds one series' indicators (plain structs from
//!   `indicators`) and runs the detectors — the classic signals and the closing-price
//!   setup itself, `vcp` (trend template and contractions) and `intraday` (gap up,
//!   opening-range breakout, VWAP reclaim) — which turn indicator values into scored hits.
//! - [`config`]: every parameter, with defaults and validation.
//! - [`stats`]: per-kind outcome statistics (count, hit rate, mean return).
//! - [`cli`]: `write_indicators`, `scan` and its human format.
//! - [`adapter`]: the `signals` role on the broker — stores each candle's results in one
//!   transaction, publishes the signals, warms up from stored candles after a restart.
//! - [`events`]: what the role reports (each event logs and counts itself; metric names
//!   written there only).
//! - [`bench`]: the throughput benchmark (`tickwatch bench signals`).
//! - [`num`]: decimal conversion and the tolerant comparisons every detector uses
//!   (`at_least`, `at_most`, `side_of` with a 1e-9 dead band; `clamp01` for scores).

pub mod adapter;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
mod hit;
pub mod indicators;
mod intraday;
pub mod num;
mod series;
pub mod stats;
mod vcp;

pub use cli::{INDICATORS_HEADER, format_scan, scan, write_indicators};
pub use config::SignalsConfig;
pub use engine::{Output, SignalEngine, is_halted};
pub use error::Error;
pub use stats::{KindStats, outcome_stats};
