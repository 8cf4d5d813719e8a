//! `/v1/paper/strategies`: the caller's paper strategies (모의매매) — their rules, open
//! positions, trades (paged, newest first), equity per day and summary statistics, overall
//! and per signal kind. Owner-only, like alerts: another user's strategy is a 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use tickwatch_paper::{Fees, Sizing, Strategy, Summary};
use tickwatch_schema::db::entity::{paper_equity, paper_position};
use tickwatch_schema::wire::{Grade, SignalDirection, SignalKind};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::fields::{
    IdCursor, PageLimit, Percent, Price, Symbol, Venue, integer_between, patch, present, whole_in,
};
use super::{ApiState, Auth, JsonBody, Params, path_id};
use crate::error::Result;
use crate::services::paper::{PaperSummary, StrategyPatch, StrategyView};

macro_rules! text_field {
    ($(#[$meta:meta])* $name:ident($inner:ty), $pattern:expr, $expected:literal, $example:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub $inner);

        impl $name {
            pub const PATTERN: &'static str = $pattern;
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                use std::sync::LazyLock;
                static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
                    regex::Regex::new($name::PATTERN).expect("the pattern compiles")
                });
                let text = String::deserialize(d)?;
                if !RE.is_match(&text) {
                    return Err(de::Error::custom(format!(
                        "`{}` is not {}, such as {}",
                        text.chars().take(80).collect::<String>(),
                        $expected,
                        $example
                    )));
                }
                text.parse::<$inner>()
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
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

text_field!(
    /// A strategy's name: 1 to 64 characters, not starting with a space, no control
    /// characters.
    StrategyName(String),
    r"^[^\x00-\x20\x7f][^\x00-\x1f\x7f]{0,63}$",
    "1 to 64 characters, not starting with a space",
    "`\"VCP on KOSDAQ\"`"
);

text_field!(
    /// A currency code in upper case (`KRW`, `USDT`).
    CurrencyCode(String),
    r"^[A-Z]{2,10}$",
    "a currency code in upper case",
    "`\"KRW\"`"
);

text_field!(
    /// A percentage above 0 and at most 100.
    Percent100(Decimal),
    r"^(100(\.0{1,8})?|[1-9][0-9]?(\.[0-9]{1,8})?|0\.[0-9]{0,7}[1-9][0-9]{0,7})$",
    "a percentage above 0 and at most 100, as a decimal string",
    "`\"5\"`"
);

text_field!(
    /// A fee or slippage in percent, from 0 up to (not including) 10.
    FeePercent(Decimal),
    r"^[0-9](\.[0-9]{1,8})?$",
    "a percentage from 0 to under 10, as a decimal string",
    "`\"0.015\"`"
);

/// A signal kind a strategy can follow: bullish or neutral (paper trading is long only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowedKind(pub SignalKind);

impl FollowedKind {
    fn allowed() -> impl Iterator<Item = SignalKind> {
        SignalKind::ALL
            .iter()
            .copied()
            .filter(|k| k.direction() != SignalDirection::Bearish)
    }
}

impl<'de> Deserialize<'de> for FollowedKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let kind = SignalKind::deserialize(d)?;
        if kind.direction() == SignalDirection::Bearish {
            return Err(de::Error::custom(format!(
                "`{kind}` is bearish: paper trading follows signals long only"
            )));
        }
        Ok(FollowedKind(kind))
    }
}

impl PartialSchema for FollowedKind {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = FollowedKind::allowed().map(SignalKind::as_str).collect();
        tickwatch_schema::wire::string_enum_schema(names.into_iter())
    }
}

impl ToSchema for FollowedKind {}

/// 1 to 32 signal kinds to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedKinds(pub Vec<SignalKind>);

impl<'de> Deserialize<'de> for FollowedKinds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let kinds = Vec::<FollowedKind>::deserialize(d)?;
        if kinds.is_empty() || kinds.len() > 32 {
            return Err(de::Error::custom("give 1 to 32 signal kinds"));
        }
        Ok(FollowedKinds(kinds.into_iter().map(|k| k.0).collect()))
    }
}

impl PartialSchema for FollowedKinds {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(FollowedKind::schema())
            .min_items(Some(1))
            .max_items(Some(32))
            .description(Some("The signal kinds followed (bullish or neutral ones)"))
            .into()
    }
}

impl ToSchema for FollowedKinds {}

/// A list of at most `MAX` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Few<T, const MAX: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Few<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        if items.len() > MAX {
            return Err(de::Error::custom(format!("at most {MAX} items")));
        }
        Ok(Few(items))
    }
}

impl<T: ToSchema, const MAX: usize> PartialSchema for Few<T, MAX> {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(T::schema())
            .max_items(Some(MAX))
            .into()
    }
}

impl<T: ToSchema, const MAX: usize> ToSchema for Few<T, MAX> {}

/// Bars a position is held at most: 1 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxBars(pub u32);

impl<'de> Deserialize<'de> for MaxBars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // A whole number, also when written `20.0` (JSON does not tell them apart).
        whole_in(d, 1, 10_000).map(|n| MaxBars(n as u32))
    }
}

impl PartialSchema for MaxBars {
    fn schema() -> RefOr<Schema> {
        integer_between(KnownFormat::Int32, 1, 10_000).into()
    }
}

impl ToSchema for MaxBars {}

/// How much one entry buys: `{"fixed": "<amount>"}` of the strategy's currency, or
/// `{"pct_equity": "<percent>"}` of its equity.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SizingIn {
    Fixed(Price),
    PctEquity(Percent100),
}

impl PartialSchema for SizingIn {
    fn schema() -> RefOr<Schema> {
        super::fields::one_key_of(
            &[
                ("fixed", Price::schema()),
                ("pct_equity", Percent100::schema()),
            ],
            "A fixed amount of the strategy's currency per entry, or a percentage of its equity",
        )
    }
}

impl ToSchema for SizingIn {}

impl From<SizingIn> for Sizing {
    fn from(s: SizingIn) -> Self {
        match s {
            SizingIn::Fixed(p) => Sizing::Fixed(p.0),
            SizingIn::PctEquity(p) => Sizing::PctEquity(p.0),
        }
    }
}

/// Trading costs in percent (the venue's defaults when left out: KRX 0.015 % commission
/// and 0.18 % sell tax, Upbit 0.05 %, others 0.1 %).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeesIn {
    pub commission_pct: FeePercent,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub sell_tax_pct: Option<FeePercent>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub slippage_pct: Option<FeePercent>,
}

impl From<FeesIn> for Fees {
    fn from(f: FeesIn) -> Self {
        Fees {
            commission_pct: f.commission_pct.0,
            sell_tax_pct: f.sell_tax_pct.map_or(Decimal::ZERO, |x| x.0),
            slippage_pct: f.slippage_pct.map_or(Decimal::ZERO, |x| x.0),
        }
    }
}

/// The body of `POST /v1/paper/strategies`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name":"MACD on KRX","kinds":["macd_bullish_cross"],"venues":["krx"],
    "starting_balance":"10000000","currency":"KRW","sizing":{"fixed":"1000000"},
    "take_profit_pct":"8","stop_loss_pct":"4","max_bars":20}))]
pub struct StrategyIn {
    pub name: StrategyName,
    pub kinds: FollowedKinds,
    /// The weakest grade followed (default `D`: every grade).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub min_grade: Option<Grade>,
    /// Only these venues (default: any).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Vec<Venue>>, max_items = 16)]
    pub venues: Option<Few<Venue, 16>>,
    /// Only these symbols (default: any).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Vec<Symbol>>, max_items = 200)]
    pub symbols: Option<Few<Symbol, 200>>,
    pub starting_balance: Price,
    pub currency: CurrencyCode,
    pub sizing: SizingIn,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub take_profit_pct: Option<Percent>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub stop_loss_pct: Option<Percent100>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub trailing_stop_pct: Option<Percent100>,
    /// Sell at the close of the position's Nth bar.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub max_bars: Option<MaxBars>,
    /// Sell at the next open after a bearish signal of the symbol (same interval).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub exit_on_opposite: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub fees: Option<FeesIn>,
}

impl StrategyIn {
    pub fn into_strategy(self) -> Strategy {
        Strategy {
            id: 0,
            name: self.name.0,
            kinds: self.kinds.0,
            min_grade: self.min_grade.unwrap_or(Grade::D),
            venues: self
                .venues
                .map_or_else(Vec::new, |v| v.0.into_iter().map(|x| x.0).collect()),
            symbols: self
                .symbols
                .map_or_else(Vec::new, |v| v.0.into_iter().map(|x| x.0).collect()),
            starting_balance: self.starting_balance.0,
            currency: self.currency.0,
            sizing: self.sizing.into(),
            take_profit_pct: self.take_profit_pct.map(|p| p.0),
            stop_loss_pct: self.stop_loss_pct.map(|p| p.0),
            trailing_stop_pct: self.trailing_stop_pct.map(|p| p.0),
            max_bars: self.max_bars.map(|m| m.0),
            exit_on_opposite: self.exit_on_opposite.unwrap_or(false),
            fees: self.fees.map(Fees::from),
            since_ts: 0,
        }
    }
}

/// The body of `PATCH /v1/paper/strategies/{id}`: a JSON merge patch of the rules (`null`
/// removes an optional exit or the custom fees) and `active` (pause or resume). The
/// starting balance and currency stay as the account started.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyPatchIn {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<StrategyName>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub kinds: Option<FollowedKinds>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub min_grade: Option<Grade>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Vec<Venue>>, max_items = 16)]
    pub venues: Option<Few<Venue, 16>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, value_type = Option<Vec<Symbol>>, max_items = 200)]
    pub symbols: Option<Few<Symbol, 200>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub sizing: Option<SizingIn>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Percent>)]
    pub take_profit_pct: Option<Option<Percent>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Percent100>)]
    pub stop_loss_pct: Option<Option<Percent100>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Percent100>)]
    pub trailing_stop_pct: Option<Option<Percent100>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<MaxBars>)]
    pub max_bars: Option<Option<MaxBars>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub exit_on_opposite: Option<bool>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<FeesIn>)]
    pub fees: Option<Option<FeesIn>>,
    /// `false` pauses the strategy (no new entries; open positions still exit), `true`
    /// resumes it, following signals from then on.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

impl From<StrategyPatchIn> for StrategyPatch {
    fn from(p: StrategyPatchIn) -> Self {
        fn inner<T, U>(v: Option<Option<T>>, f: impl Fn(T) -> U) -> Option<Option<U>> {
            v.map(|o| o.map(f))
        }
        StrategyPatch {
            name: p.name.map(|n| n.0),
            kinds: p.kinds.map(|k| k.0),
            min_grade: p.min_grade,
            venues: p.venues.map(|v| v.0.into_iter().map(|x| x.0).collect()),
            symbols: p.symbols.map(|v| v.0.into_iter().map(|x| x.0).collect()),
            sizing: p.sizing.map(Sizing::from),
            take_profit_pct: inner(p.take_profit_pct, |x| x.0),
            stop_loss_pct: inner(p.stop_loss_pct, |x| x.0),
            trailing_stop_pct: inner(p.trailing_stop_pct, |x| x.0),
            max_bars: inner(p.max_bars, |x| x.0),
            exit_on_opposite: p.exit_on_opposite,
            fees: inner(p.fees, Fees::from),
            active: p.active,
        }
    }
}

/// How much one entry buys, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SizingOut {
    /// `fixed` or `pct_equity`.
    pub mode: String,
    pub value: String,
}

/// Trading costs in percent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeesOut {
    pub commission_pct: String,
    pub sell_tax_pct: String,
    pub slippage_pct: String,
}

impl From<Fees> for FeesOut {
    fn from(f: Fees) -> Self {
        FeesOut {
            commission_pct: f.commission_pct.to_string(),
            sell_tax_pct: f.sell_tax_pct.to_string(),
            slippage_pct: f.slippage_pct.to_string(),
        }
    }
}

/// A stored paper strategy.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StrategyOut {
    pub id: i64,
    pub name: String,
    pub kinds: Vec<SignalKind>,
    pub min_grade: Grade,
    pub venues: Vec<String>,
    pub symbols: Vec<String>,
    pub starting_balance: String,
    pub currency: String,
    pub sizing: SizingOut,
    pub take_profit_pct: Option<String>,
    pub stop_loss_pct: Option<String>,
    pub trailing_stop_pct: Option<String>,
    pub max_bars: Option<u32>,
    pub exit_on_opposite: bool,
    /// The custom costs; `null`: each venue's defaults.
    pub fees: Option<FeesOut>,
    pub active: bool,
    /// The cash now (the rest of the equity is in open positions).
    pub cash: String,
    /// Signals that come out from this time on are followed (epoch ms; a replay of old
    /// candles gives signals with old market times, and they are followed).
    pub follows_since: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<StrategyView> for StrategyOut {
    fn from(v: StrategyView) -> Self {
        let s = v.strategy;
        let text = |d: Option<Decimal>| d.map(|d| d.to_string());
        StrategyOut {
            id: s.id,
            name: s.name,
            kinds: s.kinds,
            min_grade: s.min_grade,
            venues: s.venues,
            symbols: s.symbols,
            starting_balance: s.starting_balance.to_string(),
            currency: s.currency,
            sizing: match s.sizing {
                Sizing::Fixed(x) => SizingOut {
                    mode: "fixed".into(),
                    value: x.to_string(),
                },
                Sizing::PctEquity(x) => SizingOut {
                    mode: "pct_equity".into(),
                    value: x.to_string(),
                },
            },
            take_profit_pct: text(s.take_profit_pct),
            stop_loss_pct: text(s.stop_loss_pct),
            trailing_stop_pct: text(s.trailing_stop_pct),
            max_bars: s.max_bars,
            exit_on_opposite: s.exit_on_opposite,
            fees: s.fees.map(FeesOut::from),
            active: v.active,
            cash: v.cash.to_string(),
            follows_since: s.since_ts,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// The caller's paper strategies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyList {
    pub items: Vec<StrategyOut>,
}

/// A pending entry (buys at the next open) or an open position.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PositionOut {
    pub id: i64,
    /// `pending` or `open`.
    pub status: String,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    pub signal_id: String,
    pub signal_kind: String,
    pub signal_ts: i64,
    pub quantity: Option<String>,
    pub entry_ts: Option<i64>,
    pub entry_price: Option<String>,
    /// The last close it is valued at, and the gain or loss there before selling costs.
    pub mark_price: Option<String>,
    pub unrealized_pnl: Option<String>,
    pub bars: i32,
}

impl From<paper_position::Model> for PositionOut {
    fn from(r: paper_position::Model) -> Self {
        let d = |t: &Option<String>| t.as_deref().and_then(|x| x.parse::<Decimal>().ok());
        let unrealized = match (
            d(&r.quantity),
            d(&r.entry_price),
            d(&r.mark_price),
            d(&r.entry_fee),
        ) {
            (Some(q), Some(e), Some(m), fee) => {
                Some((q * (m - e) - fee.unwrap_or_default()).to_string())
            }
            _ => None,
        };
        PositionOut {
            id: r.id,
            status: r.status,
            venue: r.venue,
            symbol: r.symbol,
            interval: r.interval,
            signal_id: r.signal_id,
            signal_kind: r.signal_kind,
            signal_ts: r.signal_ts,
            quantity: r.quantity,
            entry_ts: r.entry_ts,
            entry_price: r.entry_price,
            mark_price: r.mark_price,
            unrealized_pnl: unrealized,
            bars: r.bars,
        }
    }
}

/// A strategy's pending entries and open positions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PositionList {
    pub items: Vec<PositionOut>,
}

/// A closed simulated trade.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TradeOut {
    pub id: i64,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    pub signal_id: String,
    pub signal_kind: String,
    pub quantity: String,
    pub entry_ts: i64,
    pub entry_price: String,
    pub exit_ts: i64,
    pub exit_price: String,
    /// `stop_loss`, `trailing_stop`, `take_profit`, `max_bars`, `opposite_signal` or
    /// `next_open`.
    pub exit_reason: String,
    /// Commission and tax, both sides.
    pub fees: String,
    /// After fees.
    pub pnl: String,
    pub return_pct: String,
    pub bars: i32,
}

impl From<paper_position::Model> for TradeOut {
    fn from(r: paper_position::Model) -> Self {
        let text = |t: Option<String>| t.unwrap_or_default();
        TradeOut {
            id: r.id,
            venue: r.venue,
            symbol: r.symbol,
            interval: r.interval,
            signal_id: r.signal_id,
            signal_kind: r.signal_kind,
            quantity: text(r.quantity),
            entry_ts: r.entry_ts.unwrap_or_default(),
            entry_price: text(r.entry_price),
            exit_ts: r.exit_ts.unwrap_or_default(),
            exit_price: text(r.exit_price),
            exit_reason: text(r.exit_reason),
            fees: text(r.fees),
            pnl: text(r.pnl),
            return_pct: text(r.return_pct),
            bars: r.bars,
        }
    }
}

super::page_type!(
    /// A page of a strategy's trades, newest first.
    TradePage,
    TradeOut
);

/// A strategy's equity at the end of a market day (KRX days in Seoul time).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EquityPoint {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub equity: String,
    pub cash: String,
}

impl From<paper_equity::Model> for EquityPoint {
    fn from(r: paper_equity::Model) -> Self {
        EquityPoint {
            day: r.day,
            equity: r.equity,
            cash: r.cash,
        }
    }
}

/// A strategy's equity curve, oldest day first (days without trading are left out).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EquityCurve {
    pub starting_balance: String,
    pub items: Vec<EquityPoint>,
}

/// Statistics of a set of closed trades (percentages as decimal strings).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsOut {
    pub trades: usize,
    pub wins: usize,
    pub win_rate_pct: String,
    pub average_return_pct: String,
    /// Gross profit over gross loss; `null` without a losing trade.
    pub profit_factor: Option<String>,
    /// The deepest fall of the realised equity from its peak.
    pub max_drawdown_pct: String,
    pub net_profit: String,
    pub total_return_pct: String,
    /// Share of the time from the first entry to the last exit with a position open.
    pub exposure_pct: String,
}

impl From<Summary> for StatsOut {
    fn from(s: Summary) -> Self {
        StatsOut {
            trades: s.trades,
            wins: s.wins,
            win_rate_pct: s.win_rate_pct.to_string(),
            average_return_pct: s.average_return_pct.to_string(),
            profit_factor: s.profit_factor.map(|p| p.to_string()),
            max_drawdown_pct: s.max_drawdown_pct.to_string(),
            net_profit: s.net_profit.to_string(),
            total_return_pct: s.total_return_pct.to_string(),
            exposure_pct: s.exposure_pct.to_string(),
        }
    }
}

/// One signal kind's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KindStatsOut {
    pub kind: String,
    pub stats: StatsOut,
}

/// A strategy's summary: its account now and its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SummaryOut {
    pub strategy_id: i64,
    pub starting_balance: String,
    pub cash: String,
    /// Cash plus the open positions at their last close.
    pub equity: String,
    pub open_positions: usize,
    pub overall: StatsOut,
    pub by_kind: Vec<KindStatsOut>,
}

impl From<PaperSummary> for SummaryOut {
    fn from(s: PaperSummary) -> Self {
        SummaryOut {
            strategy_id: s.view.strategy.id,
            starting_balance: s.view.strategy.starting_balance.to_string(),
            cash: s.view.cash.to_string(),
            equity: s.equity.to_string(),
            open_positions: s.open_positions,
            overall: s.overall.into(),
            by_kind: s
                .by_kind
                .into_iter()
                .map(|(kind, stats)| KindStatsOut {
                    kind,
                    stats: stats.into(),
                })
                .collect(),
        }
    }
}

/// `limit` and `cursor` of the trades.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TradePageQuery {
    pub limit: Option<PageLimit>,
    pub cursor: Option<IdCursor>,
}

/// The caller's paper strategies, oldest first.
#[utoipa::path(get, operation_id = "paper_list", path = "/v1/paper/strategies", tag = "paper",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's paper strategies", body = StrategyList)))]
pub async fn list(State(state): State<ApiState>, Auth(caller): Auth) -> Result<Json<StrategyList>> {
    let items = state
        .services()
        .list_paper_strategies(caller.user_id)
        .await?
        .into_iter()
        .map(StrategyOut::from)
        .collect();
    Ok(Json(StrategyList { items }))
}

/// Creates a paper strategy; it follows signals from now on. Unknown fields are refused;
/// a bad value is a 422 naming its field.
#[utoipa::path(post, operation_id = "paper_create", path = "/v1/paper/strategies", tag = "paper",
    security(("bearer" = [])), request_body = StrategyIn,
    responses(
        (status = 201, description = "The stored strategy", body = StrategyOut),
        (status = 409, description = "Too many strategies", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    JsonBody(new): JsonBody<StrategyIn>,
) -> Result<(StatusCode, Json<StrategyOut>)> {
    let view = state
        .services()
        .create_paper_strategy(caller.user_id, new.into_strategy())
        .await?;
    Ok((StatusCode::CREATED, Json(StrategyOut::from(view))))
}

/// One of the caller's paper strategies.
#[utoipa::path(get, operation_id = "paper_get_one", path = "/v1/paper/strategies/{id}", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    responses((status = 200, description = "The strategy", body = StrategyOut)))]
pub async fn get_one(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<StrategyOut>> {
    let id = path_id(&id, "paper strategy")?;
    let view = state
        .services()
        .get_paper_strategy(caller.user_id, id)
        .await?;
    Ok(Json(StrategyOut::from(view)))
}

/// Changes a strategy's rules, or pauses and resumes it.
#[utoipa::path(patch, operation_id = "paper_update", path = "/v1/paper/strategies/{id}", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    request_body = StrategyPatchIn,
    responses(
        (status = 200, description = "The changed strategy", body = StrategyOut),
        (status = 409, description = "The strategy changed meanwhile", body = super::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<StrategyPatchIn>,
) -> Result<Json<StrategyOut>> {
    let id = path_id(&id, "paper strategy")?;
    let view = state
        .services()
        .patch_paper_strategy(caller.user_id, id, patch.into())
        .await?;
    Ok(Json(StrategyOut::from(view)))
}

/// Deletes a strategy with its positions, trades and equity.
#[utoipa::path(delete, operation_id = "paper_remove", path = "/v1/paper/strategies/{id}", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    responses((status = 204, description = "Deleted")))]
pub async fn remove(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = path_id(&id, "paper strategy")?;
    state
        .services()
        .delete_paper_strategy(caller.user_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A strategy's pending entries and open positions.
#[utoipa::path(get, operation_id = "paper_positions", path = "/v1/paper/strategies/{id}/positions", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    responses((status = 200, description = "Its positions", body = PositionList)))]
pub async fn positions(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<PositionList>> {
    let id = path_id(&id, "paper strategy")?;
    let items = state
        .services()
        .paper_positions(caller.user_id, id)
        .await?
        .into_iter()
        .map(PositionOut::from)
        .collect();
    Ok(Json(PositionList { items }))
}

/// A strategy's closed trades, newest first.
#[utoipa::path(get, operation_id = "paper_trades", path = "/v1/paper/strategies/{id}/trades", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id"), TradePageQuery),
    responses((status = 200, description = "A page of its trades", body = TradePage)))]
pub async fn trades(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Params(q): Params<TradePageQuery>,
) -> Result<Json<TradePage>> {
    let id = path_id(&id, "paper strategy")?;
    let limit = state.page_size(q.limit.map(|l| l.0))?;
    let page = state
        .services()
        .paper_trades(caller.user_id, id, q.cursor.map(|c| c.0), limit)
        .await?;
    Ok(Json(TradePage {
        items: page.items.into_iter().map(TradeOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A strategy's equity at the end of each market day it traded.
#[utoipa::path(get, operation_id = "paper_equity", path = "/v1/paper/strategies/{id}/equity", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    responses((status = 200, description = "Its equity curve", body = EquityCurve)))]
pub async fn equity(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<EquityCurve>> {
    let id = path_id(&id, "paper strategy")?;
    let services = state.services();
    let view = services.get_paper_strategy(caller.user_id, id).await?;
    let items = services
        .paper_equity(caller.user_id, id)
        .await?
        .into_iter()
        .map(EquityPoint::from)
        .collect();
    Ok(Json(EquityCurve {
        starting_balance: view.strategy.starting_balance.to_string(),
        items,
    }))
}

/// A strategy's account and statistics: trades, win rate, average return, profit factor,
/// max drawdown, exposure — overall and per signal kind.
#[utoipa::path(get, operation_id = "paper_summary", path = "/v1/paper/strategies/{id}/summary", tag = "paper",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The strategy id")),
    responses((status = 200, description = "Its summary", body = SummaryOut)))]
pub async fn summary(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<SummaryOut>> {
    let id = path_id(&id, "paper strategy")?;
    let summary = state.services().paper_summary(caller.user_id, id).await?;
    Ok(Json(SummaryOut::from(summary)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;
    use crate::error::Error;

    #[test]
    fn bodies_are_checked_field_by_field() {
        let ok = parse_json::<StrategyIn>(
            br#"{"name":"MACD","kinds":["macd_bullish_cross"],"starting_balance":"10000000",
                "currency":"KRW","sizing":{"pct_equity":"10"},"stop_loss_pct":"4"}"#,
        )
        .expect("valid")
        .into_strategy();
        assert_eq!(ok.sizing, Sizing::PctEquity(Decimal::TEN));
        assert!(ok.validate().is_ok());
        for (body, field) in [
            (
                r#"{"name":"x","kinds":["macd_bearish_cross"],"starting_balance":"1","currency":"KRW","sizing":{"fixed":"1"}}"#,
                "kinds[0]",
            ),
            (
                r#"{"name":"x","kinds":[],"starting_balance":"1","currency":"KRW","sizing":{"fixed":"1"}}"#,
                "kinds",
            ),
            (
                r#"{"name":" x","kinds":["gap_up"],"starting_balance":"1","currency":"KRW","sizing":{"fixed":"1"}}"#,
                "name",
            ),
            (
                r#"{"name":"x","kinds":["gap_up"],"starting_balance":"0","currency":"KRW","sizing":{"fixed":"1"}}"#,
                "starting_balance",
            ),
            (
                r#"{"name":"x","kinds":["gap_up"],"starting_balance":"1","currency":"KRW","sizing":{"pct_equity":"101"}}"#,
                "sizing.pct_equity",
            ),
            (
                r#"{"name":"x","kinds":["gap_up"],"starting_balance":"1","currency":"KRW","sizing":{"fixed":"1"},"stop_loss_pct":"0"}"#,
                "stop_loss_pct",
            ),
            (
                r#"{"name":"x","kinds":["gap_up"],"starting_balance":"1","currency":"KRW","sizing":{"fixed":"1"},"extra":1}"#,
                "extra",
            ),
        ] {
            match parse_json::<StrategyIn>(body.as_bytes()) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
