//! The crate's one error type.

use std::fmt;

use crate::sink::SinkError;

/// Everything a producer can fail with. Feed trouble (a dropped socket, a bad frame) is not
/// here: the feeds log, count and recover from it; these are the errors that stop a source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable; `key` is its dotted path (`binance.symbols[1]`).
    #[error("invalid configuration `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// A history file or a wire value broke the schema's rules.
    #[error(transparent)]
    Schema(#[from] tickwatch_schema::Error),
    /// Local I/O (binding the webhook port, reading a file).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A REST call to a venue failed (after its retries).
    #[error("REST request {url} failed: {reason}")]
    Rest { url: String, reason: String },
    /// The sink refused or could not take a publish.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
