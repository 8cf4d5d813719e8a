//! The consumer runtime: `consume(queue, handler, shutdown)`.
//!
//! Deliveries are handled one at a time, in queue order (a symbol's state needs its
//! messages in order). A delivery is acknowledged only after its handler succeeded — or
//! after its failure was itself durably handed on: a transient failure is published to the
//! next retry tier (`tw-attempt` counts attempts), a failure past the last tier or a poison
//! message is published to the queue's DLQ with the reason, the error, the attempts, the
//! original exchange and routing key and the time of first failure. Finished deliveries
//! are acknowledged in batches (`multiple = true`) and flushed on a short timer, since one
//! ack per message costs a round trip. A handler that panics or hangs counts as a
//! transient failure. Connection loss is survived by reconnecting with backoff; what was
//! unacknowledged comes back from the broker (handlers are idempotent).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tickwatch_schema::wire::{self, Message, MessageKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::connection::{Backoff, Broker};
use crate::error::{Error, Result};
use crate::headers;
use crate::publisher::{OutgoingMessage, Publisher};
use crate::topology::{Topology, WorkQueueSpec};

/// Why a dead-lettered message is in the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Undecodable, wrong schema, or breaking the contract: dead-lettered at once.
    Invalid,
    /// Failed on every attempt of every retry tier.
    Exhausted,
    /// Refused by the handler for good (not malformed, but never processable).
    Rejected,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Invalid => "invalid",
            DeadReason::Exhausted => "exhausted",
            DeadReason::Rejected => "rejected",
        }
    }
}

/// What a handler says about a delivery it could not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// May work later (a database hiccup, Telegram 5xx): next retry tier, then the DLQ.
    Transient(String),
    /// Poison: undecodable or invalid. DLQ at once, reason `invalid`.
    Invalid(String),
    /// Will never work (e.g. refused by a downstream for good). DLQ at once, `rejected`.
    Rejected(String),
    /// Hold this delivery and try it again after the delay, without spending an attempt
    /// (a circuit breaker probing a dead downstream): the queue waits, nothing moves.
    Backoff(Duration),
}

impl HandlerError {
    /// Maps a library error through its `is_retryable()`.
    pub fn classify(retryable: bool, error: impl std::fmt::Display) -> Self {
        if retryable {
            HandlerError::Transient(error.to_string())
        } else {
            HandlerError::Rejected(error.to_string())
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Transient(e) => write!(f, "transient: {e}"),
            HandlerError::Invalid(e) => write!(f, "invalid: {e}"),
            HandlerError::Rejected(e) => write!(f, "rejected: {e}"),
            HandlerError::Backoff(d) => write!(f, "back off for {d:?}"),
        }
    }
}

impl From<tickwatch_schema::Error> for HandlerError {
    fn from(e: tickwatch_schema::Error) -> Self {
        if e.is_retryable() {
            HandlerError::Transient(e.to_string())
        } else {
            HandlerError::Invalid(e.to_string())
        }
    }
}

impl From<Error> for HandlerError {
    fn from(e: Error) -> Self {
        HandlerError::classify(e.is_retryable(), e)
    }
}

/// One delivery as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub queue: String,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    /// The AMQP `type` property.
    pub kind: Option<String>,
    /// Where it was first published (kept across retry hops).
    pub exchange: String,
    pub routing_key: String,
    /// 1 for the first delivery attempt, 2 after one retry tier, …
    pub attempt: u32,
    /// The broker redelivered it (a consumer died holding it).
    pub redelivered: bool,
    pub properties: BasicProperties,
}

impl Incoming {
    fn from_delivery(queue: &str, delivery: &Delivery) -> Self {
        let headers = delivery.properties.headers().as_ref();
        Incoming {
            queue: queue.to_string(),
            body: delivery.data.clone(),
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_string()),
            kind: delivery
                .properties
                .kind()
                .as_ref()
                .map(|s| s.as_str().to_string()),
            exchange: headers::get_str(headers, headers::ORIGINAL_EXCHANGE)
                .unwrap_or_else(|| delivery.exchange.as_str().to_string()),
            routing_key: headers::get_str(headers, headers::ORIGINAL_ROUTING_KEY)
                .unwrap_or_else(|| delivery.routing_key.as_str().to_string()),
            attempt: headers::get_i64(headers, headers::HEADER_ATTEMPT)
                .and_then(|a| u32::try_from(a).ok())
                .filter(|a| *a >= 1)
                .unwrap_or(1),
            redelivered: delivery.redelivered,
            properties: delivery.properties.clone(),
        }
    }

    /// The message type from the `type` property.
    pub fn message_kind(&self) -> Option<MessageKind> {
        self.kind.as_deref().and_then(|k| k.parse().ok())
    }

    /// Decodes the body as `M`, checking the `type` property; a failure is `Invalid`.
    pub fn decode<M: Message>(&self) -> std::result::Result<M, HandlerError> {
        wire::check_kind::<M>(self.kind.as_deref())
            .map_err(|e| HandlerError::Invalid(e.to_string()))?;
        wire::decode::<M>(&self.body).map_err(|e| HandlerError::Invalid(e.to_string()))
    }

    pub fn header(&self, key: &str) -> Option<String> {
        headers::get_str(self.properties.headers().as_ref(), key)
    }

    /// The W3C trace context the publisher put in the headers.
    pub fn trace_context(&self) -> opentelemetry::Context {
        headers::extract_trace(self.properties.headers().as_ref())
    }
}

/// Handles deliveries of one queue, one at a time.
pub trait Handler: Send + 'static {
    fn handle(
        &mut self,
        message: &Incoming,
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send;
}

/// Optional behaviour of a consumer.
#[derive(Debug, Clone, Default)]
pub struct ConsumeOptions {
    /// While `true`, no new delivery is taken (messages stay queued); used for an admin's
    /// global halt.
    pub pause: Option<watch::Receiver<bool>>,
    /// Declared again on every (re)connect before consuming (e.g. an exclusive queue).
    pub declare: Option<Arc<Topology>>,
    /// Extra `basic.consume` arguments.
    pub arguments: FieldTable,
}

enum SessionEnd {
    Shutdown,
    Broken(String),
}

enum Processed {
    Finished,
    /// Shutdown came while the handler asked to hold the delivery: leave it unacked.
    Interrupted,
}

/// Consumes `queue` until `shutdown`: reconnects with backoff on any broker failure.
pub async fn consume<H: Handler>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    handler: H,
    shutdown: CancellationToken,
) -> Result<()> {
    consume_with(broker, queue, handler, shutdown, ConsumeOptions::default()).await
}

/// [`consume`] with options.
pub async fn consume_with<H: Handler>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    let component = format!("consumer:{}", queue.name);
    let failures = Publisher::start(broker, &format!("{component}:failures"));
    let mut runtime = Runtime {
        broker: broker.clone(),
        queue: queue.clone(),
        handler,
        failures: failures.clone(),
        component: component.clone(),
        handler_timeout: Duration::from_millis(broker.config().handler_timeout_ms),
        options,
    };
    let mut backoff = Backoff::new(
        broker.config().reconnect_min(),
        broker.config().reconnect_max(),
    );
    let result = loop {
        let Some(channel) = broker.channel_with_retry(&component, &shutdown).await else {
            break Ok(());
        };
        let reason = match runtime.session(&channel, &shutdown, &mut backoff).await {
            Ok(SessionEnd::Shutdown) => {
                let _ = channel.close(200, "OK".into()).await;
                break Ok(());
            }
            Ok(SessionEnd::Broken(reason)) => reason,
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => break Err(e),
        };
        broker.health().set(&component, false, &reason);
        let delay = backoff.next_delay();
        tracing::warn!(queue = %queue.name, %reason, retry_in = ?delay, "consumer lost its channel; reconnecting");
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    };
    failures.close().await;
    broker.health().remove(&component);
    result
}

struct Runtime<H> {
    broker: Broker,
    queue: WorkQueueSpec,
    handler: H,
    failures: Publisher,
    component: String,
    handler_timeout: Duration,
    options: ConsumeOptions,
}

/// Finished deliveries not yet acknowledged: the newest one's acker acks them all.
#[derive(Default)]
struct AckBatch {
    last: Option<Acker>,
    count: usize,
}

impl AckBatch {
    fn add(&mut self, acker: Acker) {
        self.last = Some(acker);
        self.count += 1;
    }

    async fn flush(&mut self, queue: &str) -> Result<()> {
        if let Some(acker) = self.last.take() {
            let n = std::mem::take(&mut self.count);
            acker.ack(BasicAckOptions { multiple: true }).await?;
            metrics::counter!("tw_messages_acked_total", "queue" => queue.to_string())
                .increment(n as u64);
        }
        Ok(())
    }
}

impl<H: Handler> Runtime<H> {
    async fn session(
        &mut self,
        channel: &Channel,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd> {
        let config = self.broker.config();
        if let Some(topology) = &self.options.declare {
            topology.apply(&self.broker).await?;
        }
        channel
            .basic_qos(config.prefetch, BasicQosOptions { global: false })
            .await?;
        let tag = format!("{}:{}", self.broker.app_id(), uuid::Uuid::now_v7());
        let mut consumer = channel
            .basic_consume(
                self.queue.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                self.options.arguments.clone(),
            )
            .await?;
        self.broker.health().set(&self.component, true, "consuming");
        tracing::info!(queue = %self.queue.name, "consuming");
        let flush_after = Duration::from_millis(config.ack_flush_ms);
        let ack_batch = usize::from(config.ack_batch.min(config.prefetch));
        let mut acks = AckBatch::default();
        let end = loop {
            if let Some(pause) = self.options.pause.as_mut()
                && *pause.borrow()
            {
                acks.flush(&self.queue.name).await?;
                tracing::info!(queue = %self.queue.name, "paused: messages stay queued");
                self.broker.health().set(&self.component, true, "paused");
                let resumed = tokio::select! {
                    r = pause.wait_for(|paused| !*paused) => r.is_ok(),
                    _ = shutdown.cancelled() => false,
                };
                if !resumed {
                    break SessionEnd::Shutdown;
                }
                tracing::info!(queue = %self.queue.name, "resumed");
                self.broker.health().set(&self.component, true, "consuming");
            }
            let next = if acks.count > 0 {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                    next = tokio::time::timeout(flush_after, consumer.next()) => match next {
                        Ok(next) => next,
                        Err(_) => {
                            acks.flush(&self.queue.name).await?;
                            continue;
                        }
                    },
                }
            } else {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                    next = consumer.next() => next,
                }
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => break SessionEnd::Broken(e.to_string()),
                None => break SessionEnd::Broken("the broker cancelled the consumer".into()),
            };
            backoff.reset();
            match self.process(&delivery, shutdown).await? {
                Processed::Finished => {
                    acks.add(delivery.acker.clone());
                    if acks.count >= ack_batch {
                        acks.flush(&self.queue.name).await?;
                    }
                }
                Processed::Interrupted => break SessionEnd::Shutdown,
            }
        };
        if let SessionEnd::Shutdown = end {
            // Everything finished is acknowledged; the caller then closes the channel, which
            // returns the deliveries still buffered to the queue. No `basic.cancel` first:
            // with a single active consumer, cancelling would hand the queue to a standby
            // while those deliveries are still out, and the standby would see later
            // messages of a symbol before the returned earlier ones.
            acks.flush(&self.queue.name).await?;
        }
        Ok(end)
    }

    async fn process(
        &mut self,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Result<Processed> {
        let incoming = Incoming::from_delivery(&self.queue.name, delivery);
        let queue = self.queue.name.clone();
        metrics::counter!("tw_messages_consumed_total", "queue" => queue.clone()).increment(1);
        let span = tracing::info_span!(
            "consume",
            queue = %queue,
            message_id = incoming.message_id.as_deref().unwrap_or(""),
            kind = incoming.kind.as_deref().unwrap_or(""),
            routing_key = %incoming.routing_key,
            attempt = incoming.attempt,
        );
        let _ = span.set_parent(incoming.trace_context());
        async {
            let schema = incoming.header(headers::HEADER_SCHEMA);
            if let Err(e) = wire::check_schema_version(schema.as_deref()) {
                self.dead_letter(delivery, &incoming, DeadReason::Invalid, &e.to_string())
                    .await?;
                return Ok(Processed::Finished);
            }
            loop {
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    self.handler_timeout,
                    AssertUnwindSafe(self.handler.handle(&incoming)).catch_unwind(),
                )
                .await;
                metrics::histogram!("tw_handler_seconds", "queue" => queue.clone())
                    .record(started.elapsed().as_secs_f64());
                let result = match outcome {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(HandlerError::Transient(format!(
                        "handler panicked: {}",
                        panic_text(&panic)
                    ))),
                    Err(_) => Err(HandlerError::Transient(format!(
                        "handler did not finish within {:?}",
                        self.handler_timeout
                    ))),
                };
                match result {
                    Ok(()) => return Ok(Processed::Finished),
                    Err(HandlerError::Backoff(delay)) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(Processed::Interrupted),
                            _ = tokio::time::sleep(delay) => continue,
                        }
                    }
                    Err(HandlerError::Transient(error)) => {
                        self.retry_or_exhaust(delivery, &incoming, &error).await?;
                        return Ok(Processed::Finished);
                    }
                    Err(HandlerError::Invalid(error)) => {
                        self.dead_letter(delivery, &incoming, DeadReason::Invalid, &error)
                            .await?;
                        return Ok(Processed::Finished);
                    }
                    Err(HandlerError::Rejected(error)) => {
                        self.dead_letter(delivery, &incoming, DeadReason::Rejected, &error)
                            .await?;
                        return Ok(Processed::Finished);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Headers of a failure copy: the original route and first failure time are recorded
    /// once and carried along.
    fn failure_headers(&self, delivery: &Delivery, incoming: &Incoming) -> FieldTable {
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        let existing = Some(&table);
        if headers::get_str(existing, headers::ORIGINAL_EXCHANGE).is_none() {
            headers::set_str(&mut table, headers::ORIGINAL_EXCHANGE, &incoming.exchange);
        }
        if headers::get_str(Some(&table), headers::ORIGINAL_ROUTING_KEY).is_none() {
            headers::set_str(
                &mut table,
                headers::ORIGINAL_ROUTING_KEY,
                &incoming.routing_key,
            );
        }
        if headers::get_i64(Some(&table), headers::FIRST_FAILURE).is_none() {
            headers::set_i64(&mut table, headers::FIRST_FAILURE, now_ms());
        }
        table
    }

    async fn retry_or_exhaust(
        &mut self,
        delivery: &Delivery,
        incoming: &Incoming,
        error: &str,
    ) -> Result<()> {
        let attempt = incoming.attempt as usize;
        let Some(tier) = self.queue.retry_queues.get(attempt - 1) else {
            return self
                .dead_letter(delivery, incoming, DeadReason::Exhausted, error)
                .await;
        };
        let mut table = self.failure_headers(delivery, incoming);
        headers::set_i64(&mut table, headers::HEADER_ATTEMPT, attempt as i64 + 1);
        tracing::warn!(queue = %self.queue.name, attempt, retry_queue = %tier, %error, "handler failed; retrying later");
        metrics::counter!("tw_messages_retried_total", "queue" => self.queue.name.clone())
            .increment(1);
        self.failures
            .publish_raw(OutgoingMessage {
                exchange: String::new(),
                routing_key: tier.clone(),
                body: delivery.data.clone(),
                properties: delivery.properties.clone().with_headers(table),
                mandatory: true,
            })
            .await
    }

    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        incoming: &Incoming,
        reason: DeadReason,
        error: &str,
    ) -> Result<()> {
        let mut table = self.failure_headers(delivery, incoming);
        headers::set_str(&mut table, headers::DEAD_REASON, reason.as_str());
        headers::set_str(&mut table, headers::DEAD_ERROR, &truncate(error, 2_000));
        headers::set_str(&mut table, headers::DEAD_QUEUE, &self.queue.name);
        headers::set_i64(&mut table, headers::DEAD_AT, now_ms());
        headers::set_i64(
            &mut table,
            headers::HEADER_ATTEMPT,
            i64::from(incoming.attempt),
        );
        tracing::error!(
            queue = %self.queue.name,
            dlq = %self.queue.dlq,
            reason = reason.as_str(),
            attempts = incoming.attempt,
            %error,
            "message dead-lettered"
        );
        metrics::counter!(
            "tw_messages_dead_lettered_total",
            "queue" => self.queue.name.clone(),
            "reason" => reason.as_str()
        )
        .increment(1);
        self.failures
            .publish_raw(OutgoingMessage {
                exchange: self.queue.dead_letter_exchange.clone(),
                routing_key: self.queue.name.clone(),
                body: delivery.data.clone(),
                properties: delivery.properties.clone().with_headers(table),
                mandatory: true,
            })
            .await
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_string()
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(crate) fn now_ms() -> i64 {
    tickwatch_schema::db::now_ms()
}
