//! The one secret-string type of every configuration (bot tokens, webhook secrets, API
//! keys): [`secrecy`] keeps the value out of `Debug` and wipes it on drop; this wrapper adds
//! what a configuration needs besides — it prints and serialises as `***` (so `tickwatch
//! config` can show a configuration whole) and compares in constant time.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: deserialised from plain text; shown, printed and serialised as `***`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value, for the one place that needs it (never log it).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether `candidate` is the secret, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.expose().as_bytes(), candidate.as_bytes())
    }
}

/// `a == b` in time independent of where they differ (for comparing secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretString::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_and_compared_whole() {
        let s: Secret = serde_json::from_str("\"hunter2\"").expect("deserialises");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
        assert_eq!(serde_json::to_string(&s).expect("serialises"), "\"***\"");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches("hunter22"));
        assert_eq!(s, Secret::new("hunter2"));
    }
}
