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
    #[cfg(test)]
    pub fn details_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.details_json_with(&mut None)
    }

    /// [`Hit::details_json`], cloning the map's shape from `template` (built on first use,
    /// rebuilt if this hit's keys differ from the ones it was built for).
    pub fn details_json_with(
        &self,
        template: &mut Option<Template>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let keys = self.keys();
        let t = match template {
            Some(t) if t.fits(&keys) => t,
            _ => template.insert(Template::new(&keys)),
        };
        let Some(order) = &t.order else {
            return self.details_inserted();
        };
        // Same keys, same tree: clone it (no key compared) and fill the values in key order.
        let mut map = t.map.clone();
        for (value, &i) in map.values_mut().zip(order.iter()) {
            *value = self.value(usize::from(i));
        }
        map
    }

    /// The keys in insertion order: the details, then the list's.
    fn keys(&self) -> Keys {
        let mut keys = Keys {
            keys: [""; MAX_KEYS],
            len: self.len,
        };
        for (slot, (key, _)) in keys
            .keys
            .iter_mut()
            .zip(&self.details[..usize::from(self.len)])
        {
            *slot = key;
        }
        if let Some((key, _, _)) = &self.list {
            keys.keys[usize::from(keys.len)] = key;
            keys.len += 1;
        }
        keys
    }

    /// The JSON value of entry `i` of [`Hit::keys`].
    fn value(&self, i: usize) -> serde_json::Value {
        match self.details.get(i) {
            Some((_, value)) if i < usize::from(self.len) => match *value {
                Detail::Num(x) => number(x),
                Detail::Int(n) => serde_json::Value::from(n),
                Detail::Text(t) => serde_json::Value::from(t),
            },
            _ => match &self.list {
                Some((_, xs, n)) => serde_json::Value::Array(
                    xs[..usize::from(*n)].iter().map(|&x| number(x)).collect(),
                ),
                None => serde_json::Value::Null,
            },
        }
    }

    /// The map built key by key (a later duplicate key replaces an earlier one).
    fn details_inserted(&self) -> serde_json::Map<String, serde_json::Value> {
        let keys = self.keys();
        let mut map = serde_json::Map::new();
        for (i, key) in keys.keys[..usize::from(keys.len)].iter().enumerate() {
            map.insert((*key).to_string(), self.value(i));
        }
        map
    }
}

fn number(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(round_sig(x))
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Up to six details and a list.
const MAX_KEYS: usize = MAX_DETAILS + 1;

#[derive(Debug, Clone, Copy)]
struct Keys {
    keys: [&'static str; MAX_KEYS],
    len: u8,
}

impl Keys {
    fn as_slice(&self) -> &[&'static str] {
        &self.keys[..usize::from(self.len)]
    }
}

/// The shape of a `details` map: its keys (with null values) in a tree, and for each
/// entry in key order, which of the hit's entries it holds. A kind's hits always carry
/// the same keys, so each kind builds its template once.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    keys: Keys,
    map: serde_json::Map<String, serde_json::Value>,
    /// `None` if the keys repeat (then maps are built key by key).
    order: Option<[u8; MAX_KEYS]>,
}

impl Template {
    fn new(keys: &Keys) -> Self {
        let mut map = serde_json::Map::new();
        for key in keys.as_slice() {
            map.insert((*key).to_string(), serde_json::Value::Null);
        }
        let mut order = [0u8; MAX_KEYS];
        let unique = map.len() == keys.as_slice().len();
        if unique {
            for (slot, key) in order.iter_mut().zip(map.keys()) {
                let i = keys.as_slice().iter().position(|k| k == key).unwrap_or(0);
                *slot = i as u8;
            }
        }
        Template {
            keys: *keys,
            map,
            order: unique.then_some(order),
        }
    }

    fn fits(&self, keys: &Keys) -> bool {
        self.keys.len == keys.len
            && self
                .keys
                .as_slice()
                .iter()
                .zip(keys.as_slice())
                .all(|(a, b)| (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_build_the_same_maps() {
        let hits = [
            Hit::new(SignalKind::VcpSetup, 70)
                .num("pivot", 101.234_567)
                .with("contractions", Detail::Int(3))
                .list("depths_pct", &[20.0, 11.5, 4.25])
                .with("base_bars", Detail::Int(44))
                .num("dry_up_ratio", 0.5)
                .num("trend_strength", f64::NAN),
            Hit::new(SignalKind::ClosingPriceSetup, 55)
                .num("gain_pct", 4.5)
                .num("volume_ratio", 2.25)
                .num("close_position", 0.9)
                .with("exit", Detail::Text("next_open")),
            Hit::new(SignalKind::GapUp, 50),
            Hit::new(SignalKind::GapUp, 50)
                .num("b", 1.0)
                .num("a", 2.0)
                .num("b", 3.0),
            Hit::new(SignalKind::GapUp, 50)
                .num("b", 1.0)
                .list("b", &[1.0]),
        ];
        let mut template = None;
        for _ in 0..2 {
            for h in &hits {
                assert_eq!(h.details_json_with(&mut template), h.details_inserted());
                let mut own = None;
                assert_eq!(h.details_json_with(&mut own), h.details_inserted());
                assert_eq!(h.details_json_with(&mut own), h.details_inserted());
            }
        }
        let m = hits[3].details_json();
        assert_eq!(m.len(), 2);
        assert_eq!(m["b"], serde_json::json!(3.0));
    }
}
