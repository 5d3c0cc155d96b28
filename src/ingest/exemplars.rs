//! The exemplar store: a bounded ring of the most recent exemplars, for
//! `/api/v1/query_exemplars`. In memory only, like Prometheus's circular
//! exemplar storage; the oldest entries are overwritten when full.

use std::collections::VecDeque;

use parking_lot::RwLock;

use crate::ingest::validate::ExemplarEntry;
use crate::model::Matcher;

/// A ring buffer of exemplars.
#[derive(Debug)]
pub struct ExemplarStore {
    capacity: usize,
    ring: RwLock<VecDeque<ExemplarEntry>>,
}

impl ExemplarStore {
    /// A store holding at most `capacity` exemplars (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ring: RwLock::default(),
        }
    }

    /// Adds exemplars, skipping one identical to the newest exemplar of the
    /// same series (a resent request). Returns how many were stored.
    pub fn add(&self, entries: Vec<ExemplarEntry>) -> usize {
        if self.capacity == 0 || entries.is_empty() {
            return 0;
        }
        let mut ring = self.ring.write();
        let mut stored = 0;
        for e in entries {
            let dup = ring.iter().rev().take(64).any(|x| {
                x.series == e.series
                    && x.t == e.t
                    && x.labels == e.labels
                    && x.value.to_bits() == e.value.to_bits()
            });
            if dup {
                continue;
            }
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(e);
            stored += 1;
        }
        stored
    }

    /// Exemplars in `[mint, maxt]` of series matching all `matchers`,
    /// oldest first.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<ExemplarEntry> {
        self.ring
            .read()
            .iter()
            .filter(|e| e.t >= mint && e.t <= maxt)
            .filter(|e| {
                matchers
                    .iter()
                    .all(|m| m.matches(e.series.get(m.name()).unwrap_or("")))
            })
            .cloned()
            .collect()
    }

    /// Number of exemplars held.
    pub fn len(&self) -> usize {
        self.ring.read().len()
    }

    /// Reports whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn ex(t: i64) -> ExemplarEntry {
        ExemplarEntry {
            series: Labels::from_static(&[("__name__", "m")]),
            labels: Labels::from_static(&[("trace_id", "abc")]),
            value: 1.0,
            t,
        }
    }

    #[test]
    fn ring_overwrites_oldest_and_skips_resends() {
        let s = ExemplarStore::new(3);
        assert_eq!(s.add(vec![ex(1), ex(2), ex(3), ex(4)]), 4);
        assert_eq!(s.add(vec![ex(4)]), 0);
        let got: Vec<i64> = s
            .select(&[Matcher::eq("__name__", "m")], 0, 10)
            .iter()
            .map(|e| e.t)
            .collect();
        assert_eq!(got, [2, 3, 4]);
        assert!(s.select(&[Matcher::eq("__name__", "x")], 0, 10).is_empty());
        assert_eq!(s.select(&[], 3, 3).len(), 1);
    }
}
