//! The broker crate's one error type.

use std::time::Duration;

/// Everything the broker layer reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong; the text names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// RabbitMQ could not be reached; the text says where it looked and how to start one.
    #[error(
        "cannot reach RabbitMQ at {url}: {reason}\n  Start one locally with `rabbitmq-server -detached` \
         (Debian/Ubuntu: `sudo apt install rabbitmq-server`), or with Docker: \
         `docker compose -f deploy/compose.yaml up -d rabbitmq`; or point AMQP_URL at yours."
    )]
    Connect { url: String, reason: String },
    /// An AMQP operation failed.
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker already holds a queue or exchange declared differently.
    #[error(
        "{entity} `{name}` exists on the broker with different settings: {details}.\n  Fix: {fix}"
    )]
    TopologyMismatch {
        entity: &'static str,
        name: String,
        details: String,
        fix: String,
    },
    /// A RabbitMQ plugin tickwatch needs is not enabled.
    #[error(
        "{what} needs the RabbitMQ plugin `{plugin}`: run `rabbitmq-plugins enable {plugin}` ({detail})"
    )]
    MissingPlugin {
        plugin: &'static str,
        what: String,
        detail: String,
    },
    /// A mandatory message matched no queue.
    #[error(
        "unroutable: no queue is bound for `{routing_key}` on exchange `{exchange}` (run `tickwatch topology apply`?)"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    /// The broker refused to take responsibility for a message.
    #[error("the broker nacked the message to `{exchange}` with key `{routing_key}`")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    /// No confirm within the configured time (the broker may be down or blocked).
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    /// The publisher or consumer was shut down.
    #[error("the broker client is shut down")]
    Closed,
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Schema(#[from] tickwatch_schema::Error),
    /// The management HTTP API failed or is unreachable.
    #[error("RabbitMQ management API: {0}")]
    Management(String),
    /// A DLQ operation was given something it cannot use.
    #[error("{0}")]
    Dlq(String),
}

impl Error {
    /// Whether trying again later may succeed (the broker is down, slow, or reconnecting).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Amqp(_)
            | Error::Nacked { .. }
            | Error::Timeout(_)
            | Error::Management(_) => true,
            Error::Schema(e) => e.is_retryable(),
            Error::Config(_)
            | Error::TopologyMismatch { .. }
            | Error::MissingPlugin { .. }
            | Error::Unroutable { .. }
            | Error::Closed
            | Error::Dlq(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
