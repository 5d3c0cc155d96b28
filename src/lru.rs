//! [`ByteLru`]: a least-recently-used map bounded by the bytes of its
//! values, the bookkeeping under every bounded cache (the store's chunk
//! ranges in memory and indexes on disk, the compiled regex matchers,
//! the parsed queries). Owns the order and the byte count only: what an
//! entry holds, and what evicting it means (a file to delete), is the
//! caller's. A leaf: uses nothing of the crate, so every layer may use it.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map from `K` to `V` with a byte size per entry, in use order.
/// [`ByteLru::insert`] evicts least recently used entries past the
/// capacity, skipping those the caller says are in use.
///
/// Not synchronized: the caches hold it under a mutex.
#[derive(Debug)]
pub(crate) struct ByteLru<K, V> {
    capacity: u64,
    bytes: u64,
    tick: u64,
    entries: HashMap<K, Entry<V>>,
    /// Use tick -> key, oldest first.
    order: BTreeMap<u64, K>,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    bytes: u64,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    /// An empty map holding at most `capacity` bytes (besides entries in
    /// use at eviction time).
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes of the entries held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bound.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value of `key`, now the most recently used.
    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let tick = self.next_tick();
        let (k, _) = self.entries.get_key_value(key)?;
        let k = k.clone();
        let e = self.entries.get_mut(key)?;
        self.order.remove(&e.tick);
        e.tick = tick;
        self.order.insert(tick, k);
        Some(&e.value)
    }

    /// Inserts (or replaces) `key` as the most recently used entry of
    /// `bytes`, then evicts least recently used entries other than it,
    /// for which `in_use` is false, until the bytes are within the
    /// capacity. Returns the evicted (and a replaced) values.
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        bytes: u64,
        in_use: impl Fn(&V) -> bool,
    ) -> Vec<V> {
        let mut out = Vec::new();
        if let Some(old) = self.remove(&key) {
            out.push(old);
        }
        let tick = self.next_tick();
        self.order.insert(tick, key.clone());
        self.entries.insert(key, Entry { value, bytes, tick });
        self.bytes = self.bytes.saturating_add(bytes);
        out.extend(self.evict(|v| in_use(v), Some(tick)));
        out
    }

    /// Evicts least recently used entries (not `keep`, not in use) until
    /// the bytes are within the capacity.
    fn evict(&mut self, in_use: impl Fn(&V) -> bool, keep: Option<u64>) -> Vec<V> {
        let mut out = Vec::new();
        // Oldest first, from just past the last tick looked at: each
        // entry is looked at once, however many are evicted.
        let mut after = None;
        while self.bytes > self.capacity {
            let next = match after {
                None => self.order.iter().next(),
                Some(t) => self
                    .order
                    .range((std::ops::Bound::Excluded(t), std::ops::Bound::Unbounded))
                    .next(),
            };
            let Some((&t, k)) = next else { break };
            after = Some(t);
            if Some(t) == keep {
                continue;
            }
            let k = k.clone();
            if self.entries.get(&k).is_some_and(|e| !in_use(&e.value)) {
                if let Some(v) = self.remove(&k) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Evicts what [`ByteLru::insert`] would (entries released since).
    pub(crate) fn shrink(&mut self, in_use: impl Fn(&V) -> bool) -> Vec<V> {
        self.evict(in_use, None)
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.tick);
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lru_evicts_least_recently_used_first() {
        let mut l = ByteLru::new(10);
        assert!(l.insert("a", 1, 4, |_| false).is_empty());
        assert!(l.insert("b", 2, 4, |_| false).is_empty());
        // `a` used: `b` is now the oldest.
        assert_eq!(l.get(&"a"), Some(&1));
        assert_eq!(l.insert("c", 3, 4, |_| false), vec![2]);
        assert_eq!((l.bytes(), l.len()), (8, 2));
        assert_eq!(l.get(&"b"), None);
    }

    #[test]
    fn lru_skips_entries_in_use_and_keeps_the_new_one() {
        let mut l = ByteLru::new(10);
        l.insert("a", 1, 6, |_| false);
        // `a` in use: nothing can go, the map is over its bound.
        assert!(l.insert("b", 2, 6, |v| *v == 1).is_empty());
        assert_eq!(l.bytes(), 12);
        // Released: the next shrink brings it back within the bound.
        assert_eq!(l.shrink(|_| false), vec![1]);
        assert_eq!(l.bytes(), 6);
        // An entry larger than the bound stays while nothing else fits.
        assert_eq!(l.insert("c", 3, 20, |_| false), vec![2]);
        assert_eq!(l.bytes(), 20);
    }

    #[test]
    fn lru_replacing_a_key_returns_the_old_value() {
        let mut l = ByteLru::new(10);
        l.insert("a", 1, 4, |_| false);
        assert_eq!(l.insert("a", 2, 5, |_| false), vec![1]);
        assert_eq!((l.bytes(), l.len()), (5, 1));
    }

    proptest! {
        /// Against a model (a Vec in use order): same contents, same
        /// byte count, and within the bound after every insert when
        /// nothing is in use and no entry alone exceeds it.
        #[test]
        fn prop_lru_matches_a_model(ops in prop::collection::vec((0u8..3, 0u8..12, 1u64..40), 1..200)) {
            let cap = 100;
            let mut l = ByteLru::new(cap);
            let mut model: Vec<(u8, u64)> = Vec::new();
            for (op, key, bytes) in ops {
                match op {
                    0 | 1 => {
                        model.retain(|(k, _)| *k != key);
                        model.push((key, bytes));
                        let mut total: u64 = model.iter().map(|e| e.1).sum();
                        while total > cap && model.len() > 1 {
                            total -= model.remove(0).1;
                        }
                        l.insert(key, bytes, bytes, |_| false);
                        prop_assert!(l.bytes() <= cap);
                    }
                    _ => {
                        let want = model.iter().position(|(k, _)| *k == key);
                        let got = l.get(&key).copied();
                        prop_assert_eq!(got, want.map(|i| model[i].1));
                        if let Some(i) = want {
                            let e = model.remove(i);
                            model.push(e);
                        }
                    }
                }
                prop_assert_eq!(l.len(), model.len());
                prop_assert_eq!(l.bytes(), model.iter().map(|e| e.1).sum::<u64>());
            }
        }
    }
}
