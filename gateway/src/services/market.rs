//! Market data as users ask for it: symbols (search and name resolution), the latest price
//! with the day's change, recorded signals and their outcome statistics.
//!
//! **The day's change** is measured from the day's open: the open of the `1d` candle whose
//! bar holds the price's time (`source = "daily_open"`); without one, the open of the
//! earliest recorded candle of any interval since the start of the market day
//! (`"first_candle_of_day"`: 00:00 UTC for crypto, 00:00 KST for KRX, 00:00 UTC−5 for US
//! listings — before any US session in either daylight-saving state); without either,
//! none is reported.
//!
//! **A signal's hit** follows the signals engine (`tickwatch_signals::stats`): the forward
//! return went the way the kind points (`SignalKind::direction`) — down for the bearish kinds, up for the others
//! (the direction-less ones have a long bias); a return of exactly 0 is no hit.

use std::sync::Arc;

use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition as Where, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use tickwatch_schema::db::entity::{candle, latest_price, signal, symbol};
use tickwatch_schema::wire::{SignalDirection, SignalKind, validate_symbol, validate_venue};
use utoipa::ToSchema;

use super::{Before, Page, Services, time_cursor};
use crate::error::{Error, Result};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A known instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SymbolInfo {
    pub venue: String,
    pub symbol: String,
    pub name: String,
    pub market: String,
    pub aliases: Vec<String>,
    /// False once the venue's list no longer has it (delisted).
    pub active: bool,
}

impl From<symbol::Model> for SymbolInfo {
    fn from(row: symbol::Model) -> Self {
        SymbolInfo {
            aliases: row
                .aliases
                .split('|')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            venue: row.venue,
            symbol: row.symbol,
            name: row.name,
            market: row.market,
            active: row.active,
        }
    }
}

/// What a name a user typed stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Found(SymbolInfo),
    /// Several instruments answer to the name (`btc` on two venues).
    Ambiguous(Vec<SymbolInfo>),
    /// Nothing answers to it; `suggestions` are the closest matches.
    NotFound {
        suggestions: Vec<SymbolInfo>,
    },
}

/// Every symbol, with what search compares lower-cased once.
#[derive(Debug, Default)]
pub struct SymbolList {
    items: Vec<SymbolInfo>,
    keys: Vec<SearchKeys>,
}

impl SymbolList {
    fn new(items: Vec<SymbolInfo>) -> Self {
        let keys = items.iter().map(SearchKeys::of).collect();
        SymbolList { items, keys }
    }
}

/// A symbol's code, name and aliases, lower-cased.
#[derive(Debug)]
struct SearchKeys {
    symbol: String,
    name: String,
    aliases: Vec<String>,
}

impl SearchKeys {
    fn of(info: &SymbolInfo) -> Self {
        SearchKeys {
            symbol: info.symbol.to_lowercase(),
            name: info.name.to_lowercase(),
            aliases: info.aliases.iter().map(|a| a.to_lowercase()).collect(),
        }
    }
}

/// How well a symbol matches a (lower-cased) search: lower is better; `None` is no match.
fn match_rank(keys: &SearchKeys, query: &str) -> Option<u8> {
    let (symbol, name, aliases) = (&keys.symbol, &keys.name, &keys.aliases);
    if *symbol == query {
        Some(0)
    } else if *name == query || aliases.iter().any(|a| a == query) {
        Some(1)
    } else if symbol.starts_with(query) {
        Some(2)
    } else if name.starts_with(query) || aliases.iter().any(|a| a.starts_with(query)) {
        Some(3)
    } else if symbol.contains(query)
        || name.contains(query)
        || aliases.iter().any(|a| a.contains(query))
    {
        Some(4)
    } else {
        None
    }
}

/// Why an alert on a symbol may never fire, told to the user when they create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolWarning {
    /// The venue's list no longer has it.
    Delisted,
    /// No price of it has arrived yet: no configured source publishes it (or its market
    /// has not traded since tickwatch started).
    NoData,
}

impl SymbolWarning {
    /// The warning in English, for the API.
    pub fn message(self, venue: &str, symbol: &str) -> String {
        match self {
            SymbolWarning::Delisted => format!(
                "{venue}:{symbol} is delisted (no longer in the venue's list): the alert fires only if data still arrives"
            ),
            SymbolWarning::NoData => format!(
                "no price of {venue}:{symbol} has arrived yet: check that a source publishes it (run.sources, tickwatch produce …); the alert waits until one does"
            ),
        }
    }
}

/// The latest price of a symbol and the day's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceView {
    pub venue: String,
    pub symbol: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "64321.12")]
    pub price: Decimal,
    /// When the price was seen (epoch ms).
    pub ts: i64,
    pub day_change: Option<DayChange>,
}

/// The change since the day's open: the open of the `1d` candle holding the price's time
/// (`source = "daily_open"`), else the open of the first candle recorded since the start of
/// the market day (`"first_candle_of_day"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DayChange {
    /// The day's reference price.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub reference: Decimal,
    /// When the reference bar opened (epoch ms).
    pub reference_ts: i64,
    /// `daily_open` or `first_candle_of_day`.
    #[schema(value_type = String)]
    pub source: &'static str,
    /// `price - reference`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub change: Decimal,
    /// Percent, two decimals.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub change_pct: Decimal,
}

/// Which signals to list or count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalFilter {
    pub symbol: Option<String>,
    pub kind: Option<SignalKind>,
    /// Only signals at or after this time (epoch ms).
    pub since: Option<i64>,
}

/// Outcomes of one kind at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HorizonStats {
    /// Bars after the signal: 1, 5 or 20 (`ret_1`, `ret_5`, `ret_20`).
    pub bars: u32,
    /// Signals whose outcome at this horizon is known.
    pub count: u64,
    pub hits: u64,
    /// `hits / count`; `None` without outcomes.
    pub hit_rate: Option<f64>,
    /// Mean raw forward return (a fraction: 0.01 = +1 %).
    pub mean_return: Option<f64>,
}

/// Outcome statistics of one signal kind.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KindStats {
    #[schema(value_type = tickwatch_schema::wire::SignalKind)]
    pub kind: SignalKind,
    #[schema(value_type = tickwatch_schema::wire::SignalDirection)]
    pub direction: SignalDirection,
    /// Signals recorded.
    pub count: u64,
    pub horizons: Vec<HorizonStats>,
}

#[derive(Debug, FromQueryResult)]
struct StatsRow {
    kind: String,
    n: i64,
    n1: i64,
    s1: Option<f64>,
    up1: Option<i64>,
    down1: Option<i64>,
    n5: i64,
    s5: Option<f64>,
    up5: Option<i64>,
    down5: Option<i64>,
    n20: i64,
    s20: Option<f64>,
    up20: Option<i64>,
    down20: Option<i64>,
}

fn horizon(
    bars: u32,
    dir: SignalDirection,
    n: i64,
    sum: Option<f64>,
    up: Option<i64>,
    down: Option<i64>,
) -> HorizonStats {
    let count = n.max(0) as u64;
    let hits = match dir {
        SignalDirection::Bearish => down,
        SignalDirection::Bullish | SignalDirection::Neutral => up,
    }
    .unwrap_or(0)
    .max(0) as u64;
    HorizonStats {
        bars,
        count,
        hits,
        hit_rate: (count > 0).then(|| hits as f64 / count as f64),
        mean_return: (count > 0).then(|| sum.unwrap_or(0.0) / count as f64),
    }
}

/// Start of the market day holding `ts`: the day boundary per the symbols table's market.
fn day_start(ts: i64, market: &str) -> i64 {
    let offset = match market {
        "krx" => 9 * HOUR_MS,
        "us" => -5 * HOUR_MS,
        _ => 0,
    };
    (ts + offset).div_euclid(DAY_MS) * DAY_MS - offset
}

fn parse_price(field: &str, text: &str) -> Result<Decimal> {
    text.parse()
        .map_err(|_| Error::Data(format!("stored {field} `{text}` is not a decimal")))
}

impl Services {
    /// Every known symbol.
    pub async fn all_symbols(&self) -> Result<Vec<SymbolInfo>> {
        Ok(self.symbol_list().await?.items.clone())
    }

    /// Every symbol, from memory: read from the database the first time (and after an
    /// import); older than [`super::SYMBOLS_TTL`], still answered from while a background
    /// read replaces it, so no search waits for the table.
    async fn symbol_list(&self) -> Result<Arc<SymbolList>> {
        let (generation, cached) = self.cached_symbols();
        match cached {
            Some((true, list)) => return Ok(list),
            Some((false, list)) => {
                if self.start_symbols_refresh() {
                    let services = self.clone();
                    tokio::spawn(async move {
                        match services.read_symbols().await {
                            Ok(fresh) => services.cache_symbols(generation, fresh),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not re-read the symbols; keeping the list in memory")
                            }
                        }
                        services.end_symbols_refresh();
                    });
                }
                return Ok(list);
            }
            None => {}
        }
        let list = self.read_symbols().await?;
        self.cache_symbols(generation, list.clone());
        Ok(list)
    }

    async fn read_symbols(&self) -> Result<Arc<SymbolList>> {
        let items = symbol::Entity::find()
            .order_by_asc(symbol::Column::Venue)
            .order_by_asc(symbol::Column::Symbol)
            .all(self.db())
            .await?
            .into_iter()
            .map(SymbolInfo::from)
            .collect();
        Ok(Arc::new(SymbolList::new(items)))
    }

    /// Symbols matching a search by symbol, name or alias (`삼성`, `samsung`, `btc`), best
    /// first. `venue:SYMBOL` finds that one. An empty query lists symbols.
    pub async fn search_symbols(&self, query: &str, limit: usize) -> Result<Vec<SymbolInfo>> {
        let query = query.trim().to_lowercase();
        let list = self.symbol_list().await?;
        let all = &list.items;
        if query.is_empty() {
            return Ok(all.iter().take(limit).cloned().collect());
        }
        if let Some((venue, sym)) = query.split_once(':') {
            return Ok(all
                .iter()
                .filter(|s| s.venue == venue && s.symbol.to_lowercase() == sym)
                .take(limit)
                .cloned()
                .collect());
        }
        // Instruments, not trades (a few thousand): ranking in memory keeps the search the
        // same on SQLite and PostgreSQL, Hangul included. Listed symbols before delisted.
        let mut ranked: Vec<(u8, bool, &SymbolInfo)> = all
            .iter()
            .zip(&list.keys)
            .filter_map(|(s, keys)| match_rank(keys, &query).map(|r| (r, !s.active, s)))
            .collect();
        ranked.sort_by(|a, b| {
            (a.0, a.1, &a.2.venue, &a.2.symbol).cmp(&(b.0, b.1, &b.2.venue, &b.2.symbol))
        });
        Ok(ranked
            .into_iter()
            .take(limit)
            .map(|(_, _, s)| s.clone())
            .collect())
    }

    /// What a name typed in the bot stands for: `venue:SYMBOL`, an exact symbol
    /// (`BTCUSDT`, `005930`), or an exact name or alias (`삼성전자`, `bitcoin`).
    pub async fn resolve_symbol(&self, text: &str) -> Result<Resolution> {
        let text = text.trim();
        let lowered = text.to_lowercase();
        let list = self.symbol_list().await?;
        let all = &list.items;
        if let Some((venue, sym)) = text.split_once(':') {
            let venue = venue.trim().to_lowercase();
            let sym = sym.trim().to_uppercase();
            if let Some(found) = all
                .iter()
                .find(|s| s.venue == venue && s.symbol.eq_ignore_ascii_case(&sym))
            {
                return Ok(Resolution::Found(found.clone()));
            }
            // A venue's instrument not in the table yet is still usable when spelt out.
            validate_venue(&venue)?;
            validate_symbol(&sym)?;
            return Ok(Resolution::Found(SymbolInfo {
                venue,
                name: sym.clone(),
                symbol: sym,
                market: String::new(),
                aliases: Vec::new(),
                active: true,
            }));
        }
        let by_symbol: Vec<SymbolInfo> = all
            .iter()
            .zip(&list.keys)
            .filter(|(_, keys)| keys.symbol == lowered)
            .map(|(s, _)| s.clone())
            .collect();
        let exact = if by_symbol.is_empty() {
            all.iter()
                .zip(&list.keys)
                .filter(|(_, keys)| match_rank(keys, &lowered) == Some(1))
                .map(|(s, _)| s.clone())
                .collect()
        } else {
            by_symbol
        };
        match exact.len() {
            1 => Ok(exact.into_iter().next().map_or(
                Resolution::NotFound {
                    suggestions: vec![],
                },
                Resolution::Found,
            )),
            0 => Ok(Resolution::NotFound {
                suggestions: self.search_symbols(text, 5).await?,
            }),
            _ => Ok(Resolution::Ambiguous(exact)),
        }
    }

    /// What may keep an alert on `venue`/`symbol` from ever firing. Best effort: asked
    /// after the rule is stored, so a failure here is logged and answers no warnings
    /// (an error would make the client retry a create that succeeded).
    pub async fn symbol_warnings(&self, venue: &str, symbol_name: &str) -> Vec<SymbolWarning> {
        match self.try_symbol_warnings(venue, symbol_name).await {
            Ok(warnings) => warnings,
            Err(e) => {
                tracing::warn!(error = %e, venue, symbol = symbol_name, "could not check the symbol for warnings");
                Vec::new()
            }
        }
    }

    async fn try_symbol_warnings(
        &self,
        venue: &str,
        symbol_name: &str,
    ) -> Result<Vec<SymbolWarning>> {
        let mut warnings = Vec::new();
        let listed = self.symbol_list().await?;
        if listed
            .items
            .iter()
            .any(|s| s.venue == venue && s.symbol == symbol_name && !s.active)
        {
            warnings.push(SymbolWarning::Delisted);
        }
        let priced = latest_price::Entity::find_by_id((venue.to_string(), symbol_name.to_string()))
            .one(self.db())
            .await?
            .is_some();
        if !priced {
            warnings.push(SymbolWarning::NoData);
        }
        Ok(warnings)
    }

    /// The latest price of `venue`/`symbol` and the day's change; `NotFound` if no price
    /// was recorded.
    pub async fn price(&self, venue: &str, symbol_name: &str) -> Result<PriceView> {
        let row = latest_price::Entity::find_by_id((venue.to_string(), symbol_name.to_string()))
            .one(self.db())
            .await?
            .ok_or_else(|| Error::not_found(format!("a price of {venue} {symbol_name}")))?;
        let price = parse_price("price", &row.price)?;
        let day_change = self.day_change(venue, symbol_name, price, row.ts).await?;
        Ok(PriceView {
            venue: row.venue,
            symbol: row.symbol,
            price,
            ts: row.ts,
            day_change,
        })
    }

    async fn day_change(
        &self,
        venue: &str,
        symbol_name: &str,
        price: Decimal,
        ts: i64,
    ) -> Result<Option<DayChange>> {
        let daily = candle::Entity::find()
            .filter(candle::Column::Venue.eq(venue))
            .filter(candle::Column::Symbol.eq(symbol_name))
            .filter(candle::Column::Interval.eq("1d"))
            .filter(candle::Column::OpenTs.lte(ts))
            .filter(candle::Column::OpenTs.gt(ts - DAY_MS))
            .order_by_desc(candle::Column::OpenTs)
            .one(self.db())
            .await?;
        let reference = match daily {
            Some(c) => Some((parse_price("open", &c.open)?, c.open_ts, "daily_open")),
            None => {
                let market = symbol::Entity::find()
                    .filter(symbol::Column::Venue.eq(venue))
                    .filter(symbol::Column::Symbol.eq(symbol_name))
                    .one(self.db())
                    .await?
                    .map_or_else(|| "crypto".to_string(), |s| s.market);
                let first = candle::Entity::find()
                    .filter(candle::Column::Venue.eq(venue))
                    .filter(candle::Column::Symbol.eq(symbol_name))
                    .filter(candle::Column::OpenTs.gte(day_start(ts, &market)))
                    .filter(candle::Column::OpenTs.lte(ts))
                    .order_by_asc(candle::Column::OpenTs)
                    .one(self.db())
                    .await?;
                match first {
                    Some(c) => Some((
                        parse_price("open", &c.open)?,
                        c.open_ts,
                        "first_candle_of_day",
                    )),
                    None => None,
                }
            }
        };
        Ok(reference.and_then(|(reference, reference_ts, source)| {
            if reference.is_zero() {
                return None;
            }
            let change = price - reference;
            let change_pct = (change / reference * Decimal::ONE_HUNDRED).round_dp(2);
            Some(DayChange {
                reference,
                reference_ts,
                source,
                change,
                change_pct,
            })
        }))
    }

    /// Recorded signals, newest first, `limit` at a time after the cursor.
    pub async fn signals(
        &self,
        filter: &SignalFilter,
        before: Option<Before>,
        limit: u64,
    ) -> Result<Page<signal::Model>> {
        let mut query = signal::Entity::find()
            .order_by_desc(signal::Column::Ts)
            .order_by_desc(signal::Column::Id)
            .limit(limit + 1);
        if let Some(symbol_name) = &filter.symbol {
            query = query.filter(signal::Column::Symbol.eq(symbol_name.as_str()));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(signal::Column::Kind.eq(kind.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(signal::Column::Ts.gte(since));
        }
        if let Some((ts, id)) = before {
            query = query.filter(
                Where::any().add(signal::Column::Ts.lt(ts)).add(
                    Where::all()
                        .add(signal::Column::Ts.eq(ts))
                        .add(signal::Column::Id.lt(id)),
                ),
            );
        }
        let rows = query.all(self.db()).await?;
        Ok(Page::of(rows, limit, |r| time_cursor(r.ts, &r.id)))
    }

    /// Outcome statistics per signal kind, aggregated in the database.
    pub async fn signal_stats(&self, filter: &SignalFilter) -> Result<Vec<KindStats>> {
        let mut query = signal::Entity::find()
            .select_only()
            .column(signal::Column::Kind)
            .column_as(Expr::cust("COUNT(*)"), "n");
        for h in ["1", "5", "20"] {
            let col = format!("ret_{h}");
            query = query
                .column_as(Expr::cust(format!("COUNT({col})")), format!("n{h}"))
                .column_as(Expr::cust(format!("SUM({col})")), format!("s{h}"))
                .column_as(
                    Expr::cust(format!("SUM(CASE WHEN {col} > 0 THEN 1 ELSE 0 END)")),
                    format!("up{h}"),
                )
                .column_as(
                    Expr::cust(format!("SUM(CASE WHEN {col} < 0 THEN 1 ELSE 0 END)")),
                    format!("down{h}"),
                );
        }
        if let Some(symbol_name) = &filter.symbol {
            query = query.filter(signal::Column::Symbol.eq(symbol_name.as_str()));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(signal::Column::Kind.eq(kind.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(signal::Column::Ts.gte(since));
        }
        let rows = query
            .group_by(signal::Column::Kind)
            .order_by_asc(signal::Column::Kind)
            .into_model::<StatsRow>()
            .all(self.db())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Ok(kind) = r.kind.parse::<SignalKind>() else {
                // A kind this build does not know (a newer signals engine): skip it.
                continue;
            };
            let dir = kind.direction();
            out.push(KindStats {
                kind,
                direction: dir,
                count: r.n.max(0) as u64,
                horizons: vec![
                    horizon(1, dir, r.n1, r.s1, r.up1, r.down1),
                    horizon(5, dir, r.n5, r.s5, r.up5, r.down5),
                    horizon(20, dir, r.n20, r.s20, r.up20, r.down20),
                ],
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_days_start_where_the_market_lives() {
        let ts = 1_763_762_400_000; // 2025-11-21 22:00 UTC
        assert_eq!(day_start(ts, "crypto"), 1_763_683_200_000);
        // 22:00 UTC is 07:00 KST the next day: the KST day began at 15:00 UTC.
        assert_eq!(day_start(ts, "krx"), 1_763_737_200_000);
        assert_eq!(day_start(ts, "us"), 1_763_701_200_000);
    }

    #[test]
    fn ranking_prefers_exact_matches() {
        let info = SymbolInfo {
            venue: "krx".into(),
            symbol: "005930".into(),
            name: "삼성전자".into(),
            market: "krx".into(),
            aliases: vec!["삼성전자".into(), "삼성".into(), "samsung".into()],
            active: true,
        };
        let keys = SearchKeys::of(&info);
        assert_eq!(match_rank(&keys, "005930"), Some(0));
        assert_eq!(match_rank(&keys, "삼성"), Some(1));
        assert_eq!(match_rank(&keys, "sams"), Some(3));
        assert_eq!(match_rank(&keys, "sung"), Some(4));
        assert_eq!(match_rank(&keys, "apple"), None);
    }

    #[test]
    fn hits_follow_the_direction() {
        let bear = horizon(
            5,
            SignalDirection::Bearish,
            4,
            Some(-0.02),
            Some(1),
            Some(3),
        );
        assert_eq!((bear.count, bear.hits), (4, 3));
        assert_eq!(bear.hit_rate, Some(0.75));
        let none = horizon(1, SignalDirection::Bullish, 0, None, None, None);
        assert_eq!((none.hit_rate, none.mean_return), (None, None));
    }
}
