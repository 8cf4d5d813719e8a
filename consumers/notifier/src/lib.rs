//! tickwatch-notifier: delivers `Notification`s to Telegram, once per dedupe key, within
//! Telegram's limits. [`Notifier::handle`] does one delivery and knows nothing of the
//! broker; [`adapter`], the crate's broker module, consumes `tw.notify` and calls it.
//!
//! - [`markdown`]: MarkdownV2 escaping, a safe builder, splitting over 4,096 characters.
//! - [`limiter`]: per-chat and overall rate limits (30/s, 1/s per chat, 20/min per group).
//! - [`sender`]: [`TelegramSender`] (Bot API over teloxide's `Bot`, outcomes classified as
//!   delivered / retry-after / transient / unreachable / rejected) and [`LogSender`] (no
//!   token: the log, clearly labelled as not sent).
//! - [`breaker`]: the circuit breaker that pauses consumption while Telegram is down.
//! - [`record`]: the delivery record in the `notifications` table, user preferences.
//! - [`notifier`]: [`Notifier`], which combines them.
//! - [`config`]: the configuration, [`NotifierConfig`].
//! - [`events`]: what the notifier reports (each event counts itself; metric names written
//!   there only).
//! - [`adapter`]: the `notifier` role on the broker (concurrent deliveries, pause while the
//!   breaker is open or an admin halted notifications).
//!
//! See README.md for the delivery guarantees and the one window where a crash can repeat a
//! message.

pub mod adapter;
pub mod breaker;
pub mod chart;
pub mod config;
mod error;
pub mod events;
pub mod limiter;
pub mod markdown;
pub mod notifier;
pub mod record;
pub mod sender;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use config::{NotifierConfig, Secret};
pub use error::Error;
pub use limiter::{Limiter, RateLimits};
pub use markdown::MarkdownV2;
pub use notifier::{Notifier, Outcome};
pub use sender::{LogSender, OutgoingMessage, SendOutcome, Sender, TelegramSender};
