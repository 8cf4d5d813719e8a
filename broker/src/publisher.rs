//! The confirmed publisher. Every message is persistent, carries the contract's
//! properties and headers, and is `mandatory` where a missing route would lose it.
//!
//! One background task owns one channel in confirm mode and keeps up to `confirm_window`
//! messages awaiting their confirm (pipelined, never one round trip per message). A
//! caller hears back only when the broker confirmed, nacked or returned its message. When
//! the channel or connection drops, every unconfirmed message is published again, in its
//! original order, once a new channel is up: duplicates are possible, loss is not.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{
    self, CONTENT_TYPE, HEADER_SCHEMA, Message, Metadata, SCHEMA_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::connection::Broker;
use crate::error::{Error, Result};
use crate::headers;

/// AMQP headers.
pub type Headers = FieldTable;

/// Persistent JSON properties with a fresh message id and the given `type` and headers
/// (for raw publishing outside the typed path, e.g. tools and tests).
pub fn json_properties(kind: &str, headers: Headers) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(Uuid::now_v7().to_string().as_str().into())
        .with_type(kind.into())
        .with_headers(headers)
}

/// A message ready for the wire, with its exact properties.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    pub mandatory: bool,
}

struct Pending {
    message: OutgoingMessage,
    reply: oneshot::Sender<Result<()>>,
}

struct Inflight {
    pending: Pending,
    confirm: Pin<Box<PublisherConfirm>>,
}

/// A handle on the publishing task; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    requests: mpsc::Sender<Pending>,
    broker: Broker,
    timeout: Duration,
    stop: CancellationToken,
    done: Arc<tokio::sync::Notify>,
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A message handed to the publisher, not yet confirmed.
#[derive(Debug)]
pub struct Confirm {
    reply: oneshot::Receiver<Result<()>>,
    timeout: Duration,
    message_id: Uuid,
}

impl Confirm {
    /// Waits for the broker's confirm; returns the message id.
    pub async fn wait(self) -> Result<Uuid> {
        match tokio::time::timeout(self.timeout, self.reply).await {
            Ok(Ok(Ok(()))) => Ok(self.message_id),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }
}

/// Whether a missing route for this exchange is an error. Alerts and control messages
/// are informational fan-outs (the database holds the truth), so nobody listening is fine.
pub fn is_mandatory(exchange: Exchange) -> bool {
    !matches!(exchange, Exchange::Alerts | Exchange::Control)
}

impl Publisher {
    /// Starts the publishing task. It connects on its own and keeps reconnecting.
    pub fn start(broker: &Broker, component: &str) -> Publisher {
        let config = broker.config();
        let exchanges: Vec<String> = Exchange::ALL
            .iter()
            .map(|&e| broker.names().exchange(e))
            .collect();
        crate::events::PublisherStarted {
            exchanges: &exchanges,
        }
        .emit();
        let (tx, rx) = mpsc::channel(config.confirm_window.max(16));
        let stop = CancellationToken::new();
        let done = Arc::new(tokio::sync::Notify::new());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = PublishTask {
            broker: broker.clone(),
            component: component.to_string(),
            window: config.confirm_window,
            stop: stop.clone(),
        };
        let (done2, finished2) = (done.clone(), finished.clone());
        tokio::spawn(async move {
            task.run(rx).await;
            finished2.store(true, std::sync::atomic::Ordering::SeqCst);
            done2.notify_waiters();
        });
        Publisher {
            requests: tx,
            broker: broker.clone(),
            timeout: Duration::from_millis(config.publish_timeout_ms),
            stop,
            done,
            finished,
        }
    }

    /// Encodes, publishes and waits for the confirm. Returns the message id.
    pub async fn publish<M: Message>(&self, exchange: Exchange, message: &M) -> Result<Uuid> {
        self.send(exchange, message).await?.wait().await
    }

    /// Hands a message to the publisher (in order with every other `send`) and returns
    /// its pending confirm: send many, then wait for all, to pipeline.
    pub async fn send<M: Message>(&self, exchange: Exchange, message: &M) -> Result<Confirm> {
        let encoded = wire::encode(message)?;
        let mut extra = FieldTable::default();
        if let Some(key) = message.shard_key() {
            headers::set_str(&mut extra, headers::SHARD_KEY, &key);
        }
        let exchange_name = self.broker.names().exchange(exchange);
        // One span per published message: its context travels in `traceparent`, so the
        // consumer's span continues this trace (a tick's trace starts here).
        let span = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            message_id = %encoded.meta.message_id,
            kind = M::KIND.as_str(),
            exchange = %exchange_name,
            routing_key = %encoded.meta.routing_key,
        );
        let properties = span.in_scope(|| self.properties(&encoded.meta, extra));
        let outgoing = OutgoingMessage {
            exchange: exchange_name,
            routing_key: encoded.meta.routing_key.clone(),
            body: encoded.body,
            properties,
            mandatory: is_mandatory(exchange),
        };
        let mut confirm = self.send_raw(outgoing).await?;
        confirm.message_id = encoded.meta.message_id;
        Ok(confirm)
    }

    /// Publishes a message with exactly the given properties (retries, DLQ, replay).
    pub async fn publish_raw(&self, message: OutgoingMessage) -> Result<()> {
        self.send_raw(message).await?.wait().await.map(|_| ())
    }

    /// Hands over a message with exactly the given properties; see [`Publisher::send`].
    pub async fn send_raw(&self, message: OutgoingMessage) -> Result<Confirm> {
        let message_id = message
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| id.as_str().parse().ok())
            .unwrap_or(Uuid::nil());
        let (reply, rx) = oneshot::channel();
        let enqueue = self.requests.send(Pending { message, reply });
        match tokio::time::timeout(self.timeout, enqueue).await {
            Ok(Ok(())) => Ok(Confirm {
                reply: rx,
                timeout: self.timeout,
                message_id,
            }),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// The contract's properties for a message: persistent, typed, stamped, traced.
    pub fn properties(&self, meta: &Metadata, mut headers: FieldTable) -> BasicProperties {
        headers::set_i64(&mut headers, HEADER_SCHEMA, i64::from(SCHEMA_VERSION));
        headers::set_i64(
            &mut headers,
            headers::SENT_AT,
            tickwatch_schema::db::now_ms(),
        );
        let context = tracing::Span::current().context();
        headers::inject_trace(&context, &mut headers);
        BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_message_id(meta.message_id.to_string().as_str().into())
            .with_type(meta.kind.as_str().into())
            .with_timestamp(meta.timestamp_s)
            .with_app_id(self.broker.app_id().into())
            .with_headers(headers)
    }

    /// Stops taking messages, waits until every accepted one is confirmed (or the broker
    /// stays unreachable past the publish timeout), and closes the channel.
    pub async fn close(&self) {
        let notified = self.done.notified();
        self.stop.cancel();
        if self.finished.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(self.timeout, notified).await;
    }
}

struct PublishTask {
    broker: Broker,
    component: String,
    window: usize,
    stop: CancellationToken,
}

/// The front confirm of the window, as a future that borrows it.
fn front_confirm(
    inflight: &mut VecDeque<Inflight>,
) -> impl Future<Output = lapin::Result<Confirmation>> + '_ {
    std::future::poll_fn(move |cx| match inflight.front_mut() {
        Some(item) => item.confirm.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

impl PublishTask {
    async fn run(self, mut requests: mpsc::Receiver<Pending>) {
        let health = self.broker.health().clone();
        let mut backlog: VecDeque<Pending> = VecDeque::new();
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let mut channel: Option<Channel> = None;
        let mut accepting = true;
        // Gives up reconnecting after shutdown only once the publish timeout passed, so
        // `close` during a short outage still delivers what callers were promised.
        let give_up = CancellationToken::new();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            if self.stop.is_cancelled() && accepting {
                accepting = false;
                requests.close();
                let give_up = give_up.clone();
                let after = Duration::from_millis(self.broker.config().publish_timeout_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    give_up.cancel();
                });
            }
            if !accepting && backlog.is_empty() && inflight.is_empty() {
                // Drain whatever was queued before the close.
                match requests.try_recv() {
                    Ok(p) => backlog.push_back(p),
                    Err(_) => break,
                }
            }
            let ch = match &channel {
                Some(ch) if ch.status().connected() => ch.clone(),
                _ => {
                    channel = None;
                    requeue_inflight(&mut inflight, &mut backlog);
                    match self.open_channel(&give_up).await {
                        Some(ch) => {
                            health.set(&self.component, true, "publishing");
                            channel = Some(ch.clone());
                            ch
                        }
                        None => break,
                    }
                }
            };
            // Publish in order: republished messages first, then new ones, within the window.
            let mut broken = false;
            while inflight.len() < self.window {
                let Some(pending) = backlog.pop_front() else {
                    break;
                };
                match publish_one(&ch, &pending.message).await {
                    Ok(confirm) => inflight.push_back(Inflight {
                        pending,
                        confirm: Box::pin(confirm),
                    }),
                    Err(e) => {
                        tracing::warn!(component = %self.component, error = %e, "publish failed; reconnecting");
                        backlog.push_front(pending);
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                health.set(&self.component, false, "reconnecting");
                channel = None;
                continue;
            }
            tokio::select! {
                biased;
                result = front_confirm(&mut inflight), if !inflight.is_empty() => {
                    match result {
                        Ok(confirmation) => {
                            if let Some(item) = inflight.pop_front() {
                                let outcome = outcome_of(confirmation, &item.pending.message);
                                let exchange = item.pending.message.exchange.clone();
                                if outcome.is_ok() {
                                    metrics::counter!(crate::events::MESSAGES_PUBLISHED, "exchange" => exchange).increment(1);
                                } else {
                                    metrics::counter!(crate::events::PUBLISH_FAILURES, "exchange" => exchange).increment(1);
                                }
                                let _ = item.pending.reply.send(outcome);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(component = %self.component, error = %e, "lost confirms; republishing after reconnect");
                            health.set(&self.component, false, "reconnecting");
                            channel = None;
                        }
                    }
                }
                request = requests.recv(), if accepting && backlog.len() + inflight.len() < self.window => {
                    match request {
                        Some(p) => backlog.push_back(p),
                        None => accepting = false,
                    }
                }
                _ = self.stop.cancelled(), if accepting => {}
                _ = check.tick() => {}
            }
        }
        for item in inflight.drain(..) {
            let _ = item.pending.reply.send(Err(Error::Closed));
        }
        for pending in backlog.drain(..) {
            let _ = pending.reply.send(Err(Error::Closed));
        }
        if let Some(ch) = channel {
            let _ = ch.close(200, "OK".into()).await;
        }
        health.remove(&self.component);
    }

    async fn open_channel(&self, give_up: &CancellationToken) -> Option<Channel> {
        loop {
            let ch = self
                .broker
                .channel_with_retry(&self.component, give_up)
                .await?;
            match ch.confirm_select(ConfirmSelectOptions::default()).await {
                Ok(()) => return Some(ch),
                Err(e) => {
                    tracing::warn!(component = %self.component, error = %e, "confirm_select failed");
                    tokio::time::sleep(self.broker.config().reconnect_min()).await;
                }
            }
        }
    }
}

/// Puts unconfirmed messages back in front of the backlog, oldest first.
fn requeue_inflight(inflight: &mut VecDeque<Inflight>, backlog: &mut VecDeque<Pending>) {
    while let Some(item) = inflight.pop_back() {
        backlog.push_front(item.pending);
    }
}

async fn publish_one(
    channel: &Channel,
    message: &OutgoingMessage,
) -> lapin::Result<PublisherConfirm> {
    channel
        .basic_publish(
            message.exchange.as_str().into(),
            message.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: message.mandatory,
                immediate: false,
            },
            &message.body,
            message.properties.clone(),
        )
        .await
}

fn outcome_of(confirmation: Confirmation, message: &OutgoingMessage) -> Result<()> {
    let nacked = confirmation.is_nack();
    if confirmation.take_message().is_some() {
        return Err(Error::Unroutable {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        });
    }
    if nacked {
        return Err(Error::Nacked {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
        });
    }
    Ok(())
}
