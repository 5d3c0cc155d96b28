//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`,
//! `stddev`, `stdvar`, `topk`, `bottomk`, `quantile`, `count_values`) with
//! `by`/`without`. Group membership is computed once per series; values are
//! folded step by step. Semantics: Prometheus promql/engine.go
//! `aggregation` / `aggregationK` (v3.14).

use ahash::AHashMap;

use promql_parser::parser::token::TokenType;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::model::{CounterResetHint, FloatHistogram, Labels, LabelsBuilder, METRIC_NAME};
use crate::promql::error::QueryError;
use crate::promql::eval::{
    by_step, merge_same_labels, Evaluator, Grid, HPoint, Point, Result, Series, Val,
};
use crate::promql::functions::annotations::HistogramOperation;
use crate::promql::functions::hist_range::HistSum;
use crate::promql::functions::{annotations, native_histogram, stats};

/// The labels of the group a series belongs to.
pub(crate) fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    let mut b = LabelsBuilder::new();
    match modifier {
        None => return Labels::empty(),
        Some(LabelModifier::Include(names)) => {
            for x in l
                .iter()
                .filter(|x| names.labels.iter().any(|n| **n == *x.name))
            {
                b.push_shared(x.name.clone(), x.value.clone());
            }
        }
        Some(LabelModifier::Exclude(names)) => {
            for x in l
                .iter()
                .filter(|x| &*x.name != METRIC_NAME && !names.labels.iter().any(|n| **n == *x.name))
            {
                b.push_shared(x.name.clone(), x.value.clone());
            }
        }
    }
    b.build().expect("a subset of valid labels is valid")
}

/// An aggregation operator, from the parser's token kind: the one place
/// where operators are told apart (an operator not listed is an error,
/// never a fallback to another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

impl AggOp {
    fn of(op: TokenType) -> Option<AggOp> {
        use promql_parser::parser::token::{
            T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
            T_STDVAR, T_SUM, T_TOPK,
        };
        Some(match op.id() {
            T_SUM => AggOp::Sum,
            T_AVG => AggOp::Avg,
            T_MIN => AggOp::Min,
            T_MAX => AggOp::Max,
            T_COUNT => AggOp::Count,
            T_GROUP => AggOp::Group,
            T_STDDEV => AggOp::Stddev,
            T_STDVAR => AggOp::Stdvar,
            T_TOPK => AggOp::Topk,
            T_BOTTOMK => AggOp::Bottomk,
            T_QUANTILE => AggOp::Quantile,
            T_COUNT_VALUES => AggOp::CountValues,
            _ => return None,
        })
    }
}

/// Running state of one group at one step.
pub(crate) enum Acc {
    Sum(stats::SumAcc),
    Avg(stats::AvgAcc),
    Min(f64),
    Max(f64),
    Count(f64),
    Group,
    Var(stats::VarAcc, bool),
}

impl Acc {
    /// The accumulator of a folding operator (`sum` … `stdvar`); `None` for
    /// the others, which do not fold values one by one.
    pub(crate) fn new(op: AggOp, v: f64) -> Option<Acc> {
        let mut a = match op {
            AggOp::Sum => Acc::Sum(stats::SumAcc::new()),
            AggOp::Avg => Acc::Avg(stats::AvgAcc::new()),
            AggOp::Min => return Some(Acc::Min(v)),
            AggOp::Max => return Some(Acc::Max(v)),
            AggOp::Count => return Some(Acc::Count(1.0)),
            AggOp::Group => return Some(Acc::Group),
            AggOp::Stddev => Acc::Var(stats::VarAcc::new(), true),
            AggOp::Stdvar => Acc::Var(stats::VarAcc::new(), false),
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::CountValues => return None,
        };
        a.add(v);
        Some(a)
    }

    pub(crate) fn add(&mut self, v: f64) {
        match self {
            Acc::Sum(s) => s.add(v),
            Acc::Avg(a) => a.add(v),
            Acc::Min(m) => {
                if *m > v || m.is_nan() {
                    *m = v;
                }
            }
            Acc::Max(m) => {
                if *m < v || m.is_nan() {
                    *m = v;
                }
            }
            Acc::Count(c) => *c += 1.0,
            Acc::Group => {}
            Acc::Var(a, _) => a.add(v),
        }
    }

    pub(crate) fn value(&self) -> f64 {
        match self {
            Acc::Sum(s) => s.value(),
            Acc::Avg(a) => a.value(),
            Acc::Min(m) | Acc::Max(m) | Acc::Count(m) => *m,
            Acc::Group => 1.0,
            Acc::Var(a, true) => a.stddev(),
            Acc::Var(a, false) => a.stdvar(),
        }
    }
}

/// Running sum of the histograms of one group at one step (`sum`, `avg`).
struct HistAcc {
    sum: HistSum,
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

impl HistAcc {
    fn new(h: &FloatHistogram, avg: bool) -> Self {
        let mut a = HistAcc {
            sum: HistSum::new(h, avg),
            incompatible: false,
            reset_seen: false,
            not_reset_seen: false,
        };
        a.note_hint(h);
        a
    }

    fn note_hint(&mut self, h: &FloatHistogram) {
        match h.counter_reset_hint {
            CounterResetHint::CounterReset => self.reset_seen = true,
            CounterResetHint::NotCounterReset => self.not_reset_seen = true,
            _ => {}
        }
    }

    fn add(&mut self, h: &FloatHistogram, ev: &Evaluator<'_>, metric: &str) {
        if self.incompatible {
            return;
        }
        self.note_hint(h);
        match self.sum.add(h) {
            Ok(r) => {
                if r.nhcb_bounds_reconciled {
                    ev.info(annotations::mismatched_custom_buckets_histograms_info(
                        HistogramOperation::Agg,
                    ));
                }
            }
            Err(_) => {
                ev.warn(annotations::mixed_exponential_custom_histograms_warning(
                    metric,
                ));
                self.incompatible = true;
            }
        }
    }

    /// The sum (or mean), compacted; `None` when the group mixed
    /// incompatible schemas.
    fn finish(self, ev: &Evaluator<'_>) -> Option<FloatHistogram> {
        if self.incompatible {
            return None;
        }
        if self.reset_seen && self.not_reset_seen {
            ev.warn(annotations::histogram_counter_reset_collision_warning(
                HistogramOperation::Agg,
            ));
        }
        Some(self.sum.finish())
    }
}

/// Transposes the histogram points of series into per-step lists of
/// `(series index, histogram)`.
fn hist_by_step(series: &[Series], n: usize) -> Vec<Vec<(usize, &FloatHistogram)>> {
    let mut steps: Vec<Vec<(usize, &FloatHistogram)>> = vec![Vec::new(); n];
    for (k, s) in series.iter().enumerate() {
        for p in &s.hists {
            steps[p.i as usize].push((k, &p.h));
        }
    }
    steps
}

impl Evaluator<'_> {
    pub(crate) fn eval_aggregate(&self, a: &AggregateExpr, grid: &Grid) -> Result<Val> {
        let op = AggOp::of(a.op).ok_or_else(|| {
            QueryError::Exec(format!(
                "aggregation {:?} is not supported",
                a.op.to_string()
            ))
        })?;
        // The common shapes fold series by series, holding one batch of
        // series at a time (see `stream`).
        if let Some(v) = self.eval_aggregate_streamed(a, op, grid)? {
            return Ok(v);
        }
        let input = self.eval_vector(&a.expr, grid)?;
        // Group membership, once per series, groups in order of first sight.
        let mut index: AHashMap<Labels, usize> = AHashMap::new();
        let mut groups: Vec<Labels> = Vec::new();
        let member: Vec<usize> = input
            .iter()
            .map(|s| {
                let g = group_labels(&s.labels, &a.modifier);
                *index.entry(g.clone()).or_insert_with(|| {
                    groups.push(g);
                    groups.len() - 1
                })
            })
            .collect();
        let steps = by_step(&input, grid.n);
        match op {
            AggOp::Topk | AggOp::Bottomk => {
                let param = a
                    .param
                    .as_ref()
                    .ok_or_else(|| QueryError::Parse(format!("{} needs a parameter", a.op)))?;
                let k = self.eval_scalar(param, grid)?;
                if input.iter().any(|s| !s.hists.is_empty()) {
                    let name = if op == AggOp::Topk { "topk" } else { "bottomk" };
                    self.info(annotations::histogram_ignored_in_aggregation_info(name));
                }
                self.aggregate_k(op == AggOp::Topk, &k, input, &member, groups.len(), &steps)
            }
            AggOp::Quantile => {
                let param = a
                    .param
                    .as_ref()
                    .ok_or_else(|| QueryError::Parse("quantile needs a parameter".into()))?;
                let q = self.eval_scalar(param, grid)?;
                if input.iter().any(|s| !s.hists.is_empty()) {
                    self.info(annotations::histogram_ignored_in_aggregation_info(
                        "quantile",
                    ));
                }
                let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups.len()];
                let mut values: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
                for (i, step) in steps.iter().enumerate() {
                    if step.is_empty() {
                        continue;
                    }
                    if !(0.0..=1.0).contains(&q[i]) {
                        self.warn(annotations::invalid_quantile_warning(q[i]));
                    }
                    for &(k, v) in step {
                        values[member[k]].push(v);
                    }
                    for (g, vs) in values.iter_mut().enumerate() {
                        if !vs.is_empty() {
                            out[g].push(Point {
                                i: i as u32,
                                v: stats::quantile(q[i], vs),
                            });
                            vs.clear();
                        }
                    }
                }
                Ok(Val::Vector(
                    groups
                        .into_iter()
                        .zip(out)
                        .map(|(labels, points)| Series::floats(labels, points))
                        .collect(),
                ))
            }
            AggOp::CountValues => {
                let mut param = a.param.as_deref();
                while let Some(promql_parser::parser::Expr::Paren(p)) = param {
                    param = Some(&p.expr);
                }
                let label = match param {
                    Some(promql_parser::parser::Expr::StringLiteral(s)) => s.val.clone(),
                    _ => {
                        return Err(QueryError::Parse(
                            "count_values needs a string parameter".into(),
                        ))
                    }
                };
                // Invalid bytes come from the query's byte escapes.
                if label.is_empty() || crate::promql::engine::has_raw_bytes(&label) {
                    return Err(QueryError::Exec(format!(
                        "invalid label name {}",
                        crate::promql::functions::annotations::go_quote(&label)
                    )));
                }
                let mut out: AHashMap<Labels, Vec<Point>> = AHashMap::new();
                let mut order: Vec<Labels> = Vec::new();
                let hsteps = hist_by_step(&input, grid.n);
                for (i, step) in steps.iter().enumerate() {
                    // Counts in order of first sight, found by hash: linear
                    // in the step's samples.
                    let mut counts: Vec<(Labels, f64)> = Vec::new();
                    let mut at: AHashMap<Labels, usize> = AHashMap::new();
                    let values = step
                        .iter()
                        .map(|&(k, v)| (k, crate::model::format_float_f(v)))
                        .chain(
                            hsteps[i]
                                .iter()
                                .map(|&(k, h)| (k, native_histogram::to_prom_string(h))),
                        );
                    for (k, value) in values {
                        let mut b = LabelsBuilder::new();
                        for x in groups[member[k]].iter().filter(|x| *x.name != *label) {
                            b.push_shared(x.name.clone(), x.value.clone());
                        }
                        b.push(&label, &value);
                        let l = b.build().map_err(|e| QueryError::Exec(e.to_string()))?;
                        match at.get(&l) {
                            Some(&j) => counts[j].1 += 1.0,
                            None => {
                                at.insert(l.clone(), counts.len());
                                counts.push((l, 1.0));
                            }
                        }
                    }
                    for (l, c) in counts {
                        let pts = out.entry(l.clone()).or_insert_with(|| {
                            order.push(l);
                            Vec::new()
                        });
                        pts.push(Point { i: i as u32, v: c });
                    }
                }
                Ok(Val::Vector(
                    order
                        .into_iter()
                        .map(|l| {
                            let points = out.remove(&l).unwrap_or_default();
                            Series::floats(l, points)
                        })
                        .collect(),
                ))
            }
            AggOp::Sum
            | AggOp::Avg
            | AggOp::Min
            | AggOp::Max
            | AggOp::Count
            | AggOp::Group
            | AggOp::Stddev
            | AggOp::Stdvar => {
                let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups.len()];
                let mut hout: Vec<Vec<HPoint>> = vec![Vec::new(); groups.len()];
                let mut accs: Vec<Option<Acc>> = (0..groups.len()).map(|_| None).collect();
                let mut haccs: Vec<Option<HistAcc>> = (0..groups.len()).map(|_| None).collect();
                let mut touched: Vec<usize> = Vec::new();
                let hsteps = hist_by_step(&input, grid.n);
                let ignored = match op {
                    AggOp::Min => Some("min"),
                    AggOp::Max => Some("max"),
                    AggOp::Stddev => Some("stddev"),
                    AggOp::Stdvar => Some("stdvar"),
                    _ => None,
                };
                for (i, step) in steps.iter().enumerate() {
                    for &(k, v) in step {
                        let g = member[k];
                        match &mut accs[g] {
                            Some(acc) => acc.add(v),
                            slot => {
                                *slot = Acc::new(op, v);
                                touched.push(g);
                            }
                        }
                    }
                    for &(k, h) in &hsteps[i] {
                        let g = member[k];
                        match op {
                            AggOp::Sum | AggOp::Avg => {
                                let name = input[k].labels.metric_name().unwrap_or("");
                                match &mut haccs[g] {
                                    Some(acc) => acc.add(h, self, name),
                                    slot => *slot = Some(HistAcc::new(h, op == AggOp::Avg)),
                                }
                            }
                            // Members without a value: count them.
                            AggOp::Count | AggOp::Group => match &mut accs[g] {
                                Some(acc) => acc.add(0.0),
                                slot => {
                                    *slot = Acc::new(op, 0.0);
                                    touched.push(g);
                                }
                            },
                            _ => {
                                if let Some(name) = ignored {
                                    self.info(annotations::histogram_ignored_in_aggregation_info(
                                        name,
                                    ));
                                }
                            }
                        }
                    }
                    for g in 0..groups.len() {
                        let Some(hacc) = haccs[g].take() else {
                            continue;
                        };
                        if accs[g].is_some() {
                            // Floats and histograms in one group: no result.
                            self.warn(annotations::mixed_floats_histograms_agg_warning());
                            accs[g] = None;
                            continue;
                        }
                        if let Some(h) = hacc.finish(self) {
                            hout[g].push(HPoint {
                                i: i as u32,
                                h: std::sync::Arc::new(h),
                            });
                        }
                    }
                    for g in touched.drain(..) {
                        if let Some(acc) = accs[g].take() {
                            out[g].push(Point {
                                i: i as u32,
                                v: acc.value(),
                            });
                        }
                    }
                    self.check("aggregation")?;
                }
                Ok(Val::Vector(
                    groups
                        .into_iter()
                        .zip(out)
                        .zip(hout)
                        .map(|((labels, points), hists)| Series {
                            labels,
                            points,
                            hists,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// `topk` / `bottomk`: the k largest / smallest series of each group at
    /// each step, keeping their own labels. In an instant query the result
    /// lists each group's members best first, groups in order of first sight.
    fn aggregate_k(
        &self,
        top: bool,
        k: &[f64],
        input: Vec<Series>,
        member: &[usize],
        ngroups: usize,
        steps: &[Vec<(usize, f64)>],
    ) -> Result<Val> {
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); input.len()];
        let mut instant_order: Vec<usize> = Vec::new();
        let mut per_group: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
        let mut group_order: Vec<usize> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let kf = k[i];
            if kf.is_nan() {
                return Err(QueryError::Exec("Parameter value is NaN".into()));
            }
            if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&kf) {
                return Err(QueryError::Exec(format!(
                    "Scalar value {kf} overflows int64"
                )));
            }
            let kk = kf as i64;
            if kk < 1 || step.is_empty() {
                continue;
            }
            group_order.clear();
            for &(s, v) in step {
                let g = member[s];
                if per_group[g].is_empty() {
                    group_order.push(g);
                }
                per_group[g].push((s, v));
            }
            for &g in &group_order {
                let members = &mut per_group[g];
                // NaN ranks below every number for topk and above for
                // bottomk (it is never preferred); ties keep input order.
                members.sort_by(|a, b| {
                    let ord = if top {
                        cmp_desc_nan_last(a.1, b.1)
                    } else {
                        cmp_asc_nan_last(a.1, b.1)
                    };
                    ord.then(a.0.cmp(&b.0))
                });
                members.truncate(kk.min(members.len() as i64) as usize);
                for &(s, v) in members.iter() {
                    out[s].push(Point { i: i as u32, v });
                    if steps.len() == 1 {
                        instant_order.push(s);
                    }
                }
                members.clear();
            }
        }
        let mut series: Vec<Option<Series>> = input
            .into_iter()
            .zip(out)
            .map(|(s, points)| Some(Series::floats(s.labels, points)))
            .collect();
        let result = if steps.len() == 1 {
            instant_order
                .iter()
                .filter_map(|&s| series[s].take())
                .collect()
        } else {
            series
                .into_iter()
                .flatten()
                .filter(|s| !s.points.is_empty())
                .collect()
        };
        Ok(Val::Vector(merge_keep_order(result)?))
    }
}

fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Like [`merge_same_labels`] but keeps the order of an instant result when
/// no two series share labels (the common case).
fn merge_keep_order(series: Vec<Series>) -> Result<Vec<Series>> {
    let mut seen = std::collections::HashSet::new();
    if series.iter().all(|s| seen.insert(s.labels.clone())) {
        return Ok(series);
    }
    merge_same_labels(series)
}
