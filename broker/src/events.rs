//! What the broker runtime reports, as typed events: each one counts itself (the metric
//! keeps the exact number) and logs itself. Floods are summarised: per queue and kind of
//! event, the first one in a 10-second window is logged in full and the rest are counted
//! and logged as one line when the window ends ("dead-lettered 1,204 more invalid
//! messages … in the last 10 s, e.g. …"), so a poison flood cannot fill the disk with one
//! line per message.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Deliveries taken from a queue, by queue.
pub const MESSAGES_CONSUMED: &str = "tw_messages_consumed_total";
/// Deliveries acknowledged after their work was done, by queue.
pub const MESSAGES_ACKED: &str = "tw_messages_acked_total";
/// Deliveries sent to a retry tier, by queue.
pub const MESSAGES_RETRIED: &str = "tw_messages_retried_total";
/// Messages dead-lettered (or dropped from a private queue), by queue and reason.
pub const MESSAGES_DEAD_LETTERED: &str = "tw_messages_dead_lettered_total";
/// Checkpoints (acknowledgement rounds) that failed, by queue.
pub const CHECKPOINT_FAILURES: &str = "tw_checkpoint_failures_total";
/// Seconds a batch of deliveries spent in its handler, by queue.
pub const HANDLER_SECONDS: &str = "tw_handler_seconds";
/// Deliveries a handler asked to run again later (a downstream asked to wait).
pub const HANDLER_HELD: &str = "tw_handler_held_total";
/// Deliveries taken together in one batch, by queue.
pub const BATCH_SIZE: &str = "tw_batch_size";
/// Messages the broker confirmed, by exchange.
pub const MESSAGES_PUBLISHED: &str = "tw_messages_published_total";
/// Messages the broker refused or returned, by exchange.
pub const PUBLISH_FAILURES: &str = "tw_publish_failures_total";
/// 1 while a component's broker link is up, by component.
pub const BROKER_CONNECTED: &str = "tw_broker_connected";
/// Shards of a sharded queue this instance consumes, by queue.
pub const SHARDS_OWNED: &str = "tw_shards_owned";

/// The reasons a message is dead-lettered, as the `reason` label spells them.
pub const DEAD_LETTER_REASONS: [&str; 3] = ["invalid", "exhausted", "rejected"];

/// A consumer started on a queue: its series exist from now on, at zero, so a dashboard
/// shows 0 rather than "no data" and the first dead letter is an increase Prometheus sees
/// (a series born at 1 has no increase to alert on).
#[derive(Debug)]
pub struct ConsumerStarted<'a> {
    pub queue: &'a str,
}

impl ConsumerStarted<'_> {
    pub fn emit(&self) {
        let queue = self.queue.to_string();
        metrics::counter!(MESSAGES_CONSUMED, "queue" => queue.clone()).increment(0);
        metrics::counter!(MESSAGES_ACKED, "queue" => queue.clone()).increment(0);
        metrics::counter!(MESSAGES_RETRIED, "queue" => queue.clone()).increment(0);
        metrics::counter!(CHECKPOINT_FAILURES, "queue" => queue.clone()).increment(0);
        for reason in DEAD_LETTER_REASONS {
            metrics::counter!(MESSAGES_DEAD_LETTERED, "queue" => queue.clone(), "reason" => reason)
                .increment(0);
        }
        // Registered without a sample: rendered with empty buckets.
        let _ = metrics::histogram!(HANDLER_SECONDS, "queue" => queue.clone());
        let _ = metrics::histogram!(BATCH_SIZE, "queue" => queue);
        metrics::counter!(HANDLER_HELD).increment(0);
    }
}

/// A publisher started: the published and failed series of every exchange exist at zero.
#[derive(Debug)]
pub struct PublisherStarted<'a> {
    pub exchanges: &'a [String],
}

impl PublisherStarted<'_> {
    pub fn emit(&self) {
        for exchange in self.exchanges {
            metrics::counter!(MESSAGES_PUBLISHED, "exchange" => exchange.clone()).increment(0);
            metrics::counter!(PUBLISH_FAILURES, "exchange" => exchange.clone()).increment(0);
        }
    }
}

/// How long one summarising window lasts.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(10);

/// A message went to its queue's DLQ (or was dropped: a private queue has none).
#[derive(Debug)]
pub struct DeadLettered<'a> {
    pub queue: &'a str,
    pub dlq: Option<&'a str>,
    pub reason: &'static str,
    pub attempts: u32,
    pub message_id: &'a str,
    pub error: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(&self) {
        metrics::counter!(
            MESSAGES_DEAD_LETTERED,
            "queue" => self.queue.to_string(),
            "reason" => self.reason
        )
        .increment(1);
        let what = match self.dlq {
            Some(_) => "dead-lettered",
            None => "dropped (a private queue has no DLQ)",
        };
        let first = throttle().first_in_window(
            format!("{what}|{}|{}", self.queue, self.reason),
            self.error,
            summary(
                format!(
                    "{what} {{n}} more {} messages from {}",
                    self.reason, self.queue
                ),
                self.queue,
            ),
        );
        if first {
            tracing::error!(
                queue = %self.queue,
                dlq = self.dlq.unwrap_or(""),
                reason = self.reason,
                attempts = self.attempts,
                message_id = self.message_id,
                error = %self.error,
                "message {what}"
            );
        }
    }
}

/// A delivery failed transiently and went to a retry tier.
#[derive(Debug)]
pub struct Retried<'a> {
    pub queue: &'a str,
    pub attempt: usize,
    pub retry_queue: &'a str,
    pub error: &'a str,
}

impl Retried<'_> {
    pub fn emit(&self) {
        metrics::counter!(MESSAGES_RETRIED, "queue" => self.queue.to_string()).increment(1);
        let first = throttle().first_in_window(
            format!("retried|{}", self.queue),
            self.error,
            summary(
                format!("{{n}} more messages of {} sent to a retry tier", self.queue),
                self.queue,
            ),
        );
        if first {
            tracing::warn!(
                queue = %self.queue,
                attempt = self.attempt,
                retry_queue = %self.retry_queue,
                error = %self.error,
                "handler failed; retrying later"
            );
        }
    }
}

/// A consumer's checkpoint failed: its finished deliveries stay unacknowledged.
#[derive(Debug)]
pub struct CheckpointFailed<'a> {
    pub queue: &'a str,
    pub error: &'a str,
}

impl CheckpointFailed<'_> {
    pub fn emit(&self) {
        metrics::counter!(CHECKPOINT_FAILURES, "queue" => self.queue.to_string()).increment(1);
        let first = throttle().first_in_window(
            format!("checkpoint|{}", self.queue),
            self.error,
            summary(
                format!("the checkpoint of {} failed {{n}} more times", self.queue),
                self.queue,
            ),
        );
        if first {
            tracing::warn!(
                queue = %self.queue,
                error = %self.error,
                "checkpoint failed; acknowledgements wait until it succeeds"
            );
        }
    }
}

/// A window's summary line: `text` with `{n}` replaced by the number suppressed.
fn summary(text: String, queue: &str) -> impl Fn(u64, &str) + Send + 'static {
    let queue = queue.to_string();
    move |more, example| {
        tracing::error!(
            queue = %queue,
            count = more,
            "{} in the last {} s, e.g. {example}",
            text.replace("{n}", &thousands(more)),
            SUMMARY_WINDOW.as_secs()
        );
    }
}

/// `1204` → `1,204`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Window {
    started: Instant,
    suppressed: u64,
    example: String,
}

/// Open summarising windows by key.
#[derive(Default)]
struct Throttle {
    windows: Mutex<HashMap<String, Window>>,
}

fn throttle() -> &'static Throttle {
    static THROTTLE: OnceLock<Throttle> = OnceLock::new();
    THROTTLE.get_or_init(Throttle::default)
}

impl Throttle {
    /// True when this event opens a window (log it in full); otherwise it is counted, and
    /// `report(count, example)` runs once when the window ends.
    fn first_in_window(
        &'static self,
        key: String,
        example: &str,
        report: impl Fn(u64, &str) + Send + 'static,
    ) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get_mut(&key) {
            Some(window) if now < window.started + SUMMARY_WINDOW => {
                window.suppressed += 1;
                window.example = example.chars().take(300).collect();
                if window.suppressed == 1 {
                    let (started, key) = (window.started, key.clone());
                    // Outside a runtime (a unit test) the count stays in the metric only.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(async move {
                            tokio::time::sleep_until(started + SUMMARY_WINDOW).await;
                            if let Some((more, example)) = self.close(&key, started) {
                                report(more, &example);
                            }
                        });
                    }
                }
                false
            }
            _ => {
                windows.insert(
                    key,
                    Window {
                        started: now,
                        suppressed: 0,
                        example: String::new(),
                    },
                );
                true
            }
        }
    }

    /// Ends the window opened at `started`, if still open: how many were suppressed.
    fn close(&self, key: &str, started: Instant) -> Option<(u64, String)> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.get(key).is_some_and(|w| w.started == started) {
            windows
                .remove(key)
                .map(|w| (w.suppressed, w.example))
                .filter(|(n, _)| *n > 0)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_logs_once_then_one_summary_per_window() {
        static T: OnceLock<Throttle> = OnceLock::new();
        let throttle = T.get_or_init(Throttle::default);
        let reported = Arc::new(AtomicU64::new(0));
        let report = || {
            let reported = reported.clone();
            move |n: u64, example: &str| {
                assert_eq!(example, "bad 1203");
                reported.fetch_add(n, Ordering::SeqCst);
            }
        };
        let mut firsts = 0;
        for i in 0..1204 {
            if throttle.first_in_window("k".into(), &format!("bad {i}"), report()) {
                firsts += 1;
            }
        }
        assert_eq!(firsts, 1);
        tokio::time::sleep(SUMMARY_WINDOW + Duration::from_millis(1)).await;
        assert_eq!(reported.load(Ordering::SeqCst), 1203);
        // The next one after the window is logged in full again.
        assert!(throttle.first_in_window("k".into(), "x", report()));
        assert!(throttle.first_in_window("other".into(), "x", report()));
    }
}
