//! tickwatch-paper: paper trading from signals (모의매매) — follow a signal with virtual
//! money and see what it would have made.
//!
//! - [`strategy`]: a [`Strategy`] — the signals it follows, its balance, position size,
//!   exits (take-profit, stop-loss, trailing stop, after N bars, on an opposite signal) and
//!   fees (per venue by default: KRX commission and sell tax, Upbit, Binance).
//! - [`engine`]: [`PaperEngine`], pure: signals and candles in, simulated trades out;
//!   its documentation states how fills are simulated on candles.
//! - [`ticks`]: the venue's tick size and quantity steps.
//! - [`stats`]: the summary of a strategy's trades.
//! - [`backtest`]: history through the signals engine and the same paper engine.

pub mod backtest;
pub mod engine;
pub mod error;
pub mod stats;
pub mod strategy;
pub mod ticks;

pub use engine::{ExitReason, PaperEngine, PaperOutput, Trade};
pub use error::{Error, Result};
pub use stats::{Summary, summarize};
pub use strategy::{Fees, Sizing, Strategy};
