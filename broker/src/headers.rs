//! AMQP header names of tickwatch, typed access to field tables, and W3C trace context
//! carried in the headers.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub use tickwatch_schema::wire::{HEADER_ATTEMPT, HEADER_SCHEMA, HEADER_TRACEPARENT};

/// Why a message was dead-lettered: `invalid`, `exhausted` or `rejected`.
pub const DEAD_REASON: &str = "tw-dead-reason";
/// The error text that sent it there.
pub const DEAD_ERROR: &str = "tw-dead-error";
/// The queue it failed in.
pub const DEAD_QUEUE: &str = "tw-dead-queue";
/// When it was dead-lettered (epoch ms).
pub const DEAD_AT: &str = "tw-dead-at-ms";
/// When it first failed (epoch ms), carried through the retry tiers.
pub const FIRST_FAILURE: &str = "tw-first-failure-ms";
/// The exchange it was first published to, kept across retry hops.
pub const ORIGINAL_EXCHANGE: &str = "tw-orig-exchange";
/// The routing key it was first published with, kept across retry hops.
pub const ORIGINAL_ROUTING_KEY: &str = "tw-orig-routing-key";
/// When the message was published (epoch ms): AMQP's own `timestamp` has only seconds, and
/// the tick-to-notification latency is measured from here.
pub const SENT_AT: &str = "tw-sent-ms";
/// The key the consistent-hash exchange spreads on: `<venue>.<symbol>`.
pub const SHARD_KEY: &str = "tw-shard-key";
/// Headers the broker itself adds on dead-lettering.
pub const X_DEATH: &str = "x-death";
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";

/// Every header tickwatch adds on the failure path; a DLQ replay removes them so the
/// message arrives exactly as first published.
pub const FAILURE_HEADERS: [&str; 10] = [
    HEADER_ATTEMPT,
    DEAD_REASON,
    DEAD_ERROR,
    DEAD_QUEUE,
    DEAD_AT,
    FIRST_FAILURE,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    X_DEATH,
    X_DELIVERY_COUNT,
];

pub fn set_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

pub fn set_i64(table: &mut FieldTable, key: &str, value: i64) {
    let v = match i32::try_from(value) {
        Ok(small) => AMQPValue::LongInt(small),
        Err(_) => AMQPValue::LongLongInt(value),
    };
    table.insert(ShortString::from(key), v);
}

pub fn remove(table: &mut FieldTable, key: &str) -> FieldTable {
    let mut map = table.inner().clone();
    map.remove(key);
    FieldTable::from(map)
}

/// A header as text (strings as they are, numbers formatted).
pub fn get_str(table: Option<&FieldTable>, key: &str) -> Option<String> {
    value_to_string(table?.inner().get(key)?)
}

/// A header as an integer (any integer type, or a numeric string).
pub fn get_i64(table: Option<&FieldTable>, key: &str) -> Option<i64> {
    value_to_i64(table?.inner().get(key)?)
}

pub fn value_to_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        other => value_to_i64(other).map(|n| n.to_string()).or(match other {
            AMQPValue::Boolean(b) => Some(b.to_string()),
            AMQPValue::Double(d) => Some(d.to_string()),
            AMQPValue::Float(f) => Some(f.to_string()),
            _ => None,
        }),
    }
}

pub fn value_to_i64(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// A header table as JSON-ish text, for `tickwatch dlq show`.
pub fn to_json(table: Option<&FieldTable>) -> serde_json::Value {
    fn convert(value: &AMQPValue) -> serde_json::Value {
        match value {
            AMQPValue::FieldTable(t) => to_json(Some(t)),
            AMQPValue::FieldArray(a) => a.as_slice().iter().map(convert).collect(),
            AMQPValue::Boolean(b) => (*b).into(),
            AMQPValue::Void => serde_json::Value::Null,
            other => match value_to_i64(other) {
                Some(n)
                    if !matches!(other, AMQPValue::LongString(_) | AMQPValue::ShortString(_)) =>
                {
                    n.into()
                }
                _ => value_to_string(other)
                    .map(Into::into)
                    .unwrap_or(serde_json::Value::Null),
            },
        }
    }
    match table {
        Some(t) => t
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), convert(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        None => serde_json::Value::Object(Default::default()),
    }
}

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        set_str(self.0, key, &value);
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

/// Writes `traceparent` (and `tracestate`) for `context` into the headers. Always W3C,
/// whatever global propagator the process set, because the contract names it.
pub fn inject_trace(context: &opentelemetry::Context, headers: &mut FieldTable) {
    TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
}

/// Reads the W3C trace context from the headers (an empty context if absent or bad).
pub fn extract_trace(headers: Option<&FieldTable>) -> opentelemetry::Context {
    match headers {
        Some(h) => TraceContextPropagator::new().extract(&HeaderExtractor(h)),
        None => opentelemetry::Context::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    #[test]
    fn trace_context_round_trips_through_a_field_table() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(span.clone());
        let mut headers = FieldTable::default();
        inject_trace(&context, &mut headers);
        assert_eq!(
            get_str(Some(&headers), HEADER_TRACEPARENT).as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let back = extract_trace(Some(&headers));
        let got = back.span().span_context().clone();
        assert_eq!(got.trace_id(), span.trace_id());
        assert_eq!(got.span_id(), span.span_id());
        assert!(got.is_remote());
    }

    #[test]
    fn integers_read_from_any_width_or_text() {
        let mut t = FieldTable::default();
        set_i64(&mut t, "a", 3);
        set_i64(&mut t, "b", 1_763_762_400_123);
        set_str(&mut t, "c", "7");
        t.insert("d".into(), AMQPValue::ShortShortUInt(9));
        assert_eq!(get_i64(Some(&t), "a"), Some(3));
        assert_eq!(get_i64(Some(&t), "b"), Some(1_763_762_400_123));
        assert_eq!(get_i64(Some(&t), "c"), Some(7));
        assert_eq!(get_i64(Some(&t), "d"), Some(9));
        assert_eq!(get_i64(Some(&t), "missing"), None);
        assert_eq!(get_str(Some(&t), "a").as_deref(), Some("3"));
    }
}
