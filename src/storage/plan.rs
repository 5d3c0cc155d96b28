//! The matcher planner shared by the head and the block index: which
//! matchers to answer from postings lists, in which order, and which to
//! leave for a check of each candidate's labels.
//!
//! Owns only the plan; the index behind [`PlanIndex`] owns the lists and the
//! caller owns the per-candidate check of [`Planned::residual`]. Semantics are
//! Prometheus's `PostingsForMatchers`: a matcher that matches `""` also
//! selects series without the label (it subtracts the values it rejects);
//! with no positive matcher the start set is every series.
//!
//! Why: `node_load1{instance=~"node-.*[05]…"}` at a million series merged
//! the postings of every matching instance (200k ids) to intersect them with
//! the 1,953 ids of `node_load1`; checking the regex on those 1,953 series'
//! labels is two orders of magnitude less work.

use crate::model::{MatchOp, Matcher};
use crate::storage::postings::{difference, intersect};

/// One candidate's label check costs about this many ids of postings
/// merged: a series lookup by ref (a hash probe, often a cache miss), a
/// label lookup and the match, against a few ns per id in a merge pass.
pub(crate) const CHECK_COST: usize = 16;

/// The first and last id of an unbroken run of ids.
pub(crate) type Run<R> = (R, R);

/// What an index offers the planner: postings lists of label values, by
/// handle (whose length is known before the list is read).
pub(crate) trait PlanIndex {
    /// A series id.
    type Ref: Ord + Copy;
    /// A handle to one value's postings list.
    type List;
    /// The index's error.
    type Error;

    /// Length of a list, without reading it.
    fn list_len(&self, l: &Self::List) -> usize;
    /// The lists of `name`'s values among `values` (absent ones skipped).
    fn lookup(&self, name: &str, values: &[&str]) -> Result<Vec<Self::List>, Self::Error>;
    /// Number of values of `name` (the cost of scanning them).
    fn value_count(&self, name: &str) -> Result<usize, Self::Error>;
    /// The lists of `m.name()`'s values `v` with `m.matches(v) == want`.
    fn scan(&self, m: &Matcher, want: bool) -> Result<Vec<Self::List>, Self::Error>;
    /// The sorted union of `lists`.
    fn union(&self, lists: &[Self::List]) -> Result<Vec<Self::Ref>, Self::Error>;
    /// Every series, ascending.
    fn all(&self) -> Result<Vec<Self::Ref>, Self::Error>;
    /// The first and last id of `l` when the index knows its ids to be one
    /// unbroken run (a block's lists of its first label name, in practice
    /// `__name__`: series sort by their labels), read without the list;
    /// `None` otherwise. Narrowing candidates to a run is a range test per
    /// candidate: no list to merge, no labels to check.
    fn contiguous(&self, _l: &Self::List) -> Result<Option<Run<Self::Ref>>, Self::Error> {
        Ok(None)
    }
}

/// Narrows the candidates, when there are some, to the runs of `lists`
/// when every list is one ([`PlanIndex::contiguous`]); whether it did.
fn narrow_to_runs<I: PlanIndex>(
    ix: &I,
    refs: &mut Option<Vec<I::Ref>>,
    lists: &[I::List],
) -> Result<bool, I::Error> {
    let Some(r) = refs.as_mut() else {
        return Ok(false);
    };
    let mut runs = Vec::with_capacity(lists.len());
    for l in lists {
        match ix.contiguous(l)? {
            Some(run) => runs.push(run),
            None => return Ok(false),
        }
    }
    r.retain(|x| runs.iter().any(|&(a, b)| a <= *x && *x <= b));
    Ok(true)
}

/// Candidate ids, ascending, and the matchers each candidate must still
/// pass (tested on its labels, an absent label as `""`).
#[derive(Debug)]
pub(crate) struct Planned<'m, R> {
    pub(crate) refs: Vec<R>,
    pub(crate) residual: Vec<&'m Matcher>,
}

impl<R> Planned<'_, R> {
    /// Whether a candidate whose label values `get(name)` returns passes
    /// the residual matchers.
    pub(crate) fn keeps<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.residual
            .iter()
            .all(|m| m.matches(get(m.name()).unwrap_or("")))
    }
}

/// How a matcher is answered from the index.
enum Step<'m, L> {
    /// A positive matcher with its lists already looked up (an equality or
    /// a literal alternation): the exact cost is known.
    Lookup(&'m Matcher, Vec<L>, usize),
    /// A positive matcher whose values must be scanned.
    Scan(&'m Matcher),
    /// A matcher that matches `""`: subtracts the values it rejects.
    Subtract(&'m Matcher),
}

/// Plans and runs `matchers` against `ix`: positive lookups cheapest first,
/// then scanned positives, then subtractions; once the candidates are few
/// next to the ids a matcher's lists hold (times [`CHECK_COST`]), that
/// matcher goes to [`Planned::residual`] instead.
pub(crate) fn plan<'m, I: PlanIndex>(
    ix: &I,
    matchers: &'m [Matcher],
) -> Result<Planned<'m, I::Ref>, I::Error> {
    plan_with(ix, matchers, CHECK_COST)
}

/// [`plan`] with the cost of one label check given (tests force every
/// choice with 0 and with a huge cost).
pub(crate) fn plan_with<'m, I: PlanIndex>(
    ix: &I,
    matchers: &'m [Matcher],
    check_cost: usize,
) -> Result<Planned<'m, I::Ref>, I::Error> {
    let mut lookups = Vec::new();
    let mut rest = Vec::new();
    for m in matchers {
        if m.matches_empty() {
            rest.push(Step::Subtract(m));
        } else if let Some(values) = m.set_matches() {
            let lists = ix.lookup(m.name(), &values)?;
            let cost: usize = lists.iter().map(|l| ix.list_len(l)).sum();
            if cost == 0 {
                return Ok(empty());
            }
            lookups.push(Step::Lookup(m, lists, cost));
        } else {
            rest.push(Step::Scan(m));
        }
    }
    lookups.sort_by_key(|s| match s {
        Step::Lookup(_, _, cost) => *cost,
        _ => 0,
    });
    // Scans before subtractions: they shrink the set; subtractions only
    // remove from it.
    rest.sort_by_key(|s| matches!(s, Step::Subtract(_)));
    let mut refs: Option<Vec<I::Ref>> = None;
    let mut residual = Vec::new();
    let few = |refs: &Option<Vec<I::Ref>>, cost: usize| {
        refs.as_ref()
            .is_some_and(|r| r.len().saturating_mul(check_cost) < cost)
    };
    // The candidates so far, narrowed to `list` (the first list starts them).
    let narrow = |refs: Option<Vec<I::Ref>>, list: Vec<I::Ref>| match refs {
        None => list,
        Some(r) => intersect(&r, &list),
    };
    for step in lookups.into_iter().chain(rest) {
        match step {
            Step::Lookup(m, lists, cost) => {
                if !narrow_to_runs(ix, &mut refs, &lists)? {
                    if few(&refs, cost) {
                        residual.push(m);
                        continue;
                    }
                    refs = Some(narrow(refs.take(), ix.union(&lists)?));
                }
            }
            Step::Scan(m) => {
                if few(&refs, ix.value_count(m.name())?) {
                    residual.push(m);
                    continue;
                }
                let lists = ix.scan(m, true)?;
                if !narrow_to_runs(ix, &mut refs, &lists)? {
                    let cost: usize = lists.iter().map(|l| ix.list_len(l)).sum();
                    if few(&refs, cost) {
                        residual.push(m);
                        continue;
                    }
                    refs = Some(narrow(refs.take(), ix.union(&lists)?));
                }
            }
            Step::Subtract(m) => {
                let r = match refs.take() {
                    Some(r) => r,
                    None => ix.all()?,
                };
                // `l!="v"` rejects exactly v: no scan needed.
                let lists = if m.op() == MatchOp::NotEqual {
                    ix.lookup(m.name(), &[m.value()])?
                } else if r.len().saturating_mul(check_cost) < ix.value_count(m.name())? {
                    refs = Some(r);
                    residual.push(m);
                    continue;
                } else {
                    ix.scan(m, false)?
                };
                let cost: usize = lists.iter().map(|l| ix.list_len(l)).sum();
                refs = Some(if cost == 0 {
                    r
                } else if r.len().saturating_mul(check_cost) < cost {
                    residual.push(m);
                    r
                } else {
                    difference(&r, &ix.union(&lists)?)
                });
            }
        }
        if refs.as_ref().is_some_and(Vec::is_empty) {
            return Ok(empty());
        }
    }
    Ok(Planned {
        refs: match refs {
            Some(r) => r,
            None => ix.all()?,
        },
        residual,
    })
}

fn empty<'m, R>() -> Planned<'m, R> {
    Planned {
        refs: Vec::new(),
        residual: Vec::new(),
    }
}
