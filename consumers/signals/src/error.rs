//! The crate's one error type.

/// Everything that can go wrong in `tickwatch-signals`: a bad configuration value, an
/// unreadable history file, or a failed write of the CLI output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; `key` is its dotted path (`rsi.oversold`).
    #[error("invalid signals configuration `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// A history file could not be read (the message names the file and line).
    #[error(transparent)]
    History(#[from] tickwatch_schema::Error),
    /// Writing the output failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The benchmark has nothing to run on.
    #[error("benchmark: {0}")]
    Bench(String),
    /// The database failed (the broker role stores signals and reads its warm-up there).
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Reading stored candles failed.
    #[error(transparent)]
    Store(#[from] tickwatch_recorder::Error),
    /// The broker failed under the signals role.
    #[error(transparent)]
    Broker(#[from] tickwatch_broker::Error),
}

impl Error {
    /// The database or broker may come back; bad settings or files do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_) => true,
            Error::Store(e) => e.is_retryable(),
            Error::Broker(e) => e.is_retryable(),
            Error::Config { .. } | Error::History(_) | Error::Io(_) | Error::Bench(_) => false,
        }
    }

    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
