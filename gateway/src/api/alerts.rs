//! `/v1/alerts`: the caller's price alert rules, in the design's JSON, and their events.
//!
//! [`NewAlert`] and [`AlertPatch`] are the request bodies: serde parses them and utoipa
//! documents them, from the same types. Which fields go with which `condition` and
//! `trigger` is added to the document in `docs::finish`; the whole rule is then checked by
//! the model's own validation (`RuleSpec::validate`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickwatch_schema::db::entity::alert_event;
use tickwatch_schema::rule::{AlertRule, Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::Interval;
use utoipa::{IntoParams, ToSchema};

use super::fields::{
    Expiry, ExpressionText, Hysteresis, IdCursor, PageLimit, Percent, Price, Seconds, Symbol,
    Template, TimeCursor, Venue, patch, present,
};
use super::{ApiState, Auth, JsonBody, Params, path_id};
use crate::error::Result;
use crate::services::rules::RulePatch;

/// The body of `POST /v1/alerts`. `condition` decides the other fields: `threshold` for
/// the threshold conditions, `low` and `high` (either way round) for the channels, `pct`
/// and `window_s` for `moving_up_pct` / `moving_down_pct`, `threshold` (the amount, in
/// price units) and `window_s` for `moving_up` / `moving_down`. `interval` goes with
/// `trigger: once_per_bar` and `once_per_bar_close` (evaluated at the interval's candle
/// close). Any other field is refused; so is `null`, but for `expires_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up",
    "threshold":"65000","trigger":"once","cooldown_s":0,"expires_at":null}))]
pub struct NewAlert {
    pub venue: Venue,
    pub symbol: Symbol,
    pub condition: Condition,
    /// The price level; for `moving_up` / `moving_down`, the size of the move in price
    /// units, within `window_s` seconds.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub threshold: Option<Price>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub low: Option<Price>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub high: Option<Price>,
    /// The move in percent, within `window_s` seconds (`moving_up_pct`, `moving_down_pct`).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub pct: Option<Percent>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub window_s: Option<Seconds>,
    /// Default `once`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub trigger: Option<Trigger>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub interval: Option<Interval>,
    /// Seconds between firings of an `every_time` rule (default 0).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub cooldown_s: Option<Seconds>,
    /// When the rule stops, or `null` for never. A time already past stores the rule
    /// expired (`active: false`).
    #[serde(default)]
    pub expires_at: Option<Expiry>,
    /// Re-arm band in percent (default: the server's).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub hysteresis_pct: Option<Hysteresis>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub template: Option<Template>,
    /// For `condition: expression`: up to 5 clauses joined by `and`, each
    /// `<left> <operator> <right>` — operands `close`, `volume`, `rsi(n,i)`, `sma(n,i)`,
    /// `ema(n,i)`, `macd(f,s,g,i)` (`macd_signal`, `macd_hist`), `bb_upper|bb_middle|bb_lower(n,k,i)`,
    /// `atr(n,i)`, `volume_sma(n,i)` or a number; operators `>`, `<`, `x>`, `x<`, `x`, and
    /// `inside` / `outside` with a band `bb(n,k,i)`. Evaluated at the close of the
    /// shortest interval it reads (or the rule's `interval`).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub expression: Option<ExpressionText>,
}

impl NewAlert {
    /// The rule this asks for (the service normalizes and validates it as a whole).
    pub fn into_spec(self) -> RuleSpec {
        RuleSpec {
            venue: self.venue.0,
            symbol: self.symbol.0,
            condition: self.condition,
            threshold: self.threshold.map(|p| p.0),
            low: self.low.map(|p| p.0),
            high: self.high.map(|p| p.0),
            pct: self.pct.map(|p| p.0),
            window_s: self.window_s.map(|s| s.0),
            trigger: self.trigger.unwrap_or(Trigger::Once),
            interval: self.interval,
            cooldown_s: self.cooldown_s.map_or(0, |s| s.0),
            expires_at: self.expires_at.map(|e| e.0),
            hysteresis_pct: self.hysteresis_pct.map(|h| h.0),
            template: self.template.map(|t| t.0),
            expression: self.expression.map(|e| e.0),
        }
    }
}

/// The body of `PATCH /v1/alerts/{id}`: a JSON merge patch of a rule — a field left out
/// stays, an optional field set to `null` is removed — and `active` to pause (`false`) or
/// resume (`true`). The result is checked as a whole, against the rule it patches: a
/// `threshold` on a channel rule is refused with 422.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"threshold":"66000","active":false}))]
pub struct AlertPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub venue: Option<Venue>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub symbol: Option<Symbol>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub condition: Option<Condition>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Price>)]
    pub threshold: Option<Option<Price>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Price>)]
    pub low: Option<Option<Price>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Price>)]
    pub high: Option<Option<Price>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Percent>)]
    pub pct: Option<Option<Percent>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Seconds>)]
    pub window_s: Option<Option<Seconds>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub trigger: Option<Trigger>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Interval>)]
    pub interval: Option<Option<Interval>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub cooldown_s: Option<Seconds>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Expiry>)]
    pub expires_at: Option<Option<Expiry>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Hysteresis>)]
    pub hysteresis_pct: Option<Option<Hysteresis>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Template>)]
    pub template: Option<Option<Template>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<ExpressionText>)]
    pub expression: Option<Option<ExpressionText>>,
    /// `false` pauses the rule, `true` resumes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

impl From<AlertPatch> for RulePatch {
    fn from(p: AlertPatch) -> Self {
        fn inner<T, U>(v: Option<Option<T>>, f: impl Fn(T) -> U) -> Option<Option<U>> {
            v.map(|o| o.map(f))
        }
        RulePatch {
            venue: p.venue.map(|v| v.0),
            symbol: p.symbol.map(|s| s.0),
            condition: p.condition,
            threshold: inner(p.threshold, |x| x.0),
            low: inner(p.low, |x| x.0),
            high: inner(p.high, |x| x.0),
            pct: inner(p.pct, |x| x.0),
            window_s: inner(p.window_s, |x| x.0),
            trigger: p.trigger,
            interval: p.interval,
            cooldown_s: p.cooldown_s.map(|s| s.0),
            expires_at: inner(p.expires_at, |x| x.0),
            hysteresis_pct: inner(p.hysteresis_pct, |x| x.0),
            template: inner(p.template, |x| x.0),
            expression: inner(p.expression, |x| x.0),
            active: p.active,
        }
    }
}

/// `limit` and `cursor` of `GET /v1/alerts`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RulePageQuery {
    pub limit: Option<PageLimit>,
    pub cursor: Option<IdCursor>,
}

/// `limit` and `cursor` of a newest-first listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimePageQuery {
    pub limit: Option<PageLimit>,
    pub cursor: Option<TimeCursor>,
}

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
    pub trigger: Trigger,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    pub cooldown_s: u64,
    /// Epoch milliseconds, or `null` for never.
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis_pct: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The clauses of an `expression` rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    pub active: bool,
    /// Why the rule may never fire (a delisted symbol, no price of it yet); only in the
    /// answer to a create.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
            expression: spec.expression,
            active: rule.active,
            warnings: Vec::new(),
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
#[utoipa::path(get, operation_id = "alerts_list", path = "/v1/alerts", tag = "alerts",
    params(RulePageQuery), security(("bearer" = [])),
    responses((status = 200, description = "The caller's rules", body = AlertPage)))]
pub async fn list(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Params(q): Params<RulePageQuery>,
) -> Result<Json<AlertPage>> {
    let limit = state.page_size(q.limit.map(|l| l.0))?;
    let page = state
        .services()
        .list_rules(caller.user_id, q.cursor.map(|c| c.0), limit)
        .await?;
    Ok(Json(AlertPage {
        items: page.items.into_iter().map(AlertOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates a rule. Unknown fields are refused; a bad value is a 422 naming its field.
#[utoipa::path(post, operation_id = "alerts_create", path = "/v1/alerts", tag = "alerts",
    security(("bearer" = [])), request_body = NewAlert,
    responses(
        (status = 201, description = "The stored rule", body = AlertOut),
        (status = 409, description = "Too many rules", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    JsonBody(new): JsonBody<NewAlert>,
) -> Result<(StatusCode, Json<AlertOut>)> {
    let services = state.services();
    let rule = services
        .create_rule(caller.user_id, new.into_spec())
        .await?;
    let (venue, symbol) = (rule.spec.venue.clone(), rule.spec.symbol.clone());
    let warnings = services.symbol_warnings(&venue, &symbol).await;
    let waiting = services.expression_warnings(&rule.spec).await;
    let mut out = AlertOut::from(rule);
    out.warnings = warnings
        .into_iter()
        .map(|w| w.message(&venue, &symbol))
        .chain(waiting)
        .collect();
    Ok((StatusCode::CREATED, Json(out)))
}

/// One of the caller's rules (another user's rule is a 404, like a missing one).
#[utoipa::path(get, operation_id = "alerts_get_one", path = "/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The rule id")),
    responses((status = 200, description = "The rule", body = AlertOut)))]
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
    params(("id" = i64, Path, minimum = 1, description = "The rule id")),
    request_body = AlertPatch,
    responses(
        (status = 200, description = "The changed rule", body = AlertOut),
        (status = 409, description = "The rule kept changing meanwhile", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<AlertPatch>,
) -> Result<Json<AlertOut>> {
    let id = path_id(&id, "alert rule")?;
    let rule = state
        .services()
        .patch_rule(caller.user_id, id, &RulePatch::from(patch))
        .await?;
    Ok(Json(AlertOut::from(rule)))
}

/// Deletes a rule.
#[utoipa::path(delete, operation_id = "alerts_remove", path = "/v1/alerts/{id}", tag = "alerts",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The rule id")),
    responses((status = 204, description = "Deleted")))]
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
    params(("id" = i64, Path, minimum = 1, description = "The rule id"), TimePageQuery),
    responses((status = 200, description = "The rule's events", body = AlertEventPage)))]
pub async fn events(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Params(q): Params<TimePageQuery>,
) -> Result<Json<AlertEventPage>> {
    let id = path_id(&id, "alert rule")?;
    let limit = state.page_size(q.limit.map(|l| l.0))?;
    let page = state
        .services()
        .rule_events(caller.user_id, id, q.cursor.map(|c| (c.ts, c.id)), limit)
        .await?;
    Ok(Json(AlertEventPage {
        items: page.items.into_iter().map(AlertEventOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
