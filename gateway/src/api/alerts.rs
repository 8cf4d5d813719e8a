//! `/v1/alerts`: the caller's price alert rules, in the design's JSON, and their events.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use tickwatch_schema::db::entity::alert_event;
use tickwatch_schema::db::now_ms;
use tickwatch_schema::rule::{AlertRule, Condition, Trigger};
use tickwatch_schema::wire::Interval;
use utoipa::ToSchema;

use super::docs::{AlertIn, AlertPatch, ConditionName, IntervalName, TriggerName};
use super::problem::Problem;
use super::{ApiState, Auth, PageQuery, json_object, path_id, query};
use crate::error::Result;
use crate::services::rules::parse_rule_spec;

/// A stored rule as the API shows it: the rule's fields, its id, whether it is active and
/// when it was created. Optional fields appear only when set; `expires_at` is always there.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertOut {
    #[schema(example = 42)]
    pub id: i64,
    #[schema(example = "binance")]
    pub venue: String,
    #[schema(example = "BTCUSDT")]
    pub symbol: String,
    #[schema(value_type = ConditionName)]
    pub condition: Condition,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "65000")]
    pub threshold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    #[schema(value_type = TriggerName)]
    pub trigger: Trigger,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<IntervalName>)]
    pub interval: Option<Interval>,
    pub cooldown_s: u64,
    /// Epoch milliseconds, or `null` for never.
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis_pct: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub active: bool,
    /// Epoch milliseconds.
    pub created_at: i64,
}

impl From<AlertRule> for AlertOut {
    fn from(rule: AlertRule) -> Self {
        let text = |d: Option<rust_decimal::Decimal>| d.map(|d| d.to_string());
        let spec = rule.spec;
        AlertOut {
            id: rule.id,
            venue: spec.venue,
            symbol: spec.symbol,
            condition: spec.condition,
            threshold: text(spec.threshold),
            low: text(spec.low),
            high: text(spec.high),
            pct: text(spec.pct),
            window_s: spec.window_s,
            trigger: spec.trigger,
            interval: spec.interval,
            cooldown_s: spec.cooldown_s,
            expires_at: spec.expires_at,
            hysteresis_pct: text(spec.hysteresis_pct),
            template: spec.template,
            active: rule.active,
            created_at: rule.created_at,
        }
    }
}

/// One firing of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertEventOut {
    pub id: String,
    pub rule_id: i64,
    pub venue: String,
    pub symbol: String,
    pub condition: String,
    pub threshold: String,
    /// The price that fired the rule.
    pub price: String,
    /// When the market event happened (epoch ms).
    pub ts: i64,
    /// The notification text.
    pub text: String,
}

impl From<alert_event::Model> for AlertEventOut {
    fn from(e: alert_event::Model) -> Self {
        AlertEventOut {
            id: e.id,
            rule_id: e.rule_id,
            venue: e.venue,
            symbol: e.symbol,
            condition: e.condition,
            threshold: e.threshold,
            price: e.price,
            ts: e.ts,
            text: e.text,
        }
    }
}

super::page_type!(
    /// A page of alert rules.
    AlertPage,
    AlertOut
);
super::page_type!(
    /// A page of a rule's events, newest first.
    AlertEventPage,
    AlertEventOut
);

/// The caller's rules, by id.
#[utoipa::path(get, operation_id = "alerts_list", path = "/v1/alerts", tag = "alerts", params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's rules", body = AlertPage),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    q: std::result::Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<AlertPage>> {
    let q = query(q)?;
    let limit = state.page_size(q.limit)?;
    let page = state
        .services()
        .list_rules(caller.user_id, q.cursor.as_deref(), limit)
        .await?;
    Ok(Json(AlertPage {
        items: page.items.into_iter().map(AlertOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates a rule. Unknown fields are refused; a bad value is a 422 naming its field.
#[utoipa::path(post, operation_id = "alerts_create", path = "/v1/alerts", tag = "alerts",
    security(("bearer" = [])),
    request_body(content = AlertIn, content_type = "application/json"),
    responses(
        (status = 201, description = "The stored rule", body = AlertOut),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too many rules", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AlertOut>)> {
    let value = json_object(&state, &headers, body)?;
    let spec = parse_rule_spec(&value, now_ms())?;
    let rule = state.services().create_rule(caller.user_id, spec).await?;
    Ok((StatusCode::CREATED, Json(AlertOut::from(rule))))
}

/// One of the caller's rules (another user's rule is a 404, like a missing one).
#[utoipa::path(get, operation_id = "alerts_get_one", path = "/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The rule id")),
    responses(
        (status = 200, description = "The rule", body = AlertOut),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<AlertOut>> {
    let id = path_id(&id, "alert rule")?;
    let rule = state.services().get_rule(caller.user_id, id).await?;
    Ok(Json(AlertOut::from(rule)))
}

/// Changes a rule: a JSON merge patch of its fields (`null` removes an optional one) and
/// `active` (pause or resume). The result is validated as a whole.
#[utoipa::path(patch, operation_id = "alerts_update", path = "/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The rule id")),
    request_body(content = AlertPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed rule", body = AlertOut),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The rule kept changing meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is unknown or invalid; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<AlertOut>> {
    let id = path_id(&id, "alert rule")?;
    let value = json_object(&state, &headers, body)?;
    let patch = value.as_object().cloned().unwrap_or_default();
    let rule = state
        .services()
        .patch_rule(caller.user_id, id, &patch)
        .await?;
    Ok(Json(AlertOut::from(rule)))
}

/// Deletes a rule.
#[utoipa::path(delete, operation_id = "alerts_remove", path = "/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The rule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "alert rule")?;
    state.services().delete_rule(caller.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The firings of one of the caller's rules, newest first.
#[utoipa::path(get, operation_id = "alerts_events", path = "/v1/alerts/{id}/events", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The rule id"), PageQuery),
    responses(
        (status = 200, description = "The rule's events", body = AlertEventPage),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    q: std::result::Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<AlertEventPage>> {
    let id = path_id(&id, "alert rule")?;
    let q = query(q)?;
    let limit = state.page_size(q.limit)?;
    let page = state
        .services()
        .rule_events(caller.user_id, id, q.cursor.as_deref(), limit)
        .await?;
    Ok(Json(AlertEventPage {
        items: page.items.into_iter().map(AlertEventOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
