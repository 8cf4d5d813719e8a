//! Configuration pieces the sources share: human durations (`500ms`, `30s`, `23h`), secrets
//! that never print, reconnect backoff and the outbox buffer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Serde for [`Duration`] as text: `250ms`, `30s`, `5m`, `23h`, `1d` (a bare number is
/// milliseconds). Written back in the largest unit that is exact.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Millis(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `250ms`, `1.5s`, `30s`, `5m`, `23h`, `1d`, or a bare number of milliseconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration; write e.g. `500ms`, `30s`, `23h`"))?;
        let seconds = match unit.trim() {
            "" | "ms" => value / 1000.0,
            "s" => value,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}`; use ms, s, m, h or d"
                ));
            }
        };
        if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
            return Err(format!("`{text}` is out of range"));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    /// The shortest exact spelling: `23h`, `90s`, `250ms`.
    pub fn format(value: Duration) -> String {
        let ms = value.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
        format!("{ms}ms")
    }
}

pub(crate) use tickwatch_schema::backoff::Backoff;
pub use tickwatch_schema::secret::Secret;

/// Exponential backoff with jitter, for reconnecting and for retrying the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// The first delay.
    #[serde(with = "duration")]
    pub initial: Duration,
    /// The longest delay.
    #[serde(with = "duration")]
    pub max: Duration,
    /// Each failure multiplies the delay by this.
    pub multiplier: f64,
    /// Each delay is moved randomly by up to this fraction (0.2 = ±20 %), so that many
    /// clients cut off at once do not come back at once.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl BackoffConfig {
    /// A fresh delay sequence on this schedule.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial, self.max, self.multiplier, self.jitter)
    }

    pub fn validate(&self, key: &str) -> Result<()> {
        if self.initial.is_zero() {
            return Err(Error::config(
                format!("{key}.initial"),
                "must be above zero",
            ));
        }
        if self.max < self.initial {
            return Err(Error::config(
                format!("{key}.max"),
                "must be at least `initial`",
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier <= 100.0) {
            return Err(Error::config(
                format!("{key}.multiplier"),
                "must be between 1 and 100",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::config(
                format!("{key}.jitter"),
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// How a WebSocket feed keeps its connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Open a fresh connection after this long, before the venue cuts it (Binance closes
    /// every connection at 24 h). The new one is opened before the old one is closed.
    #[serde(with = "duration")]
    pub renew_after: Duration,
    /// During a renewal, how long both connections run; trades seen on both are
    /// de-duplicated, frames of the new one are held until the old one is closed.
    #[serde(with = "duration")]
    pub overlap: Duration,
    /// Send a WebSocket ping this often (keeps idle connections open, proves liveness).
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// Reconnect when nothing at all (data, ping, pong) arrived for this long.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Give up a connection attempt (TCP, TLS, handshake) after this long.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Delays between reconnect attempts.
    pub reconnect: BackoffConfig,
    /// Send our own WebSocket pings every `ping_interval` (off for KIS, which keeps the
    /// session alive with its own PINGPONG messages).
    pub pings: bool,
    /// Renew the connection every `renew_after` (off for KIS: one session per app key, so
    /// a second connection would be refused).
    pub renew: bool,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            renew_after: Duration::from_secs(23 * 3600),
            overlap: Duration::from_secs(3),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(15),
            reconnect: BackoffConfig::default(),
            pings: true,
            renew: true,
        }
    }
}

impl ConnectionConfig {
    pub fn validate(&self, key: &str) -> Result<()> {
        validate_positive(&format!("{key}.renew_after"), self.renew_after)?;
        validate_positive(&format!("{key}.ping_interval"), self.ping_interval)?;
        validate_positive(&format!("{key}.connect_timeout"), self.connect_timeout)?;
        if self.renew_after > Duration::from_secs(24 * 3600) {
            return Err(Error::config(
                format!("{key}.renew_after"),
                "must be at most 24h (venues cut connections at 24 h)",
            ));
        }
        if self.overlap >= self.renew_after {
            return Err(Error::config(
                format!("{key}.overlap"),
                "must be shorter than `renew_after`",
            ));
        }
        if self.pings && self.idle_timeout <= self.ping_interval {
            return Err(Error::config(
                format!("{key}.idle_timeout"),
                "must be longer than `ping_interval`, or every quiet spell is taken for a dead connection",
            ));
        }
        self.reconnect.validate(&format!("{key}.reconnect"))
    }
}

/// The bounded buffer between a live source and the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Messages held while the broker is unavailable; past this the oldest tick is dropped
    /// (candles are kept while there are ticks to drop) and the drop is counted and logged.
    pub capacity: usize,
    /// Messages handed to the sink in one publish (one confirm round).
    pub batch_max: usize,
    /// Backoff between publish attempts while the broker is unavailable.
    pub retry: BackoffConfig,
    /// On shutdown, how long to keep trying to publish what is buffered.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            capacity: 100_000,
            batch_max: 500,
            retry: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
                ..BackoffConfig::default()
            },
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl BufferConfig {
    pub fn validate(&self, key: &str) -> Result<()> {
        if self.capacity == 0 {
            return Err(Error::config(
                format!("{key}.capacity"),
                "must be at least 1",
            ));
        }
        if self.batch_max == 0 || self.batch_max > 100_000 {
            return Err(Error::config(
                format!("{key}.batch_max"),
                "must be between 1 and 100000",
            ));
        }
        self.retry.validate(&format!("{key}.retry"))
    }
}

/// Checks that `url` is an absolute URL of one of `schemes`.
pub(crate) fn validate_url(key: &str, url: &str, schemes: &[&str]) -> Result<()> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::config(
            key,
            format!("`{url}` is not an absolute URL ({}://…)", schemes.join("/")),
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(Error::config(
            key,
            format!("scheme `{scheme}` is not one of {}", schemes.join(", ")),
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::config(key, format!("`{url}` has no host")));
    }
    Ok(())
}

/// Checks a list of symbols: not empty, each valid as the schema has it, no repeats.
pub(crate) fn validate_symbols(key: &str, symbols: &[String]) -> Result<()> {
    if symbols.is_empty() {
        return Err(Error::config(key, "needs at least one symbol"));
    }
    for (i, symbol) in symbols.iter().enumerate() {
        tickwatch_schema::wire::validate_symbol(symbol)
            .map_err(|e| Error::config(format!("{key}[{i}]"), e))?;
        if symbols[..i].contains(symbol) {
            return Err(Error::config(
                format!("{key}[{i}]"),
                format!("`{symbol}` is listed twice"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn validate_venue(key: &str, venue: &str) -> Result<()> {
    tickwatch_schema::wire::validate_venue(venue).map_err(|e| Error::config(key, e))
}

pub(crate) fn validate_positive(key: &str, value: Duration) -> Result<()> {
    if value.is_zero() {
        return Err(Error::config(key, "must be above zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration::parse("23h"), Ok(Duration::from_secs(23 * 3600)));
        assert_eq!(duration::parse("250"), Ok(Duration::from_millis(250)));
        assert!(duration::parse("5 parsecs").is_err());
        assert!(duration::parse("").is_err());
        assert_eq!(duration::format(Duration::from_secs(23 * 3600)), "23h");
        assert_eq!(duration::format(Duration::from_secs(90)), "90s");
        assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(serde_json::to_string(&s).expect("serialises"), "\"***\"");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches("hunter22"));
        assert!(!s.matches(""));
    }

    #[test]
    fn backoff_follows_the_configured_schedule() {
        let mut b = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        }
        .backoff();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn validation_names_the_key() {
        let cfg = BackoffConfig {
            jitter: 2.0,
            ..BackoffConfig::default()
        };
        let err = cfg
            .validate("binance.reconnect")
            .expect_err("bad jitter")
            .to_string();
        assert!(err.contains("`binance.reconnect.jitter`"), "{err}");
        let err = validate_symbols("upbit.codes", &["KRW-BTC".into(), "krw-eth".into()])
            .expect_err("lower case")
            .to_string();
        assert!(err.contains("`upbit.codes[1]`"), "{err}");
    }
}
