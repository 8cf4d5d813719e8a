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
//! - [`store`]: strategies, accounts, trades, equity and progress in the database.
//! - [`adapter`]: the live `paper` role on `tw.paper.q`, going through each series in the
//!   backtest's order, its state stored before the acknowledgement.

pub mod adapter;
pub mod backtest;
pub mod engine;
pub mod error;
pub mod stats;
pub mod store;
pub mod strategy;
pub mod ticks;

pub use engine::{Account, Entry, ExitReason, OpenPosition, PaperEngine, PaperOutput, Trade};
pub use error::{Error, Result};
pub use stats::{Summary, summarize};
pub use strategy::{Fees, Sizing, Strategy};
