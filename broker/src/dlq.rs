//! Operations on dead-letter queues: `tickwatch dlq list | show | replay | purge`.
//!
//! Messages are read with `basic.get` on a channel of their own and left unacknowledged
//! while looked at: closing the channel puts them back. A replayed message is removed from
//! the DLQ only after the broker confirmed its re-publication, so a crash mid-replay loses
//! nothing (at worst a message is replayed twice, which consumers tolerate).

use std::collections::BTreeMap;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel};
use serde::Serialize;
use tickwatch_schema::names::{Names, WorkQueue};

use crate::connection::Broker;
use crate::error::{Error, Result};
use crate::headers;
use crate::publisher::{OutgoingMessage, Publisher};
use crate::topology::Topology;

/// How many messages `list` reads per DLQ to count reasons.
pub const SCAN_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DlqSummary {
    pub queue: String,
    pub dlq: String,
    pub depth: u32,
    /// Messages per dead-letter reason among the ones scanned.
    pub by_reason: BTreeMap<String, u64>,
    pub scanned: usize,
}

/// A dead-lettered message, as `dlq show` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadMessage {
    pub message_id: Option<String>,
    pub kind: Option<String>,
    pub reason: String,
    pub error: Option<String>,
    pub attempts: Option<i64>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub first_failure_ms: Option<i64>,
    pub dead_at_ms: Option<i64>,
    pub headers: serde_json::Value,
    /// The body as JSON when it is JSON, else as text.
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Finds the DLQ meant by a role (`alerts`), a work queue (`tw.alerts.q`) or a DLQ name.
pub fn resolve(topology: &Topology, names: &Names, given: &str) -> Result<String> {
    let by_role = WorkQueue::ALL
        .into_iter()
        .find(|q| q.role() == given)
        .map(|q| names.queue(q));
    let base = by_role.as_deref().unwrap_or(given);
    let wanted = base.strip_suffix(".dlq").unwrap_or(base);
    let known: Vec<&str> = topology
        .work_queues
        .iter()
        .map(|w| w.dlq.as_str())
        .collect();
    topology
        .work_queues
        .iter()
        .find(|w| w.name == wanted)
        .map(|w| w.dlq.clone())
        .ok_or_else(|| {
            Error::Dlq(format!(
                "`{given}` is no DLQ of this topology; known: {}",
                known.join(", ")
            ))
        })
}

/// Depth and reasons of every DLQ of the topology.
pub async fn list(broker: &Broker, topology: &Topology) -> Result<Vec<DlqSummary>> {
    let mut out = Vec::new();
    for work in topology.work_queues.iter().filter(|w| !w.discard_failures) {
        let (depth, messages) = peek(broker, &work.dlq, SCAN_LIMIT).await?;
        let mut by_reason = BTreeMap::new();
        for m in &messages {
            *by_reason.entry(m.reason.clone()).or_insert(0) += 1;
        }
        out.push(DlqSummary {
            queue: work.name.clone(),
            dlq: work.dlq.clone(),
            depth,
            by_reason,
            scanned: messages.len(),
        });
    }
    Ok(out)
}

/// The first `limit` messages of a DLQ, left in place.
pub async fn show(broker: &Broker, dlq: &str, limit: usize) -> Result<Vec<DeadMessage>> {
    Ok(peek(broker, dlq, limit).await?.1)
}

async fn depth(channel: &Channel, queue: &str) -> Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            Error::Dlq(format!(
                "queue `{queue}`: {e} (run `tickwatch topology apply`?)"
            ))
        })?;
    Ok(declared.message_count())
}

async fn peek(broker: &Broker, dlq: &str, limit: usize) -> Result<(u32, Vec<DeadMessage>)> {
    let channel = broker.channel().await?;
    let depth = depth(&channel, dlq).await?;
    let mut out = Vec::new();
    while out.len() < limit.min(depth as usize) {
        let Some(message) = channel
            .basic_get(dlq.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        out.push(describe(
            &message.delivery.properties,
            &message.delivery.data,
        ));
    }
    // Closing the channel returns every message read above to the queue.
    let _ = channel.close(200, "OK".into()).await;
    Ok((depth, out))
}

fn describe(properties: &lapin::BasicProperties, body: &[u8]) -> DeadMessage {
    let table = properties.headers().as_ref();
    let (death_reason, death_exchange, death_key) = first_death(table);
    DeadMessage {
        message_id: properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string()),
        kind: properties.kind().as_ref().map(|s| s.as_str().to_string()),
        reason: headers::get_str(table, headers::DEAD_REASON)
            .or(death_reason)
            .unwrap_or_else(|| "unknown".to_string()),
        error: headers::get_str(table, headers::DEAD_ERROR),
        attempts: headers::get_i64(table, headers::HEADER_ATTEMPT)
            .or_else(|| headers::get_i64(table, headers::X_DELIVERY_COUNT)),
        original_exchange: headers::get_str(table, headers::ORIGINAL_EXCHANGE).or(death_exchange),
        original_routing_key: headers::get_str(table, headers::ORIGINAL_ROUTING_KEY).or(death_key),
        first_failure_ms: headers::get_i64(table, headers::FIRST_FAILURE),
        dead_at_ms: headers::get_i64(table, headers::DEAD_AT),
        headers: headers::to_json(table),
        body: serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
        }),
    }
}

/// For a message the broker dead-lettered itself (delivery limit, TTL): the reason, and the
/// exchange and key of the first death — where it was first published.
fn first_death(table: Option<&FieldTable>) -> (Option<String>, Option<String>, Option<String>) {
    let Some(AMQPValue::FieldArray(deaths)) = table.and_then(|t| t.inner().get(headers::X_DEATH))
    else {
        return (None, None, None);
    };
    let entries: Vec<&FieldTable> = deaths
        .as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        })
        .collect();
    let reason = entries
        .first()
        .and_then(|t| headers::get_str(Some(t), "reason"));
    let first = entries.last();
    let exchange = first.and_then(|t| headers::get_str(Some(t), "exchange"));
    let key = first.and_then(|t| match t.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => {
            keys.as_slice().first().and_then(headers::value_to_string)
        }
        _ => None,
    });
    (reason, exchange, key)
}

/// The work queue whose failures `dlq` holds.
pub fn source_queue<'a>(topology: &'a Topology, dlq: &str) -> Option<&'a str> {
    topology
        .work_queues
        .iter()
        .find(|w| w.dlq == dlq)
        .map(|w| w.name.as_str())
}

/// Re-publishes up to `limit` messages (optionally only those dead-lettered for
/// `reason`) to their original exchange and routing key, exactly as first published —
/// or, with `only_queue`, straight to that queue through the default exchange, so that
/// a message the exchange also routes to other queues (a tick: signals, alerts, recorder)
/// reaches only the consumer that failed it.
pub async fn replay(
    broker: &Broker,
    dlq: &str,
    limit: usize,
    reason: Option<&str>,
    only_queue: Option<&str>,
) -> Result<ReplayReport> {
    let channel = broker.channel().await?;
    depth(&channel, dlq).await?;
    let publisher = Publisher::start(broker, &format!("dlq-replay:{dlq}"));
    let mut report = ReplayReport::default();
    let mut pending: Vec<(crate::publisher::Confirm, Acker)> = Vec::new();
    // A message that fails again at once comes back while the replay runs: it is left
    // for the next replay instead of going round in a loop.
    let mut replayed_ids = std::collections::HashSet::new();
    while report.replayed + pending.len() < limit {
        let Some(message) = get_settled(&channel, dlq).await? else {
            break;
        };
        let delivery = message.delivery;
        let described = describe(&delivery.properties, &delivery.data);
        if reason.is_some_and(|r| r != described.reason) {
            report.skipped += 1;
            continue;
        }
        if let Some(id) = &described.message_id
            && !replayed_ids.insert(id.clone())
        {
            report.skipped += 1;
            continue;
        }
        let route = match only_queue {
            Some(queue) => (Some(String::new()), Some(queue.to_string())),
            None => (described.original_exchange, described.original_routing_key),
        };
        let (Some(exchange), Some(routing_key)) = route else {
            tracing::warn!(dlq, message_id = ?described.message_id, "no original route recorded; left in the DLQ");
            report.skipped += 1;
            continue;
        };
        let mut cleaned = delivery.properties.headers().clone().unwrap_or_default();
        for key in headers::FAILURE_HEADERS {
            cleaned = headers::remove(&mut cleaned, key);
        }
        let outgoing = OutgoingMessage {
            exchange,
            routing_key,
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(cleaned),
            mandatory: true,
        };
        pending.push((publisher.send_raw(outgoing).await?, delivery.acker.clone()));
        if pending.len() >= 100 {
            settle(&mut pending, &mut report).await;
        }
    }
    settle(&mut pending, &mut report).await;
    publisher.close().await;
    // Skipped and failed messages go back to the DLQ with the channel.
    let _ = channel.close(200, "OK".into()).await;
    Ok(report)
}

/// The next message; an empty answer is asked again a few times, because messages a
/// just-closed channel was looking at (`list`, `show`) return to a quorum queue a moment
/// after the close.
async fn get_settled(
    channel: &Channel,
    dlq: &str,
) -> Result<Option<lapin::message::BasicGetMessage>> {
    for _ in 0..5 {
        if let Some(message) = channel
            .basic_get(dlq.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            return Ok(Some(message));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(None)
}

/// Waits for each re-publication's confirm, then removes that message from the DLQ.
async fn settle(pending: &mut Vec<(crate::publisher::Confirm, Acker)>, report: &mut ReplayReport) {
    for (confirm, acker) in pending.drain(..) {
        match confirm.wait().await {
            Ok(_) => match acker.ack(BasicAckOptions::default()).await {
                Ok(_) => report.replayed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "replayed but could not remove from the DLQ; it may be replayed again");
                    report.failed += 1;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "re-publication failed; the message stays in the DLQ");
                report.failed += 1;
            }
        }
    }
}

/// Empties a DLQ; returns how many messages were dropped.
pub async fn purge(broker: &Broker, dlq: &str) -> Result<u32> {
    let channel = broker.channel().await?;
    depth(&channel, dlq).await?;
    let purged = channel
        .queue_purge(dlq.into(), QueuePurgeOptions::default())
        .await?;
    let _ = channel.close(200, "OK".into()).await;
    Ok(purged)
}
