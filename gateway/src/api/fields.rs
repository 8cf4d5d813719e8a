//! Typed fields of request bodies and parameters: each one parses itself (serde) and
//! documents itself (utoipa) from the same pattern or bounds, so a client generated from
//! the document, a fuzzer and the server agree on what is accepted.
//!
//! - Strings with a pattern: [`Venue`], [`Symbol`], [`Template`], [`ExpressionText`], and the decimals
//!   [`Price`], [`Percent`], [`Hysteresis`] (decimal strings, never JSON numbers).
//! - Whole numbers that also accept a whole JSON float (`5.0`): JSON Schema counts it as an
//!   integer, so a client may send it. [`Seconds`], [`EpochMs`], [`ChatId`].
//! - [`present`] and [`patch`]: an optional field that may not be `null`, and a merge-patch
//!   field where `null` removes the value.

use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A string field checked against one regular expression, documented with it.
macro_rules! pattern_field {
    ($(#[$meta:meta])* $name:ident($inner:ty), $pattern:expr, $expected:literal, $example:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub $inner);

        impl $name {
            pub const PATTERN: &'static str = $pattern;

            fn regex() -> &'static Regex {
                static RE: LazyLock<Regex> = LazyLock::new(|| {
                    Regex::new($name::PATTERN).expect("the pattern compiles")
                });
                &RE
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                if !$name::regex().is_match(&text) {
                    return Err(de::Error::custom(format!(
                        "`{}` is not {}, such as {}",
                        text.chars().take(80).collect::<String>(),
                        $expected,
                        $example
                    )));
                }
                <$inner as FromStr>::from_str(&text)
                    .map($name)
                    .map_err(|e| de::Error::custom(format!("`{text}`: {e}")))
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .pattern(Some($name::PATTERN))
                    .description(Some(concat!($expected, ", such as ", $example)))
                    .examples([serde_json::json!($example.trim_matches('`').trim_matches('"'))])
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

pattern_field!(
    /// A venue as tickwatch names it (`binance`, `upbit`, `krx`).
    Venue(String),
    "^[a-z0-9_-]{1,32}$",
    "a venue in lower case",
    "`binance`"
);

pattern_field!(
    /// A symbol as its venue spells it, upper case (`BTCUSDT`, `005930`).
    Symbol(String),
    "^[A-Z0-9._/:-]{1,32}$",
    "a symbol in upper case (letters, digits and `.-_/:`)",
    "`BTCUSDT`"
);

pattern_field!(
    /// A one-time sign-in link's token, as the bot's `/web` gives it.
    LinkToken(String),
    "^twl_[0-9a-f]{64}$",
    "a sign-in token from the bot's /web",
    "`twl_…`"
);

pattern_field!(
    /// An API key, as `/apikey` or `tickwatch apikey create` gives it.
    ApiKeyText(String),
    "^tw_[0-9a-f]{40}$",
    "a tickwatch API key",
    "`tw_…`"
);

pattern_field!(
    /// A price: a positive decimal string, at most 15 digits before the point and 12 after.
    Price(Decimal),
    r"^([1-9][0-9]{0,14}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9][0-9]{0,11})$",
    "a positive decimal string (not a JSON number)",
    "`\"65000.5\"`"
);

pattern_field!(
    /// An expression rule's clauses (`rsi(14,1h) < 30 and close(1d) > sma(200,1d)`), in the
    /// canonical form the pattern states exactly — lower case, single spaces, every
    /// interval written — so whatever matches it is a valid expression
    /// (`tickwatch_schema::expr`; the bot accepts looser forms and stores this one).
    ExpressionText(String),
    r"^(((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|rsi\((1000|[1-9][0-9]{1,2}|[2-9]),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)) (>|<|x>|x<|x) (((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))|-?[0-9]{1,15}(\.[0-9]{1,12})?)|-?[0-9]{1,15}(\.[0-9]{1,12})? (>|<|x>|x<|x) ((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))|((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)) (inside|outside) bb\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))( and (((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)) (>|<|x>|x<|x) (((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))|-?[0-9]{1,15}(\.[0-9]{1,12})?)|-?[0-9]{1,15}(\.[0-9]{1,12})? (>|<|x>|x<|x) ((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))|((close|open|high|low|volume)\((1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|(rsi|sma|ema|atr|volume_sma)\((1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|macd(_signal|_hist)?\((1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1000|[1-9][0-9]{0,2}),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)|bb_(upper|middle|lower)\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\)) (inside|outside) bb\((1000|[1-9][0-9]{1,2}|[2-9]),(10(\.0{1,2})?|[1-9](\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9])),(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)\))){0,4}$",
    "up to five clauses joined by ` and `, each `<series> <op> <series or number>` (or a number first), with explicit intervals; ops `>` `<` `x>` `x<` `x`, or `inside`/`outside` a band `bb(n,k,i)`",
    "`\"rsi(14,1h) < 30 and close(1d) > sma(200,1d)\"`"
);

pattern_field!(
    /// A percentage in (0, 1000], as a decimal string.
    Percent(Decimal),
    r"^(1000(\.0{1,12})?|[1-9][0-9]{0,2}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9][0-9]{0,11})$",
    "a percentage above 0 and at most 1000, as a decimal string",
    "`\"2.5\"`"
);

pattern_field!(
    /// A re-arm band in percent, [0, 50], as a decimal string.
    Hysteresis(Decimal),
    r"^(50(\.0{1,12})?|[1-4]?[0-9](\.[0-9]{1,12})?)$",
    "a percentage from 0 to 50, as a decimal string",
    "`\"0.1\"`"
);

/// A rule's message with `{{symbol}}`, `{{price}}` … placeholders: 1 to 1,000 characters,
/// not only spaces, tabs and line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template(pub String);

impl Template {
    pub const MAX_CHARS: usize = tickwatch_schema::rule::MAX_TEMPLATE_CHARS;
    /// Something other than a space, tab or line break (the same in every regex dialect).
    pub const PATTERN: &'static str = "[^ \t\r\n]";
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
            return Err(de::Error::custom("is blank"));
        }
        let count = text.chars().count();
        if count > Template::MAX_CHARS {
            return Err(de::Error::custom(format!(
                "is {count} characters long; at most {} are kept",
                Template::MAX_CHARS
            )));
        }
        Ok(Template(text))
    }
}

impl PartialSchema for Template {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .min_length(Some(1))
            .max_length(Some(Template::MAX_CHARS))
            .pattern(Some(Template::PATTERN))
            .description(Some(
                "The message, with placeholders such as `{{symbol}}`, `{{price}}`, \
                 `{{threshold}}`, `{{condition}}`, `{{time}}`",
            ))
            .into()
    }
}

impl ToSchema for Template {}

/// Reads a whole number from a JSON integer or a whole JSON float (`5.0`).
struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
        // Within ±2^53 a float is exact.
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
            Ok(v as i128)
        } else {
            Err(E::custom(format!("{v} is not a whole number")))
        }
    }
}

pub fn whole_in<'de, D: Deserializer<'de>>(d: D, min: i128, max: i128) -> Result<i128, D::Error> {
    let n = d.deserialize_any(WholeNumber)?;
    if n < min || n > max {
        return Err(de::Error::custom(format!(
            "{n} is not between {min} and {max}"
        )));
    }
    Ok(n)
}

/// A whole number of seconds, 0 to 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub u64);

impl Seconds {
    pub const MAX: u64 = tickwatch_schema::rule::MAX_DURATION_S;
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        whole_in(d, 0, i128::from(Seconds::MAX)).map(|n| Seconds(n as u64))
    }
}

/// An integer schema of `format` from `min` to `max`.
pub fn integer_between(
    format: KnownFormat,
    min: impl Into<utoipa::Number>,
    max: impl Into<utoipa::Number>,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(format)))
        .minimum(Some(min))
        .maximum(Some(max))
}

impl PartialSchema for Seconds {
    fn schema() -> RefOr<Schema> {
        integer_between(KnownFormat::Int64, 0, Seconds::MAX as f64)
            .description(Some("Whole seconds, at most 30 days"))
            .into()
    }
}

impl ToSchema for Seconds {}

/// A time in epoch milliseconds, 1971 to 2100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EpochMs(pub i64);

impl<'de> Deserialize<'de> for EpochMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use tickwatch_schema::wire::{MAX_TS_MS, MIN_TS_MS};
        whole_in(d, i128::from(MIN_TS_MS), i128::from(MAX_TS_MS)).map(|n| EpochMs(n as i64))
    }
}

impl PartialSchema for EpochMs {
    fn schema() -> RefOr<Schema> {
        use tickwatch_schema::wire::{MAX_TS_MS, MIN_TS_MS};
        integer_between(KnownFormat::Int64, MIN_TS_MS as f64, MAX_TS_MS as f64)
            .description(Some("Epoch milliseconds"))
            .into()
    }
}

impl ToSchema for EpochMs {}

/// When a rule stops: epoch milliseconds, 1971 to 2100. (An expiry already past is not an
/// error: the rule is stored expired. The clock is not something a schema can state.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Expiry(pub i64);

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EpochMs::deserialize(d).map(|EpochMs(ms)| Expiry(ms))
    }
}

impl PartialSchema for Expiry {
    fn schema() -> RefOr<Schema> {
        use tickwatch_schema::wire::MAX_TS_MS;
        integer_between(
            KnownFormat::Int64,
            tickwatch_schema::wire::MIN_TS_MS as f64,
            MAX_TS_MS as f64,
        )
        .description(Some(
            "Epoch milliseconds; a time already past stores the rule expired (inactive)",
        ))
        .into()
    }
}

impl ToSchema for Expiry {}

/// Items per page: at least 1; the most is the server's `max_page_size`, set in the
/// document when it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(pub u32);

impl<'de> Deserialize<'de> for PageLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 0 {
            return Err(de::Error::custom("0 is not between 1 and the page size"));
        }
        Ok(PageLimit(n))
    }
}

impl PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        integer_between(KnownFormat::Int32, 1, 500).into()
    }
}

impl ToSchema for PageLimit {}

/// The position after which a list of rules goes on: the last rule id of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub i64);

impl IdCursor {
    pub const PATTERN: &'static str = "^[1-9][0-9]{0,17}$";
}

impl<'de> Deserialize<'de> for IdCursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        static RE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(IdCursor::PATTERN).expect("the pattern compiles"));
        if !RE.is_match(&text) {
            return Err(de::Error::custom(format!(
                "`{text}` is not a cursor: pass the `next_cursor` of the previous page"
            )));
        }
        text.parse().map(IdCursor).map_err(de::Error::custom)
    }
}

impl PartialSchema for IdCursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(IdCursor::PATTERN))
            .description(Some("The `next_cursor` of the previous page"))
            .into()
    }
}

impl ToSchema for IdCursor {}

/// The position after which a newest-first list goes on: `<epoch ms>_<id>` of the last
/// item of a page (see `services::time_cursor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeCursor {
    pub ts: i64,
    pub id: String,
}

impl TimeCursor {
    pub const PATTERN: &'static str = "^[0-9]{1,15}_[0-9A-Za-z._-]{1,64}$";
}

impl<'de> Deserialize<'de> for TimeCursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        static RE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(TimeCursor::PATTERN).expect("the pattern compiles"));
        let bad = || {
            de::Error::custom(format!(
                "`{text}` is not a cursor: pass the `next_cursor` of the previous page"
            ))
        };
        if !RE.is_match(&text) {
            return Err(bad());
        }
        let (ts, id) = text.split_once('_').ok_or_else(bad)?;
        Ok(TimeCursor {
            ts: ts.parse().map_err(|_| bad())?,
            id: id.to_string(),
        })
    }
}

impl PartialSchema for TimeCursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(TimeCursor::PATTERN))
            .description(Some("The `next_cursor` of the previous page"))
            .into()
    }
}

impl ToSchema for TimeCursor {}

/// A Telegram chat id: any 64-bit integer but 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ChatId(pub i64);

impl<'de> Deserialize<'de> for ChatId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Within the range a JSON float holds exactly, as the document says.
        let n = whole_in(d, -(1 << 53), 1 << 53)?;
        if n == 0 {
            return Err(de::Error::custom("0 is no Telegram chat"));
        }
        Ok(ChatId(n as i64))
    }
}

impl PartialSchema for ChatId {
    fn schema() -> RefOr<Schema> {
        // Any integer but 0: below it or above it.
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(integer_between(KnownFormat::Int64, -(1_i64 << 53), -1_i64))
            .item(integer_between(KnownFormat::Int64, 1_i64, 1_i64 << 53))
            .description(Some("A Telegram chat id (not 0)"))
            .into()
    }
}

impl ToSchema for ChatId {}

/// The schema of a serde enum of newtype variants (`rename_all`, `deny_unknown_fields`): an
/// object with exactly one of the `(key, value)` pairs, nothing else — what serde reads.
pub fn one_key_of(variants: &[(&str, RefOr<Schema>)], description: &str) -> RefOr<Schema> {
    use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder};
    variants
        .iter()
        .fold(OneOfBuilder::new(), |one_of, (key, value)| {
            one_of.item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Object))
                    .property(*key, value.clone())
                    .required(*key)
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
        })
        .description(Some(description))
        .into()
}

/// An optional field that may be left out but not sent as `null` (`deserialize_with`).
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(value) => Ok(Some(value)),
        None => Err(de::Error::custom(
            "may be left out, but not null (omit it for the default)",
        )),
    }
}

/// A JSON merge patch field: absent leaves the value, `null` removes it, a value sets it.
pub fn patch<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn prices_match_their_pattern_exactly() {
        for ok in [
            "\"1\"",
            "\"65000.5\"",
            "\"0.001\"",
            "\"999999999999999.999999999999\"",
        ] {
            assert!(parse::<Price>(ok).is_ok(), "{ok}");
        }
        for bad in [
            "\"0\"",
            "\"-5\"",
            "\"065000\"",
            "\"1e5\"",
            "\"0.0\"",
            "65000",
            "\"\"",
            "\" 1\"",
        ] {
            assert!(parse::<Price>(bad).is_err(), "{bad}");
        }
        assert!(parse::<Percent>("\"1000\"").is_ok());
        assert!(parse::<Percent>("\"1000.1\"").is_err());
        assert!(parse::<Hysteresis>("\"0\"").is_ok());
        assert!(parse::<Hysteresis>("\"50.5\"").is_err());
    }

    #[test]
    fn whole_floats_are_whole_numbers() {
        assert_eq!(parse::<Seconds>("60.0"), Ok(Seconds(60)));
        assert!(parse::<Seconds>("1.5").is_err());
        assert!(parse::<Seconds>("-1").is_err());
        assert!(parse::<Seconds>(&(Seconds::MAX + 1).to_string()).is_err());
        assert!(parse::<ChatId>("0").is_err());
        assert_eq!(parse::<ChatId>("-100.0"), Ok(ChatId(-100)));
    }

    #[test]
    fn symbols_venues_and_templates() {
        assert!(parse::<Symbol>("\"BRK.B\"").is_ok());
        let err = parse::<Symbol>("\"btcusdt\"").expect_err("lower case");
        assert!(err.contains("upper case"), "{err}");
        assert!(parse::<Venue>("\"Binance\"").is_err());
        assert!(parse::<Template>("\" \\n\"").is_err());
        assert!(parse::<Template>("\"\\u3000\"").is_ok());
    }
}
