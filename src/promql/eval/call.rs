//! Function calls: argument evaluation and dispatch to the numeric kernels
//! in [`crate::promql::functions`]. Range-vector functions slide a window
//! per step over samples loaded once; instant-vector functions map points.
//! Semantics: Prometheus promql/functions.go (v3.14).

use promql_parser::parser::{Call, Expr};
use regex::Regex;

use crate::model::{FloatHistogram, Labels, LabelsBuilder, Sample, METRIC_NAME};
use crate::promql::error::QueryError;
use crate::promql::eval::{
    drop_name, merge_same_labels, Evaluator, Grid, HPoint, Point, RangeData, RangeInput, Result,
    Series, Val,
};
use crate::promql::functions::hist_range::{self, HistMode, Note, Out, Window};
use crate::promql::functions::table::{self, Eval, Function, RangeKernel, Special};
use crate::promql::functions::{annotations, histogram, math, native_histogram, rate};

/// Series of one classic histogram: labels without `le`, metric name, and
/// `(le, series index)` per bucket.
type BucketGroup = (Labels, String, Vec<(f64, usize)>);

/// A float range kernel bound to its function's parameters: (window,
/// start, end, step index, step time) → value.
type WindowKernel<'a> = dyn Fn(&[Sample], i64, i64, usize, i64) -> Option<f64> + 'a;

/// Below this much work (sample visits plus steps,
/// [`crate::promql::eval::RangeInput::kernel_work`]) a range function runs
/// on the calling thread; thread start-up would cost more than it saves.
pub(crate) const PARALLEL_MIN_WORK: usize = 200_000;

pub(crate) fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

fn string_arg(e: &Expr) -> Result<String> {
    match e {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        Expr::Paren(p) => string_arg(&p.expr),
        other => Err(QueryError::Exec(format!(
            "expected a string literal, got {other}"
        ))),
    }
}

/// Labels for `absent(selector)`: the selector's equality matchers, minus
/// names that appear more than once (Prometheus `createLabelsForAbsentFunction`).
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        Expr::Paren(p) => return absent_labels(&p.expr),
        _ => return Labels::empty(),
    };
    // The first equality matcher of a name sets it; any other matcher of
    // that name removes it again.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in vs.matchers.matchers.iter() {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !seen.contains(&m.name.as_str())
        {
            pairs.push((m.name.clone(), m.value.clone()));
            seen.push(&m.name);
        } else {
            pairs.retain(|(n, _)| *n != m.name);
        }
    }
    Labels::try_from_pairs(pairs).unwrap_or_default()
}

/// `absent`/`absent_over_time`: 1 at every step where nothing was present,
/// labelled from the argument's selector.
fn absent_result(present: &[bool], arg: &Expr) -> Vec<Series> {
    let points: Vec<Point> = present
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(i, _)| Point {
            i: i as u32,
            v: 1.0,
        })
        .collect();
    if points.is_empty() {
        return Vec::new();
    }
    vec![Series::floats(absent_labels(arg), points)]
}

/// Applies `f` to every histogram point (step, histogram, metric name),
/// dropping float points and the metric name.
pub(crate) fn map_histograms(
    series: Vec<Series>,
    f: impl Fn(usize, &FloatHistogram, &str) -> Option<f64>,
) -> Result<Vec<Series>> {
    let out = series
        .into_iter()
        .filter(|s| !s.hists.is_empty())
        .map(|s| {
            let metric = s.labels.metric_name().unwrap_or("").to_string();
            Series::floats(
                drop_name(&s.labels),
                s.hists
                    .iter()
                    .filter_map(|p| f(p.i as usize, &p.h, &metric).map(|v| Point { i: p.i, v }))
                    .collect(),
            )
        })
        .collect();
    merge_same_labels(out)
}

/// The union of two results of one function (classic and native parts).
fn join_vectors(a: Val, b: Vec<Series>) -> Result<Val> {
    match a {
        Val::Vector(mut v) => {
            v.extend(b);
            Ok(Val::Vector(merge_same_labels(v)?))
        }
        other => Ok(other),
    }
}

/// Labels without `le`.
fn without_le(l: &Labels) -> Labels {
    let mut b = LabelsBuilder::new();
    for x in l.iter().filter(|x| &*x.name != "le") {
        b.push_shared(x.name.clone(), x.value.clone());
    }
    b.build().expect("subset of valid labels")
}

/// Applies `f` to every point, dropping the metric name.
pub(crate) fn map_points(
    series: Vec<Series>,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Vec<Series>> {
    let out = series
        .into_iter()
        .map(|s| {
            Series::floats(
                drop_name(&s.labels),
                s.points
                    .into_iter()
                    .filter_map(|p| f(p.i as usize, p.v).map(|v| Point { i: p.i, v }))
                    .collect(),
            )
        })
        .collect();
    merge_same_labels(out)
}

impl Evaluator<'_> {
    pub(crate) fn eval_call(&self, c: &Call, grid: &Grid) -> Result<Val> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let arg = |k: usize| -> Result<&Expr> {
            args.get(k)
                .copied()
                .ok_or_else(|| QueryError::Parse(format!("missing argument {} of {name}", k + 1)))
        };
        let f = table::lookup(name)
            .ok_or_else(|| QueryError::Exec(format!("function {name:?} is not supported")))?;
        let special = match f.eval {
            Eval::Elementwise(g) => {
                let v = self.eval_vector(arg(0)?, grid)?;
                return Ok(Val::Vector(map_points(v, |_, x| Some(g(x)))?));
            }
            Eval::DatePart(g) => {
                let v = match args.first() {
                    Some(e) => self.eval_vector(e, grid)?,
                    None => vec![Series::floats(
                        Labels::empty(),
                        (0..grid.n)
                            .map(|i| Point {
                                i: i as u32,
                                v: grid.t(i) as f64 / 1000.0,
                            })
                            .collect(),
                    )],
                };
                return Ok(Val::Vector(map_points(v, |_, x| Some(g(x)))?));
            }
            Eval::HistogramElementwise(g) => {
                let v = self.eval_vector(arg(0)?, grid)?;
                return Ok(Val::Vector(map_histograms(v, |_, h, _| Some(g(h)))?));
            }
            Eval::Range(kernel) => return self.eval_range_function(f, kernel, &args, grid),
            Eval::Special(s) => s,
        };
        match special {
            Special::Time => Ok(Val::Scalar(
                (0..grid.n).map(|i| grid.t(i) as f64 / 1000.0).collect(),
            )),
            Special::Pi => Ok(Val::Scalar(vec![std::f64::consts::PI; grid.n])),
            Special::Vector => {
                let s = self.eval_scalar(arg(0)?, grid)?;
                let points = s
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Point { i: i as u32, v })
                    .collect();
                Ok(Val::Vector(vec![Series::floats(Labels::empty(), points)]))
            }
            Special::Scalar => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let mut out = vec![f64::NAN; grid.n];
                let mut counts = vec![0u32; grid.n];
                for s in &v {
                    for p in &s.points {
                        counts[p.i as usize] += 1;
                        out[p.i as usize] = p.v;
                    }
                }
                for (o, c) in out.iter_mut().zip(counts) {
                    if c != 1 {
                        *o = f64::NAN;
                    }
                }
                Ok(Val::Scalar(out))
            }
            Special::Timestamp => {
                let inner = unparen(arg(0)?);
                let series = match inner {
                    Expr::VectorSelector(vs) => self.eval_vector_selector(vs, grid, true)?,
                    other => {
                        let v = self.eval_vector(other, grid)?;
                        v.into_iter()
                            .map(|s| {
                                let mut steps: Vec<u32> = s
                                    .points
                                    .iter()
                                    .map(|p| p.i)
                                    .chain(s.hists.iter().map(|p| p.i))
                                    .collect();
                                steps.sort_unstable();
                                Series::floats(
                                    s.labels,
                                    steps
                                        .into_iter()
                                        .map(|i| Point {
                                            i,
                                            v: grid.t(i as usize) as f64 / 1000.0,
                                        })
                                        .collect(),
                                )
                            })
                            .collect()
                    }
                };
                Ok(Val::Vector(map_points(series, |_, v| Some(v))?))
            }
            Special::Absent => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let mut present = vec![false; grid.n];
                for s in &v {
                    for i in s
                        .points
                        .iter()
                        .map(|p| p.i)
                        .chain(s.hists.iter().map(|p| p.i))
                    {
                        present[i as usize] = true;
                    }
                }
                Ok(Val::Vector(absent_result(&present, arg(0)?)))
            }
            Special::AbsentOverTime => {
                let input = self.eval_range_input(arg(0)?, grid)?;
                let mut present = vec![false; grid.n];
                for d in &input.series {
                    for (i, p) in present.iter_mut().enumerate() {
                        let end = input.window_end(grid, i);
                        let start = input.window_start(end);
                        let lo = d.samples.partition_point(|s| s.t <= start);
                        let hlo = d.hists.partition_point(|s| s.t <= start);
                        if (lo < d.samples.len() && d.samples[lo].t <= end)
                            || (hlo < d.hists.len() && d.hists[hlo].t <= end)
                        {
                            *p = true;
                        }
                    }
                }
                Ok(Val::Vector(absent_result(&present, arg(0)?)))
            }
            Special::LabelReplace => self.label_replace(&args, grid).map(Val::Vector),
            Special::LabelJoin => self.label_join(&args, grid).map(Val::Vector),
            Special::Sort | Special::SortDesc => {
                if self.is_range_query() {
                    self.warn(annotations::sort_in_range_query_warning());
                }
                let mut v = self.eval_vector(arg(0)?, grid)?;
                // Histogram samples have no order: upstream drops them.
                for s in v.iter_mut() {
                    s.hists.clear();
                }
                v.retain(|s| !s.is_empty());
                if grid.n == 1 {
                    let desc = special == Special::SortDesc;
                    let key = |s: &Series| s.points.first().map_or(f64::NAN, |p| p.v);
                    v.sort_by(|a, b| {
                        let (x, y) = (key(a), key(b));
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                }
                Ok(Val::Vector(v))
            }
            Special::Round => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let to = match args.get(1) {
                    Some(e) => self.eval_scalar(e, grid)?,
                    None => vec![1.0; grid.n],
                };
                Ok(Val::Vector(map_points(v, |i, x| {
                    Some(math::round(x, to[i]))
                })?))
            }
            Special::Clamp | Special::ClampMin | Special::ClampMax => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let a = self.eval_scalar(arg(1)?, grid)?;
                let b = if special == Special::Clamp {
                    self.eval_scalar(arg(2)?, grid)?
                } else {
                    Vec::new()
                };
                Ok(Val::Vector(map_points(v, |i, x| match special {
                    // Go's math.Max/Min: NaN in, NaN out.
                    Special::ClampMin => Some(math::go_max(x, a[i])),
                    Special::ClampMax => Some(math::go_min(x, a[i])),
                    // clamp(v, min, max) is empty when max < min.
                    _ => math::clamp(x, a[i], b[i]),
                })?))
            }
            Special::HistogramQuantile => {
                let q = self.eval_scalar(arg(0)?, grid)?;
                if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
                    self.warn(annotations::invalid_quantile_warning(*bad));
                }
                let v = self.eval_vector(arg(1)?, grid)?;
                let (classic, native) = self.split_classic_native(v, grid);
                let native = map_histograms(native, |i, h, metric| {
                    let (v, info) = native_histogram::quantile(q[i], h, metric);
                    if let Some(info) = info {
                        self.info(info);
                    }
                    Some(v)
                })?;
                let classic = self.histogram_buckets(classic, grid, |i, buckets, metric| {
                    let r = histogram::bucket_quantile(q[i], buckets);
                    if r.forced_monotonicity {
                        self.info(annotations::histogram_quantile_forced_monotonicity_info(
                            metric,
                        ));
                    }
                    r.value
                })?;
                join_vectors(classic, native)
            }
            Special::HistogramFraction => {
                let lo = self.eval_scalar(arg(0)?, grid)?;
                let hi = self.eval_scalar(arg(1)?, grid)?;
                let v = self.eval_vector(arg(2)?, grid)?;
                let (classic, native) = self.split_classic_native(v, grid);
                let native = map_histograms(native, |i, h, metric| {
                    let (v, info) = native_histogram::fraction(lo[i], hi[i], h, metric);
                    if let Some(info) = info {
                        self.info(info);
                    }
                    Some(v)
                })?;
                let classic = self.histogram_buckets(classic, grid, |i, buckets, _| {
                    histogram::bucket_fraction(lo[i], hi[i], buckets)
                })?;
                join_vectors(classic, native)
            }
        }
    }

    /// The per-step scalar parameter of range function `f` (e.g. the
    /// quantile of `quantile_over_time`), warning about a quantile
    /// outside `[0, 1]`.
    pub(crate) fn range_param(
        &self,
        f: &Function,
        args: &[&Expr],
        grid: &Grid,
    ) -> Result<Option<Vec<f64>>> {
        let name = f.name;
        let param = f
            .param_arg
            .map(|k| {
                let e = args.get(k).ok_or_else(|| {
                    QueryError::Parse(format!("missing argument {} of {name}", k + 1))
                })?;
                self.eval_scalar(e, grid)
            })
            .transpose()?;
        if f.quantile_param {
            if let Some(q) = &param {
                if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
                    self.warn(annotations::invalid_quantile_warning(*bad));
                }
            }
        }
        Ok(param)
    }

    /// Range-vector functions: one kernel call per series and step.
    fn eval_range_function(
        &self,
        f: &Function,
        kernel: RangeKernel,
        args: &[&Expr],
        grid: &Grid,
    ) -> Result<Val> {
        let name = f.name;
        let range_arg = args
            .get(f.range_arg)
            .copied()
            .ok_or_else(|| QueryError::Parse(format!("missing range argument of {name}")))?;
        let param = self.range_param(f, args, grid)?;
        if f.counter_info {
            self.counter_info(range_arg);
        }
        let kernel = |w: &[Sample], start: i64, end: i64, i: usize, t: i64| {
            let p = param
                .as_ref()
                .map_or(f64::NAN, |p| p.get(i).copied().unwrap_or(f64::NAN));
            kernel(w, start, end, p, t)
        };
        let input = self.eval_range_input(range_arg, grid)?;
        let keep = f.keeps_name;
        self.check("range function")?;
        // Output points count against max_samples as they are made (the
        // kernels run on several threads, hence the atomics); past the
        // budget the remaining series are skipped and the query fails.
        let budget = self.samples_left();
        let used = std::sync::atomic::AtomicUsize::new(0);
        let over = std::sync::atomic::AtomicBool::new(false);
        let eval_series = |d: &RangeData| -> Option<Series> {
            let (labels, samples) = (&d.labels, &d.samples);
            use std::sync::atomic::Ordering::Relaxed;
            // Series with histogram samples take the serial path below.
            if over.load(Relaxed) || !d.hists.is_empty() {
                return None;
            }
            let points = windows(&input, grid, samples, |w, start, end, i| {
                kernel(w, start, end, i, grid.t(i))
            });
            if points.is_empty() {
                return None;
            }
            if used.fetch_add(points.len(), Relaxed) + points.len() > budget {
                over.store(true, Relaxed);
                return None;
            }
            let labels = if keep {
                labels.clone()
            } else {
                drop_name(labels)
            };
            Some(Series::floats(labels, points))
        };
        // Large inputs are split across the machine's cores; the kernels are
        // pure, so each part runs independently.
        let work = input.kernel_work(
            grid,
            input.series.iter().map(|d| d.samples.len() + d.hists.len()),
        );
        let parts = if work >= PARALLEL_MIN_WORK {
            parallelism()
        } else {
            1
        };
        let out: Vec<Series> = if parts > 1 {
            let chunk = input.series.len().div_ceil(parts);
            std::thread::scope(|sc| {
                let handles: Vec<_> = input
                    .series
                    .chunks(chunk.max(1))
                    .map(|part| {
                        sc.spawn(|| part.iter().filter_map(eval_series).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("range function worker panicked"))
                    .collect()
            })
        } else {
            input.series.iter().filter_map(eval_series).collect()
        };
        if over.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(QueryError::TooManySamples);
        }
        let mut out = out;
        for d in input.series.iter().filter(|d| !d.hists.is_empty()) {
            let s = self.histogram_windows(f.hist, &input, grid, d, &kernel)?;
            if s.is_empty() {
                continue;
            }
            self.account(s.points.len() + s.hists.len())?;
            out.push(Series {
                labels: if keep { s.labels } else { drop_name(&s.labels) },
                ..s
            });
        }
        self.check("range function")?;
        Ok(Val::Vector(if keep {
            out
        } else {
            merge_same_labels(out)?
        }))
    }

    /// Splits the argument of `histogram_quantile`/`histogram_fraction`
    /// into classic bucket series (float points) and native histogram
    /// series. Where a native histogram and classic buckets of the same
    /// labels (ignoring `le`) meet at one step, neither is evaluated and
    /// a warning says so (upstream `resetHistograms`).
    fn split_classic_native(&self, v: Vec<Series>, grid: &Grid) -> (Vec<Series>, Vec<Series>) {
        let mut classic = Vec::with_capacity(v.len());
        let mut native = Vec::new();
        for s in v {
            if !s.hists.is_empty() {
                native.push(Series {
                    labels: s.labels.clone(),
                    points: Vec::new(),
                    hists: s.hists,
                });
            }
            if !s.points.is_empty() {
                classic.push(Series::floats(s.labels, s.points));
            }
        }
        if native.is_empty() || classic.is_empty() {
            return (classic, native);
        }
        for n in native.iter_mut() {
            let mut conflict = vec![false; grid.n];
            for c in &classic {
                if c.labels.get("le").is_none() || without_le(&c.labels) != n.labels {
                    continue;
                }
                for p in &c.points {
                    conflict[p.i as usize] = true;
                }
            }
            let clash: Vec<u32> = n
                .hists
                .iter()
                .filter(|h| conflict[h.i as usize])
                .map(|h| h.i)
                .collect();
            if clash.is_empty() {
                continue;
            }
            self.warn(annotations::mixed_classic_native_histograms_warning(
                n.labels.metric_name().unwrap_or(""),
            ));
            n.hists.retain(|h| !clash.contains(&h.i));
            for c in classic.iter_mut() {
                if c.labels.get("le").is_some() && without_le(&c.labels) == n.labels {
                    c.points.retain(|p| !clash.contains(&p.i));
                }
            }
        }
        (classic, native)
    }

    /// A range function over a series with histogram samples: per step,
    /// the float kernel for float-only windows and the histogram path of
    /// [`hist_range::eval`] otherwise.
    fn histogram_windows(
        &self,
        mode: HistMode,
        input: &RangeInput,
        grid: &Grid,
        d: &RangeData,
        kernel: &WindowKernel<'_>,
    ) -> Result<Series> {
        let metric = d.labels.metric_name().unwrap_or("");
        let resets = matches!(mode, HistMode::Rate { counter: true, .. })
            .then(|| hist_range::reset_flags(&d.hists));
        let mut points = Vec::new();
        let mut hists = Vec::new();
        let mut notes = Vec::new();
        for i in 0..grid.n {
            self.check("range function")?;
            let end = input.window_end(grid, i);
            let start = input.window_start(end);
            let flo = d.samples.partition_point(|s| s.t <= start);
            let fhi = d.samples.partition_point(|s| s.t <= end);
            let hlo = d.hists.partition_point(|s| s.t <= start);
            let hhi = d.hists.partition_point(|s| s.t <= end);
            let floats = &d.samples[flo..fhi];
            let hs = &d.hists[hlo..hhi];
            let t = grid.t(i);
            if hs.is_empty() {
                if !floats.is_empty() {
                    if let Some(v) = kernel(floats, start, end, i, t) {
                        points.push(Point { i: i as u32, v });
                    }
                }
                continue;
            }
            let w = Window {
                floats,
                hists: hs,
                start,
                end,
                range_ms: input.range_ms,
                metric,
                resets: resets.as_ref().map(|r| &r[hlo..hhi]),
            };
            match hist_range::eval(mode, &w, |f| kernel(f, start, end, i, t), &mut notes) {
                Some(Out::F(v)) => points.push(Point { i: i as u32, v }),
                Some(Out::H(h)) => hists.push(HPoint {
                    i: i as u32,
                    h: std::sync::Arc::new(h),
                }),
                None => {}
            }
        }
        for n in notes {
            match n {
                Note::Warn(w) => self.warn(w),
                Note::Info(s) => self.info(s),
            }
        }
        Ok(Series {
            labels: d.labels.clone(),
            points,
            hists,
        })
    }

    /// Info annotation for rate/increase over a metric whose name does not
    /// look like a counter.
    pub(crate) fn counter_info(&self, e: &Expr) {
        if let Expr::MatrixSelector(ms) = unparen(e) {
            if let Some(n) = &ms.vs.name {
                if rate::is_possible_non_counter(n) {
                    self.info(annotations::possible_non_counter_info(n));
                }
            }
        }
    }

    /// Groups classic-histogram bucket series (by labels without `le` and
    /// `__name__`) and applies `f` per group and step.
    fn histogram_buckets(
        &self,
        v: Vec<Series>,
        grid: &Grid,
        f: impl Fn(usize, &mut Vec<histogram::Bucket>, &str) -> f64,
    ) -> Result<Val> {
        // (group labels, metric name, (le, series index) of each bucket)
        let mut groups: Vec<BucketGroup> = Vec::new();
        for (k, s) in v.iter().enumerate() {
            let metric = s.labels.metric_name().unwrap_or("").to_string();
            let le = s.labels.get("le").and_then(parse_go_float);
            let Some(le) = le else {
                self.warn(annotations::bad_bucket_label_warning(
                    &metric,
                    s.labels.get("le").unwrap_or(""),
                ));
                continue;
            };
            let mut b = LabelsBuilder::new();
            for x in s.labels.iter().filter(|x| &*x.name != "le") {
                b.push_shared(x.name.clone(), x.value.clone());
            }
            let key = b.build().expect("subset of valid labels");
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.2.push((le, k)),
                None => groups.push((key, metric, vec![(le, k)])),
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut buckets: Vec<histogram::Bucket> = Vec::new();
        for (labels, metric, members) in groups {
            let mut per_step: Vec<Vec<histogram::Bucket>> =
                (0..grid.n).map(|_| Vec::new()).collect();
            for &(le, k) in &members {
                for p in &v[k].points {
                    per_step[p.i as usize].push(histogram::Bucket {
                        upper_bound: le,
                        count: p.v,
                    });
                }
            }
            let mut points = Vec::new();
            for (i, bs) in per_step.into_iter().enumerate() {
                if bs.is_empty() {
                    continue;
                }
                buckets.clear();
                buckets.extend(bs);
                points.push(Point {
                    i: i as u32,
                    v: f(i, &mut buckets, &metric),
                });
            }
            if !points.is_empty() {
                // Grouped by metric name too; the name leaves the result.
                out.push(Series::floats(drop_name(&labels), points));
            }
        }
        Ok(Val::Vector(merge_same_labels(out)?))
    }

    fn label_replace(&self, args: &[&Expr], grid: &Grid) -> Result<Vec<Series>> {
        let [v, dst, repl, src, re] = args else {
            return Err(QueryError::Parse("label_replace needs 5 arguments".into()));
        };
        let (dst, repl, src, re) = (
            string_arg(dst)?,
            string_arg(repl)?,
            string_arg(src)?,
            string_arg(re)?,
        );
        let regex = Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
            QueryError::Exec(format!(
                "invalid regular expression in label_replace(): {re}: {e}"
            ))
        })?;
        if !valid_label_name(&dst) {
            return Err(QueryError::Exec(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let v = self.eval_vector(v, grid)?;
        let out = v
            .into_iter()
            .map(|s| {
                let source = s.labels.get(&src).unwrap_or("");
                let labels = match regex.captures(source) {
                    Some(caps) => {
                        let mut value = String::new();
                        caps.expand(&repl, &mut value);
                        set_label(&s.labels, &dst, &value)
                    }
                    None => s.labels,
                };
                Series {
                    labels,
                    points: s.points,
                    hists: s.hists,
                }
            })
            .collect();
        merge_same_labels(out)
    }

    fn label_join(&self, args: &[&Expr], grid: &Grid) -> Result<Vec<Series>> {
        if args.len() < 3 {
            return Err(QueryError::Parse(
                "label_join needs at least 3 arguments".into(),
            ));
        }
        let dst = string_arg(args[1])?;
        let sep = string_arg(args[2])?;
        let srcs: Vec<String> = args[3..]
            .iter()
            .map(|e| string_arg(e))
            .collect::<Result<_>>()?;
        if !valid_label_name(&dst) {
            return Err(QueryError::Exec(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let v = self.eval_vector(args[0], grid)?;
        let out = v
            .into_iter()
            .map(|s| {
                let value = srcs
                    .iter()
                    .map(|n| s.labels.get(n).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                Series {
                    labels: set_label(&s.labels, &dst, &value),
                    points: s.points,
                    hists: s.hists,
                }
            })
            .collect();
        merge_same_labels(out)
    }
}

/// A label name Prometheus 3 accepts: non-empty valid UTF-8 (invalid bytes
/// come from the query's byte escapes, see `normalize_byte_escapes`).
fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && !crate::promql::engine::has_raw_bytes(name)
}

/// Sets (or, for an empty value, removes) one label.
fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut b = LabelsBuilder::new();
    for x in l.iter().filter(|x| &*x.name != name) {
        b.push_shared(x.name.clone(), x.value.clone());
    }
    b.push(name, value);
    b.build().expect("labels stay valid")
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Go `strconv.ParseFloat` for `le` values (`+Inf`, `1e3`, `0.5`).
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.replace('_', "").parse().ok().filter(|_| !t.is_empty()),
    }
}

/// Slides the window `(end - range, end]` over `samples` for every step and
/// collects `f(window, start, end, step)` where it yields a value.
pub(crate) fn windows(
    input: &RangeInput,
    grid: &Grid,
    samples: &[Sample],
    f: impl Fn(&[Sample], i64, i64, usize) -> Option<f64>,
) -> Vec<Point> {
    let mut points = Vec::new();
    if input.at.is_some() {
        let end = input.window_end(grid, 0);
        let start = input.window_start(end);
        let lo = samples.partition_point(|s| s.t <= start);
        let hi = samples.partition_point(|s| s.t <= end);
        for i in 0..grid.n {
            if let Some(v) = f(&samples[lo..hi], start, end, i) {
                points.push(Point { i: i as u32, v });
            }
        }
        return points;
    }
    let (mut lo, mut hi) = (0usize, 0usize);
    for i in 0..grid.n {
        let end = input.window_end(grid, i);
        let start = input.window_start(end);
        while lo < samples.len() && samples[lo].t <= start {
            lo += 1;
        }
        while hi < samples.len() && samples[hi].t <= end {
            hi += 1;
        }
        if lo >= hi {
            continue;
        }
        if let Some(v) = f(&samples[lo..hi], start, end, i) {
            points.push(Point { i: i as u32, v });
        }
    }
    points
}
