//! Selectors: turn parser matchers into storage matchers, load each
//! selector's series once for the whole query range, and place samples on
//! the grid (instant selectors: latest sample within the lookback, stale
//! markers ending the series; range selectors: left-open windows).

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{MatrixSelector, VectorSelector};

use std::sync::Arc;

use crate::model::{
    is_stale_nan, CounterResetHint, FloatHistogram, MatchOp, Matcher, Sample, METRIC_NAME,
};
use crate::promql::error::QueryError;
use crate::promql::eval::{
    offset_ms, Evaluator, Grid, HPoint, HSample, Point, RangeData, RangeInput, Result, Series,
};

/// Storage matchers of a selector (its name becomes `__name__="…"`).
pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::eq(METRIC_NAME, name.clone()));
    }
    for m in vs.matchers.matchers.iter() {
        out.push(convert(m)?);
    }
    // `or` alternatives of matchers (`{a="1" or b="2"}`) are not
    // Prometheus syntax; refuse them rather than silently ignoring them.
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::Parse(
            "\"or\" in label matchers is not supported".into(),
        ));
    }
    Ok(out)
}

fn convert(m: &PMatcher) -> Result<Matcher> {
    let op = match &m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| QueryError::Parse(e.to_string()))
}

/// The first and last times a selector is evaluated at: the `@` time or
/// the grid's ends, moved back by the offset.
fn evaluated_span(at: Option<i64>, offset: i64, grid: &Grid) -> (i64, i64) {
    let (first, last) = at.map_or((grid.start, grid.end()), |t| (t, t));
    (first.saturating_sub(offset), last.saturating_sub(offset))
}

/// The newest sample at or before `t` among floats and histograms (a
/// series has at most one sample per timestamp), if it is in
/// `(t - lookback, t]` and not a stale marker.
fn latest(d: &RangeData, t: i64, lookback: i64) -> Option<Latest> {
    let kf = d.samples.partition_point(|s| s.t <= t);
    let kh = d.hists.partition_point(|s| s.t <= t);
    let f = kf.checked_sub(1).and_then(|k| d.samples.get(k));
    let h = kh.checked_sub(1).and_then(|k| d.hists.get(k));
    let floor = t.saturating_sub(lookback);
    match (f, h) {
        (Some(f), Some(h)) if h.t > f.t => hist_latest(h, floor),
        (Some(f), _) => (f.t > floor && !is_stale_nan(f.v)).then_some(Latest::Float(*f)),
        (None, Some(h)) => hist_latest(h, floor),
        (None, None) => None,
    }
}

fn hist_latest(h: &HSample, floor: i64) -> Option<Latest> {
    (h.t > floor && !is_stale_nan(h.h.sum)).then(|| Latest::Hist(h.t, h.h.clone()))
}

/// Sets the counter reset hint of each histogram whose hint is unknown
/// from the previous one, as Prometheus's `HistogramStatsIterator` does
/// for selectors that only feed `histogram_count`/`_sum`/`_avg`: reset if
/// [`FloatHistogram::detect_reset`] says so, not-reset otherwise; the
/// first sample read stays unknown, stale markers are passed over.
fn stats_hints(hists: Vec<HSample>) -> Vec<HSample> {
    let mut last: Option<Arc<FloatHistogram>> = None;
    hists
        .into_iter()
        .map(|s| {
            if is_stale_nan(s.h.sum) {
                return s;
            }
            let hint = match (s.h.counter_reset_hint, &last) {
                (CounterResetHint::Unknown, Some(prev)) if s.h.detect_reset(prev) => {
                    CounterResetHint::CounterReset
                }
                (CounterResetHint::Unknown, Some(_)) => CounterResetHint::NotCounterReset,
                (h, _) => h,
            };
            let h = if hint == s.h.counter_reset_hint {
                s.h
            } else {
                let mut h = Arc::unwrap_or_clone(s.h);
                h.counter_reset_hint = hint;
                Arc::new(h)
            };
            last = Some(h.clone());
            HSample { t: s.t, h }
        })
        .collect()
}

/// Where and how an instant selector reads (see
/// [`Evaluator::selector_placement`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// Load range, inclusive, ms.
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    offset: i64,
    at: Option<i64>,
    lookback: i64,
}

/// What an instant selector finds at one step.
enum Latest {
    Float(Sample),
    Hist(i64, Arc<FloatHistogram>),
}

impl Evaluator<'_> {
    /// Loads the series matching `vs` with samples in `[mint, maxt]`.
    pub(crate) fn load(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<RangeData>> {
        let mut out = Vec::new();
        self.load_each(vs, mint, maxt, &mut |d| {
            out.push(d);
            Ok(true)
        })?;
        self.note_series_held(out.len());
        Ok(out)
    }

    /// Hands the series matching `vs` with samples in `[mint, maxt]` to
    /// `each` one at a time, in label order, until it answers `false`.
    /// The source has counted each series' samples against the budget;
    /// `each` releases what it does not keep.
    pub(crate) fn load_each(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        each: &mut dyn FnMut(RangeData) -> Result<bool>,
    ) -> Result<()> {
        let ms = matchers(vs)?;
        let stats_only = self.is_stats_only(vs);
        let warnings = self.source.select_each(mint, maxt, &ms, self, &mut |s| {
            let hists: Vec<HSample> = s.hists.into_iter().map(|(t, h)| HSample { t, h }).collect();
            let hists = if stats_only {
                stats_hints(hists)
            } else {
                hists
            };
            each(RangeData {
                labels: s.labels,
                samples: s.samples,
                hists,
            })
        })?;
        // Unreadable blocks or chunks, endpoints left out: the answer is
        // partial, say so.
        for problem in warnings {
            self.warn(problem);
        }
        Ok(())
    }

    /// Where and how an instant selector reads: its load range, offset,
    /// `@` time and lookback.
    pub(crate) fn selector_placement(&self, vs: &VectorSelector, grid: &Grid) -> Placement {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (first, last) = evaluated_span(at, offset, grid);
        let lookback = self.lookback();
        Placement {
            mint: first.saturating_sub(lookback).saturating_add(1),
            maxt: last,
            offset,
            at,
            lookback,
        }
    }

    /// An instant-vector selector on the grid: at each step the newest
    /// sample in `(t - lookback, t]`, unless that sample is a stale marker.
    /// With `timestamps`, the point's value is the sample's timestamp in
    /// seconds (for `timestamp(selector)`), for histogram samples too.
    pub(crate) fn eval_vector_selector(
        &self,
        vs: &VectorSelector,
        grid: &Grid,
        timestamps: bool,
    ) -> Result<Vec<Series>> {
        let place = self.selector_placement(vs, grid);
        let loaded = self.load(vs, place.mint, place.maxt)?;
        let mut out = Vec::with_capacity(loaded.len());
        for d in loaded {
            let s = self.place_series(d, grid, &place, timestamps)?;
            if !s.is_empty() {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// One loaded series of an instant selector on the grid (see
    /// [`Evaluator::eval_vector_selector`]); its points are counted.
    pub(crate) fn place_series(
        &self,
        d: RangeData,
        grid: &Grid,
        how: &Placement,
        timestamps: bool,
    ) -> Result<Series> {
        let Placement {
            offset,
            at,
            lookback,
            ..
        } = *how;
        // Count the most points this series can yield against
        // max_samples BEFORE allocating them (a sample covers at most
        // `lookback / step + 1` steps), then settle on the real count.
        let per_sample = if grid.step > 0 && at.is_none() {
            usize::try_from(lookback / grid.step)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        } else {
            grid.n
        };
        let n = d.samples.len() + d.hists.len();
        let bound = grid.n.min(n.saturating_mul(per_sample));
        self.account(bound)?;
        let mut points = Vec::new();
        let mut hists = Vec::new();
        let mut place = |i: usize, found: Option<Latest>| match found {
            Some(Latest::Float(s)) => points.push(Point {
                i: i as u32,
                v: if timestamps { s.t as f64 / 1000.0 } else { s.v },
            }),
            Some(Latest::Hist(t, _)) if timestamps => points.push(Point {
                i: i as u32,
                v: t as f64 / 1000.0,
            }),
            Some(Latest::Hist(_, h)) => hists.push(HPoint { i: i as u32, h }),
            None => {}
        };
        if let Some(t) = at {
            // Step-invariant: one lookup, the same value at every step.
            let ts = t.saturating_sub(offset);
            for i in 0..grid.n {
                place(i, latest(&d, ts, lookback));
            }
        } else if d.hists.is_empty() {
            // Floats only (the common case): one forward pass.
            let samples = &d.samples;
            let mut k = 0usize;
            for i in 0..grid.n {
                let ts = grid.t(i).saturating_sub(offset);
                while k < samples.len() && samples[k].t <= ts {
                    k += 1;
                }
                if k == 0 {
                    continue;
                }
                let s = samples[k - 1];
                if s.t > ts.saturating_sub(lookback) && !is_stale_nan(s.v) {
                    place(i, Some(Latest::Float(s)));
                }
            }
        } else {
            for i in 0..grid.n {
                let ts = grid.t(i).saturating_sub(offset);
                place(i, latest(&d, ts, lookback));
            }
        }
        self.release(bound.saturating_sub(points.len() + hists.len()));
        if points.len() < bound / 2 {
            points.shrink_to_fit();
        }
        Ok(Series {
            labels: d.labels,
            points,
            hists,
        })
    }

    /// A matrix selector's samples covering every window of the grid, stale
    /// markers removed (they never appear in range vectors).
    pub(crate) fn eval_matrix_selector(
        &self,
        ms: &MatrixSelector,
        grid: &Grid,
    ) -> Result<RangeInput> {
        let (mint, maxt, mut input) = self.matrix_span(ms, grid);
        let mut series = self.load(&ms.vs, mint, maxt)?;
        for d in series.iter_mut() {
            d.samples.retain(|s| !is_stale_nan(s.v));
            d.hists.retain(|s| !is_stale_nan(s.h.sum));
        }
        series.retain(|d| !d.samples.is_empty() || !d.hists.is_empty());
        input.series = series;
        Ok(input)
    }

    /// The load range of a matrix selector over the grid, and its window
    /// placement (a [`RangeInput`] without series yet).
    pub(crate) fn matrix_span(&self, ms: &MatrixSelector, grid: &Grid) -> (i64, i64, RangeInput) {
        let vs = &ms.vs;
        let range_ms = crate::promql::guard::duration_ms_saturating(ms.range);
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (first, last) = evaluated_span(at, offset, grid);
        (
            first.saturating_sub(range_ms).saturating_add(1),
            last,
            RangeInput {
                series: Vec::new(),
                range_ms,
                offset_ms: offset,
                at,
            },
        )
    }
}
