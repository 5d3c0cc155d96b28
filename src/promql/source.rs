//! [`Source`]: the read access the engine and the series/label API need,
//! so the same evaluator and handlers answer from the local [`Db`] (every
//! node, the store role) or from a fan-out over other nodes (the query
//! role, `crate::query`).
//!
//! A source hands back whole series (labels plus decoded samples), as the
//! evaluator loads each selector once per query. It counts what it loads
//! against the query's [`Budget`] as it goes, so a source that decodes
//! data from elsewhere can stop before holding more than `max_samples`.
//! Owns no data and no I/O of its own.

use std::sync::Arc;
use std::time::Instant;

use crate::model::{FloatHistogram, Labels, Matcher, Sample};
use crate::promql::error::QueryError;
use crate::storage::Db;

/// The limits a read runs under: the query's deadline, cancellation and
/// sample accounting (`--query.max-samples`).
pub trait Budget {
    /// Fails once the query is past its deadline or cancelled; cheap
    /// enough to call per series.
    ///
    /// # Errors
    /// [`QueryError::Timeout`] or [`QueryError::Canceled`].
    fn check(&self) -> Result<(), QueryError>;
    /// Counts `n` more samples held.
    ///
    /// # Errors
    /// [`QueryError::TooManySamples`] past the limit.
    fn account(&self, n: usize) -> Result<(), QueryError>;
    /// When the query must have finished.
    fn deadline(&self) -> Instant;
    /// Samples the query may still load (`usize::MAX`: no limit known).
    fn remaining_samples(&self) -> usize;
}

/// One selected series: its labels and its samples in the range, oldest
/// first, each timestamp once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectedSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Float samples (stale markers included).
    pub samples: Vec<Sample>,
    /// Native histogram samples (a stale marker has the stale NaN as sum).
    pub hists: Vec<(i64, Arc<FloatHistogram>)>,
}

/// What a read returned, with the warnings to attach to the answer (data
/// that could not be read, endpoints left out of a partial answer).
#[derive(Debug, Default)]
pub struct Selected<T> {
    /// The answer, sorted where the call says so.
    pub data: T,
    /// Why the answer may be incomplete.
    pub warnings: Vec<String>,
}

/// One metric family's metadata (`/api/v1/metadata`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMetadata {
    /// The family name.
    pub metric: String,
    /// `counter`, `gauge`, ...
    pub metric_type: String,
    /// The help text.
    pub help: String,
    /// The unit.
    pub unit: String,
}

/// Read access for the engine and the series/label API. Implementations
/// must be callable from a query thread (they may block it).
pub trait Source: Send + Sync {
    /// Series matching all `matchers` with samples in `[mint, maxt]`
    /// (inclusive, ms), sorted by labels. Every sample returned is counted
    /// with [`Budget::account`] as it is loaded (the caller does not count
    /// them again).
    ///
    /// # Errors
    /// The budget's errors; a source's own failures (e.g. an endpoint
    /// that does not answer).
    fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<SelectedSeries>>, QueryError>;

    /// As [`Source::select`], but hands the series to `each` one at a
    /// time, in the same order, until it answers `false`, and returns the
    /// warnings. A source that reads series lazily holds one series'
    /// samples at a time (the streamed aggregations rely on it to bound a
    /// query's memory); the default collects them with [`Source::select`].
    ///
    /// # Errors
    /// As [`Source::select`], and whatever `each` returns.
    fn select_each(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        budget: &dyn Budget,
        each: &mut dyn FnMut(SelectedSeries) -> Result<bool, QueryError>,
    ) -> Result<Vec<String>, QueryError> {
        let selected = self.select(mint, maxt, matchers, budget)?;
        for s in selected.data {
            if !each(s)? {
                break;
            }
        }
        Ok(selected.warnings)
    }

    /// Label sets of the series matching any of `sets` (all series when
    /// `sets` is empty) with data in `[mint, maxt]`, sorted, unique.
    ///
    /// # Errors
    /// As [`Source::select`].
    fn series(
        &self,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<Labels>>, QueryError>;

    /// Sorted label names (`name` = `None`) or values of label `name` of
    /// the series matching any of `sets` (all when empty) with data in
    /// `[mint, maxt]`.
    ///
    /// # Errors
    /// As [`Source::select`].
    fn label_strings(
        &self,
        name: Option<&str>,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<String>>, QueryError>;

    /// Metric metadata of `metric` (all families when `None`), sorted,
    /// when this source has its own; `None`: the caller reads the local
    /// receiver's store (every node and the store role).
    fn metadata(
        &self,
        metric: Option<&str>,
        budget: &dyn Budget,
    ) -> Option<Result<Selected<Vec<MetricMetadata>>, QueryError>> {
        let _ = (metric, budget);
        None
    }

    /// Whether this source answers from this process's memory and files
    /// alone, never waiting on a network peer: its cheap reads may run on
    /// an async worker. `false` unless a source says so.
    fn answers_locally(&self) -> bool {
        false
    }

    /// This source as one request asks for it (`partial_response`), or
    /// `None` when it has no such choice (the local database).
    fn for_request(&self, partial_response: Option<bool>) -> Option<Arc<dyn Source>> {
        let _ = partial_response;
        None
    }
}

impl Source for Db {
    fn answers_locally(&self) -> bool {
        self.reads_locally()
    }

    fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<SelectedSeries>>, QueryError> {
        let mut data = Vec::new();
        let warnings = self.select_each(mint, maxt, matchers, budget, &mut |s| {
            data.push(s);
            Ok(true)
        })?;
        Ok(Selected { data, warnings })
    }

    fn select_each(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        budget: &dyn Budget,
        each: &mut dyn FnMut(SelectedSeries) -> Result<bool, QueryError>,
    ) -> Result<Vec<String>, QueryError> {
        let q = self.querier(mint, maxt);
        // The selected series hold references to their chunks (the head's
        // compressed bytes), not samples: samples are decoded one series
        // at a time.
        for s in q.select(matchers) {
            budget.check()?;
            let samples: Vec<Sample> = s.samples_vec();
            let hists = if s.has_histograms() {
                s.histograms()
                    .filter(|(t, _)| *t >= mint && *t <= maxt)
                    .map(|(t, h)| (t, Arc::new(h)))
                    .collect()
            } else {
                Vec::new()
            };
            budget.account(samples.len() + hists.len())?;
            let go_on = each(SelectedSeries {
                labels: s.labels().clone(),
                samples,
                hists,
            })?;
            if !go_on {
                break;
            }
        }
        // Unreadable blocks or chunks make the answer partial: say so.
        Ok(q.take_problems())
    }

    fn series(
        &self,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<Labels>>, QueryError> {
        let q = self.querier(mint, maxt);
        let all = [Vec::new()];
        let mut data: Vec<Labels> = Vec::new();
        let sets = if sets.is_empty() { &all[..] } else { sets };
        for ms in sets {
            budget.check()?;
            data.extend(q.select_labels(ms));
        }
        if sets.len() > 1 {
            data.sort_unstable();
            data.dedup();
        }
        Ok(Selected {
            data,
            warnings: q.take_problems(),
        })
    }

    fn label_strings(
        &self,
        name: Option<&str>,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<String>>, QueryError> {
        let q = self.querier(mint, maxt);
        let one = |ms: &[Matcher]| match name {
            Some(n) => q.label_values(n, ms),
            None => q.label_names(ms),
        };
        let data = if sets.is_empty() {
            one(&[])
        } else {
            let mut set = std::collections::BTreeSet::new();
            for ms in sets {
                budget.check()?;
                set.extend(one(ms));
            }
            set.into_iter().collect()
        };
        Ok(Selected {
            data,
            warnings: q.take_problems(),
        })
    }
}
