//! The `alerts` role on the broker: the [`AlertEngine`] fed from `tw.alerts.q`, its
//! firings stored exactly once and published as `AlertTriggered` and `Notification`.
//!
//! Start-up follows the engine's protocol: this instance's control queue is bound and
//! buffering before the rules are loaded, the buffered changes are applied after the load,
//! and only then does market data flow. The last evaluated price of every symbol is saved
//! before every acknowledgement (the consumer's checkpoint), and primes the engine after a
//! restart: it is never older than the last acknowledged tick.
//!
//! Exactly once: a firing's id derives from the rule and the triggering tick. It is stored
//! (`alert_events`, unique id) together with the rule's firing record — and, for a `once`
//! rule, its deactivation — in one transaction; then the alert and the notification are
//! published (the notification's dedupe key is the firing id), and the next checkpoint
//! marks the event published, in the transaction that saves the prices (a commit of its
//! own would hold up every batch with a firing). A redelivered tick yields the same ids:
//! storing changes nothing and an event already published is not published again. If the
//! process dies between storing and publishing, the outbox sweep publishes every stored
//! event not marked published — at start and every few seconds — so a firing is never lost
//! either; if it dies before the mark, the notifier sends the dedupe key once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sea_orm::sea_query::{CaseStatement, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use tickwatch_broker::{
    BatchHandler, Broker, ConsumeOptions, Handled, Handler, HandlerError, Incoming, Outcome,
    Publisher, Topology, consume_role, consume_with, crash, headers,
};
use tickwatch_schema::backoff::Backoff;
use tickwatch_schema::db::entity::{alert_event, alert_price, alert_rule, subscription, user};
use tickwatch_schema::db::{ROWS_PER_STATEMENT, now_ms, rule_from_row, subscription_from_row};
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::rule::{AlertRule, Subscription};
use tickwatch_schema::wire::{
    Candle, Channel, ChartRequest, Control, EventKind, Interval, MessageKind, Notification, Signal,
    Tick,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::events::{AlertFired, AlertsStarted, RuleBookSize};
use crate::template::{self, Lang, Locale};
use crate::{AlertEngine, AlertsConfig, Applied, Error, Firing, SubscriptionHit};

/// Test hooks: failure injection between the steps of a firing.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called after a firing is stored and before it is published; returning `true`
    /// simulates a crash there (the handler stops with a transient error).
    pub after_store: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Called before a firing is stored; returning `true` simulates a database failure
    /// there (the handler fails with a transient error).
    pub before_store: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Called at start-up after the rule book is loaded and before the changes buffered
    /// meanwhile are applied (a test commits a change in that window).
    pub after_load: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called after the rule book was reloaded (the control queue came back).
    pub after_reload: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called when a control message has reached this instance (before it applies).
    pub control_received: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("after_store", &self.after_store.is_some())
            .field("before_store", &self.before_store.is_some())
            .field("after_load", &self.after_load.is_some())
            .field("after_reload", &self.after_reload.is_some())
            .field("control_received", &self.control_received.is_some())
            .finish()
    }
}

/// Where a user's notifications go.
#[derive(Debug, Clone)]
struct Route {
    chat_id: Option<i64>,
    locale: Locale,
    looked_up: Instant,
}

/// How long a user's chat and language are trusted before they are read again.
const ROUTE_TTL: Duration = Duration::from_secs(30);

struct Shared {
    engine: Mutex<AlertEngine>,
    db: DatabaseConnection,
    publisher: Publisher,
    routes: Mutex<HashMap<i64, Route>>,
    /// Symbols whose latest evaluated price has not finished its delivery yet: that price
    /// is not saved (a restart primed with it would skip firings never stored), the last
    /// finished one is.
    in_flight: Mutex<HashMap<(String, String), InFlight>>,
    /// The last saved price of each symbol and its time (only changed ones are written
    /// again: a second price at the same time is a change).
    saved: tokio::sync::Mutex<HashMap<(String, String), (Decimal, i64)>>,
    /// Events published and not yet marked so in the database: the next checkpoint marks
    /// them. Until then a redelivery, the sweep and a new session take them as published.
    unmarked: Mutex<HashSet<String>>,
    /// What the engine gave for messages held in place, by message: it is past them, so
    /// running them again must reuse it.
    held: Mutex<HashMap<String, Evaluated>>,
    /// The consumer session in which each symbol was last checked against the saved price
    /// (see `AlertsHandler::check_symbols`).
    checked: Mutex<HashMap<(String, String), u64>>,
    hooks: Hooks,
    /// A delivery's own time limit, under the consumer's handler timeout: past that the
    /// runtime would send the message through the retry tiers (see `evaluate`).
    deliver_timeout: Duration,
}

/// How long a delivery that failed after the engine processed it waits before retrying.
const RETRY_IN_PLACE: Duration = Duration::from_secs(2);

/// The candles a notification's chart shows: this many, of the rule's interval, or of this
/// one for a rule without an interval.
pub const CHART_BARS: u16 = 60;
pub const CHART_INTERVAL: Interval = Interval::H1;

/// A symbol in flight (see `Shared::in_flight`).
struct InFlight {
    /// When it was last marked: a mark left behind by a delivery that never finished (a
    /// message dead-lettered after all) stops shielding its events from the sweep.
    since: Instant,
    /// The engine's price before the first unfinished delivery: the last finished one,
    /// which the checkpoint saves meanwhile (a symbol in every batch would else never be
    /// saved while its ticks are acknowledged).
    finished: Option<(Decimal, i64)>,
}

fn db_error(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(format!("database: {e}"))
}

impl Shared {
    fn engine(&self) -> std::sync::MutexGuard<'_, AlertEngine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unmarked(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unmarked.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn route(&self, user_id: i64) -> Result<Route, sea_orm::DbErr> {
        if let Some(route) = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user_id)
            .filter(|r| r.looked_up.elapsed() < ROUTE_TTL)
        {
            return Ok(route.clone());
        }
        let row = user::Entity::find_by_id(user_id).one(&self.db).await?;
        let route = Route {
            chat_id: row
                .as_ref()
                .filter(|u| u.active)
                .and_then(|u| u.telegram_chat_id),
            locale: row.map_or(Locale::of(Lang::En), |u| {
                Locale::of_user(&u.language, u.time_zone.as_deref())
            }),
            looked_up: Instant::now(),
        };
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id, route.clone());
        Ok(route)
    }

    /// Stores a batch's firings in one transaction, publishes them and the signal
    /// subscriptions' notifications with pipelined confirms, and leaves the firings to the
    /// next checkpoint to mark published (`Shared::unmarked`).
    ///
    /// Each firing and hit comes with its message's origin time and span: its publishes
    /// belong to that message's trace, and the batch's one transaction to the first's.
    async fn deliver(
        &self,
        firings: Vec<(Firing, Option<i64>, tracing::Span)>,
        hits: Vec<(Signal, Vec<SubscriptionHit>, Option<i64>, tracing::Span)>,
    ) -> Result<(), HandlerError> {
        let mut origins = Vec::with_capacity(firings.len());
        let mut spans = Vec::with_capacity(firings.len());
        let firings: Vec<Firing> = firings
            .into_iter()
            .map(|(firing, origin, span)| {
                origins.push(origin);
                spans.push(span);
                firing
            })
            .collect();
        let mut confirms = Vec::new();
        for (signal, hits, origin, span) in hits {
            confirms.extend(
                self.send_hits(&signal, hits, origin)
                    .instrument(span)
                    .await?,
            );
        }
        if firings.is_empty() {
            for confirm in confirms {
                confirm.wait().await?;
            }
            return Ok(());
        }
        let mut texts = Vec::with_capacity(firings.len());
        for firing in &firings {
            let route = self.route(firing.user_id).await.map_err(db_error)?;
            texts.push((firing.message(route.locale), route.chat_id));
        }
        if let Some(hook) = &self.hooks.before_store
            && hook()
        {
            return Err(HandlerError::Transient(
                "failure injected before storing the firing".into(),
            ));
        }
        let first = spans.first().cloned().unwrap_or_else(tracing::Span::none);
        let (disabled, stored) = self
            .store(&firings, &texts)
            .instrument(tracing::info_span!(parent: &first, "store", firings = firings.len()))
            .await?;
        crash::point("alerts.batch.written");
        if let Some(hook) = &self.hooks.after_store
            && hook()
        {
            return Err(HandlerError::Transient(
                "failure injected after storing the firing".into(),
            ));
        }
        // A firing stored just now is unpublished; only one stored before (a redelivery)
        // may have been published already, so only those are looked up. The ids published
        // and not yet marked are read first: a checkpoint may mark one meanwhile.
        let unmarked: HashSet<String> = {
            let unmarked = self.unmarked();
            firings
                .iter()
                .map(|f| f.id.to_string())
                .filter(|id| unmarked.contains(id))
                .collect()
        };
        let earlier: Vec<String> = firings
            .iter()
            .map(|f| f.id.to_string())
            .filter(|id| !stored.contains(id))
            .collect();
        let published: Vec<String> = if earlier.is_empty() {
            Vec::new()
        } else {
            alert_event::Entity::find()
                .filter(alert_event::Column::Id.is_in(earlier))
                .filter(alert_event::Column::Published.eq(true))
                .all(&self.db)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        let mut done = Vec::new();
        for (((firing, (text, chat_id)), origin), span) in
            firings.iter().zip(texts).zip(origins).zip(spans)
        {
            let id = firing.id.to_string();
            if published.contains(&id) || unmarked.contains(&id) {
                continue; // a redelivery after everything was done but the ack
            }
            span.in_scope(|| AlertFired(firing).emit());
            confirms.push(
                self.publisher
                    .send(Exchange::Alerts, &firing.to_wire())
                    .instrument(span.clone())
                    .await?,
            );
            if let Some(chat_id) = chat_id {
                let lang = self
                    .route(firing.user_id)
                    .await
                    .map_or(Lang::En, |r| r.locale.lang);
                let notification = Notification {
                    id: firing.id,
                    channel: Channel::Telegram,
                    chat_id,
                    text,
                    parse_mode: None,
                    dedupe_key: firing.dedupe_key(),
                    kind: EventKind::Alert,
                    origin_ts: origin,
                    buttons: template::alert_buttons(lang, firing.rule_id, firing.disable_rule),
                    chart: Some(firing.chart()),
                };
                confirms.push(
                    self.publisher
                        .send(Exchange::Notify, &notification)
                        .instrument(span.clone())
                        .await?,
                );
            }
            done.push(id);
        }
        for confirm in confirms {
            confirm.wait().await?;
        }
        self.unmarked().extend(done);
        for rule_id in disabled {
            self.announce_rule(rule_id).await;
        }
        Ok(())
    }

    /// One transaction: the events, each rule's firing record, and the deactivation of
    /// `once` rules. Returns the rules deactivated, and the events stored now (those
    /// stored by an earlier delivery are not).
    async fn store(
        &self,
        firings: &[Firing],
        texts: &[(String, Option<i64>)],
    ) -> Result<(Vec<i64>, HashSet<String>), HandlerError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let now = now_ms();
        // The events; those already stored (an earlier delivery of the same tick) stay as
        // they are and count for nothing below.
        let mut stored: HashSet<String> = HashSet::new();
        let rows: Vec<alert_event::ActiveModel> = firings
            .iter()
            .zip(texts)
            .map(|(firing, (text, _))| alert_event::ActiveModel {
                id: Set(firing.id.to_string()),
                rule_id: Set(firing.rule_id),
                user_id: Set(firing.user_id),
                venue: Set(firing.venue.to_string()),
                symbol: Set(firing.symbol.to_string()),
                condition: Set(firing.condition.as_str().to_string()),
                threshold: Set(firing.threshold.to_string()),
                price: Set(firing.price.to_string()),
                ts: Set(firing.ts),
                text: Set(text.clone()),
                published: Set(false),
                created_at: Set(now),
            })
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            match alert_event::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::column(alert_event::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_with_returning_keys(&txn)
                .await
            {
                Ok(ids) => stored.extend(ids),
                Err(sea_orm::DbErr::RecordNotInserted) => {}
                Err(e) => return Err(db_error(e)),
            }
        }
        crash::point("alerts.batch.mid-write");
        // Each rule's firing record: how many more times, and the last time.
        let mut fired: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for firing in firings
            .iter()
            .filter(|f| stored.contains(&f.id.to_string()))
        {
            let entry = fired.entry(firing.rule_id).or_insert((0, firing.ts));
            entry.0 += 1;
            entry.1 = Ord::max(entry.1, firing.ts);
        }
        let fired: Vec<(i64, (i64, i64))> = fired.into_iter().collect();
        for chunk in fired.chunks(ROWS_PER_STATEMENT) {
            let (mut count, mut last) = (CaseStatement::new(), CaseStatement::new());
            for (rule_id, (n, ts)) in chunk {
                count = count.case(alert_rule::Column::Id.eq(*rule_id), Expr::value(*n));
                last = last.case(alert_rule::Column::Id.eq(*rule_id), Expr::value(*ts));
            }
            alert_rule::Entity::update_many()
                .col_expr(
                    alert_rule::Column::FiredCount,
                    Expr::col(alert_rule::Column::FiredCount)
                        .add(Into::<Expr>::into(count.finally(0))),
                )
                .col_expr(
                    alert_rule::Column::LastFiredAt,
                    last.finally(Expr::col(alert_rule::Column::LastFiredAt))
                        .into(),
                )
                .filter(alert_rule::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        // `once` rules stop with their firing.
        let mut disabled = Vec::new();
        for firing in firings
            .iter()
            .filter(|f| f.disable_rule && stored.contains(&f.id.to_string()))
        {
            let result = alert_rule::Entity::update_many()
                .col_expr(alert_rule::Column::Active, Expr::value(false))
                .col_expr(
                    alert_rule::Column::Version,
                    Expr::col(alert_rule::Column::Version).add(1),
                )
                .col_expr(alert_rule::Column::UpdatedAt, Expr::value(now))
                .filter(alert_rule::Column::Id.eq(firing.rule_id))
                .filter(alert_rule::Column::Version.eq(firing.rule_version))
                .exec(&txn)
                .await
                .map_err(db_error)?;
            if result.rows_affected == 1 {
                disabled.push(firing.rule_id);
            }
        }
        txn.commit().await.map_err(db_error)?;
        Ok((disabled, stored))
    }

    /// Tells every alerts instance (a standby, another shard) the rule's new state.
    async fn announce_rule(&self, rule_id: i64) {
        let row = match alert_rule::Entity::find_by_id(rule_id).one(&self.db).await {
            Ok(Some(row)) => row,
            _ => return,
        };
        let Ok(rule) = rule_from_row(&row) else {
            return;
        };
        if let Err(e) = self
            .publisher
            .publish(Exchange::Control, &Control::RuleUpserted { rule })
            .await
        {
            tracing::warn!(rule_id, error = %e, "could not announce a rule change; other instances learn it at their next load");
        }
    }

    /// Signal subscriptions: a notification per hit (the notifier sends a key once),
    /// handed to the publisher; the confirms to wait for.
    async fn send_hits(
        &self,
        signal: &Signal,
        hits: Vec<SubscriptionHit>,
        origin: Option<i64>,
    ) -> Result<Vec<tickwatch_broker::Confirm>, HandlerError> {
        let mut confirms = Vec::new();
        for hit in hits {
            let route = self.route(hit.user_id).await.map_err(db_error)?;
            let Some(chat_id) = route.chat_id else {
                continue;
            };
            let notification = Notification {
                id: hit.id,
                channel: Channel::Telegram,
                chat_id,
                text: template::render_signal(None, route.locale, signal),
                parse_mode: None,
                dedupe_key: hit.dedupe_key(),
                kind: EventKind::Signal,
                origin_ts: origin,
                buttons: Vec::new(),
                chart: Some(ChartRequest {
                    venue: signal.venue.clone(),
                    symbol: signal.symbol.clone(),
                    interval: signal.interval,
                    level: None,
                    marker_ts: Some(signal.ts),
                    bars: CHART_BARS,
                }),
            };
            confirms.push(self.publisher.send(Exchange::Notify, &notification).await?);
        }
        Ok(confirms)
    }
}

async fn mark_published(db: &impl ConnectionTrait, ids: Vec<String>) -> Result<(), sea_orm::DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        alert_event::Entity::update_many()
            .col_expr(alert_event::Column::Published, Expr::value(true))
            .filter(alert_event::Column::Id.is_in(chunk.iter().cloned()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Evaluates ticks, candles and signals; cheap to clone (shards share one engine).
#[derive(Clone)]
pub struct AlertsHandler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AlertsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsHandler").finish_non_exhaustive()
    }
}

/// A message's symbol (ticks and candles) and what the engine gave for it.
type Evaluated = (Option<(String, String)>, Produced);

/// What one message of a batch gave.
#[derive(Debug, Clone)]
enum Produced {
    Firings(Vec<Firing>),
    Hits(Signal, Vec<SubscriptionHit>),
}

/// A message of a batch and what the engine made of it.
struct Work {
    index: usize,
    key: String,
    symbol: Option<(String, String)>,
    produced: Produced,
    origin: Option<i64>,
    span: tracing::Span,
}

/// A message of the alerts queue, decoded.
enum Market {
    Tick(Tick),
    Candle(Candle),
    Signal(Signal),
}

impl Market {
    fn decode(message: &Incoming) -> Result<Market, HandlerError> {
        match message.message_kind() {
            Some(MessageKind::Tick) => Ok(Market::Tick(message.decode()?)),
            Some(MessageKind::Candle) => Ok(Market::Candle(message.decode()?)),
            Some(MessageKind::Signal) => Ok(Market::Signal(message.decode()?)),
            other => Err(HandlerError::Invalid(format!(
                "the alerts queue takes ticks, candles and signals, not {}",
                other.map_or("an untyped message".to_string(), |k| k.to_string())
            ))),
        }
    }

    /// The symbol whose prices it moves (signals move none).
    fn symbol(&self) -> Option<(String, String)> {
        match self {
            Market::Tick(t) => Some((t.venue.clone(), t.symbol.clone())),
            Market::Candle(c) => Some((c.venue.clone(), c.symbol.clone())),
            Market::Signal(_) => None,
        }
    }
}

impl AlertsHandler {
    /// Runs one decoded message through the engine.
    fn evaluate(&self, engine: &mut AlertEngine, message: &Incoming, market: Market) -> Evaluated {
        match market {
            Market::Tick(tick) => {
                let symbol = (tick.venue.clone(), tick.symbol.clone());
                self.mark(engine, &symbol);
                let firings =
                    tracing::info_span!(parent: &message.span, "process", symbol = %tick.symbol)
                        .in_scope(|| engine.process_tick(&tick));
                (Some(symbol), Produced::Firings(firings))
            }
            Market::Candle(candle) => {
                let symbol = (candle.venue.clone(), candle.symbol.clone());
                self.mark(engine, &symbol);
                let firings =
                    tracing::info_span!(parent: &message.span, "process", symbol = %candle.symbol)
                        .in_scope(|| engine.process_candle(&candle));
                (Some(symbol), Produced::Firings(firings))
            }
            Market::Signal(signal) => {
                let hits = engine.process_signal(&signal);
                (None, Produced::Hits(signal, hits))
            }
        }
    }

    /// On a symbol's first delivery in a consumer session, checks the engine against the
    /// saved price: when they differ, another instance evaluated the symbol meanwhile (a
    /// shard handed over, a standby made active) or this one's last batch did not finish,
    /// and the symbol is taken as stored — its rules as the database has them, primed with
    /// the saved price — as a restart would have it. What was held for it is dropped: the
    /// engine evaluates those messages again, with the same firing ids. Then what was
    /// stored for the symbol and not published goes out, before anything newer.
    async fn check_symbols(&self, batch: &[((String, String), u64)]) -> Result<(), HandlerError> {
        let unchecked: Vec<&((String, String), u64)> = {
            let checked = self
                .shared
                .checked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            batch
                .iter()
                .filter(|(key, session)| checked.get(key) != Some(session))
                .collect()
        };
        if unchecked.is_empty() {
            return Ok(());
        }
        let symbols: HashSet<&str> = unchecked.iter().map(|((_, s), _)| s.as_str()).collect();
        let saved: HashMap<(String, String), (Decimal, i64)> = alert_price::Entity::find()
            .filter(alert_price::Column::Symbol.is_in(symbols.iter().copied()))
            .all(&self.shared.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .filter_map(|row| Some(((row.venue, row.symbol), (row.price.parse().ok()?, row.ts))))
            .collect();
        let mut differing = Vec::new();
        {
            let engine = self.shared.engine();
            for (key, _) in &unchecked {
                if engine.last_price(&key.0, &key.1) != saved.get(key).copied() {
                    differing.push(key.clone());
                }
            }
        }
        if !differing.is_empty() {
            let names: HashSet<&str> = differing.iter().map(|(_, s)| s.as_str()).collect();
            let rules: Vec<AlertRule> = alert_rule::Entity::find()
                .filter(alert_rule::Column::Active.eq(true))
                .filter(alert_rule::Column::Symbol.is_in(names.iter().copied()))
                .all(&self.shared.db)
                .await
                .map_err(db_error)?
                .iter()
                .filter_map(|row| rule_from_row(row).ok())
                .collect();
            let mut engine = self.shared.engine();
            let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
            for key in &differing {
                let theirs: Vec<AlertRule> = rules
                    .iter()
                    .filter(|r| r.spec.venue == key.0 && r.spec.symbol == key.1)
                    .cloned()
                    .collect();
                let price = saved.get(key).copied();
                tracing::info!(venue = %key.0, symbol = %key.1, engine = ?engine.last_price(&key.0, &key.1), saved = ?price, rules = theirs.len(), "symbol evaluated elsewhere: taken as stored");
                for (id, error) in engine.reset_symbol(&key.0, &key.1, &theirs, price) {
                    tracing::warn!(id, %error, "stored rule refused by the engine");
                }
                held.retain(|_, (symbol, _)| symbol.as_ref() != Some(key));
            }
        }
        let symbols: HashSet<(String, String)> =
            unchecked.iter().map(|(key, _)| key.clone()).collect();
        let unmarked = self.shared.unmarked().clone();
        publish_left_over(&self.shared.db, &self.shared.publisher, &symbols, &unmarked)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let mut checked = self
            .shared
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (key, session) in unchecked {
            checked.insert(key.clone(), *session);
        }
        Ok(())
    }

    /// Gives the engine the stored candles its bar-close and expression rules need before
    /// a candle, where it lacks them (after a restart or a handover, or for a rule new to
    /// it): the recorder's closed candles — of the candle's own interval, those before it.
    async fn load_history(
        &self,
        decoded: &[Result<Market, HandlerError>],
    ) -> Result<(), HandlerError> {
        for market in decoded {
            let Ok(Market::Candle(candle)) = market else {
                continue;
            };
            let wanted = self.shared.engine().history_wanted(candle);
            for (interval, count) in wanted {
                // Only what had closed by this candle's close: its own interval's candles
                // before it, another interval's that closed by then (a backlog must not
                // read the future).
                let until = if interval == candle.interval {
                    candle.open_ts.saturating_sub(1)
                } else {
                    let closes = candle.open_ts.saturating_add(candle.interval.as_ms());
                    closes.saturating_sub(interval.as_ms())
                };
                let stored = tickwatch_recorder::store::recent_candles(
                    &self.shared.db,
                    &candle.venue,
                    &candle.symbol,
                    interval,
                    Some(until),
                    u64::try_from(count).unwrap_or(u64::MAX),
                )
                .await
                .map_err(db_error)?;
                tracing::debug!(venue = %candle.venue, symbol = %candle.symbol, %interval, count, found = stored.len(), "stored candles for bar-close and expression rules");
                self.shared.engine().prime_history(
                    &candle.venue,
                    &candle.symbol,
                    interval,
                    &stored,
                    count,
                );
            }
        }
        Ok(())
    }

    /// Marks a symbol in flight before the engine moves on, so a price save never sees
    /// the new price without the mark (it reads both under the engine lock); the first
    /// mark keeps the price the engine had, the last finished one.
    fn mark(&self, engine: &AlertEngine, symbol: &(String, String)) {
        let now = Instant::now();
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(symbol.clone())
            .and_modify(|mark| mark.since = now)
            .or_insert_with(|| InFlight {
                since: now,
                finished: engine.last_price(&symbol.0, &symbol.1),
            });
    }
}

impl BatchHandler for AlertsHandler {
    async fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Outcome> {
        let decoded: Vec<Result<Market, HandlerError>> = batch.iter().map(Market::decode).collect();
        let symbols: Vec<((String, String), u64)> = decoded
            .iter()
            .zip(batch)
            .filter_map(|(market, message)| {
                Some((market.as_ref().ok()?.symbol()?, message.session))
            })
            .collect();
        if let Err(e) = self.check_symbols(&symbols).await {
            // Held, not retried through the tiers: a symbol's messages must stay in order.
            return vec![e.hold_in_place(RETRY_IN_PLACE)];
        }
        if let Err(e) = self.load_history(&decoded).await {
            return vec![e.hold_in_place(RETRY_IN_PLACE)];
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut work = Vec::new();
        {
            let mut engine = self.shared.engine();
            let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
            for (index, (message, market)) in batch.iter().zip(decoded).enumerate() {
                let key = message.identity();
                let evaluated = match held.remove(&key) {
                    Some(done) => Ok(done),
                    None => market.map(|market| self.evaluate(&mut engine, message, market)),
                };
                match evaluated {
                    Ok((symbol, produced)) => {
                        outcomes.push(Ok(Handled::Done));
                        work.push(Work {
                            index,
                            key,
                            symbol,
                            produced,
                            origin: message
                                .header(headers::SENT_AT)
                                .and_then(|v| v.parse().ok()),
                            span: message.span.clone(),
                        });
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
        }
        let mut firings = Vec::new();
        let mut hits = Vec::new();
        for w in &work {
            match &w.produced {
                Produced::Firings(f) => {
                    firings.extend(f.iter().cloned().map(|f| (f, w.origin, w.span.clone())))
                }
                Produced::Hits(signal, h) if !h.is_empty() => {
                    hits.push((signal.clone(), h.clone(), w.origin, w.span.clone()));
                }
                Produced::Hits(..) => {}
            }
        }
        // The engine has moved past these messages: a failure (a hang included, cut off
        // before the runtime's own handler timeout would) holds them in place, with what the
        // engine gave, to be stored and published when they run again.
        let timeout = self.shared.deliver_timeout;
        let delivered = if firings.is_empty() && hits.is_empty() {
            Ok(())
        } else {
            match tokio::time::timeout(timeout, self.shared.deliver(firings, hits)).await {
                Ok(result) => result,
                Err(_) => Err(HandlerError::Transient(format!(
                    "storing and publishing the firings took over {timeout:?}"
                ))),
            }
        };
        match delivered {
            Ok(()) => {
                let mut in_flight = self
                    .shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for w in &work {
                    if let Some(symbol) = &w.symbol {
                        in_flight.remove(symbol);
                    }
                }
            }
            Err(e) => {
                let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
                for w in work {
                    outcomes[w.index] = e.clone().hold_in_place(RETRY_IN_PLACE);
                    held.insert(w.key, (w.symbol, w.produced));
                }
            }
        }
        outcomes
    }
}

/// Forwards control messages to the task that applies them.
#[derive(Clone)]
struct ForwardControl {
    to: mpsc::UnboundedSender<Control>,
    received: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Handler for ForwardControl {
    async fn handle(&mut self, message: &Incoming) -> Outcome {
        let control: Control = message.decode()?;
        // A closed receiver means the role is stopping; the change is in the database.
        let _ = self.to.send(control);
        if let Some(hook) = &self.received {
            hook();
        }
        Ok(Handled::Done)
    }
}

fn apply(engine: &mut AlertEngine, control: &Control) {
    match engine.apply(control) {
        Applied::Rejected { id, error } => tracing::warn!(id, %error, "control message refused"),
        Applied::Stale { id, held, got } => {
            tracing::debug!(id, held, got, "stale control message ignored")
        }
        applied => tracing::debug!(?applied, "control applied"),
    }
    RuleBookSize {
        rules: engine.rule_count(),
        subscriptions: engine.subscription_count(),
    }
    .emit();
}

/// Loads every active rule and subscription, and primes the engine with the saved prices.
pub async fn load(engine: &mut AlertEngine, db: &DatabaseConnection) -> Result<(), Error> {
    read_snapshot(db).await?.apply_to(engine);
    Ok(())
}

/// The rules, subscriptions and saved prices, as stored.
#[derive(Debug)]
pub struct Snapshot {
    rules: Vec<AlertRule>,
    subscriptions: Vec<Subscription>,
    prices: Vec<(String, String, Decimal, i64)>,
}

/// Reads a [`Snapshot`] (without holding the engine, which keeps evaluating meanwhile).
pub async fn read_snapshot(db: &DatabaseConnection) -> Result<Snapshot, Error> {
    let rules: Vec<_> = alert_rule::Entity::find()
        .filter(alert_rule::Column::Active.eq(true))
        .all(db)
        .await?
        .iter()
        .filter_map(|row| match rule_from_row(row) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::warn!(rule = row.id, error = %e, "stored rule cannot be read; skipped");
                None
            }
        })
        .collect();
    let subscriptions: Vec<_> = subscription::Entity::find()
        .filter(subscription::Column::Active.eq(true))
        .all(db)
        .await?
        .iter()
        .filter_map(|row| subscription_from_row(row).ok())
        .collect();
    let prices = alert_price::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|row| {
            let price = row.price.parse::<Decimal>().ok()?;
            Some((row.venue, row.symbol, price, row.ts))
        })
        .collect();
    Ok(Snapshot {
        rules,
        subscriptions,
        prices,
    })
}

impl Snapshot {
    /// Loads the snapshot into the engine: on a live engine a reload, where a stale row
    /// never overwrites a newer version, a rule no longer stored is removed, and a saved
    /// price older than the one evaluated is ignored.
    pub fn apply_to(self, engine: &mut AlertEngine) {
        let report = engine.load(self.rules, self.subscriptions);
        for (id, error) in &report.rejected {
            tracing::warn!(id, %error, "rule refused by the engine");
        }
        for (venue, symbol, price, ts) in self.prices {
            engine.prime(&venue, &symbol, price, ts);
        }
        RuleBookSize {
            rules: engine.rule_count(),
            subscriptions: engine.subscription_count(),
        }
        .emit();
        tracing::info!(
            rules = report.rules,
            subscriptions = report.subscriptions,
            stale = report.stale,
            removed = report.removed,
            "rule book loaded"
        );
    }
}

/// Saves the last evaluated price of each symbol that changed since the last save: the
/// consumer's checkpoint, run before every acknowledgement, so a restart is primed with a
/// price no older than the last acknowledged tick (a fall acknowledged but not saved would
/// make the restarted engine miss the next crossing). A symbol still in flight is saved at
/// its last finished price: a restart primed with its newer one would skip firings never
/// stored (see [`savable`]). In the same
/// transaction: the events published since the last save are marked so, and the prices are
/// the market's latest prices too (`latest_prices`, read by `/price` and the API; the
/// recorder adds closed candles' closes, and ticks are not sent to it).
async fn save_prices(shared: &Shared) -> Result<(), sea_orm::DbErr> {
    let mut saved = shared.saved.lock().await;
    let prices = {
        let mut engine = shared.engine();
        let in_flight = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let changed = engine.take_changed_prices();
        // A symbol in flight saves its last finished price now, its newest one later.
        for (venue, symbol, _, _) in &changed {
            if in_flight.contains_key(&(venue.clone(), symbol.clone())) {
                engine.relist_price(venue, symbol);
            }
        }
        savable(changed, &in_flight)
    };
    // Given again by the next save, at the engine's price then, unless this one commits
    // (it may fail, panic, or be cancelled with its flush task).
    let mut relist = Relist {
        shared,
        prices: &prices,
        committed: false,
    };
    let result = write_prices(shared, &mut saved, &prices).await;
    relist.committed = result.is_ok();
    result
}

/// Of `prices`, those not saved as they are (a new time, or a new price at the same time:
/// the engine evaluates both), in key order — as every writer of these rows writes them, so
/// none deadlocks another.
fn unsaved<'a>(
    prices: &'a [(String, String, Decimal, i64)],
    saved: &HashMap<(String, String), (Decimal, i64)>,
) -> Vec<&'a (String, String, Decimal, i64)> {
    let mut unsaved: Vec<&(String, String, Decimal, i64)> = prices
        .iter()
        .filter(|(venue, symbol, price, ts)| {
            saved.get(&(venue.clone(), symbol.clone())) != Some(&(*price, *ts))
        })
        .collect();
    unsaved.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    unsaved
}

/// Puts taken prices back on the engine's list when dropped uncommitted.
struct Relist<'a> {
    shared: &'a Shared,
    prices: &'a [(String, String, Decimal, i64)],
    committed: bool,
}

impl Drop for Relist<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let mut engine = self.shared.engine();
            for (venue, symbol, _, _) in self.prices {
                engine.relist_price(venue, symbol);
            }
        }
    }
}

/// The transaction of [`save_prices`]: the marks and the prices not saved yet.
async fn write_prices(
    shared: &Shared,
    saved: &mut HashMap<(String, String), (Decimal, i64)>,
    prices: &[(String, String, Decimal, i64)],
) -> Result<(), sea_orm::DbErr> {
    let mut changed = Vec::new();
    let mut latest = Vec::new();
    let mut keys = Vec::new();
    for &(ref venue, ref symbol, price, ts) in unsaved(prices, saved) {
        let key = (venue.clone(), symbol.clone());
        latest.push((key.0.clone(), key.1.clone(), price, ts));
        changed.push(alert_price::ActiveModel {
            venue: Set(key.0.clone()),
            symbol: Set(key.1.clone()),
            price: Set(price.to_string()),
            ts: Set(ts),
        });
        keys.push((key, (price, ts)));
    }
    let marks: Vec<String> = shared.unmarked().iter().cloned().collect();
    if changed.is_empty() && marks.is_empty() {
        return Ok(());
    }
    let txn = shared.db.begin().await?;
    mark_published(&txn, marks.clone()).await?;
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        alert_price::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([alert_price::Column::Venue, alert_price::Column::Symbol])
                    .update_columns([alert_price::Column::Price, alert_price::Column::Ts])
                    // Never back in time: an instance that handed the symbol over may
                    // still hold an older price.
                    .action_and_where(
                        Expr::col((alert_price::Entity, alert_price::Column::Ts))
                            .lte(Expr::cust("excluded.ts")),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    tickwatch_recorder::store::upsert_latest_prices(&txn, &latest)
        .await
        .map_err(|e| match e {
            tickwatch_recorder::Error::Db(e) => e,
            other => sea_orm::DbErr::Custom(other.to_string()),
        })?;
    txn.commit().await?;
    let mut unmarked = shared.unmarked();
    for id in &marks {
        unmarked.remove(id);
    }
    saved.extend(keys);
    Ok(())
}

/// Of the engine's last prices, those a checkpoint may save: a symbol in flight gives its
/// last finished price, or nothing before its first delivery finished.
fn savable(
    prices: Vec<(String, String, Decimal, i64)>,
    in_flight: &HashMap<(String, String), InFlight>,
) -> Vec<(String, String, Decimal, i64)> {
    prices
        .into_iter()
        .filter_map(|(venue, symbol, price, ts)| {
            match in_flight.get(&(venue.clone(), symbol.clone())) {
                None => Some((venue, symbol, price, ts)),
                Some(mark) => mark.finished.map(|(price, ts)| (venue, symbol, price, ts)),
            }
        })
        .collect()
}

/// [`save_prices`] as the consumer's checkpoint.
fn checkpoint(shared: &Arc<Shared>) -> tickwatch_broker::consumer::Checkpoint {
    let shared = shared.clone();
    tickwatch_broker::consumer::Checkpoint(Arc::new(move || {
        let shared = shared.clone();
        Box::pin(async move {
            save_prices(&shared)
                .await
                .map_err(|e| format!("saving the last prices: {e}"))
        })
    }))
}

/// Publishes stored events not marked published (a crash between storing and publishing),
/// except those of `busy` symbols, whose handler here is still at work on them, and those
/// `unmarked` (published here, their mark not yet written).
pub async fn sweep_outbox(
    shared_db: &DatabaseConnection,
    publisher: &Publisher,
    older_than_ms: i64,
    busy: &HashSet<(String, String)>,
    unmarked: &HashSet<String>,
) -> Result<usize, Error> {
    let cutoff = now_ms() - older_than_ms;
    let pending = alert_event::Entity::find()
        .filter(alert_event::Column::Published.eq(false))
        .filter(alert_event::Column::CreatedAt.lte(cutoff))
        .order_by_asc(alert_event::Column::Ts)
        .order_by_asc(alert_event::Column::Id)
        .all(shared_db)
        .await?
        .into_iter()
        .filter(|e| !busy.contains(&(e.venue.clone(), e.symbol.clone())))
        .filter(|e| !unmarked.contains(&e.id))
        .collect();
    publish_stored(shared_db, publisher, pending).await
}

/// Publishes what was stored for `symbols` and not published, oldest first: run on a
/// symbol's first message in a consumer session, so what a previous owner (a process
/// killed between storing and publishing) left goes out before anything newer of the
/// symbol. The redelivered message does not fire again (its firing is recorded), and the
/// periodic sweep would send it late, behind newer messages to the same chats.
async fn publish_left_over(
    shared_db: &DatabaseConnection,
    publisher: &Publisher,
    symbols: &HashSet<(String, String)>,
    unmarked: &HashSet<String>,
) -> Result<usize, Error> {
    let pending = alert_event::Entity::find()
        .filter(alert_event::Column::Published.eq(false))
        .filter(alert_event::Column::Symbol.is_in(symbols.iter().map(|(_, s)| s.as_str())))
        .order_by_asc(alert_event::Column::Ts)
        .order_by_asc(alert_event::Column::Id)
        .all(shared_db)
        .await?
        .into_iter()
        .filter(|e| symbols.contains(&(e.venue.clone(), e.symbol.clone())))
        .filter(|e| !unmarked.contains(&e.id))
        .collect();
    publish_stored(shared_db, publisher, pending).await
}

/// Publishes stored events in the order given, each marked published once its publishes
/// are confirmed.
async fn publish_stored(
    shared_db: &DatabaseConnection,
    publisher: &Publisher,
    pending: Vec<alert_event::Model>,
) -> Result<usize, Error> {
    let mut done = 0;
    for event in &pending {
        let Ok(id) = event.id.parse::<uuid::Uuid>() else {
            continue;
        };
        let (Ok(threshold), Ok(price), Ok(condition)) = (
            event.threshold.parse::<Decimal>(),
            event.price.parse::<Decimal>(),
            event.condition.parse(),
        ) else {
            continue;
        };
        let alert = tickwatch_schema::wire::AlertTriggered {
            id,
            rule_id: event.rule_id,
            user_id: event.user_id,
            venue: event.venue.clone(),
            symbol: event.symbol.clone(),
            condition,
            threshold,
            price,
            ts: event.ts,
        };
        publisher.publish(Exchange::Alerts, &alert).await?;
        let chat = user::Entity::find_by_id(event.user_id)
            .one(shared_db)
            .await?
            .filter(|u| u.active)
            .and_then(|u| Some((u.telegram_chat_id?, Lang::from_code(&u.language))));
        if let Some((chat_id, lang)) = chat {
            // Whether the rule was a `once` one that this firing turned off is not stored
            // with the event: a rule no longer active gets the delete button only.
            let active = alert_rule::Entity::find_by_id(event.rule_id)
                .one(shared_db)
                .await?
                .is_some_and(|r| r.active);
            let notification = Notification {
                id,
                channel: Channel::Telegram,
                chat_id,
                text: event.text.clone(),
                parse_mode: None,
                dedupe_key: format!("alert:{id}"),
                kind: EventKind::Alert,
                origin_ts: None,
                buttons: template::alert_buttons(lang, event.rule_id, !active),
                chart: Some(ChartRequest {
                    venue: event.venue.clone(),
                    symbol: event.symbol.clone(),
                    interval: CHART_INTERVAL,
                    level: event.threshold.parse().ok(),
                    marker_ts: Some(event.ts),
                    bars: CHART_BARS,
                }),
            };
            publisher.publish(Exchange::Notify, &notification).await?;
        }
        // Marked as soon as its own publishes are confirmed: a failure further down the
        // list must not make this one go out again at the next sweep.
        mark_published(shared_db, vec![event.id.clone()]).await?;
        tracing::info!(event = %event.id, rule = event.rule_id, "stored alert published (stored, not published, by an earlier delivery)");
        done += 1;
    }
    Ok(done)
}

/// Reads the snapshot again (retrying until it works) and loads it into the live engine;
/// `false` if stopped meanwhile.
async fn reload(shared: &Shared, stop: &CancellationToken) -> bool {
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(10),
        2.0,
        0.0,
    );
    loop {
        // Raced with the stop: a shutdown must not wait for a slow or stalled database.
        let snapshot = tokio::select! {
            _ = stop.cancelled() => return false,
            snapshot = read_snapshot(&shared.db) => snapshot,
        };
        match snapshot {
            Ok(snapshot) => {
                snapshot.apply_to(&mut shared.engine());
                if let Some(hook) = &shared.hooks.after_reload {
                    hook();
                }
                return true;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "could not reload the rule book");
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Deactivates expired rules in the database and tells every instance. The engine hands
/// each expired rule over once: those not yet written (a database error) stay in `unsaved`
/// for the next pass.
async fn retire_expired(shared: &Shared, unsaved: &mut Vec<i64>) -> Result<(), sea_orm::DbErr> {
    {
        let mut engine = shared.engine();
        unsaved.extend(engine.expire(now_ms()));
        unsaved.extend(engine.take_expired());
    }
    while let Some(&rule_id) = unsaved.first() {
        let result = alert_rule::Entity::update_many()
            .col_expr(alert_rule::Column::Active, Expr::value(false))
            .col_expr(
                alert_rule::Column::Version,
                Expr::col(alert_rule::Column::Version).add(1),
            )
            .col_expr(alert_rule::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(alert_rule::Column::Id.eq(rule_id))
            .filter(alert_rule::Column::Active.eq(true))
            .exec(&shared.db)
            .await?;
        unsaved.remove(0);
        if result.rows_affected == 1 {
            tracing::info!(rule_id, "rule expired");
            shared.announce_rule(rule_id).await;
        }
    }
    Ok(())
}

/// Runs the alerts role until `shutdown`.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    config: &AlertsConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_hooks(broker, db, config, shutdown, Hooks::default()).await
}

/// [`run`] with failure-injection hooks (tests).
pub async fn run_with_hooks(
    broker: &Broker,
    db: DatabaseConnection,
    config: &AlertsConfig,
    shutdown: CancellationToken,
    hooks: Hooks,
) -> Result<(), Error> {
    AlertsStarted.emit();
    let stop = shutdown.child_token();
    // 1. This instance's control queue, buffering from before the load.
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let mut control_topology = Topology::default();
    let instance = format!(
        "alerts-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let control_spec = control_topology.add_private_queue(
        broker.config(),
        &broker.names().control_queue(&instance),
        &[(broker.names().exchange(Exchange::Control), String::new())],
    )?;
    let (sessions_tx, mut sessions) = watch::channel(0u64);
    // Every background task of the role: stopped with `stop`, waited for before returning.
    let tasks = TaskTracker::new();
    {
        let received = hooks.control_received.clone();
        let (broker, stop) = (broker.clone(), stop.clone());
        let options = ConsumeOptions {
            declare: Some(Arc::new(control_topology)),
            sessions: Some(sessions_tx),
            ..Default::default()
        };
        tasks.spawn(async move {
            let result = consume_with(
                &broker,
                &control_spec,
                ForwardControl {
                    to: control_tx,
                    received,
                },
                stop,
                options,
            )
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "alerts control consumer failed");
            }
        });
    }
    tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        _ = sessions.wait_for(|n| *n > 0) => {}
        _ = tokio::time::sleep(Duration::from_secs(60)) => {
            tracing::warn!("the control queue is not consuming yet; loading the rules anyway");
        }
    }
    sessions.mark_unchanged();
    // 2. The snapshot, 3. the buffered changes on top of it.
    let mut engine = AlertEngine::new(config.clone())?;
    load(&mut engine, &db).await?;
    if let Some(hook) = &hooks.after_load {
        hook();
    }
    while let Ok(control) = control_rx.try_recv() {
        apply(&mut engine, &control);
    }
    let publisher = Publisher::start(broker, "alerts");
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        db: db.clone(),
        publisher: publisher.clone(),
        routes: Mutex::new(HashMap::new()),
        in_flight: Mutex::new(HashMap::new()),
        saved: tokio::sync::Mutex::new(HashMap::new()),
        unmarked: Mutex::new(HashSet::new()),
        held: Mutex::new(HashMap::new()),
        checked: Mutex::new(HashMap::new()),
        hooks,
        deliver_timeout: Duration::from_millis(broker.config().handler_timeout_ms / 2),
    });
    {
        let (shared, stop) = (shared.clone(), stop.clone());
        tasks.spawn(async move {
            let mut sessions_open = true;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    control = control_rx.recv() => match control {
                        Some(control) => apply(&mut shared.engine(), &control),
                        None => break,
                    },
                    changed = sessions.changed(), if sessions_open => {
                        if changed.is_err() {
                            sessions_open = false;
                            continue;
                        }
                        // The private control queue is lost with its connection, and with
                        // it every change announced meanwhile: reload the rule book. The
                        // changes arriving on the new queue wait in the channel and apply
                        // on top of the reload, as at start.
                        tracing::info!("control queue consuming again; reloading the rule book");
                        if !reload(&shared, &stop).await {
                            break;
                        }
                    }
                }
            }
        });
    }
    // Events this instance's handlers are still at work on (publishing, or retrying in
    // place) are skipped by symbol; the age keeps the sweep off another instance's fresh
    // ones. Should one still go out twice, the notifier sends its dedupe key once.
    const SWEEP_AFTER_MS: i64 = 10_000;
    {
        let (shared, stop) = (shared.clone(), stop.clone());
        tasks.spawn(async move {
            let mut unsaved_expiries = Vec::new();
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {}
                }
                {
                    // A mark older than any delivery can take is a leftover.
                    let stale = shared.deliver_timeout * 4;
                    let busy: HashSet<(String, String)> = shared
                        .in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .filter(|(_, mark)| mark.since.elapsed() < stale)
                        .map(|(key, _)| key.clone())
                        .collect();
                    let unmarked = shared.unmarked().clone();
                    if let Err(e) = sweep_outbox(
                        &shared.db,
                        &shared.publisher,
                        SWEEP_AFTER_MS,
                        &busy,
                        &unmarked,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "outbox sweep failed; will retry");
                    }
                    // Marks a checkpoint did not write (no acknowledgement came after them:
                    // the session broke, or the queue went to another instance).
                    if !shared.unmarked().is_empty()
                        && let Err(e) = save_prices(&shared).await
                    {
                        tracing::warn!(error = %e, "could not mark published alerts; will retry");
                    }
                    if let Err(e) = retire_expired(&shared, &mut unsaved_expiries).await {
                        tracing::warn!(error = %e, "could not retire expired rules");
                    }
                }
            }
        });
    }
    // 4. Market data.
    let handler = AlertsHandler {
        shared: shared.clone(),
    };
    let options = ConsumeOptions {
        batch: broker.config().batch_size(),
        checkpoint: Some(checkpoint(&shared)),
        ..ConsumeOptions::default()
    };
    let result = consume_role(broker, WorkQueue::Alerts, handler, stop.clone(), options).await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    if !shared.unmarked().is_empty()
        && let Err(e) = save_prices(&shared).await
    {
        tracing::warn!(error = %e, "could not mark published alerts at shutdown; the sweep of the next start publishes them again, the notifier sends each once");
    }
    publisher.close().await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(symbol: &str, price: i64, ts: i64) -> (String, String, Decimal, i64) {
        ("binance".into(), symbol.into(), Decimal::from(price), ts)
    }

    #[test]
    fn a_second_price_at_the_same_time_is_saved_too() {
        let saved = HashMap::from([
            (
                ("binance".to_string(), "B".to_string()),
                (Decimal::from(100), 10),
            ),
            (
                ("binance".to_string(), "A".to_string()),
                (Decimal::from(50), 10),
            ),
        ]);
        let prices = vec![price("B", 101, 10), price("A", 50, 10), price("C", 7, 3)];
        let names: Vec<&str> = unsaved(&prices, &saved)
            .iter()
            .map(|p| p.1.as_str())
            .collect();
        // B moved at the same time, C is new, A is saved as it is; in key order.
        assert_eq!(names, ["B", "C"]);
    }

    #[test]
    fn a_symbol_in_flight_is_saved_at_its_last_finished_price() {
        let key = |s: &str| ("binance".to_string(), s.to_string());
        let in_flight = HashMap::from([
            (
                key("HOT"),
                InFlight {
                    since: Instant::now(),
                    finished: Some((Decimal::from(101), 20)),
                },
            ),
            (
                key("NEW"),
                InFlight {
                    since: Instant::now(),
                    finished: None,
                },
            ),
        ]);
        let engine = vec![
            price("HOT", 99, 30),
            price("NEW", 5, 30),
            price("CALM", 7, 10),
        ];
        assert_eq!(
            savable(engine, &in_flight),
            vec![price("HOT", 101, 20), price("CALM", 7, 10)],
            "the hot symbol's acknowledged price, not the one its running batch has reached; \
             nothing for a symbol whose first delivery runs"
        );
    }
}
