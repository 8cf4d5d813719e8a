//! How times and prices read to a user, in every message the bot and the alerts role send:
//! times in the user's time zone (their choice, else Asia/Seoul for Korean and UTC for
//! everyone else), prices with thousands separators and their market's currency (₩ for KRX
//! and Upbit's KRW markets, the quote asset after a crypto pair's price).

pub use chrono_tz::Tz;
use rust_decimal::Decimal;

/// The time zone of a Korean-speaking user who chose none.
pub const KOREAN_DEFAULT: Tz = chrono_tz::Asia::Seoul;

/// A time zone as people type it: an IANA name in any case (`Asia/Seoul`,
/// `america/new_york`), or `KST` and `UTC`.
pub fn parse_time_zone(text: &str) -> Result<Tz, String> {
    let text = text.trim();
    match text.to_ascii_uppercase().as_str() {
        "KST" | "SEOUL" | "서울" => return Ok(KOREAN_DEFAULT),
        "UTC" | "GMT" | "Z" => return Ok(Tz::UTC),
        _ => {}
    }
    text.parse::<Tz>()
        .ok()
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .copied()
                .find(|tz| tz.name().eq_ignore_ascii_case(text))
        })
        .ok_or_else(|| format!("`{text}` is not a time zone (e.g. Asia/Seoul, UTC, Europe/London)"))
}

/// The zone a user reads times in: the one they chose (`users.time_zone`), else their
/// language's.
pub fn user_time_zone(language: &str, chosen: Option<&str>) -> Tz {
    if let Some(tz) = chosen.and_then(|name| parse_time_zone(name).ok()) {
        return tz;
    }
    let primary = language.trim().split(['-', '_']).next().unwrap_or_default();
    if primary.eq_ignore_ascii_case("ko") {
        KOREAN_DEFAULT
    } else {
        Tz::UTC
    }
}

/// `2026-03-04 15:30:00 KST`; the raw number when the time is out of range.
pub fn format_time(ts_ms: i64, tz: Tz) -> String {
    format_with(ts_ms, tz, "%Y-%m-%d %H:%M:%S %Z")
}

/// `2026-03-04 15:30 KST`, for lists.
pub fn format_time_short(ts_ms: i64, tz: Tz) -> String {
    format_with(ts_ms, tz, "%Y-%m-%d %H:%M %Z")
}

fn format_with(ts_ms: i64, tz: Tz, pattern: &str) -> String {
    match chrono::DateTime::from_timestamp_millis(ts_ms) {
        Some(t) => t.with_timezone(&tz).format(pattern).to_string(),
        None => ts_ms.to_string(),
    }
}

/// A decimal with thousands separators, its fractional digits as written:
/// `1234567.50` → `1,234,567.50`, `-0.001` stays.
pub fn format_number(value: Decimal) -> String {
    let text = value.to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// The currency a market is priced in, as shown next to its prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    /// Before the number: `₩74,800`, `$189.50`.
    Prefix(&'static str),
    /// After it: `64,321.12 USDT`.
    Suffix(&'static str),
    None,
}

/// Quote assets of crypto pairs, longest first (so `FDUSD` is not read as `USD`).
const QUOTES: [&str; 12] = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB", "KRW",
];

/// A market's currency from its venue and symbol: KRX stocks and Upbit's `KRW-…` markets
/// in won, US stocks in dollars, a crypto pair in its quote asset (`BTCUSDT` → USDT,
/// Upbit's `BTC-XRP` → BTC).
pub fn currency(venue: &str, symbol: &str) -> Currency {
    match venue {
        "krx" | "kospi" | "kosdaq" => return Currency::Prefix("₩"),
        "nyse" | "nasdaq" | "amex" | "us" => return Currency::Prefix("$"),
        _ => {}
    }
    if let Some((quote, _)) = symbol.split_once('-') {
        return match quote {
            "KRW" => Currency::Prefix("₩"),
            _ => QUOTES
                .iter()
                .find(|q| **q == quote)
                .map_or(Currency::None, |q| Currency::Suffix(q)),
        };
    }
    QUOTES
        .iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(**q))
        .map_or(Currency::None, |q| Currency::Suffix(q))
}

/// A price as the market shows it: `₩74,800`, `64,321.12 USDT`.
pub fn format_price(price: Decimal, venue: &str, symbol: &str) -> String {
    let number = format_number(price);
    match currency(venue, symbol) {
        Currency::Prefix(sign) if number.starts_with('-') => format!("-{sign}{}", &number[1..]),
        Currency::Prefix(sign) => format!("{sign}{number}"),
        Currency::Suffix(code) => format!("{number} {code}"),
        Currency::None => number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    #[test]
    fn numbers_are_grouped_by_thousands_and_keep_their_digits() {
        for (value, shown) in [
            ("0", "0"),
            ("999", "999"),
            ("1000", "1,000"),
            ("74800", "74,800"),
            ("1234567.50", "1,234,567.50"),
            ("-1234.5", "-1,234.5"),
            ("0.00012", "0.00012"),
            ("100000000", "100,000,000"),
        ] {
            assert_eq!(format_number(d(value)), shown, "{value}");
        }
    }

    #[test]
    fn prices_carry_their_markets_currency() {
        assert_eq!(format_price(d("74800"), "krx", "005930"), "₩74,800");
        assert_eq!(
            format_price(d("140000000"), "upbit", "KRW-BTC"),
            "₩140,000,000"
        );
        assert_eq!(
            format_price(d("0.00001234"), "upbit", "BTC-XRP"),
            "0.00001234 BTC"
        );
        assert_eq!(
            format_price(d("64321.12"), "binance", "BTCUSDT"),
            "64,321.12 USDT"
        );
        assert_eq!(
            format_price(d("1.0001"), "binance", "USDCUSDT"),
            "1.0001 USDT"
        );
        assert_eq!(format_price(d("0.5"), "binance", "ENAFDUSD"), "0.5 FDUSD");
        assert_eq!(format_price(d("189.5"), "nasdaq", "AAPL"), "$189.5");
        assert_eq!(format_price(d("-5"), "krx", "005930"), "-₩5");
        assert_eq!(format_price(d("12"), "file", "SPY"), "12");
    }

    #[test]
    fn times_read_in_the_users_zone() {
        // 2026-03-04 06:30 UTC is 15:30 in Seoul.
        let ts = 1_772_605_800_000;
        assert_eq!(format_time(ts, KOREAN_DEFAULT), "2026-03-04 15:30:00 KST");
        assert_eq!(format_time(ts, Tz::UTC), "2026-03-04 06:30:00 UTC");
        assert_eq!(format_time_short(ts, Tz::UTC), "2026-03-04 06:30 UTC");
        assert_eq!(user_time_zone("ko", None), KOREAN_DEFAULT);
        assert_eq!(user_time_zone("en", None), Tz::UTC);
        assert_eq!(
            user_time_zone("ko", Some("Europe/London")),
            chrono_tz::Europe::London
        );
        assert_eq!(user_time_zone("en", Some("not a zone")), Tz::UTC);
        assert_eq!(parse_time_zone("kst"), Ok(KOREAN_DEFAULT));
        assert_eq!(parse_time_zone("asia/tokyo"), Ok(chrono_tz::Asia::Tokyo));
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }
}
