//! The whole broker topology as data: one declaration of every exchange, queue, binding and
//! argument, applied idempotently (`tickwatch topology apply`) and printed
//! (`tickwatch topology show`).
//!
//! Each work queue `Q` is a quorum queue dead-lettering to `<prefix>.dlx` with key `Q`,
//! with retry tiers `Q.retry.<n>` (quorum, fixed TTL, dead-lettering back to `Q` through
//! the default exchange) and `Q.dlq` bound on the dead-letter exchange with key `Q`.
//! A sharded work queue replaces `Q` by `Q.shard.<i>` queues behind a consistent-hash
//! exchange `Q.shards` keyed on the `tw-shard-key` header (venue and symbol).

use std::collections::BTreeMap;
use std::fmt;

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use serde_json::{Value, json};
use tickwatch_schema::names::{Exchange, Names, WorkQueue, routing};

use crate::config::BrokerConfig;
use crate::connection::Broker;
use crate::error::{Error, Result};
use crate::headers::SHARD_KEY;
use crate::management::Management;

/// An argument value as RabbitMQ stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Arg {
    fn to_amqp(&self) -> AMQPValue {
        match self {
            Arg::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            Arg::Int(i) => AMQPValue::LongLongInt(*i),
            Arg::Bool(b) => AMQPValue::Boolean(*b),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Arg::Str(s) => json!(s),
            Arg::Int(i) => json!(i),
            Arg::Bool(b) => json!(b),
        }
    }

    fn matches_json(&self, value: &Value) -> bool {
        match (self, value) {
            (Arg::Str(s), Value::String(v)) => s == v,
            (Arg::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
            (Arg::Bool(b), Value::Bool(v)) => b == v,
            _ => false,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDecl {
    pub name: String,
    /// `topic`, `direct`, `fanout` or a plugin type such as `x-consistent-hash`.
    pub kind: String,
    pub args: BTreeMap<String, Arg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDecl {
    pub name: String,
    pub args: BTreeMap<String, Arg>,
    /// Exclusive to the declaring connection and deleted with it (a per-instance queue on
    /// a fan-out, such as an alerts instance's control queue or a live stream).
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDecl {
    pub source: String,
    pub destination: String,
    /// The destination is an exchange (exchange-to-exchange binding).
    pub to_exchange: bool,
    pub key: String,
}

/// What the consumer runtime needs to know of a work queue: where to retry and where to
/// dead-letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueueSpec {
    pub name: String,
    /// Retry tier queues in order; tier `n` holds a message before its attempt `n + 1`.
    pub retry_queues: Vec<String>,
    pub dlq: String,
    /// The dead-letter exchange its DLQ is bound on (with key = `name`).
    pub dead_letter_exchange: String,
    /// A private queue has no retry tiers or DLQ: a failed message is logged and dropped
    /// (what it carries is also in the database, or only of interest live).
    pub discard_failures: bool,
}

impl WorkQueueSpec {
    /// The spec of queue `name` under the configured retry tiers.
    pub fn new(config: &BrokerConfig, name: &str) -> Result<Self> {
        let names = config.names()?;
        Ok(WorkQueueSpec {
            name: name.to_string(),
            retry_queues: (1..=config.retry_delays_ms.len())
                .map(|n| Names::retry_queue(name, n))
                .collect(),
            dlq: Names::dlq(name),
            dead_letter_exchange: names.exchange(Exchange::DeadLetter),
            discard_failures: false,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub exchanges: Vec<ExchangeDecl>,
    pub queues: Vec<QueueDecl>,
    pub bindings: Vec<BindingDecl>,
    /// Bindings an earlier version declared and this one does not: removed when applied,
    /// so a broker set up by that version stops routing along them.
    pub retired_bindings: Vec<BindingDecl>,
    pub work_queues: Vec<WorkQueueSpec>,
}

fn exchange_kind(exchange: Exchange) -> &'static str {
    match exchange {
        Exchange::Market | Exchange::Signals | Exchange::Alerts => "topic",
        Exchange::Notify | Exchange::DeadLetter => "direct",
        Exchange::Control => "fanout",
    }
}

/// The sources each standard work queue binds: (exchange, binding key).
pub fn standard_sources(queue: WorkQueue) -> Vec<(Exchange, &'static str)> {
    match queue {
        WorkQueue::Signals => vec![
            (Exchange::Market, routing::ALL_CANDLES),
            (Exchange::Market, routing::ALL_HISTORY),
        ],
        WorkQueue::Alerts => vec![
            (Exchange::Market, routing::ALL_TICKS),
            (Exchange::Market, routing::ALL_CANDLES),
            (Exchange::Signals, routing::ALL_SIGNALS),
        ],
        // Not the ticks: a second quorum queue for every tick doubled the broker's work per
        // tick for one price per symbol, which the alerts role saves at its checkpoint.
        WorkQueue::Recorder => vec![(Exchange::Market, routing::ALL_CANDLES)],
        WorkQueue::NotifyTelegram => vec![(Exchange::Notify, routing::TELEGRAM)],
        WorkQueue::NotifySystem => vec![(Exchange::Notify, routing::TELEGRAM_SYSTEM)],
        // The candles trigger (and the signals stand for) going through the series in the
        // database (see tickwatch-paper's adapter).
        WorkQueue::Paper => vec![
            (Exchange::Market, routing::ALL_CANDLES),
            (Exchange::Signals, routing::ALL_SIGNALS),
        ],
    }
}

/// The sources a standard work queue bound in an earlier version and no longer does.
fn retired_sources(queue: WorkQueue) -> Vec<(Exchange, &'static str)> {
    match queue {
        WorkQueue::Recorder => vec![(Exchange::Market, routing::ALL_TICKS)],
        _ => Vec::new(),
    }
}

impl Topology {
    /// The tickwatch topology under the configured prefix, tiers and shards.
    pub fn standard(config: &BrokerConfig) -> Result<Self> {
        let names = config.names()?;
        let mut topology = Topology::default();
        for exchange in Exchange::ALL {
            topology.exchanges.push(ExchangeDecl {
                name: names.exchange(exchange),
                kind: exchange_kind(exchange).to_string(),
                args: BTreeMap::new(),
            });
        }
        for queue in WorkQueue::ALL {
            let sources: Vec<(String, String)> = standard_sources(queue)
                .into_iter()
                .map(|(e, key)| (names.exchange(e), key.to_string()))
                .collect();
            let shards = config.shards.get(queue.role()).copied().unwrap_or(1);
            topology.add_work_queue(config, &names.queue(queue), &sources, shards)?;
            for (exchange, key) in retired_sources(queue) {
                let (destination, to_exchange) = if shards <= 1 {
                    (names.queue(queue), false)
                } else {
                    (Names::shard_exchange(&names.queue(queue)), true)
                };
                topology.retired_bindings.push(BindingDecl {
                    source: names.exchange(exchange),
                    destination,
                    to_exchange,
                    key: key.to_string(),
                });
            }
        }
        Ok(topology)
    }

    /// Adds work queue `name` bound to `sources`, with its retry tiers and DLQ; with
    /// `shards > 1`, as that many shard queues behind a consistent-hash exchange.
    pub fn add_work_queue(
        &mut self,
        config: &BrokerConfig,
        name: &str,
        sources: &[(String, String)],
        shards: usize,
    ) -> Result<()> {
        if shards <= 1 {
            self.add_single_queue(config, name, sources)
        } else {
            let exchange = Names::shard_exchange(name);
            self.exchanges.push(ExchangeDecl {
                name: exchange.clone(),
                kind: "x-consistent-hash".to_string(),
                args: [("hash-header".to_string(), Arg::Str(SHARD_KEY.to_string()))].into(),
            });
            for (source, key) in sources {
                self.bindings.push(BindingDecl {
                    source: source.clone(),
                    destination: exchange.clone(),
                    to_exchange: true,
                    key: key.clone(),
                });
            }
            for index in 0..shards {
                // Equal weights: the binding key of a consistent-hash exchange is a weight.
                let binding = [(exchange.clone(), "1".to_string())];
                self.add_single_queue(config, &Names::shard_queue(name, index), &binding)?;
            }
            Ok(())
        }
    }

    fn add_single_queue(
        &mut self,
        config: &BrokerConfig,
        name: &str,
        sources: &[(String, String)],
    ) -> Result<()> {
        let spec = WorkQueueSpec::new(config, name)?;
        let quorum = |extra: &[(&str, Arg)]| -> BTreeMap<String, Arg> {
            let mut args: BTreeMap<String, Arg> = [
                ("x-queue-type".to_string(), Arg::Str("quorum".into())),
                // at-least-once dead-lettering needs reject-publish overflow; it keeps a
                // message until the dead-letter target confirmed it.
                (
                    "x-dead-letter-strategy".to_string(),
                    Arg::Str("at-least-once".into()),
                ),
                ("x-overflow".to_string(), Arg::Str("reject-publish".into())),
            ]
            .into();
            for (k, v) in extra {
                args.insert((*k).to_string(), v.clone());
            }
            args
        };
        let mut work_args = vec![
            (
                "x-dead-letter-exchange",
                Arg::Str(spec.dead_letter_exchange.clone()),
            ),
            ("x-dead-letter-routing-key", Arg::Str(name.to_string())),
            (
                "x-delivery-limit",
                Arg::Int(i64::from(config.delivery_limit)),
            ),
        ];
        if config.single_active_consumer {
            work_args.push(("x-single-active-consumer", Arg::Bool(true)));
        }
        self.queues.push(QueueDecl {
            name: name.to_string(),
            args: quorum(&work_args),
            private: false,
        });
        for (tier, delay) in spec.retry_queues.iter().zip(&config.retry_delays_ms) {
            self.queues.push(QueueDecl {
                name: tier.clone(),
                args: quorum(&[
                    ("x-message-ttl", Arg::Int(*delay as i64)),
                    // The default exchange routes by queue name: back to the work queue.
                    ("x-dead-letter-exchange", Arg::Str(String::new())),
                    ("x-dead-letter-routing-key", Arg::Str(name.to_string())),
                ]),
                private: false,
            });
        }
        self.queues.push(QueueDecl {
            name: spec.dlq.clone(),
            args: [("x-queue-type".to_string(), Arg::Str("quorum".into()))].into(),
            private: false,
        });
        self.bindings.push(BindingDecl {
            source: spec.dead_letter_exchange.clone(),
            destination: spec.dlq.clone(),
            to_exchange: false,
            key: name.to_string(),
        });
        for (source, key) in sources {
            self.bindings.push(BindingDecl {
                source: source.clone(),
                destination: name.to_string(),
                to_exchange: false,
                key: key.clone(),
            });
        }
        self.work_queues.push(spec);
        Ok(())
    }

    /// Adds a private queue `name` bound to `sources`: exclusive to the connection that
    /// consumes it, gone when that connection closes, re-declared on reconnect (pass the
    /// topology as [`crate::ConsumeOptions::declare`]). Returns its spec for `consume`.
    pub fn add_private_queue(
        &mut self,
        config: &BrokerConfig,
        name: &str,
        sources: &[(String, String)],
    ) -> Result<WorkQueueSpec> {
        let mut spec = WorkQueueSpec::new(config, name)?;
        spec.retry_queues.clear();
        spec.discard_failures = true;
        self.queues.push(QueueDecl {
            name: name.to_string(),
            args: BTreeMap::new(),
            private: true,
        });
        for (source, key) in sources {
            self.bindings.push(BindingDecl {
                source: source.clone(),
                destination: name.to_string(),
                to_exchange: false,
                key: key.clone(),
            });
        }
        self.work_queues.push(spec.clone());
        Ok(spec)
    }

    /// The work queues consumed by a role: the queue itself, or its shards.
    pub fn work_queues_of(&self, base: &str) -> Vec<WorkQueueSpec> {
        let shard_prefix = format!("{base}.shard.");
        self.work_queues
            .iter()
            .filter(|w| w.name == base || w.name.starts_with(&shard_prefix))
            .cloned()
            .collect()
    }

    /// Declares everything; declaring twice changes nothing. A queue or exchange that
    /// exists with other settings is reported with the differing arguments and a fix.
    pub async fn apply(&self, broker: &Broker) -> Result<()> {
        let channel = broker.channel().await?;
        self.apply_on(broker, &channel).await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }

    /// [`Topology::apply`] on a given channel: private queues belong to its connection.
    pub async fn apply_on(&self, broker: &Broker, channel: &Channel) -> Result<()> {
        for exchange in &self.exchanges {
            if let Err(e) = declare_exchange(channel, exchange).await {
                return Err(self.explain(broker, "exchange", &exchange.name, e).await);
            }
        }
        for queue in &self.queues {
            let options = if queue.private {
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                }
            } else {
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                }
            };
            let result = channel
                .queue_declare(
                    queue.name.as_str().into(),
                    options,
                    field_table(&queue.args),
                )
                .await;
            if let Err(e) = result {
                return Err(self.explain(broker, "queue", &queue.name, e).await);
            }
        }
        for binding in &self.bindings {
            if binding.to_exchange {
                channel
                    .exchange_bind(
                        binding.destination.as_str().into(),
                        binding.source.as_str().into(),
                        binding.key.as_str().into(),
                        ExchangeBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            } else {
                channel
                    .queue_bind(
                        binding.destination.as_str().into(),
                        binding.source.as_str().into(),
                        binding.key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        // Removing a binding that is not there is not an error.
        for binding in &self.retired_bindings {
            if binding.to_exchange {
                channel
                    .exchange_unbind(
                        binding.destination.as_str().into(),
                        binding.source.as_str().into(),
                        binding.key.as_str().into(),
                        ExchangeUnbindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            } else {
                channel
                    .queue_unbind(
                        binding.destination.as_str().into(),
                        binding.source.as_str().into(),
                        binding.key.as_str().into(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes every queue and exchange of this topology (tests, and decommissioning).
    pub async fn delete(&self, broker: &Broker) -> Result<()> {
        let channel = broker.channel().await?;
        for queue in &self.queues {
            channel
                .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in &self.exchanges {
            channel
                .exchange_delete(
                    exchange.name.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }

    /// Turns a failed declare into an error that says what differs and how to fix it.
    async fn explain(
        &self,
        broker: &Broker,
        entity: &'static str,
        name: &str,
        error: lapin::Error,
    ) -> Error {
        let text = error.to_string();
        if text.contains("invalid exchange type")
            || text.contains("x-consistent-hash") && text.contains("COMMAND_INVALID")
        {
            return Error::MissingPlugin {
                plugin: "rabbitmq_consistent_hash_exchange",
                what: format!("exchange `{name}` (a sharded work queue)"),
                detail: text,
            };
        }
        if !text.contains("PRECONDITION_FAILED") && !text.contains("inequivalent") {
            return Error::Amqp(error);
        }
        let details = match self.differences(broker, entity, name).await {
            Some(list) if !list.is_empty() => list.join("; "),
            _ => text,
        };
        let fix = if entity == "queue" {
            format!(
                "a queue's arguments cannot change in place. Move or drain its messages \
                 (`tickwatch dlq …`, or the management UI), delete it (`rabbitmqctl delete_queue {name}`) \
                 and run `tickwatch topology apply` again — or use another broker.prefix"
            )
        } else {
            format!(
                "delete the exchange (`rabbitmqctl eval 'rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"{name}\">>), false, <<\"tickwatch\">>).'` \
                 or the management UI) and apply again — or use another broker.prefix"
            )
        };
        Error::TopologyMismatch {
            entity,
            name: name.to_string(),
            details,
            fix,
        }
    }

    /// Every argument where the broker's entity and ours differ, per the management API.
    async fn differences(&self, broker: &Broker, entity: &str, name: &str) -> Option<Vec<String>> {
        let management = Management::new(broker.config()).ok()?;
        let (ours, theirs) = if entity == "queue" {
            let ours = self.queues.iter().find(|q| q.name == name)?.args.clone();
            (ours, management.queue(name).await.ok()??)
        } else {
            let decl = self.exchanges.iter().find(|e| e.name == name)?;
            let theirs = management.exchange(name).await.ok()??;
            let mut out = Vec::new();
            if theirs.get("type").and_then(Value::as_str) != Some(decl.kind.as_str()) {
                out.push(format!(
                    "type: the broker has {}, tickwatch declares {:?}",
                    theirs.get("type").unwrap_or(&Value::Null),
                    decl.kind
                ));
            }
            if !out.is_empty() {
                return Some(out);
            }
            (decl.args.clone(), theirs)
        };
        let their_args = theirs
            .get("arguments")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for (key, value) in &ours {
            match their_args.get(key) {
                Some(v) if value.matches_json(v) => {}
                Some(v) => out.push(format!(
                    "{key}: the broker has {v}, tickwatch declares {value}"
                )),
                None => out.push(format!(
                    "{key}: the broker has none, tickwatch declares {value}"
                )),
            }
        }
        for (key, v) in &their_args {
            if !ours.contains_key(key) {
                out.push(format!(
                    "{key}: the broker has {v}, tickwatch declares none"
                ));
            }
        }
        Some(out)
    }

    /// A RabbitMQ definitions document (`rabbitmqctl import_definitions`, or the
    /// `load_definitions` setting) holding this topology for `vhost`.
    pub fn definitions(&self, vhost: &str) -> Value {
        let args = |map: &BTreeMap<String, Arg>| -> Value {
            map.iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "exchanges": self.exchanges.iter().map(|e| json!({
                "name": e.name, "vhost": vhost, "type": e.kind, "durable": true,
                "auto_delete": false, "internal": false, "arguments": args(&e.args),
            })).collect::<Vec<_>>(),
            "queues": self.queues.iter().filter(|q| !q.private).map(|q| json!({
                "name": q.name, "vhost": vhost, "durable": true, "auto_delete": false,
                "arguments": args(&q.args),
            })).collect::<Vec<_>>(),
            "bindings": self.bindings.iter().map(|b| json!({
                "source": b.source, "vhost": vhost, "destination": b.destination,
                "destination_type": if b.to_exchange { "exchange" } else { "queue" },
                "routing_key": b.key, "arguments": {},
            })).collect::<Vec<_>>(),
        })
    }
}

async fn declare_exchange(channel: &Channel, exchange: &ExchangeDecl) -> lapin::Result<()> {
    let kind = match exchange.kind.as_str() {
        "topic" => ExchangeKind::Topic,
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_string()),
    };
    channel
        .exchange_declare(
            exchange.name.as_str().into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            field_table(&exchange.args),
        )
        .await
}

fn field_table(args: &BTreeMap<String, Arg>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in args {
        table.insert(ShortString::from(k.as_str()), v.to_amqp());
    }
    table
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show_args = |args: &BTreeMap<String, Arg>| -> String {
            args.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(f, "exchanges:")?;
        for e in &self.exchanges {
            writeln!(f, "  {:<40} {:<18} {}", e.name, e.kind, show_args(&e.args))?;
        }
        writeln!(f, "queues:")?;
        for q in &self.queues {
            writeln!(f, "  {:<40} {}", q.name, show_args(&q.args))?;
        }
        writeln!(f, "bindings:")?;
        for b in &self.bindings {
            let arrow = if b.to_exchange { "=>" } else { "->" };
            writeln!(
                f,
                "  {:<24} {arrow} {:<40} key {}",
                b.source, b.destination, b.key
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_topology_has_every_entity_of_the_design() {
        let topology = Topology::standard(&BrokerConfig::default()).expect("valid");
        let names: Vec<&str> = topology.exchanges.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tw.market",
                "tw.signals",
                "tw.alerts",
                "tw.notify",
                "tw.control",
                "tw.dlx"
            ]
        );
        let queue = |n: &str| topology.queues.iter().find(|q| q.name == n).expect(n);
        let alerts = queue("tw.alerts.q");
        assert_eq!(alerts.args["x-queue-type"], Arg::Str("quorum".into()));
        assert_eq!(
            alerts.args["x-dead-letter-exchange"],
            Arg::Str("tw.dlx".into())
        );
        assert_eq!(alerts.args["x-delivery-limit"], Arg::Int(20));
        let tier = queue("tw.alerts.q.retry.2");
        assert_eq!(tier.args["x-message-ttl"], Arg::Int(10_000));
        assert_eq!(
            tier.args["x-dead-letter-routing-key"],
            Arg::Str("tw.alerts.q".into())
        );
        queue("tw.notify.telegram.q.dlq");
        queue("tw.notify.system.q.dlq");
        assert!(topology.bindings.contains(&BindingDecl {
            source: "tw.signals".into(),
            destination: "tw.alerts.q".into(),
            to_exchange: false,
            key: "signal.#".into(),
        }));
        assert!(topology.bindings.contains(&BindingDecl {
            source: "tw.notify".into(),
            destination: "tw.notify.system.q".into(),
            to_exchange: false,
            key: "telegram.system".into(),
        }));
        // Six work queues, each with three retry tiers and a DLQ.
        assert_eq!(topology.queues.len(), 6 * 5);
        assert!(topology.bindings.contains(&BindingDecl {
            source: "tw.signals".into(),
            destination: "tw.paper.q".into(),
            to_exchange: false,
            key: "signal.#".into(),
        }));
    }

    #[test]
    fn sharded_queue_sits_behind_a_consistent_hash_exchange() {
        let config = BrokerConfig {
            shards: [("alerts".to_string(), 4)].into(),
            ..Default::default()
        };
        let topology = Topology::standard(&config).expect("valid");
        let shards = topology.work_queues_of("tw.alerts.q");
        assert_eq!(shards.len(), 4);
        assert_eq!(shards[3].name, "tw.alerts.q.shard.3");
        let exchange = topology
            .exchanges
            .iter()
            .find(|e| e.name == "tw.alerts.q.shards")
            .expect("shard exchange");
        assert_eq!(exchange.kind, "x-consistent-hash");
        assert!(topology.bindings.iter().any(|b| b.to_exchange
            && b.source == "tw.market"
            && b.destination == "tw.alerts.q.shards"
            && b.key == "tick.#"));
        assert!(!topology.queues.iter().any(|q| q.name == "tw.alerts.q"));
    }
}
