//! The symbol universe: every instrument of a venue, imported from the venue's own list so
//! that `/alert 카카오 …` or an Upbit altcoin is found by its Korean or English name.
//!
//! - Parsers, pure: Binance's `GET /api/v3/exchangeInfo` (spot symbols that are `TRADING`),
//!   Upbit's `GET /v1/market/all?isDetails=true` (`korean_name`, `english_name`), KIS's
//!   master files `kospi_code.mst` / `kosdaq_code.mst` (cp949, a fixed-width tail after the
//!   code and name; see [`parse_krx_master`]) and a CSV `code,name,market`.
//! - [`Services::import_symbols`]: one venue's complete list, in one transaction. A symbol
//!   is added or its name updated (aliases are kept and extended, so hand-made ones such
//!   as `삼성` survive); one the list no longer holds is marked inactive, not deleted — its
//!   rules keep working on whatever data still arrives, and users are told it is delisted;
//!   one that comes back is active again. Importing the same list twice changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use tickwatch_schema::db::entity::symbol;
use tickwatch_schema::wire::{validate_symbol, validate_venue};
use utoipa::ToSchema;

use super::Services;
use crate::error::{Error, Result};

/// One instrument of a venue's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub venue: String,
    pub symbol: String,
    pub name: String,
    /// Further names users search by (lower-cased where the script has case).
    pub aliases: Vec<String>,
    /// `crypto` or `krx`: the trading day of daily candles.
    pub market: String,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportReport {
    pub venue: String,
    /// Symbols in the list.
    pub listed: usize,
    pub added: usize,
    /// Stored before, and their name, aliases or market changed (or they came back).
    pub updated: usize,
    pub unchanged: usize,
    /// Stored and active before, missing from the list now: marked inactive.
    pub deactivated: usize,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Binance's `exchangeInfo`: the spot symbols whose status is `TRADING`.
pub fn parse_binance_exchange_info(json: &str) -> Result<Vec<Listed>> {
    #[derive(Deserialize)]
    struct Info {
        symbols: Vec<Entry>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        symbol: String,
        status: String,
        base_asset: String,
        quote_asset: String,
        #[serde(default = "yes")]
        is_spot_trading_allowed: bool,
    }
    fn yes() -> bool {
        true
    }
    let info: Info = serde_json::from_str(json)
        .map_err(|e| invalid("data", format!("not an exchangeInfo answer: {e}")))?;
    Ok(info
        .symbols
        .into_iter()
        .filter(|e| e.status == "TRADING" && e.is_spot_trading_allowed)
        .map(|e| Listed {
            venue: "binance".into(),
            aliases: vec![
                e.base_asset.to_lowercase(),
                e.symbol.to_lowercase(),
                format!("{}/{}", e.base_asset, e.quote_asset).to_lowercase(),
            ],
            name: format!("{} / {}", e.base_asset, e.quote_asset),
            symbol: e.symbol,
            market: "crypto".into(),
        })
        .collect())
}

/// Upbit's `market/all`: every market, with its Korean and English names.
pub fn parse_upbit_markets(json: &str) -> Result<Vec<Listed>> {
    #[derive(Deserialize)]
    struct Entry {
        market: String,
        korean_name: String,
        english_name: String,
    }
    let entries: Vec<Entry> = serde_json::from_str(json)
        .map_err(|e| invalid("data", format!("not a market/all answer: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let (quote, base) = e.market.split_once('-').unwrap_or(("", &e.market));
            Listed {
                venue: "upbit".into(),
                name: format!("{} ({quote})", e.korean_name),
                aliases: vec![
                    e.korean_name.clone(),
                    e.english_name.to_lowercase(),
                    base.to_lowercase(),
                    e.market.to_lowercase(),
                ],
                symbol: e.market,
                market: "crypto".into(),
            }
        })
        .collect())
}

/// Bytes of the fixed-width tail of a KIS master row (without its line end): 227 for
/// KOSPI, 221 for KOSDAQ. KIS's reader cuts 228 and 222 characters, newline included.
pub const KOSPI_TAIL: usize = 227;
pub const KOSDAQ_TAIL: usize = 221;

/// The tail length of a master file, from its name (`kospi_code.mst`, `kosdaq_code.mst`).
pub fn master_tail(file_name: &str) -> Option<usize> {
    let name = file_name.to_ascii_lowercase();
    if name.contains("kosdaq") {
        Some(KOSDAQ_TAIL)
    } else if name.contains("kospi") {
        Some(KOSPI_TAIL)
    } else {
        None
    }
}

/// A KIS master file (`kospi_code.mst`, `kosdaq_code.mst`), cp949: each row is the short
/// code (9 bytes), the standard code (12 bytes), the Korean name, then a fixed-width tail
/// of `tail` bytes ([`KOSPI_TAIL`], [`KOSDAQ_TAIL`]) whose first two bytes are the security
/// group (`ST` stock, `EF` ETF, `EN` ETN, …). The row is cut in bytes, as KIS's reader
/// does, and only then decoded.
pub fn parse_krx_master(bytes: &[u8], tail: usize) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (n, row) in bytes.split(|&b| b == b'\n').enumerate() {
        let row = row.strip_suffix(b"\r").unwrap_or(row);
        if row.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if row.len() < 21 + tail {
            return Err(invalid(
                "data",
                format!(
                    "row {}: {} bytes, shorter than a master row (21 + name + {tail}); is this the right file (KOSPI tail 227, KOSDAQ 221)?",
                    n + 1,
                    row.len()
                ),
            ));
        }
        let (front, rest) = row.split_at(row.len() - tail);
        if !rest.is_ascii() {
            return Err(invalid(
                "data",
                format!(
                    "row {}: the fixed-width tail is not ASCII; is this the right file (KOSPI tail 227, KOSDAQ 221)?",
                    n + 1
                ),
            ));
        }
        let code = String::from_utf8_lossy(&front[..9]).trim().to_string();
        let (name, _, failed) = encoding_rs::EUC_KR.decode(&front[21..]);
        if failed {
            return Err(invalid(
                "data",
                format!("row {}: the name is not cp949", n + 1),
            ));
        }
        let name = name.trim().to_string();
        if !rest[..2].iter().all(u8::is_ascii_uppercase) {
            return Err(invalid(
                "data",
                format!(
                    "row {}: no security group code (ST, EF, …) where the tail starts; is this the right file (KOSPI tail 227, KOSDAQ 221)?",
                    n + 1
                ),
            ));
        }
        let group = String::from_utf8_lossy(&rest[..2]).to_string();
        if code.is_empty() || name.is_empty() {
            return Err(invalid("data", format!("row {}: no code or name", n + 1)));
        }
        out.push(krx_listed(code, name, Some(group)));
    }
    Ok(out)
}

fn krx_listed(code: String, name: String, group: Option<String>) -> Listed {
    let mut aliases = vec![name.to_lowercase()];
    // The security group: ETFs (domestic `EF`, foreign `FE`) can be searched as such.
    if matches!(group.as_deref(), Some("EF" | "FE")) {
        aliases.push("etf".into());
    }
    Listed {
        venue: "krx".into(),
        symbol: code,
        name,
        aliases,
        market: "krx".into(),
    }
}

/// A downloaded list or file as text: UTF-8 (a byte-order mark dropped), else cp949 — KRX's
/// and Excel's CSVs of Korean names usually are.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => encoding_rs::EUC_KR.decode(bytes).0.into_owned(),
    }
}

/// A CSV of KRX symbols with a header: `code,name,market` (market `KOSPI`, `KOSDAQ`, …;
/// further columns ignored, quoted fields allowed).
pub fn parse_krx_csv(text: &str) -> Result<Vec<Listed>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| invalid("data", format!("no header row: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                invalid(
                    "data",
                    format!("no `{name}` column (header: code,name,market)"),
                )
            })
    };
    let (code, name) = (column("code")?, column("name")?);
    let mut out = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| invalid("data", format!("row {}: {e}", n + 2)))?;
        let field = |i: usize| row.get(i).unwrap_or_default().to_string();
        let (code, name) = (field(code), field(name));
        if code.is_empty() || name.is_empty() {
            return Err(invalid(
                "data",
                format!("row {}: empty code or name", n + 2),
            ));
        }
        out.push(krx_listed(code, name, None));
    }
    Ok(out)
}

impl Services {
    /// Replaces `venue`'s list of symbols with `listed` (see the module documentation).
    pub async fn import_symbols(&self, venue: &str, listed: Vec<Listed>) -> Result<ImportReport> {
        validate_venue(venue).map_err(|e| invalid("venue", e.to_string()))?;
        if listed.is_empty() {
            // An empty list would mark every symbol of the venue delisted: surely a mistake.
            return Err(invalid(
                "symbols",
                format!("the list is empty; an import is {venue}'s complete list"),
            ));
        }
        let mut wanted: BTreeMap<String, Listed> = BTreeMap::new();
        for item in listed {
            if item.venue != venue {
                return Err(invalid(
                    "data",
                    format!("`{}` is of venue {}, not {venue}", item.symbol, item.venue),
                ));
            }
            validate_symbol(&item.symbol)
                .map_err(|e| invalid("data", format!("`{}`: {e}", item.symbol)))?;
            wanted.insert(item.symbol.clone(), item);
        }
        let mut report = ImportReport {
            venue: venue.to_string(),
            listed: wanted.len(),
            ..ImportReport::default()
        };
        let txn = self.db().begin().await?;
        let stored = symbol::Entity::find()
            .filter(symbol::Column::Venue.eq(venue))
            .all(&txn)
            .await?;
        let mut seen = BTreeSet::new();
        for row in stored {
            seen.insert(row.symbol.clone());
            match wanted.get(&row.symbol) {
                Some(item) => {
                    let aliases = merged_aliases(&row.aliases, &item.aliases);
                    let same = row.name == item.name
                        && row.aliases == aliases
                        && row.market == item.market
                        && row.active;
                    if same {
                        report.unchanged += 1;
                        continue;
                    }
                    let mut active: symbol::ActiveModel = row.into();
                    active.name = Set(item.name.clone());
                    active.aliases = Set(aliases);
                    active.market = Set(item.market.clone());
                    active.active = Set(true);
                    active.update(&txn).await?;
                    report.updated += 1;
                }
                None if row.active => {
                    let mut active: symbol::ActiveModel = row.into();
                    active.active = Set(false);
                    active.update(&txn).await?;
                    report.deactivated += 1;
                }
                None => {}
            }
        }
        let new: Vec<symbol::ActiveModel> = wanted
            .values()
            .filter(|item| !seen.contains(&item.symbol))
            .map(|item| symbol::ActiveModel {
                venue: Set(item.venue.clone()),
                symbol: Set(item.symbol.clone()),
                name: Set(item.name.clone()),
                aliases: Set(merged_aliases("", &item.aliases)),
                market: Set(item.market.clone()),
                active: Set(true),
                ..Default::default()
            })
            .collect();
        report.added = new.len();
        for chunk in new.chunks(tickwatch_schema::db::ROWS_PER_STATEMENT) {
            symbol::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        self.forget_symbols();
        Ok(report)
    }
}

/// The stored aliases with the new ones added (each once, in order), `|`-separated.
fn merged_aliases(stored: &str, new: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    for alias in stored
        .split('|')
        .map(str::trim)
        .chain(new.iter().map(|a| a.trim()))
    {
        if !alias.is_empty() && !alias.contains('|') && !out.iter().any(|a| a == alias) {
            out.push(alias.to_string());
        }
    }
    out.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_keeps_trading_spot_symbols() {
        let json = r#"{"timezone":"UTC","symbols":[
            {"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT","isSpotTradingAllowed":true},
            {"symbol":"LUNAUSDT","status":"BREAK","baseAsset":"LUNA","quoteAsset":"USDT","isSpotTradingAllowed":true},
            {"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC","isSpotTradingAllowed":false}]}"#;
        let got = parse_binance_exchange_info(json).expect("parsed");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].symbol, "BTCUSDT");
        assert_eq!(got[0].name, "BTC / USDT");
        assert!(got[0].aliases.contains(&"btc".to_string()));
    }

    #[test]
    fn upbit_names_in_both_languages() {
        let json = r#"[{"market":"KRW-XRP","korean_name":"리플","english_name":"XRP","market_warning":"NONE"}]"#;
        let got = parse_upbit_markets(json).expect("parsed");
        assert_eq!(got[0].symbol, "KRW-XRP");
        assert_eq!(got[0].name, "리플 (KRW)");
        assert!(got[0].aliases.contains(&"리플".to_string()));
        assert!(got[0].aliases.contains(&"xrp".to_string()));
    }

    /// A master row as KIS writes it: code, standard code, name in cp949, the tail.
    fn master_row(code: &str, standard: &str, name: &str, group: &str, tail: usize) -> Vec<u8> {
        let mut row = format!("{code:<9}{standard:<12}").into_bytes();
        let (name, _, _) = encoding_rs::EUC_KR.encode(name);
        row.extend_from_slice(&name);
        row.extend_from_slice(b"   ");
        let mut rest = group.as_bytes().to_vec();
        rest.resize(tail, b'0');
        row.extend(rest);
        row
    }

    #[test]
    fn a_master_file_is_cut_in_bytes_then_decoded() {
        let mut file = master_row("005930", "KR7005930003", "삼성전자", "ST", KOSPI_TAIL);
        file.extend_from_slice(b"\r\n");
        file.extend(master_row(
            "069500",
            "KR7069500007",
            "KODEX 200",
            "EF",
            KOSPI_TAIL,
        ));
        file.push(b'\n');
        let got = parse_krx_master(&file, KOSPI_TAIL).expect("parsed");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].symbol.as_str(), got[0].name.as_str()),
            ("005930", "삼성전자")
        );
        assert_eq!(got[1].name, "KODEX 200");
        assert!(got[1].aliases.contains(&"etf".to_string()));
        let err = parse_krx_master(&file, KOSPI_TAIL + 100).expect_err("wrong tail");
        assert!(err.to_string().contains("KOSPI tail 227"), "{err}");
    }

    /// Rows in the shape of KIS's files (288 bytes for KOSPI, 282 for KOSDAQ, cp949;
    /// published by another project as copied from the real files).
    #[test]
    fn the_master_files_of_both_markets() {
        let fixture = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures")
                    .join(name),
            )
            .expect("fixture")
        };
        let kospi = parse_krx_master(&fixture("kospi_code.mst"), KOSPI_TAIL).expect("kospi");
        let names: Vec<_> = kospi
            .iter()
            .map(|l| (l.symbol.as_str(), l.name.as_str()))
            .collect();
        assert_eq!(names, [("005930", "삼성전자"), ("000040", "KR모터스")]);
        let kosdaq = parse_krx_master(&fixture("kosdaq_code.mst"), KOSDAQ_TAIL).expect("kosdaq");
        let names: Vec<_> = kosdaq
            .iter()
            .map(|l| (l.symbol.as_str(), l.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("247540", "에코프로비엠"),
                ("0004Y0", "디비금융제14호스팩"),
                ("001000", "신라섬유")
            ]
        );
        assert_eq!(master_tail("data/kosdaq_code.mst"), Some(KOSDAQ_TAIL));
        assert!(parse_krx_master(&fixture("kosdaq_code.mst"), KOSPI_TAIL).is_err());
    }

    #[test]
    fn a_csv_needs_code_and_name() {
        let got = parse_krx_csv(
            "code,name,market\n035720,카카오,KOSPI\n\"247540\",\"에코프로비엠\",KOSDAQ\n",
        )
        .expect("parsed");
        assert_eq!(got[1].symbol, "247540");
        assert_eq!(got[1].name, "에코프로비엠");
        assert!(parse_krx_csv("symbol,title\n1,2\n").is_err());
    }

    #[test]
    fn text_is_utf8_or_cp949() {
        let (cp949, _, _) = encoding_rs::EUC_KR.encode("code,name\n035720,카카오\n");
        assert_eq!(decode_text(&cp949), "code,name\n035720,카카오\n");
        assert_eq!(decode_text("\u{feff}code,name".as_bytes()), "code,name");
    }

    #[test]
    fn aliases_merge_once_each() {
        assert_eq!(
            merged_aliases("삼성|samsung", &["삼성전자".into(), "samsung".into()]),
            "삼성|samsung|삼성전자"
        );
    }
}
