//! The process's handle on RabbitMQ: a pool of connections shared by every publisher and
//! consumer of the process (each takes its own channel), the reconnect backoff, and the
//! health state `/readyz` reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_lapin::{Config as PoolSettings, PoolConfig, Runtime, Timeouts};
use lapin::{Channel, ConnectionProperties};
use tickwatch_schema::names::Names;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerConfig, mask_url};
use crate::error::{Error, Result};

/// Connections, configuration and health, cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    names: Names,
    pool: deadpool_lapin::Pool,
    health: Health,
    app_id: String,
    instance: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.inner.config)
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Prepares the pool without connecting; `role` names the process (`tickwatch/<role>`).
    pub fn new(config: BrokerConfig, role: &str) -> Result<Self> {
        config.validate()?;
        let names = config.names()?;
        let app_id = format!("tickwatch/{role}");
        let instance = format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        // The management UI lists connections by this name: role and instance.
        let connection_name = format!("{app_id} {instance}");
        let settings = PoolSettings {
            url: Some(config.url.clone()),
            pool: Some(PoolConfig {
                max_size: config.pool_size,
                timeouts: Timeouts {
                    wait: Some(Duration::from_secs(10)),
                    create: Some(Duration::from_secs(10)),
                    recycle: Some(Duration::from_secs(5)),
                },
                ..PoolConfig::default()
            }),
        };
        let pool = settings
            .create_pool(
                move || {
                    ConnectionProperties::default()
                        .with_connection_name(connection_name.clone().into())
                },
                Runtime::Tokio1,
            )
            .map_err(|e| Error::Config(format!("broker pool: {e}")))?;
        Ok(Broker {
            inner: Arc::new(Inner {
                config,
                names,
                pool,
                health: Health::default(),
                app_id,
                instance,
            }),
        })
    }

    /// Prepares the pool and checks now that RabbitMQ answers, so a wrong URL is reported
    /// at start with where tickwatch looked and how to start a broker.
    pub async fn connect(config: BrokerConfig, role: &str) -> Result<Self> {
        let broker = Broker::new(config, role)?;
        broker.channel().await?.close(200, "OK".into()).await?;
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// This process among the instances of its role: `<role>-<8 hex digits>`, new at every
    /// start. It names the connections and consumers, and the instance in a shard split.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// `tickwatch/<role>`, the `app_id` of everything this process publishes.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// A new channel on a pooled connection. The connection goes back to the pool at
    /// once: lapin channels stay usable, so every user of the pool shares its connections.
    pub async fn channel(&self) -> Result<Channel> {
        let connection = self.inner.pool.get().await.map_err(|e| Error::Connect {
            url: mask_url(&self.inner.config.url),
            reason: pool_error_text(&e),
        })?;
        Ok(connection.create_channel().await?)
    }

    /// Keeps trying [`Broker::channel`] with backoff until it succeeds; `None` if shut
    /// down first. `component` names the caller in logs and health.
    pub async fn channel_with_retry(
        &self,
        component: &str,
        shutdown: &CancellationToken,
    ) -> Option<Channel> {
        let mut backoff = self.config().reconnect_backoff();
        loop {
            match self.channel().await {
                Ok(channel) => return Some(channel),
                Err(e) => {
                    self.health().set(component, false, &e.to_string());
                    let delay = backoff.next_delay();
                    tracing::warn!(component, error = %e, retry_in = ?delay, "broker unavailable");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Closes the pooled connections (after publishers and consumers are done).
    pub fn close(&self) {
        self.inner.pool.close();
    }
}

fn pool_error_text(e: &deadpool_lapin::PoolError) -> String {
    match e {
        deadpool_lapin::PoolError::Backend(inner) => inner.to_string(),
        deadpool_lapin::PoolError::Timeout(_) => "timed out connecting".to_string(),
        other => other.to_string(),
    }
}

/// What each component of the process last reported about its broker link.
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    pub up: bool,
    pub detail: String,
}

impl Health {
    pub fn set(&self, component: &str, up: bool, detail: &str) {
        metrics::gauge!(crate::events::BROKER_CONNECTED, "component" => component.to_string())
            .set(if up { 1.0 } else { 0.0 });
        if let Ok(mut map) = self.components.lock() {
            map.insert(
                component.to_string(),
                ComponentHealth {
                    up,
                    detail: detail.to_string(),
                },
            );
        }
    }

    pub fn remove(&self, component: &str) {
        if let Ok(mut map) = self.components.lock() {
            map.remove(component);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.components
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// True when every registered component is up.
    pub fn all_up(&self) -> bool {
        self.snapshot().values().all(|c| c.up)
    }
}
