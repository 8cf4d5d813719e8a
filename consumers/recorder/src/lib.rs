//! tickwatch-recorder: keeps the market's history in the database.
//!
//! - [`store`]: database access for candles and latest prices (upserts, so a redelivered
//!   message changes nothing; reads for the signals warm-up, `/price` and the API).
//! - [`adapter`]: the `recorder` role on `tw.recorder.q` (candles): each batch of
//!   deliveries — its closed candles and the newest close per symbol — written in one
//!   transaction before the batch is acknowledged.

pub mod adapter;
pub mod store;

/// Everything the recorder can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Schema(#[from] tickwatch_schema::Error),
    #[error(transparent)]
    Broker(#[from] tickwatch_broker::Error),
}

impl Error {
    /// The database or broker may come back; bad stored data or settings do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_) => true,
            Error::Schema(e) => e.is_retryable(),
            Error::Broker(e) => e.is_retryable(),
        }
    }
}
