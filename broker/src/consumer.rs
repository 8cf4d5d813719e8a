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
use crate::publisher::{OutgoingMessage, Publisher};
use crate::topology::{Topology, WorkQueueSpec};
use crate::{events, headers};

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
    /// For a failure after a stateful engine has already moved past this message: retry
    /// this very delivery in place after `delay` instead of through the retry tiers, where
    /// it would come back behind later messages and find the engine past it (its outputs,
    /// a firing or a signal, would be lost). The engine answers the same message again
    /// with the same outputs. Logged loudly: the queue waits until it works.
    /// Only a transient failure is held: one that will never work (invalid, rejected)
    /// still goes to the DLQ rather than stopping the queue for good.
    pub fn retry_in_place(self, delay: Duration) -> Self {
        match self {
            HandlerError::Transient(error) => {
                tracing::error!(%error, retry_in = ?delay, "failed after processing; holding the message and retrying it in place");
                metrics::counter!("tw_handler_held_total").increment(1);
                HandlerError::Backoff(delay)
            }
            other => other,
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

    /// What orders deliveries when a consumer handles several at once: deliveries with the
    /// same key run one after another, in queue order. By default the `tw-shard-key` header
    /// tickwatch's publisher sets; a handler whose order must hold for any publisher (the
    /// notifier: one chat's messages) derives it from the body instead.
    fn ordering_key(&self, message: &Incoming) -> Option<String> {
        message.header(headers::SHARD_KEY)
    }
}

/// Makes durable what a handler keeps in memory (an engine's last prices), run before
/// every acknowledgement: a message is acknowledged only once the state it produced is
/// stored, so a restart resumes from a state that includes every acknowledged message.
/// An error leaves the deliveries unacknowledged (tried again at the next flush).
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

/// Optional behaviour of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// While `true`, no new delivery is taken (messages stay queued); used for an admin's
    /// global halt and for a circuit breaker.
    pub pause: Option<watch::Receiver<bool>>,
    /// Declared again on every (re)connect before consuming, on the consumer's own channel
    /// (a private queue belongs to its connection).
    pub declare: Option<Arc<Topology>>,
    /// Deliveries handled at once. Above 1, deliveries with the same `tw-shard-key` header
    /// (a symbol, a chat) still run one after another, in queue order; needs a `Clone`
    /// handler, see [`consume_concurrent`].
    pub concurrency: usize,
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
            pause: None,
            declare: None,
            concurrency: 1,
            arguments: FieldTable::default(),
            handler_timeout: None,
            sessions: None,
            checkpoint: None,
        }
    }
}

enum SessionEnd {
    Shutdown,
    /// Paused: the session acknowledged what it finished and closed its channel, which
    /// returned the rest to the queue (holding prefetched deliveries through a long pause
    /// would run into the broker's consumer timeout).
    Paused,
    Broken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// [`consume`] with options; deliveries one at a time (`options.concurrency` is ignored).
pub async fn consume_with<H: Handler>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    mut handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    run_sessions(broker, queue, &shutdown, &options, Sequential(&mut handler)).await
}

/// [`consume_with`] handling up to `options.concurrency` deliveries at once, each on a
/// clone of `handler`; per `tw-shard-key` in queue order. Acknowledgements still only
/// cover deliveries whose every predecessor finished.
pub async fn consume_concurrent<H: Handler + Clone + Sync>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    run_sessions(broker, queue, &shutdown, &options, Concurrent(handler)).await
}

/// Consumes every queue of a role — its work queue, or each of its shards — with clones of
/// `handler`, until `shutdown` or the first consumer that fails for good (which stops the
/// others). `options.concurrency > 1` handles several deliveries of a queue at once.
pub async fn consume_role<H: Handler + Clone + Sync>(
    broker: &Broker,
    queue: tickwatch_schema::names::WorkQueue,
    handler: H,
    shutdown: CancellationToken,
    options: ConsumeOptions,
) -> Result<()> {
    let topology = Topology::standard(broker.config())?;
    let specs = topology.work_queues_of(&broker.names().queue(queue));
    let stop = shutdown.child_token();
    let mut consumers = tokio::task::JoinSet::new();
    for spec in specs {
        let (broker, handler, stop, options) = (
            broker.clone(),
            handler.clone(),
            stop.clone(),
            options.clone(),
        );
        consumers.spawn(async move {
            if options.concurrency > 1 {
                consume_concurrent(&broker, &spec, handler, stop, options).await
            } else {
                consume_with(&broker, &spec, handler, stop, options).await
            }
        });
    }
    let mut result = Ok(());
    while let Some(joined) = consumers.join_next().await {
        let outcome =
            joined.unwrap_or_else(|e| Err(Error::Dlq(format!("consumer task failed: {e}"))));
        if let Err(e) = outcome {
            stop.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
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

/// The reconnect loop around sessions.
/// One way of running a session on a fresh channel: one delivery at a time, or several.
trait Sessions {
    fn session(
        &mut self,
        ctx: Arc<Ctx>,
        channel: Channel,
        shutdown: CancellationToken,
        backoff: &mut Backoff,
    ) -> impl Future<Output = Result<SessionEnd>> + Send;
}

struct Sequential<'h, H>(&'h mut H);

impl<H: Handler> Sessions for Sequential<'_, H> {
    async fn session(
        &mut self,
        ctx: Arc<Ctx>,
        channel: Channel,
        shutdown: CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd> {
        sequential_session(ctx, channel, &shutdown, backoff, self.0).await
    }
}

struct Concurrent<H>(H);

impl<H: Handler + Clone + Sync> Sessions for Concurrent<H> {
    async fn session(
        &mut self,
        ctx: Arc<Ctx>,
        channel: Channel,
        shutdown: CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd> {
        concurrent_session(ctx, channel, &shutdown, backoff, self.0.clone()).await
    }
}

async fn run_sessions<S: Sessions>(
    broker: &Broker,
    queue: &WorkQueueSpec,
    shutdown: &CancellationToken,
    options: &ConsumeOptions,
    mut session: S,
) -> Result<()> {
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
        options: options.clone(),
        lost_at: std::sync::Mutex::new(None),
    });
    let mut backoff = Backoff::new(
        broker.config().reconnect_min(),
        broker.config().reconnect_max(),
    );
    let result = loop {
        let Some(channel) = broker.channel_with_retry(&component, shutdown).await else {
            break Ok(());
        };
        let reason = match session
            .session(ctx.clone(), channel.clone(), shutdown.clone(), &mut backoff)
            .await
        {
            Ok(SessionEnd::Shutdown) => {
                let _ = channel.close(200, "OK".into()).await;
                break Ok(());
            }
            Ok(SessionEnd::Paused) => {
                let _ = channel.close(200, "OK".into()).await;
                let mut pause = options.pause.clone();
                let held = match pause.as_mut() {
                    Some(pause) => wait_while_paused(&ctx, pause, shutdown, None).await,
                    None => Held::Resumed,
                };
                match held {
                    Held::Resumed | Held::Release => continue,
                    Held::Shutdown => break Ok(()),
                }
            }
            Ok(SessionEnd::Broken(reason)) => reason,
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

/// Finished deliveries not yet acknowledged: the newest one's acker acks them all.
#[derive(Default)]
struct AckBatch {
    last: Option<Acker>,
    count: usize,
    /// After a failed checkpoint, the next is not tried before this.
    checkpoint_after: Option<Instant>,
}

impl AckBatch {
    fn add(&mut self, acker: Acker) {
        self.last = Some(acker);
        self.count += 1;
    }

    /// Acknowledges the batch once the checkpoint, if any, succeeded; false when it did
    /// not (the batch stays, for the next flush).
    async fn flush(&mut self, ctx: &Ctx) -> Result<bool> {
        if self.last.is_none() {
            return Ok(true);
        }
        if self.checkpoint_after.is_some_and(|at| Instant::now() < at) {
            return Ok(false);
        }
        if !checkpoint(ctx).await {
            self.checkpoint_after = Some(Instant::now() + Duration::from_secs(1));
            return Ok(false);
        }
        self.checkpoint_after = None;
        if let Some(acker) = self.last.take() {
            let n = std::mem::take(&mut self.count);
            acker.ack(BasicAckOptions { multiple: true }).await?;
            metrics::counter!("tw_messages_acked_total", "queue" => ctx.queue.name.clone())
                .increment(n as u64);
        }
        Ok(true)
    }
}

/// Runs the consumer's checkpoint; true when there is none or it succeeded.
async fn checkpoint(ctx: &Ctx) -> bool {
    let Some(Checkpoint(save)) = &ctx.options.checkpoint else {
        return true;
    };
    match save().await {
        Ok(()) => true,
        Err(error) => {
            events::CheckpointFailed {
                queue: &ctx.queue.name,
                error: &error,
            }
            .emit();
            false
        }
    }
}

/// Declares what must be, sets the prefetch and starts consuming on `channel`.
async fn start_consuming(ctx: &Ctx, channel: &Channel) -> Result<lapin::Consumer> {
    let config = ctx.broker.config();
    if let Some(topology) = &ctx.options.declare {
        topology.apply_on(&ctx.broker, channel).await?;
    }
    channel
        .basic_qos(config.prefetch, BasicQosOptions { global: false })
        .await?;
    let tag = format!("{}:{}", ctx.broker.app_id(), uuid::Uuid::now_v7());
    let consumer = channel
        .basic_consume(
            ctx.queue.name.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            ctx.options.arguments.clone(),
        )
        .await?;
    ctx.broker.health().set(&ctx.component, true, "consuming");
    let lost_at = ctx.lost_at.lock().unwrap_or_else(|p| p.into_inner()).take();
    match lost_at {
        Some(at) => tracing::info!(
            queue = %ctx.queue.name,
            down_s = at.elapsed().as_secs_f64(),
            "back: consuming again after losing the broker for {:.1} s",
            at.elapsed().as_secs_f64()
        ),
        None => tracing::info!(queue = %ctx.queue.name, "consuming"),
    }
    if let Some(sessions) = &ctx.options.sessions {
        sessions.send_modify(|n| *n += 1);
    }
    Ok(consumer)
}

enum Held {
    Resumed,
    /// Paused longer than `broker.pause_release_ms`: hand the deliveries back.
    Release,
    /// Shut down, or the pause's sender is gone (the role is stopping).
    Shutdown,
}

/// Logs and reports (health) that consumption paused or resumed.
fn report_pause(ctx: &Ctx, paused: bool) {
    if paused {
        tracing::info!(queue = %ctx.queue.name, "paused: messages stay queued");
        ctx.broker.health().set(&ctx.component, true, "paused");
    } else {
        tracing::info!(queue = %ctx.queue.name, "resumed");
        ctx.broker.health().set(&ctx.component, true, "consuming");
    }
}

/// Waits through a pause until it ends, or, with `release`, has lasted that long.
///
/// A session holds its deliveries meanwhile (every hand-back of a delivery counts towards
/// the queue's `x-delivery-limit`, so a flapping breaker must not return them each time)
/// and releases them after `broker.pause_release_ms`, kept well under the broker's
/// `consumer_timeout`, which would otherwise close the channel itself.
async fn wait_while_paused(
    ctx: &Ctx,
    pause: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
    release: Option<Duration>,
) -> Held {
    report_pause(ctx, true);
    let held = tokio::select! {
        r = pause.wait_for(|paused| !*paused) => if r.is_ok() { Held::Resumed } else { Held::Shutdown },
        _ = tokio::time::sleep(release.unwrap_or_default()), if release.is_some() => Held::Release,
        _ = shutdown.cancelled() => Held::Shutdown,
    };
    if let Held::Resumed = held {
        report_pause(ctx, false);
    }
    held
}

/// Resolves when the pause flag is no longer `current`. Never without a pause, nor once its
/// sender is gone (the last value then stands, instead of a closed channel waking the
/// caller in a loop).
async fn pause_flips(pause: &mut Option<watch::Receiver<bool>>, current: bool) {
    if let Some(pause) = pause.as_mut()
        && pause.wait_for(|now| *now != current).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

fn ack_batch_size(ctx: &Ctx) -> usize {
    let config = ctx.broker.config();
    usize::from(config.ack_batch.min(config.prefetch))
}

async fn sequential_session<H: Handler>(
    ctx: Arc<Ctx>,
    channel: Channel,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
    handler: &mut H,
) -> Result<SessionEnd> {
    let mut consumer = start_consuming(&ctx, &channel).await?;
    let flush_after = Duration::from_millis(ctx.broker.config().ack_flush_ms);
    let ack_batch = ack_batch_size(&ctx);
    let mut pause = ctx.options.pause.clone();
    let mut acks = AckBatch::default();
    let end = loop {
        if let Some(p) = pause.as_mut()
            && *p.borrow()
        {
            acks.flush(&ctx).await?;
            let release = Duration::from_millis(ctx.broker.config().pause_release_ms);
            match wait_while_paused(&ctx, p, shutdown, Some(release)).await {
                Held::Resumed => continue,
                Held::Release => break SessionEnd::Paused,
                Held::Shutdown => break SessionEnd::Shutdown,
            }
        }
        let next = if acks.count > 0 {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                // A pause that comes while waiting must stop the next delivery too.
                _ = pause_flips(&mut pause, false) => continue,
                next = tokio::time::timeout(flush_after, consumer.next()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        acks.flush(&ctx).await?;
                        continue;
                    }
                },
            }
        } else {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = pause_flips(&mut pause, false) => continue,
                next = consumer.next() => next,
            }
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => break SessionEnd::Broken(e.to_string()),
            None => break SessionEnd::Broken("the broker cancelled the consumer".into()),
        };
        backoff.reset();
        let incoming = Incoming::from_delivery(&ctx.queue.name, &delivery);
        match handle_delivery(&ctx, handler, &delivery, &incoming, shutdown).await? {
            Processed::Finished => {
                acks.add(delivery.acker.clone());
                if acks.count >= ack_batch {
                    acks.flush(&ctx).await?;
                }
            }
            Processed::Interrupted if shutdown.is_cancelled() => break SessionEnd::Shutdown,
            Processed::Interrupted => break SessionEnd::Paused,
        }
    };
    if matches!(end, SessionEnd::Shutdown | SessionEnd::Paused) {
        // Everything finished is acknowledged, then the channel closes while the consumer
        // still exists, which returns the deliveries still buffered to the queue. Dropping
        // the consumer first would send `basic.cancel`: with a single active consumer that
        // hands the queue to a standby while those deliveries are still out, and the
        // standby would see later messages of a symbol before the returned earlier ones.
        acks.flush(&ctx).await?;
        let _ = channel.close(200, "OK".into()).await;
    }
    drop(consumer);
    Ok(end)
}

/// A delivery in the concurrent window, in arrival order.
struct Slot {
    tag: u64,
    acker: Acker,
    state: Option<Processed>,
}

type Running = tokio::task::JoinSet<(Delivery, Incoming, Option<String>, Result<Processed>)>;

async fn concurrent_session<H: Handler + Clone + Sync>(
    ctx: Arc<Ctx>,
    channel: Channel,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
    handler: H,
) -> Result<SessionEnd> {
    let mut consumer = start_consuming(&ctx, &channel).await?;
    let flush_after = Duration::from_millis(ctx.broker.config().ack_flush_ms);
    let ack_batch = ack_batch_size(&ctx);
    let concurrency = ctx.options.concurrency.max(1);
    let mut pause = ctx.options.pause.clone();
    let mut window: std::collections::VecDeque<Slot> = Default::default();
    let mut running: Running = tokio::task::JoinSet::new();
    // Deliveries waiting behind a running one with the same key.
    let mut waiting: std::collections::HashMap<
        String,
        std::collections::VecDeque<(Delivery, Incoming)>,
    > = Default::default();
    let mut acks = AckBatch::default();
    let mut flush_at: Option<tokio::time::Instant> = None;
    let spawn =
        |running: &mut Running, delivery: Delivery, incoming: Incoming, key: Option<String>| {
            let (ctx, mut handler, shutdown) = (ctx.clone(), handler.clone(), shutdown.clone());
            running.spawn(async move {
                let result =
                    handle_delivery(&ctx, &mut handler, &delivery, &incoming, &shutdown).await;
                (delivery, incoming, key, result)
            });
        };
    // Deliveries a pause interrupted (in a backoff): run again once it is over, before
    // anything new, their key's successors still waiting behind them.
    let mut interrupted: std::collections::VecDeque<(Delivery, Incoming, Option<String>)> =
        Default::default();
    let release_after = Duration::from_millis(ctx.broker.config().pause_release_ms);
    let mut paused_since: Option<tokio::time::Instant> = None;
    let end = loop {
        let paused = pause.as_ref().is_some_and(|p| *p.borrow());
        if paused && paused_since.is_none() {
            report_pause(&ctx, true);
            paused_since = Some(tokio::time::Instant::now());
        } else if !paused && paused_since.take().is_some() {
            report_pause(&ctx, false);
        }
        let release_at = paused_since.map(|since| since + release_after);
        let held = window.len();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break SessionEnd::Shutdown,
            // Paused long and nothing running (a held delivery stops at a pause): hand back
            // the rest by closing the channel (see `wait_while_paused`).
            _ = async { if let Some(at) = release_at { tokio::time::sleep_until(at).await } },
                if paused && running.is_empty() && release_at.is_some() => break SessionEnd::Paused,
            _ = std::future::ready(()), if !paused && !interrupted.is_empty() => {
                for (delivery, incoming, key) in interrupted.drain(..) {
                    spawn(&mut running, delivery, incoming, key);
                }
            }
            joined = running.join_next(), if !running.is_empty() => {
                let Some(joined) = joined else { continue };
                let (delivery, incoming, key, result) = joined.map_err(|e| Error::Dlq(format!("consumer task failed: {e}")))?;
                let tag = delivery.delivery_tag;
                let processed = match result {
                    Ok(p) => p,
                    Err(e) if e.is_retryable() => break SessionEnd::Broken(e.to_string()),
                    Err(e) => return Err(e),
                };
                if processed == Processed::Interrupted {
                    if shutdown.is_cancelled() {
                        continue; // left unacknowledged: back to the queue with the channel
                    }
                    interrupted.push_back((delivery, incoming, key));
                    continue;
                }
                if let Some(slot) = window.iter_mut().find(|s| s.tag == tag) {
                    slot.state = Some(processed);
                }
                if let Some(key) = key {
                    let next = waiting.get_mut(&key).and_then(|q| q.pop_front());
                    match next {
                        Some((delivery, incoming)) => spawn(&mut running, delivery, incoming, Some(key)),
                        None => { waiting.remove(&key); }
                    }
                }
                // Acknowledge the finished prefix: a multiple ack must not cover a delivery
                // still running before it.
                while window.front().is_some_and(|s| s.state == Some(Processed::Finished)) {
                    if let Some(slot) = window.pop_front() {
                        acks.add(slot.acker);
                    }
                }
                if acks.count >= ack_batch {
                    acks.flush(&ctx).await?;
                    flush_at = None;
                } else if acks.count > 0 && flush_at.is_none() {
                    flush_at = Some(tokio::time::Instant::now() + flush_after);
                }
            }
            _ = async { if let Some(at) = flush_at { tokio::time::sleep_until(at).await } }, if flush_at.is_some() => {
                acks.flush(&ctx).await?;
                flush_at = None;
            }
            // Watched in both directions: a pause must stop the next delivery, not only the
            // one after it.
            _ = pause_flips(&mut pause, paused), if pause.is_some() => {}
            next = consumer.next(), if !paused && held < concurrency => {
                let delivery = match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => break SessionEnd::Broken(e.to_string()),
                    None => break SessionEnd::Broken("the broker cancelled the consumer".into()),
                };
                backoff.reset();
                window.push_back(Slot { tag: delivery.delivery_tag, acker: delivery.acker.clone(), state: None });
                let incoming = Incoming::from_delivery(&ctx.queue.name, &delivery);
                let key = handler.ordering_key(&incoming);
                match key {
                    Some(key) => match waiting.get_mut(&key) {
                        Some(queue) => queue.push_back((delivery, incoming)),
                        None => {
                            waiting.insert(key.clone(), Default::default());
                            spawn(&mut running, delivery, incoming, Some(key));
                        }
                    },
                    None => spawn(&mut running, delivery, incoming, None),
                }
            }
        }
    };
    match end {
        SessionEnd::Shutdown | SessionEnd::Paused => {
            // Let what runs finish (a handler holding a delivery stops at once), then
            // acknowledge every finished delivery: the prefix together, the rest one by one;
            // then close while the consumer exists (see `sequential_session`).
            while let Some(joined) = running.join_next().await {
                if let Ok((delivery, _, _, Ok(processed))) = joined
                    && let Some(slot) = window.iter_mut().find(|s| s.tag == delivery.delivery_tag)
                {
                    slot.state = Some(processed);
                }
            }
            while window
                .front()
                .is_some_and(|s| s.state == Some(Processed::Finished))
            {
                if let Some(slot) = window.pop_front() {
                    acks.add(slot.acker);
                }
            }
            if acks.flush(&ctx).await? {
                for slot in window
                    .iter()
                    .filter(|s| s.state == Some(Processed::Finished))
                {
                    slot.acker.ack(BasicAckOptions { multiple: false }).await?;
                }
            }
            let _ = channel.close(200, "OK".into()).await;
        }
        SessionEnd::Broken(_) => {
            // The acks are lost with the channel, but what the handlers record is not: an
            // aborted handler could leave, say, a Telegram send unrecorded and repeat it on
            // redelivery. Give them a while to finish.
            let deadline = tokio::time::sleep(ctx.handler_timeout.min(Duration::from_secs(60)));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    joined = running.join_next() => if joined.is_none() { break },
                    _ = &mut deadline => {
                        running.abort_all();
                        break;
                    }
                }
            }
        }
    }
    drop(consumer);
    Ok(end)
}

/// Runs the handler on one delivery and settles its failure, if any.
async fn handle_delivery<H: Handler>(
    ctx: &Ctx,
    handler: &mut H,
    delivery: &Delivery,
    incoming: &Incoming,
    shutdown: &CancellationToken,
) -> Result<Processed> {
    let queue = ctx.queue.name.clone();
    metrics::counter!("tw_messages_consumed_total", "queue" => queue.clone()).increment(1);
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
    async {
        let schema = incoming.header(headers::HEADER_SCHEMA);
        if let Err(e) = wire::check_schema_version(schema.as_deref()) {
            settle_failure(ctx, delivery, incoming, DeadReason::Invalid, &e.to_string()).await?;
            return Ok(Processed::Finished);
        }
        loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                ctx.handler_timeout,
                AssertUnwindSafe(handler.handle(incoming)).catch_unwind(),
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
                    ctx.handler_timeout
                ))),
            };
            let (reason, error) = match result {
                Ok(()) => return Ok(Processed::Finished),
                Err(HandlerError::Backoff(delay)) => {
                    // A pause (a halt, an open breaker) gives the delivery back too.
                    let mut pause = ctx.options.pause.clone();
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(Processed::Interrupted),
                        _ = pause_flips(&mut pause, false) => return Ok(Processed::Interrupted),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
                Err(HandlerError::Transient(error)) => {
                    retry_or_exhaust(ctx, delivery, incoming, &error).await?;
                    return Ok(Processed::Finished);
                }
                Err(HandlerError::Invalid(error)) => (DeadReason::Invalid, error),
                Err(HandlerError::Rejected(error)) => (DeadReason::Rejected, error),
            };
            settle_failure(ctx, delivery, incoming, reason, &error).await?;
            return Ok(Processed::Finished);
        }
    }
    .instrument(span)
    .await
}

/// Headers of a failure copy: the original route and first failure time are recorded once
/// and carried along.
fn failure_headers(delivery: &Delivery, incoming: &Incoming) -> FieldTable {
    let mut table = delivery.properties.headers().clone().unwrap_or_default();
    if headers::get_str(Some(&table), headers::ORIGINAL_EXCHANGE).is_none() {
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
    ctx: &Ctx,
    delivery: &Delivery,
    incoming: &Incoming,
    error: &str,
) -> Result<()> {
    let attempt = incoming.attempt as usize;
    let Some(tier) = ctx.queue.retry_queues.get(attempt - 1) else {
        return settle_failure(ctx, delivery, incoming, DeadReason::Exhausted, error).await;
    };
    let mut table = failure_headers(delivery, incoming);
    headers::set_i64(&mut table, headers::HEADER_ATTEMPT, attempt as i64 + 1);
    events::Retried {
        queue: &ctx.queue.name,
        attempt,
        retry_queue: tier,
        error,
    }
    .emit();
    ctx.failures
        .publish_raw(OutgoingMessage {
            exchange: String::new(),
            routing_key: tier.clone(),
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(table),
            mandatory: true,
        })
        .await
}

/// Dead-letters a delivery with the reason, or drops it (logged) from a private queue.
async fn settle_failure(
    ctx: &Ctx,
    delivery: &Delivery,
    incoming: &Incoming,
    reason: DeadReason,
    error: &str,
) -> Result<()> {
    events::DeadLettered {
        queue: &ctx.queue.name,
        dlq: (!ctx.queue.discard_failures).then_some(ctx.queue.dlq.as_str()),
        reason: reason.as_str(),
        attempts: incoming.attempt,
        message_id: incoming.message_id.as_deref().unwrap_or(""),
        error,
    }
    .emit();
    if ctx.queue.discard_failures {
        return Ok(());
    }
    let mut table = failure_headers(delivery, incoming);
    headers::set_str(&mut table, headers::DEAD_REASON, reason.as_str());
    headers::set_str(&mut table, headers::DEAD_ERROR, &truncate(error, 2_000));
    headers::set_str(&mut table, headers::DEAD_QUEUE, &ctx.queue.name);
    headers::set_i64(&mut table, headers::DEAD_AT, now_ms());
    headers::set_i64(
        &mut table,
        headers::HEADER_ATTEMPT,
        i64::from(incoming.attempt),
    );
    ctx.failures
        .publish_raw(OutgoingMessage {
            exchange: ctx.queue.dead_letter_exchange.clone(),
            routing_key: ctx.queue.name.clone(),
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(table),
            mandatory: true,
        })
        .await
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
