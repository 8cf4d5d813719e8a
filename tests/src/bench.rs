//! The notification burst benchmark: N notifications to M private chats, submitted by any
//! means (a notifier directly, or through the broker), measured at the fake Telegram.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tickwatch_schema::wire::{Channel, EventKind, Notification, ParseMode};

use crate::fake_telegram::{FakeTelegram, RateReport};

/// What to send: `notifications` spread round-robin over `chats` private chats.
#[derive(Debug, Clone)]
pub struct BurstPlan {
    pub notifications: usize,
    pub chats: usize,
    /// The first chat id; chats are `first_chat_id .. first_chat_id + chats`.
    pub first_chat_id: i64,
    /// Telegram's limits the minimum time is computed from.
    pub global_per_sec: f64,
    pub per_chat_per_sec: f64,
    /// Distinguishes the dedupe keys of one run from another's.
    pub run: String,
}

impl BurstPlan {
    /// Telegram's limits: 30 messages/s overall, 1/s per chat.
    pub fn new(notifications: usize, chats: usize) -> Self {
        BurstPlan {
            notifications,
            chats: chats.max(1),
            first_chat_id: 1_000_000,
            global_per_sec: 30.0,
            per_chat_per_sec: 1.0,
            run: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The notifications, interleaved across chats; each text is unique (so the fake can
    /// tell duplicates) and full of MarkdownV2 escapes.
    pub fn notifications(&self) -> Vec<Notification> {
        (0..self.notifications)
            .map(|i| {
                let chat_id = self.first_chat_id + (i % self.chats) as i64;
                Notification {
                    id: uuid::Uuid::now_v7(),
                    channel: Channel::Telegram,
                    chat_id,
                    text: format!("*BRK\\.B* crossed `412\\.50` \\(\\-1\\.2%\\) \\#{i}"),
                    parse_mode: Some(ParseMode::MarkdownV2),
                    dedupe_key: format!("bench:{}:{i}", self.run),
                    kind: EventKind::Alert,
                    origin_ts: None,
                    buttons: Vec::new(),
                    chart: None,
                }
            })
            .collect()
    }

    /// The least time the limits allow from the first send to the last: the global rate,
    /// or the busiest chat at one message per second, whichever is slower.
    pub fn minimum_duration(&self) -> Duration {
        let n = self.notifications as f64;
        let per_chat = (self.notifications.div_ceil(self.chats)) as f64;
        let global = (n - 1.0).max(0.0) / self.global_per_sec;
        let chat = (per_chat - 1.0).max(0.0) / self.per_chat_per_sec;
        Duration::from_secs_f64(global.max(chat))
    }
}

/// What the fake saw.
#[derive(Debug, Clone)]
pub struct BurstReport {
    pub planned: usize,
    /// Planned notifications that reached their chat at least once.
    pub delivered: usize,
    /// Extra copies beyond the first.
    pub duplicates: usize,
    /// From the first submission to the last accepted arrival.
    pub elapsed: Duration,
    pub minimum: Duration,
    /// `elapsed / minimum`.
    pub ratio: f64,
    pub rates: RateReport,
    /// Whether everything arrived before the timeout.
    pub completed: bool,
}

impl std::fmt::Display for BurstReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} planned, {} delivered, {} duplicates, {:.1} s (minimum {:.1} s, ratio {:.3}), \
             max {}/s per chat, {}/s overall, {} early retries",
            self.planned,
            self.delivered,
            self.duplicates,
            self.elapsed.as_secs_f64(),
            self.minimum.as_secs_f64(),
            self.ratio,
            self.rates.max_per_chat_per_sec,
            self.rates.max_global_per_sec,
            self.rates.early_retries,
        )
    }
}

/// Submits every planned notification with `submit` (which should not wait for delivery:
/// spawn, or publish), then waits for the fake to have received them all, or `timeout`.
pub async fn run_burst<F, Fut>(
    fake: &FakeTelegram,
    plan: &BurstPlan,
    timeout: Duration,
    mut submit: F,
) -> BurstReport
where
    F: FnMut(Notification) -> Fut,
    Fut: Future<Output = ()>,
{
    let notifications = plan.notifications();
    let already = fake.delivered().len();
    let started = Instant::now();
    for notification in notifications.iter().cloned() {
        submit(notification).await;
    }
    let completed = fake
        .wait_for_delivered(already + notifications.len(), timeout)
        .await;
    report(fake, plan, &notifications, started, completed)
}

fn report(
    fake: &FakeTelegram,
    plan: &BurstPlan,
    notifications: &[Notification],
    started: Instant,
    completed: bool,
) -> BurstReport {
    let mut copies: HashMap<(i64, String), usize> = notifications
        .iter()
        .map(|n| ((n.chat_id, n.text.clone()), 0))
        .collect();
    let mut last = started;
    for message in fake.delivered() {
        if let Some(count) = copies.get_mut(&(message.chat_id, message.text.clone())) {
            *count += 1;
            last = last.max(message.at);
        }
    }
    let delivered = copies.values().filter(|&&c| c > 0).count();
    let duplicates = copies.values().map(|&c| c.saturating_sub(1)).sum();
    let elapsed = last.saturating_duration_since(started);
    let minimum = plan.minimum_duration();
    BurstReport {
        planned: notifications.len(),
        delivered,
        duplicates,
        elapsed,
        minimum,
        ratio: if minimum.is_zero() {
            0.0
        } else {
            elapsed.as_secs_f64() / minimum.as_secs_f64()
        },
        rates: fake.rates(),
        completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_is_the_global_rate_for_many_chats() {
        let plan = BurstPlan::new(10_000, 1_000);
        let min = plan.minimum_duration().as_secs_f64();
        assert!((min - 333.3).abs() < 0.1, "{min}");
        // One chat: one message per second dominates.
        assert_eq!(
            BurstPlan::new(10, 1).minimum_duration(),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn texts_are_unique_and_interleaved() {
        let plan = BurstPlan::new(6, 3);
        let chats: Vec<i64> = plan.notifications().iter().map(|n| n.chat_id).collect();
        assert_eq!(
            chats,
            [
                1_000_000, 1_000_001, 1_000_002, 1_000_000, 1_000_001, 1_000_002
            ]
        );
    }
}
