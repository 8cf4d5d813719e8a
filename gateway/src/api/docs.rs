//! The OpenAPI document's frame — title, tags, the bearer and session-cookie schemes — and,
//! in [`finish`], what every operation shares, declared once instead of on each handler:
//! the session cookie beside the bearer key; a problem+json `default` for 5xx; 401 and 429
//! for an authenticated operation; 400, 413, 415 and 422 for one with a body; 422 for one
//! with parameters; 404 for one with an id in its path.
//! [`finish`] also adds the rules the types alone cannot say (which fields go with which
//! condition and trigger of a rule), and [`for_server`] the limits that come from the
//! configuration (page sizes, topics per stream).
//!
//! The handlers carry their own `#[utoipa::path]`; the routes are registered with them in
//! `api::api_routes`, so this module names no handler.

use serde_json::{Value, json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::config::ApiConfig;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
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
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::web::SESSION_COOKIE,
                "The web page's session, from `POST /v1/session` (`__Host-tw_session` when \
                 served over HTTPS). A request that changes something must come from the \
                 server's own origin (`Origin`).",
            ))),
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
    modifiers(&SecuritySchemes),
    // Parameter types are referenced from operations but not collected with them.
    components(schemas(
        super::fields::PageLimit,
        super::fields::IdCursor,
        super::fields::TimeCursor,
        super::fields::Symbol,
        super::fields::Venue,
        super::market::SymbolLimit,
        super::web::CandleLimit,
        tickwatch_schema::wire::SignalKind,
    )),
    tags(
        (name = "alerts", description = "The caller's price alert rules"),
        (name = "subscriptions", description = "The caller's signal subscriptions"),
        (name = "paper", description = "The caller's paper strategies (모의매매): rules, positions, trades, equity and statistics"),
        (name = "signals", description = "Recorded signals and their outcomes"),
        (name = "market", description = "Symbols and prices"),
        (name = "stream", description = "Live events. WebSocket: send `{\"op\":\"subscribe\",\"topics\":[…]}` / `unsubscribe` / `ping`; \
            receive `subscribed`, `tick`/`candle`/`signal`/`alert` (`{type, topic, data}`; a candle built from ticks also has `from_ticks: true`), `heartbeat`, `pong`, `error`. \
            Topics: `ticks:<SYMBOL>`, `ticks:*`, `signals:<SYMBOL>`, `signals:*`, `candles:<SYMBOL>:<interval>`, `alerts:mine`. \
            A client that falls behind is closed with code 1008 and a `slow consumer` reason; SSE ends with a `close` event."),
        (name = "users", description = "The caller"),
        (name = "session", description = "The web dashboard's sign-in: a one-time link or an API key becomes an HttpOnly, SameSite=Strict session cookie (`tw_session`) that every endpoint taking an API key also takes"),
        (name = "relay", description = "The TradingView relay: a user's webhook URL whose posts go to their Telegram"),
        (name = "admin", description = "Users, keys and the system (admins only)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    ),
)]
#[derive(Debug)]
pub struct ApiDoc;

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Adds what operations share, and the rules between fields of a rule.
pub fn finish(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            // The web page's session cookie is taken wherever an API key is.
            if let Some(security) = operation.get_mut("security").and_then(Value::as_array_mut)
                && security.contains(&json!({"bearer": []}))
            {
                security.push(json!({"session": []}));
            }
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let has_body = operation.get("requestBody").is_some();
            let admin = operation["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == "admin"));
            let has_params = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            let responses = operation["responses"]
                .as_object_mut()
                .expect("every operation has responses");
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| problem(description));
            };
            add(
                "default",
                "An unexpected error; `reference` ties it to the server's log",
            );
            if secured {
                add("401", "No API key, or an unknown one");
                add(
                    "429",
                    "Too many requests for this key; retry after `Retry-After` seconds",
                );
            }
            if admin {
                add("403", "The API key is not an admin's");
            }
            if has_body {
                add("400", "The body is not JSON");
                add("413", "The body is larger than the server takes");
                add("415", "The body is not `application/json`");
                add(
                    "422",
                    "A field is missing, unknown or invalid; `field` names it",
                );
            }
            if has_params {
                add("422", "A parameter is invalid; `field` names it");
            }
            if path.contains('{') {
                add("404", "No such thing (or not the caller's)");
            }
        }
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/NewAlert") {
        schema["allOf"] = json!([condition_fields(), trigger_fields()]);
    }
}

/// Which of `threshold`, `low`/`high`, `pct`/`window_s` go with which condition
/// (`moving_up` / `moving_down` take the amount as `threshold`, with `window_s`).
fn condition_fields() -> Value {
    use tickwatch_schema::rule::Condition;
    let family = |pick: fn(Condition) -> bool| -> Vec<&'static str> {
        Condition::ALL
            .iter()
            .copied()
            .filter(|c| pick(*c))
            .map(Condition::as_str)
            .collect()
    };
    json!({"oneOf": [
        {
            "properties": {
                "condition": {"enum": family(|c| !c.is_channel() && !c.is_moving() && !c.is_expression())},
                "low": false, "high": false, "pct": false, "window_s": false, "expression": false
            },
            "required": ["threshold"]
        },
        {
            "properties": {
                "condition": {"enum": family(Condition::is_moving_amount)},
                "low": false, "high": false, "pct": false, "expression": false,
                "window_s": {"minimum": 1}
            },
            "required": ["threshold", "window_s"]
        },
        {
            "properties": {
                "condition": {"enum": family(Condition::is_channel)},
                "threshold": false, "pct": false, "window_s": false, "expression": false
            },
            "required": ["low", "high"]
        },
        {
            "properties": {
                "condition": {"enum": family(Condition::is_moving_pct)},
                "threshold": false, "low": false, "high": false, "expression": false,
                "window_s": {"minimum": 1}
            },
            "required": ["pct", "window_s"]
        },
        {
            "properties": {
                "condition": {"const": "expression"},
                "threshold": false, "low": false, "high": false, "pct": false, "window_s": false,
                "hysteresis_pct": false
            },
            "required": ["expression"]
        }
    ]})
}

/// `interval` goes with `once_per_bar` and `once_per_bar_close`, and only with them — but
/// for an expression, where it is its operands' default interval.
fn trigger_fields() -> Value {
    json!({"anyOf": [
        {"properties": {"trigger": {"const": "once_per_bar_close"}}, "required": ["trigger", "interval"]},
        {"properties": {"trigger": {"const": "once_per_bar"}, "condition": {"not": {"const": "expression"}}}, "required": ["trigger", "interval"]},
        {"properties": {"trigger": {"enum": ["once", "every_time"]}, "interval": false}},
        {"properties": {"condition": {"const": "expression"}, "trigger": {"enum": ["once", "every_time", "once_per_bar_close"]}}, "required": ["condition"]}
    ]})
}

/// The document as served: the page size and the topics of a stream from the
/// configuration.
pub fn for_server(config: &ApiConfig) -> Value {
    let mut doc = super::document().clone();
    if let Some(limit) = doc.pointer_mut("/components/schemas/PageLimit") {
        limit["maximum"] = json!(config.max_page_size);
        limit["description"] = json!(format!(
            "Items per page (default {}, at most {})",
            config.default_page_size, config.max_page_size
        ));
    }
    // `?topics=` holds at most `stream.max_topics`.
    let topic = super::stream::TOPIC_PATTERN;
    let topics = format!(
        "^$|^({topic})(,({topic})){{0,{}}}$",
        config.stream.max_topics.saturating_sub(1)
    );
    for path in ["/v1/stream", "/v1/stream/sse"] {
        let params = doc
            .pointer_mut(&format!(
                "/paths/{}/get/parameters",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_array_mut);
        for param in params.into_iter().flatten() {
            if param["name"] == "topics" {
                param["schema"]["pattern"] = json!(topics);
            }
        }
    }
    doc
}
