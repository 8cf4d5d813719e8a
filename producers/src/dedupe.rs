//! Bounded memory of recent trade ids, so a trade delivered twice (by the old and the new
//! connection during a renewal, or by a venue's snapshot after a reconnect) is published once.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` (symbol, trade id) pairs; the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct Dedupe {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedupe {
    pub(crate) fn new(capacity: usize) -> Self {
        Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time this id is seen for this symbol.
    pub(crate) fn first_time(&mut self, symbol: &str, trade_id: &str) -> bool {
        // A NUL cannot occur in a valid symbol, so the pair maps to one key unambiguously.
        let key = format!("{symbol}\0{trade_id}");
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_window() {
        let mut d = Dedupe::new(2);
        assert!(d.first_time("BTCUSDT", "1"));
        assert!(d.first_time("ETHUSDT", "1"));
        assert!(!d.first_time("BTCUSDT", "1"));
        assert!(d.first_time("BTCUSDT", "2"));
        // "BTCUSDT 1" was the oldest and is forgotten.
        assert!(d.first_time("BTCUSDT", "1"));
        assert_eq!(d.seen.len(), 2);
    }
}
