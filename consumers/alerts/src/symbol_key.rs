//! The book's symbol key: a venue and a symbol inline, so that finding a symbol's book
//! compares bytes inside the hash table instead of following pointers to cold strings.

use std::hash::Hasher;

/// The longest venue and symbol the contract allows.
const NAME_MAX: usize = 32;

/// A venue and a symbol, inline. Finding a book then compares bytes inside the hash table
/// instead of following a pointer to a string that is cold in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameKey {
    lengths: [u8; 2],
    bytes: [u8; 2 * NAME_MAX],
}

impl NameKey {
    /// `None` when a name is longer than the contract allows.
    pub fn new(venue: &str, symbol: &str) -> Option<NameKey> {
        let (v, s) = (venue.as_bytes(), symbol.as_bytes());
        let lengths = [u8::try_from(v.len()).ok()?, u8::try_from(s.len()).ok()?];
        let mut bytes = [0u8; 2 * NAME_MAX];
        bytes.get_mut(..v.len())?.copy_from_slice(v);
        bytes
            .get_mut(NAME_MAX..NAME_MAX + s.len())
            .filter(|_| v.len() <= NAME_MAX)?
            .copy_from_slice(s);
        Some(NameKey { lengths, bytes })
    }
}

impl std::hash::Hash for NameKey {
    // Only the bytes in use: a symbol is usually one or two words, not eight. Equal keys
    // have equal bytes, so they hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [v, s] = self.lengths.map(usize::from);
        state.write(self.bytes.get(..v).unwrap_or_default());
        state.write(self.bytes.get(NAME_MAX..NAME_MAX + s).unwrap_or_default());
        state.write_u8(self.lengths[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_are_exact_and_bounded() {
        let a = NameKey::new("binance", "BTCUSDT").expect("fits");
        assert_eq!(Some(a), NameKey::new("binance", "BTCUSDT"));
        assert_ne!(Some(a), NameKey::new("binanc", "eBTCUSDT"));
        assert_ne!(Some(a), NameKey::new("upbit", "BTCUSDT"));
        let long = "X".repeat(33);
        assert!(NameKey::new(&long, "A").is_none());
        assert!(NameKey::new("a", &long).is_none());
        assert!(NameKey::new(&"v".repeat(32), &"S".repeat(32)).is_some());
    }
}
