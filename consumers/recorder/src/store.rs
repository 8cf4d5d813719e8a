//! Candles and latest prices in the database.

use std::str::FromStr;

use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use tickwatch_schema::db::ROWS_PER_STATEMENT;
use tickwatch_schema::db::entity::{candle, latest_price};
use tickwatch_schema::wire::{Candle, Interval};

use crate::Error;

fn candle_row(c: &Candle) -> candle::ActiveModel {
    candle::ActiveModel {
        venue: Set(c.venue.clone()),
        symbol: Set(c.symbol.clone()),
        interval: Set(c.interval.as_str().to_string()),
        open_ts: Set(c.open_ts),
        open: Set(c.open.to_string()),
        high: Set(c.high.to_string()),
        low: Set(c.low.to_string()),
        close: Set(c.close.to_string()),
        volume: Set(c.volume.to_string()),
        trades: Set(c.trades.map(|t| t as i64)),
        ..Default::default()
    }
}

/// Stores closed candles; one already stored (same venue, symbol, interval, open time) is
/// overwritten with the new values, so storing twice is harmless.
pub async fn upsert_candles(db: &impl ConnectionTrait, candles: &[Candle]) -> Result<u64, Error> {
    if candles.is_empty() {
        return Ok(0);
    }
    let on_conflict = OnConflict::columns([
        candle::Column::Venue,
        candle::Column::Symbol,
        candle::Column::Interval,
        candle::Column::OpenTs,
    ])
    .update_columns([
        candle::Column::Open,
        candle::Column::High,
        candle::Column::Low,
        candle::Column::Close,
        candle::Column::Volume,
        candle::Column::Trades,
    ])
    .to_owned();
    let mut written = 0;
    for chunk in candles.chunks(ROWS_PER_STATEMENT) {
        written += candle::Entity::insert_many(chunk.iter().map(candle_row))
            .on_conflict(on_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(written)
}

/// Sets the latest price of each symbol. The rows are written in (venue, symbol) order:
/// the recorder and the alerts role's checkpoint both write these rows in a transaction,
/// and the same order for every writer keeps them from deadlocking.
pub async fn upsert_latest_prices(
    db: &impl ConnectionTrait,
    prices: &[(String, String, Decimal, i64)],
) -> Result<(), Error> {
    if prices.is_empty() {
        return Ok(());
    }
    let mut prices = prices.to_vec();
    prices.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let row =
        |(venue, symbol, price, ts): &(String, String, Decimal, i64)| latest_price::ActiveModel {
            venue: Set(venue.clone()),
            symbol: Set(symbol.clone()),
            price: Set(price.to_string()),
            ts: Set(*ts),
        };
    // Never back in time: a redelivered or late batch must not replace a newer price.
    let on_conflict =
        OnConflict::columns([latest_price::Column::Venue, latest_price::Column::Symbol])
            .update_columns([latest_price::Column::Price, latest_price::Column::Ts])
            .action_and_where(
                Expr::col((latest_price::Entity, latest_price::Column::Ts))
                    .lte(Expr::cust("excluded.ts")),
            )
            .to_owned();
    for chunk in prices.chunks(ROWS_PER_STATEMENT) {
        latest_price::Entity::insert_many(chunk.iter().map(row))
            .on_conflict(on_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// A stored row as a wire candle (closed).
pub fn candle_from_row(row: &candle::Model) -> Result<Candle, Error> {
    let dec = |field: &'static str, text: &str| {
        Decimal::from_str(text).map_err(|e| {
            Error::Schema(tickwatch_schema::Error::Invalid {
                field,
                reason: format!("stored value `{text}`: {e}"),
            })
        })
    };
    Ok(Candle {
        venue: row.venue.clone(),
        symbol: row.symbol.clone(),
        interval: row.interval.parse()?,
        open_ts: row.open_ts,
        open: dec("open", &row.open)?,
        high: dec("high", &row.high)?,
        low: dec("low", &row.low)?,
        close: dec("close", &row.close)?,
        volume: dec("volume", &row.volume)?,
        trades: row.trades.and_then(|t| u64::try_from(t).ok()),
        closed: true,
    })
}

/// The last `limit` stored candles of a series opening at or before `until` (all when
/// `None`), oldest first: the signals warm-up.
pub async fn recent_candles(
    db: &impl ConnectionTrait,
    venue: &str,
    symbol: &str,
    interval: Interval,
    until: Option<i64>,
    limit: u64,
) -> Result<Vec<Candle>, Error> {
    let mut query = candle::Entity::find()
        .filter(candle::Column::Venue.eq(venue))
        .filter(candle::Column::Symbol.eq(symbol))
        .filter(candle::Column::Interval.eq(interval.as_str()));
    if let Some(until) = until {
        query = query.filter(candle::Column::OpenTs.lte(until));
    }
    let rows = query
        .order_by_desc(candle::Column::OpenTs)
        .limit(limit)
        .all(db)
        .await?;
    rows.iter().rev().map(candle_from_row).collect()
}

/// Every (venue, symbol, interval) with stored candles.
pub async fn series(db: &impl ConnectionTrait) -> Result<Vec<(String, String, Interval)>, Error> {
    let rows: Vec<(String, String, String)> = candle::Entity::find()
        .select_only()
        .column(candle::Column::Venue)
        .column(candle::Column::Symbol)
        .column(candle::Column::Interval)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter()
        .map(|(v, s, i)| Ok((v, s, i.parse()?)))
        .collect()
}

/// The latest price of a symbol and when it was seen.
pub async fn latest_price(
    db: &impl ConnectionTrait,
    venue: &str,
    symbol: &str,
) -> Result<Option<(Decimal, i64)>, Error> {
    let row = latest_price::Entity::find_by_id((venue.to_string(), symbol.to_string()))
        .one(db)
        .await?;
    row.map(|r| {
        Decimal::from_str(&r.price).map(|p| (p, r.ts)).map_err(|e| {
            Error::Schema(tickwatch_schema::Error::Invalid {
                field: "price",
                reason: e.to_string(),
            })
        })
    })
    .transpose()
}
