//! Merging the series of several endpoints into one answer, and HA
//! de-duplication by `--query.replica-label`.
//!
//! Each series loses its replica labels; series whose remaining labels are
//! equal (the replicas of one HA pair, or a node and the store holding its
//! older blocks) become one series whose samples are chosen as Thanos's
//! `dedupSeriesIterator` does (`pkg/dedup/iter.go`): at each step every
//! member seeks its first sample after the last one taken plus that
//! member's penalty, and the earliest wins (ties: the member that came
//! first). The winner's penalty is zero; every other member's becomes
//! twice the distance just stepped (5 s before the first step). So the
//! answer stays on one replica while it samples regularly, moves to
//! another only across a gap longer than about two of its intervals, and
//! never alternates between replicas' samples. One change from Thanos:
//! when the member taken last has no more samples at all, the others are
//! read on with a quarter of their penalty (half the interval just
//! stepped: a closer sample is the other replica's copy of the last one
//! taken), so the hand-over from a replica that stopped (or from a store's
//! last block to the node's head) loses no sample. Samples inside a
//! member's penalty are passed over for that step only, never for good,
//! or a hand-over would miss them. Owns no I/O.

use std::sync::Arc;

use crate::model::{FloatHistogram, Labels, LabelsBuilder, Sample};
use crate::promql::SelectedSeries;

/// The penalty before a member's sampling interval is known (Thanos's
/// `initialPenalty`, ms).
pub(crate) const INITIAL_PENALTY_MS: i64 = 5_000;

/// `labels` without any of `drop` (a no-op when none is present).
pub(crate) fn without(labels: &Labels, drop: &[String]) -> Labels {
    if !labels.iter().any(|l| drop.iter().any(|d| **d == *l.name)) {
        return labels.clone();
    }
    let mut b = LabelsBuilder::new();
    for l in labels
        .iter()
        .filter(|l| !drop.iter().any(|d| **d == *l.name))
    {
        b.push_shared(l.name.clone(), l.value.clone());
    }
    // Removing labels from a valid set keeps it valid.
    b.build().unwrap_or_else(|_| labels.clone())
}

/// One value of a merged stream.
#[derive(Clone)]
enum Val {
    F(f64),
    H(Arc<FloatHistogram>),
}

/// Merges the series of all endpoints (in endpoint order): drops
/// `replica_labels`, then merges the series with equal labels as the module
/// doc says. Sorted by labels.
pub(crate) fn merge(series: Vec<SelectedSeries>, replica_labels: &[String]) -> Vec<SelectedSeries> {
    let mut series: Vec<SelectedSeries> = series
        .into_iter()
        .map(|mut s| {
            if !replica_labels.is_empty() {
                s.labels = without(&s.labels, replica_labels);
            }
            s
        })
        .collect();
    // Stable: members keep endpoint order within a group.
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<SelectedSeries> = Vec::with_capacity(series.len());
    let mut group: Vec<SelectedSeries> = Vec::new();
    for s in series {
        if group.first().is_some_and(|g| g.labels != s.labels) {
            out.push(merge_group(std::mem::take(&mut group)));
        }
        group.push(s);
    }
    if !group.is_empty() {
        out.push(merge_group(group));
    }
    out
}

/// One series from the members of a group (equal labels).
fn merge_group(mut group: Vec<SelectedSeries>) -> SelectedSeries {
    if group.len() == 1 {
        return group.pop().unwrap_or_default();
    }
    let labels = group[0].labels.clone();
    let streams: Vec<Vec<(i64, Val)>> = group.into_iter().map(stream).collect();
    let mut pos = vec![0usize; streams.len()];
    let mut pen = vec![0i64; streams.len()];
    let mut last: Option<i64> = None;
    let mut cur: Option<usize> = None;
    let mut out = SelectedSeries {
        labels,
        ..Default::default()
    };
    loop {
        let after = last.map_or(i64::MIN, |l| l.saturating_add(1));
        // The member taken last has nothing more: the others follow on
        // without a penalty (a replica that died, a store's last block
        // before the node's head).
        let cur_done = cur.is_some_and(|c| streams[c][pos[c]..].iter().all(|(t, _)| *t < after));
        let mut best: Option<(i64, usize)> = None;
        for (m, s) in streams.iter().enumerate() {
            // Samples up to the last one taken are behind every member for
            // good; those inside a member's penalty only for this step: a
            // hand-over (below) may still need them.
            pos[m] += s[pos[m]..].partition_point(|(t, _)| *t < after);
            // After a hand-over, a sample closer to the last one than half
            // the interval just stepped is the other replica's copy of it.
            let p = if cur_done { pen[m] / 4 } else { pen[m] };
            let from = after.saturating_add(p);
            let at = pos[m] + s[pos[m]..].partition_point(|(t, _)| *t < from);
            if let Some((t, _)) = s.get(at) {
                if best.is_none_or(|(bt, _)| *t < bt) {
                    best = Some((*t, m));
                }
            }
        }
        let Some((t, m)) = best else { break };
        pos[m] += streams[m][pos[m]..].partition_point(|(x, _)| *x < t);
        for (k, p) in pen.iter_mut().enumerate() {
            *p = if k == m {
                0
            } else {
                last.map_or(INITIAL_PENALTY_MS, |l| {
                    t.saturating_sub(l).saturating_mul(2)
                })
            };
        }
        match &streams[m][pos[m]].1 {
            Val::F(v) => out.samples.push(Sample { t, v: *v }),
            Val::H(h) => out.hists.push((t, h.clone())),
        }
        last = Some(t);
        cur = Some(m);
    }
    out
}

/// A series' floats and histograms as one time-ordered stream.
fn stream(s: SelectedSeries) -> Vec<(i64, Val)> {
    let mut v: Vec<(i64, Val)> = s.samples.into_iter().map(|x| (x.t, Val::F(x.v))).collect();
    if !s.hists.is_empty() {
        v.extend(s.hists.into_iter().map(|(t, h)| (t, Val::H(h))));
        v.sort_by_key(|(t, _)| *t);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(replica: &str, ts: &[i64]) -> SelectedSeries {
        SelectedSeries {
            labels: Labels::from_static(&[("__name__", "up"), ("replica", replica)]),
            samples: ts.iter().map(|&t| Sample { t, v: t as f64 }).collect(),
            hists: Vec::new(),
        }
    }

    fn ts(s: &SelectedSeries) -> Vec<i64> {
        s.samples.iter().map(|x| x.t).collect()
    }

    #[test]
    fn hand_over_from_a_finished_member_keeps_samples_inside_the_penalty() {
        // The store's copy ends at 90 (its last block); the node's head
        // continues at 105 — within the node's penalty while the store's
        // copy was being read, but the first sample after the hand-over.
        let store = s("s", &[0, 15, 30, 45, 60, 75, 90]);
        let node = s("n", &[60, 75, 90, 105, 120]);
        let got = merge(vec![store, node], &["replica".to_string()]);
        assert_eq!(ts(&got[0]), [0, 15, 30, 45, 60, 75, 90, 105, 120]);
        // A replica 3 ms behind the one that stopped: its copy of the last
        // sample taken is not taken again.
        let a = s("a", &[0, 15, 30, 45]);
        let b = s("b", &[3, 18, 33, 48, 63, 78]);
        let got = merge(vec![a, b], &["replica".to_string()]);
        assert_eq!(ts(&got[0]), [0, 15, 30, 45, 63, 78]);
    }

    #[test]
    fn merge_stays_on_one_replica_and_fills_its_gap_from_the_other() {
        // A every 15 s with a gap (60..120 s missing), B 3 ms later, whole.
        let a: Vec<i64> = (0..20)
            .map(|i| i * 15_000)
            .filter(|t| !(60_001..120_000).contains(t))
            .collect();
        let b: Vec<i64> = (0..20).map(|i| i * 15_000 + 3).collect();
        let got = merge(vec![s("a", &a), s("b", &b)], &["replica".into()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, Labels::from_static(&[("__name__", "up")]));
        // A up to 60 s; B's 75 003 is inside A's penalty (30 s), so B
        // from 90 003 on, and B for the rest: never back and forth.
        let mut want: Vec<i64> = a.iter().copied().filter(|&t| t <= 60_000).collect();
        want.extend(b.iter().copied().filter(|&t| t >= 90_003));
        assert_eq!(ts(&got[0]), want);
    }

    #[test]
    fn merge_without_replica_labels_joins_equal_series_and_keeps_others() {
        let other = SelectedSeries {
            labels: Labels::from_static(&[("__name__", "x")]),
            samples: vec![Sample { t: 1, v: 1.0 }],
            hists: Vec::new(),
        };
        // The same series twice (a store and the node): one copy.
        let one = s("a", &[0, 15_000, 30_000]);
        let got = merge(vec![one.clone(), other.clone(), one.clone()], &[]);
        assert_eq!(got.len(), 2);
        assert_eq!(ts(&got[0]), vec![0, 15_000, 30_000]);
        assert_eq!(got[1], other);
        // Older blocks in one member, newer samples in another: joined.
        let old = s("a", &[0, 15_000]);
        let new = s("a", &[30_000, 45_000]);
        let got = merge(vec![new, old], &[]);
        assert_eq!(ts(&got[0]), vec![0, 15_000, 30_000, 45_000]);
    }

    #[test]
    fn merge_of_one_replica_is_that_replica_without_the_label() {
        let got = merge(vec![s("b", &[5, 10])], &["replica".into()]);
        assert_eq!(ts(&got[0]), vec![5, 10]);
        assert!(got[0].labels.get("replica").is_none());
    }
}
