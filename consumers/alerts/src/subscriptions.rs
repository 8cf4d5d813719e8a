//! Signal subscriptions, indexed by signal kind, then by symbol (or "every symbol"), each
//! list sorted by minimum grade so a signal finds its matches with one binary search.

use tickwatch_schema::rule::Subscription;
use tickwatch_schema::wire::{Grade, Signal, SignalKind, deterministic_id};

use crate::engine::Applied;
use crate::error::Error;
use crate::firing::SubscriptionHit;
use rustc_hash::FxHashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    min_grade: Grade,
    id: i64,
    user_id: i64,
}

impl Entry {
    fn key(&self) -> (Grade, i64) {
        (self.min_grade, self.id)
    }
}

#[derive(Debug, Default)]
struct KindIndex {
    all_symbols: Vec<Entry>,
    by_symbol: FxHashMap<Box<str>, Vec<Entry>>,
}

#[derive(Debug)]
struct Held {
    kind: SignalKind,
    symbol: Option<Box<str>>,
    version: i64,
}

/// The active subscriptions, with the versions of deleted ones.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionBook {
    held: FxHashMap<i64, Held>,
    tombstones: FxHashMap<i64, i64>,
    by_kind: FxHashMap<SignalKind, KindIndex>,
}

impl SubscriptionBook {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.held.keys().copied().collect()
    }

    pub fn version(&self, id: i64) -> Option<i64> {
        self.held
            .get(&id)
            .map(|h| h.version)
            .or_else(|| self.tombstones.get(&id).copied())
    }

    /// Applies an upsert if it is newer than what is held (live or deleted).
    pub fn upsert(&mut self, sub: &Subscription) -> Applied {
        if let Some(held) = self.version(sub.id)
            && sub.version <= held
        {
            return Applied::Stale {
                id: sub.id,
                held,
                got: sub.version,
            };
        }
        if let Err(source) = sub.validate() {
            return Applied::Rejected {
                id: sub.id,
                error: Error::Subscription {
                    subscription_id: sub.id,
                    source,
                },
            };
        }
        let was_live = self.unlink(sub.id);
        if !sub.active {
            self.tombstones.insert(sub.id, sub.version);
            return Applied::SubscriptionRemoved {
                subscription_id: sub.id,
                was_live,
            };
        }
        self.tombstones.remove(&sub.id);
        let entry = Entry {
            min_grade: sub.min_grade,
            id: sub.id,
            user_id: sub.user_id,
        };
        let symbol: Option<Box<str>> = sub.symbol.as_deref().map(Into::into);
        let index = self.by_kind.entry(sub.kind).or_default();
        let list = match &symbol {
            Some(s) => index.by_symbol.entry(s.clone()).or_default(),
            None => &mut index.all_symbols,
        };
        let at = list.partition_point(|e| e.key() < entry.key());
        list.insert(at, entry);
        self.held.insert(
            sub.id,
            Held {
                kind: sub.kind,
                symbol,
                version: sub.version,
            },
        );
        if was_live {
            Applied::SubscriptionReplaced {
                subscription_id: sub.id,
            }
        } else {
            Applied::SubscriptionAdded {
                subscription_id: sub.id,
            }
        }
    }

    /// Applies a delete unless a newer version is held.
    pub fn delete(&mut self, id: i64, version: i64) -> Applied {
        if let Some(held) = self.version(id)
            && version < held
        {
            return Applied::Stale {
                id,
                held,
                got: version,
            };
        }
        let was_live = self.unlink(id);
        self.tombstones.insert(id, version);
        Applied::SubscriptionRemoved {
            subscription_id: id,
            was_live,
        }
    }

    /// Removes a live subscription without leaving a tombstone (the caller decides).
    pub fn unlink(&mut self, id: i64) -> bool {
        let Some(held) = self.held.remove(&id) else {
            return false;
        };
        if let Some(index) = self.by_kind.get_mut(&held.kind) {
            let list = match &held.symbol {
                Some(s) => index.by_symbol.get_mut(s),
                None => Some(&mut index.all_symbols),
            };
            if let Some(list) = list {
                list.retain(|e| e.id != id);
                if list.is_empty()
                    && let Some(s) = &held.symbol
                {
                    index.by_symbol.remove(s);
                }
            }
        }
        true
    }

    pub fn tombstone(&mut self, id: i64, version: i64) {
        self.tombstones.insert(id, version);
    }

    /// Every active subscription the signal meets: its kind, its symbol or all symbols, and
    /// a grade at least the subscription's minimum (A meets a minimum of B). Sorted by
    /// subscription id.
    pub fn hits(&self, signal: &Signal) -> Vec<SubscriptionHit> {
        let Some(index) = self.by_kind.get(&signal.kind) else {
            return Vec::new();
        };
        let signal_id = signal.id.to_string();
        let mut hits = Vec::new();
        let lists = [
            Some(&index.all_symbols),
            index.by_symbol.get(signal.symbol.as_str()),
        ];
        for list in lists.into_iter().flatten() {
            // Sorted by minimum grade, A first: the matches are the minimums at or below
            // (weaker than or equal to) the signal's grade — a suffix.
            let start = list.partition_point(|e| !signal.grade.meets(e.min_grade));
            for entry in list.get(start..).unwrap_or_default() {
                let sub_id = entry.id.to_string();
                hits.push(SubscriptionHit {
                    id: deterministic_id(signal.ts, &["signal-sub", &sub_id, &signal_id]),
                    subscription_id: entry.id,
                    user_id: entry.user_id,
                    signal_id: signal.id,
                    kind: signal.kind,
                    grade: signal.grade,
                });
            }
        }
        hits.sort_by_key(|h| h.subscription_id);
        hits
    }

    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.held.capacity() * (size_of::<(i64, Held)>() + 1)
            + self.tombstones.capacity() * 17
            + self
                .by_kind
                .values()
                .map(|k| {
                    k.all_symbols.capacity() * size_of::<Entry>()
                        + k.by_symbol
                            .iter()
                            .map(|(s, l)| s.len() + l.capacity() * size_of::<Entry>())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }
}
