//! Market data: recorded signals (cursor-paginated) and their outcome statistics, symbol
//! search, and the latest price with the day's change.

use axum::Json;
use axum::extract::{Path, State};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use tickwatch_schema::db::entity::signal;
use tickwatch_schema::wire::{Grade, SignalKind, validate_symbol, validate_venue};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::fields::{PageLimit, Symbol, TimeCursor, Venue};
use super::{ApiState, Auth, Params};
use crate::error::{Error, Result};
use crate::services::market::{KindStats, PriceView, SignalFilter, SymbolInfo};

/// Filters of `GET /v1/signals`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignalsQuery {
    /// Only this symbol (`BTCUSDT`).
    pub symbol: Option<Symbol>,
    /// Only this kind (`rsi_oversold`).
    pub kind: Option<SignalKind>,
    /// Only signals at or after this time (epoch ms).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    pub limit: Option<PageLimit>,
    pub cursor: Option<TimeCursor>,
}

/// Filters of `GET /v1/signals/stats`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    pub symbol: Option<Symbol>,
    pub kind: Option<SignalKind>,
    /// Only signals at or after this time (epoch ms).
    #[param(minimum = 0)]
    pub since: Option<i64>,
}

/// Search of `GET /v1/symbols`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SymbolsQuery {
    /// A symbol, name or alias, or part of one (`삼성`, `samsung`, `btc`); empty lists all.
    pub query: Option<String>,
    /// At most this many (default 20).
    pub limit: Option<SymbolLimit>,
}

/// How many symbols a search returns: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolLimit(pub usize);

impl<'de> Deserialize<'de> for SymbolLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if !(1..=100).contains(&n) {
            return Err(de::Error::custom(format!("{n} is not between 1 and 100")));
        }
        Ok(SymbolLimit(n as usize))
    }
}

impl PartialSchema for SymbolLimit {
    fn schema() -> RefOr<Schema> {
        super::fields::integer_between(utoipa::openapi::KnownFormat::Int32, 1, 100).into()
    }
}

impl ToSchema for SymbolLimit {}

/// A recorded signal and its outcome so far.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SignalOut {
    pub id: String,
    #[schema(value_type = SignalKind)]
    pub kind: String,
    pub venue: String,
    pub symbol: String,
    pub interval: String,
    /// The bar's time (epoch ms).
    pub ts: i64,
    pub price: String,
    pub score: i32,
    #[schema(value_type = Grade)]
    pub grade: String,
    /// The values behind the signal.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Forward returns after 1, 5 and 20 bars (fractions), once known.
    pub ret_1: Option<f64>,
    pub ret_5: Option<f64>,
    pub ret_20: Option<f64>,
}

impl From<signal::Model> for SignalOut {
    fn from(s: signal::Model) -> Self {
        SignalOut {
            details: serde_json::from_str(&s.details)
                .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
            id: s.id,
            kind: s.kind,
            venue: s.venue,
            symbol: s.symbol,
            interval: s.interval,
            ts: s.ts,
            price: s.price,
            score: s.score,
            grade: s.grade,
            ret_1: s.ret_1,
            ret_5: s.ret_5,
            ret_20: s.ret_20,
        }
    }
}

super::page_type!(
    /// A page of signals, newest first.
    SignalPage,
    SignalOut
);

/// Outcome statistics per kind.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SignalStatsOut {
    /// A hit is a forward return the way the kind points: down for bearish kinds
    /// (`rsi_overbought`, `macd_bearish_cross`, `death_cross`, `bb_breakout_down`), up for
    /// the others; 0 is no hit. Returns are fractions (0.01 = +1 %).
    pub definition: String,
    pub kinds: Vec<KindStats>,
}

/// Matching symbols, best first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SymbolList {
    pub items: Vec<SymbolInfo>,
}

fn filter(
    symbol: Option<Symbol>,
    kind: Option<SignalKind>,
    since: Option<i64>,
) -> Result<SignalFilter> {
    if let Some(since) = since
        && since < 0
    {
        return Err(Error::invalid("since", "must be epoch milliseconds"));
    }
    Ok(SignalFilter {
        symbol: symbol.map(|s| s.0),
        kind,
        since,
    })
}

/// Recorded signals, newest first, with cursor pagination.
#[utoipa::path(get, operation_id = "market_signals", path = "/v1/signals", tag = "signals",
    params(SignalsQuery), security(("bearer" = [])),
    responses((status = 200, description = "A page of signals", body = SignalPage)))]
pub async fn signals(
    State(state): State<ApiState>,
    _auth: Auth,
    Params(q): Params<SignalsQuery>,
) -> Result<Json<SignalPage>> {
    let limit = state.page_size(q.limit.map(|l| l.0))?;
    let filter = filter(q.symbol, q.kind, q.since)?;
    let page = state
        .services()
        .signals(&filter, q.cursor.map(|c| (c.ts, c.id)), limit)
        .await?;
    Ok(Json(SignalPage {
        items: page.items.into_iter().map(SignalOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Per kind: signals recorded, and at 1, 5 and 20 bars the outcomes known, hits, hit
/// rate and mean return.
#[utoipa::path(get, operation_id = "market_signal_stats", path = "/v1/signals/stats", tag = "signals",
    params(StatsQuery), security(("bearer" = [])),
    responses((status = 200, description = "Statistics per kind", body = SignalStatsOut)))]
pub async fn signal_stats(
    State(state): State<ApiState>,
    _auth: Auth,
    Params(q): Params<StatsQuery>,
) -> Result<Json<SignalStatsOut>> {
    let filter = filter(q.symbol, q.kind, q.since)?;
    let kinds = state.services().signal_stats(&filter).await?;
    Ok(Json(SignalStatsOut {
        definition: "hit: the forward return went the way the kind points (down for bearish kinds, up otherwise; 0 is no hit); returns are fractions".into(),
        kinds,
    }))
}

/// Symbols by symbol, name or alias, Korean or English.
#[utoipa::path(get, operation_id = "market_symbols", path = "/v1/symbols", tag = "market",
    params(SymbolsQuery), security(("bearer" = [])),
    responses((status = 200, description = "Matching symbols, best first", body = SymbolList)))]
pub async fn symbols(
    State(state): State<ApiState>,
    _auth: Auth,
    Params(q): Params<SymbolsQuery>,
) -> Result<Json<SymbolList>> {
    let limit = q.limit.map_or(20, |l| l.0);
    let items = state
        .services()
        .search_symbols(q.query.as_deref().unwrap_or_default(), limit)
        .await?;
    Ok(Json(SymbolList { items }))
}

/// The latest price of a symbol on a venue, and the day's change (see `DayChange`).
#[utoipa::path(get, operation_id = "market_price", path = "/v1/prices/{venue}/{symbol}", tag = "market",
    security(("bearer" = [])),
    params(
        ("venue" = Venue, Path, description = "The venue (`binance`)"),
        ("symbol" = Symbol, Path, description = "The symbol as the venue spells it (`BTCUSDT`)"),
    ),
    responses((status = 200, description = "The latest price", body = PriceView)))]
pub async fn price(
    State(state): State<ApiState>,
    _auth: Auth,
    Path((venue, symbol)): Path<(String, String)>,
) -> Result<Json<PriceView>> {
    validate_venue(&venue)?;
    validate_symbol(&symbol)?;
    Ok(Json(state.services().price(&venue, &symbol).await?))
}
