//! Streamed aggregation: `sum`, `avg`, `min`, `max`, `count`, `group`,
//! `stddev` and `stdvar` of a vector selector, or of a range function over
//! a matrix selector (`sum by (mode) (rate(x[5m]))`), evaluated over
//! bounded batches of series read one after the other from the source.
//! Each series' per-step values are folded into its group's per-step
//! accumulators and then dropped, so the query holds groups x steps
//! accumulators plus one batch of series, not every selected series'
//! samples and points (the materialising path in [`super::aggregate`]
//! held all of them, three times over: samples, points, per-step lists).
//!
//! Exactness: the materialising path folds, at each step, the series in
//! selection order; here each (group, step) accumulator receives the same
//! values in the same order (series in selection order), through the same
//! [`Acc`], so answers are bit-identical, Kahan compensation included.
//! Where that cannot be guaranteed cheaply the caller's path is used:
//! series with native histogram samples (found while reading: the stream
//! stops and the aggregation is evaluated again the old way), subqueries,
//! other operators, range functions that drop `__name__` over a selector
//! without a fixed metric name (dropping the name could merge series).
//!
//! Owns no storage access beyond [`Source::select_each`](crate::promql::source::Source::select_each)
//! through [`Evaluator::load_each`]; must not change what the aggregation
//! answers.

use ahash::AHashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use promql_parser::parser::{AggregateExpr, Expr, MatrixSelector, VectorSelector};

use crate::model::{Labels, METRIC_NAME};
use crate::promql::error::QueryError;
use crate::promql::eval::aggregate::{group_labels, Acc, AggOp};
use crate::promql::eval::call::{windows, PARALLEL_MIN_WORK};
use crate::promql::eval::{drop_name, Evaluator, Grid, Point, RangeData, Result, Series, Val};
use crate::promql::functions::table::{self, Eval, Function, RangeKernel};

/// A batch is processed once its samples plus the points it may yield
/// (series x steps) reach this: about 16 MiB of samples and as much of
/// points, and enough work per batch for the range kernels' threads.
const BATCH_WORK: usize = 1 << 20;

/// What an aggregation streams over.
enum Inner<'e> {
    /// `aggr(selector)`.
    Selector(&'e VectorSelector),
    /// `aggr(f(selector[r], ...))` for a range function `f`.
    Range {
        f: &'static Function,
        kernel: RangeKernel,
        ms: &'e MatrixSelector,
        args: Vec<&'e Expr>,
    },
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Whether every series `vs` selects has the same metric name, so
/// dropping `__name__` cannot make two of them equal.
fn fixed_name(vs: &VectorSelector) -> bool {
    vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && matches!(m.op, promql_parser::label::MatchOp::Equal))
}

/// The streamable shape of `a`, if it has one.
fn plan(a: &AggregateExpr, op: AggOp) -> Option<Inner<'_>> {
    if !matches!(
        op,
        AggOp::Sum
            | AggOp::Avg
            | AggOp::Min
            | AggOp::Max
            | AggOp::Count
            | AggOp::Group
            | AggOp::Stddev
            | AggOp::Stdvar
    ) {
        return None;
    }
    match unparen(&a.expr) {
        Expr::VectorSelector(vs) => Some(Inner::Selector(vs)),
        Expr::Call(c) => {
            let f = table::lookup(c.func.name)?;
            let Eval::Range(kernel) = f.eval else {
                return None;
            };
            let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
            let Expr::MatrixSelector(ms) = unparen(args.get(f.range_arg)?) else {
                return None;
            };
            if !f.keeps_name && !fixed_name(&ms.vs) {
                return None;
            }
            Some(Inner::Range {
                f,
                kernel,
                ms,
                args,
            })
        }
        _ => None,
    }
}

/// The groups met so far (in order of first sight, as the materialising
/// path numbers them) and their per-step accumulators, `n` per group.
struct Groups {
    op: AggOp,
    n: usize,
    index: AHashMap<Labels, usize>,
    labels: Vec<Labels>,
    accs: Vec<Option<Acc>>,
}

impl Groups {
    /// Folds one series' points (labels as the aggregation sees them).
    fn fold(
        &mut self,
        labels: &Labels,
        modifier: &Option<promql_parser::parser::LabelModifier>,
        points: &[Point],
    ) {
        if points.is_empty() {
            return;
        }
        let key = group_labels(labels, modifier);
        let g = match self.index.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.labels.len();
                self.index.insert(key.clone(), g);
                self.labels.push(key);
                self.accs.resize_with(self.accs.len() + self.n, || None);
                g
            }
        };
        let row = &mut self.accs[g * self.n..(g + 1) * self.n];
        for p in points {
            match &mut row[p.i as usize] {
                Some(acc) => acc.add(p.v),
                slot => *slot = Acc::new(self.op, p.v),
            }
        }
    }

    fn finish(self) -> Vec<Series> {
        let n = self.n;
        let accs = self.accs;
        self.labels
            .into_iter()
            .enumerate()
            .map(|(g, labels)| {
                let points = accs[g * n..(g + 1) * n]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        a.as_ref().map(|a| Point {
                            i: i as u32,
                            v: a.value(),
                        })
                    })
                    .collect();
                Series::floats(labels, points)
            })
            .collect()
    }
}

impl Evaluator<'_> {
    /// Evaluates `a` series by series when its shape allows (see the
    /// module doc); `None`: it does not, or a series had histogram
    /// samples, and the caller must evaluate it the materialising way.
    ///
    /// # Errors
    /// As the materialising path (time-out, cancellation, too many samples,
    /// the source's errors).
    pub(crate) fn eval_aggregate_streamed(
        &self,
        a: &AggregateExpr,
        op: AggOp,
        grid: &Grid,
    ) -> Result<Option<Val>> {
        if !self.streaming.get() {
            return Ok(None);
        }
        let Some(inner) = plan(a, op) else {
            return Ok(None);
        };
        let base = self.samples.get();
        let mut groups = Groups {
            op,
            n: grid.n,
            index: AHashMap::new(),
            labels: Vec::new(),
            accs: Vec::new(),
        };
        let complete = match inner {
            Inner::Selector(vs) => self.stream_selector(vs, a, grid, &mut groups)?,
            Inner::Range {
                f,
                kernel,
                ms,
                args,
            } => self.stream_range(f, kernel, ms, &args, a, grid, &mut groups)?,
        };
        if !complete {
            self.samples.set(base);
            return Ok(None);
        }
        self.streamed.set(self.streamed.get().saturating_add(1));
        Ok(Some(Val::Vector(groups.finish())))
    }

    /// `aggr(selector)`: each series placed on the grid, folded, dropped.
    /// `false` when a series had histogram samples.
    fn stream_selector(
        &self,
        vs: &VectorSelector,
        a: &AggregateExpr,
        grid: &Grid,
        groups: &mut Groups,
    ) -> Result<bool> {
        let place = self.selector_placement(vs, grid);
        let mut complete = true;
        self.load_each(vs, place.mint, place.maxt, &mut |d: RangeData| {
            if !d.hists.is_empty() {
                complete = false;
                return Ok(false);
            }
            self.note_series_held(1);
            let raw = d.samples.len();
            let s = self.place_series(d, grid, &place, false)?;
            // The raw samples are gone; the points stay counted, as the
            // vector the materialising path (and Prometheus) would hold.
            self.release(raw);
            groups.fold(&s.labels, &a.modifier, &s.points);
            self.check("aggregation")?;
            Ok(true)
        })?;
        Ok(complete)
    }

    /// `aggr(f(selector[r]))`: batches of series through the range kernel
    /// (on several threads when a batch is large), folded in selection
    /// order. `false` when a series had histogram samples.
    #[allow(clippy::too_many_arguments)]
    fn stream_range(
        &self,
        f: &'static Function,
        kernel: RangeKernel,
        ms: &MatrixSelector,
        args: &[&Expr],
        a: &AggregateExpr,
        grid: &Grid,
        groups: &mut Groups,
    ) -> Result<bool> {
        // The same steps, in the same order, as `eval_range_function`.
        let param = self.range_param(f, args, grid)?;
        if f.counter_info {
            self.counter_info(args[f.range_arg]);
        }
        let (mint, maxt, header) = self.matrix_span(ms, grid);
        let kernel = |w: &[crate::model::Sample], start: i64, end: i64, i: usize, t: i64| {
            let p = param
                .as_ref()
                .map_or(f64::NAN, |p| p.get(i).copied().unwrap_or(f64::NAN));
            kernel(w, start, end, p, t)
        };
        let keep = f.keeps_name;
        let mut batch: Vec<RangeData> = Vec::new();
        let mut work = 0usize;
        let mut complete = true;
        let mut run = |batch: &mut Vec<RangeData>| -> Result<()> {
            self.note_series_held(batch.len());
            let raw: usize = batch.iter().map(|d| d.samples.len()).sum();
            let work = header.kernel_work(grid, batch.iter().map(|d| d.samples.len()));
            let budget = self.samples_left();
            let used = AtomicUsize::new(0);
            let over = AtomicBool::new(false);
            let eval_series = |d: &RangeData| -> Vec<Point> {
                if over.load(Relaxed) {
                    return Vec::new();
                }
                let points = windows(&header, grid, &d.samples, |w, start, end, i| {
                    kernel(w, start, end, i, grid.t(i))
                });
                if used.fetch_add(points.len(), Relaxed) + points.len() > budget {
                    over.store(true, Relaxed);
                }
                points
            };
            let parts = if work >= PARALLEL_MIN_WORK {
                super::call::parallelism()
            } else {
                1
            };
            let out: Vec<Vec<Point>> = if parts > 1 {
                let chunk = batch.len().div_ceil(parts).max(1);
                std::thread::scope(|sc| {
                    let handles: Vec<_> = batch
                        .chunks(chunk)
                        .map(|part| sc.spawn(|| part.iter().map(eval_series).collect::<Vec<_>>()))
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().expect("range function worker panicked"))
                        .collect()
                })
            } else {
                batch.iter().map(eval_series).collect()
            };
            if over.load(Relaxed) {
                return Err(QueryError::TooManySamples);
            }
            self.release(raw);
            self.account(used.load(Relaxed))?;
            for (d, points) in batch.drain(..).zip(out) {
                if points.is_empty() {
                    continue;
                }
                let labels = if keep { d.labels } else { drop_name(&d.labels) };
                groups.fold(&labels, &a.modifier, &points);
            }
            self.check("range function")
        };
        self.check("range function")?;
        self.load_each(&ms.vs, mint, maxt, &mut |mut d: RangeData| {
            if !d.hists.is_empty() {
                complete = false;
                return Ok(false);
            }
            let before = d.samples.len();
            d.samples.retain(|s| !crate::model::is_stale_nan(s.v));
            self.release(before - d.samples.len());
            if d.samples.is_empty() {
                return Ok(true);
            }
            work += d.samples.len() + grid.n;
            batch.push(d);
            if work >= BATCH_WORK {
                run(&mut batch)?;
                work = 0;
            }
            Ok(true)
        })?;
        if !complete {
            return Ok(false);
        }
        if !batch.is_empty() {
            run(&mut batch)?;
        }
        Ok(true)
    }
}
