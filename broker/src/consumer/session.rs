//! One consumer session on one channel: deliveries in a window, handed to the handler in
//! batches, held in place, paused, acknowledged, and the session's end.
//!
//! Every delivery taken from the broker gets a slot in the window (arrival order, for the
//! cumulative acks) and waits in `queue` until it runs. [`dispatch`] starts a batch with
//! the first delivery that may go — due (not held), and, with `concurrency` 1, the first in
//! line; above 1, no delivery of its key running or waiting ahead of it — and, with
//! `concurrency` 1, the due deliveries right behind it, up to `batch`. A batch runs as a
//! task ([`run_batch`]) that settles its failures with the broker itself and reports each
//! delivery's fate: finished, held (back to the front of the line with a time), or not
//! reached (back to the front).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::settle::{AckBatch, panic_text, retry_or_exhaust, settle_failure};
use super::{BatchHandler, Ctx, DeadReason, Handled, HandlerError, Incoming, Outcome};
use crate::error::{Error, Result};
use crate::headers;
use tickwatch_schema::backoff::Backoff;

/// How a session ended.
pub(super) enum End {
    Shutdown,
    /// Paused long enough: it acknowledged what it finished and closed its channel, which
    /// returned the rest to the queue (holding prefetched deliveries through a long pause
    /// would run into the broker's consumer timeout).
    Paused,
    Broken(String),
}

/// A delivery taken from the broker and not yet settled.
struct Pending {
    delivery: Delivery,
    incoming: Incoming,
    key: Option<String>,
    /// Held in place until then.
    not_before: Option<tokio::time::Instant>,
}

/// What became of a delivery of a batch.
enum Fate {
    /// Acknowledge it (handled, or its failure durably handed on).
    Finished,
    Hold(Duration),
    /// The handler did not get to it.
    Again,
}

/// A finished batch: its deliveries and their fates (or why the broker failed us).
type BatchDone = (Vec<Pending>, Result<Vec<Fate>>);

/// A delivery in the window, in arrival order.
struct Slot {
    tag: u64,
    acker: Acker,
    finished: bool,
}

/// A number no other consumer session of this process has had.
fn next_session_id() -> u64 {
    static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs one session until shutdown, a long pause or a broken channel.
pub(super) async fn run<H: BatchHandler>(
    ctx: Arc<Ctx>,
    channel: Channel,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
    handler: H,
) -> Result<End> {
    let mut consumer = start_consuming(&ctx, &channel).await?;
    let mut state = State {
        ctx: ctx.clone(),
        handler,
        window: VecDeque::new(),
        queue: VecDeque::new(),
        running: JoinSet::new(),
        running_keys: HashMap::new(),
        acks: AckBatch::default(),
        flush_at: None,
        session: next_session_id(),
    };
    let flush_after = Duration::from_millis(ctx.broker.config().ack_flush_ms);
    let release_after = Duration::from_millis(ctx.broker.config().pause_release_ms);
    let mut pause = ctx.options.pause.clone();
    let mut paused_since: Option<tokio::time::Instant> = None;
    let end = loop {
        let paused = pause.as_ref().is_some_and(|p| *p.borrow());
        if paused && paused_since.is_none() {
            report_pause(&ctx, true);
            paused_since = Some(tokio::time::Instant::now());
        } else if !paused && paused_since.take().is_some() {
            report_pause(&ctx, false);
        }
        if !paused {
            state.dispatch();
        }
        let release_at = paused_since.map(|since| since + release_after);
        let next_due = state.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            // Paused long and nothing running: hand back the rest by closing the channel.
            _ = sleep_until(release_at), if paused && state.running.is_empty() => break End::Paused,
            joined = state.running.join_next(), if !state.running.is_empty() => {
                let Some(joined) = joined else { continue };
                let done = joined.map_err(|e| Error::Dlq(format!("consumer task failed: {e}")))?;
                if let Err(e) = state.settle(done) {
                    if e.is_retryable() {
                        break End::Broken(e.to_string());
                    }
                    return Err(e);
                }
                state.ack_finished(flush_after);
            }
            flushed = state.acks.flushed(), if state.acks.flushing() => {
                if let Err(e) = flushed {
                    // As for a batch: a lost channel lets the running batch finish.
                    if e.is_retryable() {
                        break End::Broken(e.to_string());
                    }
                    return Err(e);
                }
                state.ack_finished(flush_after);
            }
            _ = sleep_until(state.flush_at), if state.flush_at.is_some() && !state.acks.flushing() => {
                state.acks.start_flush(&ctx);
                state.flush_at = (state.acks.count > 0).then(|| tokio::time::Instant::now() + flush_after);
            }
            _ = sleep_until(next_due), if next_due.is_some() && !paused => {}
            // Watched in both directions: a pause must stop the next batch, not only the
            // one after it.
            _ = pause_flips(&mut pause, paused), if pause.is_some() => {}
            next = consumer.next(), if !paused => {
                let delivery = match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => break End::Broken(e.to_string()),
                    None => break End::Broken("the broker cancelled the consumer".into()),
                };
                backoff.reset();
                state.take(delivery);
                // What the broker has already delivered joins the line now, so it can
                // share a batch; nothing waits for more.
                while let Some(Some(next)) = consumer.next().now_or_never() {
                    match next {
                        Ok(delivery) => state.take(delivery),
                        Err(e) => {
                            tracing::warn!(queue = %ctx.queue.name, error = %e, "consumer stream failed");
                            break;
                        }
                    }
                }
            }
        }
    };
    match end {
        End::Shutdown | End::Paused => {
            // Let what runs finish, acknowledge every finished delivery — the prefix
            // together, the rest one by one — then close while the consumer exists: dropping
            // it first would send `basic.cancel`, and with a single active consumer that hands
            // the queue to a standby while held deliveries are still out, so it would see a
            // symbol's later messages before the returned earlier ones.
            while let Some(joined) = state.running.join_next().await {
                if let Ok(done) = joined {
                    let _ = state.settle(done);
                }
            }
            state.ack_finished(flush_after);
            if state.acks.flush(&ctx).await? {
                for slot in state.window.iter().filter(|s| s.finished) {
                    slot.acker.ack(BasicAckOptions { multiple: false }).await?;
                }
            }
            let _ = channel.close(200, "OK".into()).await;
        }
        End::Broken(_) => {
            // The acks are lost with the channel, but what the handlers record is not: an
            // aborted handler could leave, say, a Telegram send unrecorded and repeat it on
            // redelivery. Give them a while to finish.
            let deadline = tokio::time::sleep(ctx.handler_timeout.min(Duration::from_secs(60)));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    joined = state.running.join_next() => if joined.is_none() { break },
                    _ = &mut deadline => {
                        state.running.abort_all();
                        break;
                    }
                }
            }
        }
    }
    drop(consumer);
    Ok(end)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct State<H> {
    ctx: Arc<Ctx>,
    handler: H,
    window: VecDeque<Slot>,
    /// Taken, not running, not settled: arrival order, held ones in their place.
    queue: VecDeque<Pending>,
    running: JoinSet<BatchDone>,
    /// Keys of the running deliveries, with how many run (concurrent consumers).
    running_keys: HashMap<String, usize>,
    acks: AckBatch,
    flush_at: Option<tokio::time::Instant>,
    /// This session's number ([`Incoming::session`]).
    session: u64,
}

impl<H: BatchHandler> State<H> {
    fn take(&mut self, delivery: Delivery) {
        let incoming = Incoming::from_delivery(&self.ctx.queue.name, self.session, &delivery);
        let key = self.handler.ordering_key(&incoming);
        self.window.push_back(Slot {
            tag: delivery.delivery_tag,
            acker: delivery.acker.clone(),
            finished: false,
        });
        self.queue.push_back(Pending {
            delivery,
            incoming,
            key,
            not_before: None,
        });
    }

    /// When the first held delivery is due, if one is.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.queue.iter().filter_map(|p| p.not_before).min()
    }

    /// Starts every batch that may start now.
    fn dispatch(&mut self) {
        let concurrency = self.ctx.options.concurrency;
        let max_batch = self.ctx.options.batch;
        let now = tokio::time::Instant::now();
        while self.running.len() < concurrency {
            let Some(first) = self.startable(now) else {
                break;
            };
            let mut batch = Vec::new();
            if let Some(p) = self.queue.remove(first) {
                batch.push(p);
            }
            // With one batch at a time, the due deliveries right behind it join it.
            if concurrency == 1 {
                while batch.len() < max_batch
                    && self
                        .queue
                        .front()
                        .is_some_and(|p| p.not_before.is_none_or(|t| t <= now))
                {
                    if let Some(p) = self.queue.pop_front() {
                        batch.push(p);
                    }
                }
            }
            for p in &mut batch {
                p.not_before = None;
                if let Some(key) = &p.key {
                    *self.running_keys.entry(key.clone()).or_default() += 1;
                }
            }
            let (ctx, handler) = (self.ctx.clone(), self.handler.clone());
            self.running.spawn(run_batch(ctx, handler, batch));
        }
    }

    /// The position of the first delivery that may start at `now`.
    fn startable(&self, now: tokio::time::Instant) -> Option<usize> {
        let due = |p: &Pending| p.not_before.is_none_or(|t| t <= now);
        if self.ctx.options.concurrency == 1 {
            // Strict queue order: the first in line, or nothing.
            return self.queue.front().filter(|p| due(p)).map(|_| 0);
        }
        let mut waiting_keys: Vec<&str> = Vec::new();
        for (i, p) in self.queue.iter().enumerate() {
            match &p.key {
                None if due(p) => return Some(i),
                None => {}
                Some(key) => {
                    let blocked =
                        self.running_keys.contains_key(key) || waiting_keys.contains(&key.as_str());
                    if !blocked && due(p) {
                        return Some(i);
                    }
                    waiting_keys.push(key);
                }
            }
        }
        None
    }

    /// Records a finished batch: finished slots, and the held or unreached deliveries back
    /// at the front of the line in their order.
    fn settle(&mut self, (batch, fates): BatchDone) -> Result<()> {
        for p in &batch {
            if let Some(key) = &p.key
                && let Some(n) = self.running_keys.get_mut(key)
            {
                *n -= 1;
                if *n == 0 {
                    self.running_keys.remove(key);
                }
            }
        }
        let fates = fates?;
        let now = tokio::time::Instant::now();
        let mut back = Vec::new();
        for (mut p, fate) in batch.into_iter().zip(fates) {
            match fate {
                Fate::Finished => {
                    let tag = p.delivery.delivery_tag;
                    if let Some(slot) = self.window.iter_mut().find(|s| s.tag == tag) {
                        slot.finished = true;
                    }
                }
                Fate::Hold(delay) => {
                    p.not_before = Some(now + delay);
                    p.incoming.held_since.get_or_insert_with(Instant::now);
                    back.push(p);
                }
                Fate::Again => back.push(p),
            }
        }
        for p in back.into_iter().rev() {
            self.queue.push_front(p);
        }
        Ok(())
    }

    /// Queues the finished prefix of the window for acknowledgement (a cumulative ack must
    /// not cover a delivery still running or held before it): flushed now once there are
    /// enough, else within `flush_after`.
    fn ack_finished(&mut self, flush_after: Duration) {
        while self.window.front().is_some_and(|s| s.finished) {
            if let Some(slot) = self.window.pop_front() {
                self.acks.add(slot.acker);
            }
        }
        if self.acks.count >= ack_batch_size(&self.ctx) && self.acks.start_flush(&self.ctx) {
            self.flush_at = None;
        } else if self.acks.count > 0 && self.flush_at.is_none() {
            self.flush_at = Some(tokio::time::Instant::now() + flush_after);
        }
    }
}

/// Runs the handler on a batch and settles its failures with the broker.
async fn run_batch<H: BatchHandler>(
    ctx: Arc<Ctx>,
    mut handler: H,
    mut batch: Vec<Pending>,
) -> BatchDone {
    let result = handle_batch(&ctx, &mut handler, &mut batch).await;
    (batch, result)
}

async fn handle_batch<H: BatchHandler>(
    ctx: &Ctx,
    handler: &mut H,
    batch: &mut [Pending],
) -> Result<Vec<Fate>> {
    let queue = ctx.queue.name.clone();
    metrics::counter!(crate::events::MESSAGES_CONSUMED, "queue" => queue.clone())
        .increment(batch.len() as u64);
    metrics::histogram!(crate::events::BATCH_SIZE, "queue" => queue.clone())
        .record(batch.len() as f64);
    // A message of another schema version is poison before any handler sees it.
    let mut fates: Vec<Option<Fate>> = Vec::with_capacity(batch.len());
    let mut handled = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        let schema = p.incoming.header(headers::HEADER_SCHEMA);
        match tickwatch_schema::wire::check_schema_version(schema.as_deref()) {
            Ok(()) => {
                fates.push(None);
                handled.push(i);
            }
            Err(e) => {
                settle_failure(
                    ctx,
                    &p.delivery,
                    &p.incoming,
                    DeadReason::Invalid,
                    &e.to_string(),
                )
                .await?;
                fates.push(Some(Fate::Finished));
            }
        }
    }
    let incomings: Vec<Incoming> = handled.iter().map(|&i| batch[i].incoming.clone()).collect();
    let started = Instant::now();
    let outcomes: Vec<Outcome> = if incomings.is_empty() {
        Vec::new()
    } else {
        match tokio::time::timeout(
            ctx.handler_timeout,
            AssertUnwindSafe(handler.handle_batch(&incomings)).catch_unwind(),
        )
        .await
        {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(panic)) => {
                let error = format!("handler panicked: {}", panic_text(&panic));
                vec![Err(HandlerError::Transient(error)); incomings.len()]
            }
            Err(_) => {
                let error = format!("handler did not finish within {:?}", ctx.handler_timeout);
                vec![Err(HandlerError::Transient(error)); incomings.len()]
            }
        }
    };
    metrics::histogram!(crate::events::HANDLER_SECONDS, "queue" => queue)
        .record(started.elapsed().as_secs_f64());
    let mut outcomes = outcomes.into_iter();
    for &i in &handled {
        let p = &batch[i];
        let fate = match outcomes.next() {
            None => Fate::Again,
            Some(Ok(Handled::Done)) => Fate::Finished,
            Some(Ok(Handled::Hold(delay))) => Fate::Hold(delay),
            Some(Err(HandlerError::Transient(error))) => {
                retry_or_exhaust(ctx, &p.delivery, &p.incoming, &error).await?;
                Fate::Finished
            }
            Some(Err(HandlerError::Invalid(error))) => {
                settle_failure(ctx, &p.delivery, &p.incoming, DeadReason::Invalid, &error).await?;
                Fate::Finished
            }
            Some(Err(HandlerError::Rejected(error))) => {
                settle_failure(ctx, &p.delivery, &p.incoming, DeadReason::Rejected, &error).await?;
                Fate::Finished
            }
        };
        fates[i] = Some(fate);
    }
    Ok(fates
        .into_iter()
        .map(|f| f.unwrap_or(Fate::Again))
        .collect())
}

fn ack_batch_size(ctx: &Ctx) -> usize {
    let config = ctx.broker.config();
    usize::from(config.ack_batch.min(config.prefetch))
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
    // The instance in the tag lets an operator (and the scale-out test) see who is active.
    let tag = format!(
        "{}/{}:{}",
        ctx.broker.app_id(),
        ctx.broker.instance(),
        uuid::Uuid::now_v7()
    );
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

/// After a session ended paused: waits until the pause ends (true) or shutdown (false).
pub(super) async fn wait_while_paused(
    ctx: &Ctx,
    pause: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> bool {
    let resumed = tokio::select! {
        r = pause.wait_for(|paused| !*paused) => r.is_ok(),
        _ = shutdown.cancelled() => false,
    };
    if resumed {
        report_pause(ctx, false);
    }
    resumed
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
