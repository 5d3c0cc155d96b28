//! The head's metric metadata store: the newest type, help and unit per
//! metric family, for `/api/v1/metadata`. Bounded in families and in bytes
//! of text; past either bound a new family (or a change that would grow
//! past the byte bound) is dropped and counted, existing families still
//! update within the bounds.
//!
//! Owns the in-memory map only. Changes are logged to the WAL by the
//! appender ([`crate::storage::head`]) before they are applied here, and
//! the map is saved beside the head snapshot (`head_metadata`); this module
//! touches neither file.

use std::collections::HashMap;

use parking_lot::{Mutex, MutexGuard};

/// Prometheus's metric type names, indexed by their code in the WAL
/// metadata record and the `head_metadata` file (`docs/format/wal.md`).
/// The codes are an on-disk format: only ever append.
pub const METRIC_TYPES: [&str; 8] = [
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
];

/// The code of a type name in [`METRIC_TYPES`]; unknown names are `0`
/// (`unknown`).
pub fn metric_type_code(name: &str) -> u8 {
    METRIC_TYPES
        .iter()
        .position(|t| *t == name)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

/// The type name of a code, or `None` for a code this build does not know.
pub fn metric_type_name(code: u8) -> Option<&'static str> {
    METRIC_TYPES.get(usize::from(code)).copied()
}

/// Metric metadata of one family (remote write 1.0 sends it per request,
/// 2.0 per series).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricMetadata {
    /// Metric family name.
    pub metric: String,
    /// One of [`METRIC_TYPES`].
    pub metric_type: &'static str,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

impl MetricMetadata {
    /// Bytes this entry counts against the store's byte bound: its texts.
    pub fn text_bytes(&self) -> usize {
        self.metric
            .len()
            .saturating_add(self.help.len())
            .saturating_add(self.unit.len())
    }
}

/// Why a metadata entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetadataDrop {
    /// A new family past `max_families`.
    FamiliesLimit,
    /// Storing it would take the store past `max_bytes`.
    BytesLimit,
}

impl MetadataDrop {
    /// Stable snake_case name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataDrop::FamiliesLimit => "families_limit",
            MetadataDrop::BytesLimit => "bytes_limit",
        }
    }
}

/// Bounds of the store; 0 in either turns metadata storage off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Most families held.
    pub max_families: usize,
    /// Most bytes of text (family names, help and unit) held.
    pub max_bytes: usize,
}

/// Metadata per family name.
///
/// Locking: one mutex over the map and its byte count. The appender holds
/// it from deciding what changed, across the WAL write, to applying, so the
/// WAL order of changes is the order they were applied (lock order: after
/// the series locks and the exemplar store).
#[derive(Debug)]
pub struct MetadataStore {
    limits: MetadataLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    by_metric: HashMap<String, MetricMetadata>,
    bytes: usize,
}

impl Inner {
    /// Decides each entry against the current state without changing it:
    /// entries that change the store (in order, newest wins within the
    /// batch) and the drops. Identical entries are neither.
    pub(crate) fn stage(
        &self,
        limits: MetadataLimits,
        entries: &[MetricMetadata],
    ) -> (Vec<MetricMetadata>, Vec<MetadataDrop>) {
        let mut changed: Vec<MetricMetadata> = Vec::new();
        // Newest staged entry per family, by index into `changed` (a 2.0
        // request repeats a family's metadata on each of its series).
        let mut staged: HashMap<&str, usize> = HashMap::new();
        let mut drops = Vec::new();
        let (mut families, mut bytes) = (self.by_metric.len(), self.bytes);
        for m in entries {
            let current = match staged.get(m.metric.as_str()) {
                Some(&i) => changed.get(i),
                None => self.by_metric.get(&m.metric),
            };
            let old_bytes = match current {
                Some(c) if c == m => continue,
                Some(c) => c.text_bytes(),
                None if families >= limits.max_families => {
                    drops.push(MetadataDrop::FamiliesLimit);
                    continue;
                }
                None => 0,
            };
            let new_bytes = bytes
                .saturating_sub(old_bytes)
                .saturating_add(m.text_bytes());
            if new_bytes > limits.max_bytes {
                drops.push(MetadataDrop::BytesLimit);
                continue;
            }
            if current.is_none() {
                families += 1;
            }
            bytes = new_bytes;
            staged.insert(&m.metric, changed.len());
            changed.push(m.clone());
        }
        (changed, drops)
    }

    /// Applies entries (staged, or replayed: replay checks the bounds
    /// again, so a store with smaller bounds than the writer's stays
    /// within them). Returns the entries dropped by the bounds.
    pub(crate) fn apply(&mut self, limits: MetadataLimits, entries: Vec<MetricMetadata>) -> usize {
        let (changed, drops) = self.stage(limits, &entries);
        for m in changed {
            let add = m.text_bytes();
            if let Some(old) = self.by_metric.insert(m.metric.clone(), m) {
                self.bytes = self.bytes.saturating_sub(old.text_bytes());
            }
            self.bytes = self.bytes.saturating_add(add);
        }
        drops.len()
    }

    pub(crate) fn all(&self) -> Vec<MetricMetadata> {
        let mut out: Vec<MetricMetadata> = self.by_metric.values().cloned().collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        out
    }
}

impl MetadataStore {
    /// An empty store with `limits`.
    pub fn new(limits: MetadataLimits) -> Self {
        Self {
            limits,
            inner: Mutex::default(),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> MetadataLimits {
        self.limits
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Applies `entries` directly (replay and file load). Returns how many
    /// the bounds dropped.
    pub(crate) fn apply(&self, entries: Vec<MetricMetadata>) -> usize {
        self.inner.lock().apply(self.limits, entries)
    }

    /// Metadata for `metric`, or for every family when `None`, sorted by
    /// name, at most `limit` families (0 = no limit).
    pub fn get(&self, metric: Option<&str>, limit: usize) -> Vec<MetricMetadata> {
        let inner = self.inner.lock();
        let mut out: Vec<MetricMetadata> = match metric {
            Some(m) => inner.by_metric.get(m).cloned().into_iter().collect(),
            None => inner.all(),
        };
        if limit > 0 {
            out.truncate(limit);
        }
        out
    }

    /// Every entry, sorted by family name.
    pub fn all(&self) -> Vec<MetricMetadata> {
        self.inner.lock().all()
    }

    /// Number of families held.
    pub fn len(&self) -> usize {
        self.inner.lock().by_metric.len()
    }

    /// Reports whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of text held (the measure of `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(metric: &str, help: &str) -> MetricMetadata {
        MetricMetadata {
            metric: metric.into(),
            metric_type: "counter",
            help: help.into(),
            unit: String::new(),
        }
    }

    fn store(max_families: usize, max_bytes: usize) -> MetadataStore {
        MetadataStore::new(MetadataLimits {
            max_families,
            max_bytes,
        })
    }

    #[test]
    fn store_newest_wins_and_families_bound_new_families() {
        let s = store(2, 1000);
        assert_eq!(s.apply(vec![md("a", "1"), md("b", "1"), md("c", "1")]), 1);
        assert_eq!(s.len(), 2);
        assert_eq!(s.apply(vec![md("a", "2")]), 0);
        assert_eq!(s.get(Some("a"), 0)[0].help, "2");
        assert_eq!(s.get(None, 1).len(), 1);
        assert!(s.get(Some("c"), 0).is_empty());
        assert_eq!(s.bytes(), 4);
    }

    #[test]
    fn stage_identical_is_no_change_and_bytes_bound_drops() {
        let s = store(10, 6);
        s.apply(vec![md("a", "12")]);
        let inner = s.lock();
        let (changed, drops) = inner.stage(s.limits(), &[md("a", "12")]);
        assert!(changed.is_empty() && drops.is_empty());
        // "a" + "12345" = 6 bytes: fits by replacing; a new "bb" + "1234" does not.
        let (changed, drops) = inner.stage(s.limits(), &[md("a", "12345"), md("bb", "1234")]);
        assert_eq!(changed, vec![md("a", "12345")]);
        assert_eq!(drops, vec![MetadataDrop::BytesLimit]);
    }

    #[test]
    fn metric_type_codes_round_trip() {
        for (i, t) in METRIC_TYPES.iter().enumerate() {
            assert_eq!(usize::from(metric_type_code(t)), i);
            assert_eq!(metric_type_name(metric_type_code(t)), Some(*t));
        }
        assert_eq!(metric_type_code("bogus"), 0);
        assert_eq!(metric_type_name(200), None);
    }
}
