//! The consumer runtime: [`consume_with`] one queue, or [`consume_role`] every queue of a
//! role (its shards), until shutdown.
//!
//! One state machine runs every consumer ([`session`]). Deliveries enter a window in queue
//! order and go to the handler in batches: up to `options.batch` deliveries the broker has
//! already delivered (a batch of one when only one is there, so latency stays low at low
//! load), at most `options.concurrency` batches at once, and never two deliveries with the
//! same ordering key at once nor out of order (a symbol's state, a chat's messages). With
//! `concurrency` 1 every delivery waits for the one before it, whatever its key.
//!
//! Each delivery of a batch settles on its own ([`Outcome`]): done, held in place (run
//! again after a delay, ahead of the deliveries behind it, without spending an attempt), a
//! transient failure published to the queue's next retry tier (`<q>.retry.<n>`,
//! `tw-attempt` counts), or a poison message published to its DLQ with the reason, the
//! error, the attempts, the original exchange and routing key and the first failure time.
//! A poison message fails alone; its batch-mates go on. A delivery is acknowledged only
//! once settled — and, with a [`Checkpoint`], once the state it produced is stored — in
//! cumulative acks over the finished prefix of the window (one ack per message costs a
//! round trip). A handler that panics or hangs fails its batch transiently. Connection loss
//! is survived by reconnecting with backoff; what was unacknowledged comes back from the
//! broker (handlers are idempotent).

mod session;
mod settle;
pub mod shards;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::FieldTable;
use tickwatch_schema::wire::{self, Message, MessageKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::Broker;
use crate::error::{Error, Result};
use crate::headers;
use crate::publisher::Publisher;
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

/// What became of a delivery the handler took on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Done: acknowledge it.
    Done,
    /// Not yet: run it again after this delay, ahead of the deliveries behind it, without
    /// spending an attempt (a downstream asks to wait; a stateful engine must get this very
    /// message again). A pause or shutdown meanwhile hands it back to the broker.
    Hold(Duration),
}

/// A delivery's outcome: handled, or failed.
pub type Outcome = std::result::Result<Handled, HandlerError>;

/// Why a handler could not finish a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// May work later (a database hiccup, Telegram 5xx): next retry tier, then the DLQ.
    Transient(String),
    /// Poison: undecodable or invalid. DLQ at once, reason `invalid`.
    Invalid(String),
    /// Will never work (e.g. refused by a downstream for good). DLQ at once, `rejected`.
    Rejected(String),
}

impl HandlerError {
    /// For a failure after a stateful engine has already moved past this message: hold this
    /// very delivery in place instead of sending it through the retry tiers, where it would
    /// come back behind later messages and find the engine past it (its outputs, a firing
    /// or a signal, would be lost). The engine answers the same message again with the same
    /// outputs. Logged loudly: the queue waits until it works. Only a transient failure is
    /// held: one that will never work (invalid, rejected) still goes to the DLQ rather than
    /// stopping the queue for good.
    pub fn hold_in_place(self, delay: Duration) -> Outcome {
        match self {
            HandlerError::Transient(error) => {
                tracing::error!(%error, retry_in = ?delay, "failed after processing; holding the message and retrying it in place");
                metrics::counter!(crate::events::HANDLER_HELD).increment(1);
                Ok(Handled::Hold(delay))
            }
            other => Err(other),
        }
    }

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
    /// The consumer session that received it, unique in this process. A session that
    /// starts — a reconnect, a shard taken over, a standby made active — may find a symbol
    /// that another consumer carried on meanwhile: a stateful handler checks its state for
    /// a symbol against the database on the symbol's first delivery in a session.
    pub session: u64,
    /// Since when the handler has been holding it in place ([`Handled::Hold`]).
    pub held_since: Option<Instant>,
    pub properties: BasicProperties,
    /// The delivery's `consume` span, child of the publisher's trace: work done for this
    /// message inside a batch belongs under it.
    pub span: tracing::Span,
}

impl Incoming {
    fn from_delivery(queue: &str, session: u64, delivery: &Delivery) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let headers = delivery.properties.headers().as_ref();
        let mut incoming = Incoming {
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
            session,
            held_since: None,
            properties: delivery.properties.clone(),
            span: tracing::Span::none(),
        };
        let span = tracing::info_span!(
            "consume",
            otel.kind = "consumer",
            queue = %queue,
            message_id = incoming.message_id.as_deref().unwrap_or(""),
            kind = incoming.kind.as_deref().unwrap_or(""),
            routing_key = %incoming.routing_key,
            attempt = incoming.attempt,
        );
        let _ = span.set_parent(incoming.trace_context());
        incoming.span = span;
        incoming
    }

    /// Its identity across redeliveries: the message id, or a hash of its routing key and
    /// body (what a handler keys the outputs of a held delivery by).
    pub fn identity(&self) -> String {
        match &self.message_id {
            Some(id) => id.clone(),
            None => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                self.routing_key.hash(&mut hasher);
                self.body.hash(&mut hasher);
                format!("body:{:x}", hasher.finish())
            }
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

/// Handles one delivery at a time. Cloned for every delivery it handles (keep shared
/// state behind an `Arc`).
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(&mut self, message: &Incoming) -> impl Future<Output = Outcome> + Send;

    /// What orders deliveries when a consumer handles several at once: deliveries with the
    /// same key run one after another, in queue order. By default the `tw-shard-key` header
    /// tickwatch's publisher sets; a handler whose order must hold for any publisher (the
    /// notifier: one chat's messages) derives it from the body instead.
    fn ordering_key(&self, message: &Incoming) -> Option<String> {
        message.header(headers::SHARD_KEY)
    }
}

/// Handles deliveries in batches, in queue order: the roles that store a whole batch in one
/// transaction. Returns one outcome per delivery it got to, in order; the ones it did not
/// get to (after one it holds, say) go back to the front of the line.
pub trait BatchHandler: Clone + Send + Sync + 'static {
    fn handle_batch(&mut self, batch: &[Incoming]) -> impl Future<Output = Vec<Outcome>> + Send;

    /// See [`Handler::ordering_key`].
    fn ordering_key(&self, message: &Incoming) -> Option<String> {
        message.header(headers::SHARD_KEY)
    }
}

/// A one-at-a-time handler takes a batch one delivery after the other, and stops at one it
/// holds (what follows waits behind it).
impl<H: Handler> BatchHandler for H {
    async fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Outcome> {
        use tracing::Instrument;
        let mut outcomes = Vec::with_capacity(batch.len());
        for message in batch {
            let outcome = self.handle(message).instrument(message.span.clone()).await;
            let held = matches!(outcome, Ok(Handled::Hold(_)));
            outcomes.push(outcome);
            if held {
                break;
            }
        }
        outcomes
    }

    fn ordering_key(&self, message: &Incoming) -> Option<String> {
        Handler::ordering_key(self, message)
    }
}

/// Makes durable what a handler keeps in memory (an engine's last prices), run before
/// every acknowledgement: a message is acknowledged only once the state it produced is
/// stored, so a restart resumes from a state that includes every acknowledged message.
/// An error leaves the deliveries unacknowledged (tried again at the next flush). It runs
/// beside the batches that follow (one checkpoint at a time per session), so it must save
/// only state whose messages are finished — what a running batch has begun may not be.
#[derive(Clone)]
pub struct Checkpoint(pub Arc<dyn Fn() -> CheckpointFuture + Send + Sync>);

/// What a [`Checkpoint`] returns: the save, to be awaited.
pub type CheckpointFuture =
    std::pin::Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpoint")
    }
}

/// How a consumer runs; the defaults take one delivery at a time, in queue order.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Batches handled at once. Above 1, deliveries with the same ordering key still run
    /// one after another, in queue order.
    pub concurrency: usize,
    /// The most deliveries in one batch (with `concurrency` 1 only).
    pub batch: usize,
    /// While `true`, no new delivery is taken (messages stay queued); used for an admin's
    /// global halt and for a circuit breaker.
    pub pause: Option<watch::Receiver<bool>>,
    /// Declared again on every (re)connect before consuming, on the consumer's own channel
    /// (a private queue belongs to its connection).
    pub declare: Option<Arc<Topology>>,
    /// Extra `basic.consume` arguments.
    pub arguments: FieldTable,
    /// Overrides `broker.handler_timeout_ms` for this consumer (a handler that may wait out
    /// a downstream's rate limit needs longer than the default).
    pub handler_timeout: Option<Duration>,
    /// Counts the sessions that started consuming: the owner of a private queue, which
    /// is lost with its connection, learns of each new one (and reloads what it missed).
    pub sessions: Option<watch::Sender<u64>>,
    /// Run before every acknowledgement, see [`Checkpoint`].
    pub checkpoint: Option<Checkpoint>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            concurrency: 1,
            batch: 1,
            pause: None,
            declare: None,
            arguments: FieldTable::default(),
            handler_timeout: None,
            sessions: None,
            checkpoint: None,
        }
    }
}

impl ConsumeOptions {
    fn check(&self) -> Result<()> {
        if self.concurrency == 0 || self.batch == 0 {
            return Err(Error::Config(
                "consumer: concurrency and batch must be at least 1".into(),
            ));
        }
        if self.concurrency > 1 && self.batch > 1 {
            return Err(Error::Config(
                "consumer: batches of more than one go with a concurrency of 1".into(),
            ));
        }
        Ok(())
    }
}

/// Consumes `queue` one delivery at a time until `shutdown`; see [`consume_with`].
pub async fn consume<H: BatchHandler>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    handler: H,
    shutdown: CancellationToken,
) -> Result<()> {
    consume_with(broker, queue, handler, shutdown, ConsumeOptions::default()).await
}

/// Consumes `queue` until `shutdown`, reconnecting with backoff on any broker failure.
pub async fn consume_with<H: BatchHandler>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    options.check()?;
    crate::events::ConsumerStarted { queue: &queue.name }.emit();
    let component = format!("consumer:{}", queue.name);
    let failures = Publisher::start(broker, &format!("{component}:failures"));
    let ctx = Arc::new(Ctx {
        broker: broker.clone(),
        queue: queue.clone(),
        failures: failures.clone(),
        component: component.clone(),
        handler_timeout: options
            .handler_timeout
            .unwrap_or(Duration::from_millis(broker.config().handler_timeout_ms)),
        options,
        lost_at: std::sync::Mutex::new(None),
    });
    let mut backoff = broker.config().reconnect_backoff();
    let result = loop {
        let Some(channel) = broker.channel_with_retry(&component, &shutdown).await else {
            break Ok(());
        };
        let session = session::run(
            ctx.clone(),
            channel.clone(),
            &shutdown,
            &mut backoff,
            handler.clone(),
        )
        .await;
        let reason = match session {
            Ok(session::End::Shutdown) => break Ok(()),
            Ok(session::End::Paused) => {
                // Held long enough: the deliveries went back with the channel. Wait for the
                // pause to end, then consume again.
                let mut pause = ctx.options.pause.clone();
                let resumed = match pause.as_mut() {
                    Some(pause) => session::wait_while_paused(&ctx, pause, &shutdown).await,
                    None => true,
                };
                if resumed {
                    continue;
                }
                break Ok(());
            }
            Ok(session::End::Broken(reason)) => reason,
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => break Err(e),
        };
        broker.health().set(&component, false, &reason);
        ctx.lost_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
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

/// Consumes a role's work queue — or, when it is sharded, the shards this instance owns
/// among the role's live instances ([`shards`]), following the split as instances come and
/// go — with clones of `handler`, until `shutdown` or the first consumer that fails for
/// good (which stops the others).
pub async fn consume_role<H: BatchHandler>(
    broker: &Broker,
    queue: tickwatch_schema::names::WorkQueue,
    handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    let topology = Topology::standard(broker.config())?;
    let base = broker.names().queue(queue);
    let specs = topology.work_queues_of(&base);
    if let [only] = specs.as_slice() {
        return consume_with(broker, only, handler, shutdown, options).await;
    }
    let me = broker.instance().to_string();
    let stop = shutdown.child_token();
    let (live_tx, mut live) = watch::channel(BTreeSet::from([me.clone()]));
    let membership = tokio::spawn(shards::membership(
        broker.clone(),
        base.clone(),
        live_tx,
        stop.clone(),
    ));
    let mut owned: BTreeMap<usize, CancellationToken> = BTreeMap::new();
    let mut consumers = tokio::task::JoinSet::new();
    let mut result = Ok(());
    loop {
        let members = live.borrow_and_update().clone();
        let assigned = shards::assign(specs.len(), &members, &me);
        let released: Vec<usize> = owned
            .keys()
            .filter(|shard| !assigned.contains(shard))
            .copied()
            .collect();
        for shard in &released {
            // Finishes what runs, acknowledges, closes: the next owner goes on from there.
            if let Some(token) = owned.remove(shard) {
                token.cancel();
            }
        }
        let taken: Vec<usize> = assigned
            .iter()
            .filter(|shard| !owned.contains_key(shard))
            .copied()
            .collect();
        for &shard in &taken {
            let token = stop.child_token();
            owned.insert(shard, token.clone());
            let (broker, handler, options) = (broker.clone(), handler.clone(), options.clone());
            let spec = specs[shard].clone();
            consumers
                .spawn(async move { consume_with(&broker, &spec, handler, token, options).await });
        }
        if !released.is_empty() || !taken.is_empty() {
            let shards: Vec<usize> = owned.keys().copied().collect();
            tracing::info!(queue = %base, instances = members.len(), ?shards, "consuming {} of {} shards", shards.len(), specs.len());
            metrics::gauge!(crate::events::SHARDS_OWNED, "queue" => base.clone())
                .set(shards.len() as f64);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = live.changed() => {
                if changed.is_err() {
                    // The membership task ended: only at shutdown.
                    stop.cancelled().await;
                    break;
                }
            }
            Some(joined) = consumers.join_next() => {
                if let Err(e) = consumer_result(joined) {
                    stop.cancel();
                    result = Err(e);
                    break;
                }
            }
        }
    }
    stop.cancel();
    while let Some(joined) = consumers.join_next().await {
        if let Err(e) = consumer_result(joined)
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    let _ = membership.await;
    result
}

/// A consumer task's end: its result, or its panic as an error.
fn consumer_result(joined: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.unwrap_or_else(|e| Err(Error::Dlq(format!("consumer task failed: {e}"))))
}

/// What every delivery of one consumer shares.
struct Ctx {
    broker: Broker,
    queue: WorkQueueSpec,
    failures: Publisher,
    component: String,
    handler_timeout: Duration,
    options: ConsumeOptions,
    /// When the last session broke, until the next one consumes (then logged as back).
    lost_at: std::sync::Mutex<Option<Instant>>,
}

pub(crate) fn now_ms() -> i64 {
    tickwatch_schema::db::now_ms()
}
