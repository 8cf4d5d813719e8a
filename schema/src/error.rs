use std::fmt;

/// Everything that can go wrong in `tickwatch-schema`: decoding or validating a wire
/// message, validating an alert rule, or talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON at all (or is cut short).
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// A required field is absent.
    #[error("missing required field `{0}`")]
    MissingField(String),
    /// A field has the wrong JSON type or an unparsable value (e.g. a float price).
    #[error("bad field value: {0}")]
    BadValue(String),
    /// The `tw-schema` header names a version this build does not read.
    #[error("unsupported schema version `{found}`: this build reads version {expected}")]
    SchemaVersion { found: String, expected: u32 },
    /// The AMQP `type` property does not match the message the queue expects.
    #[error("message type `{found}` where `{expected}` was expected")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// The JSON decoded but a value breaks a rule of the contract.
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A configured name (prefix, queue) is not usable.
    #[error("invalid name `{name}`: {reason}")]
    Name { name: String, reason: String },
    /// A line of a history file cannot be read.
    #[error("{path}:{line}: {message}")]
    Csv {
        path: String,
        line: usize,
        message: String,
    },
    /// A database operation failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl Error {
    /// Only database trouble may go away by itself; a bad message stays bad.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Db(_))
    }

    pub(crate) fn invalid(field: &'static str, reason: impl fmt::Display) -> Self {
        Error::Invalid {
            field,
            reason: reason.to_string(),
        }
    }

    /// Classifies a serde_json failure into what a sender needs to hear.
    pub(crate) fn from_json(err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => Error::MalformedJson {
                line: err.line(),
                column: err.column(),
                message: strip_position(&err.to_string()),
            },
            Category::Data => {
                let text = strip_position(&err.to_string());
                match text
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    Some(field) => Error::MissingField(field.to_string()),
                    None => Error::BadValue(text),
                }
            }
        }
    }
}

/// serde_json appends " at line L column C"; the variants carry that separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(idx) => message[..idx].to_string(),
        None => message.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
