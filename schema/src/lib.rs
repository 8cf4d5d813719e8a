//! tickwatch-schema: the data shapes every tickwatch role shares.
//!
//! - [`wire`]: the broker messages of contract v1 (`Tick`, `Candle`, `Signal`,
//!   `AlertTriggered`, `Notification`, `Control`), their AMQP metadata, and the
//!   decode-and-validate step that turns a bad body into a precise [`Error`].
//! - [`names`]: every exchange, queue and routing-key name, under one prefix.
//! - [`rule`]: the alert rule and signal subscription models, with the one validation the
//!   API, the bot and the alerts engine share.
//! - [`expr`]: the expression of an indicator or multi-condition rule
//!   (`rsi(14,1h) < 30 and close(1d) > sma(200,1d)`), parsed into clauses.
//! - [`db`]: sea-orm entities and migrations for SQLite and PostgreSQL.
//! - [`calendar`]: the bar calendar (a venue's trading day, weeks from Monday) that candles
//!   and an alert's bars share.
//! - [`backoff`]: the retry delays of reconnects and publish retries (backon's schedule).
//! - [`decimal`]: the decimal → `f64` conversion both engines use.
//! - [`display`]: times and prices as users read them (their time zone, ₩ and separators).
//! - [`secret`]: the secret-string type of every configuration.
//! - [`history`]: history files (CSV of bars), and where the shared market data is.

pub mod backoff;
pub mod calendar;
pub mod db;
pub mod decimal;
pub mod display;
pub mod error;
pub mod expr;
pub mod history;
pub mod names;
pub mod rule;
pub mod secret;
pub mod wire;

pub use error::{Error, Result};
