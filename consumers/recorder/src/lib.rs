//! tickwatch-recorder: keeps the market's history in the database.
//!
//! - [`store`]: database access for candles and latest prices (upserts, so a redelivered
//!   message changes nothing; reads for the signals warm-up, `/price` and the API).
//! - [`adapter`]: the `recorder` role on `tw.recorder.q`: closed candles are stored before
//!   their delivery is acknowledged; tick prices are coalesced per symbol and written on a
//!   short timer (see [`RecorderConfig::latest_flush_ms`]).

pub mod adapter;
pub mod store;

use serde::{Deserialize, Serialize};

/// Everything the recorder can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Schema(#[from] tickwatch_schema::Error),
    #[error(transparent)]
    Broker(#[from] tickwatch_broker::Error),
    #[error("invalid recorder configuration: {0}")]
    Config(String),
}

impl Error {
    /// The database or broker may come back; bad stored data or settings do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_) => true,
            Error::Schema(e) => e.is_retryable(),
            Error::Broker(e) => e.is_retryable(),
            Error::Config(_) => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// How often coalesced tick prices are written to `latest_prices`. The latest price is
    /// a cache the next tick overwrites: a crash loses at most this much of it.
    pub latest_flush_ms: u64,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            latest_flush_ms: 500,
        }
    }
}

impl RecorderConfig {
    pub fn validate(&self) -> Result<(), Error> {
        if self.latest_flush_ms == 0 || self.latest_flush_ms > 60_000 {
            return Err(Error::Config(format!(
                "recorder.latest_flush_ms: {} is not between 1 and 60000",
                self.latest_flush_ms
            )));
        }
        Ok(())
    }
}
