//! What one compaction pass does to the bucket, decided from what the
//! bucket holds and the time, without touching it (pure, so every rule
//! is tested here). The pass carries the decisions out.
//!
//! Rules, in the order the pass applies them:
//! 1. A complete block that a complete block of its stream supersedes
//!    ([`crate::bucket::superseded`]) or whose `maxTime` is older than the
//!    retention is marked for deletion, if not marked yet.
//! 2. A marked block is deleted once its mark is `delete_delay` old, but
//!    only if it is still superseded or past retention: a mark on a block
//!    nothing covers (a foreign tool's, or a hand-made one) is kept and
//!    reported, never acted on.
//! 3. A prefix without `meta.json` with a mark is a deletion cut short and
//!    is finished; without one it is an abandoned upload, deleted once its
//!    newest object is `partial_age` old (an upload in progress writes an
//!    object at least every file, so its newest object is young).
//! 4. The rest, minus blocks younger than the consistency delay (by ULID
//!    time; the compactor's own blocks are exempt, as in Thanos) and
//!    downsampled ones, are the merge candidates, grouped by stream.

use std::collections::{BTreeMap, BTreeSet};

use crate::bucket::{superseded, BucketMeta};

/// Time rules of a pass, in milliseconds (0: off, where that applies).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    pub(crate) delete_delay_ms: i64,
    /// 0: keep forever.
    pub(crate) retention_ms: i64,
    pub(crate) consistency_delay_ms: i64,
    pub(crate) partial_age_ms: i64,
}

/// A prefix without `meta.json`.
#[derive(Debug, Clone)]
pub(crate) struct Partial {
    pub(crate) ulid: String,
    /// Last-modified time of its newest object.
    pub(crate) newest_ms: i64,
    pub(crate) marked: bool,
}

/// Why a block gets a deletion mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Compacted,
    Retention,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Compacted => "compacted",
            Reason::Retention => "retention",
        }
    }
}

/// A stream: `thanos.labels` and resolution.
pub(crate) type StreamKey = (BTreeMap<String, String>, i64);

/// What a pass does.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    pub(crate) mark: Vec<(String, Reason)>,
    pub(crate) delete: Vec<String>,
    pub(crate) delete_partial: Vec<String>,
    /// Marked, but neither superseded nor past retention: kept.
    pub(crate) kept_marked: Vec<String>,
    pub(crate) candidates: BTreeMap<StreamKey, Vec<String>>,
}

/// Decides a pass over `complete` blocks, `marks` (block -> mark time,
/// ms) and `partials` at `now_ms`.
pub(crate) fn decide(
    complete: &BTreeMap<String, BucketMeta>,
    marks: &BTreeMap<String, i64>,
    partials: &[Partial],
    now_ms: i64,
    t: &Timings,
) -> Decisions {
    let mut d = Decisions::default();
    let covered = superseded(complete);
    let expired: BTreeSet<&String> = if t.retention_ms > 0 {
        let cutoff = now_ms.saturating_sub(t.retention_ms);
        complete
            .iter()
            .filter(|(_, m)| m.meta.max_time <= cutoff)
            .map(|(u, _)| u)
            .collect()
    } else {
        BTreeSet::new()
    };
    for (u, m) in complete {
        let reason = if covered.contains(u) {
            Some(Reason::Compacted)
        } else if expired.contains(u) {
            Some(Reason::Retention)
        } else {
            None
        };
        match (marks.get(u), reason) {
            (None, Some(r)) => d.mark.push((u.clone(), r)),
            (Some(&at), Some(_)) => {
                if now_ms.saturating_sub(at) >= t.delete_delay_ms {
                    d.delete.push(u.clone());
                }
            }
            (Some(_), None) => d.kept_marked.push(u.clone()),
            (None, None) => {
                let fresh = m.source != "compactor"
                    && ulid::Ulid::from_string(u).map_or(true, |id| {
                        let born = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
                        now_ms.saturating_sub(born) < t.consistency_delay_ms
                    });
                // Downsampled blocks (Thanos's) are not Tidemark's to merge.
                if !fresh && m.resolution == 0 {
                    d.candidates
                        .entry((m.labels.clone(), m.resolution))
                        .or_default()
                        .push(u.clone());
                }
            }
        }
    }
    for p in partials {
        if p.marked || now_ms.saturating_sub(p.newest_ms) >= t.partial_age_ms {
            d.delete_partial.push(p.ulid.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::{BlockCompaction, BlockMeta};

    const H: i64 = 3_600_000;
    /// A ULID time: 2023-11-14T00:00:00Z.
    const NOW: i64 = 1_699_920_000_000;

    fn ulid_at(ms: i64, n: u8) -> String {
        ulid::Ulid::from_parts(ms as u64, u128::from(n)).to_string()
    }

    fn block(ulid: &str, min: i64, max: i64, level: u32, sources: &[&str]) -> BucketMeta {
        let mut meta = BlockMeta::new(min, max);
        meta.ulid = ulid.to_string();
        meta.compaction = BlockCompaction {
            level,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            parents: Vec::new(),
        };
        BucketMeta {
            meta,
            labels: BTreeMap::from([("replica".into(), "a".into())]),
            resolution: 0,
            source: if level > 1 { "compactor" } else { "sidecar" }.into(),
        }
    }

    fn timings() -> Timings {
        Timings {
            delete_delay_ms: 48 * H,
            retention_ms: 0,
            consistency_delay_ms: 30 * 60_000,
            partial_age_ms: 48 * H,
        }
    }

    fn map(blocks: Vec<BucketMeta>) -> BTreeMap<String, BucketMeta> {
        blocks
            .into_iter()
            .map(|b| (b.meta.ulid.clone(), b))
            .collect()
    }

    #[test]
    fn covered_blocks_are_marked_then_deleted_after_the_delay_only() {
        let (a, b, m) = (
            ulid_at(NOW - 10 * H, 1),
            ulid_at(NOW - 8 * H, 2),
            ulid_at(NOW - H, 3),
        );
        let all = map(vec![
            block(&a, 0, 2 * H, 1, &[&a]),
            block(&b, 2 * H, 4 * H, 1, &[&b]),
            block(&m, 0, 6 * H, 2, &[&a, &b]),
        ]);
        let d = decide(&all, &BTreeMap::new(), &[], NOW, &timings());
        assert_eq!(
            d.mark,
            vec![
                (a.clone(), Reason::Compacted),
                (b.clone(), Reason::Compacted)
            ]
        );
        assert!(d.delete.is_empty());
        // The merged block is the only candidate left (and its own).
        assert_eq!(d.candidates.values().flatten().collect::<Vec<_>>(), [&m]);
        // Marked an hour ago: kept; marked 48 h ago: deleted.
        let marks = BTreeMap::from([(a.clone(), NOW - H), (b.clone(), NOW - 48 * H)]);
        let d = decide(&all, &marks, &[], NOW, &timings());
        assert!(d.mark.is_empty());
        assert_eq!(d.delete, vec![b]);
    }

    #[test]
    fn a_mark_on_a_block_nothing_covers_is_never_acted_on() {
        let a = ulid_at(NOW - 10 * H, 1);
        let all = map(vec![block(&a, 0, 2 * H, 1, &[&a])]);
        let marks = BTreeMap::from([(a.clone(), NOW - 100 * H)]);
        let d = decide(&all, &marks, &[], NOW, &timings());
        assert!(d.delete.is_empty() && d.mark.is_empty());
        assert_eq!(d.kept_marked, vec![a]);
        assert!(d.candidates.is_empty());
    }

    #[test]
    fn retention_marks_blocks_whose_end_is_older_only() {
        let (old, new) = (ulid_at(NOW - 30 * H, 1), ulid_at(NOW - 2 * H, 2));
        let all = map(vec![
            block(&old, NOW - 30 * H, NOW - 28 * H, 1, &[&old]),
            block(&new, NOW - 26 * H, NOW - 2 * H, 1, &[&new]),
        ]);
        let t = Timings {
            retention_ms: 27 * H,
            ..timings()
        };
        let d = decide(&all, &BTreeMap::new(), &[], NOW, &t);
        assert_eq!(d.mark, vec![(old, Reason::Retention)]);
        assert_eq!(d.candidates.values().flatten().collect::<Vec<_>>(), [&new]);
    }

    #[test]
    fn fresh_blocks_wait_for_the_consistency_delay_streams_stay_apart() {
        let (a, b, c) = (
            ulid_at(NOW - H, 1),
            ulid_at(NOW - 60_000, 2),
            ulid_at(NOW - H, 3),
        );
        let mut other = block(&c, 0, 2 * H, 1, &[&c]);
        other.labels.insert("replica".into(), "b".into());
        let all = map(vec![
            block(&a, 0, 2 * H, 1, &[&a]),
            block(&b, 2 * H, 4 * H, 1, &[&b]),
            other,
        ]);
        let d = decide(&all, &BTreeMap::new(), &[], NOW, &timings());
        assert_eq!(d.candidates.len(), 2, "{:?}", d.candidates);
        assert!(!d.candidates.values().flatten().any(|u| *u == b));
    }

    #[test]
    fn partials_go_when_marked_or_old() {
        let p = |u: u8, age: i64, marked| Partial {
            ulid: ulid_at(NOW, u),
            newest_ms: NOW - age,
            marked,
        };
        let ps = [p(1, H, false), p(2, 49 * H, false), p(3, 0, true)];
        let d = decide(&BTreeMap::new(), &BTreeMap::new(), &ps, NOW, &timings());
        assert_eq!(d.delete_partial, vec![ulid_at(NOW, 2), ulid_at(NOW, 3)]);
    }
}
