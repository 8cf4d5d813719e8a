//! `POST /v1/admin/alertmanager`: Alertmanager's webhook receiver. Alertmanager posts its
//! documented JSON (`status`, `alerts[]` with `labels`, `annotations`, `startsAt`,
//! `endsAt`, `fingerprint`) with the shared secret of `api.alertmanager_secret` as a bearer
//! token; each alert goes to every admin chat as a `system` notification
//! ([`crate::services::operators`]).

use std::collections::BTreeMap;
use tickwatch_schema::secret::constant_time_eq;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::Problem;
use super::{ApiState, JsonBody, bearer};
use crate::error::{Error, Result};
use crate::services::operators::{OperatorAlert, OperatorAlertStatus};

/// A post from Alertmanager (webhook payload version 4). Fields not listed here
/// (`receiver`, `groupLabels`, `externalURL`, …) are accepted and not used.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "version": "4",
    "status": "firing",
    "receiver": "tickwatch",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "TickwatchDlqGrowing", "severity": "warning"},
        "annotations": {"summary": "Messages are being dead-lettered", "runbook_url": "https://example.org/runbooks/dlq"},
        "startsAt": "2026-12-06T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "5f1c3a9be2d04e71"
    }]
}))]
pub struct AlertmanagerPost {
    /// `firing` if any alert of the group fires.
    pub status: AlertStatusIn,
    pub alerts: Vec<AlertmanagerAlert>,
}

/// One alert of the group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    pub status: AlertStatusIn,
    /// `alertname` and `severity` name it in the message.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description` and `runbook_url` (or `runbook`) go into the message.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339, as Alertmanager writes it; taken as sent): with
    /// the fingerprint and status, what makes a message new.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// When it stopped (not used: the status says it).
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Alertmanager's identity of the alert.
    #[schema(min_length = 1, max_length = 256)]
    pub fingerprint: String,
}

/// `firing` or `resolved`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatusIn {
    Firing,
    Resolved,
}

/// What became of a post.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertmanagerAccepted {
    /// Notifications handed to the broker (alerts × admins with a chat); a repeat of an
    /// alert already sent is handed over again and sent by nobody.
    pub notifications: usize,
}

/// The shared secret, checked before the body is read.
#[derive(Debug)]
pub struct AlertmanagerAuth;

impl FromRequestParts<ApiState> for AlertmanagerAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
        let Some(secret) = &state.config().alertmanager_secret else {
            return Err(Error::Unauthorized(
                "the Alertmanager receiver is off: set api.alertmanager_secret".into(),
            ));
        };
        let given = bearer(&parts.headers).ok_or_else(|| {
            Error::Unauthorized("no secret: Alertmanager sends it as a bearer token".into())
        })?;
        if constant_time_eq(given.as_bytes(), secret.expose().trim().as_bytes()) {
            Ok(AlertmanagerAuth)
        } else {
            Err(Error::Unauthorized("wrong secret".into()))
        }
    }
}

/// Alertmanager's webhook: each alert to every admin chat, once per alert, status and start.
#[utoipa::path(post, operation_id = "admin_alertmanager", path = "/v1/admin/alertmanager", tag = "admin",
    security(("bearer" = [])),
    request_body = AlertmanagerPost,
    responses(
        (status = 202, description = "Handed to the broker for the admins' chats", body = AlertmanagerAccepted),
        (status = 503, description = "No broker, or it did not confirm in time (Alertmanager posts again)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(state): State<ApiState>,
    _auth: AlertmanagerAuth,
    JsonBody(post): JsonBody<AlertmanagerPost>,
) -> Result<(StatusCode, Json<AlertmanagerAccepted>)> {
    let mut alerts = Vec::with_capacity(post.alerts.len());
    for (i, alert) in post.alerts.into_iter().enumerate() {
        let fingerprint = alert.fingerprint.as_str();
        if !(1..=256).contains(&fingerprint.chars().count()) {
            return Err(Error::Invalid {
                field: format!("alerts[{i}].fingerprint"),
                reason: "1 to 256 characters".into(),
            });
        }
        if chrono::DateTime::parse_from_rfc3339(&alert.starts_at).is_err() {
            return Err(Error::Invalid {
                field: format!("alerts[{i}].startsAt"),
                reason: format!("`{}` is not an RFC 3339 date-time", alert.starts_at),
            });
        }
        let label = |name: &str| alert.labels.get(name).filter(|v| !v.is_empty()).cloned();
        let note = |name: &str| {
            alert
                .annotations
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        alerts.push(OperatorAlert {
            status: match alert.status {
                AlertStatusIn::Firing => OperatorAlertStatus::Firing,
                AlertStatusIn::Resolved => OperatorAlertStatus::Resolved,
            },
            name: label("alertname").unwrap_or_else(|| "(an alert without alertname)".into()),
            severity: label("severity"),
            summary: note("summary"),
            description: note("description"),
            // The common `runbook_url`, or `runbook` as tickwatch's own rules write it.
            runbook_url: note("runbook_url").or_else(|| note("runbook")),
            fingerprint: fingerprint.to_string(),
            starts_at: alert.starts_at,
        });
    }
    let notifications = state.services().relay_operator_alerts(&alerts).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AlertmanagerAccepted { notifications }),
    ))
}
