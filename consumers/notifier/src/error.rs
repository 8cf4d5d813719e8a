use std::time::Duration;

/// Everything `handle` can fail with. [`Error::is_retryable`] tells the broker adapter
/// whether the message goes to a retry tier (true) or to the dead-letter queue (false).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The notification breaks the contract (empty text, bad chat id): poison.
    #[error("invalid notification: {0}")]
    Invalid(String),
    /// The notifier configuration is unusable.
    #[error("invalid notifier configuration: {0}")]
    Config(String),
    /// The database failed; the notification is not lost, only not done.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Telegram did not answer usefully (5xx, network, timeout, bad token).
    #[error("telegram unavailable: {0}")]
    Transient(String),
    /// Telegram asked for a longer wait than the notifier waits in place.
    #[error("telegram asks to wait {0:?} before sending to this chat")]
    RateLimited(Duration),
    /// The circuit breaker is open: nothing was sent; put the message back and pause.
    #[error("telegram deliveries paused: circuit breaker open")]
    CircuitOpen,
    /// Another task of this process is delivering the same dedupe key right now.
    #[error("notification `{0}` is being delivered by another task")]
    InFlight(String),
    /// The broker failed under the notifier role.
    #[error("broker: {0}")]
    Broker(#[from] tickwatch_broker::Error),
    /// Telegram refused this message (e.g. a MarkdownV2 parse error): poison.
    #[error("telegram rejected the message: {0}")]
    Rejected(String),
    /// A notification's chart could not be drawn (the text goes out alone).
    #[error("chart: {0}")]
    Chart(String),
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_)
            | Error::Transient(_)
            | Error::RateLimited(_)
            | Error::CircuitOpen
            | Error::InFlight(_) => true,
            Error::Broker(e) => e.is_retryable(),
            Error::Invalid(_) | Error::Config(_) | Error::Rejected(_) | Error::Chart(_) => false,
        }
    }

    /// A short reason for dead-letter headers and metrics.
    /// Every value of [`Error::reason`].
    pub const REASONS: [&'static str; 10] = [
        "invalid",
        "config",
        "db",
        "transient",
        "rate_limited",
        "circuit_open",
        "in_flight",
        "rejected",
        "broker",
        "chart",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Config(_) => "config",
            Error::Db(_) => "db",
            Error::Transient(_) => "transient",
            Error::RateLimited(_) => "rate_limited",
            Error::CircuitOpen => "circuit_open",
            Error::InFlight(_) => "in_flight",
            Error::Rejected(_) => "rejected",
            Error::Broker(_) => "broker",
            Error::Chart(_) => "chart",
        }
    }
}
