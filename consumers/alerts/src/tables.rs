//! Small containers the book needs to stay fast and compact: a fast hasher for the symbol
//! table, a paged id → slot map, and a slab for out-of-line templates.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher (the `FxHash` of rustc). Keys are symbols and database ids from
/// our own producers and database, not attacker-chosen, and SipHash would cost a tenth of
/// the time budget of a tick.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxMap<K, V> = HashMap<K, V, FxBuild>;

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

const PAGE: usize = 256;

#[derive(Debug)]
struct Page {
    used: u32,
    /// `(book + 1) << 32 | slot`; 0 is empty.
    cells: [u64; PAGE],
}

/// Rule id → (book, slot). Database ids come from a sequence and are dense, so pages of 256
/// cells cost about 8 bytes per rule, against 35 for a hash map at a million entries (the
/// table doubles and keeps a control byte per bucket). Sparse ids still work, at up to
/// 2 KiB per page.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    pages: FxMap<i64, Box<Page>>,
    len: usize,
}

fn split(id: i64) -> (i64, usize) {
    // `rem_euclid` of a positive modulus is in `0..PAGE`.
    (
        id.div_euclid(PAGE as i64),
        usize::try_from(id.rem_euclid(PAGE as i64)).unwrap_or(0),
    )
}

impl IdMap {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, id: i64) -> Option<(usize, u32)> {
        let (page, cell) = split(id);
        let value = *self.pages.get(&page)?.cells.get(cell)?;
        if value == 0 {
            return None;
        }
        let book = usize::try_from((value >> 32) - 1).ok()?;
        Some((book, value as u32))
    }

    pub fn insert(&mut self, id: i64, book: usize, slot: u32) {
        let (page, cell) = split(id);
        let page = self.pages.entry(page).or_insert_with(|| {
            Box::new(Page {
                used: 0,
                cells: [0; PAGE],
            })
        });
        let Some(target) = page.cells.get_mut(cell) else {
            return;
        };
        if *target == 0 {
            page.used += 1;
            self.len += 1;
        }
        *target = ((book as u64 + 1) << 32) | u64::from(slot);
    }

    pub fn remove(&mut self, id: i64) -> Option<(usize, u32)> {
        let found = self.get(id)?;
        let (page_key, cell) = split(id);
        if let Some(page) = self.pages.get_mut(&page_key) {
            if let Some(target) = page.cells.get_mut(cell) {
                *target = 0;
                page.used -= 1;
                self.len -= 1;
            }
            if page.used == 0 {
                self.pages.remove(&page_key);
            }
        }
        Some(found)
    }

    pub fn heap_bytes(&self) -> usize {
        self.pages.len() * std::mem::size_of::<Page>()
            + self.pages.capacity() * (std::mem::size_of::<(i64, Box<Page>)>() + 1)
    }
}

/// A vector with reusable holes, indexed by `u32`.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `item`; `None` when the slab is full (4 billion items).
    pub fn insert(&mut self, item: T) -> Option<u32> {
        if let Some(index) = self.free.pop()
            && let Some(cell) = self.items.get_mut(index as usize)
        {
            *cell = Some(item);
            return Some(index);
        }
        let index = u32::try_from(self.items.len())
            .ok()
            .filter(|&i| i != u32::MAX)?;
        self.items.push(Some(item));
        Some(index)
    }

    pub fn get(&self, index: u32) -> Option<&T> {
        self.items.get(index as usize)?.as_ref()
    }

    pub fn remove(&mut self, index: u32) -> Option<T> {
        let item = self.items.get_mut(index as usize)?.take()?;
        self.free.push(index);
        Some(item)
    }

    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<Option<T>>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_round_trips_dense_sparse_and_negative_ids() {
        let mut map = IdMap::default();
        for id in [1_i64, 2, 255, 256, 1_000_000_007, -5] {
            map.insert(id, 3, id.unsigned_abs() as u32);
        }
        assert_eq!(map.len(), 6);
        assert_eq!(map.get(256), Some((3, 256)));
        assert_eq!(map.get(-5), Some((3, 5)));
        assert_eq!(map.get(257), None);
        assert_eq!(map.remove(256), Some((3, 256)));
        assert_eq!(map.remove(256), None);
        assert_eq!(map.get(256), None);
        assert_eq!(map.len(), 5);
        // Re-inserting an id overwrites it and does not count it twice.
        map.insert(1, 0, 9);
        assert_eq!(map.get(1), Some((0, 9)));
        assert_eq!(map.len(), 5);
    }

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

    #[test]
    fn slab_reuses_holes() {
        let mut slab = Slab::default();
        let a = slab.insert("a").expect("room");
        let b = slab.insert("b").expect("room");
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.get(a), None);
        let c = slab.insert("c").expect("room");
        assert_eq!(c, a);
        assert_eq!(slab.get(b), Some(&"b"));
    }
}
