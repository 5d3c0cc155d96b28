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

use super::super::index::IndexReader;
use super::{BlockError, BlockIndex};

/// The mapped index as the planner sees it; a list is (offset, length).
struct View<'a>(&'a BlockIndex);

impl PlanIndex for View<'_> {
    type Ref = u64;
    type List = (u64, usize);
    type Error = BlockError;

    fn list_len(&self, l: &Self::List) -> usize {
        l.1
    }

    fn lookup(&self, name: &str, values: &[&str]) -> Result<Vec<Self::List>, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        let Some(entry) = index.find_name(data, name)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if let Some(off) = index.find_value(data, &entry, v)? {
                out.push((off, list_len(index.postings_len(data, off)?)));
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
                out.push((off, list_len(index.postings_len(data, off)?)));
            }
        }
        Ok(out)
    }

    fn union(&self, lists: &[Self::List]) -> Result<Vec<u64>, BlockError> {
        let (data, index) = (&self.0.map[..], &self.0.reader);
        let decoded = lists
            .iter()
            .map(|&(off, _)| index.postings(data, off))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merge(&decoded))
    }

    fn all(&self) -> Result<Vec<u64>, BlockError> {
        Ok((0..self.0.reader.num_series()).collect())
    }
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
