//! The head's exemplar store: a bounded ring of the most recent exemplars,
//! for `/api/v1/query_exemplars`, as Prometheus's circular exemplar storage
//! (`tsdb/exemplar.go` @ v2.42.0): the oldest entry is overwritten when
//! full; per series, an exemplar identical to the series' newest is a
//! duplicate (ignored silently) and one not newer than it is out of order
//! (dropped and counted).
//!
//! Owns the in-memory ring only. The appender ([`crate::storage::head`])
//! logs accepted exemplars to the WAL before applying them here, and the
//! ring is saved beside the head snapshot (`head_metadata`); this module
//! touches neither file.

use std::collections::{HashMap, VecDeque};

use parking_lot::{Mutex, MutexGuard};

use crate::model::{Labels, Matcher};
use crate::storage::SeriesRef;

/// An exemplar with the labels of the series it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarEntry {
    /// The series it belongs to.
    pub series: Labels,
    /// The exemplar's own labels (e.g. `trace_id`).
    pub labels: Labels,
    /// Value.
    pub value: f64,
    /// Timestamp, ms.
    pub t: i64,
}

impl ExemplarEntry {
    /// Prometheus `exemplar.Exemplar.Equals`: same labels, time and value.
    fn same_as(&self, other: &ExemplarEntry) -> bool {
        self.t == other.t
            && self.value.to_bits() == other.value.to_bits()
            && self.labels == other.labels
    }
}

/// Why an exemplar was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExemplarDrop {
    /// Not newer than the newest exemplar of its series (and not identical
    /// to it).
    OutOfOrder,
    /// Its series is not in the head (it came without samples, or all of
    /// its samples were refused before the series was created).
    UnknownSeries,
}

impl ExemplarDrop {
    /// Stable snake_case name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ExemplarDrop::OutOfOrder => "out_of_order",
            ExemplarDrop::UnknownSeries => "unknown_series",
        }
    }
}

/// What to do with one exemplar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExemplarVerdict {
    Append,
    Duplicate,
    Drop(ExemplarDrop),
}

/// The ring and its per-series index.
///
/// Locking: one mutex over everything. The appender holds it from judging
/// a batch's exemplars, across the WAL write, to applying them, so their
/// WAL order is the order they entered the ring (lock order: after the
/// series locks, before the metadata store).
#[derive(Debug)]
pub struct ExemplarStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    ring: VecDeque<(SeriesRef, ExemplarEntry)>,
    /// Per series: how many of its entries the ring holds, and the newest
    /// of them (what the next exemplar of the series is judged against).
    newest: HashMap<SeriesRef, (usize, ExemplarEntry), ahash::RandomState>,
}

impl Inner {
    /// Judges `e` of `series_ref` against the newest exemplar held or
    /// accepted earlier in the same batch (`pending`).
    pub(crate) fn judge(
        &self,
        series_ref: SeriesRef,
        e: &ExemplarEntry,
        pending: &HashMap<SeriesRef, ExemplarEntry, ahash::RandomState>,
    ) -> ExemplarVerdict {
        let newest = pending
            .get(&series_ref)
            .or_else(|| self.newest.get(&series_ref).map(|(_, e)| e));
        match newest {
            Some(n) if n.same_as(e) => ExemplarVerdict::Duplicate,
            Some(n) if e.t <= n.t => ExemplarVerdict::Drop(ExemplarDrop::OutOfOrder),
            _ => ExemplarVerdict::Append,
        }
    }

    /// Stores an accepted exemplar, overwriting the oldest when full.
    pub(crate) fn push(&mut self, capacity: usize, series_ref: SeriesRef, e: ExemplarEntry) {
        if capacity == 0 {
            return;
        }
        if self.ring.len() >= capacity {
            if let Some((old_ref, _)) = self.ring.pop_front() {
                if let Some((n, _)) = self.newest.get_mut(&old_ref) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.newest.remove(&old_ref);
                    }
                }
            }
        }
        let slot = self
            .newest
            .entry(series_ref)
            .or_insert_with(|| (0, e.clone()));
        slot.0 += 1;
        slot.1 = e.clone();
        self.ring.push_back((series_ref, e));
    }

    /// Every entry, oldest first, with its series ref.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &(SeriesRef, ExemplarEntry)> {
        self.ring.iter()
    }
}

impl ExemplarStore {
    /// A store holding at most `capacity` exemplars (0 turns it off).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// Most exemplars held (0: exemplar storage is off).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Judges and stores one exemplar outside an append (replay, file
    /// load). Returns the verdict.
    pub(crate) fn add(&self, series_ref: SeriesRef, e: ExemplarEntry) -> ExemplarVerdict {
        if self.capacity == 0 {
            // Storage off: nothing is kept, reported as nothing new.
            return ExemplarVerdict::Duplicate;
        }
        let mut inner = self.inner.lock();
        let v = inner.judge(series_ref, &e, &HashMap::default());
        if v == ExemplarVerdict::Append {
            inner.push(self.capacity, series_ref, e);
        }
        v
    }

    /// Exemplars in `[mint, maxt]` of series matching all `matchers`,
    /// oldest first.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<ExemplarEntry> {
        self.inner
            .lock()
            .ring
            .iter()
            .map(|(_, e)| e)
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
        self.inner.lock().ring.len()
    }

    /// Reports whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, v: f64) -> ExemplarEntry {
        ExemplarEntry {
            series: Labels::from_static(&[("__name__", "m")]),
            labels: Labels::from_static(&[("trace_id", "abc")]),
            value: v,
            t,
        }
    }

    #[test]
    fn store_ring_overwrites_oldest_and_judges_per_series() {
        let s = ExemplarStore::new(3);
        for t in 1..=4 {
            assert_eq!(s.add(SeriesRef(1), ex(t, 1.0)), ExemplarVerdict::Append);
        }
        assert_eq!(s.add(SeriesRef(1), ex(4, 1.0)), ExemplarVerdict::Duplicate);
        assert_eq!(
            s.add(SeriesRef(1), ex(4, 2.0)),
            ExemplarVerdict::Drop(ExemplarDrop::OutOfOrder)
        );
        assert_eq!(
            s.add(SeriesRef(1), ex(2, 1.0)),
            ExemplarVerdict::Drop(ExemplarDrop::OutOfOrder)
        );
        // Another series is judged on its own.
        assert_eq!(s.add(SeriesRef(2), ex(1, 1.0)), ExemplarVerdict::Append);
        let got: Vec<i64> = s
            .select(&[Matcher::eq("__name__", "m")], 0, 10)
            .iter()
            .map(|e| e.t)
            .collect();
        assert_eq!(got, [3, 4, 1]);
        assert!(s.select(&[Matcher::eq("__name__", "x")], 0, 10).is_empty());
        assert_eq!(s.select(&[], 3, 3).len(), 1);
    }

    #[test]
    fn store_evicted_series_forgets_its_newest() {
        let s = ExemplarStore::new(1);
        assert_eq!(s.add(SeriesRef(1), ex(5, 1.0)), ExemplarVerdict::Append);
        assert_eq!(s.add(SeriesRef(2), ex(1, 1.0)), ExemplarVerdict::Append);
        // Series 1 has nothing left in the ring: anything is in order.
        assert_eq!(s.add(SeriesRef(1), ex(1, 1.0)), ExemplarVerdict::Append);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn store_capacity_zero_holds_nothing() {
        let s = ExemplarStore::new(0);
        s.add(SeriesRef(1), ex(1, 1.0));
        assert!(s.is_empty());
    }
}
