//! The `notifier` role on the broker: consumes `tw.notify.telegram.q` and
//! `tw.notify.system.q` (notifications of kind `system`) with many deliveries in flight
//! (one chat's in order within a queue), pauses while the circuit breaker is open or an
//! admin halted notifications (messages stay queued; the system queue only with
//! `halt_holds_system`), and maps [`Notifier::handle`]'s outcome to ack, retry tier or
//! dead-letter.

use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};
use tickwatch_broker::{
    Broker, ConsumeOptions, Handled, Handler, HandlerError, Incoming, Topology, consume_role,
    consume_with,
};

type HandlerOutcome = tickwatch_broker::Outcome;
use tickwatch_schema::db::SETTING_NOTIFICATIONS_HALTED;
use tickwatch_schema::db::entity::setting;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::{Control, Notification};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::{DeliveryFinished, NotifierStarted, NotifierState};
use tracing::Instrument;

use crate::{Error, Notifier, NotifierConfig, Outcome};

/// How often a delivery held by the breaker looks again whether it may go.
const HELD_RECHECK: Duration = Duration::from_millis(250);

/// How long a delivery is held in place while the database fails, before it goes to the
/// retry tiers.
const DB_HOLD: Duration = Duration::from_secs(300);

/// Hands each notification to the shared [`Notifier`].
#[derive(Debug, Clone)]
pub struct NotifierHandler {
    notifier: Notifier,
}

impl NotifierHandler {
    pub fn new(notifier: Notifier) -> Self {
        NotifierHandler { notifier }
    }
}

/// A database failure holds the delivery in place (growing pauses, up to `DB_HOLD`):
/// nothing can be recorded, so nothing should be sent, and a message sent through the
/// retry tiers would come back behind its chat's later ones.
fn hold_for_db(message: &Incoming, error: &Error) -> HandlerOutcome {
    let held = message
        .held_since
        .map_or(Duration::ZERO, |since| since.elapsed());
    if held > DB_HOLD {
        return Err(HandlerError::Transient(error.to_string()));
    }
    if message.held_since.is_none() {
        tracing::warn!(error = %error, "database failing: notification held in place");
    }
    Ok(Handled::Hold(
        (held / 2).clamp(Duration::from_millis(250), Duration::from_secs(5)),
    ))
}

impl Handler for NotifierHandler {
    async fn handle(&mut self, message: &Incoming) -> HandlerOutcome {
        let notification: Notification = message.decode()?;
        let span = tracing::info_span!("send", chat = notification.chat_id, dedupe_key = %notification.dedupe_key);
        let result = self.notifier.handle(&notification).instrument(span).await;
        record_metrics(&notification, &result);
        match result {
            Ok(outcome) => {
                match &outcome {
                    Outcome::Unreachable { reason, .. } => tracing::warn!(
                        chat = notification.chat_id,
                        key = %notification.dedupe_key,
                        %reason,
                        "chat unreachable; notification recorded as failed"
                    ),
                    other => {
                        tracing::debug!(chat = notification.chat_id, key = %notification.dedupe_key, outcome = ?other, "notification handled")
                    }
                }
                Ok(Handled::Done)
            }
            Err(e @ Error::Db(_)) => hold_for_db(message, &e),
            // Nothing was sent: hold the message where it is, without spending an attempt
            // and ahead of its chat's later messages, while the breaker is open (consumption
            // is paused, which hands it back) or another message is the half-open probe.
            Err(Error::CircuitOpen) => Ok(Handled::Hold(HELD_RECHECK)),
            Err(Error::InFlight(_)) => Ok(Handled::Hold(Duration::from_millis(200))),
            Err(Error::Invalid(e)) => Err(HandlerError::Invalid(e)),
            Err(e) => Err(HandlerError::classify(e.is_retryable(), e)),
        }
    }

    /// One chat's notifications go out in the order they were published, whoever published
    /// them: the chat id comes from the body (the `tw-shard-key` header is tickwatch's own).
    fn ordering_key(&self, message: &Incoming) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct ChatOnly {
            chat_id: i64,
        }
        serde_json::from_slice::<ChatOnly>(&message.body)
            .ok()
            .map(|m| m.chat_id.to_string())
    }
}

/// Counts every outcome, and the tick-to-notification latency of what reached the user
/// (or the log, without a token).
fn record_metrics(notification: &Notification, result: &Result<Outcome, Error>) {
    let outcome = match result {
        Ok(Outcome::Sent { .. }) => "sent",
        Ok(Outcome::Logged) => "logged",
        Ok(Outcome::Duplicate { .. }) => "duplicate",
        Ok(Outcome::Skipped { .. }) => "skipped",
        Ok(Outcome::Unreachable { .. }) => "unreachable",
        Err(e) => return DeliveryFinished::Failed { reason: e.reason() }.emit(),
    };
    let reached = matches!(result, Ok(Outcome::Sent { .. } | Outcome::Logged));
    let since_origin = notification.origin_ts.filter(|_| reached).map(|origin| {
        Duration::from_millis((tickwatch_schema::db::now_ms() - origin).max(0) as u64)
    });
    DeliveryFinished::Done {
        outcome,
        since_origin,
    }
    .emit();
}

/// Follows `Halt` / `Resume` on the control fan-out.
#[derive(Debug, Clone)]
struct ControlHandler {
    halted: std::sync::Arc<watch::Sender<bool>>,
}

impl Handler for ControlHandler {
    async fn handle(&mut self, message: &Incoming) -> HandlerOutcome {
        match message.decode::<Control>()? {
            Control::Halt { by_chat } => {
                tracing::warn!(
                    ?by_chat,
                    "notifications halted by an admin; messages stay queued"
                );
                self.halted.send_replace(true);
            }
            Control::Resume { by_chat } => {
                tracing::info!(?by_chat, "notifications resumed");
                self.halted.send_replace(false);
            }
            _ => {}
        }
        Ok(Handled::Done)
    }
}

/// Whether an admin's halt is in force (it survives restarts in the `settings` table).
pub async fn halted_in_db(db: &DatabaseConnection) -> Result<bool, Error> {
    Ok(
        setting::Entity::find_by_id(SETTING_NOTIFICATIONS_HALTED.to_string())
            .one(db)
            .await?
            .is_some_and(|s| s.value == "true"),
    )
}

/// Runs the notifier role until `shutdown`.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    config: &NotifierConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let notifier = Notifier::new(config, db.clone())?;
    if matches!(notifier.sender(), crate::Sender::Log(_)) {
        tracing::warn!("no TELEGRAM_BOT_TOKEN: notifications are written to the log, not sent");
    }
    let (halted_tx, mut halted) = watch::channel(halted_in_db(&db).await?);
    if *halted.borrow() {
        tracing::warn!(
            "notifications are halted (an admin's /halt); messages stay queued until /resume"
        );
    }
    let mut breaker = notifier.watch_breaker();
    let (pause_tx, pause_rx) =
        watch::channel(*halted.borrow() || !breaker.borrow().admits_consumption());
    // System notifications have their own queue, held by a halt only if configured so.
    let halt_holds_system = config.halt_holds_system;
    let (system_pause_tx, system_pause_rx) = watch::channel(
        (halt_holds_system && *halted.borrow()) || !breaker.borrow().admits_consumption(),
    );
    NotifierStarted.emit();
    let stop = shutdown.child_token();
    // Every background task of the role: stopped with `stop`, waited for before returning.
    let tasks = TaskTracker::new();

    {
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                let is_halted = *halted.borrow_and_update();
                let state = *breaker.borrow_and_update();
                let breaker_open = !state.is_closed();
                NotifierState {
                    breaker_open,
                    halted: is_halted,
                }
                .emit();
                // Half-open takes messages again: the first real send is the probe.
                pause_tx.send_replace(is_halted || !state.admits_consumption());
                system_pause_tx
                    .send_replace((halt_holds_system && is_halted) || !state.admits_consumption());
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = halted.changed() => if r.is_err() { break },
                    r = breaker.changed() => if r.is_err() { break },
                }
            }
        });
    }

    let mut control_topology = Topology::default();
    let instance = format!(
        "notifier-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let control_spec = control_topology.add_private_queue(
        broker.config(),
        &broker.names().control_queue(&instance),
        &[(broker.names().exchange(Exchange::Control), String::new())],
    )?;
    let halted_tx = std::sync::Arc::new(halted_tx);
    {
        let (broker, stop, halted) = (broker.clone(), stop.clone(), halted_tx.clone());
        let options = ConsumeOptions {
            declare: Some(std::sync::Arc::new(control_topology)),
            ..Default::default()
        };
        tasks.spawn(async move {
            let result = consume_with(
                &broker,
                &control_spec,
                ControlHandler { halted },
                stop,
                options,
            )
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "notifier control consumer failed");
            }
        });
    }
    // The settings row is the truth: a Halt or Resume published while the control queue
    // was not bound yet (start, reconnect) is picked up here.
    {
        let (db, stop, halted) = (db.clone(), stop.clone(), halted_tx.clone());
        tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {}
                }
                if let Ok(now) = halted_in_db(&db).await {
                    halted.send_if_modified(|h| std::mem::replace(h, now) != now);
                }
            }
        });
    }

    // A delivery may wait out Telegram's 429s (up to `max_retry_after_s`) and transient
    // failures (`transient_hold_s`) in place, plus a request: cutting it off earlier would
    // risk a second send of a message in flight.
    let handler_timeout = config.max_retry_after()
        + config.transient_hold()
        + config.request_timeout() * 3
        + Duration::from_secs(30);
    let options = |pause| ConsumeOptions {
        concurrency: config.concurrency,
        pause: Some(pause),
        handler_timeout: Some(handler_timeout),
        ..Default::default()
    };
    // One notifier (its limits, breaker and records) for both queues; either ending ends
    // the other.
    let consume = |queue, notifier, pause| {
        let stop = stop.clone();
        let options = options(pause);
        async move {
            let result = consume_role(
                broker,
                queue,
                NotifierHandler::new(notifier),
                stop.clone(),
                options,
            )
            .await;
            stop.cancel();
            result
        }
    };
    let (notifications, system) = tokio::join!(
        consume(WorkQueue::NotifyTelegram, notifier.clone(), pause_rx),
        consume(WorkQueue::NotifySystem, notifier, system_pause_rx),
    );
    let result = notifications.and(system);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(result?)
}
