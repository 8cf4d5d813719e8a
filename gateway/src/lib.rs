//! tickwatch-gateway: the doors users come in by — the HTTP API (axum) with the web
//! dashboard it serves, and the Telegram bot (teloxide) — over one service layer.
//!
//! How the modules fit:
//! - [`services`]: [`Services`], the one place that reads and changes rules,
//!   subscriptions, users, API keys and settings. Both doors call it, so they share one
//!   rule model ([`tickwatch_schema::rule`]), one validation and one ownership check. Each
//!   change is written to the database, then announced on `tw.control` through a confirmed
//!   publisher so running alerts instances apply it at once. The binary's `user` and
//!   `apikey` commands call it too.
//! - [`api`]: [`api::ApiState`], [`api::router`] and [`api::serve`] — `/v1` endpoints with
//!   API-key auth and a per-key rate limit (governor), problem+json errors, health/readiness/metrics,
//!   the OpenAPI document generated from the handlers, and live streams. [`api::web`]
//!   serves the dashboard (`gateway/web/`, compiled in) and its session sign-in.
//! - [`hub`]: the live-stream fan-out: one private broker queue per API process into a
//!   bounded broadcast channel.
//! - [`bot`]: [`bot::run`] — the Telegram bot's commands (long polling or webhook), Korean
//!   and English replies.
//! - [`config`]: [`ApiConfig`] and [`BotConfig`] with serde defaults and `validate()`.
//! - [`error`]: the crate's [`Error`], mapped to problem+json at the HTTP edge.
//! - [`events`]: what the gateway reports (each event counts itself; metric names written
//!   there only).

pub mod api;
pub mod bot;
pub mod config;
pub mod error;
pub mod events;
pub mod hub;
pub mod services;

pub use config::{ApiConfig, BotConfig};
pub use error::{Error, Result};
pub use services::Services;
