//! The notifier: one [`Notification`] in, one [`Outcome`] (ack) or [`Error`] (retry or
//! dead-letter) out. Shared by reference: `handle` takes `&self`, so the broker adapter can
//! run many deliveries at once (it must, for throughput: each chat gets one message a
//! second, so the deliveries in flight should span many chats).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbErr};
use tickwatch_schema::backoff::Backoff;
use tickwatch_schema::wire::{Message as _, Notification};
use tokio::sync::watch;

use crate::Error;
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::config::NotifierConfig;
use crate::markdown;
use crate::record::{self, Preference, Row, status};
use crate::sender::{OutgoingMessage, SendOutcome, Sender, TelegramSender};

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
    /// How long a transient failure is retried in place before the retry tiers.
    transient_hold: Duration,
    request_timeout: Duration,
    chart_budget: Duration,
}

/// Telegram's limit on a photo's caption (UTF-16 code units): a longer text goes without
/// its chart.
pub const MAX_CAPTION_LEN: usize = 1_024;

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
                transient_hold: config.transient_hold(),
                request_timeout: config.request_timeout(),
                chart_budget: Duration::from_millis(config.chart_budget_ms),
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
        let photo = self.chart(notification, user.as_ref()).await;

        let telegram = match &self.inner.sender {
            Sender::Log(log) => {
                log.send(&OutgoingMessage {
                    chat_id: notification.chat_id,
                    text: notification.text.clone(),
                    parse_mode: notification.parse_mode,
                    disable_notification: silent,
                    buttons: notification.buttons.clone(),
                    photo,
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
        if !self.breaker_state().admits_consumption() {
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
                // Under the last part, where a reader ends up.
                buttons: if index + 1 == count {
                    notification.buttons.clone()
                } else {
                    Vec::new()
                },
                // A chart only goes with a text that fits its caption: one part.
                photo: if count == 1 { photo.clone() } else { None },
            };
            let record_key = part_key.as_deref().unwrap_or(key);
            let mut outcome = self.deliver(telegram, &message, key, record_key).await?;
            if message.photo.is_some() && matches!(outcome, SendOutcome::Rejected(_)) {
                // Refused for the picture (a photo Telegram does not take): the text alone.
                tracing::warn!(
                    chat_id = notification.chat_id,
                    dedupe_key = key,
                    "Telegram refused the chart; sending the text alone"
                );
                let text_only = OutgoingMessage {
                    photo: None,
                    ..message.clone()
                };
                outcome = self.deliver(telegram, &text_only, key, record_key).await?;
            }
            match outcome {
                SendOutcome::Delivered { message_id } => {
                    // First thing after Telegram accepted: the crash window is this write.
                    recorded &= self.record_sent(record_key).await;
                    message_ids.push(message_id);
                }
                SendOutcome::Unreachable(reason) => {
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
                    self.finish_failed(key, record_key, &reason).await?;
                    return Err(Error::Rejected(reason));
                }
                // `deliver` returns these as errors.
                SendOutcome::RetryAfter(wait) => return Err(Error::RateLimited(wait)),
                SendOutcome::Transient(error) => return Err(Error::Transient(error)),
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

    /// The chart of a notification that asks for one, when the user has charts on and the
    /// text fits a caption: its candles read and drawn within the chart budget, else
    /// `None` (the text goes out alone; a chart never holds an alert up).
    async fn chart(
        &self,
        notification: &Notification,
        user: Option<&tickwatch_schema::db::entity::user::Model>,
    ) -> Option<Arc<Vec<u8>>> {
        let request = notification.chart.clone()?;
        let budget = self.inner.chart_budget;
        if budget.is_zero()
            || user.is_some_and(|u| !tickwatch_schema::db::charts_on(&u.prefs))
            || markdown::utf16_len(&notification.text) > MAX_CAPTION_LEN
        {
            return None;
        }
        let tz = user.map_or(tickwatch_schema::display::Tz::UTC, |u| {
            tickwatch_schema::display::user_time_zone(&u.language, u.time_zone.as_deref())
        });
        let db = self.inner.db.clone();
        let work = async move {
            let bars = u64::from(request.bars).clamp(2, crate::chart::MAX_BARS as u64);
            let candles = tickwatch_recorder::store::recent_candles(
                &db,
                &request.venue,
                &request.symbol,
                request.interval,
                // Up to the candle it came from (a signal's time is its candle's close,
                // which is the next candle's open).
                request.marker_ts.map(|ts| ts - 1),
                bars,
            )
            .await
            .map_err(|e| Error::Chart(e.to_string()))?;
            tokio::task::spawn_blocking(move || crate::chart::render(&request, &candles, tz))
                .await
                .map_err(|e| Error::Chart(e.to_string()))?
        };
        let started = Instant::now();
        match tokio::time::timeout(budget, work).await {
            Ok(Ok(png)) => {
                tracing::debug!(bytes = png.len(), took = ?started.elapsed(), "chart drawn");
                Some(Arc::new(png))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, dedupe_key = %notification.dedupe_key, "no chart; the text goes alone");
                None
            }
            Err(_) => {
                tracing::warn!(budget = ?budget, dedupe_key = %notification.dedupe_key, "the chart took longer than its budget; the text goes alone");
                None
            }
        }
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

    /// Sends one message to Telegram, holding it — and so its chat, whose later messages
    /// wait behind it — in place through Telegram's 429s (up to `max_retry_after_s` in
    /// all) and through transient failures (up to `transient_hold_s`, with growing
    /// pauses), so one chat's messages arrive in the order they were published. Returns
    /// what Telegram finally said: delivered, unreachable or rejected; a wait or failure
    /// beyond those bounds is an error, as is an open circuit breaker (nothing sent).
    async fn deliver(
        &self,
        telegram: &TelegramSender,
        message: &OutgoingMessage,
        key: &str,
        record_key: &str,
    ) -> Result<SendOutcome, Error> {
        let started = Instant::now();
        let mut rate_limited = Duration::ZERO;
        let mut pauses = Backoff::new(Duration::from_millis(500), Duration::from_secs(8), 2.0, 0.0);
        loop {
            // The breaker is asked when the slot comes: with many deliveries in flight,
            // those already waiting for their slot when it opened must not go out to a
            // Telegram that is down. Half-open, the first one asking is the probe.
            let outcome = telegram
                .send_once_if(message, || self.try_send())
                .await
                .ok_or(Error::CircuitOpen)?;
            match outcome {
                SendOutcome::Transient(error) => {
                    self.breaker_failure();
                    self.note_error(key, record_key, status::PENDING, &error)
                        .await;
                    if !self.breaker_state().is_closed() {
                        // Held without spending an attempt while the breaker probes.
                        return Err(Error::CircuitOpen);
                    }
                    let pause = pauses.next_delay();
                    if started.elapsed() + pause > self.inner.transient_hold {
                        return Err(Error::Transient(error));
                    }
                    tokio::time::sleep(pause).await;
                }
                SendOutcome::RetryAfter(wait) => {
                    // Telegram answers: it is up. The limiter holds the chat until the wait
                    // is over, slots reserved before the 429 included.
                    self.breaker_success();
                    rate_limited += wait;
                    let error = format!("429: retry after {} s", wait.as_secs());
                    self.note_error(key, record_key, status::PENDING, &error)
                        .await;
                    if rate_limited > telegram.max_retry_wait() {
                        return Err(Error::RateLimited(wait));
                    }
                    tracing::info!(
                        chat_id = message.chat_id,
                        wait_s = wait.as_secs_f64(),
                        "telegram asked to wait before sending to this chat"
                    );
                }
                answered => {
                    self.breaker_success();
                    return Ok(answered);
                }
            }
        }
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

    /// Whether a send may go out now (half-open: only the probe).
    fn try_send(&self) -> bool {
        let stale_after = self.inner.request_timeout + Duration::from_secs(5);
        lock(&self.inner.breaker)
            .breaker
            .try_send(Instant::now(), stale_after)
    }

    fn breaker_success(&self) {
        let changed = lock(&self.inner.breaker).breaker.record_success();
        if let Some(state) = changed {
            tracing::info!("telegram answers again: circuit breaker closed, sending resumes");
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
            let probe_in = self.breaker_state_delay();
            tracing::warn!(
                probe_in_s = probe_in.as_secs_f64(),
                "telegram keeps failing: circuit breaker open, consumption paused until the next probe"
            );
            self.inner.breaker_tx.send_replace(state);
        }
        if spawn {
            tokio::spawn(half_open_timer(Arc::downgrade(&self.inner)));
        }
    }
}

impl Notifier {
    fn breaker_state_delay(&self) -> Duration {
        match self.breaker_state() {
            BreakerState::Open { probe_at } => probe_at.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
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

/// While the breaker is not closed: turns it half-open when its probe is due (the next
/// real send probes), and waits for the probe's verdict. Ends when the breaker closes or
/// the notifier is dropped.
async fn half_open_timer(inner: Weak<Inner>) {
    let Some(mut changes) = inner.upgrade().map(|i| i.breaker_tx.subscribe()) else {
        return;
    };
    loop {
        let due = {
            let Some(inner) = inner.upgrade() else { return };
            let mut cell = lock(&inner.breaker);
            match cell.breaker.state() {
                BreakerState::Closed => {
                    cell.prober = false;
                    return;
                }
                BreakerState::Open { probe_at } => Some(probe_at),
                BreakerState::HalfOpen { .. } => None,
            }
        };
        match due {
            Some(at) => {
                tokio::time::sleep_until(at.into()).await;
                let Some(inner) = inner.upgrade() else { return };
                let changed = lock(&inner.breaker).breaker.half_open(Instant::now());
                if let Some(state) = changed {
                    tracing::info!("circuit breaker half-open: the next message probes telegram");
                    inner.breaker_tx.send_replace(state);
                }
            }
            // Half-open: the probe's answer closes or reopens it.
            None => {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}
