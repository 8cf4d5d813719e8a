//! The crate's one error type.

/// Everything the alerts engine can refuse: a bad setting, or a rule or subscription it
/// cannot hold. The engine never fails on market data: a tick it cannot use is ignored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting of `[alerts]` is out of range; `key` is its name in the configuration file.
    #[error("invalid alerts setting `{key}`: {reason}")]
    Config { key: &'static str, reason: String },
    /// A rule breaks the shared rule validation (the gateway should have refused it).
    #[error("alert rule {rule_id}: {source}")]
    Rule {
        rule_id: i64,
        #[source]
        source: tickwatch_schema::Error,
    },
    /// A subscription breaks the shared validation.
    #[error("subscription {subscription_id}: {source}")]
    Subscription {
        subscription_id: i64,
        #[source]
        source: tickwatch_schema::Error,
    },
    /// A rule is valid but exceeds a limit of the in-memory book.
    #[error("alert rule {rule_id}: {reason}")]
    Capacity { rule_id: i64, reason: String },
    /// The database failed under the alerts role (the adapter).
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The broker failed under the alerts role (the adapter).
    #[error(transparent)]
    Broker(#[from] tickwatch_broker::Error),
}

impl Error {
    /// The database or broker may come back; a bad setting or rule does not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_) => true,
            Error::Broker(e) => e.is_retryable(),
            Error::Config { .. }
            | Error::Rule { .. }
            | Error::Subscription { .. }
            | Error::Capacity { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
