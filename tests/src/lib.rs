//! tickwatch-tests: support for tickwatch's end-to-end tests.
//!
//! - [`fake_telegram`]: a fake Telegram Bot API server (axum) that teloxide can be pointed
//!   at; records and scripts calls, checks MarkdownV2 strictly, measures rate limits.
//! - [`fake_kis`]: a fake KIS Open API (approval key and the real-time WebSocket) that
//!   sends KRX trades in KIS's frames.
//! - [`db`]: fresh migrated test databases (SQLite in a temporary directory, or a new
//!   PostgreSQL database on the local server).
//! - [`broker`]: faults forced from the broker's side (killing a role's connections).
//! - [`fixtures`]: market data the tests replay (SPY's 2015 daily bars).
//! - [`bench`]: the notification burst benchmark, measured at the fake.
//! - [`faults`]: the fault suite — every role as its own process, one fault per run, what
//!   users would see (lost, duplicated, out of order, dead-lettered, time to recover).

pub mod bench;
pub mod broker;
pub mod db;
pub mod fake_kis;
pub mod fake_telegram;
pub mod faults;
pub mod fixtures;

pub use fake_kis::{FakeKis, KisDay, KisMinute, KisTrade};
pub use fake_telegram::{EditedMessage, FakeTelegram, RateReport, Reply, Scope, SentMessage};

/// Polls `done` every 50 ms until it holds (`true`) or `timeout` has passed (`false`,
/// after one last look): tests wait for an observable fact, not for a fixed time.
pub async fn wait_until(timeout: std::time::Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    done().await
}

/// A broker configuration for one test: the local RabbitMQ (or `AMQP_URL`) under a prefix
/// of its own (`twt-<tag>-<8 hex digits>`), so tests never share a queue; other settings
/// are the defaults, for the caller to change.
pub fn test_broker_config(tag: &str) -> tickwatch_broker::BrokerConfig {
    tickwatch_broker::BrokerConfig {
        url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| tickwatch_broker::config::DEFAULT_URL.into()),
        prefix: format!(
            "twt-{tag}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        ..Default::default()
    }
}

/// Deletes what `tickwatch run` (or a role) declared on this configuration's prefix: the
/// standard topology, shards included. For a test's cleanup after its run has stopped.
pub async fn delete_standard_topology(config: &tickwatch_broker::BrokerConfig) {
    let broker = tickwatch_broker::Broker::connect(config.clone(), "cleanup")
        .await
        .expect("broker for the cleanup");
    tickwatch_broker::Topology::standard(config)
        .expect("topology")
        .delete(&broker)
        .await
        .expect("delete the test's topology");
    broker.close();
}

/// Waits until each of `queues` (of `broker`'s vhost) has a consumer, by the management
/// API: a role is consuming — for the alerts role that also means its rule book is loaded,
/// which it does before it consumes market data.
pub async fn wait_for_consumers(
    broker: &tickwatch_broker::config::BrokerConfig,
    queues: &[String],
    timeout: std::time::Duration,
) -> bool {
    let Ok(management) = tickwatch_broker::management::Management::new(broker) else {
        return false;
    };
    wait_until(timeout, async || {
        for name in queues {
            let consumers = match management.queue(name).await {
                Ok(Some(q)) => q["consumers"].as_u64().unwrap_or(0),
                _ => 0,
            };
            if consumers == 0 {
                return false;
            }
        }
        true
    })
    .await
}

/// What can go wrong while setting up test support.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] tickwatch_schema::Error),
}

impl Error {
    /// A local socket or a database may come back; nothing else here does.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io(_) => true,
            Error::Db(e) => e.is_retryable(),
        }
    }
}
