//! Scale-out: the shards of a role's work queue split between its live instances.
//!
//! Each instance of a sharded role announces itself twice a second on the `<prefix>.members`
//! topic exchange (routing key: the role's work queue) and hears the others on a private
//! queue; an instance heard from within [`MEMBER_TIMEOUT`] is live, one that stops
//! (`leaving`) drops out at once. Every instance computes the same split from the same
//! live set ([`assign`]: balanced, and stable under small changes) and consumes only its
//! own shards, so k instances are each active on about N/k shards. A change moves shards:
//! the old owner finishes what it runs, acknowledges, and closes the shard's channel (its
//! unstarted deliveries go back to the queue, in order); single-active-consumer keeps the
//! new owner standing by until then, so a shard is never consumed by two instances at
//! once and each symbol keeps its order. An instance killed outright stops announcing
//! itself and its shards are taken over after [`MEMBER_TIMEOUT`].
//!
//! No consumer priorities are needed (RabbitMQ 3.10's single-active-consumer ignores
//! them): who consumes is decided here, the broker only serialises the handover.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::Broker;
use crate::error::Result;

/// How often an instance announces itself.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// An instance not heard from for this long (four announcements missed) is gone: its
/// shards are taken over.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

/// The shards `me` consumes when `members` (`me` among them) are live: shard by shard, the
/// live instance that ranks it highest (rendezvous hashing) and has fewer than
/// ⌈shards / members⌉ takes it. Every instance computes the same answer; one instance
/// joining or leaving moves few shards.
pub fn assign(shards: usize, members: &BTreeSet<String>, me: &str) -> BTreeSet<usize> {
    let count = members.len().max(1);
    let cap = shards.div_ceil(count);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mine = BTreeSet::new();
    for shard in 0..shards {
        let mut ranked: Vec<&str> = members.iter().map(String::as_str).collect();
        ranked.sort_by_key(|m| std::cmp::Reverse((rank(m, shard), *m)));
        let owner = ranked
            .into_iter()
            .find(|m| taken.get(m).copied().unwrap_or(0) < cap)
            .unwrap_or(me);
        *taken.entry(owner).or_insert(0) += 1;
        if owner == me {
            mine.insert(shard);
        }
    }
    mine
}

/// A hash of (instance, shard) that every build computes alike (FNV-1a: std's hasher may
/// differ between Rust versions, and two instances must agree).
fn rank(member: &str, shard: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member
        .bytes()
        .chain([0])
        .chain((shard as u64).to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What instances tell each other.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    instance: String,
    #[serde(default)]
    leaving: bool,
}

/// Keeps `live` current with the live instances of the role consuming `queue` (this one
/// included) until `shutdown`, then says this instance is leaving.
pub(super) async fn membership(
    broker: Broker,
    queue: String,
    live: watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
) {
    let component = format!("members:{queue}");
    let mut backoff = broker.config().reconnect_backoff();
    let mut heard: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let Some(channel) = broker.channel_with_retry(&component, &shutdown).await else {
            return;
        };
        match announce_and_listen(&broker, &channel, &queue, &live, &mut heard, &shutdown).await {
            Ok(()) => {
                let _ = channel.close(200, "OK".into()).await;
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(%queue, error = %e, retry_in = ?delay, "lost the instances' channel; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn announce_and_listen(
    broker: &Broker,
    channel: &lapin::Channel,
    queue: &str,
    live: &watch::Sender<BTreeSet<String>>,
    heard: &mut BTreeMap<String, Instant>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let exchange = format!("{}.members", broker.names().prefix());
    let me = broker.instance().to_string();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    // Private, and announcements older than the timeout are worthless.
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(MEMBER_TIMEOUT.as_millis() as i64),
    );
    let inbox = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            inbox.name().as_str().into(),
            exchange.as_str().into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut inbox = channel
        .basic_consume(
            inbox.name().as_str().into(),
            format!("{}/{me}:members", broker.app_id()).as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let announce = |leaving: bool| {
        let body = serde_json::to_vec(&Announcement {
            instance: me.clone(),
            leaving,
        })
        .unwrap_or_default();
        let (exchange, channel) = (exchange.clone(), channel.clone());
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_expiration(MEMBER_TIMEOUT.as_millis().to_string().as_str().into()),
                )
                .await
        }
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = announce(true).await;
                return Ok(());
            }
            _ = tick.tick() => {
                announce(false).await?;
                let now = Instant::now();
                heard.retain(|_, at| now.duration_since(*at) < MEMBER_TIMEOUT);
            }
            next = inbox.next() => {
                let delivery = match next {
                    Some(delivery) => delivery?,
                    None => return Err(crate::Error::Dlq("the broker cancelled the instances' consumer".into())),
                };
                match serde_json::from_slice::<Announcement>(&delivery.data) {
                    Ok(a) if a.leaving => { heard.remove(&a.instance); }
                    Ok(a) => { heard.insert(a.instance, Instant::now()); }
                    Err(e) => tracing::warn!(%queue, error = %e, "unreadable instance announcement ignored"),
                }
            }
        }
        let mut now_live: BTreeSet<String> = heard.keys().cloned().collect();
        now_live.insert(me.clone());
        live.send_if_modified(|current| {
            if *current == now_live {
                return false;
            }
            *current = now_live;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_instances_split_eight_shards_four_and_four() {
        let live = members(&["signals-aaaa", "signals-bbbb"]);
        let a = assign(8, &live, "signals-aaaa");
        let b = assign(8, &live, "signals-bbbb");
        assert_eq!((a.len(), b.len()), (4, 4));
        assert!(a.is_disjoint(&b));
        assert_eq!(a.union(&b).count(), 8);
    }

    #[test]
    fn every_shard_has_exactly_one_owner_and_the_load_is_even() {
        for k in 1..=7 {
            let live: BTreeSet<String> = (0..k).map(|i| format!("alerts-{i:08x}")).collect();
            let owned: Vec<BTreeSet<usize>> = live.iter().map(|m| assign(16, &live, m)).collect();
            let mut all: Vec<usize> = owned.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..16).collect::<Vec<_>>(), "{k} instances");
            let cap = 16usize.div_ceil(k);
            assert!(
                owned.iter().all(|o| o.len() <= cap),
                "{k} instances: {owned:?}"
            );
        }
    }

    #[test]
    fn an_instance_alone_owns_everything() {
        assert_eq!(assign(8, &members(&["x"]), "x").len(), 8);
        assert_eq!(assign(8, &BTreeSet::new(), "x").len(), 8);
    }

    #[test]
    fn a_third_instance_takes_shards_mostly_from_the_others_without_reshuffling() {
        let two = members(&["a-1", "b-2"]);
        let three = members(&["a-1", "b-2", "c-3"]);
        let moved = ["a-1", "b-2"]
            .iter()
            .map(|m| {
                assign(12, &two, m)
                    .difference(&assign(12, &three, m))
                    .count()
            })
            .sum::<usize>();
        // c takes 4 of 12; a perfectly stable split moves exactly those.
        assert!(moved <= 6, "{moved} shards moved");
    }
}
