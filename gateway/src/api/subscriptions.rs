//! `/v1/subscriptions`: the caller's signal subscriptions.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{Grade, SignalKind};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use super::{ApiState, Auth, JsonBody, path_id};
use crate::error::Result;
use crate::services::subscriptions::{NewSubscription, SubscriptionView};

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"B"}))]
pub struct SubscriptionIn {
    pub kind: SignalKind,
    /// A symbol, or `null` (or `*`, or `all`) for every symbol.
    #[serde(default)]
    pub symbol: Option<SubscriptionSymbol>,
    /// The weakest grade to hear about (default `D`: all).
    #[serde(default)]
    pub min_grade: Option<Grade>,
}

impl From<SubscriptionIn> for NewSubscription {
    fn from(s: SubscriptionIn) -> Self {
        NewSubscription {
            kind: s.kind,
            symbol: s.symbol.and_then(|s| s.0),
            min_grade: s.min_grade.unwrap_or(Grade::D),
        }
    }
}

/// A subscription's symbol: one symbol, or every symbol (`*`, `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSymbol(pub Option<String>);

impl SubscriptionSymbol {
    const PATTERN: &'static str = "^([A-Z0-9._/:-]{1,32}|\\*|[Aa][Ll][Ll])$";
}

impl<'de> Deserialize<'de> for SubscriptionSymbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        static RE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(SubscriptionSymbol::PATTERN).expect("the pattern compiles")
        });
        let text = String::deserialize(d)?;
        if text == "*" || text.eq_ignore_ascii_case("all") {
            return Ok(SubscriptionSymbol(None));
        }
        if !RE.is_match(&text) {
            return Err(de::Error::custom(format!(
                "`{text}` is not a symbol in upper case, `*` or `all`"
            )));
        }
        Ok(SubscriptionSymbol(Some(text)))
    }
}

impl PartialSchema for SubscriptionSymbol {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(SubscriptionSymbol::PATTERN))
            .description(Some(
                "A symbol in upper case, or `*` / `all` for every symbol",
            ))
            .into()
    }
}

impl ToSchema for SubscriptionSymbol {}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: i64,
    pub kind: SignalKind,
    /// `null`: every symbol.
    pub symbol: Option<String>,
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
    request_body = SubscriptionIn,
    responses(
        (status = 201, description = "Subscribed", body = SubscriptionOut),
        (status = 200, description = "The existing subscription, changed", body = SubscriptionOut),
        (status = 409, description = "Too many subscriptions", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    JsonBody(new): JsonBody<SubscriptionIn>,
) -> Result<(StatusCode, Json<SubscriptionOut>)> {
    let (view, created) = state
        .services()
        .subscribe(caller.user_id, NewSubscription::from(new))
        .await?;
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
    params(("id" = i64, Path, minimum = 1, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionOut),
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
    params(("id" = i64, Path, minimum = 1, description = "The subscription id")),
    responses(
        (status = 204, description = "Removed"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;
    use crate::error::Error;

    fn parse(body: &str) -> Result<NewSubscription> {
        parse_json::<SubscriptionIn>(body.as_bytes()).map(NewSubscription::from)
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let ok =
            parse(r#"{"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"B"}"#).expect("valid");
        assert_eq!(ok.symbol.as_deref(), Some("BTCUSDT"));
        let all = parse(r#"{"kind":"golden_cross","symbol":"*"}"#).expect("defaults");
        assert_eq!((all.symbol, all.min_grade), (None, Grade::D));
        for (body, field) in [
            (r#"{"kind":"nope"}"#, "kind"),
            (r#"{"symbol":"BTCUSDT"}"#, "kind"),
            (r#"{"kind":"gap_up","min_grade":"Z"}"#, "min_grade"),
            (r#"{"kind":"gap_up","extra":1}"#, "extra"),
            (r#"{"kind":"gap_up","symbol":"btc"}"#, "symbol"),
        ] {
            match parse(body) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
