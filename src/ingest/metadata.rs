//! The metric metadata store: latest type, help and unit per metric family,
//! as sent by remote-write clients, for `/api/v1/metadata`. Bounded: past
//! `capacity` families, new families are dropped (existing ones still update).

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::ingest::validate::MetricMetadata;

/// Metadata per metric family name.
#[derive(Debug)]
pub struct MetadataStore {
    capacity: usize,
    by_metric: RwLock<HashMap<String, MetricMetadata>>,
}

impl MetadataStore {
    /// A store keeping at most `capacity` metric families.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_metric: RwLock::default(),
        }
    }

    /// Records metadata; the newest entry for a family wins.
    pub fn update(&self, entries: &[MetricMetadata]) {
        if entries.is_empty() {
            return;
        }
        let mut map = self.by_metric.write();
        for m in entries {
            if let Some(cur) = map.get_mut(&m.metric) {
                if cur != m {
                    *cur = m.clone();
                }
            } else if map.len() < self.capacity {
                map.insert(m.metric.clone(), m.clone());
            }
        }
    }

    /// Metadata for `metric`, or for every family when `None`, sorted by
    /// name, at most `limit` families (0 = no limit).
    pub fn get(&self, metric: Option<&str>, limit: usize) -> Vec<MetricMetadata> {
        let map = self.by_metric.read();
        let mut out: Vec<MetricMetadata> = match metric {
            Some(m) => map.get(m).cloned().into_iter().collect(),
            None => map.values().cloned().collect(),
        };
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        if limit > 0 {
            out.truncate(limit);
        }
        out
    }

    /// Number of families held.
    pub fn len(&self) -> usize {
        self.by_metric.read().len()
    }

    /// Reports whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn newest_wins_and_capacity_bounds_new_families() {
        let s = MetadataStore::new(2);
        s.update(&[md("a", "1"), md("b", "1"), md("c", "1")]);
        assert_eq!(s.len(), 2);
        s.update(&[md("a", "2")]);
        assert_eq!(s.get(Some("a"), 0)[0].help, "2");
        assert_eq!(s.get(None, 1).len(), 1);
        assert!(s.get(Some("c"), 0).is_empty());
    }
}
