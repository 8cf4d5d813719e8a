//! The `signals` role on the broker: candles from `tw.signals.q`, in batches, through the
//! [`SignalEngine`]; each batch's results stored in one transaction (its signals, the
//! outcomes of earlier signals, the candles themselves and each series' progress), then
//! the signals published to `tw.signals` with pipelined confirms, then the batch
//! acknowledged.
//!
//! A restart warms the engine up from the stored candles of each series up to its stored
//! progress — exactly the candles it had processed — so the first live signal equals the
//! one a never-stopped engine would give. A candle redelivered after a crash that the
//! engine is already past (its batch was stored, the acknowledgement lost) has its stored
//! signals published again; storing again changes nothing. A batch that fails after the
//! engine processed it is held in place with its outputs kept, so the same outputs are
//! stored and published when it runs again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::sea_query::{CaseStatement, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use tickwatch_broker::{
    BatchHandler, Broker, ConsumeOptions, Handled, HandlerError, Incoming, Outcome, Publisher,
    consume_role, crash,
};
use tickwatch_schema::db::entity::{signal, signal_progress};
use tickwatch_schema::db::{ROWS_PER_STATEMENT, now_ms};
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::{
    Candle, Grade, HistoryLoaded, Interval, MessageKind, Signal, SignalKind,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events::{SignalEmitted, SignalsStarted};
use crate::{Error, Output, SignalEngine, SignalsConfig};

/// The kinds a forming daily candle is scanned for before the close: the closing-price
/// (종가) setup, which is bought at the close and so must arrive before it.
const PREVIEW_KINDS: [SignalKind; 1] = [SignalKind::ClosingPriceSetup];
/// How long a batch that failed after the engine processed it waits before running again.
const RETRY_IN_PLACE: Duration = Duration::from_secs(2);

/// Handles candles with a shared engine (shards of the role share one engine per process).
#[derive(Clone)]
pub struct SignalsHandler {
    engine: Arc<Mutex<SignalEngine>>,
    db: DatabaseConnection,
    publisher: Publisher,
    /// A batch's own time limit for storing and publishing, under the consumer's handler
    /// timeout (past that the runtime would use the retry tiers).
    work_timeout: Duration,
    /// Outputs of deliveries held in place, by message (with their series): the engine is
    /// past them, so running them again must reuse what it gave.
    held: Arc<Mutex<HashMap<String, HeldOutputs>>>,
    /// The consumer session in which each series was last checked against the database
    /// (see [`SignalsHandler::check_series`]).
    checked: Arc<Mutex<HashMap<SeriesKey, u64>>>,
}

/// A series: venue, symbol, interval.
type SeriesKey = (String, String, Interval);

/// What the engine gave for a delivery held in place, and its series.
type HeldOutputs = (SeriesKey, Vec<Output>);

fn series_of(candle: &Candle) -> SeriesKey {
    (candle.venue.clone(), candle.symbol.clone(), candle.interval)
}

impl std::fmt::Debug for SignalsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalsHandler").finish_non_exhaustive()
    }
}

fn db_error(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(format!("database: {e}"))
}

fn signal_row(s: &Signal) -> signal::ActiveModel {
    signal::ActiveModel {
        id: Set(s.id.to_string()),
        kind: Set(s.kind.as_str().to_string()),
        venue: Set(s.venue.clone()),
        symbol: Set(s.symbol.clone()),
        interval: Set(s.interval.as_str().to_string()),
        ts: Set(s.ts),
        price: Set(s.price.to_string()),
        score: Set(i32::from(s.score)),
        grade: Set(s.grade.as_str().to_string()),
        details: Set(serde_json::Value::Object(s.details.clone()).to_string()),
        ret_1: Set(None),
        ret_5: Set(None),
        ret_20: Set(None),
        created_at: Set(now_ms()),
    }
}

/// A stored signal as the wire message it was.
pub fn signal_from_row(row: &signal::Model) -> Option<Signal> {
    Some(Signal {
        id: row.id.parse().ok()?,
        kind: row.kind.parse().ok()?,
        venue: row.venue.clone(),
        symbol: row.symbol.clone(),
        interval: row.interval.parse().ok()?,
        ts: row.ts,
        price: row.price.parse().ok()?,
        score: u8::try_from(row.score).ok()?,
        grade: row.grade.parse::<Grade>().ok()?,
        details: serde_json::from_str(&row.details).ok()?,
    })
}

/// One candle of a batch and what became of it.
struct Work {
    index: usize,
    key: String,
    candle: Candle,
    outputs: Vec<Output>,
    /// The engine was already past it: publish what was stored for it.
    past: bool,
    span: tracing::Span,
}

impl SignalsHandler {
    pub fn new(engine: SignalEngine, db: DatabaseConnection, publisher: Publisher) -> Self {
        SignalsHandler {
            engine: Arc::new(Mutex::new(engine)),
            db,
            publisher,
            work_timeout: Duration::from_secs(30),
            held: Arc::default(),
            checked: Arc::default(),
        }
    }

    /// On a series' first candle in a consumer session, checks the engine against the
    /// stored progress: when they differ, another instance carried the series on (a shard
    /// handed over, a standby made active) or this one's last batch did not finish, and the
    /// series is warmed up again from the stored candles up to the stored progress — the
    /// state a never-stopped single engine would have.
    async fn check_series(&self, batch: &[(SeriesKey, u64)]) -> Result<(), HandlerError> {
        let unchecked: Vec<&(SeriesKey, u64)> = {
            let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            batch
                .iter()
                .filter(|(key, session)| checked.get(key) != Some(session))
                .collect()
        };
        if unchecked.is_empty() {
            return Ok(());
        }
        let symbols: std::collections::BTreeSet<&str> =
            unchecked.iter().map(|((_, s, _), _)| s.as_str()).collect();
        let stored: HashMap<SeriesKey, i64> = signal_progress::Entity::find()
            .filter(signal_progress::Column::Symbol.is_in(symbols))
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .filter_map(|row| {
                let interval = row.interval.parse().ok()?;
                Some(((row.venue, row.symbol, interval), row.last_open_ts))
            })
            .collect();
        for (key, session) in unchecked {
            let (venue, symbol, interval) = key;
            let progress = stored.get(key).copied();
            let (held_by_engine, limit) = {
                let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                (
                    engine.last_open_ts(venue, symbol, *interval),
                    engine.warmup_bars_for(*interval) as u64,
                )
            };
            if held_by_engine != progress {
                let candles = match progress {
                    Some(ts) => tickwatch_recorder::store::recent_candles(
                        &self.db,
                        venue,
                        symbol,
                        *interval,
                        Some(ts),
                        limit,
                    )
                    .await
                    .map_err(db_error)?,
                    None => Vec::new(),
                };
                let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                engine.forget_series(venue, symbol, *interval);
                for candle in &candles {
                    engine.process(candle);
                }
                self.held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|_, (series, _)| series != key);
                tracing::info!(%venue, %symbol, %interval, engine = ?held_by_engine, stored = ?progress, candles = candles.len(), "series carried on elsewhere: warmed up again from the stored candles");
            }
            self.checked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), *session);
        }
        Ok(())
    }

    /// A history load stored candles of a series: its stored progress moves up to the
    /// load's last candle when that is newer, and the series is checked again at its next
    /// candle — the engine no longer holds it, so [`SignalsHandler::check_series`] warms it
    /// up from the store, history included. A repeated notice does the same again.
    async fn apply_history(&self, notice: &HistoryLoaded) -> Result<(), HandlerError> {
        let interval = notice.interval.as_str();
        let stored = signal_progress::Entity::find_by_id((
            notice.venue.clone(),
            notice.symbol.clone(),
            interval.to_string(),
        ))
        .one(&self.db)
        .await
        .map_err(db_error)?;
        if stored
            .as_ref()
            .is_none_or(|row| row.last_open_ts < notice.last_open_ts)
        {
            signal_progress::Entity::insert(signal_progress::ActiveModel {
                venue: Set(notice.venue.clone()),
                symbol: Set(notice.symbol.clone()),
                interval: Set(interval.to_string()),
                last_open_ts: Set(notice.last_open_ts),
                updated_at: Set(now_ms()),
            })
            .on_conflict(progress_upsert())
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        }
        let key: SeriesKey = (notice.venue.clone(), notice.symbol.clone(), notice.interval);
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_series(&notice.venue, &notice.symbol, notice.interval);
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (series, _)| *series != key);
        tracing::info!(venue = %notice.venue, symbol = %notice.symbol, interval = %notice.interval, candles = notice.candles, "history loaded: the series warms up again from the store at its next candle");
        Ok(())
    }

    /// Stores a batch's results in one transaction.
    async fn store(&self, work: &[Work]) -> Result<(), HandlerError> {
        let fresh: Vec<&Work> = work.iter().filter(|w| !w.past).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let candles: Vec<Candle> = fresh.iter().map(|w| w.candle.clone()).collect();
        tickwatch_recorder::store::upsert_candles(&txn, &candles)
            .await
            .map_err(db_error)?;
        crash::point("signals.batch.mid-write");
        let signals: Vec<signal::ActiveModel> = fresh
            .iter()
            .flat_map(|w| w.outputs.iter().filter_map(Output::as_signal))
            .map(signal_row)
            .collect();
        for chunk in signals.chunks(ROWS_PER_STATEMENT) {
            signal::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::column(signal::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        // The outcomes of earlier signals: per horizon column, one statement sets a chunk of
        // signals (`CASE id WHEN … THEN …`), not one per signal.
        let mut by_column = [
            (signal::Column::Ret1, Vec::new()),
            (signal::Column::Ret5, Vec::new()),
            (signal::Column::Ret20, Vec::new()),
        ];
        for output in fresh.iter().flat_map(|w| &w.outputs) {
            if let Output::Outcome {
                signal_id,
                horizon_bars,
                ret,
                ..
            } = output
            {
                let column = match horizon_bars {
                    1 => 0,
                    5 => 1,
                    _ => 2,
                };
                by_column[column].1.push((signal_id.to_string(), *ret));
            }
        }
        for (column, outcomes) in &by_column {
            for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
                let mut case = CaseStatement::new();
                for (id, ret) in chunk {
                    case = case.case(signal::Column::Id.eq(id.as_str()), Expr::value(*ret));
                }
                signal::Entity::update_many()
                    .col_expr(*column, case.finally(Expr::col(*column)).into())
                    .filter(signal::Column::Id.is_in(chunk.iter().map(|(id, _)| id.as_str())))
                    .exec(&txn)
                    .await
                    .map_err(db_error)?;
            }
        }
        // Each series' progress: the newest candle of the batch.
        let mut progress: HashMap<(&str, &str, &str), i64> = HashMap::new();
        for c in &candles {
            let at = progress
                .entry((&c.venue, &c.symbol, c.interval.as_str()))
                .or_insert(c.open_ts);
            *at = (*at).max(c.open_ts);
        }
        let rows: Vec<signal_progress::ActiveModel> = progress
            .into_iter()
            .map(
                |((venue, symbol, interval), ts)| signal_progress::ActiveModel {
                    venue: Set(venue.to_string()),
                    symbol: Set(symbol.to_string()),
                    interval: Set(interval.to_string()),
                    last_open_ts: Set(ts),
                    updated_at: Set(now_ms()),
                },
            )
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            signal_progress::Entity::insert_many(chunk.to_vec())
                .on_conflict(progress_upsert())
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)
    }

    /// The signals stored for a candle the engine is past.
    async fn stored_signals(&self, candle: &Candle) -> Result<Vec<Signal>, HandlerError> {
        let rows = signal::Entity::find()
            .filter(signal::Column::Venue.eq(candle.venue.as_str()))
            .filter(signal::Column::Symbol.eq(candle.symbol.as_str()))
            .filter(signal::Column::Interval.eq(candle.interval.as_str()))
            .filter(signal::Column::Ts.eq(candle.open_ts + candle.interval.as_ms()))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.iter().filter_map(signal_from_row).collect())
    }

    /// Publishes the signals of forming candles: not stored (the closed candle's are, with
    /// their outcomes), only handed on; a redelivery publishes the same ids again, which
    /// the notifier sends once.
    async fn publish_previews(
        &self,
        previews: &[(usize, Vec<Signal>, tracing::Span)],
    ) -> Result<(), HandlerError> {
        let mut confirms = Vec::new();
        for (_, signals, span) in previews {
            for signal in signals {
                span.in_scope(|| SignalEmitted(signal).emit());
                confirms.push(
                    self.publisher
                        .send(Exchange::Signals, signal)
                        .instrument(span.clone())
                        .await?,
                );
            }
        }
        for confirm in confirms {
            confirm.wait().await?;
        }
        Ok(())
    }

    async fn store_and_publish(&self, work: &[Work]) -> Result<(), HandlerError> {
        self.store(work).await?;
        crash::point("signals.batch.written");
        let mut confirms = Vec::new();
        for w in work {
            let signals: Vec<Signal> = if w.past {
                self.stored_signals(&w.candle).await?
            } else {
                w.outputs
                    .iter()
                    .filter_map(Output::as_signal)
                    .cloned()
                    .collect()
            };
            for signal in &signals {
                w.span.in_scope(|| SignalEmitted(signal).emit());
                confirms.push(
                    self.publisher
                        .send(Exchange::Signals, signal)
                        .instrument(w.span.clone())
                        .await?,
                );
            }
        }
        for confirm in confirms {
            confirm.wait().await?;
        }
        Ok(())
    }
}

impl BatchHandler for SignalsHandler {
    async fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Outcome> {
        // A history notice is handled in queue order: the candles before it first (this
        // round, up to the notice), then the notices at the front of the line (the next
        // round); the deliveries not got to go back to the front of the line.
        let is_notice = |message: &Incoming| message.message_kind() == Some(MessageKind::History);
        let batch = match batch.iter().position(is_notice) {
            Some(0) => {
                let mut outcomes = Vec::new();
                for message in batch.iter().take_while(|m| is_notice(m)) {
                    let outcome = match message.decode::<HistoryLoaded>() {
                        Ok(notice) => match self.apply_history(&notice).await {
                            Ok(()) => Ok(Handled::Done),
                            Err(e) => {
                                outcomes.push(e.hold_in_place(RETRY_IN_PLACE));
                                return outcomes;
                            }
                        },
                        Err(e) => Err(e),
                    };
                    outcomes.push(outcome);
                }
                return outcomes;
            }
            Some(first) => &batch[..first],
            None => batch,
        };
        let decoded: Vec<Result<Candle, HandlerError>> =
            batch.iter().map(|message| message.decode()).collect();
        let series: Vec<(SeriesKey, u64)> = decoded
            .iter()
            .zip(batch)
            .filter_map(|(candle, message)| {
                let candle = candle.as_ref().ok().filter(|c| c.closed)?;
                Some((series_of(candle), message.session))
            })
            .collect();
        if let Err(e) = self.check_series(&series).await {
            // Held, not retried through the tiers: the candles must stay in order.
            return vec![e.hold_in_place(RETRY_IN_PLACE)];
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut work = Vec::new();
        let mut previews: Vec<(usize, Vec<Signal>, tracing::Span)> = Vec::new();
        {
            let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            for (index, (message, candle)) in batch.iter().zip(decoded).enumerate() {
                let candle = match candle {
                    Ok(candle) => candle,
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                };
                outcomes.push(Ok(Handled::Done));
                if !candle.closed {
                    // A producer's pre-close scan (KIS at 15:20 KST): the day as it stands.
                    if candle.interval == Interval::D1 {
                        let signals = engine.preview(&candle, &PREVIEW_KINDS);
                        if !signals.is_empty() {
                            previews.push((index, signals, message.span.clone()));
                        }
                    }
                    continue;
                }
                let key = message.identity();
                let (outputs, past) = match held.remove(&key) {
                    Some((_, outputs)) => (outputs, false),
                    None => {
                        let past = engine.is_past(&candle);
                        let outputs = message.span.in_scope(|| engine.process(&candle));
                        (outputs, past)
                    }
                };
                work.push(Work {
                    index,
                    key,
                    candle,
                    outputs,
                    past,
                    span: message.span.clone(),
                });
            }
        }
        if let Err(e) = self.publish_previews(&previews).await {
            for (index, _, _) in &previews {
                outcomes[*index] = Err(e.clone());
            }
        }
        if work.is_empty() {
            return outcomes;
        }
        // The engine has moved past these candles: a failure (a hang included, cut off
        // before the runtime's own handler timeout) holds them in place with their outputs.
        let timeout = self.work_timeout;
        let failed = match tokio::time::timeout(timeout, self.store_and_publish(&work)).await {
            Ok(Ok(())) => return outcomes,
            Ok(Err(e)) => e,
            Err(_) => HandlerError::Transient(format!(
                "storing and publishing the signals took over {timeout:?}"
            )),
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for w in work {
            outcomes[w.index] = failed.clone().hold_in_place(RETRY_IN_PLACE);
            if !w.past {
                held.insert(w.key, (series_of(&w.candle), w.outputs));
            }
        }
        outcomes
    }
}

/// A series' progress row replaces the stored one.
fn progress_upsert() -> OnConflict {
    OnConflict::columns([
        signal_progress::Column::Venue,
        signal_progress::Column::Symbol,
        signal_progress::Column::Interval,
    ])
    .update_columns([
        signal_progress::Column::LastOpenTs,
        signal_progress::Column::UpdatedAt,
    ])
    .to_owned()
}

/// Replays each series' stored candles, up to its progress, through a fresh engine.
pub async fn warm_up(engine: &mut SignalEngine, db: &DatabaseConnection) -> Result<usize, Error> {
    let series = signal_progress::Entity::find().all(db).await?;
    let mut replayed = 0;
    for row in series {
        let Ok(interval) = row.interval.parse() else {
            continue;
        };
        let limit = engine.warmup_bars_for(interval) as u64;
        let candles = tickwatch_recorder::store::recent_candles(
            db,
            &row.venue,
            &row.symbol,
            interval,
            Some(row.last_open_ts),
            limit,
        )
        .await?;
        for candle in &candles {
            engine.process(candle);
        }
        replayed += candles.len();
    }
    Ok(replayed)
}

/// Runs the signals role until `shutdown`.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    config: &SignalsConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    SignalsStarted.emit();
    let mut engine = SignalEngine::new(config.clone())?;
    let replayed = warm_up(&mut engine, &db).await?;
    tracing::info!(
        series = engine.series_count(),
        candles = replayed,
        "signals engine warmed up from stored candles"
    );
    let publisher = Publisher::start(broker, "signals");
    let mut handler = SignalsHandler::new(engine, db, publisher.clone());
    handler.work_timeout = Duration::from_millis(broker.config().handler_timeout_ms / 2);
    let options = ConsumeOptions {
        batch: broker.config().batch_size(),
        ..ConsumeOptions::default()
    };
    let result = consume_role(broker, WorkQueue::Signals, handler, shutdown, options).await;
    publisher.close().await;
    Ok(result?)
}
