//! The notifier: one [`Notification`] in, one [`Outcome`] (ack) or [`Error`] (retry or
//! dead-letter) out. Shared by reference: `handle` takes `&self`, so the broker adapter can
//! run many deliveries at once (it must, for throughput: each chat gets one message a
//! second, so the deliveries in flight should span many chats).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbErr};
use tickwatch_schema::wire::{Message as _, Notification};
use tokio::sync::watch;

use crate::Error;
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::config::NotifierConfig;
use crate::markdown;
use crate::record::{self, Preference, Row, status};
use crate::sender::{OutgoingMessage, SendOutcome, Sender};

/// What `handle` did; every outcome means "acknowledge the message".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Telegram accepted every part. `recorded` is false when the database could not be
    /// updated afterwards (logged as an error; a redelivery would send again).
    Sent {
        message_ids: Vec<i64>,
        recorded: bool,
    },
    /// No Telegram token: written to the log, recorded as `logged`.
    Logged,
    /// The dedupe key was already done (`sent`, `skipped` or `logged`): nothing sent.
    Duplicate { status: String },
    /// The user turned this kind of notification off.
    Skipped { reason: String },
    /// The chat cannot be reached: recorded as failed; the user (if known) is now inactive.
    Unreachable {
        reason: String,
        user_deactivated: bool,
    },
}

/// Delivers notifications; cheap to clone (shared state).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sender", &self.inner.sender)
            .field("breaker", &self.breaker_state())
            .finish_non_exhaustive()
    }
}

struct Inner {
    db: DatabaseConnection,
    sender: Sender,
    max_len: usize,
    breaker: Mutex<BreakerCell>,
    breaker_tx: watch::Sender<BreakerState>,
    in_flight: Mutex<HashSet<String>>,
}

struct BreakerCell {
    breaker: CircuitBreaker,
    /// Whether a probe task is running; guarded with the breaker so an open never finds a
    /// prober that is just exiting.
    prober: bool,
}

/// Removes a dedupe key from the in-flight set when the delivery ends, however it ends.
struct Claim<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic elsewhere cannot break it.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// A notifier for the configuration: Telegram when a token is set, the log otherwise.
    pub fn new(config: &NotifierConfig, db: DatabaseConnection) -> Result<Self, Error> {
        let sender = Sender::from_config(config)?;
        Ok(Self::with_sender(config, db, sender))
    }

    /// A notifier with a given sender (the configuration's limits are the sender's own).
    pub fn with_sender(config: &NotifierConfig, db: DatabaseConnection, sender: Sender) -> Self {
        let (breaker_tx, _) = watch::channel(BreakerState::Closed);
        Notifier {
            inner: Arc::new(Inner {
                db,
                sender,
                max_len: config.max_message_len.clamp(16, markdown::MAX_MESSAGE_LEN),
                breaker: Mutex::new(BreakerCell {
                    breaker: CircuitBreaker::new(config.breaker.clone()),
                    prober: false,
                }),
                breaker_tx,
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn sender(&self) -> &Sender {
        &self.inner.sender
    }

    /// The breaker now. While it is not `Closed`, the consumer should not take messages.
    pub fn breaker_state(&self) -> BreakerState {
        lock(&self.inner.breaker).breaker.state()
    }

    /// Every breaker transition: pause consumption while the value is not `Closed`, resume
    /// when it is. The notifier probes Telegram by itself while open.
    pub fn watch_breaker(&self) -> watch::Receiver<BreakerState> {
        self.inner.breaker_tx.subscribe()
    }

    /// Delivers one notification, at most once per dedupe key toward the user.
    pub async fn handle(&self, notification: &Notification) -> Result<Outcome, Error> {
        notification
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let key = notification.dedupe_key.as_str();
        let _claim = self.claim(key)?;
        let db = &self.inner.db;

        if let Some(row) = record::find(db, key).await?
            && status::is_final(&row.status)
        {
            return Ok(Outcome::Duplicate { status: row.status });
        }
        let row = Row {
            id: notification.id.to_string(),
            dedupe_key: key,
            chat_id: notification.chat_id,
            kind: notification.kind.as_str(),
            text: &notification.text,
        };

        let user = record::find_user(db, notification.chat_id).await?;
        if let Some(user) = &user
            && !user.active
        {
            let reason = format!(
                "user inactive: {}",
                user.paused_reason
                    .as_deref()
                    .unwrap_or("notifications paused")
            );
            record::settle(db, &row, status::FAILED, &reason).await?;
            return Ok(Outcome::Unreachable {
                reason,
                user_deactivated: false,
            });
        }
        let preference = user.as_ref().map_or(Preference::On, |u| {
            record::preference(&u.prefs, notification.kind)
        });
        if preference == Preference::Off {
            record::settle(db, &row, status::SKIPPED, "off").await?;
            return Ok(Outcome::Skipped {
                reason: "off".into(),
            });
        }
        let silent = preference == Preference::Silent;

        let telegram = match &self.inner.sender {
            Sender::Log(log) => {
                log.send(&OutgoingMessage {
                    chat_id: notification.chat_id,
                    text: notification.text.clone(),
                    parse_mode: notification.parse_mode,
                    disable_notification: silent,
                });
                record::settle(
                    db,
                    &row,
                    status::LOGGED,
                    "no TELEGRAM_BOT_TOKEN: logged, not sent",
                )
                .await?;
                return Ok(Outcome::Logged);
            }
            Sender::Telegram(telegram) => telegram,
        };
        if !self.breaker_state().is_closed() {
            return Err(Error::CircuitOpen);
        }

        let parts = markdown::split(
            &notification.text,
            notification.parse_mode,
            self.inner.max_len,
        );
        if parts.is_empty() {
            return Err(Error::Invalid("text is blank".into()));
        }
        if !record::begin(db, &row).await? {
            return Err(Error::InFlight(key.to_string()));
        }
        let count = parts.len();
        let mut message_ids = Vec::with_capacity(count);
        let mut recorded = true;
        for (index, part) in parts.iter().enumerate() {
            // A split message records each part under its own key, so a retry after part 2
            // failed does not send part 1 again.
            let part_key = (count > 1).then(|| format!("{key}#{}/{count}", index + 1));
            if let Some(part_key) = &part_key {
                if record::find(db, part_key)
                    .await?
                    .is_some_and(|r| r.status == status::SENT)
                {
                    continue;
                }
                let part_row = Row {
                    id: format!("{}#{}", notification.id, index + 1),
                    dedupe_key: part_key,
                    text: part,
                    ..row.clone()
                };
                if !record::begin(db, &part_row).await? {
                    return Err(Error::InFlight(part_key.clone()));
                }
            }
            let message = OutgoingMessage {
                chat_id: notification.chat_id,
                text: part.clone(),
                parse_mode: notification.parse_mode,
                disable_notification: silent,
            };
            // The breaker is asked again when the slot comes: with many deliveries in
            // flight, those already waiting for their slot when it opened must not go out
            // to a Telegram that is down (each would fail and spend a retry attempt).
            let outcome = telegram
                .send_if(&message, || self.breaker_state().is_closed())
                .await;
            let record_key = part_key.as_deref().unwrap_or(key);
            let Some(outcome) = outcome else {
                return Err(Error::CircuitOpen);
            };
            match outcome {
                SendOutcome::Delivered { message_id } => {
                    // First thing after Telegram accepted: the crash window is this write.
                    recorded &= self.record_sent(record_key).await;
                    self.breaker_success();
                    message_ids.push(message_id);
                }
                SendOutcome::Transient(error) => {
                    self.breaker_failure();
                    self.note_error(key, record_key, status::PENDING, &error)
                        .await;
                    return Err(Error::Transient(error));
                }
                SendOutcome::RetryAfter(wait) => {
                    let error = format!("429: retry after {} s", wait.as_secs());
                    self.note_error(key, record_key, status::PENDING, &error)
                        .await;
                    return Err(Error::RateLimited(wait));
                }
                SendOutcome::Unreachable(reason) => {
                    self.breaker_success();
                    let user_deactivated =
                        record::deactivate_user(db, notification.chat_id, &reason).await?;
                    self.finish_failed(key, record_key, &reason).await?;
                    tracing::warn!(
                        chat_id = notification.chat_id,
                        dedupe_key = key,
                        user_deactivated,
                        "chat unreachable: {reason}"
                    );
                    return Ok(Outcome::Unreachable {
                        reason,
                        user_deactivated,
                    });
                }
                SendOutcome::Rejected(reason) => {
                    self.breaker_success();
                    self.finish_failed(key, record_key, &reason).await?;
                    return Err(Error::Rejected(reason));
                }
            }
        }
        if count > 1 {
            recorded &= self.record_sent(key).await;
        }
        Ok(Outcome::Sent {
            message_ids,
            recorded,
        })
    }

    fn claim(&self, key: &str) -> Result<Claim<'_>, Error> {
        let mut set = lock(&self.inner.in_flight);
        if !set.insert(key.to_string()) {
            return Err(Error::InFlight(key.to_string()));
        }
        Ok(Claim {
            set: &self.inner.in_flight,
            key: key.to_string(),
        })
    }

    /// Marks `key` sent, retrying briefly: Telegram has the message, so giving up here
    /// means a redelivery would send it twice.
    async fn record_sent(&self, key: &str) -> bool {
        let mut last: Option<DbErr> = None;
        for delay_ms in [0, 50, 250, 1000] {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            match record::mark_sent(&self.inner.db, key).await {
                Ok(()) => return true,
                Err(err) => last = Some(err),
            }
        }
        tracing::error!(
            dedupe_key = key,
            "delivered to telegram but not recorded as sent: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        );
        false
    }

    /// Records a transient error on the notification (and its part); a failed write only
    /// loses the error text, the retry happens anyway.
    async fn note_error(&self, key: &str, part_key: &str, status: &str, error: &str) {
        for k in dedup_keys(key, part_key) {
            if let Err(err) = record::mark(&self.inner.db, k, status, error).await {
                tracing::warn!(dedupe_key = k, "could not record the error: {err}");
            }
        }
    }

    async fn finish_failed(&self, key: &str, part_key: &str, reason: &str) -> Result<(), Error> {
        for k in dedup_keys(key, part_key) {
            record::mark(&self.inner.db, k, status::FAILED, reason).await?;
        }
        Ok(())
    }

    fn breaker_success(&self) {
        let changed = lock(&self.inner.breaker).breaker.record_success();
        if let Some(state) = changed {
            tracing::info!("telegram answers again: circuit breaker closed");
            self.inner.breaker_tx.send_replace(state);
        }
    }

    fn breaker_failure(&self) {
        let (changed, spawn) = {
            let mut cell = lock(&self.inner.breaker);
            let changed = cell.breaker.record_failure(Instant::now());
            let spawn = changed.is_some() && !cell.prober;
            if spawn {
                cell.prober = true;
            }
            (changed, spawn)
        };
        if let Some(state) = changed {
            tracing::warn!("telegram keeps failing: circuit breaker open, consumption paused");
            self.inner.breaker_tx.send_replace(state);
        }
        if spawn {
            tokio::spawn(probe_loop(Arc::downgrade(&self.inner)));
        }
    }
}

fn dedup_keys<'a>(key: &'a str, part_key: &'a str) -> Vec<&'a str> {
    if key == part_key {
        vec![key]
    } else {
        vec![part_key, key]
    }
}

/// While the breaker is open: wait for the probe time, ask Telegram `getMe`, close on
/// success or back off on failure. Ends when closed or when the notifier is dropped.
async fn probe_loop(inner: Weak<Inner>) {
    loop {
        let due = {
            let Some(inner) = inner.upgrade() else { return };
            let mut cell = lock(&inner.breaker);
            match cell.breaker.next_probe_at() {
                Some(due) => due,
                None if cell.breaker.state().is_closed() => {
                    cell.prober = false;
                    return;
                }
                // Probing is this task's own state; not reachable here.
                None => Instant::now(),
            }
        };
        tokio::time::sleep_until(due.into()).await;
        let Some(inner) = inner.upgrade() else { return };
        let probing = lock(&inner.breaker).breaker.try_probe(Instant::now());
        if !probing {
            continue;
        }
        inner.breaker_tx.send_replace(BreakerState::Probing);
        let result = match &inner.sender {
            Sender::Telegram(telegram) => telegram.probe().await,
            Sender::Log(_) => Ok(()),
        };
        let changed = {
            let mut cell = lock(&inner.breaker);
            match &result {
                Ok(()) => cell.breaker.record_success(),
                Err(_) => cell.breaker.record_failure(Instant::now()),
            }
        };
        match result {
            Ok(()) => tracing::info!("telegram probe succeeded: circuit breaker closed"),
            Err(e) => tracing::warn!("telegram probe failed: {e}"),
        }
        if let Some(state) = changed {
            inner.breaker_tx.send_replace(state);
        }
    }
}
