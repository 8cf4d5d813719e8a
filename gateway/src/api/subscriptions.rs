//! `/v1/subscriptions`: the caller's signal subscriptions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use tickwatch_schema::wire::{Grade, SignalKind};
use utoipa::ToSchema;

use super::docs::{GradeName, SignalKindName, SubscriptionIn};
use super::problem::Problem;
use super::{ApiState, Auth, json_object, path_id};
use crate::error::Result;
use crate::services::subscriptions::{NewSubscription, SubscriptionView};

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: i64,
    #[schema(value_type = SignalKindName)]
    pub kind: SignalKind,
    /// `null`: every symbol.
    pub symbol: Option<String>,
    #[schema(value_type = GradeName)]
    pub min_grade: Grade,
    pub active: bool,
    pub created_at: i64,
}

impl From<SubscriptionView> for SubscriptionOut {
    fn from(v: SubscriptionView) -> Self {
        let s = v.subscription;
        SubscriptionOut {
            id: s.id,
            kind: s.kind,
            symbol: s.symbol,
            min_grade: s.min_grade,
            active: s.active,
            created_at: v.created_at,
        }
    }
}

/// Every subscription of the caller.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<SubscriptionOut>,
}

/// The caller's subscriptions.
#[utoipa::path(get, operation_id = "subscriptions_list", path = "/v1/subscriptions", tag = "subscriptions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's subscriptions", body = SubscriptionList),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    Auth(caller): Auth,
) -> Result<Json<SubscriptionList>> {
    let items = state
        .services()
        .list_subscriptions(caller.user_id)
        .await?
        .into_iter()
        .map(SubscriptionOut::from)
        .collect();
    Ok(Json(SubscriptionList { items }))
}

/// Subscribes to a kind of signal, on one symbol or all. Subscribing again to the same
/// kind and symbol changes its minimum grade (200 instead of 201).
#[utoipa::path(post, operation_id = "subscriptions_create", path = "/v1/subscriptions", tag = "subscriptions",
    security(("bearer" = [])),
    request_body(content = SubscriptionIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Subscribed", body = SubscriptionOut),
        (status = 200, description = "The existing subscription, changed", body = SubscriptionOut),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too many subscriptions", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubscriptionOut>)> {
    let value = json_object(&state, &headers, body)?;
    let new = NewSubscription::from_json(&value)?;
    let (view, created) = state.services().subscribe(caller.user_id, new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SubscriptionOut::from(view))))
}

/// One of the caller's subscriptions.
#[utoipa::path(get, operation_id = "subscriptions_get_one", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionOut),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionOut>> {
    let id = path_id(&id, "subscription")?;
    let view = state
        .services()
        .get_subscription(caller.user_id, id)
        .await?;
    Ok(Json(SubscriptionOut::from(view)))
}

/// Removes a subscription.
#[utoipa::path(delete, operation_id = "subscriptions_remove", path = "/v1/subscriptions/{id}", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The subscription id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "subscription")?;
    state.services().unsubscribe(caller.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
