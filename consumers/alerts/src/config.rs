//! `[alerts]` settings: the engine's defaults for what a rule does not say itself.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The engine's settings. Every key has a default, so an empty `[alerts]` section works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Re-arm band in percent for rules that do not set `hysteresis_pct`: after a rule fires,
    /// the price must move this far back across the threshold before it can fire again.
    /// `0` turns hysteresis off (TradingView behaviour). Range `[0, 50]`.
    pub hysteresis_pct: Decimal,
    /// A closed candle's close counts as a price only when the symbol had no tick within this
    /// many seconds before the candle's close (symbols with a trade feed are priced by ticks).
    pub candle_silence_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            hysteresis_pct: Decimal::new(1, 1),
            candle_silence_s: 60,
        }
    }
}

impl AlertsConfig {
    /// Checks every setting; the error names the first bad key.
    pub fn validate(&self) -> Result<()> {
        if self.hysteresis_pct < Decimal::ZERO || self.hysteresis_pct > Decimal::from(50) {
            return Err(Error::Config {
                key: "hysteresis_pct",
                reason: format!("{} is not in [0, 50]", self.hysteresis_pct),
            });
        }
        // A day of silence is already "this symbol has no trade feed"; more is a typo.
        if self.candle_silence_s == 0 || self.candle_silence_s > 86_400 {
            return Err(Error::Config {
                key: "candle_silence_s",
                reason: format!(
                    "{} is not between 1 and 86400 seconds",
                    self.candle_silence_s
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn candle_silence_ms(&self) -> i64 {
        // Validated to at most a day, so the product fits.
        i64::try_from(self.candle_silence_s)
            .unwrap_or(86_400)
            .saturating_mul(1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AlertsConfig::default()
            .validate()
            .expect("the defaults must validate");
    }

    #[test]
    fn empty_section_gives_defaults_and_numbers_or_strings_are_accepted() {
        let empty: AlertsConfig = toml::from_str("").expect("empty section");
        assert_eq!(empty, AlertsConfig::default());
        let set: AlertsConfig =
            toml::from_str("hysteresis_pct = 0.25\ncandle_silence_s = 120").expect("numbers");
        assert_eq!(set.hysteresis_pct, Decimal::new(25, 2));
        assert_eq!(set.candle_silence_s, 120);
        let text: AlertsConfig = toml::from_str("hysteresis_pct = \"0.5\"").expect("string");
        assert_eq!(text.hysteresis_pct, Decimal::new(5, 1));
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = AlertsConfig {
            hysteresis_pct: Decimal::from(51),
            ..AlertsConfig::default()
        };
        let err = bad.validate().expect_err("51% is out of range");
        assert!(err.to_string().contains("hysteresis_pct"), "{err}");
        let bad = AlertsConfig {
            candle_silence_s: 0,
            ..AlertsConfig::default()
        };
        let err = bad.validate().expect_err("0 s is out of range");
        assert!(err.to_string().contains("candle_silence_s"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<AlertsConfig>("hysteresis = 1").expect_err("typo");
        assert!(err.to_string().contains("hysteresis"), "{err}");
    }
}
