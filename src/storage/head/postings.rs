//! The head's inverted index: label name → value → sorted series refs, and
//! the set operations (intersect, merge, subtract) that answer matchers the
//! way Prometheus's `PostingsForMatchers` does.
//!
//! Owns only refs and interned strings; never touches series data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::model::{Labels, MatchOp, Matcher};
use crate::storage::postings::{difference, intersect, merge};
use crate::storage::SeriesRef;

type ValueMap = HashMap<Arc<str>, Vec<SeriesRef>, ahash::RandomState>;

/// Label name → value → ascending series refs, plus the list of all refs.
///
/// Locking: one `RwLock` over the whole index; writers are series creation
/// and deletion only (rare next to appends), readers are queries.
#[derive(Default)]
pub(crate) struct MemPostings {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    by_name: HashMap<Arc<str>, ValueMap, ahash::RandomState>,
    all: Vec<SeriesRef>,
}

/// Inserts `r` keeping `list` ascending; refs are allocated in increasing
/// order, so this is a push except under concurrent creation.
fn insert_sorted(list: &mut Vec<SeriesRef>, r: SeriesRef) {
    match list.last() {
        Some(&last) if last >= r => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
        _ => list.push(r),
    }
}

impl MemPostings {
    /// Indexes a new series.
    pub(crate) fn add(&self, r: SeriesRef, labels: &Labels) {
        let mut ix = self.inner.write();
        for l in labels {
            let values = ix.by_name.entry(l.name.clone()).or_default();
            insert_sorted(values.entry(l.value.clone()).or_default(), r);
        }
        insert_sorted(&mut ix.all, r);
    }

    /// Indexes many new series under one lock, in ascending ref order, so
    /// that each insert is a push: loading a head snapshot (whose series
    /// come in hash order) one [`MemPostings::add`] at a time shifted the
    /// long lists (`all`, `job="node"`) for every series, quadratic in the
    /// series count (3 minutes at a million series).
    pub(crate) fn add_many(&self, mut items: Vec<(SeriesRef, Labels)>) {
        items.sort_unstable_by_key(|(r, _)| *r);
        let mut ix = self.inner.write();
        for (r, labels) in &items {
            for l in labels {
                let values = ix.by_name.entry(l.name.clone()).or_default();
                insert_sorted(values.entry(l.value.clone()).or_default(), *r);
            }
            insert_sorted(&mut ix.all, *r);
        }
    }

    /// Removes series from the index (head garbage collection). Each list
    /// touched is filtered once, so removing many series (a head emptied at
    /// shutdown, churn) costs the lists' lengths, not one shift of the long
    /// lists (`all`, `job="node"`) per series: quadratic, 3 minutes for a
    /// million series.
    pub(crate) fn remove(&self, removed: &[(SeriesRef, Labels)]) {
        if removed.is_empty() {
            return;
        }
        let gone: HashSet<SeriesRef, ahash::RandomState> =
            removed.iter().map(|(r, _)| *r).collect();
        let mut touched: HashMap<&str, HashSet<&str, ahash::RandomState>, ahash::RandomState> =
            HashMap::default();
        for (_, labels) in removed {
            for l in labels {
                touched.entry(&*l.name).or_default().insert(&*l.value);
            }
        }
        let mut ix = self.inner.write();
        for (name, values) in touched {
            let Some(lists) = ix.by_name.get_mut(name) else {
                continue;
            };
            for value in values {
                if let Some(list) = lists.get_mut(value) {
                    list.retain(|r| !gone.contains(r));
                    if list.is_empty() {
                        lists.remove(value);
                    }
                }
            }
            if lists.is_empty() {
                ix.by_name.remove(name);
            }
        }
        ix.all.retain(|r| !gone.contains(r));
    }

    /// All label names in the index, sorted.
    pub(crate) fn label_names(&self) -> Vec<String> {
        let ix = self.inner.read();
        let mut names: Vec<String> = ix.by_name.keys().map(|s| s.to_string()).collect();
        names.sort_unstable();
        names
    }

    /// All values of `name`, sorted.
    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        let ix = self.inner.read();
        let mut values: Vec<String> = ix
            .by_name
            .get(name)
            .map(|v| v.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        values.sort_unstable();
        values
    }

    /// Number of indexed series.
    pub(crate) fn len(&self) -> usize {
        self.inner.read().all.len()
    }

    /// Refs of the series matching every matcher, ascending.
    ///
    /// Prometheus semantics: a matcher that matches `""` also selects series
    /// without the label, so such matchers subtract the values they reject
    /// instead of intersecting the values they accept. With no matcher that
    /// needs a positive list, the start set is every series.
    pub(crate) fn for_matchers(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let ix = self.inner.read();
        let mut result: Option<Vec<SeriesRef>> = None;
        let mut subtract: Vec<Vec<SeriesRef>> = Vec::new();
        // Intersect the positive lists first: they shrink the set fastest.
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let list = ix.values_matching(m, true);
            result = Some(match result {
                None => list,
                Some(r) => intersect(&r, &list),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            // Series having the label with a value the matcher rejects.
            subtract.push(ix.values_matching(m, false));
        }
        let mut result = result.unwrap_or_else(|| ix.all.clone());
        for s in &subtract {
            result = difference(&result, s);
        }
        result
    }
}

impl Index {
    /// Union of the postings of `m.name`'s values for which `m.matches(v) == want`.
    fn values_matching(&self, m: &Matcher, want: bool) -> Vec<SeriesRef> {
        let Some(values) = self.by_name.get(m.name()) else {
            return Vec::new();
        };
        if want {
            if let Some(set) = m.set_matches() {
                let lists: Vec<&[SeriesRef]> = set
                    .iter()
                    .filter_map(|v| values.get(*v).map(Vec::as_slice))
                    .collect();
                return merge(&lists);
            }
        } else if m.op() == MatchOp::NotEqual {
            // `l!="v"` rejects exactly the value v.
            return values.get(m.value()).cloned().unwrap_or_default();
        }
        let lists: Vec<&[SeriesRef]> = values
            .iter()
            .filter(|(v, _)| m.matches(v) == want)
            .map(|(_, l)| l.as_slice())
            .collect();
        merge(&lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn refs(v: &[u64]) -> Vec<SeriesRef> {
        v.iter().map(|&r| SeriesRef(r)).collect()
    }

    #[test]
    fn add_many_in_any_order_indexes_as_add_in_ref_order() {
        let series: Vec<(SeriesRef, Labels)> = (0..200u64)
            .map(|i| {
                const I: [&str; 7] = ["0", "1", "2", "3", "4", "5", "6"];
                let l = Labels::from_static(&[("__name__", "m"), ("i", I[(i % 7) as usize])]);
                (SeriesRef(i), l)
            })
            .collect();
        let one = MemPostings::default();
        for (r, l) in &series {
            one.add(*r, l);
        }
        let mut shuffled = series.clone();
        shuffled.reverse();
        shuffled.swap(3, 150);
        let many = MemPostings::default();
        many.add_many(shuffled);
        for m in [
            Matcher::eq("__name__", "m"),
            Matcher::eq("i", "3"),
            Matcher::new(MatchOp::Regex, "i", "[12]").unwrap(),
        ] {
            let got = many.for_matchers(std::slice::from_ref(&m));
            assert_eq!(got, one.for_matchers(std::slice::from_ref(&m)), "{m:?}");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "ascending");
        }
        assert_eq!(many.len(), 200);
    }

    proptest! {
        #[test]
        fn prop_set_ops_match_btreeset(a in proptest::collection::btree_set(0u64..200, 0..60),
                                       b in proptest::collection::btree_set(0u64..200, 0..60)) {
            let (va, vb) = (refs(&a.iter().copied().collect::<Vec<_>>()), refs(&b.iter().copied().collect::<Vec<_>>()));
            let want_i: Vec<u64> = a.intersection(&b).copied().collect();
            let want_d: Vec<u64> = a.difference(&b).copied().collect();
            let want_u: Vec<u64> = a.union(&b).copied().collect();
            prop_assert_eq!(intersect(&va, &vb), refs(&want_i));
            prop_assert_eq!(difference(&va, &vb), refs(&want_d));
            prop_assert_eq!(merge(&[&va, &vb]), refs(&want_u));
        }
    }

    fn index() -> MemPostings {
        let p = MemPostings::default();
        p.add(
            SeriesRef(1),
            &Labels::from_static(&[("__name__", "up"), ("job", "a")]),
        );
        p.add(
            SeriesRef(2),
            &Labels::from_static(&[("__name__", "up"), ("job", "b"), ("env", "prod")]),
        );
        p.add(
            SeriesRef(3),
            &Labels::from_static(&[("__name__", "x"), ("job", "a")]),
        );
        p
    }

    fn sel(p: &MemPostings, ms: &[Matcher]) -> BTreeSet<u64> {
        p.for_matchers(ms).into_iter().map(|r| r.0).collect()
    }

    #[test]
    fn matchers_follow_prometheus_empty_semantics() {
        let p = index();
        let re = |n: &str, v: &str| Matcher::new(MatchOp::Regex, n, v).unwrap();
        let nre = |n: &str, v: &str| Matcher::new(MatchOp::NotRegex, n, v).unwrap();
        let cases: Vec<(Vec<Matcher>, Vec<u64>)> = vec![
            (vec![Matcher::eq("__name__", "up")], vec![1, 2]),
            (
                vec![Matcher::eq("__name__", "up"), Matcher::eq("job", "a")],
                vec![1],
            ),
            (vec![Matcher::eq("env", "")], vec![1, 3]),
            (vec![Matcher::neq("env", "")], vec![2]),
            (vec![Matcher::neq("job", "a")], vec![2]),
            (vec![re("job", "a|b")], vec![1, 2, 3]),
            (vec![re("env", "prod|")], vec![1, 2, 3]),
            (vec![nre("job", "a.*")], vec![2]),
            (
                vec![re("__name__", ".+"), Matcher::neq("env", "prod")],
                vec![1, 3],
            ),
            (vec![Matcher::eq("nope", "x")], vec![]),
        ];
        for (ms, want) in cases {
            assert_eq!(sel(&p, &ms), want.iter().copied().collect(), "{ms:?}");
        }
    }

    #[test]
    fn remove_drops_empty_values_and_names() {
        let p = index();
        p.remove(&[(
            SeriesRef(2),
            Labels::from_static(&[("__name__", "up"), ("job", "b"), ("env", "prod")]),
        )]);
        assert_eq!(p.label_names(), ["__name__", "job"]);
        assert_eq!(p.label_values("job"), ["a"]);
        assert_eq!(p.len(), 2);
    }

    proptest! {
        /// Removing any subset at once leaves the index that adding only
        /// the rest builds.
        #[test]
        fn prop_remove_many_equals_adding_only_the_rest(
            drop in proptest::collection::vec(proptest::prelude::any::<bool>(), 1..120)
        ) {
            const V: [&str; 5] = ["a", "b", "c", "d", "e"];
            let series: Vec<(SeriesRef, Labels)> = (0..drop.len() as u64)
                .map(|i| {
                    let l = Labels::from_static(&[
                        ("__name__", "m"),
                        ("i", V[(i % 5) as usize]),
                        ("j", V[(i % 3) as usize]),
                    ]);
                    (SeriesRef(i), l)
                })
                .collect();
            let all = MemPostings::default();
            all.add_many(series.clone());
            let removed: Vec<_> = series.iter().zip(&drop).filter(|(_, d)| **d).map(|(s, _)| s.clone()).collect();
            all.remove(&removed);
            let kept = MemPostings::default();
            kept.add_many(series.iter().zip(&drop).filter(|(_, d)| !**d).map(|(s, _)| s.clone()).collect());
            prop_assert_eq!(all.len(), kept.len());
            prop_assert_eq!(all.label_names(), kept.label_names());
            for n in ["__name__", "i", "j"] {
                prop_assert_eq!(all.label_values(n), kept.label_values(n));
                for v in V {
                    let m = [Matcher::new(MatchOp::Equal, n, v).unwrap()];
                    prop_assert_eq!(all.for_matchers(&m), kept.for_matchers(&m));
                }
            }
        }
    }
}
