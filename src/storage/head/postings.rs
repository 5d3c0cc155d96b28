//! The head's inverted index: label name → value → sorted series refs, and
//! the set operations (intersect, merge, subtract) that answer matchers the
//! way Prometheus's `PostingsForMatchers` does.
//!
//! Owns only refs and interned strings; never touches series data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

#[cfg(test)]
use crate::model::MatchOp;
use crate::model::{Labels, Matcher};
use crate::storage::plan::{self, PlanIndex, Planned};
use crate::storage::postings::merge;
#[cfg(test)]
use crate::storage::postings::{difference, intersect};
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
        {
            // Every series goes (a head persisted whole at shutdown): no
            // list needs filtering. `removed` is a subset of `all`.
            let mut ix = self.inner.write();
            if removed.len() >= ix.all.len() {
                *ix = Index::default();
                return;
            }
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

    /// Candidate refs for `matchers`, ascending, and the matchers left for
    /// a check of each candidate's labels (see [`plan::plan`]). The lists
    /// are read under the index lock; the caller checks labels after it is
    /// released.
    pub(crate) fn plan<'m>(&self, matchers: &'m [Matcher]) -> Planned<'m, SeriesRef> {
        let ix = self.inner.read();
        match plan::plan(&View(&ix), matchers) {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }

    /// [`MemPostings::plan`] with the given label-check cost.
    #[cfg(test)]
    pub(crate) fn plan_with_cost<'m>(
        &self,
        matchers: &'m [Matcher],
        check_cost: usize,
    ) -> Planned<'m, SeriesRef> {
        let ix = self.inner.read();
        match plan::plan_with(&View(&ix), matchers, check_cost) {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }

    /// Refs of the series matching every matcher, ascending, from postings
    /// alone: the reference the planner is tested against.
    ///
    /// Prometheus semantics: a matcher that matches `""` also selects series
    /// without the label, so such matchers subtract the values they reject
    /// instead of intersecting the values they accept. With no matcher that
    /// needs a positive list, the start set is every series.
    #[cfg(test)]
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

/// The index under its read lock, as the planner sees it.
struct View<'a>(&'a Index);

impl<'a> PlanIndex for View<'a> {
    type Ref = SeriesRef;
    type List = &'a [SeriesRef];
    type Error = std::convert::Infallible;

    fn list_len(&self, l: &Self::List) -> usize {
        l.len()
    }

    fn lookup(&self, name: &str, values: &[&str]) -> Result<Vec<Self::List>, Self::Error> {
        Ok(self.0.by_name.get(name).map_or_else(Vec::new, |vs| {
            values
                .iter()
                .filter_map(|v| vs.get(*v).map(Vec::as_slice))
                .collect()
        }))
    }

    fn value_count(&self, name: &str) -> Result<usize, Self::Error> {
        Ok(self.0.by_name.get(name).map_or(0, HashMap::len))
    }

    fn scan(&self, m: &Matcher, want: bool) -> Result<Vec<Self::List>, Self::Error> {
        // `m.matches` tests a regex's literal prefix before the regex.
        Ok(self.0.by_name.get(m.name()).map_or_else(Vec::new, |vs| {
            vs.iter()
                .filter(|(v, _)| m.matches(v) == want)
                .map(|(_, l)| l.as_slice())
                .collect()
        }))
    }

    fn union(&self, lists: &[Self::List]) -> Result<Vec<SeriesRef>, Self::Error> {
        Ok(merge(lists))
    }

    fn all(&self) -> Result<Vec<SeriesRef>, Self::Error> {
        Ok(self.0.all.clone())
    }
}

#[cfg(test)]
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
pub(super) mod tests {
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

    /// A label set of a small fleet: 4 metrics, 30 instances, optional
    /// job and env.
    pub(crate) fn fleet_labels() -> impl Strategy<Value = Labels> {
        (0usize..4, 0usize..30, 0usize..3, 0usize..3, 0usize..8).prop_map(|(m, i, j, e, z)| {
            let mut pairs = vec![
                ("__name__".to_string(), format!("m{m}")),
                ("instance".to_string(), format!("i{i:02}")),
            ];
            // Now and then a name that sorts before `__name__` (upper case
            // does): then `__name__` is not a block's first label name.
            if z == 1 {
                pairs.push(("AZ".into(), "a".into()));
            }
            if j > 0 {
                pairs.push(("job".into(), ["", "a", "b"][j].into()));
            }
            if e > 0 {
                pairs.push(("env".into(), ["", "prod", "dev"][e].into()));
            }
            Labels::try_from_pairs(pairs).expect("valid generated labels")
        })
    }

    /// Matchers of every operator over the fleet's names and values, with
    /// and without matching `""`.
    pub(crate) fn fleet_matcher() -> impl Strategy<Value = Matcher> {
        let names = prop_oneof![
            Just("AZ"),
            Just("__name__"),
            Just("instance"),
            Just("job"),
            Just("env"),
            Just("nope")
        ];
        let values = prop_oneof![
            Just(""),
            Just("m1"),
            Just("m1|m2"),
            Just("i03"),
            Just("i0.|i1[05]"),
            Just("i.*[05]"),
            Just("i0.*"),
            Just("i1[05]"),
            Just("m.+"),
            Just("a"),
            Just("prod"),
            Just("prod|"),
            Just(".*"),
            Just(".+"),
        ];
        let ops = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex),
        ];
        (ops, names, values).prop_map(|(op, n, v)| Matcher::new(op, n, v).expect("valid regex"))
    }

    proptest! {
        #[test]
        fn prop_planner_answers_like_plain_postings(
            sets in proptest::collection::btree_set(fleet_labels(), 0..150),
            queries in proptest::collection::vec(proptest::collection::vec(fleet_matcher(), 0..4), 1..6),
        ) {
            let p = MemPostings::default();
            let by_ref: Vec<(SeriesRef, Labels)> = sets
                .into_iter()
                .enumerate()
                .map(|(i, l)| (SeriesRef(i as u64 + 1), l))
                .collect();
            for (r, l) in &by_ref {
                p.add(*r, l);
            }
            for ms in &queries {
                let want = p.for_matchers(ms);
                // Brute force agrees with the plain answer...
                let brute: Vec<SeriesRef> = by_ref
                    .iter()
                    .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
                    .map(|(r, _)| *r)
                    .collect();
                prop_assert_eq!(&want, &brute, "{:?}", ms);
                // ...and the planner, forced to each choice, with them.
                for cost in [0, 1, plan::CHECK_COST, 1 << 40] {
                    let planned = p.plan_with_cost(ms, cost);
                    prop_assert!(planned.refs.windows(2).all(|w| w[0] < w[1]));
                    let got: Vec<SeriesRef> = planned
                        .refs
                        .iter()
                        .filter(|r| {
                            let l = &by_ref[(r.0 - 1) as usize].1;
                            planned.keeps(|n| l.get(n))
                        })
                        .copied()
                        .collect();
                    prop_assert_eq!(&got, &want, "{:?} check cost {}", ms, cost);
                }
            }
        }
    }

    #[test]
    fn plan_checks_a_wide_regex_on_few_candidates_instead_of_merging() {
        let p = MemPostings::default();
        let mut r = 0;
        for i in 0..200 {
            for m in 0..100 {
                r += 1;
                p.add(
                    SeriesRef(r),
                    &Labels::try_from_pairs([
                        ("__name__", format!("m{m}")),
                        ("instance", format!("i{i:03}")),
                    ])
                    .unwrap(),
                );
            }
        }
        let re = Matcher::new(MatchOp::Regex, "instance", "i.*[05]").unwrap();
        let ms = [Matcher::eq("__name__", "m7"), re];
        let planned = p.plan(&ms);
        // 200 candidates of m7; the regex's 40 instances hold 4,000 refs.
        assert_eq!(planned.refs.len(), 200);
        assert_eq!(planned.residual.len(), 1);
        assert_eq!(planned.residual[0].name(), "instance");
        // Equalities are looked up, smallest list first, never checked.
        let ms = [
            Matcher::eq("__name__", "m7"),
            Matcher::eq("instance", "i005"),
        ];
        let planned = p.plan(&ms);
        assert_eq!(planned.refs.len(), 1);
        assert!(planned.residual.is_empty());
        // A matcher matching "" over few candidates: checked; `!=` with a
        // value no candidate list holds: nothing to subtract.
        let ms = [
            Matcher::eq("instance", "i005"),
            Matcher::new(MatchOp::NotRegex, "__name__", "m1.*").unwrap(),
        ];
        let planned = p.plan(&ms);
        assert_eq!(planned.refs.len(), 100);
        assert_eq!(planned.residual.len(), 1);
        let ms = [Matcher::eq("instance", "i005"), Matcher::neq("env", "prod")];
        let planned = p.plan(&ms);
        assert_eq!((planned.refs.len(), planned.residual.len()), (100, 0));
        // No positive matcher at all: every series minus the rejected.
        let ms = [Matcher::neq("__name__", "m0")];
        assert_eq!(p.plan(&ms).refs.len(), 200 * 99);
        // An equality on a value nobody has: empty without more work.
        let ms = [
            Matcher::eq("__name__", "zz"),
            Matcher::neq("instance", "i001"),
        ];
        let planned = p.plan(&ms);
        assert!(planned.refs.is_empty() && planned.residual.is_empty());
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

    #[test]
    fn removing_every_series_empties_the_index_and_it_takes_new_ones() {
        let p = index();
        let all: Vec<(SeriesRef, Labels)> = (1..=3)
            .map(|r| (SeriesRef(r), Labels::from_static(&[("__name__", "up")])))
            .collect();
        p.remove(&all);
        assert_eq!(p.len(), 0);
        assert!(p.label_names().is_empty());
        assert!(p.for_matchers(&[Matcher::eq("__name__", "up")]).is_empty());
        p.add(
            SeriesRef(9),
            &Labels::from_static(&[("__name__", "up"), ("job", "c")]),
        );
        assert_eq!(p.label_names(), ["__name__", "job"]);
        assert_eq!(p.for_matchers(&[Matcher::eq("job", "c")]), refs(&[9]));
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
