//! A paper strategy: which signals it follows, how much it buys, when it sells, and what
//! trading costs.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{Grade, Signal, SignalDirection, SignalKind};

use crate::error::{Error, Result};

/// How much one entry buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizing {
    /// This much of the strategy's currency per trade.
    Fixed(Decimal),
    /// This percentage of the strategy's equity (cash plus open positions at their last
    /// close) per trade.
    PctEquity(Decimal),
}

/// Trading costs, in percent of the traded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    /// Commission on each buy and each sell.
    pub commission_pct: Decimal,
    /// A tax on sells only (KRX's securities transaction tax).
    #[serde(default)]
    pub sell_tax_pct: Decimal,
    /// How much worse than the reference price each fill is.
    #[serde(default)]
    pub slippage_pct: Decimal,
}

impl Fees {
    /// The defaults of a venue: KRX 0.015 % commission (an online broker's) and the 0.18 %
    /// sell tax; Upbit 0.05 %; Binance (and the rest) 0.1 %. No slippage.
    pub fn for_venue(venue: &str) -> Fees {
        let pct = |text: &str| text.parse::<Decimal>().unwrap_or_default();
        match venue {
            v if tickwatch_schema::calendar::is_krx(v) => Fees {
                commission_pct: pct("0.015"),
                sell_tax_pct: pct("0.18"),
                slippage_pct: Decimal::ZERO,
            },
            "upbit" => Fees {
                commission_pct: pct("0.05"),
                sell_tax_pct: Decimal::ZERO,
                slippage_pct: Decimal::ZERO,
            },
            _ => Fees {
                commission_pct: pct("0.1"),
                sell_tax_pct: Decimal::ZERO,
                slippage_pct: Decimal::ZERO,
            },
        }
    }
}

/// A paper strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub id: i64,
    pub name: String,
    /// The signal kinds it follows (bullish or neutral: paper trading is long only).
    pub kinds: Vec<SignalKind>,
    /// The weakest grade it follows (`A` is the strongest).
    #[serde(default = "weakest")]
    pub min_grade: Grade,
    /// Only these venues (`krx`, `upbit` …); empty: any.
    #[serde(default)]
    pub venues: Vec<String>,
    /// Only these symbols; empty: any.
    #[serde(default)]
    pub symbols: Vec<String>,
    pub starting_balance: Decimal,
    pub currency: String,
    pub sizing: Sizing,
    #[serde(default)]
    pub take_profit_pct: Option<Decimal>,
    #[serde(default)]
    pub stop_loss_pct: Option<Decimal>,
    #[serde(default)]
    pub trailing_stop_pct: Option<Decimal>,
    /// Sell at the close of the position's Nth bar (the entry bar is the first).
    #[serde(default)]
    pub max_bars: Option<u32>,
    /// Sell at the next bar's open after a bearish signal of the symbol.
    #[serde(default)]
    pub exit_on_opposite: bool,
    /// `None`: the venue's defaults ([`Fees::for_venue`]).
    #[serde(default)]
    pub fees: Option<Fees>,
    /// Signals that came out before this time (epoch ms) are not followed: a live strategy
    /// follows the signals produced from its creation (or the last change of what it
    /// follows) on, whatever market time they carry (a replay's are old).
    #[serde(default)]
    pub since_ts: i64,
}

fn weakest() -> Grade {
    Grade::D
}

impl Strategy {
    /// Checks the fields fit together; names the first that does not.
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty() {
            return Err(Error::invalid("kinds", "follows no signal kind"));
        }
        if let Some(kind) = self
            .kinds
            .iter()
            .find(|k| k.direction() == SignalDirection::Bearish)
        {
            return Err(Error::invalid(
                "kinds",
                format!("`{kind}` is bearish: paper trading follows signals long only"),
            ));
        }
        if self.starting_balance <= Decimal::ZERO {
            return Err(Error::invalid("starting_balance", "must be above zero"));
        }
        match self.sizing {
            Sizing::Fixed(amount) if amount <= Decimal::ZERO => {
                return Err(Error::invalid(
                    "sizing",
                    "a fixed amount must be above zero",
                ));
            }
            Sizing::PctEquity(pct) if pct <= Decimal::ZERO || pct > Decimal::ONE_HUNDRED => {
                return Err(Error::invalid("sizing", "a percentage must be in (0, 100]"));
            }
            _ => {}
        }
        let percent = |field: &'static str, value: Option<Decimal>, max: i64| match value {
            Some(v) if v <= Decimal::ZERO || v > Decimal::from(max) => {
                Err(Error::invalid(field, format!("{v} is not in (0, {max}]")))
            }
            _ => Ok(()),
        };
        percent("take_profit_pct", self.take_profit_pct, 10_000)?;
        percent("stop_loss_pct", self.stop_loss_pct, 100)?;
        percent("trailing_stop_pct", self.trailing_stop_pct, 100)?;
        if self.max_bars == Some(0) {
            return Err(Error::invalid("max_bars", "must be at least 1"));
        }
        if let Some(fees) = self.fees {
            for (field, v) in [
                ("fees.commission_pct", fees.commission_pct),
                ("fees.sell_tax_pct", fees.sell_tax_pct),
                ("fees.slippage_pct", fees.slippage_pct),
            ] {
                if v < Decimal::ZERO || v >= Decimal::from(10) {
                    return Err(Error::invalid(
                        "fees",
                        format!("{field} {v} is not in [0, 10)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a signal that came out at `seen_at` is one this strategy follows.
    pub fn follows(&self, signal: &Signal, seen_at: i64) -> bool {
        self.kinds.contains(&signal.kind)
            && seen_at >= self.since_ts
            && signal.grade.meets(self.min_grade)
            && (self.venues.is_empty() || self.venues.contains(&signal.venue))
            && (self.symbols.is_empty() || self.symbols.contains(&signal.symbol))
    }

    /// The fees on `venue`.
    pub fn fees_on(&self, venue: &str) -> Fees {
        self.fees.unwrap_or_else(|| Fees::for_venue(venue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_follows_what_came_out_after_its_start() {
        let signal: Signal = serde_json::from_value(serde_json::json!({
            "id": "0193a000-0000-7000-8000-000000000001", "kind": "golden_cross",
            "venue": "krx", "symbol": "005930", "interval": "1d", "ts": 1_600_000_000_000_i64,
            "price": "60000", "score": 70, "grade": "B", "details": {}
        }))
        .expect("a signal");
        let strategy = Strategy {
            id: 1,
            name: "s".into(),
            kinds: vec![SignalKind::GoldenCross],
            min_grade: Grade::C,
            venues: vec!["krx".into()],
            symbols: Vec::new(),
            starting_balance: Decimal::ONE_THOUSAND,
            currency: "KRW".into(),
            sizing: Sizing::Fixed(Decimal::ONE_HUNDRED),
            take_profit_pct: None,
            stop_loss_pct: None,
            trailing_stop_pct: None,
            max_bars: None,
            exit_on_opposite: false,
            fees: None,
            since_ts: 1_700_000_000_000,
        };
        // An old candle's signal that came out now (a replay) is followed; one that came
        // out before the strategy's start is not.
        assert!(strategy.follows(&signal, 1_700_000_000_001));
        assert!(!strategy.follows(&signal, 1_699_999_999_999));
        let weaker = Signal {
            grade: Grade::D,
            ..signal.clone()
        };
        assert!(
            !strategy.follows(&weaker, 1_700_000_000_001),
            "below the grade"
        );
        let elsewhere = Signal {
            venue: "upbit".into(),
            ..signal
        };
        assert!(
            !strategy.follows(&elsewhere, 1_700_000_000_001),
            "another venue"
        );
    }
}
