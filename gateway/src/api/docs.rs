//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types they return, plus the schemas of request bodies (which are decoded by the shared
//! validation, not by serde derives, so that errors name their field). The enumerations'
//! values come from the model's own lists (`Condition::ALL`, …), so they cannot drift.

use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use tickwatch_schema::rule::{Condition, Trigger};
use tickwatch_schema::wire::{Grade, Interval, SignalKind};

macro_rules! string_enum_schema {
    ($(#[$meta:meta])* $name:ident, $values:expr, $description:literal) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let values: Vec<Value> = $values.map(|v| Value::from(v.as_str())).collect();
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(values))
                    .description(Some($description))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

string_enum_schema!(
    /// `condition` of a rule.
    ConditionName,
    Condition::ALL.iter(),
    "When the rule is true. `entering_channel`/`exiting_channel` take `low` and `high`; \
     `moving_up_pct`/`moving_down_pct` take `pct` and `window_s`; the others take `threshold`."
);
string_enum_schema!(
    /// `trigger` of a rule.
    TriggerName,
    Trigger::ALL.iter(),
    "How often the rule may fire: `once`, `once_per_bar` (with `interval`), `every_time` \
     (with `cooldown_s`)."
);
string_enum_schema!(
    /// A candle interval.
    IntervalName,
    Interval::ALL.iter(),
    "A candle interval as exchanges spell it."
);
string_enum_schema!(
    /// A signal kind.
    SignalKindName,
    SignalKind::ALL.iter(),
    "A kind of signal."
);
string_enum_schema!(
    /// A signal grade.
    GradeName,
    Grade::ALL.iter(),
    "A signal's grade; A is the strongest."
);

/// The body of `POST /v1/alerts`. Decimals are strings; times are epoch milliseconds;
/// any other field is refused with a 422 naming it.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up",
    "threshold":"65000","trigger":"once","cooldown_s":0,"expires_at":null}))]
pub struct AlertIn {
    /// Lower-case venue (`binance`, `upbit`, `krx`).
    pub venue: String,
    /// Upper-case as the venue spells it (`BTCUSDT`, `005930`).
    pub symbol: String,
    #[schema(value_type = ConditionName)]
    pub condition: String,
    /// The price, for the threshold conditions.
    pub threshold: Option<String>,
    /// Channel bounds, for the channel conditions.
    pub low: Option<String>,
    pub high: Option<String>,
    /// Percent move (0, 1000], for the moving conditions, within `window_s` seconds.
    pub pct: Option<String>,
    pub window_s: Option<u64>,
    /// Default `once`.
    #[schema(value_type = Option<TriggerName>)]
    pub trigger: Option<String>,
    /// The bar, for `once_per_bar`.
    #[schema(value_type = Option<IntervalName>)]
    pub interval: Option<String>,
    /// Seconds between firings of an `every_time` rule (default 0, at most 30 days).
    pub cooldown_s: Option<u64>,
    /// When the rule stops (epoch ms, in the future), or `null`.
    pub expires_at: Option<i64>,
    /// Re-arm band in percent [0, 50].
    pub hysteresis_pct: Option<String>,
    /// The message, with `{{symbol}}`, `{{price}}` … placeholders.
    pub template: Option<String>,
}

/// The body of `PATCH /v1/alerts/{id}`: any fields of a rule (a JSON merge patch: `null`
/// removes an optional field) and `active` to pause (`false`) or resume (`true`).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"threshold":"66000","active":false}))]
pub struct AlertPatch {
    pub venue: Option<String>,
    pub symbol: Option<String>,
    #[schema(value_type = Option<ConditionName>)]
    pub condition: Option<String>,
    pub threshold: Option<String>,
    pub low: Option<String>,
    pub high: Option<String>,
    pub pct: Option<String>,
    pub window_s: Option<u64>,
    #[schema(value_type = Option<TriggerName>)]
    pub trigger: Option<String>,
    #[schema(value_type = Option<IntervalName>)]
    pub interval: Option<String>,
    pub cooldown_s: Option<u64>,
    pub expires_at: Option<i64>,
    pub hysteresis_pct: Option<String>,
    pub template: Option<String>,
    pub active: Option<bool>,
}

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"kind":"rsi_oversold","symbol":"BTCUSDT","min_grade":"B"}))]
pub struct SubscriptionIn {
    #[schema(value_type = SignalKindName)]
    pub kind: String,
    /// A symbol, or `null` (or `*`) for every symbol.
    pub symbol: Option<String>,
    /// The weakest grade to hear about (default `D`: all).
    #[schema(value_type = Option<GradeName>)]
    pub min_grade: Option<String>,
}

/// The body of `POST /v1/admin/users`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"name":"alice","telegram_chat_id":123456789,"admin":false,"api_key":true}))]
pub struct CreateUserIn {
    pub name: String,
    pub telegram_chat_id: Option<i64>,
    /// Default false.
    pub admin: Option<bool>,
    /// `en` (default) or `ko`.
    pub language: Option<String>,
    /// Also create a first API key (shown once in the response).
    pub api_key: Option<bool>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`tw_…`) from `/apikey` in the bot or `tickwatch apikey create`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickwatch API",
        description = "Alert rules, signal subscriptions, market data and live streams of a tickwatch server. \
            Errors are `application/problem+json`; validation errors are 422 and name the field in `field`. \
            Every `/v1` endpoint needs `Authorization: Bearer <api key>` and is rate limited per key (429 with `Retry-After`).",
    ),
    modifiers(&BearerAuth),
    paths(
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::ops::openapi,
        super::ops::docs_page,
        super::admin::me,
        super::alerts::list,
        super::alerts::create,
        super::alerts::get_one,
        super::alerts::update,
        super::alerts::remove,
        super::alerts::events,
        super::subscriptions::list,
        super::subscriptions::create,
        super::subscriptions::get_one,
        super::subscriptions::remove,
        super::market::signals,
        super::market::signal_stats,
        super::market::symbols,
        super::market::price,
        super::stream::stream,
        super::stream::sse_only,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::remove_user,
        super::admin::create_api_key,
        super::admin::stats,
        super::admin::dlq,
    ),
    tags(
        (name = "alerts", description = "The caller's price alert rules"),
        (name = "subscriptions", description = "The caller's signal subscriptions"),
        (name = "signals", description = "Recorded signals and their outcomes"),
        (name = "market", description = "Symbols and prices"),
        (name = "stream", description = "Live events. WebSocket: send `{\"op\":\"subscribe\",\"topics\":[…]}` / `unsubscribe` / `ping`; \
            receive `subscribed`, `tick`/`signal`/`alert` (`{type, topic, data}`), `heartbeat`, `pong`, `error`. \
            Topics: `ticks:<SYMBOL>`, `ticks:*`, `signals:<SYMBOL>`, `signals:*`, `alerts:mine`. \
            A client that falls behind is closed with code 1008 and a `slow consumer` reason; SSE ends with a `close` event."),
        (name = "users", description = "The caller"),
        (name = "admin", description = "Users, keys and the system (admins only)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    ),
)]
#[derive(Debug)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use tickwatch_schema::rule::RuleSpec;

    fn properties(schema: RefOr<Schema>) -> Vec<String> {
        let value = serde_json::to_value(schema).expect("schema serialises");
        let mut keys: Vec<String> = value["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn request_schemas_list_exactly_the_accepted_fields() {
        let mut fields: Vec<String> = RuleSpec::FIELDS.iter().map(|f| f.to_string()).collect();
        fields.sort();
        assert_eq!(properties(AlertIn::schema()), fields);
        fields.push("active".into());
        fields.sort();
        assert_eq!(properties(AlertPatch::schema()), fields);
        let mut sub: Vec<String> = crate::services::subscriptions::FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        sub.sort();
        assert_eq!(properties(SubscriptionIn::schema()), sub);
        let mut user: Vec<String> = super::super::admin::CREATE_USER_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        user.sort();
        assert_eq!(properties(CreateUserIn::schema()), user);
    }

    #[test]
    fn enumerations_come_from_the_model() {
        let value = serde_json::to_value(ConditionName::schema()).expect("schema");
        let listed = value["enum"].as_array().map(Vec::len);
        assert_eq!(listed, Some(Condition::ALL.len()));
    }
}
