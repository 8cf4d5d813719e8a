//! What a detector reports: a kind, a score and a few details, without allocating (the
//! engine turns a hit into a [`Signal`](tickwatch_schema::wire::Signal) only when it fires).

use tickwatch_schema::wire::SignalKind;

use crate::num::round_sig;

/// One value of a signal's `details`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Detail {
    Num(f64),
    Int(u64),
    Text(&'static str),
}

const MAX_DETAILS: usize = 6;

/// A detector's finding on one bar: plain data, cheap to keep for a redelivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    pub kind: SignalKind,
    pub score: u8,
    len: u8,
    details: [(&'static str, Detail); MAX_DETAILS],
    /// One list-valued detail (the VCP's contraction depths), up to six numbers.
    list: Option<(&'static str, [f64; 6], u8)>,
}

impl Hit {
    pub fn new(kind: SignalKind, score: u8) -> Self {
        Hit {
            kind,
            score,
            len: 0,
            details: [("", Detail::Int(0)); MAX_DETAILS],
            list: None,
        }
    }

    /// Adds a detail (beyond six, further ones are dropped: a programming slip, not data).
    pub fn with(mut self, key: &'static str, value: Detail) -> Self {
        if let Some(slot) = self.details.get_mut(usize::from(self.len)) {
            *slot = (key, value);
            self.len += 1;
        }
        self
    }

    pub fn num(self, key: &'static str, value: f64) -> Self {
        self.with(key, Detail::Num(value))
    }

    pub fn list(mut self, key: &'static str, values: &[f64]) -> Self {
        let mut xs = [0.0; 6];
        let n = values.len().min(6);
        xs[..n].copy_from_slice(&values[..n]);
        self.list = Some((key, xs, n as u8));
        self
    }

    /// The details as JSON, numbers rounded to 6 significant digits.
    pub fn details_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let number = |x: f64| {
            serde_json::Number::from_f64(round_sig(x))
                .map_or(serde_json::Value::Null, serde_json::Value::Number)
        };
        // One by one: collecting would buffer, sort and bulk-build.
        let mut map = serde_json::Map::new();
        for (key, value) in &self.details[..usize::from(self.len)] {
            let value = match *value {
                Detail::Num(x) => number(x),
                Detail::Int(n) => serde_json::Value::from(n),
                Detail::Text(t) => serde_json::Value::from(t),
            };
            map.insert((*key).to_string(), value);
        }
        if let Some((key, xs, n)) = &self.list {
            let values = xs[..usize::from(*n)].iter().map(|&x| number(x)).collect();
            map.insert((*key).to_string(), serde_json::Value::Array(values));
        }
        map
    }
}
