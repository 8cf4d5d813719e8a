//! The `recorder` role: consumes `tw.recorder.q` in batches and writes each batch in one
//! transaction — its closed candles, and the latest price of each symbol it saw (candle
//! closes, the newest per symbol; never back in time) — before the batch is acknowledged.
//! A redelivered batch writes the same rows again, which changes nothing. Ticks are not
//! routed here (the alerts role saves each symbol's tick price at its checkpoint); one that
//! comes anyway — left in the queue by an earlier version, or replayed from the DLQ — counts
//! as a price.

use std::collections::HashMap;

use rust_decimal::Decimal;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tickwatch_broker::{
    BatchHandler, Broker, ConsumeOptions, Handled, HandlerError, Incoming, Outcome, consume_role,
    crash,
};
use tickwatch_schema::names::WorkQueue;
use tickwatch_schema::wire::{Candle, MessageKind, Tick};
use tokio_util::sync::CancellationToken;

use crate::{Error, store};

/// Stores what a batch brings in one transaction.
#[derive(Debug, Clone)]
pub struct RecorderHandler {
    db: DatabaseConnection,
}

impl RecorderHandler {
    pub fn new(db: DatabaseConnection) -> Self {
        RecorderHandler { db }
    }
}

/// What one message adds to a batch's writes.
enum Record {
    Price {
        venue: String,
        symbol: String,
        price: Decimal,
        ts: i64,
    },
    Candle(Candle),
    Nothing,
}

fn record(message: &Incoming) -> Result<Record, HandlerError> {
    match message.message_kind() {
        Some(MessageKind::Tick) => {
            let tick: Tick = message.decode()?;
            Ok(Record::Price {
                venue: tick.venue,
                symbol: tick.symbol,
                price: tick.price,
                ts: tick.ts,
            })
        }
        Some(MessageKind::Candle) => {
            let candle: Candle = message.decode()?;
            Ok(if candle.closed {
                Record::Candle(candle)
            } else {
                Record::Nothing
            })
        }
        other => Err(HandlerError::Invalid(format!(
            "the recorder takes ticks and candles, not {}",
            other.map_or("an untyped message".to_string(), |k| k.to_string())
        ))),
    }
}

impl BatchHandler for RecorderHandler {
    async fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut candles = Vec::new();
        let mut latest: HashMap<(String, String), (Decimal, i64)> = HashMap::new();
        let mut newest = |venue: String, symbol: String, price: Decimal, ts: i64| {
            let entry = latest.entry((venue, symbol)).or_insert((price, ts));
            if ts >= entry.1 {
                *entry = (price, ts);
            }
        };
        for message in batch {
            match record(message) {
                Ok(Record::Price {
                    venue,
                    symbol,
                    price,
                    ts,
                }) => newest(venue, symbol, price, ts),
                Ok(Record::Candle(candle)) => {
                    let close_ts = candle.open_ts + candle.interval.as_ms();
                    newest(
                        candle.venue.clone(),
                        candle.symbol.clone(),
                        candle.close,
                        close_ts,
                    );
                    candles.push(candle);
                }
                Ok(Record::Nothing) => {}
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            }
            outcomes.push(Ok(Handled::Done));
        }
        let prices: Vec<_> = latest
            .into_iter()
            .map(|((venue, symbol), (price, ts))| (venue, symbol, price, ts))
            .collect();
        if let Err(e) = write(&self.db, &candles, &prices).await {
            let error = HandlerError::classify(e.is_retryable(), e);
            // The batch fails as one, but a poison message stays poison.
            for outcome in &mut outcomes {
                if outcome.is_ok() {
                    *outcome = Err(error.clone());
                }
            }
        }
        outcomes
    }
}

async fn write(
    db: &DatabaseConnection,
    candles: &[Candle],
    prices: &[(String, String, Decimal, i64)],
) -> Result<(), Error> {
    if candles.is_empty() && prices.is_empty() {
        return Ok(());
    }
    let txn = db.begin().await?;
    store::upsert_candles(&txn, candles).await?;
    crash::point("recorder.batch.mid-write");
    store::upsert_latest_prices(&txn, prices).await?;
    txn.commit().await?;
    crash::point("recorder.batch.written");
    Ok(())
}

/// Runs the recorder until `shutdown`.
pub async fn run(
    broker: &Broker,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let options = ConsumeOptions {
        batch: broker.config().batch_size(),
        ..ConsumeOptions::default()
    };
    consume_role(
        broker,
        WorkQueue::Recorder,
        RecorderHandler::new(db),
        shutdown,
        options,
    )
    .await?;
    Ok(())
}
