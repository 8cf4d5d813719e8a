//! The paper crate's one error type.

/// What can go wrong in paper trading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A strategy that does not hold together (named field, reason).
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A stored row that does not read back (a bug or a hand edit: retrying will not help).
    #[error("stored paper data: {0}")]
    Stored(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Broker(#[from] tickwatch_broker::Error),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::Invalid {
            field,
            reason: reason.to_string(),
        }
    }

    /// The database or the broker may come back; a bad strategy or stored row does not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Invalid { .. } | Error::Stored(_) => false,
            Error::Db(_) => true,
            Error::Broker(e) => e.is_retryable(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
