//! Support for the broker tests: each test gets its own name prefix, a small topology on
//! the real local RabbitMQ, and removes it afterwards.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickwatch_broker::management::Management;
use tickwatch_broker::topology::{ExchangeDecl, Topology, WorkQueueSpec};
use tickwatch_broker::{Broker, BrokerConfig, Handler, HandlerError, Incoming};
use tickwatch_schema::names::{Exchange, routing};
use tickwatch_schema::wire::Tick;

pub fn config(tag: &str) -> BrokerConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    BrokerConfig {
        url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| tickwatch_broker::config::DEFAULT_URL.into()),
        prefix: format!("twt-{tag}-{}", &id[..8]),
        // Far enough apart that a busy broker's late expiries (up to ~200 ms seen) cannot
        // make a later tier look shorter than an earlier one.
        retry_delays_ms: vec![150, 600, 1200],
        prefetch: 64,
        ack_batch: 32,
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        publish_timeout_ms: 30_000,
        handler_timeout_ms: 5_000,
        ..Default::default()
    }
}

/// A market exchange, the dead-letter exchange and one work queue bound to all ticks.
pub struct Fixture {
    pub broker: Broker,
    pub topology: Topology,
    pub queue: WorkQueueSpec,
}

impl Fixture {
    pub async fn new(tag: &str) -> Fixture {
        Fixture::with_config(config(tag), 1).await
    }

    pub async fn with_config(config: BrokerConfig, shards: usize) -> Fixture {
        let broker = Broker::connect(config.clone(), &config.prefix)
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        let names = broker.names().clone();
        let mut topology = Topology::default();
        for (exchange, kind) in [
            (Exchange::Market, "topic"),
            (Exchange::DeadLetter, "direct"),
        ] {
            topology.exchanges.push(ExchangeDecl {
                name: names.exchange(exchange),
                kind: kind.into(),
                args: Default::default(),
            });
        }
        let queue_name = format!("{}.work.q", config.prefix);
        topology
            .add_work_queue(
                &config,
                &queue_name,
                &[(
                    names.exchange(Exchange::Market),
                    routing::ALL_TICKS.to_string(),
                )],
                shards,
            )
            .expect("topology");
        topology.apply(&broker).await.expect("apply");
        let queue = topology.work_queues[0].clone();
        Fixture {
            broker,
            topology,
            queue,
        }
    }

    pub async fn cleanup(self) {
        let _ = self.topology.delete(&self.broker).await;
        self.broker.close();
    }

    /// Polls the management API until the queue's (ready, unacked) equals `expected`.
    pub async fn wait_depth(&self, queue: &str, expected: (u64, u64)) -> bool {
        for _ in 0..75 {
            if self.depth(queue).await == expected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    pub fn management(&self) -> Management {
        Management::new(self.broker.config()).expect("management")
    }

    /// Messages ready + unacked in a queue, per the management API (which lags a little).
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        let q = self
            .management()
            .queue(queue)
            .await
            .expect("management")
            .expect("queue");
        let n = |k: &str| q.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        (n("messages_ready"), n("messages_unacknowledged"))
    }
}

pub fn tick(symbol: &str, seq: u64) -> Tick {
    Tick {
        venue: "test".into(),
        symbol: symbol.into(),
        price: Decimal::new(10_000 + (seq % 1000) as i64, 2),
        qty: Decimal::ONE,
        ts: 1_763_762_400_000 + seq as i64,
        trade_id: Some(seq.to_string()),
    }
}

/// Every call a handler saw, with the time it came.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub message: Incoming,
}

/// A handler that records calls and answers with `decide(call number for this message id)`.
#[derive(Clone)]
pub struct Recording<F> {
    pub calls: Arc<Mutex<Vec<Call>>>,
    decide: F,
}

impl<F> Recording<F>
where
    F: Fn(&Incoming, usize) -> Result<(), HandlerError> + Send + Sync + Clone + 'static,
{
    pub fn new(decide: F) -> Self {
        Recording {
            calls: Arc::default(),
            decide,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl<F> Handler for Recording<F>
where
    F: Fn(&Incoming, usize) -> Result<(), HandlerError> + Send + Sync + Clone + 'static,
{
    async fn handle(&mut self, message: &Incoming) -> tickwatch_broker::Outcome {
        let seen = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(Call {
                at: Instant::now(),
                message: message.clone(),
            });
            calls
                .iter()
                .filter(|c| c.message.message_id == message.message_id)
                .count()
        };
        (self.decide)(message, seen).map(|()| tickwatch_broker::Handled::Done)
    }
}

pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Force-closes every connection of this test (named after its prefix) from the broker
/// side, like `rabbitmqctl close_connection`, leaving other tests' connections alone.
pub async fn kill_connections(config: &BrokerConfig) -> usize {
    let (base, user, pass, _) = config.management_base().expect("management url");
    let client = reqwest::Client::new();
    let list: serde_json::Value = client
        .get(format!("{base}/api/connections"))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .expect("list connections")
        .json()
        .await
        .expect("json");
    let wanted = format!("tickwatch/{}", config.prefix);
    let mut killed = 0;
    for c in list.as_array().cloned().unwrap_or_default() {
        let name = c
            .pointer("/client_properties/connection_name")
            .and_then(|v| v.as_str());
        // `tickwatch/<role> <instance>`.
        if name.and_then(|n| n.split(' ').next()) == Some(wanted.as_str()) {
            let id = c.get("name").and_then(|v| v.as_str()).unwrap_or_default();
            let encoded = tickwatch_broker::management::encode(id);
            let response = client
                .delete(format!("{base}/api/connections/{encoded}"))
                .basic_auth(&user, Some(&pass))
                .header("X-Reason", "test: simulated connection loss")
                .send()
                .await
                .expect("delete connection");
            if response.status().is_success() {
                killed += 1;
            }
        }
    }
    killed
}
