//! `tickwatch bench broker`: raw lapin against tickwatch's publisher and consumer runtime,
//! in one run on the same broker, with the same persistent ~150-byte messages. Both sides
//! get an identical topology — the market topic exchange and a work queue declared as
//! tickwatch declares it (quorum, at-least-once dead-lettering, delivery limit, single
//! active consumer) — so only the client code differs. Each side publishes with a window
//! of pipelined confirms while consuming with manual acks; the figure is messages per
//! second from the first publish to the last message consumed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use rust_decimal::Decimal;
use serde::Serialize;
use tickwatch_schema::names::{Exchange, routing};
use tickwatch_schema::wire::{self, Tick};
use tokio_util::sync::CancellationToken;

use crate::consumer::{Handler, Incoming, consume};
use crate::error::{Error, Result};
use crate::publisher::Publisher;
use crate::topology::{Arg, BindingDecl, ExchangeDecl, QueueDecl, Topology};
use crate::{Broker, BrokerConfig};

#[derive(Debug, Clone, Serialize)]
pub struct BrokerBench {
    pub messages: u64,
    pub body_bytes: usize,
    pub raw_msgs_per_s: f64,
    pub runtime_msgs_per_s: f64,
    pub ratio: f64,
    /// Raw lapin on a plain quorum queue (no dead-lettering, delivery limit or single
    /// active consumer): what those guarantees cost on the broker, for reference.
    pub raw_plain_queue_msgs_per_s: f64,
}

fn sample_tick(seq: u64) -> Tick {
    Tick {
        venue: "binance".into(),
        symbol: format!("SYM{:03}", seq % 100),
        price: Decimal::new(6_432_112 + (seq % 997) as i64, 2),
        qty: Decimal::new(13, 3),
        ts: 1_763_762_400_123 + seq as i64,
        // Padded so the body is ~150 bytes, the size the benchmark is specified for.
        trade_id: Some(format!("{:048}", seq)),
    }
}

/// Runs both sides with `messages` each under a throwaway prefix, and cleans up.
pub async fn run(mut config: BrokerConfig, messages: u64) -> Result<BrokerBench> {
    config.prefix = format!(
        "twbench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let broker = Broker::connect(config.clone(), &config.prefix).await?;
    let body_bytes = wire::encode(&sample_tick(0))?.body.len();
    let raw = raw_lapin(&broker, &config, messages, false).await;
    let runtime = through_runtime(&broker, &config, messages).await;
    let plain = raw_lapin(&broker, &config, messages, true).await;
    broker.close();
    let (raw, runtime, plain) = (raw?, runtime?, plain?);
    Ok(BrokerBench {
        messages,
        body_bytes,
        raw_msgs_per_s: raw,
        runtime_msgs_per_s: runtime,
        ratio: runtime / raw,
        raw_plain_queue_msgs_per_s: plain,
    })
}

/// The market exchange and one work queue `<prefix>.<name>.q` bound to every tick (with
/// `plain`, a quorum queue without tickwatch's arguments).
async fn bench_topology(
    broker: &Broker,
    config: &BrokerConfig,
    name: &str,
    plain: bool,
) -> Result<(Topology, String)> {
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
    let queue = format!("{}.{name}.q", config.prefix);
    let source = (
        names.exchange(Exchange::Market),
        routing::ALL_TICKS.to_string(),
    );
    if plain {
        topology.queues.push(QueueDecl {
            name: queue.clone(),
            args: [("x-queue-type".to_string(), Arg::Str("quorum".into()))].into(),
            private: false,
        });
        topology.bindings.push(BindingDecl {
            source: source.0,
            destination: queue.clone(),
            to_exchange: false,
            key: source.1,
        });
    } else {
        topology.add_work_queue(config, &queue, &[source], 1)?;
    }
    topology.apply(broker).await?;
    Ok((topology, queue))
}

/// A raw lapin consumer of `queue` with manual acks and prefetch 256, on a channel of its
/// own (close it when done).
async fn raw_consumer(
    broker: &Broker,
    queue: &str,
    tag: &str,
) -> Result<(lapin::Channel, lapin::Consumer)> {
    let channel = broker.channel().await?;
    channel.basic_qos(256, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// Straight lapin, as a careful user writes it: a confirm window of 1,000, one ack per
/// message, prefetch 256.
async fn raw_lapin(
    broker: &Broker,
    config: &BrokerConfig,
    messages: u64,
    plain: bool,
) -> Result<f64> {
    let name = if plain { "plain" } else { "raw" };
    let (topology, queue) = bench_topology(broker, config, name, plain).await?;
    let exchange = broker.names().exchange(Exchange::Market);
    let (consumer_channel, mut consumer) = raw_consumer(broker, &queue, "bench").await?;
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut n = 0;
        while n < messages {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    n += 1;
                }
                Some(Err(e)) => return Err(Error::Amqp(e)),
                None => return Err(Error::Closed),
            }
        }
        // The consumer goes back with the time: dropped here, it would cancel itself
        // while the queue is deleted, and lapin takes the broker's second cancel-ok for a
        // protocol error that closes the whole connection.
        Ok::<_, Error>((Instant::now(), consumer))
    });
    let publish_channel = broker.channel().await?;
    publish_with_confirms(&publish_channel, &exchange, messages).await?;
    let (end, consumer) = consuming.await.map_err(|e| Error::Dlq(e.to_string()))??;
    let _ = consumer_channel.close(200, "OK".into()).await;
    drop(consumer);
    let _ = publish_channel.close(200, "OK".into()).await;
    topology.delete(broker).await?;
    Ok(messages as f64 / (end - start).as_secs_f64())
}

/// Publishes `messages` persistent ticks to `exchange` with their routing keys, with a
/// window of 1,000 pipelined confirms: plain lapin, the baseline of the benchmark.
async fn publish_with_confirms(
    channel: &lapin::Channel,
    exchange: &str,
    messages: u64,
) -> Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let ticks = (0..messages).map(|seq| {
        let encoded = wire::encode(&sample_tick(seq))?;
        let properties = raw_properties("tick")
            .with_message_id(encoded.meta.message_id.to_string().as_str().into());
        Ok((encoded.meta.routing_key, properties, encoded.body))
    });
    publish_windowed(channel, exchange, ticks).await
}

/// The properties raw lapin gives a persistent message of type `kind`.
fn raw_properties(kind: &str) -> lapin::BasicProperties {
    lapin::BasicProperties::default()
        .with_content_type(wire::CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_type(kind.into())
}

/// Publishes `(routing key, properties, body)` messages to `exchange`, mandatory, with a
/// window of 1,000 pipelined confirms (the channel in confirm mode).
async fn publish_windowed<K: AsRef<str>, B: AsRef<[u8]>>(
    channel: &lapin::Channel,
    exchange: &str,
    messages: impl IntoIterator<Item = Result<(K, lapin::BasicProperties, B)>>,
) -> Result<()> {
    let mut window = VecDeque::new();
    for message in messages {
        let (routing_key, properties, body) = message?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.as_ref().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body.as_ref(),
                properties,
            )
            .await?;
        window.push_back(confirm);
        if window.len() >= 1_000
            && let Some(front) = window.pop_front()
        {
            front.await?;
        }
    }
    for confirm in window {
        confirm.await?;
    }
    Ok(())
}

/// Raw lapin publishing with confirms (a window of 1,000) of already encoded messages —
/// `(routing key, type, body)` — to `exchange`: messages per second. With the topology a
/// producer publishes into, this is its baseline: same messages, same routing, same queues.
pub async fn raw_publish(
    broker: &Broker,
    exchange: &str,
    messages: &[(String, &'static str, Vec<u8>)],
) -> Result<f64> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let start = Instant::now();
    let outgoing = messages.iter().map(|(routing_key, kind, body)| {
        let properties =
            raw_properties(kind).with_message_id(uuid::Uuid::now_v7().to_string().as_str().into());
        Ok((routing_key, properties, body))
    });
    publish_windowed(&channel, exchange, outgoing).await?;
    let rate = messages.len() as f64 / start.elapsed().as_secs_f64();
    let _ = channel.close(200, "OK".into()).await;
    Ok(rate)
}

#[derive(Clone)]
struct Count(Arc<AtomicU64>, Arc<tokio::sync::Notify>, u64);

impl Handler for Count {
    async fn handle(&mut self, _message: &Incoming) -> crate::consumer::Outcome {
        if self.0.fetch_add(1, Ordering::Relaxed) + 1 == self.2 {
            self.1.notify_one();
        }
        Ok(crate::consumer::Handled::Done)
    }
}

/// The same traffic through [`Publisher`] (typed messages, full contract properties,
/// mandatory) and [`consume`] (a work queue with retry tiers and DLQ).
async fn through_runtime(broker: &Broker, config: &BrokerConfig, messages: u64) -> Result<f64> {
    let (topology, _) = bench_topology(broker, config, "runtime", false).await?;
    let spec = topology.work_queues[0].clone();
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn({
        let (b, s, h, t) = (
            broker.clone(),
            spec.clone(),
            Count(count.clone(), done.clone(), messages),
            shutdown.clone(),
        );
        async move { consume(&b, &s, h, t).await }
    });
    let publisher = Publisher::start(broker, "bench");
    let finished = done.notified();
    let start = Instant::now();
    let mut confirms = VecDeque::new();
    for seq in 0..messages {
        confirms.push_back(publisher.send(Exchange::Market, &sample_tick(seq)).await?);
        if confirms.len() >= 1_000
            && let Some(front) = confirms.pop_front()
        {
            front.wait().await?;
        }
    }
    for confirm in confirms {
        confirm.wait().await?;
    }
    tokio::time::timeout(Duration::from_secs(600), finished)
        .await
        .map_err(|_| Error::Timeout(Duration::from_secs(600)))?;
    let elapsed = start.elapsed();
    shutdown.cancel();
    let _ = consumer.await;
    publisher.close().await;
    topology.delete(broker).await?;
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// Fills `queue` straight through the default exchange with already encoded messages —
/// `(routing key, type, body)`; the routing key goes in the `tw-original-routing-key`
/// header, as if published to the market exchange — with a window of 1,000 confirms.
pub async fn fill(
    broker: &Broker,
    queue: &str,
    messages: &[(String, &'static str, Vec<u8>)],
) -> Result<()> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let outgoing = messages.iter().map(|(routing_key, kind, body)| {
        let mut headers = FieldTable::default();
        crate::headers::set_str(
            &mut headers,
            crate::headers::ORIGINAL_ROUTING_KEY,
            routing_key,
        );
        let properties = raw_properties(kind)
            .with_message_id(uuid::Uuid::now_v7().to_string().as_str().into())
            .with_headers(headers);
        Ok((queue, properties, body))
    });
    publish_windowed(&channel, "", outgoing).await?;
    let _ = channel.close(200, "OK".into()).await;
    Ok(())
}

/// Raw lapin draining `messages` already in `queue` — prefetch 256, and one ack per
/// message (`ack_every` 1, as a careful user writes it) or a cumulative ack every
/// `ack_every` messages (the fastest a consumer drains a quorum queue): messages per
/// second, from the first delivery to the last ack. The reference a role draining the
/// same backlog is measured against.
pub async fn raw_drain(broker: &Broker, queue: &str, messages: u64, ack_every: u64) -> Result<f64> {
    let (channel, mut consumer) = raw_consumer(broker, queue, "raw-drain").await?;
    let mut start = None;
    let mut n = 0;
    while n < messages {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                start.get_or_insert_with(Instant::now);
                n += 1;
                if n % ack_every.max(1) == 0 || n == messages {
                    delivery
                        .ack(BasicAckOptions {
                            multiple: ack_every > 1,
                        })
                        .await?;
                }
            }
            Some(Err(e)) => return Err(Error::Amqp(e)),
            None => return Err(Error::Closed),
        }
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    let _ = channel.close(200, "OK".into()).await;
    drop(consumer);
    Ok(messages as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Messages ready in `queue` (not counting those delivered and not yet acknowledged).
pub async fn ready(broker: &Broker, queue: &str) -> Result<u32> {
    let channel = broker.channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "OK".into()).await;
    Ok(declared.message_count())
}

/// The raw broker's one-queue publish+consume ceiling: raw lapin publishing `messages`
/// ticks with confirms into a work queue declared as tickwatch declares it, while
/// consuming them with one ack each (messages per second). It declares the market
/// exchange under `broker`'s prefix and deletes it afterwards: give it a prefix of its own.
pub async fn raw_ceiling(broker: &Broker, messages: u64) -> Result<f64> {
    raw_lapin(broker, broker.config(), messages, false).await
}

/// Sends due at `rate` per second since `start`, given `sent` already sent.
pub fn due(start: Instant, rate: f64, sent: u64) -> u64 {
    ((start.elapsed().as_secs_f64() * rate) as u64).saturating_sub(sent)
}

/// A raw publish→consume hop at `rate` messages per second for `messages` messages:
/// raw lapin publishing ticks (a confirm window of 1,000) to the market exchange, into a
/// work queue declared as tickwatch declares it, and consuming them (one ack each). Each
/// message's latency, from just before its publish to its delivery. The reference the
/// pipeline's latency is measured against. Like [`raw_ceiling`], on a prefix of its own.
pub async fn raw_hop(broker: &Broker, rate: f64, messages: u64) -> Result<Vec<Duration>> {
    let (topology, queue) = bench_topology(broker, broker.config(), "hop", false).await?;
    let exchange = broker.names().exchange(Exchange::Market);
    let (consumer_channel, mut consumer) = raw_consumer(broker, &queue, "bench-hop").await?;
    let consuming = tokio::spawn(async move {
        let mut received = Vec::with_capacity(messages as usize);
        while (received.len() as u64) < messages {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let at = Instant::now();
                    let tick: Tick = wire::decode(&delivery.data)?;
                    let seq = tick
                        .trade_id
                        .as_deref()
                        .and_then(|id| id.parse::<u64>().ok())
                        .unwrap_or(u64::MAX);
                    received.push((seq, at));
                    delivery.ack(BasicAckOptions::default()).await?;
                }
                Some(Err(e)) => return Err(Error::Amqp(e)),
                None => return Err(Error::Closed),
            }
        }
        Ok::<_, Error>((received, consumer))
    });
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut sent_at = Vec::with_capacity(messages as usize);
    let mut window = VecDeque::new();
    let start = Instant::now();
    while (sent_at.len() as u64) < messages {
        let n = due(start, rate, sent_at.len() as u64).min(messages - sent_at.len() as u64);
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..n {
            let seq = sent_at.len() as u64;
            let encoded = wire::encode(&sample_tick(seq))?;
            let properties = raw_properties("tick")
                .with_message_id(encoded.meta.message_id.to_string().as_str().into());
            sent_at.push(Instant::now());
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    encoded.meta.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &encoded.body,
                    properties,
                )
                .await?;
            window.push_back(confirm);
            if window.len() >= 1_000
                && let Some(front) = window.pop_front()
            {
                front.await?;
            }
        }
    }
    for confirm in window {
        confirm.await?;
    }
    let (received, consumer) = consuming.await.map_err(|e| Error::Dlq(e.to_string()))??;
    let _ = consumer_channel.close(200, "OK".into()).await;
    drop(consumer);
    let _ = channel.close(200, "OK".into()).await;
    topology.delete(broker).await?;
    Ok(received
        .into_iter()
        .filter_map(|(seq, at)| Some(at - *sent_at.get(seq as usize)?))
        .collect())
}

/// One message a [`Tap`] saw: when it arrived, its AMQP type and its body.
#[derive(Debug, Clone)]
pub struct Tapped {
    pub at: Instant,
    pub kind: String,
    pub body: Vec<u8>,
}

/// A tap on exchanges for a benchmark: a private queue bound to each `(exchange, key)`,
/// consumed without acks, every message kept with the instant it arrived.
#[derive(Debug)]
pub struct Tap {
    seen: Arc<std::sync::Mutex<Vec<Tapped>>>,
    channel: lapin::Channel,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    pub async fn start(broker: &Broker, bindings: &[(Exchange, &str)]) -> Result<Tap> {
        let channel = broker.channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        for (exchange, key) in bindings {
            channel
                .queue_bind(
                    queue.name().as_str().into(),
                    broker.names().exchange(*exchange).as_str().into(),
                    (*key).into(),
                    lapin::options::QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "bench-tap".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let tapped = Tapped {
                        at: Instant::now(),
                        kind: delivery
                            .properties
                            .kind()
                            .as_ref()
                            .map(|k| k.as_str().to_string())
                            .unwrap_or_default(),
                        body: delivery.data,
                    };
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(tapped);
                }
            }
        });
        Ok(Tap {
            seen,
            channel,
            task,
        })
    }

    /// What arrived since the last call.
    pub fn take(&self) -> Vec<Tapped> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "OK".into()).await;
        self.task.abort();
    }
}
