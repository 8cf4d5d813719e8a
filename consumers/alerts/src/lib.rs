//! tickwatch-alerts: the alerts consumer's pure engine — the rule book.
//!
//! [`AlertEngine`] holds every active price alert rule and signal subscription in memory
//! and turns market events into [`Firing`]s and [`SubscriptionHit`]s. It does no I/O and
//! reads no clock (time is the events' `ts`); [`adapter`], this crate's one module with
//! I/O, feeds it from `tw.alerts.q`, stores each firing under its deterministic id, and
//! publishes `AlertTriggered` and `Notification` messages.
//!
//! How the modules fit:
//! - [`engine`]: [`AlertEngine`] — load from the database, versioned [`Control`] updates,
//!   `process_tick` / `process_candle` / `process_signal`; its documentation states the
//!   load/control protocol the adapter must follow and how firing stays exactly-once.
//! - `compiled` (private): one rule in 96 bytes and its state machine, which *defines* the
//!   semantics of every condition, trigger mode and the hysteresis.
//! - `book` (private): one symbol's rules, the sorted level index that makes a tick cost
//!   O(log n + rules touched) instead of a scan, and the per-symbol hot record that lets a
//!   tick which changes nothing skip even that; `history` (private) keeps the bounded price
//!   history the moving-percentage rules read; `symbol_key` (private): the inline
//!   venue-and-symbol key of the symbol table. The other tables are `rustc-hash` maps and
//!   a `slab` of templates. Bar-close and expression rules sit in the book's slots without
//!   index entries; `indicator` (private) holds the indicator series expression rules
//!   read (the signals engine's calculators) and their clauses.
//! - `subscriptions` (private): the signal-subscription index; [`firing`]: what the engine
//!   returns, and the wire `AlertTriggered` of a firing.
//! - [`events`]: what the role reports — each event logs and counts itself; the metric
//!   names are written there only.
//! - [`template`]: message templates with `{{placeholders}}`, Korean and English defaults.
//! - [`config`]: [`AlertsConfig`], the `[alerts]` settings.
//! - [`bench`](mod@bench): the benchmark behind `tickwatch bench alerts`.
//! - [`adapter`]: the `alerts` role on the broker and the database (the crate's only I/O):
//!   the start-up protocol, exactly-once storing and publishing, the outbox sweep.
//!
//! The crate README describes the semantics in full.
//!
//! [`Control`]: tickwatch_schema::wire::Control

pub mod adapter;
pub mod bench;
mod book;
mod compiled;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod firing;
mod history;
mod indicator;
mod subscriptions;
mod symbol_key;
pub mod template;

pub use config::AlertsConfig;
pub use engine::{AlertEngine, Applied, LoadReport};
pub use error::{Error, Result};
pub use firing::{Direction, Firing, SubscriptionHit};
pub use template::{Lang, Locale};
