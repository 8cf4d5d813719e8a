//! The alert rule and signal subscription models: one shape and one validation, shared by
//! the HTTP API, the Telegram bot, the database and the alerts engine.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::wire::{
    Grade, Interval, SignalKind, str_enum, validate_price, validate_symbol, validate_ts,
    validate_venue,
};

str_enum!(
    /// When a price rule is true, as TradingView users know the conditions.
    Condition, "condition" {
        GreaterThan => "greater_than",
        LessThan => "less_than",
        Crossing => "crossing",
        CrossingUp => "crossing_up",
        CrossingDown => "crossing_down",
        EnteringChannel => "entering_channel",
        ExitingChannel => "exiting_channel",
        InsideChannel => "inside_channel",
        OutsideChannel => "outside_channel",
        MovingUp => "moving_up",
        MovingDown => "moving_down",
        MovingUpPct => "moving_up_pct",
        MovingDownPct => "moving_down_pct",
        Expression => "expression",
    }
);

impl Condition {
    /// Parses the condition as users type it in the bot: the full name or a short form
    /// (`>`, `<`, `cross`, `cross_up`, `x>`, `inside`, `up`, `up%` …).
    pub fn parse_loose(text: &str) -> Result<Self> {
        let lowered = text.trim().to_ascii_lowercase();
        let by_alias = match lowered.as_str() {
            ">" | ">=" | "above" | "gt" => Some(Condition::GreaterThan),
            "<" | "<=" | "below" | "lt" => Some(Condition::LessThan),
            "cross" | "crosses" | "x" => Some(Condition::Crossing),
            "cross_up" | "crosses_up" | "x>" | "↑" => Some(Condition::CrossingUp),
            "cross_down" | "crosses_down" | "x<" | "↓" => Some(Condition::CrossingDown),
            "enter" | "entering" => Some(Condition::EnteringChannel),
            "exit" | "exiting" => Some(Condition::ExitingChannel),
            "inside" => Some(Condition::InsideChannel),
            "outside" => Some(Condition::OutsideChannel),
            "up" | "rise" => Some(Condition::MovingUp),
            "down" | "fall" => Some(Condition::MovingDown),
            "up%" => Some(Condition::MovingUpPct),
            "down%" => Some(Condition::MovingDownPct),
            _ => None,
        };
        match by_alias {
            Some(c) => Ok(c),
            None => lowered.parse(),
        }
    }

    /// Conditions on a channel `[low, high]`.
    pub fn is_channel(self) -> bool {
        matches!(
            self,
            Condition::EnteringChannel
                | Condition::ExitingChannel
                | Condition::InsideChannel
                | Condition::OutsideChannel
        )
    }

    /// Conditions on the change over a time window (`window_s`).
    pub fn is_moving(self) -> bool {
        self.is_moving_pct() || self.is_moving_amount()
    }

    /// Moving by a percentage (`pct`).
    pub fn is_moving_pct(self) -> bool {
        matches!(self, Condition::MovingUpPct | Condition::MovingDownPct)
    }

    /// Moving by an amount in price units (`threshold`).
    pub fn is_moving_amount(self) -> bool {
        matches!(self, Condition::MovingUp | Condition::MovingDown)
    }

    /// An indicator or multi-condition rule: its `expression` decides, at bar close.
    pub fn is_expression(self) -> bool {
        self == Condition::Expression
    }

    /// Whether the condition is a state (true or false at one price) rather than an event
    /// between two prices.
    pub fn is_state(self) -> bool {
        matches!(
            self,
            Condition::GreaterThan
                | Condition::LessThan
                | Condition::InsideChannel
                | Condition::OutsideChannel
        ) || self.is_moving()
    }
}

str_enum!(
    /// How often a rule may fire.
    Trigger, "trigger" {
        Once => "once",
        OncePerBar => "once_per_bar",
        OncePerBarClose => "once_per_bar_close",
        EveryTime => "every_time",
    }
);

impl Trigger {
    /// Whether the trigger counts bars of the rule's `interval`.
    pub fn needs_interval(self) -> bool {
        matches!(self, Trigger::OncePerBar | Trigger::OncePerBarClose)
    }
}

/// The longest cooldown, window or similar duration a rule may ask for: 30 days.
pub const MAX_DURATION_S: u64 = 30 * 24 * 3600;
/// The longest message template.
pub const MAX_TEMPLATE_CHARS: usize = 1_000;

/// What a user asks for: the body of `POST /v1/alerts` and of `/alert` in the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub venue: String,
    pub symbol: String,
    pub condition: Condition,
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub threshold: Option<Decimal>,
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub low: Option<Decimal>,
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub high: Option<Decimal>,
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pct: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    #[serde(default = "default_trigger")]
    pub trigger: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default)]
    pub cooldown_s: u64,
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Re-arm band in percent: after firing, the price must move this far back across the
    /// threshold before the rule can fire again (default: the engine's setting).
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub hysteresis_pct: Option<Decimal>,
    /// The message, with placeholders such as `{{symbol}}` and `{{price}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// For `condition: expression`: indicator and multi-condition clauses joined by `and`
    /// (see [`crate::expr`]), e.g. `rsi(14,1h) < 30 and close(1d) > sma(200,1d)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

fn default_trigger() -> Trigger {
    Trigger::Once
}

impl RuleSpec {
    /// A price rule with the defaults: fires once.
    pub fn price(venue: &str, symbol: &str, condition: Condition, threshold: Decimal) -> Self {
        RuleSpec {
            venue: venue.to_string(),
            symbol: symbol.to_string(),
            condition,
            threshold: Some(threshold),
            low: None,
            high: None,
            pct: None,
            window_s: None,
            trigger: Trigger::Once,
            interval: None,
            cooldown_s: 0,
            expires_at: None,
            hysteresis_pct: None,
            template: None,
            expression: None,
        }
    }

    /// An indicator or multi-condition rule: `expression` at bar close, once.
    pub fn expression(venue: &str, symbol: &str, expression: &str) -> Self {
        RuleSpec {
            threshold: None,
            expression: Some(expression.to_string()),
            ..RuleSpec::price(venue, symbol, Condition::Expression, Decimal::ZERO)
        }
    }

    /// The parsed expression of an `expression` rule (`None` for a price rule).
    pub fn parsed_expression(&self) -> Result<Option<crate::expr::Expression>> {
        match (&self.expression, self.condition.is_expression()) {
            (Some(text), true) => crate::expr::Expression::parse(text, self.interval).map(Some),
            _ => Ok(None),
        }
    }

    /// The same rule with a channel's bounds in order — clients may give `low` and `high`
    /// either way round (a schema cannot compare two fields, so the API takes both) — and
    /// an expression in its canonical form (`rsi(14,1h) < 30`, every interval written), as
    /// the API's schema states it; one that does not parse stays as it is, for the
    /// validation to name.
    pub fn normalized(mut self) -> Self {
        if let (Some(low), Some(high)) = (self.low, self.high)
            && low > high
        {
            (self.low, self.high) = (Some(high), Some(low));
        }
        if let Ok(Some(expression)) = self.parsed_expression() {
            self.expression = Some(expression.to_string());
        }
        self
    }

    /// Checks that the fields fit together; names the first field that does not.
    pub fn validate(&self) -> Result<()> {
        validate_venue(&self.venue)?;
        validate_symbol(&self.symbol)?;
        let expression = self.condition.is_expression();
        let (needs_threshold, needs_channel, needs_pct) = (
            !self.condition.is_channel() && !self.condition.is_moving_pct() && !expression,
            self.condition.is_channel(),
            self.condition.is_moving_pct(),
        );
        let forbid = |field: &'static str, present: bool| -> Result<()> {
            if present {
                Err(Error::invalid(
                    field,
                    format!("does not apply to `{}`", self.condition),
                ))
            } else {
                Ok(())
            }
        };
        if needs_threshold {
            let threshold = self.threshold.ok_or_else(|| {
                Error::invalid("threshold", format!("is required for `{}`", self.condition))
            })?;
            // For `moving_up` / `moving_down` the threshold is the size of the move, in the
            // symbol's price units.
            validate_price("threshold", threshold)?;
        } else {
            forbid("threshold", self.threshold.is_some())?;
        }
        if needs_channel {
            let low = self.low.ok_or_else(|| {
                Error::invalid("low", format!("is required for `{}`", self.condition))
            })?;
            let high = self.high.ok_or_else(|| {
                Error::invalid("high", format!("is required for `{}`", self.condition))
            })?;
            validate_price("low", low)?;
            validate_price("high", high)?;
            if low > high {
                return Err(Error::invalid(
                    "low",
                    format!("{low} must be at most high {high}"),
                ));
            }
        } else {
            forbid("low", self.low.is_some())?;
            forbid("high", self.high.is_some())?;
        }
        if needs_pct {
            let pct = self.pct.ok_or_else(|| {
                Error::invalid("pct", format!("is required for `{}`", self.condition))
            })?;
            if pct <= Decimal::ZERO || pct > Decimal::from(1000) {
                return Err(Error::invalid("pct", format!("{pct} is not in (0, 1000]")));
            }
        } else {
            forbid("pct", self.pct.is_some())?;
        }
        if self.condition.is_moving() {
            let window = self.window_s.ok_or_else(|| {
                Error::invalid("window_s", format!("is required for `{}`", self.condition))
            })?;
            if window == 0 || window > MAX_DURATION_S {
                return Err(Error::invalid(
                    "window_s",
                    format!("{window} is not between 1 and {MAX_DURATION_S} seconds"),
                ));
            }
        } else {
            forbid("window_s", self.window_s.is_some())?;
        }
        if expression {
            let text = self.expression.as_deref().ok_or_else(|| {
                Error::invalid(
                    "expression",
                    "is required for `expression`, e.g. \"rsi(14,1h) < 30\"",
                )
            })?;
            crate::expr::Expression::parse(text, self.interval)?;
            // An expression re-arms at a close where its clauses stop holding: no band.
            forbid("hysteresis_pct", self.hysteresis_pct.is_some())?;
            if self.trigger == Trigger::OncePerBar {
                return Err(Error::invalid(
                    "trigger",
                    "an expression is evaluated at bar close: use `once_per_bar_close` (or `once`, `every_time`)",
                ));
            }
        } else {
            forbid("expression", self.expression.is_some())?;
        }
        match (self.trigger.needs_interval(), self.interval) {
            (true, None) if !expression => {
                return Err(Error::invalid(
                    "interval",
                    format!("is required for `{}` (e.g. \"1h\")", self.trigger),
                ));
            }
            // An expression's interval is its operands' default, whatever the trigger.
            (false, Some(_)) if !expression => {
                return Err(Error::invalid(
                    "interval",
                    format!(
                        "applies only to `once_per_bar` and `once_per_bar_close`, not `{}`",
                        self.trigger
                    ),
                ));
            }
            _ => {}
        }
        if self.cooldown_s > MAX_DURATION_S {
            return Err(Error::invalid(
                "cooldown_s",
                format!("{} is above {MAX_DURATION_S} seconds", self.cooldown_s),
            ));
        }
        if let Some(expires_at) = self.expires_at {
            validate_ts("expires_at", expires_at)?;
        }
        if let Some(h) = self.hysteresis_pct
            && (h < Decimal::ZERO || h > Decimal::from(50))
        {
            return Err(Error::invalid(
                "hysteresis_pct",
                format!("{h} is not in [0, 50]"),
            ));
        }
        if let Some(template) = &self.template {
            if template.trim().is_empty() {
                return Err(Error::invalid("template", "is empty"));
            }
            if template.chars().count() > MAX_TEMPLATE_CHARS {
                return Err(Error::invalid(
                    "template",
                    format!("is longer than {MAX_TEMPLATE_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }

    /// Like [`RuleSpec::validate`], and refuses an expiry already past at `now_ms`.
    pub fn validate_at(&self, now_ms: i64) -> Result<()> {
        self.validate()?;
        match self.expires_at {
            Some(at) if at <= now_ms => Err(Error::invalid("expires_at", "is in the past")),
            _ => Ok(()),
        }
    }

    /// The value a firing reports as its threshold: the threshold, or the channel bound
    /// that matters, or the percentage.
    pub fn reported_threshold(&self, crossed_high: bool) -> Decimal {
        match self.condition {
            c if c.is_channel() => {
                if crossed_high {
                    self.high.unwrap_or_default()
                } else {
                    self.low.unwrap_or_default()
                }
            }
            c if c.is_moving_pct() => self.pct.unwrap_or_default(),
            _ => self.threshold.unwrap_or_default(),
        }
    }
}

impl RuleSpec {
    /// The rule on one line, its prices written by `price` (the bot shows `₩74,800`).
    pub fn describe(&self, price: impl Fn(Decimal) -> String) -> String {
        let mut text = format!("{} {} {}", self.venue, self.symbol, self.condition);
        if let Some(expression) = &self.expression {
            text.push_str(&format!(" {expression}"));
        }
        if let Some(t) = self.threshold {
            text.push_str(&format!(" {}", price(t)));
            if let Some(w) = self.window_s {
                text.push_str(&format!(" in {w}s"));
            }
        }
        if let (Some(l), Some(h)) = (self.low, self.high) {
            text.push_str(&format!(" [{}, {}]", price(l), price(h)));
        }
        if let (Some(p), Some(w)) = (self.pct, self.window_s) {
            text.push_str(&format!(" {p}% in {w}s"));
        }
        text.push_str(&format!(" ({}", self.trigger));
        if let Some(i) = self.interval {
            text.push_str(&format!(" {i}"));
        }
        if self.cooldown_s > 0 {
            text.push_str(&format!(", cooldown {}s", self.cooldown_s));
        }
        text.push(')');
        text
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|d| d.to_string()))
    }
}

/// A stored rule: the spec plus its identity, owner and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: i64,
    pub user_id: i64,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub active: bool,
    /// Bumped on every change; an alerts instance ignores an update older than what it holds.
    pub version: i64,
    pub created_at: i64,
    /// When the rule last fired (epoch ms), as the database records it (`alert_rules.
    /// last_fired_at`, set by the alerts role with each stored firing). A restarted alerts
    /// engine resumes the rule's cooldown / bar from it. Absent when it never fired, so the
    /// JSON of a rule that never fired is as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<i64>,
}

/// A user's subscription to a kind of signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: i64,
    pub user_id: i64,
    pub kind: SignalKind,
    /// `None`: every symbol.
    #[serde(default)]
    pub symbol: Option<String>,
    pub min_grade: Grade,
    pub active: bool,
    pub version: i64,
}

impl Subscription {
    pub fn validate(&self) -> Result<()> {
        if let Some(symbol) = &self.symbol {
            validate_symbol(symbol)?;
        }
        Ok(())
    }

    /// Whether a signal of this kind, symbol and grade is one the user asked for.
    pub fn matches(&self, kind: SignalKind, symbol: &str, grade: Grade) -> bool {
        self.active
            && self.kind == kind
            && self.symbol.as_deref().is_none_or(|s| s == symbol)
            && grade.meets(self.min_grade)
    }
}
