//! The `signals` role on the broker: candles from `tw.signals.q` through the
//! [`SignalEngine`], each candle's results stored in one transaction (its signals, the
//! outcomes of earlier signals, the candle itself and the series' progress), then the
//! signals published to `tw.signals` with confirms, then the candle acknowledged.
//!
//! A restart warms the engine up from the stored candles of each series up to its stored
//! progress — exactly the candles it had processed — so the first live signal equals the
//! one a never-stopped engine would give. A candle redelivered after a crash is the series'
//! last one: the engine returns the same outputs (same ids) again and they are published
//! again; storing them again changes nothing.

use std::sync::{Arc, Mutex};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use tickwatch_broker::{
    Broker, Handled, Handler, HandlerError, Incoming, Outcome, Publisher, consume_role,
};
use tickwatch_schema::db::entity::{signal, signal_progress};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::{Candle, Signal};
use tokio_util::sync::CancellationToken;

use crate::{Error, Output, SignalEngine, SignalsConfig};

/// Handles candles with a shared engine (shards of the role share one engine per process).
#[derive(Clone)]
pub struct SignalsHandler {
    engine: Arc<Mutex<SignalEngine>>,
    db: DatabaseConnection,
    publisher: Publisher,
    /// A candle's own time limit for storing and publishing, under the consumer's
    /// handler timeout (past that the runtime would use the retry tiers).
    work_timeout: std::time::Duration,
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

impl SignalsHandler {
    pub fn new(engine: SignalEngine, db: DatabaseConnection, publisher: Publisher) -> Self {
        SignalsHandler {
            engine: Arc::new(Mutex::new(engine)),
            db,
            publisher,
            work_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// Stores a candle's results in one transaction.
    async fn store(&self, candle: &Candle, outputs: &[Output]) -> Result<(), HandlerError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        tickwatch_recorder::store::upsert_candles(&txn, std::slice::from_ref(candle))
            .await
            .map_err(db_error)?;
        let signals: Vec<signal::ActiveModel> = outputs
            .iter()
            .filter_map(Output::as_signal)
            .map(signal_row)
            .collect();
        if !signals.is_empty() {
            signal::Entity::insert_many(signals)
                .on_conflict(
                    OnConflict::column(signal::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        for output in outputs {
            if let Output::Outcome {
                signal_id,
                horizon_bars,
                ret,
                ..
            } = output
            {
                let column = match horizon_bars {
                    1 => signal::Column::Ret1,
                    5 => signal::Column::Ret5,
                    _ => signal::Column::Ret20,
                };
                signal::Entity::update_many()
                    .col_expr(column, Expr::value(*ret))
                    .filter(signal::Column::Id.eq(signal_id.to_string()))
                    .exec(&txn)
                    .await
                    .map_err(db_error)?;
            }
        }
        let progress = signal_progress::ActiveModel {
            venue: Set(candle.venue.clone()),
            symbol: Set(candle.symbol.clone()),
            interval: Set(candle.interval.as_str().to_string()),
            last_open_ts: Set(candle.open_ts),
            updated_at: Set(now_ms()),
        };
        signal_progress::Entity::insert(progress)
            .on_conflict(
                OnConflict::columns([
                    signal_progress::Column::Venue,
                    signal_progress::Column::Symbol,
                    signal_progress::Column::Interval,
                ])
                .update_columns([
                    signal_progress::Column::LastOpenTs,
                    signal_progress::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }
}

impl Handler for SignalsHandler {
    async fn handle(&mut self, message: &Incoming) -> Outcome {
        let candle: Candle = message.decode()?;
        if !candle.closed {
            return Ok(Handled::Done);
        }
        let outputs = {
            let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            engine.process(&candle)
        };
        // The engine has moved past this candle: a failure retries it in place, where the
        // engine answers it again with the same outputs.
        let timeout = self.work_timeout;
        match tokio::time::timeout(timeout, self.store_and_publish(&outputs, &candle)).await {
            Ok(Ok(())) => Ok(Handled::Done),
            Ok(Err(e)) => e.hold_in_place(RETRY_IN_PLACE),
            Err(_) => HandlerError::Transient(format!(
                "storing and publishing the signals took over {timeout:?}"
            ))
            .hold_in_place(RETRY_IN_PLACE),
        }
    }
}

/// How long a candle that failed after the engine processed it waits before retrying.
const RETRY_IN_PLACE: std::time::Duration = std::time::Duration::from_secs(2);

impl SignalsHandler {
    async fn store_and_publish(
        &self,
        outputs: &[Output],
        candle: &Candle,
    ) -> Result<(), HandlerError> {
        self.store(candle, outputs).await?;
        let mut confirms = Vec::new();
        for signal in outputs.iter().filter_map(Output::as_signal) {
            tracing::info!(
                kind = signal.kind.as_str(),
                symbol = %signal.symbol,
                interval = %signal.interval,
                price = %signal.price,
                score = signal.score,
                grade = signal.grade.as_str(),
                "signal"
            );
            metrics::counter!("tw_signals_emitted_total", "kind" => signal.kind.as_str())
                .increment(1);
            confirms.push(self.publisher.send(Exchange::Signals, signal).await?);
        }
        for confirm in confirms {
            confirm.wait().await?;
        }
        Ok(())
    }
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
    let mut engine = SignalEngine::new(config.clone())?;
    let replayed = warm_up(&mut engine, &db).await?;
    tracing::info!(
        series = engine.series_count(),
        candles = replayed,
        "signals engine warmed up from stored candles"
    );
    let publisher = Publisher::start(broker, "signals");
    let mut handler = SignalsHandler::new(engine, db, publisher.clone());
    handler.work_timeout = std::time::Duration::from_millis(broker.config().handler_timeout_ms / 2);
    let result = consume_role(
        broker,
        WorkQueue::Signals,
        handler,
        shutdown,
        Default::default(),
    )
    .await;
    publisher.close().await;
    Ok(result?)
}
