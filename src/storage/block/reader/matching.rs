//! Matcher selection over a block's index: the shared planner
//! ([`crate::storage::plan`]) over the index's postings, and the check of
//! the matchers it leaves over against each candidate's series entry.
//!
//! Owns only the reading of postings and series labels for matching; never
//! reads chunks.

use std::collections::HashMap;

use crate::model::Matcher;
use crate::storage::plan::{self, PlanIndex};
use crate::storage::postings::merge;

use super::super::index::{IndexReader, NameEntry};
use super::{BlockError, BlockIndex};

/// The mapped index as the planner sees it; a list is (offset, length).
struct View<'a>(&'a BlockIndex);

impl PlanIndex for View<'_> {
    type Ref = u64;
    /// Postings offset, length, and whether the list is of the block's first
    /// label name (contiguous ids).
    type List = (u64, usize, bool);
    type Error = BlockError;

    fn list_len(&self, l: &Self::List) -> usize {
        l.1
    }

    fn lookup(&self, name: &str, values: &[&str]) -> Result<Vec<Self::List>, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        let Some(entry) = index.find_name(data, name)? else {
            return Ok(Vec::new());
        };
        let first = is_first_name(index, &entry);
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if let Some(off) = index.find_value(data, &entry, v)? {
                out.push((off, list_len(index.postings_len(data, off)?), first));
            }
        }
        Ok(out)
    }

    fn value_count(&self, name: &str) -> Result<usize, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        Ok(index
            .find_name(data, name)?
            .map_or(0, |e| IndexReader::value_count(&e) as usize))
    }

    fn scan(&self, m: &Matcher, want: bool) -> Result<Vec<Self::List>, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        let Some(entry) = index.find_name(data, m.name())? else {
            return Ok(Vec::new());
        };
        let first_name = is_first_name(index, &entry);
        let mut out = Vec::new();
        let count = IndexReader::value_count(&entry);
        // Values sort like their strings: those with a required prefix are
        // one run, found by binary search.
        let (first, prefix) = match m.value_prefix(want) {
            Some(p) => (index.first_value_at_least(data, &entry, p)?, p),
            None => (0, ""),
        };
        for i in first..count {
            let (sym, off) = index.value(data, &entry, i)?;
            let value = index.symbol(data, sym)?;
            if !value.starts_with(prefix) {
                break;
            }
            if m.matches(value) == want {
                out.push((off, list_len(index.postings_len(data, off)?), first_name));
            }
        }
        Ok(out)
    }

    fn union(&self, lists: &[Self::List]) -> Result<Vec<u64>, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        let decoded = lists
            .iter()
            .map(|&(off, _, _)| index.postings(data, off))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merge(&decoded))
    }

    fn all(&self) -> Result<Vec<u64>, BlockError> {
        Ok((0..self.0.reader.num_series()).collect())
    }

    fn contiguous(&self, l: &Self::List) -> Result<Option<(u64, u64)>, BlockError> {
        let &(off, len, first_name) = l;
        let (data, index) = (&self.0.map[..], &self.0.reader);
        if !first_name && !index.postings_is_run(data, off)? {
            return Ok(None);
        }
        let first = index.postings_first(data, off)?;
        // `len` >= 1 (checked by postings_len); a run past the last series
        // is a corrupt list, left to the merge to report.
        let last = first.checked_add(len as u64 - 1);
        Ok(last
            .filter(|&last| last < index.num_series())
            .map(|last| (first, last)))
    }
}

/// Whether `entry` is the block's first label name: series sort by their
/// label lists and a series' labels by name, so every series with the
/// smallest name holds it first, and those with one value of it are one
/// run of ids.
fn is_first_name(index: &IndexReader, entry: &NameEntry) -> bool {
    index.names().first().is_some_and(|n| n.sym == entry.sym)
}

/// A list length as a cost; saturates (a count this large is corrupt and
/// fails when the list is read).
fn list_len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Series ids matching all `matchers`, ascending (= label order): the
/// planner's candidates, then the matchers it left over checked on each
/// candidate's series entry.
pub(super) fn postings_for_matchers(
    ix: &BlockIndex,
    matchers: &[Matcher],
) -> Result<Vec<u64>, BlockError> {
    postings_for_matchers_with(ix, matchers, plan::CHECK_COST)
}

/// [`postings_for_matchers`] with the given label-check cost.
pub(super) fn postings_for_matchers_with(
    ix: &BlockIndex,
    matchers: &[Matcher],
    check_cost: usize,
) -> Result<Vec<u64>, BlockError> {
    let planned = plan::plan_with(&View(ix), matchers, check_cost)?;
    if planned.residual.is_empty() {
        return Ok(planned.refs);
    }
    let (data, index) = (&ix.map[..], &ix.reader);
    // Per matcher: the name's symbol (None: no series has the label) and
    // the verdicts on value symbols seen so far.
    let mut checks = Vec::with_capacity(planned.residual.len());
    for m in &planned.residual {
        let sym = index.find_symbol(data, m.name())?;
        checks.push((*m, sym, HashMap::<u32, bool, ahash::RandomState>::default()));
    }
    let mut labels = Vec::new();
    let mut out = Vec::new();
    'series: for id in planned.refs {
        index.series_labels_into(data, id, &mut labels)?;
        for (m, name, seen) in &mut checks {
            let value = name.and_then(|n| labels.iter().find(|&&(ln, _)| ln == n));
            let ok = match value {
                None => m.matches(""),
                Some(&(_, v)) => match seen.get(&v) {
                    Some(&ok) => ok,
                    None => {
                        let ok = m.matches(index.symbol(data, v)?);
                        seen.insert(v, ok);
                        ok
                    }
                },
            };
            if !ok {
                continue 'series;
            }
        }
        out.push(id);
    }
    Ok(out)
}
