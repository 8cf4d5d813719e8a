//! The `recorder` role: consumes `tw.recorder.q` and writes what it reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::DatabaseConnection;
use tickwatch_broker::{Broker, Handled, Handler, HandlerError, Incoming, Outcome, consume_role};
use tickwatch_schema::names::WorkQueue;
use tickwatch_schema::wire::{Candle, MessageKind, Tick};
use tokio_util::sync::CancellationToken;

use crate::{Error, RecorderConfig, store};

type Latest = Arc<Mutex<HashMap<(String, String), (Decimal, i64)>>>;

/// Stores closed candles at once and remembers tick prices for the next flush.
#[derive(Debug, Clone)]
pub struct RecorderHandler {
    db: DatabaseConnection,
    latest: Latest,
}

impl RecorderHandler {
    pub fn new(db: DatabaseConnection) -> Self {
        RecorderHandler {
            db,
            latest: Latest::default(),
        }
    }

    fn remember(&self, venue: &str, symbol: &str, price: Decimal, ts: i64) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let entry = latest
            .entry((venue.to_string(), symbol.to_string()))
            .or_insert((price, ts));
        if ts >= entry.1 {
            *entry = (price, ts);
        }
    }

    /// Writes the remembered prices; kept for the next flush if the database fails.
    pub async fn flush(&self) -> Result<usize, Error> {
        let batch: Vec<_> = {
            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            latest
                .drain()
                .map(|((v, s), (p, t))| (v, s, p, t))
                .collect()
        };
        if let Err(e) = store::upsert_latest_prices(&self.db, &batch).await {
            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            for (v, s, p, t) in batch {
                latest.entry((v, s)).or_insert((p, t));
            }
            return Err(e);
        }
        Ok(batch.len())
    }

    async fn record_candle(&self, candle: &Candle) -> Result<(), HandlerError> {
        if !candle.closed {
            return Ok(());
        }
        store::upsert_candles(&self.db, std::slice::from_ref(candle))
            .await
            .map_err(|e| HandlerError::classify(e.is_retryable(), e))?;
        let close_ts = candle.open_ts + candle.interval.as_ms();
        self.remember(&candle.venue, &candle.symbol, candle.close, close_ts);
        Ok(())
    }
}

impl Handler for RecorderHandler {
    async fn handle(&mut self, message: &Incoming) -> Outcome {
        match message.message_kind() {
            Some(MessageKind::Tick) => {
                let tick: Tick = message.decode()?;
                self.remember(&tick.venue, &tick.symbol, tick.price, tick.ts);
                Ok(Handled::Done)
            }
            Some(MessageKind::Candle) => {
                let candle: Candle = message.decode()?;
                self.record_candle(&candle).await?;
                Ok(Handled::Done)
            }
            other => Err(HandlerError::Invalid(format!(
                "the recorder takes ticks and candles, not {}",
                other.map_or("an untyped message".to_string(), |k| k.to_string())
            ))),
        }
    }
}

/// Runs the recorder until `shutdown`, then writes the last prices.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    config: &RecorderConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let handler = RecorderHandler::new(db);
    let flusher = {
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        let every = Duration::from_millis(config.latest_flush_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = handler.flush().await {
                            tracing::warn!(error = %e, "could not write latest prices; will retry");
                        }
                    }
                }
            }
        })
    };
    let result = consume_role(
        broker,
        WorkQueue::Recorder,
        handler.clone(),
        shutdown,
        Default::default(),
    )
    .await;
    // The flusher stops with `shutdown`; make sure it does when the consumers end first.
    flusher.abort();
    let _ = flusher.await;
    handler.flush().await?;
    Ok(result?)
}
