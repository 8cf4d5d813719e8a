//! The `paper` role on `tw.paper.q`: candles and signals through the users' paper
//! strategies, each batch's state written in one transaction before it is acknowledged.
//!
//! # Order: the same as a backtest
//! A backtest gives each candle to the paper engine, then that candle's signals. Live, a
//! candle reaches this role at the same time as the signals role, and the candle's signals
//! arrive later, behind the next candles when they come in a burst. So the messages only
//! say *which series moved*: the role goes through each series in the database, in the
//! backtest's order — the candles the signals role has finished (`signal_progress`, stored
//! with the candles and their signals in one transaction), each followed by its signals,
//! ordered by kind — from where it got to (`paper_progress`, stored with the state it
//! produced). A series the signals role does not follow (no progress of its) takes the
//! candles from the messages. A candle the signals role has not finished yet is held in
//! place for up to [`HOLD_AT_MOST`] (it usually finishes in milliseconds); past that the
//! series catches up at its next message, or at the sweep of series behind that a batch
//! makes at most every [`SWEEP_EVERY`], and holds stop for a minute (the signals role is
//! down or far behind). The role works only when messages come: with the markets closed,
//! a series left behind waits for the next one.
//!
//! # Guarantees
//! - Acknowledged only after the batch's state (entries, trades, cash, equity, progress)
//!   is committed; a redelivered message finds its series done and changes nothing.
//! - One signal opens at most one entry per strategy: the progress says it was gone
//!   through, and the entries table is unique per strategy and signal.
//! - A batch that fails — or never finishes (the runtime's timeout, a panic) — reloads every
//!   strategy from the database before the next batch (the engine must not run ahead of
//!   what is stored); so does a new consumer session (another instance may have gone on
//!   meanwhile). The messages are retried.
//! - The opening and closing messages are an outbox on the entry rows: published after
//!   the commit, marked when confirmed, published again by a later batch after a failure
//!   or a restart (the notifier sends a dedupe key once).
//! - A strategy created or changed through the API or the bot is picked up by the next
//!   batch (each checks the strategies' versions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tickwatch_broker::{
    BatchHandler, Broker, ConsumeOptions, Handled, HandlerError, Incoming, Outcome, Publisher,
    consume_role, crash,
};
use tickwatch_schema::db::entity::{candle, paper_position, signal, signal_progress, user};
use tickwatch_schema::display;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::{
    Candle, Channel, EventKind, Interval, MessageKind, Notification, Signal, deterministic_id,
};
use tokio_util::sync::CancellationToken;

use crate::engine::{PaperEngine, PaperOutput};
use crate::error::Result;
use crate::store::{self, Changes, status};

/// How long a candle waits, held in place, for the signals role to finish it.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(3);
const HOLD_STEP: Duration = Duration::from_millis(50);
/// After a hold ran out, how long candles are not held (the signals role is behind).
const NO_HOLDS_AFTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often series behind the signals role are caught up without a message.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Candles read from the store at once when a series catches up.
const CANDLES_PER_READ: u64 = 500;
/// The most reads one series' catch-up makes in a batch: a long way behind (a restart
/// after downtime) goes on at the next message rather than in one huge transaction.
const READS_PER_CATCH_UP: usize = 4;

/// A series: venue, symbol, interval.
type SeriesKey = (String, String, Interval);

/// Who a strategy's messages go to.
#[derive(Debug, Clone)]
struct Owner {
    user_id: i64,
    name: String,
}

struct State {
    engine: PaperEngine,
    owners: HashMap<i64, Owner>,
    versions: HashMap<i64, i64>,
    cursors: HashMap<SeriesKey, i64>,
    /// `false`: read every strategy and the progress from the store before the next batch.
    loaded: bool,
    /// A batch is under way: if it never finishes (its future dropped by the runtime's
    /// timeout, or a panic), the engine may be past what is stored, so the next batch
    /// reloads.
    unsettled: bool,
    /// The consumer session of the last batch: a new one (a reconnect, a standby made
    /// active) may find the store moved on by another instance, so it reloads.
    session: Option<u64>,
    swept_at: Option<Instant>,
    /// Opening or closing messages may be stored unpublished.
    outbox: bool,
    no_holds_until: Option<Instant>,
}

struct Shared {
    db: DatabaseConnection,
    publisher: Publisher,
    state: tokio::sync::Mutex<State>,
}

/// Handles the paper role's deliveries; cheap to clone.
#[derive(Clone)]
pub struct PaperHandler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PaperHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaperHandler").finish_non_exhaustive()
    }
}

/// What one delivery asks for.
enum Trigger {
    /// A closed candle: its series up to it.
    Candle(Candle),
    /// A signal: its series up to the candle it came from.
    Signal(SeriesKey, i64),
    Nothing,
}

fn trigger(message: &Incoming) -> std::result::Result<Trigger, HandlerError> {
    match message.message_kind() {
        Some(MessageKind::Candle) => {
            let candle: Candle = message.decode()?;
            Ok(if candle.closed {
                Trigger::Candle(candle)
            } else {
                Trigger::Nothing
            })
        }
        Some(MessageKind::Signal) => {
            let signal: Signal = message.decode()?;
            let open_ts = signal.ts - signal.interval.as_ms();
            Ok(Trigger::Signal(
                (signal.venue, signal.symbol, signal.interval),
                open_ts,
            ))
        }
        other => Err(HandlerError::Invalid(format!(
            "the paper role takes candles and signals, not {}",
            other.map_or("an untyped message".to_string(), |k| k.to_string())
        ))),
    }
}

/// What a batch did to the engine, to be stored.
#[derive(Default)]
struct Progress {
    outputs: Vec<PaperOutput>,
    /// Each symbol gone through, with the close time of its last candle.
    symbols: BTreeMap<(String, String), i64>,
    series: BTreeMap<SeriesKey, i64>,
}

impl PaperHandler {
    pub fn new(db: DatabaseConnection, publisher: Publisher) -> Self {
        PaperHandler {
            shared: Arc::new(Shared {
                db,
                publisher,
                state: tokio::sync::Mutex::new(State {
                    engine: PaperEngine::default(),
                    owners: HashMap::new(),
                    versions: HashMap::new(),
                    cursors: HashMap::new(),
                    loaded: false,
                    unsettled: false,
                    session: None,
                    swept_at: None,
                    outbox: true,
                    no_holds_until: None,
                }),
            }),
        }
    }

    fn db(&self) -> &DatabaseConnection {
        &self.shared.db
    }

    /// Reads every strategy, its account and the progress from the store.
    async fn load(&self, state: &mut State) -> Result<()> {
        let mut engine = PaperEngine::default();
        let mut owners = HashMap::new();
        let mut versions = HashMap::new();
        for (row, account) in store::load_strategies(self.db()).await? {
            versions.insert(row.id, row.version);
            match store::strategy_from_row(&row)
                .and_then(|strategy| engine.set_strategy(strategy, Some(account)))
            {
                Ok(()) => {
                    owners.insert(
                        row.id,
                        Owner {
                            user_id: row.user_id,
                            name: row.name.clone(),
                        },
                    );
                }
                // One unreadable strategy must not stop the others.
                Err(e) => tracing::error!(strategy = row.id, error = %e, "paper strategy not run"),
            }
        }
        state.engine = engine;
        state.owners = owners;
        state.versions = versions;
        state.cursors = store::load_progress(self.db()).await?;
        state.loaded = true;
        tracing::info!(
            strategies = state.owners.len(),
            series = state.cursors.len(),
            "paper strategies loaded"
        );
        Ok(())
    }

    /// Loads what changed in the stored strategies (all of them again: their accounts in
    /// the store are exactly the engine's after every committed batch).
    async fn refresh(&self, state: &mut State) -> Result<()> {
        if !state.loaded {
            return self.load(state).await;
        }
        let versions = store::strategy_versions(self.db()).await?;
        if versions != state.versions {
            self.load(state).await?;
        }
        Ok(())
    }

    /// The signals role's progress in these series (absent: it does not follow them).
    async fn signals_progress(
        &self,
        series: &BTreeSet<SeriesKey>,
    ) -> Result<HashMap<SeriesKey, i64>> {
        let mut found = HashMap::new();
        if series.is_empty() {
            return Ok(found);
        }
        let symbols: BTreeSet<&str> = series.iter().map(|s| s.1.as_str()).collect();
        for chunk in symbols.into_iter().collect::<Vec<_>>().chunks(200) {
            let rows = signal_progress::Entity::find()
                .filter(signal_progress::Column::Symbol.is_in(chunk.iter().copied()))
                .all(self.db())
                .await?;
            for row in rows {
                let Ok(interval) = row.interval.parse::<Interval>() else {
                    continue;
                };
                let key = (row.venue, row.symbol, interval);
                if series.contains(&key) {
                    found.insert(key, row.last_open_ts);
                }
            }
        }
        Ok(found)
    }

    /// Goes through a series' stored candles after `start` up to `until` (the signals
    /// role's progress), each followed by its signals.
    async fn catch_up(
        &self,
        state: &mut State,
        series: &SeriesKey,
        mut start: i64,
        until: i64,
        progress: &mut Progress,
    ) -> Result<()> {
        let (venue, symbol, interval) = series;
        let len = interval.as_ms();
        let mut reads = 0;
        while start < until && reads < READS_PER_CATCH_UP {
            reads += 1;
            let rows = candle::Entity::find()
                .filter(candle::Column::Venue.eq(venue.as_str()))
                .filter(candle::Column::Symbol.eq(symbol.as_str()))
                .filter(candle::Column::Interval.eq(interval.as_str()))
                .filter(candle::Column::OpenTs.gt(start))
                .filter(candle::Column::OpenTs.lte(until))
                .order_by_asc(candle::Column::OpenTs)
                .limit(CANDLES_PER_READ)
                .all(self.db())
                .await?;
            let Some(last) = rows.last().map(|r| r.open_ts) else {
                break;
            };
            let stored = signal::Entity::find()
                .filter(signal::Column::Venue.eq(venue.as_str()))
                .filter(signal::Column::Symbol.eq(symbol.as_str()))
                .filter(signal::Column::Interval.eq(interval.as_str()))
                .filter(signal::Column::Ts.gt(start + len))
                .filter(signal::Column::Ts.lte(last + len))
                .all(self.db())
                .await?;
            // With when each came out: what a strategy's start is compared with.
            let mut by_candle: HashMap<i64, Vec<(Signal, i64)>> = HashMap::new();
            for row in &stored {
                if let Some(signal) = tickwatch_signals::adapter::signal_from_row(row) {
                    by_candle
                        .entry(signal.ts - len)
                        .or_default()
                        .push((signal, row.created_at));
                }
            }
            for row in &rows {
                match tickwatch_recorder::store::candle_from_row(row) {
                    Ok(candle) => {
                        self.step(state, &candle, by_candle.remove(&candle.open_ts), progress)
                    }
                    // One unreadable stored candle must not stop the series for good.
                    Err(e) => {
                        tracing::error!(venue = %venue, symbol = %symbol, open_ts = row.open_ts, error = %e, "stored candle unreadable; skipped")
                    }
                }
            }
            start = last;
        }
        Ok(())
    }

    /// One candle, then its signals in the order of their kinds.
    fn step(
        &self,
        state: &mut State,
        candle: &Candle,
        signals: Option<Vec<(Signal, i64)>>,
        progress: &mut Progress,
    ) {
        let series = (candle.venue.clone(), candle.symbol.clone(), candle.interval);
        progress.outputs.extend(state.engine.on_candle(candle));
        let mut signals = signals.unwrap_or_default();
        signals.sort_by_key(|(s, _)| s.kind);
        for (signal, seen_at) in &signals {
            progress
                .outputs
                .extend(state.engine.on_signal_seen(signal, *seen_at));
        }
        // The candle's last millisecond: a daily candle's close is the next day's start.
        let close_ts = candle.open_ts + candle.interval.as_ms() - 1;
        let at = progress
            .symbols
            .entry((candle.venue.clone(), candle.symbol.clone()))
            .or_insert(close_ts);
        *at = (*at).max(close_ts);
        state.cursors.insert(series.clone(), candle.open_ts);
        progress.series.insert(series, candle.open_ts);
    }

    /// What the engine holds now for what a batch went through, to be stored.
    fn changes(&self, state: &State, progress: &Progress) -> Changes {
        let mut changes = Changes::default();
        let mut touched: BTreeSet<(i64, String, String)> = BTreeSet::new();
        let mut strategies: BTreeMap<i64, i64> = BTreeMap::new();
        let mut note = |id: i64, venue: &str, symbol: &str, ts: i64| {
            touched.insert((id, venue.to_string(), symbol.to_string()));
            let at = strategies.entry(id).or_insert(ts);
            *at = (*at).max(ts);
        };
        for ((venue, symbol), ts) in &progress.symbols {
            for id in state.engine.holders(venue, symbol) {
                note(id, venue, symbol, *ts);
            }
        }
        for output in &progress.outputs {
            match output {
                PaperOutput::Opened {
                    strategy_id,
                    venue,
                    symbol,
                    ts,
                    ..
                } => note(*strategy_id, venue, symbol, *ts),
                PaperOutput::Closed(trade) => {
                    note(
                        trade.strategy_id,
                        &trade.venue,
                        &trade.symbol,
                        trade.exit_ts,
                    );
                    changes.closed.push(trade.clone());
                }
                PaperOutput::Skipped {
                    strategy_id,
                    venue,
                    symbol,
                    signal_id,
                    kind,
                    interval,
                    signal_ts,
                    reason,
                } => changes.skipped.push((
                    *strategy_id,
                    crate::engine::Entry {
                        venue: venue.clone(),
                        symbol: symbol.clone(),
                        signal_id: signal_id.clone(),
                        kind: kind.clone(),
                        interval: *interval,
                        signal_ts: *signal_ts,
                        open: None,
                    },
                    reason.clone(),
                )),
            }
        }
        for (id, venue, symbol) in &touched {
            if let Some(entry) = state.engine.entry_at(*id, venue, symbol) {
                changes.held.push((*id, entry));
            }
        }
        for (id, ts) in strategies {
            let (Some(cash), Some(equity)) = (state.engine.cash(id), state.engine.equity(id))
            else {
                continue;
            };
            let venue = touched
                .iter()
                .find(|t| t.0 == id)
                .map_or("", |t| t.1.as_str());
            changes
                .accounts
                .push((id, cash, equity, market_day(venue, ts)));
        }
        changes.progress = progress
            .series
            .iter()
            .map(|((v, s, i), ts)| (v.clone(), s.clone(), *i, *ts))
            .collect();
        changes
    }

    async fn write(&self, changes: &Changes) -> Result<()> {
        let txn = self.db().begin().await?;
        store::write(&txn, changes).await?;
        crash::point("paper.batch.mid-write");
        txn.commit().await?;
        crash::point("paper.batch.written");
        Ok(())
    }

    /// Publishes the stored opening and closing messages not yet confirmed.
    async fn publish_outbox(&self, state: &mut State) -> Result<()> {
        let rows = paper_position::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(
                                paper_position::Column::Status
                                    .is_in([status::OPEN, status::CLOSED]),
                            )
                            .add(paper_position::Column::OpenedPublished.eq(false)),
                    )
                    .add(
                        Condition::all()
                            .add(paper_position::Column::Status.eq(status::CLOSED))
                            .add(paper_position::Column::ClosedPublished.eq(false)),
                    ),
            )
            .order_by_asc(paper_position::Column::Id)
            .limit(1000)
            .all(self.db())
            .await?;
        let mut routes: HashMap<i64, Option<Route>> = HashMap::new();
        let mut confirms = Vec::new();
        let (mut opened, mut closed) = (Vec::new(), Vec::new());
        for row in &rows {
            let Some(owner) = state.owners.get(&row.strategy_id).cloned() else {
                // A strategy removed meanwhile: nobody to tell.
                opened.push(row.id);
                closed.push(row.id);
                continue;
            };
            let route = match routes.get(&owner.user_id) {
                Some(known) => known.clone(),
                None => {
                    let found = route(self.db(), owner.user_id).await?;
                    routes.insert(owner.user_id, found.clone());
                    found
                }
            };
            let send = |which: Which| -> Option<Notification> {
                let route = route.as_ref()?;
                let text = message(row, &owner.name, which, route)?;
                let key = format!(
                    "paper:{}:{}:{}",
                    row.strategy_id,
                    row.signal_id,
                    which.as_str()
                );
                Some(Notification {
                    id: deterministic_id(row.created_at, &[&key]),
                    channel: Channel::Telegram,
                    chat_id: route.chat_id,
                    text,
                    parse_mode: None,
                    dedupe_key: key,
                    kind: EventKind::Paper,
                    origin_ts: None,
                    buttons: Vec::new(),
                    chart: None,
                })
            };
            if !row.opened_published {
                if let Some(n) = send(Which::Open) {
                    confirms.push(self.shared.publisher.send(Exchange::Notify, &n).await?);
                }
                opened.push(row.id);
            }
            if row.status == status::CLOSED && !row.closed_published {
                if let Some(n) = send(Which::Close) {
                    confirms.push(self.shared.publisher.send(Exchange::Notify, &n).await?);
                }
                closed.push(row.id);
            }
        }
        for confirm in confirms {
            confirm.wait().await?;
        }
        for (ids, column) in [
            (opened, paper_position::Column::OpenedPublished),
            (closed, paper_position::Column::ClosedPublished),
        ] {
            if ids.is_empty() {
                continue;
            }
            paper_position::Entity::update_many()
                .col_expr(column, Expr::value(true))
                .filter(paper_position::Column::Id.is_in(ids))
                .exec(self.db())
                .await?;
        }
        state.outbox = rows.len() as u64 == 1000;
        Ok(())
    }

    /// Series this role went through that the signals role has since moved past.
    async fn behind(&self, state: &State) -> Result<Vec<(SeriesKey, i64)>> {
        if state.cursors.is_empty() {
            return Ok(Vec::new());
        }
        let rows = signal_progress::Entity::find().all(self.db()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let key = (
                    row.venue,
                    row.symbol,
                    row.interval.parse::<Interval>().ok()?,
                );
                let cursor = *state.cursors.get(&key)?;
                (row.last_open_ts > cursor && state.engine.interested(&key.0, &key.1))
                    .then_some((key, row.last_open_ts))
            })
            .collect())
    }

    async fn run_batch(
        &self,
        state: &mut State,
        triggers: &[(usize, Trigger, Option<Instant>)],
        outcomes: &mut Vec<Outcome>,
    ) -> Result<()> {
        // Every batch: a strategy created or resumed a moment ago must be in the engine
        // before the signals stored after its start are gone through (one small read).
        self.refresh(state).await?;
        // What the batch's messages point at.
        // Per series: the earliest and the latest candle the messages point at.
        let mut wanted: BTreeMap<SeriesKey, (i64, i64)> = BTreeMap::new();
        let mut direct: BTreeMap<SeriesKey, Vec<Candle>> = BTreeMap::new();
        for (_, trigger, _) in triggers {
            let (key, ts) = match trigger {
                Trigger::Candle(c) => {
                    let key = (c.venue.clone(), c.symbol.clone(), c.interval);
                    direct.entry(key.clone()).or_default().push(c.clone());
                    (key, c.open_ts)
                }
                Trigger::Signal(key, ts) => (key.clone(), *ts),
                Trigger::Nothing => continue,
            };
            if !state.engine.interested(&key.0, &key.1) {
                continue;
            }
            let at = wanted.entry(key).or_insert((ts, ts));
            *at = (at.0.min(ts), at.1.max(ts));
        }
        let series: BTreeSet<SeriesKey> = wanted.keys().cloned().collect();
        let progress_of = self.signals_progress(&series).await?;
        let mut progress = Progress::default();
        for (key, (earliest, _)) in &wanted {
            let cursor = state.cursors.get(key).copied();
            match progress_of.get(key) {
                Some(&until) => {
                    // A series not gone through yet starts at the first candle asked for.
                    let start = cursor.unwrap_or(earliest - 1);
                    self.catch_up(state, key, start, until, &mut progress)
                        .await?;
                }
                None => {
                    let mut candles = direct.remove(key).unwrap_or_default();
                    candles.sort_by_key(|c| c.open_ts);
                    for candle in candles {
                        if cursor.is_none_or(|c| candle.open_ts > c) {
                            self.step(state, &candle, None, &mut progress);
                        }
                    }
                }
            }
        }
        if state.swept_at.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            state.swept_at = Some(Instant::now());
            for (key, until) in self.behind(state).await? {
                let start = state.cursors.get(&key).copied().unwrap_or(until);
                self.catch_up(state, &key, start, until, &mut progress)
                    .await?;
            }
        }
        let changes = self.changes(state, &progress);
        if !changes.is_empty() {
            self.write(&changes).await?;
        }
        let moved = progress
            .outputs
            .iter()
            .any(|o| matches!(o, PaperOutput::Opened { .. } | PaperOutput::Closed(_)));
        if moved {
            state.outbox = true;
        }
        // A candle the signals role has not finished waits for it a little.
        for (index, trigger, held_since) in triggers {
            let holding = state.no_holds_until.is_none_or(|t| Instant::now() >= t);
            if let Trigger::Candle(c) = trigger
                && holding
                && let Some(&until) =
                    progress_of.get(&(c.venue.clone(), c.symbol.clone(), c.interval))
                && until < c.open_ts
            {
                if held_since.is_none_or(|t| t.elapsed() < HOLD_AT_MOST) {
                    outcomes.truncate(*index);
                    outcomes.push(Ok(Handled::Hold(HOLD_STEP)));
                    break;
                }
                tracing::warn!(venue = %c.venue, symbol = %c.symbol, interval = %c.interval, "the signals role has not finished this candle; the series catches up at its next message");
                state.no_holds_until = Some(Instant::now() + NO_HOLDS_AFTER_TIMEOUT);
            }
        }
        Ok(())
    }
}

impl BatchHandler for PaperHandler {
    async fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut triggers = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match trigger(message) {
                Ok(t) => {
                    triggers.push((index, t, message.held_since));
                    outcomes.push(Ok(Handled::Done));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        let mut state = self.shared.state.lock().await;
        let session = batch.first().map(|m| m.session);
        if state.unsettled || (session.is_some() && state.session != session) {
            state.loaded = false;
        }
        state.session = session;
        state.unsettled = true;
        let result = self.run_batch(&mut state, &triggers, &mut outcomes).await;
        // Reached only when the batch ran to its end (stored, or failed and told so).
        state.unsettled = false;
        if let Err(e) = result {
            // The engine may have moved past what is stored: read it all again.
            state.loaded = false;
            let error = HandlerError::classify(e.is_retryable(), &e);
            tracing::warn!(error = %e, "paper batch failed; strategies reload from the store");
            for outcome in &mut outcomes {
                if outcome.is_ok() {
                    *outcome = Err(error.clone());
                }
            }
            return outcomes;
        }
        if state.outbox
            && let Err(e) = self.publish_outbox(&mut state).await
        {
            // Stored: published at the next batch (or start).
            tracing::warn!(error = %e, "paper messages not published yet");
        }
        outcomes
    }
}

/// Where a user's messages go, and in what language and time zone.
#[derive(Debug, Clone)]
struct Route {
    chat_id: i64,
    lang_ko: bool,
    tz: display::Tz,
}

async fn route(db: &DatabaseConnection, user_id: i64) -> Result<Option<Route>> {
    let Some(row) = user::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    Ok(row
        .telegram_chat_id
        .filter(|_| row.active)
        .map(|chat_id| Route {
            chat_id,
            lang_ko: row.language == "ko",
            tz: display::user_time_zone(&row.language, row.time_zone.as_deref()),
        }))
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Open,
    Close,
}

impl Which {
    fn as_str(self) -> &'static str {
        match self {
            Which::Open => "open",
            Which::Close => "close",
        }
    }
}

/// The market day of a time: KRX in Seoul time, the rest in UTC.
fn market_day(venue: &str, ts: i64) -> String {
    let offset = tickwatch_schema::calendar::utc_offset_ms(venue);
    chrono::DateTime::from_timestamp_millis(ts + offset)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// How an exit reads in a message.
pub fn reason_label(reason: &str, ko: bool) -> &'static str {
    match (reason, ko) {
        ("stop_loss", true) => "손절",
        ("stop_loss", false) => "stop-loss",
        ("trailing_stop", true) => "트레일링 스탑",
        ("trailing_stop", false) => "trailing stop",
        ("take_profit", true) => "익절",
        ("take_profit", false) => "take-profit",
        ("max_bars", true) => "보유 기간 끝",
        ("max_bars", false) => "held its bars",
        ("opposite_signal", true) => "반대 신호",
        ("opposite_signal", false) => "opposite signal",
        ("next_open", true) => "다음 시가",
        ("next_open", false) => "next open",
        (_, true) => "청산",
        (_, false) => "exit",
    }
}

fn message(
    row: &paper_position::Model,
    strategy: &str,
    which: Which,
    route: &Route,
) -> Option<String> {
    let d = |t: &Option<String>| t.as_deref().and_then(|x| x.parse::<Decimal>().ok());
    let price = |p: Decimal| display::format_price(p, &row.venue, &row.symbol);
    let quantity = d(&row.quantity)?.normalize();
    let ko = route.lang_ko;
    let unit = if tickwatch_schema::calendar::is_krx(&row.venue) && ko {
        "주"
    } else {
        ""
    };
    Some(match which {
        Which::Open => {
            let at = display::format_time(row.entry_ts?, route.tz);
            if ko {
                format!(
                    "🧪 모의매수 · {strategy}\n{} {quantity}{unit} @ {}\n신호: {} · {at}",
                    row.symbol,
                    price(d(&row.entry_price)?),
                    row.signal_kind
                )
            } else {
                format!(
                    "🧪 Paper buy · {strategy}\n{} {quantity} @ {}\nSignal: {} · {at}",
                    row.symbol,
                    price(d(&row.entry_price)?),
                    row.signal_kind
                )
            }
        }
        Which::Close => {
            let at = display::format_time(row.exit_ts?, route.tz);
            let reason = reason_label(row.exit_reason.as_deref().unwrap_or(""), ko);
            let pnl = d(&row.pnl)?;
            let ret = d(&row.return_pct)?.round_dp(2);
            let signed = |x: Decimal| {
                if x > Decimal::ZERO {
                    format!("+{}", display::format_number(x.round_dp(2)))
                } else {
                    display::format_number(x.round_dp(2))
                }
            };
            if ko {
                format!(
                    "🧪 모의매도 · {strategy}\n{} {quantity}{unit} @ {} ({reason})\n손익 {} ({}%) · {at}",
                    row.symbol,
                    price(d(&row.exit_price)?),
                    signed(pnl),
                    signed(ret)
                )
            } else {
                format!(
                    "🧪 Paper sell · {strategy}\n{} {quantity} @ {} ({reason})\nP&L {} ({}%) · {at}",
                    row.symbol,
                    price(d(&row.exit_price)?),
                    signed(pnl),
                    signed(ret)
                )
            }
        }
    })
}

/// Runs the paper role until `shutdown`.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> Result<()> {
    let publisher = Publisher::start(broker, "paper");
    let handler = PaperHandler::new(db, publisher.clone());
    let options = ConsumeOptions {
        batch: broker.config().batch_size(),
        ..ConsumeOptions::default()
    };
    let result = consume_role(broker, WorkQueue::Paper, handler, shutdown, options).await;
    publisher.close().await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_days_are_the_venues() {
        // 2024-01-02 15:30 KST is 06:30 UTC the same day; 23:30 UTC is the next Seoul day.
        assert_eq!(market_day("krx", 1_704_177_000_000), "2024-01-02");
        assert_eq!(market_day("krx", 1_704_238_200_000), "2024-01-03");
        assert_eq!(market_day("binance", 1_704_238_200_000), "2024-01-02");
    }
}
