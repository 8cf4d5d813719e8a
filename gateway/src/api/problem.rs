//! Errors as `application/problem+json` (RFC 9457). A client error carries its own text; an
//! internal one is logged with a reference id and shown only as that id, so no database or
//! broker text ever reaches a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::Error;

/// The problem document's media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem (`urn:tickwatch:problem:validation`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The field at fault (validation problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Further members (`retry_after`, `checks`, …).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:tickwatch:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            extensions: Map::new(),
            retry_after: None,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_string(), value);
        self
    }
}

impl From<&Error> for Problem {
    fn from(err: &Error) -> Self {
        match err {
            Error::Invalid { field, reason } => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    format!("invalid `{field}`: {reason}"),
                );
                p.field = Some(field.clone());
                p.with("errors", json!([{"field": field, "reason": reason}]))
            }
            Error::BadRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail.clone())
            }
            Error::UnsupportedMediaType(detail) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                detail.clone(),
            ),
            Error::TooLarge { .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", err.to_string())
            }
            Error::NotFound(what) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", format!("no {what}"))
            }
            Error::Unauthorized(detail) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("{detail}; send `Authorization: Bearer <api key>`"),
            ),
            Error::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", detail.clone())
            }
            Error::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", detail.clone())
            }
            Error::RateLimited { retry_after } => {
                // Round up: retrying at the floor would be refused again.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let secs = secs.max(1);
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!("too many requests for this API key; retry after {secs} s"),
                )
                .with("retry_after", json!(secs));
                p.retry_after = Some(secs);
                p
            }
            Error::Unavailable(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                detail.clone(),
            ),
            Error::Config(_)
            | Error::Db(_)
            | Error::Broker(_)
            | Error::Data(_)
            | Error::Telegram(_)
            | Error::Io(_) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = %err, "request failed");
                let status = if err.is_retryable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Problem::new(
                    status,
                    "internal",
                    format!("internal error (reference {reference}); try again later"),
                )
                .with("reference", json!(reference.to_string()))
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tickwatch\""),
            );
        }
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_text() {
        let err = Error::Db(sea_orm::DbErr::Custom("password=hunter2 at db".into()));
        let p = Problem::from(&err);
        assert_eq!(p.status, 503);
        assert!(!p.detail.contains("hunter2"), "{}", p.detail);
        let p = Problem::from(&Error::invalid("threshold", "is required"));
        assert_eq!((p.status, p.field.as_deref()), (422, Some("threshold")));
    }
}
