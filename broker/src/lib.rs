//! tickwatch-broker: everything tickwatch does with RabbitMQ, and the only crate that
//! imports lapin.
//!
//! - [`config`]: settings with defaults and validation.
//! - [`connection`]: the [`Broker`] handle — a connection pool shared by the process,
//!   reconnect backoff, health for `/readyz`.
//! - [`topology`]: every exchange, queue, binding and argument as data; apply and show.
//! - [`publisher`]: persistent, confirmed, pipelined publishing that republishes what was
//!   unconfirmed when a connection drops.
//! - [`consumer`]: the consumer runtime — one state machine for every consumer: batches,
//!   per-key order, holds in place, acks after the work (and a checkpoint) is durable,
//!   retry tiers, dead-lettering with reasons, pauses, graceful shutdown, reconnect.
//! - [`dlq`]: list, show, replay and purge dead-lettered messages.
//! - [`events`]: what the runtime reports, each event counted and logged (floods summarised).
//! - [`headers`]: header names, typed header access, W3C trace context in headers.
//! - [`management`]: the RabbitMQ management API, for diagnostics and tests.
//! - [`crash`]: crash points, where the fault suite makes a role kill -9 itself.

pub mod bench;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod crash;
pub mod dlq;
pub mod error;
pub mod events;
pub mod headers;
pub mod management;
pub mod publisher;
pub mod topology;

pub use config::BrokerConfig;
pub use connection::{Broker, Health};
pub use consumer::{
    BatchHandler, Checkpoint, ConsumeOptions, DeadReason, Handled, Handler, HandlerError, Incoming,
    Outcome, consume, consume_role, consume_with,
};
pub use error::{Error, Result};
pub use publisher::{Confirm, OutgoingMessage, Publisher};
pub use topology::{Topology, WorkQueueSpec};
