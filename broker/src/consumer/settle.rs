//! Settling deliveries with the broker: failures handed on durably (a retry tier, the
//! DLQ with the reason), and acknowledgements of finished deliveries, cumulative and after
//! the consumer's checkpoint.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::types::FieldTable;
use tokio::task::JoinSet;

use super::{Checkpoint, Ctx, DeadReason, Incoming, now_ms};
use crate::error::{Error, Result};
use crate::publisher::OutgoingMessage;
use crate::{events, headers};

/// Finished deliveries not yet acknowledged: the newest one's acker acks them all.
///
/// A flush — the checkpoint, then the cumulative ack — runs as a task beside the batches,
/// one at a time: a checkpoint that commits to a database (milliseconds of fsync) does not
/// hold up the next batch. Whatever finishes meanwhile waits for the next flush.
#[derive(Default)]
pub(super) struct AckBatch {
    last: Option<Acker>,
    pub(super) count: usize,
    /// After a failed checkpoint, the next is not tried before this.
    checkpoint_after: Option<Instant>,
    /// The flush running, if one is.
    flushing: JoinSet<Result<Flushed>>,
}

/// How a flush ended.
enum Flushed {
    Acked,
    /// The checkpoint failed: the deliveries (the acker and how many) are not acknowledged.
    NotSaved(Acker, usize),
}

impl AckBatch {
    pub(super) fn add(&mut self, acker: Acker) {
        self.last = Some(acker);
        self.count += 1;
    }

    pub(super) fn flushing(&self) -> bool {
        !self.flushing.is_empty()
    }

    /// Starts a flush of what is finished, unless one runs, there is nothing, or a failed
    /// checkpoint is waiting out its pause; true if it started.
    pub(super) fn start_flush(&mut self, ctx: &Arc<Ctx>) -> bool {
        if self.flushing() || self.checkpoint_after.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let Some(acker) = self.last.take() else {
            return false;
        };
        let count = std::mem::take(&mut self.count);
        let ctx = ctx.clone();
        self.flushing.spawn(async move {
            if !checkpoint(&ctx).await {
                return Ok(Flushed::NotSaved(acker, count));
            }
            acker.ack(BasicAckOptions { multiple: true }).await?;
            metrics::counter!(crate::events::MESSAGES_ACKED, "queue" => ctx.queue.name.clone())
                .increment(count as u64);
            Ok(Flushed::Acked)
        });
        true
    }

    /// Waits for the running flush to end (pending forever when none runs). Deliveries
    /// whose checkpoint failed go back to wait for a later flush, one second on.
    pub(super) async fn flushed(&mut self) -> Result<()> {
        let Some(joined) = self.flushing.join_next().await else {
            return std::future::pending().await;
        };
        let flushed = joined.map_err(|e| Error::Dlq(format!("acknowledging failed: {e}")))?;
        if let Flushed::NotSaved(acker, count) = flushed? {
            // A later acker, if any, acknowledges these too.
            self.last.get_or_insert(acker);
            self.count += count;
            self.checkpoint_after = Some(Instant::now() + Duration::from_secs(1));
        }
        Ok(())
    }

    /// The last flush (shutdown, pause): waits for the running one, then flushes what is
    /// left and waits for it too. False when something stays unacknowledged (its
    /// checkpoint failed or is waiting out its pause).
    pub(super) async fn flush(&mut self, ctx: &Arc<Ctx>) -> Result<bool> {
        while self.flushing() {
            self.flushed().await?;
        }
        if self.start_flush(ctx) {
            self.flushed().await?;
        }
        Ok(self.last.is_none())
    }
}

/// Runs the consumer's checkpoint; true when there is none or it succeeded. A panic in it
/// is a failed checkpoint.
async fn checkpoint(ctx: &Ctx) -> bool {
    let Some(Checkpoint(save)) = &ctx.options.checkpoint else {
        return true;
    };
    let saved = match AssertUnwindSafe(save()).catch_unwind().await {
        Ok(saved) => saved,
        Err(panic) => Err(format!("the checkpoint panicked: {}", panic_text(&panic))),
    };
    match saved {
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

pub(super) async fn retry_or_exhaust(
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
pub(super) async fn settle_failure(
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

pub(super) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
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
