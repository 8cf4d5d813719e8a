//! Prices and quantities as the venue allows them: a fill price on the venue's tick grid,
//! a quantity in whole shares (KRX) or eight decimals (crypto).

use rust_decimal::{Decimal, RoundingStrategy};
use tickwatch_schema::calendar::is_krx;

/// The KRX tick size of a price (the 2023 unified table, KOSPI and KOSDAQ alike).
pub fn krx_tick(price: Decimal) -> Decimal {
    let p = price;
    let tick = if p < Decimal::from(2_000) {
        1
    } else if p < Decimal::from(5_000) {
        5
    } else if p < Decimal::from(20_000) {
        10
    } else if p < Decimal::from(50_000) {
        50
    } else if p < Decimal::from(200_000) {
        100
    } else if p < Decimal::from(500_000) {
        500
    } else {
        1_000
    };
    Decimal::from(tick)
}

/// A buy's fill price: up to the next tick (a buyer pays at least the price).
pub fn buy_price(venue: &str, price: Decimal) -> Decimal {
    if is_krx(venue) {
        let tick = krx_tick(price);
        (price / tick).ceil() * tick
    } else {
        price.round_dp_with_strategy(8, RoundingStrategy::ToPositiveInfinity)
    }
}

/// A sell's fill price: down to the tick below (a seller gets at most the price).
pub fn sell_price(venue: &str, price: Decimal) -> Decimal {
    if is_krx(venue) {
        let tick = krx_tick(price);
        (price / tick).floor() * tick
    } else {
        price.round_dp_with_strategy(8, RoundingStrategy::ToNegativeInfinity)
    }
}

/// The quantity `amount` buys at `price`: whole shares on KRX, eight decimals elsewhere,
/// rounded down.
pub fn quantity(venue: &str, amount: Decimal, price: Decimal) -> Decimal {
    if price <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let raw = amount / price;
    if is_krx(venue) {
        raw.floor()
    } else {
        raw.round_dp_with_strategy(8, RoundingStrategy::ToZero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    #[test]
    fn krx_prices_sit_on_the_tick_grid() {
        assert_eq!(
            buy_price("krx", d("70_012".replace('_', "").as_str())),
            d("70100")
        );
        assert_eq!(sell_price("krx", d("70099")), d("70000"));
        assert_eq!(buy_price("krx", d("1999.5")), d("2000"));
        assert_eq!(sell_price("krx", d("4999")), d("4995"));
        assert_eq!(krx_tick(d("500000")), d("1000"));
        assert_eq!(quantity("krx", d("1000000"), d("70100")), d("14"));
        assert_eq!(quantity("binance", d("100"), d("3")), d("33.33333333"));
        assert_eq!(buy_price("binance", d("1.000000001")), d("1.00000001"));
    }
}
