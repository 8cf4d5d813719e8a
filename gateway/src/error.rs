//! The gateway's one error type. The HTTP edge maps it onto `application/problem+json`
//! ([`crate::api::problem`]); the bot onto a reply. Only the client-facing kinds carry text
//! meant for a user; the others are logged and reported as "internal error".

use std::time::Duration;

/// Everything the gateway reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value a client sent breaks a rule; `field` names it (`threshold`, `limit`, …).
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    /// The request cannot be read at all (not JSON, wrong content type, …).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The thing does not exist, or belongs to someone else (the two look the same).
    #[error("{0} not found")]
    NotFound(String),
    /// The request body is not of a type the endpoint reads (it reads JSON).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The request body is larger than the server takes.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// No or an unknown API key.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Known caller, not allowed (an admin endpoint, an unregistered bot user).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The change clashes with what is stored (a taken chat id, a limit reached).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many requests for this API key.
    #[error("rate limit exceeded: retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// A dependency needed for this request is not there (no broker, no stream hub).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A setting is wrong; the text names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The broker failed.
    #[error("broker error: {0}")]
    Broker(#[from] tickwatch_broker::Error),
    /// A stored row cannot be read back (a corrupt value); never the client's fault.
    #[error("stored data is unreadable: {0}")]
    Data(String),
    /// The Telegram Bot API failed.
    #[error("telegram: {0}")]
    Telegram(#[from] teloxide::RequestError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Db(_) | Error::Unavailable(_) | Error::Io(_) | Error::RateLimited { .. } => true,
            Error::Broker(e) => e.is_retryable(),
            Error::Telegram(e) => matches!(
                e,
                teloxide::RequestError::Network(_)
                    | teloxide::RequestError::RetryAfter(_)
                    | teloxide::RequestError::Io(_)
            ),
            Error::Invalid { .. }
            | Error::BadRequest(_)
            | Error::TooLarge { .. }
            | Error::UnsupportedMediaType(_)
            | Error::NotFound(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::Conflict(_)
            | Error::Config(_)
            | Error::Data(_) => false,
        }
    }

    /// Whether the text is about the client's input and may be shown to them; internal
    /// failures are shown as a generic message instead.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::Invalid { .. }
                | Error::BadRequest(_)
                | Error::TooLarge { .. }
                | Error::UnsupportedMediaType(_)
                | Error::NotFound(_)
                | Error::Unauthorized(_)
                | Error::Forbidden(_)
                | Error::Conflict(_)
                | Error::RateLimited { .. }
        )
    }
}

impl From<tickwatch_schema::Error> for Error {
    fn from(e: tickwatch_schema::Error) -> Self {
        use tickwatch_schema::Error as S;
        match e {
            S::Invalid { field, reason } => Error::invalid(field, reason),
            S::MissingField(field) => Error::invalid(field, "is required"),
            S::BadValue(reason) => Error::invalid("body", reason),
            S::MalformedJson {
                line,
                column,
                message,
            } => Error::BadRequest(format!(
                "malformed JSON at line {line}, column {column}: {message}"
            )),
            S::Db(e) => Error::Db(e),
            other => Error::Data(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_errors_keep_the_field() {
        let e: Error = tickwatch_schema::Error::MissingField("condition".into()).into();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "condition"));
        assert!(e.is_client_error());
        let e: Error = tickwatch_schema::Error::Db(sea_orm::DbErr::Custom("x".into())).into();
        assert!(e.is_retryable() && !e.is_client_error());
    }
}
