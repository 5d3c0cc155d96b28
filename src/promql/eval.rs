//! The evaluator: walks the `promql-parser` AST once per query, evaluating
//! every node over all steps of the query at once (not step by step), so
//! that each selector loads its series from storage exactly once.
//!
//! Intermediate instant vectors are [`Series`] with sparse points indexed by
//! step; scalars are dense per step. Range vectors only exist as function
//! arguments ([`RangeInput`]) or as the top-level result of an instant query.
//! Function kernels live in [`crate::promql::functions`]; aggregations in
//! [`aggregate`], binary operators in [`binary`], calls in [`call`].

mod aggregate;
mod binary;
mod call;
mod select;
mod stream;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr};

use crate::model::{CounterResetHint, FloatHistogram, Labels, LabelsBuilder, Sample, METRIC_NAME};
use crate::promql::engine::EngineOptions;
use crate::promql::error::QueryError;
use crate::promql::guard;
use crate::promql::source::{Budget, Source};
use crate::promql::value::{HistogramPoint, InstantSample, QueryResult, RangeSeries, Value};

pub(crate) type Result<T, E = QueryError> = std::result::Result<T, E>;

/// Default subquery step when none is given (Prometheus's default global
/// evaluation interval, as its test engine uses).
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The evaluation times of a node: `start + i * step` for `i < n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) start: i64,
    pub(crate) step: i64,
    pub(crate) n: usize,
}

impl Grid {
    /// The grid from `start` to `end`; `end < start` gives one step at
    /// `start`. Callers bound the number of steps before evaluating.
    fn new(start: i64, end: i64, step: i64) -> Self {
        let n = if step <= 0 || end <= start {
            1
        } else {
            let n = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
            usize::try_from(n).unwrap_or(usize::MAX)
        };
        Self { start, step, n }
    }

    #[inline]
    pub(crate) fn t(&self, i: usize) -> i64 {
        (i as i64)
            .saturating_mul(self.step)
            .saturating_add(self.start)
    }

    pub(crate) fn end(&self) -> i64 {
        self.t(self.n - 1)
    }
}

/// One point of an instant-vector series: step index and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) i: u32,
    pub(crate) v: f64,
}

/// One histogram point of an instant-vector series: step index and value
/// (shared, as selectors repeat one sample over several steps).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HPoint {
    pub(crate) i: u32,
    pub(crate) h: Arc<FloatHistogram>,
}

/// One histogram sample of a range input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HSample {
    pub(crate) t: i64,
    pub(crate) h: Arc<FloatHistogram>,
}

/// An instant-vector series over the steps of a grid. A step has a float
/// point or a histogram point, never both.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) labels: Labels,
    /// Ascending by step index, at most one point per step.
    pub(crate) points: Vec<Point>,
    /// Histogram points, ascending by step index.
    pub(crate) hists: Vec<HPoint>,
}

impl Series {
    /// A series of float points only.
    pub(crate) fn floats(labels: Labels, points: Vec<Point>) -> Self {
        Self {
            labels,
            points,
            hists: Vec::new(),
        }
    }

    /// Whether the series has no point at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.points.is_empty() && self.hists.is_empty()
    }
}

/// One series of a range input: labels, float samples, histogram samples.
pub(crate) struct RangeData {
    pub(crate) labels: Labels,
    pub(crate) samples: Vec<Sample>,
    pub(crate) hists: Vec<HSample>,
}

/// A node's value over a grid.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<Series>),
    /// A range vector (only as the top-level result of an instant query).
    Matrix(Vec<RangeSeries>),
}

/// A range-vector argument: raw (matrix selector) or computed (subquery)
/// samples per series, and how to place the window at each step.
pub(crate) struct RangeInput {
    pub(crate) series: Vec<RangeData>,
    pub(crate) range_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at: Option<i64>,
}

impl RangeInput {
    /// The window end for step `i` of `grid`.
    #[inline]
    pub(crate) fn window_end(&self, grid: &Grid, i: usize) -> i64 {
        self.at
            .unwrap_or_else(|| grid.t(i))
            .saturating_sub(self.offset_ms)
    }

    /// The window start for a window ending at `end`.
    #[inline]
    pub(crate) fn window_start(&self, end: i64) -> i64 {
        end.saturating_sub(self.range_ms)
    }

    /// What running a range kernel over `series` (each with its sample
    /// count) on `grid` costs, in sample visits plus steps: a window
    /// kernel looks at every sample of its window, and a sample lies in
    /// about `range / step + 1` consecutive windows (in all of them under
    /// `@`, where every step has the same window). What decides whether
    /// a range function is worth spreading over threads.
    pub(crate) fn kernel_work(&self, grid: &Grid, series: impl Iterator<Item = usize>) -> usize {
        let windows_per_sample = if self.at.is_some() || grid.step <= 0 {
            grid.n
        } else {
            usize::try_from(self.range_ms / grid.step)
                .unwrap_or(0)
                .saturating_add(1)
                .min(grid.n)
        };
        series.fold(0usize, |work, samples| {
            work.saturating_add(samples.saturating_mul(windows_per_sample))
                .saturating_add(grid.n)
        })
    }
}

pub(crate) struct Evaluator<'a> {
    opts: &'a EngineOptions,
    source: &'a dyn Source,
    /// The query's own start and end (for `@ start()` / `@ end()`).
    query_start: i64,
    query_end: i64,
    query_step: i64,
    deadline: Instant,
    cancel: Option<Arc<AtomicBool>>,
    /// Samples held right now (Prometheus's `currentSamples`): loaded
    /// samples and output points of the values alive at this point of
    /// the walk.
    samples: Cell<usize>,
    warnings: RefCell<Vec<String>>,
    infos: RefCell<Vec<String>>,
    checks: Cell<u32>,
    /// Vector selectors (by address) whose histograms only feed
    /// `histogram_count`/`_sum`/`_avg` (see [`stats_only_selectors`]).
    stats_only: RefCell<HashSet<usize>>,
    /// Whether aggregations may take the streamed path (tests compare
    /// it with the materialising path by turning it off).
    streaming: Cell<bool>,
    /// Aggregations evaluated by the streamed path so far.
    streamed: Cell<u32>,
    /// The most selected series (with their samples) held at once.
    peak_series: Cell<usize>,
}

/// The vector selectors of `expr` whose histogram samples only feed
/// `histogram_count`, `histogram_sum` or `histogram_avg`, with no
/// subquery, `histogram_quantile`/`histogram_fraction` or trim operator
/// on the way (upstream `detectHistogramStatsDecoding`). Prometheus reads
/// those through its `HistogramStatsIterator`, which sets the counter
/// reset hint of each sample with an unknown hint from the previous one;
/// aggregations then see (and warn about) those hints.
fn stats_only_selectors(expr: &Expr) -> HashSet<usize> {
    fn walk(e: &Expr, stats: bool, blocked: bool, out: &mut HashSet<usize>) {
        match e {
            Expr::VectorSelector(vs) => {
                if stats && !blocked {
                    out.insert(vs as *const _ as usize);
                }
            }
            Expr::MatrixSelector(ms) => {
                if stats && !blocked {
                    out.insert(&ms.vs as *const _ as usize);
                }
            }
            Expr::Aggregate(a) => {
                walk(&a.expr, stats, blocked, out);
                if let Some(p) = &a.param {
                    walk(p, stats, blocked, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, stats, blocked, out),
            Expr::Binary(b) => {
                let trim = matches!(
                    b.op.id(),
                    crate::promql::trim_ops::TRIM_UPPER | crate::promql::trim_ops::TRIM_LOWER
                );
                walk(&b.lhs, stats, blocked || trim, out);
                walk(&b.rhs, stats, blocked || trim, out);
            }
            Expr::Paren(p) => walk(&p.expr, stats, blocked, out),
            Expr::Subquery(s) => walk(&s.expr, stats, true, out),
            Expr::Call(c) => {
                let name = c.func.name;
                let stats =
                    stats || matches!(name, "histogram_count" | "histogram_sum" | "histogram_avg");
                let blocked = blocked
                    || matches!(
                        name,
                        "histogram_quantile" | "histogram_quantiles" | "histogram_fraction"
                    );
                for a in &c.args.args {
                    walk(a, stats, blocked, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let mut out = HashSet::new();
    walk(expr, false, false, &mut out);
    out
}

/// Milliseconds since the epoch of a parser timestamp (may be before 1970),
/// saturating.
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    guard::system_time_ms(t)
}

/// An offset in ms, saturating (the AST check bounds offsets far below).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => guard::duration_ms_saturating(*d),
        Some(Offset::Neg(d)) => -guard::duration_ms_saturating(*d),
    }
}

/// Samples (points) a value holds, for [`Evaluator::account`].
fn val_samples(v: &Val) -> usize {
    match v {
        Val::Scalar(v) => v.len(),
        Val::String(_) => 1,
        Val::Vector(s) => s.iter().map(|s| s.points.len() + s.hists.len()).sum(),
        Val::Matrix(m) => m.iter().map(|s| s.samples.len() + s.histograms.len()).sum(),
    }
}

/// Removes `__name__` from labels.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    let mut b = LabelsBuilder::new();
    for x in l.iter().filter(|x| &*x.name != METRIC_NAME) {
        b.push_shared(x.name.clone(), x.value.clone());
    }
    b.build().expect("a subset of valid labels is valid")
}

/// Merges series with equal labels (after a label change such as dropping
/// `__name__`); two points at the same step are Prometheus's
/// "vector cannot contain metrics with the same labelset" error.
pub(crate) fn merge_same_labels(mut series: Vec<Series>) -> Result<Vec<Series>> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        if s.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.points = merge_by_step(std::mem::take(&mut last.points), s.points, |p| p.i)?;
                last.hists = merge_by_step(std::mem::take(&mut last.hists), s.hists, |p| p.i)?;
                // A float and a histogram at one step collide too.
                let mut k = 0;
                for h in &last.hists {
                    while k < last.points.len() && last.points[k].i < h.i {
                        k += 1;
                    }
                    if last.points.get(k).is_some_and(|p| p.i == h.i) {
                        return Err(duplicate_labelset());
                    }
                }
            }
            _ => out.push(s),
        }
    }
    Ok(out)
}

/// Merges two step-ascending point lists; a step in both is an error.
fn merge_by_step<P>(a: Vec<P>, b: Vec<P>, step: impl Fn(&P) -> u32) -> Result<Vec<P>> {
    if b.is_empty() {
        return Ok(a);
    }
    if a.is_empty() {
        return Ok(b);
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some(x), Some(y)) => match step(x).cmp(&step(y)) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => return Err(duplicate_labelset()),
            },
        };
        merged.extend(next);
    }
    Ok(merged)
}

pub(crate) fn duplicate_labelset() -> QueryError {
    QueryError::Exec("vector cannot contain metrics with the same labelset".into())
}

/// Transposes series into per-step lists of `(series index, value)`.
pub(crate) fn by_step(series: &[Series], n: usize) -> Vec<Vec<(usize, f64)>> {
    let mut steps: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (k, s) in series.iter().enumerate() {
        for p in &s.points {
            steps[p.i as usize].push((k, p.v));
        }
    }
    steps
}

/// The evaluator's deadline, cancel flag and sample count, for the source
/// it loads selectors from.
impl Budget for Evaluator<'_> {
    fn check(&self) -> Result<()> {
        Evaluator::check(self, "series selection")
    }

    fn account(&self, n: usize) -> Result<()> {
        Evaluator::account(self, n)
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn remaining_samples(&self) -> usize {
        self.opts.max_samples.saturating_sub(self.samples.get())
    }
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        opts: &'a EngineOptions,
        source: &'a dyn Source,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self {
            opts,
            source,
            query_start: start,
            query_end: end,
            query_step: step,
            deadline,
            cancel,
            samples: Cell::new(0),
            warnings: RefCell::default(),
            infos: RefCell::default(),
            checks: Cell::new(0),
            stats_only: RefCell::default(),
            streaming: Cell::new(true),
            streamed: Cell::new(0),
            peak_series: Cell::new(0),
        }
    }

    /// Notes that `n` selected series are held at once (see
    /// `peak_series`).
    pub(crate) fn note_series_held(&self, n: usize) {
        self.peak_series.set(self.peak_series.get().max(n));
    }

    /// Whether `vs` is one of the query's stats-only selectors.
    pub(crate) fn is_stats_only(&self, vs: &promql_parser::parser::VectorSelector) -> bool {
        self.stats_only
            .borrow()
            .contains(&(vs as *const _ as usize))
    }

    fn finish(&self, value: Value) -> QueryResult {
        let mut warnings = self.warnings.take();
        let mut infos = self.infos.take();
        warnings.dedup();
        infos.dedup();
        QueryResult {
            value,
            warnings,
            infos,
        }
    }

    pub(crate) fn warn(&self, w: String) {
        let mut ws = self.warnings.borrow_mut();
        if !ws.contains(&w) {
            ws.push(w);
        }
    }

    pub(crate) fn info(&self, w: String) {
        let mut is = self.infos.borrow_mut();
        if !is.contains(&w) {
            is.push(w);
        }
    }

    /// Checks the deadline and cancellation every so often.
    pub(crate) fn check(&self, what: &'static str) -> Result<()> {
        let n = self.checks.get().wrapping_add(1);
        self.checks.set(n);
        if !n.is_multiple_of(64) {
            return Ok(());
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(QueryError::Canceled(what));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(what));
        }
        Ok(())
    }

    /// Gives back `n` samples accounted for but not held after all.
    pub(crate) fn release(&self, n: usize) {
        self.samples.set(self.samples.get().saturating_sub(n));
    }

    /// How many more samples may be held before `max_samples`.
    pub(crate) fn samples_left(&self) -> usize {
        self.opts.max_samples.saturating_sub(self.samples.get())
    }

    /// Accounts for `n` more samples held; fails past `max_samples`. Call
    /// it as data is allocated (per series), so a query fails before it
    /// holds much more than the limit.
    pub(crate) fn account(&self, n: usize) -> Result<()> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        if total > self.opts.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Whether this is a range query (not an instant query).
    pub(crate) fn is_range_query(&self) -> bool {
        self.query_step != 0
    }

    pub(crate) fn lookback(&self) -> i64 {
        self.opts.lookback_delta_ms
    }

    pub(crate) fn run_instant(&self, expr: &Expr) -> Result<QueryResult> {
        *self.stats_only.borrow_mut() = stats_only_selectors(expr);
        let grid = Grid::new(self.query_start, self.query_start, 0);
        let t = self.query_start;
        let value = match self.eval(expr, &grid)? {
            Val::Scalar(v) => Value::Scalar { t, v: v[0] },
            Val::String(s) => Value::String { t, v: s },
            Val::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| match (s.points.first(), s.hists.first()) {
                        (Some(p), _) => Some(InstantSample {
                            labels: s.labels,
                            t,
                            v: p.v,
                            h: None,
                        }),
                        (None, Some(hp)) => Some(InstantSample {
                            labels: s.labels,
                            t,
                            v: 0.0,
                            h: Some(Box::new((*hp.h).clone())),
                        }),
                        (None, None) => None,
                    })
                    .collect(),
            ),
            Val::Matrix(m) => Value::Matrix(m),
        };
        Ok(self.finish(value))
    }

    pub(crate) fn run_range(&self, expr: &Expr) -> Result<QueryResult> {
        *self.stats_only.borrow_mut() = stats_only_selectors(expr);
        let grid = Grid::new(self.query_start, self.query_end, self.query_step);
        let to_range = |s: Series| RangeSeries {
            labels: s.labels,
            samples: s
                .points
                .iter()
                .map(|p| Sample::new(grid.t(p.i as usize), p.v))
                .collect(),
            histograms: s
                .hists
                .into_iter()
                .map(|p| HistogramPoint {
                    t: grid.t(p.i as usize),
                    h: Arc::unwrap_or_clone(p.h),
                })
                .collect(),
        };
        let value = match self.eval(expr, &grid)? {
            Val::Scalar(v) => Value::Matrix(vec![RangeSeries {
                labels: Labels::empty(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Sample::new(grid.t(i), v))
                    .collect(),
                histograms: Vec::new(),
            }]),
            Val::Vector(series) => {
                let mut m: Vec<RangeSeries> = series
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(to_range)
                    .collect();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
            Val::String(_) | Val::Matrix(_) => {
                return Err(QueryError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                if matches!(expr_kind(expr), Kind::String) {
                    "string"
                } else {
                    "range vector"
                }
            )))
            }
        };
        Ok(self.finish(value))
    }

    /// Evaluates `expr` at every step of `grid`. Sample accounting: what
    /// the children held is released when this node has consumed them, and
    /// the node's own result is held instead (the peak is caught by the
    /// [`Evaluator::account`] calls made while allocating).
    pub(crate) fn eval(&self, expr: &Expr, grid: &Grid) -> Result<Val> {
        self.check("query evaluation")?;
        let base = self.samples.get();
        let val = self.eval_node(expr, grid)?;
        self.samples.set(base);
        self.account(val_samples(&val))?;
        Ok(val)
    }

    fn eval_node(&self, expr: &Expr, grid: &Grid) -> Result<Val> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; grid.n])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => {
                    // Histograms are negated too (upstream `Mul(-1)`).
                    let negated = series
                        .into_iter()
                        .map(|s| Series {
                            labels: drop_name(&s.labels),
                            points: s
                                .points
                                .into_iter()
                                .map(|p| Point { i: p.i, v: -p.v })
                                .collect(),
                            hists: s
                                .hists
                                .into_iter()
                                .map(|p| {
                                    let mut h = Arc::unwrap_or_clone(p.h);
                                    h.mul(-1.0);
                                    HPoint {
                                        i: p.i,
                                        h: Arc::new(h),
                                    }
                                })
                                .collect(),
                        })
                        .collect();
                    Ok(Val::Vector(merge_same_labels(negated)?))
                }
                _ => Err(QueryError::Exec(
                    "unary minus needs a scalar or an instant vector".into(),
                )),
            },
            Expr::VectorSelector(vs) => {
                Ok(Val::Vector(self.eval_vector_selector(vs, grid, false)?))
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if grid.n != 1 {
                    return Err(QueryError::Exec(
                        "range vectors can only be evaluated at a single step".into(),
                    ));
                }
                let input = self.eval_range_input(expr, grid)?;
                let end = input.window_end(grid, 0);
                let start = input.window_start(end);
                let m = input
                    .series
                    .into_iter()
                    .filter_map(|d| {
                        let samples: Vec<Sample> = d
                            .samples
                            .into_iter()
                            .filter(|s| s.t > start && s.t <= end)
                            .collect();
                        let histograms: Vec<HistogramPoint> = d
                            .hists
                            .into_iter()
                            .filter(|s| s.t > start && s.t <= end)
                            .map(|s| HistogramPoint {
                                t: s.t,
                                h: Arc::unwrap_or_clone(s.h),
                            })
                            .collect();
                        (!samples.is_empty() || !histograms.is_empty()).then_some(RangeSeries {
                            labels: d.labels,
                            samples,
                            histograms,
                        })
                    })
                    .collect();
                Ok(Val::Matrix(m))
            }
            Expr::Aggregate(a) => self.eval_aggregate(a, grid),
            Expr::Binary(b) => self.eval_binary(b, grid),
            Expr::Call(c) => self.eval_call(c, grid),
            Expr::Extension(_) => Err(QueryError::Exec(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates a scalar-typed argument.
    pub(crate) fn eval_scalar(&self, expr: &Expr, grid: &Grid) -> Result<Vec<f64>> {
        match self.eval(expr, grid)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::Exec(format!("expected a scalar, got {expr}"))),
        }
    }

    /// Evaluates an instant-vector-typed argument.
    pub(crate) fn eval_vector(&self, expr: &Expr, grid: &Grid) -> Result<Vec<Series>> {
        match self.eval(expr, grid)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::Exec(format!(
                "expected an instant vector, got {expr}"
            ))),
        }
    }

    /// Evaluates a range-vector argument (matrix selector or subquery),
    /// possibly wrapped in parentheses.
    pub(crate) fn eval_range_input(&self, expr: &Expr, grid: &Grid) -> Result<RangeInput> {
        match expr {
            Expr::Paren(p) => self.eval_range_input(&p.expr, grid),
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms, grid),
            Expr::Subquery(sq) => self.eval_subquery(sq, grid),
            other => Err(QueryError::Exec(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// Evaluates the inner expression of a subquery on its own aligned grid
    /// covering every window of `grid` (Prometheus `evalSubquery`).
    fn eval_subquery(&self, sq: &SubqueryExpr, grid: &Grid) -> Result<RangeInput> {
        let range_ms = guard::duration_ms_saturating(sq.range);
        let offset = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let step = sq
            .step
            .map_or(DEFAULT_SUBQUERY_STEP_MS, guard::duration_ms_saturating)
            .max(1);
        let (first, last) = match at {
            Some(t) => (t, t),
            None => (grid.start, grid.end()),
        };
        let lower = first.saturating_sub(offset).saturating_sub(range_ms);
        // First step-aligned time strictly after the window start (Go
        // integer division truncates toward zero, as Rust's does).
        let mut start = step.saturating_mul(lower / step);
        if start <= lower {
            start = start.saturating_add(step);
        }
        let end = last.saturating_sub(offset);
        let mut series = Vec::new();
        if start <= end {
            let inner = Grid::new(start, end, step);
            // Every inner step is a point held at least once per series:
            // more steps than samples allowed can never succeed.
            if inner.n > self.opts.max_points_per_series.saturating_mul(1000)
                || inner.n > self.samples_left()
            {
                return Err(QueryError::TooManySamples);
            }
            let val = self.eval(&sq.expr, &inner)?;
            let as_series = match val {
                Val::Vector(v) => v,
                Val::Scalar(v) => vec![Series::floats(
                    Labels::empty(),
                    v.into_iter()
                        .enumerate()
                        .map(|(i, v)| Point { i: i as u32, v })
                        .collect(),
                )],
                _ => {
                    return Err(QueryError::Exec(
                        "subquery is only allowed on instant vector or scalar".into(),
                    ))
                }
            };
            for s in as_series {
                self.account(s.points.len() + s.hists.len())?;
                let samples = s
                    .points
                    .iter()
                    .map(|p| Sample::new(inner.t(p.i as usize), p.v))
                    .collect();
                // As upstream: explicit reset hints become "unknown", since
                // a subquery may skip or repeat the samples they describe.
                let hists = s
                    .hists
                    .into_iter()
                    .map(|p| {
                        let h = match p.h.counter_reset_hint {
                            CounterResetHint::NotCounterReset | CounterResetHint::CounterReset => {
                                let mut h = Arc::unwrap_or_clone(p.h);
                                h.counter_reset_hint = CounterResetHint::Unknown;
                                Arc::new(h)
                            }
                            _ => p.h,
                        };
                        HSample {
                            t: inner.t(p.i as usize),
                            h,
                        }
                    })
                    .collect();
                series.push(RangeData {
                    labels: s.labels,
                    samples,
                    hists,
                });
            }
        }
        Ok(RangeInput {
            series,
            range_ms,
            offset_ms: offset,
            at,
        })
    }
}

/// Static kind of an expression, for error messages.
pub(crate) enum Kind {
    Scalar,
    String,
    Vector,
    Matrix,
}

pub(crate) fn expr_kind(e: &Expr) -> Kind {
    use promql_parser::parser::value::ValueType;
    match e.value_type() {
        ValueType::Scalar => Kind::Scalar,
        ValueType::String => Kind::String,
        ValueType::Vector => Kind::Vector,
        ValueType::Matrix => Kind::Matrix,
    }
}

#[cfg(test)]
mod tests;
