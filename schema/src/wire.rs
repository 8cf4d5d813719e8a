//! The wire contract, version 1: the JSON bodies on the broker, their AMQP metadata, and the
//! checks every decoded message passes before a handler sees it.
//!
//! Prices and quantities are decimal strings; times are Unix epoch milliseconds. Unknown
//! fields are ignored on read so that a newer producer can add fields without breaking an
//! older consumer; a missing field, a wrong `tw-schema`, or a value that breaks the contract
//! is an [`Error`] naming what is wrong.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::names::routing;
use crate::rule::{AlertRule, Condition, Subscription};

/// The contract version this build writes and reads (`tw-schema` header).
pub const SCHEMA_VERSION: u32 = 1;
/// AMQP header carrying the contract version.
pub const HEADER_SCHEMA: &str = "tw-schema";
/// AMQP header carrying the delivery attempt (absent = 1).
pub const HEADER_ATTEMPT: &str = "tw-attempt";
/// AMQP header carrying the W3C trace context.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// The body's content type.
pub const CONTENT_TYPE: &str = "application/json";

/// Earliest accepted timestamp: 1971-01-01. Anything smaller is almost always seconds
/// where milliseconds were meant (the historical files go back to 1980).
pub const MIN_TS_MS: i64 = 31_536_000_000;
/// Latest accepted timestamp: 2100-01-01. Anything larger is usually micro- or nanoseconds.
pub const MAX_TS_MS: i64 = 4_102_444_800_000;

/// The AMQP `type` property of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Tick,
    Candle,
    Signal,
    Alert,
    Notification,
    Control,
    /// Closed candles of a series were stored by a history load.
    History,
}

impl MessageKind {
    pub const ALL: [MessageKind; 7] = [
        MessageKind::Tick,
        MessageKind::Candle,
        MessageKind::Signal,
        MessageKind::Alert,
        MessageKind::Notification,
        MessageKind::Control,
        MessageKind::History,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Tick => "tick",
            MessageKind::Candle => "candle",
            MessageKind::Signal => "signal",
            MessageKind::Alert => "alert",
            MessageKind::Notification => "notification",
            MessageKind::Control => "control",
            MessageKind::History => "history",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        MessageKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("type", format!("unknown message type `{s}`")))
    }
}

/// A candle interval, spelled as the exchanges spell it (`1m`, `4h`, `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H12,
    D1,
    W1,
}

impl Interval {
    pub const ALL: [Interval; 12] = [
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H12,
        Interval::D1,
        Interval::W1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::W1 => "1w",
        }
    }

    /// The interval's length in milliseconds.
    pub fn as_ms(self) -> i64 {
        const MIN: i64 = 60_000;
        match self {
            Interval::M1 => MIN,
            Interval::M3 => 3 * MIN,
            Interval::M5 => 5 * MIN,
            Interval::M15 => 15 * MIN,
            Interval::M30 => 30 * MIN,
            Interval::H1 => 60 * MIN,
            Interval::H2 => 120 * MIN,
            Interval::H4 => 240 * MIN,
            Interval::H6 => 360 * MIN,
            Interval::H12 => 720 * MIN,
            Interval::D1 => 1_440 * MIN,
            Interval::W1 => 10_080 * MIN,
        }
    }

    /// Daily or longer: the bar is a trading session (or several).
    pub fn is_daily_or_longer(self) -> bool {
        self >= Interval::D1
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Interval::ALL.iter().map(|i| i.as_str()).collect();
                Error::invalid(
                    "interval",
                    format!("`{s}` is not an interval; use one of {}", known.join(", ")),
                )
            })
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! str_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Documented as the string enumeration it is on the wire.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::wire::string_enum_schema($name::ALL.iter().map(|v| v.as_str()))
            }
        }

        impl utoipa::ToSchema for $name {}

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                let wanted = s.trim().to_ascii_lowercase();
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(&wanted)).ok_or_else(|| {
                    let known: Vec<_> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    Error::invalid($what, format!("`{s}` is not known; use one of {}", known.join(", ")))
                })
            }
        }
    };
}
pub(crate) use str_enum;

/// The OpenAPI schema of a string enumeration with these values.
pub fn string_enum_schema<'a>(
    values: impl Iterator<Item = &'a str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(values.map(str::to_string)))
        .into()
}

impl utoipa::PartialSchema for Interval {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_enum_schema(Interval::ALL.iter().map(|i| i.as_str()))
    }
}

/// A candle interval as exchanges spell it.
impl utoipa::ToSchema for Interval {}

str_enum!(
    /// What a signal says. Each kind has a written definition in the signals engine.
    SignalKind, "kind" {
        RsiOversold => "rsi_oversold",
        RsiOverbought => "rsi_overbought",
        MacdBullishCross => "macd_bullish_cross",
        MacdBearishCross => "macd_bearish_cross",
        GoldenCross => "golden_cross",
        DeathCross => "death_cross",
        BollingerBreakoutUp => "bb_breakout_up",
        BollingerBreakoutDown => "bb_breakout_down",
        BollingerSqueeze => "bb_squeeze",
        VolumeSurge => "volume_surge",
        New52wHigh => "new_52w_high",
        VcpSetup => "vcp_setup",
        VcpBreakout => "vcp_breakout",
        ClosingPriceSetup => "closing_price_setup",
        GapUp => "gap_up",
        OpeningRangeBreakout => "orb_breakout",
        VwapReclaim => "vwap_reclaim",
    }
);

str_enum!(
    /// Which way a signal kind points; neutral kinds say "something is happening", not
    /// which way. Outcome statistics count a hit when the price went this way (neutral
    /// counts as a long bias).
    SignalDirection, "direction" {
        Bullish => "bullish",
        Bearish => "bearish",
        Neutral => "neutral",
    }
);

impl SignalKind {
    /// Which way this kind points.
    pub fn direction(self) -> SignalDirection {
        use SignalKind::*;
        match self {
            RsiOverbought | MacdBearishCross | DeathCross | BollingerBreakoutDown => {
                SignalDirection::Bearish
            }
            BollingerSqueeze | VolumeSurge => SignalDirection::Neutral,
            RsiOversold | MacdBullishCross | GoldenCross | BollingerBreakoutUp | New52wHigh
            | VcpSetup | VcpBreakout | ClosingPriceSetup | GapUp | OpeningRangeBreakout
            | VwapReclaim => SignalDirection::Bullish,
        }
    }
}

str_enum!(
    /// A signal's grade, from its score: A is the strongest.
    Grade, "grade" {
        A => "A",
        B => "B",
        C => "C",
        D => "D",
    }
);

impl Grade {
    /// Whether this grade is at least as strong as `minimum` (A meets a minimum of B).
    pub fn meets(self, minimum: Grade) -> bool {
        self <= minimum
    }
}

str_enum!(
    /// Delivery channel of a notification.
    Channel, "channel" {
        Telegram => "telegram",
    }
);

str_enum!(
    /// Telegram's text formatting modes.
    ParseMode, "parse_mode" {
        MarkdownV2 => "MarkdownV2",
        Html => "HTML",
    }
);

str_enum!(
    /// What a notification is about; users choose on/silent/off per kind.
    EventKind, "kind" {
        Alert => "alert",
        Signal => "signal",
        System => "system",
        Paper => "paper",
    }
);

/// One trade (or price update) on a venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub venue: String,
    pub symbol: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub qty: Decimal,
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<String>,
}

/// An OHLCV bar. `closed` is false for a bar still forming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    pub open_ts: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub open: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub high: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub low: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub close: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub volume: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<u64>,
    pub closed: bool,
}

/// A history load stored the closed candles of a series opening in `[first_open_ts,
/// last_open_ts]` (`tickwatch history load`, or a symbol's first alert). Published on the
/// market exchange after the candles are stored, in the series' shard: the signals role
/// warms the series up again from the store before its next candle, so a signal is
/// possible at the next bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLoaded {
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    pub first_open_ts: i64,
    pub last_open_ts: i64,
    /// How many candles the load stored.
    pub candles: u64,
}

/// A computed signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: Uuid,
    pub kind: SignalKind,
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    pub ts: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub score: u8,
    pub grade: Grade,
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// A user's price rule fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTriggered {
    pub id: Uuid,
    pub rule_id: i64,
    pub user_id: i64,
    pub venue: String,
    pub symbol: String,
    pub condition: Condition,
    #[serde(with = "rust_decimal::serde::str")]
    pub threshold: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    pub ts: i64,
}

/// A message to deliver to one chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Uuid,
    pub channel: Channel,
    pub chat_id: i64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_mode: Option<ParseMode>,
    /// Delivery is once per key: a redelivered notification with a sent key is not resent.
    pub dedupe_key: String,
    /// Added in v1 as optional: the event kind, for the user's on/silent/off preference.
    #[serde(default = "default_event_kind")]
    pub kind: EventKind,
    /// Optional: when the market event behind this notification happened (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_ts: Option<i64>,
    /// Optional: inline buttons under the message, in rows (an alert's pause, delete and
    /// snooze); a press comes back to the bot as its `data`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<Button>>,
    /// Optional: a chart to send with the text (`sendPhoto`, the text as its caption), drawn
    /// by the notifier from the stored candles when the user has charts on; when it cannot
    /// be drawn in time, the text goes out alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartRequest>,
}

/// What a notification's chart shows: the last `bars` candles of a series, the level an
/// alert crossed, the time of the candle a signal or firing came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartRequest {
    pub venue: String,
    pub symbol: String,
    pub interval: Interval,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub level: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_ts: Option<i64>,
    #[serde(default = "default_chart_bars")]
    pub bars: u16,
}

fn default_chart_bars() -> u16 {
    60
}

/// An inline button of a [`Notification`]: its label and the callback data Telegram hands
/// back to the bot when it is pressed (1 to 64 bytes, as Telegram allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    pub data: String,
}

/// Telegram's limit on a button's callback data.
pub const MAX_BUTTON_DATA_BYTES: usize = 64;

/// What a button under an alert's notification does to the rule; its callback data is
/// `<action>:<rule id>` (the alerts role sends the buttons, the bot answers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAction {
    Pause,
    Resume,
    Delete,
    /// Pause for an hour.
    Snooze,
}

impl AlertAction {
    fn name(self) -> &'static str {
        match self {
            AlertAction::Pause => "npause",
            AlertAction::Resume => "nresume",
            AlertAction::Delete => "ndel",
            AlertAction::Snooze => "nsnooze",
        }
    }

    /// The callback data of this action on `rule_id`.
    pub fn data(self, rule_id: i64) -> String {
        format!("{}:{rule_id}", self.name())
    }

    /// Reads callback data; `None` when it is not an alert action (the id may be bad).
    pub fn parse(data: &str) -> Option<(AlertAction, Option<i64>)> {
        let (name, id) = data.split_once(':').unwrap_or((data, ""));
        let action = [
            AlertAction::Pause,
            AlertAction::Resume,
            AlertAction::Delete,
            AlertAction::Snooze,
        ]
        .into_iter()
        .find(|a| a.name() == name)?;
        Some((action, id.parse().ok()))
    }
}

fn default_event_kind() -> EventKind {
    EventKind::Alert
}

/// Changes every alerts and notifier instance must apply at once.
// A control message is rare and short-lived (decoded, applied, dropped): boxing the rule
// would only add an allocation and churn every producer and consumer of the enum.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// A rule was created or changed (the rule carries its new version).
    RuleUpserted {
        rule: AlertRule,
    },
    /// A rule was deleted; `version` orders it against upserts.
    RuleDeleted {
        rule_id: i64,
        user_id: i64,
        version: i64,
    },
    SubscriptionUpserted {
        subscription: Subscription,
    },
    SubscriptionDeleted {
        subscription_id: i64,
        version: i64,
    },
    /// An admin held all notifications in the queue.
    Halt {
        #[serde(default)]
        by_chat: Option<i64>,
    },
    /// An admin released held notifications.
    Resume {
        #[serde(default)]
        by_chat: Option<i64>,
    },
}

/// What every message type shares: its AMQP `type`, its routing key, its checks.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: MessageKind;
    fn routing_key(&self) -> String;
    fn validate(&self) -> Result<()>;
    /// What a sharded queue spreads on, so one symbol always lands on one shard:
    /// `<venue>.<symbol>` for market data, `None` for the rest.
    fn shard_key(&self) -> Option<String> {
        None
    }
}

impl Message for Tick {
    fn shard_key(&self) -> Option<String> {
        Some(format!("{}.{}", self.venue, self.symbol))
    }
    const KIND: MessageKind = MessageKind::Tick;
    fn routing_key(&self) -> String {
        routing::tick(&self.venue, &self.symbol)
    }
    fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        validate_price("price", self.price)?;
        validate_non_negative("qty", self.qty)?;
        validate_ts("ts", self.ts)?;
        if let Some(id) = &self.trade_id
            && (id.is_empty() || id.len() > 64)
        {
            return Err(Error::invalid("trade_id", "must be 1 to 64 characters"));
        }
        Ok(())
    }
}

impl Message for Candle {
    fn shard_key(&self) -> Option<String> {
        Some(format!("{}.{}", self.venue, self.symbol))
    }
    const KIND: MessageKind = MessageKind::Candle;
    fn routing_key(&self) -> String {
        routing::candle(&self.venue, &self.symbol, self.interval)
    }
    fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        validate_ts("open_ts", self.open_ts)?;
        validate_price("open", self.open)?;
        validate_price("high", self.high)?;
        validate_price("low", self.low)?;
        validate_price("close", self.close)?;
        validate_non_negative("volume", self.volume)?;
        // Real feeds do print opens and closes a hair outside the range (two Yahoo SPY bars
        // do); only a high below the low makes the bar meaningless.
        if self.high < self.low {
            return Err(Error::invalid(
                "high",
                format!("high {} is below low {}", self.high, self.low),
            ));
        }
        Ok(())
    }
}

impl Message for Signal {
    fn shard_key(&self) -> Option<String> {
        Some(format!("{}.{}", self.venue, self.symbol))
    }
    const KIND: MessageKind = MessageKind::Signal;
    fn routing_key(&self) -> String {
        routing::signal(self.kind, &self.venue, &self.symbol)
    }
    fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        validate_ts("ts", self.ts)?;
        validate_price("price", self.price)?;
        if self.score > 100 {
            return Err(Error::invalid(
                "score",
                format!("{} is above 100", self.score),
            ));
        }
        Ok(())
    }
}

impl Message for HistoryLoaded {
    fn shard_key(&self) -> Option<String> {
        Some(format!("{}.{}", self.venue, self.symbol))
    }
    const KIND: MessageKind = MessageKind::History;
    fn routing_key(&self) -> String {
        routing::history(&self.venue, &self.symbol, self.interval)
    }
    fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        validate_ts("first_open_ts", self.first_open_ts)?;
        validate_ts("last_open_ts", self.last_open_ts)?;
        if self.first_open_ts > self.last_open_ts {
            return Err(Error::invalid("first_open_ts", "is after last_open_ts"));
        }
        Ok(())
    }
}

impl Message for AlertTriggered {
    fn shard_key(&self) -> Option<String> {
        Some(format!("{}.{}", self.venue, self.symbol))
    }
    const KIND: MessageKind = MessageKind::Alert;
    fn routing_key(&self) -> String {
        routing::alert(&self.venue, &self.symbol)
    }
    fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        validate_ts("ts", self.ts)?;
        validate_price("price", self.price)?;
        Ok(())
    }
}

impl Message for Notification {
    /// One chat's notifications stay in order when a notifier works on several at once.
    fn shard_key(&self) -> Option<String> {
        Some(self.chat_id.to_string())
    }
    const KIND: MessageKind = MessageKind::Notification;
    fn routing_key(&self) -> String {
        match (self.channel, self.kind) {
            (Channel::Telegram, EventKind::System) => routing::TELEGRAM_SYSTEM.to_string(),
            (Channel::Telegram, _) => routing::TELEGRAM.to_string(),
        }
    }
    fn validate(&self) -> Result<()> {
        if self.text.trim().is_empty() {
            return Err(Error::invalid("text", "is empty"));
        }
        if self.dedupe_key.is_empty() || self.dedupe_key.len() > 200 {
            return Err(Error::invalid("dedupe_key", "must be 1 to 200 characters"));
        }
        if self.chat_id == 0 {
            return Err(Error::invalid("chat_id", "is 0, which is no Telegram chat"));
        }
        if let Some(ts) = self.origin_ts {
            validate_ts("origin_ts", ts)?;
        }
        if self.buttons.len() > 8 || self.buttons.iter().any(|row| row.len() > 8) {
            return Err(Error::invalid("buttons", "at most 8 rows of 8"));
        }
        for button in self.buttons.iter().flatten() {
            if button.text.trim().is_empty() {
                return Err(Error::invalid("buttons", "a button's text is empty"));
            }
            if button.data.is_empty() || button.data.len() > MAX_BUTTON_DATA_BYTES {
                return Err(Error::invalid(
                    "buttons",
                    format!("a button's data must be 1 to {MAX_BUTTON_DATA_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

impl Message for Control {
    const KIND: MessageKind = MessageKind::Control;
    fn routing_key(&self) -> String {
        routing::CONTROL.to_string()
    }
    fn validate(&self) -> Result<()> {
        match self {
            Control::RuleUpserted { rule } => rule.spec.validate(),
            Control::SubscriptionUpserted { subscription } => subscription.validate(),
            _ => Ok(()),
        }
    }
}

/// The AMQP metadata of one message, in one place: the broker maps it onto properties
/// (`message_id`, `type`, `timestamp`, `app_id`) and headers (`tw-schema`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub message_id: Uuid,
    pub kind: MessageKind,
    pub schema_version: u32,
    pub routing_key: String,
    /// Seconds since the epoch, as AMQP's `timestamp` property has it.
    pub timestamp_s: u64,
}

/// A message encoded for the wire: its body and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub meta: Metadata,
}

/// Validates and encodes a message with a fresh UUID v7 message id.
pub fn encode<M: Message>(message: &M) -> Result<Encoded> {
    message.validate()?;
    let body = serde_json::to_vec(message).map_err(Error::from_json)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Encoded {
        body,
        meta: Metadata {
            message_id: Uuid::now_v7(),
            kind: M::KIND,
            schema_version: SCHEMA_VERSION,
            routing_key: message.routing_key(),
            timestamp_s: now.as_secs(),
        },
    })
}

/// Decodes and validates a body; the JSON must be this message's shape.
pub fn decode<M: Message>(body: &[u8]) -> Result<M> {
    let message: M = serde_json::from_slice(body).map_err(Error::from_json)?;
    message.validate()?;
    Ok(message)
}

/// Checks the `tw-schema` header (given as text; absent means version 1, the first).
pub fn check_schema_version(header: Option<&str>) -> Result<()> {
    match header {
        None => Ok(()),
        Some(v) if v.trim() == SCHEMA_VERSION.to_string() => Ok(()),
        Some(v) => Err(Error::SchemaVersion {
            found: v.to_string(),
            expected: SCHEMA_VERSION,
        }),
    }
}

/// Checks the AMQP `type` property against the expected message (absent is accepted).
pub fn check_kind<M: Message>(type_property: Option<&str>) -> Result<()> {
    match type_property {
        None => Ok(()),
        Some(t) if t == M::KIND.as_str() => Ok(()),
        Some(t) => Err(Error::WrongType {
            expected: M::KIND.as_str(),
            found: t.to_string(),
        }),
    }
}

/// A UUID that is the same every time for the same inputs, laid out like a v7 UUID (the
/// time first, so ids sort by time) with the rest from a SHA-256 of `parts`. Used where a
/// redelivered input must map to the same output id (signals, alert events).
pub fn deterministic_id(ts_ms: i64, parts: &[&str]) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    let ts = (ts_ms.max(0) as u64).to_be_bytes();
    bytes[..6].copy_from_slice(&ts[2..]);
    bytes[6..].copy_from_slice(&digest[..10]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    Uuid::from_bytes(bytes)
}

/// A venue is lower-case letters, digits, `_` or `-` (it is one word of a routing key).
pub fn validate_venue(venue: &str) -> Result<()> {
    if venue.is_empty() {
        return Err(Error::invalid("venue", "is empty"));
    }
    if venue.len() > 32 {
        return Err(Error::invalid("venue", "is longer than 32 characters"));
    }
    if !venue
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(Error::invalid(
            "venue",
            format!("`{venue}` may hold only lower-case letters, digits, `_` and `-`"),
        ));
    }
    Ok(())
}

/// A symbol is upper-case as the venue spells it: letters, digits and `.-_/:`.
pub fn validate_symbol(symbol: &str) -> Result<()> {
    if symbol.trim().is_empty() {
        return Err(Error::invalid("symbol", "is empty"));
    }
    if symbol.len() > 32 {
        return Err(Error::invalid("symbol", "is longer than 32 characters"));
    }
    if let Some(c) = symbol
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || ".-_/:".contains(*c)))
    {
        let hint = if c.is_ascii_lowercase() {
            format!(" (write it upper-case: `{}`)", symbol.to_ascii_uppercase())
        } else {
            String::new()
        };
        return Err(Error::invalid(
            "symbol",
            format!("`{symbol}` holds `{c}`; use upper-case letters, digits and `.-_/:`{hint}"),
        ));
    }
    Ok(())
}

pub fn validate_price(field: &'static str, value: Decimal) -> Result<()> {
    if value <= Decimal::ZERO {
        return Err(Error::invalid(
            field,
            format!("{value} is not a price: it must be above zero"),
        ));
    }
    Ok(())
}

pub fn validate_non_negative(field: &'static str, value: Decimal) -> Result<()> {
    if value < Decimal::ZERO {
        return Err(Error::invalid(field, format!("{value} is negative")));
    }
    Ok(())
}

pub fn validate_ts(field: &'static str, ts: i64) -> Result<()> {
    if ts < MIN_TS_MS {
        let hint = if ts > 0 && ts < MIN_TS_MS / 1000 * 100 {
            " — it looks like seconds; the contract wants milliseconds"
        } else {
            ""
        };
        return Err(Error::invalid(
            field,
            format!("{ts} is before 1971-01-01 in epoch milliseconds{hint}"),
        ));
    }
    if ts > MAX_TS_MS {
        return Err(Error::invalid(
            field,
            format!("{ts} is after 2100-01-01 in epoch milliseconds — micro- or nanoseconds?"),
        ));
    }
    Ok(())
}
