//! Binary operators: arithmetic, comparison (filtering or `bool`), and the
//! set operators `and`/`or`/`unless`, between scalars and instant vectors,
//! with `on`/`ignoring` and `group_left`/`group_right` vector matching.
//! Semantics: Prometheus promql/engine.go `VectorBinop`, `VectorAnd`,
//! `VectorOr`, `VectorUnless`, `VectorscalarBinop`, `resultMetric` (v3.14).

use std::collections::HashSet;

use ahash::AHashMap;
use std::sync::Arc;

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::model::{CounterResetHint, FloatHistogram, Labels, LabelsBuilder, METRIC_NAME};
use crate::promql::error::QueryError;
use crate::promql::eval::{
    drop_name, merge_same_labels, Evaluator, Grid, HPoint, Point, Result, Series, Val,
};
use crate::promql::functions::annotations::{self, HistogramOperation};
use crate::promql::functions::hist_range::Note;

/// Prometheus's `labels.String()`: `{a="b", c="d"}`, `__name__` included.
pub(crate) fn prom_labels(l: &Labels) -> String {
    let inner: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, &*x.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

fn drops_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^" | "atan2")
}

/// Applies a float operator: the value, and whether a comparison holds
/// (always true for arithmetic). Comparisons return the left value.
fn binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// One value of an instant vector at one step.
#[derive(Debug, Clone)]
pub(crate) enum V {
    F(f64),
    H(Arc<FloatHistogram>),
}

/// What an element-wise operation produced: the value (`None`: dropped)
/// and the annotation it raised.
struct Elem {
    value: Option<V>,
    keep: bool,
    note: Option<Note>,
    /// The note drops the sample in vector-vector operations (upstream
    /// returns it as `err`, not as `info`).
    drops: bool,
}

/// Transposes series into per-step lists of `(series index, value)`,
/// floats and histograms.
fn by_step_any(series: &[Series], n: usize) -> Vec<Vec<(usize, V)>> {
    let mut steps: Vec<Vec<(usize, V)>> = vec![Vec::new(); n];
    for (k, s) in series.iter().enumerate() {
        for p in &s.points {
            steps[p.i as usize].push((k, V::F(p.v)));
        }
        for p in &s.hists {
            steps[p.i as usize].push((k, V::H(p.h.clone())));
        }
    }
    steps
}

fn push_v(s: &mut Series, i: u32, v: V) {
    match v {
        V::F(v) => s.points.push(Point { i, v }),
        V::H(h) => s.hists.push(HPoint { i, h }),
    }
}

/// Orders a series' points by step after values were pushed out of order.
fn sort_points(s: &mut Series) {
    s.points.sort_by_key(|p| p.i);
    s.hists.sort_by_key(|p| p.i);
}

/// Upstream `vectorElemBinop` for operands of which at least one is a
/// histogram (floats on both sides use [`binop`]).
fn elem_binop(op: &str, l: &V, r: &V) -> Elem {
    let incompatible = |lt: &str, rt: &str| Elem {
        value: None,
        keep: false,
        note: Some(Note::Info(annotations::incompatible_types_in_bin_op_info(
            lt, op, rt,
        ))),
        drops: true,
    };
    let ok = |h: FloatHistogram| Elem {
        value: Some(V::H(Arc::new(h))),
        keep: true,
        note: None,
        drops: false,
    };
    let trim = matches!(op, "</" | ">/");
    match (l, r) {
        (V::F(_), V::F(_)) if trim => incompatible("float", "float"),
        (V::H(h), V::F(f)) if trim => {
            let mut h = (**h).clone();
            h.trim_buckets(*f, op == "</");
            ok(h)
        }
        (V::F(a), V::F(b)) => {
            let (v, keep) = binop(op, *a, *b);
            Elem {
                value: Some(V::F(v)),
                keep,
                note: None,
                drops: false,
            }
        }
        (V::F(f), V::H(h)) => match op {
            "*" => {
                let mut h = (**h).clone();
                h.mul(*f);
                h.compact();
                ok(h)
            }
            _ => incompatible("float", "histogram"),
        },
        (V::H(h), V::F(f)) => match op {
            "*" | "/" => {
                let mut h = (**h).clone();
                if op == "*" {
                    h.mul(*f);
                } else {
                    h.div(*f);
                }
                h.compact();
                ok(h)
            }
            _ => incompatible("histogram", "float"),
        },
        (V::H(a), V::H(b)) => match op {
            "+" | "-" => {
                let mut h = (**a).clone();
                let res = if op == "+" { h.add(b) } else { h.sub(b) };
                let what = if op == "+" {
                    HistogramOperation::Add
                } else {
                    HistogramOperation::Sub
                };
                match res {
                    Err(_) => Elem {
                        value: None,
                        keep: false,
                        note: Some(Note::Warn(
                            annotations::incompatible_bucket_layout_in_bin_op_warning(op),
                        )),
                        drops: true,
                    },
                    Ok(c) => {
                        if op == "-" {
                            h.counter_reset_hint = CounterResetHint::Gauge;
                        }
                        h.compact();
                        let mut e = ok(h);
                        if c.counter_reset_collision {
                            e.note = Some(Note::Warn(
                                annotations::histogram_counter_reset_collision_warning(what),
                            ));
                            e.drops = true;
                        } else if c.nhcb_bounds_reconciled {
                            e.note = Some(Note::Info(
                                annotations::mismatched_custom_buckets_histograms_info(what),
                            ));
                        }
                        e
                    }
                }
            }
            "==" | "!=" => {
                let eq = hist_equals(a, b);
                Elem {
                    value: Some(V::H(a.clone())),
                    keep: if op == "==" { eq } else { !eq },
                    note: None,
                    drops: false,
                }
            }
            _ => incompatible("histogram", "histogram"),
        },
    }
}

/// Prometheus `FloatHistogram.Equals`: same layout, bitwise equal values.
fn hist_equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let bits = |x: &[(i32, f64)], y: &[(i32, f64)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| p.0 == q.0 && p.1.to_bits() == q.1.to_bits())
    };
    a.schema == b.schema
        && a.count.to_bits() == b.count.to_bits()
        && a.sum.to_bits() == b.sum.to_bits()
        && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
        && a.zero_threshold == b.zero_threshold
        && a.zero_count.to_bits() == b.zero_count.to_bits()
        && bits(&a.positive(), &b.positive())
        && bits(&a.negative(), &b.negative())
}

/// How two series are matched: `on(...)` keeps only the listed labels;
/// otherwise (`ignoring(...)` or nothing) all labels but the listed ones and
/// `__name__`.
struct Matching<'m> {
    on: bool,
    names: &'m [String],
}

impl Matching<'_> {
    fn signature(&self, l: &Labels) -> Labels {
        let mut b = LabelsBuilder::new();
        for x in l.iter() {
            let listed = self.names.iter().any(|n| **n == *x.name);
            let keep = if self.on {
                listed
            } else {
                !listed && &*x.name != METRIC_NAME
            };
            if keep {
                b.push_shared(x.name.clone(), x.value.clone());
            }
        }
        b.build().expect("a subset of valid labels is valid")
    }
}

fn matching(modifier: &Option<BinModifier>) -> Matching<'_> {
    match modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(l)) => Matching {
            on: true,
            names: &l.labels,
        },
        Some(LabelModifier::Exclude(l)) => Matching {
            on: false,
            names: &l.labels,
        },
        None => Matching {
            on: false,
            names: &[],
        },
    }
}

impl Evaluator<'_> {
    pub(crate) fn eval_binary(&self, b: &BinaryExpr, grid: &Grid) -> Result<Val> {
        let op = crate::promql::trim_ops::op_text(b.op);
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, grid)?;
        let rhs = self.eval(&b.rhs, grid)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&l, &r)| {
                        let (v, keep) = binop(&op, l, r);
                        if is_comparison(&op) {
                            f64::from(u8::from(keep))
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => self.vector_scalar(&op, v, &s, false, return_bool),
            (Val::Scalar(s), Val::Vector(v)) => self.vector_scalar(&op, v, &s, true, return_bool),
            (Val::Vector(l), Val::Vector(r)) => match op.as_str() {
                "and" | "or" | "unless" => self.set_op(&op, l, r, &matching(&b.modifier), grid),
                _ => self.vector_vector(&op, l, r, b, return_bool, grid),
            },
            _ => Err(QueryError::Exec(format!(
                "binary operator {op:?} between unsupported operand types"
            ))),
        }
    }

    fn vector_scalar(
        &self,
        op: &str,
        v: Vec<Series>,
        s: &[f64],
        scalar_left: bool,
        return_bool: bool,
    ) -> Result<Val> {
        let comparison = is_comparison(op);
        let rename = drops_name(op) || (comparison && return_bool);
        let mut out = Vec::with_capacity(v.len());
        for series in v {
            let mut points = Vec::with_capacity(series.points.len());
            if matches!(op, "</" | ">/") && !series.points.is_empty() {
                self.info(annotations::incompatible_types_in_bin_op_info(
                    "float", op, "float",
                ));
            }
            for p in series.points {
                if matches!(op, "</" | ">/") {
                    continue;
                }
                let sv = s[p.i as usize];
                let (mut value, keep) = if scalar_left {
                    binop(op, sv, p.v)
                } else {
                    binop(op, p.v, sv)
                };
                if comparison && scalar_left {
                    // The vector's value is kept even when it is on the right.
                    value = p.v;
                }
                if return_bool {
                    value = f64::from(u8::from(keep));
                } else if !keep {
                    continue;
                }
                points.push(Point { i: p.i, v: value });
            }
            let labels = if rename {
                drop_name(&series.labels)
            } else {
                series.labels
            };
            let mut s_out = Series::floats(labels, points);
            for hp in series.hists {
                let sv = V::F(s[hp.i as usize]);
                let hv = V::H(hp.h.clone());
                let e = if scalar_left {
                    elem_binop(op, &sv, &hv)
                } else {
                    elem_binop(op, &hv, &sv)
                };
                match e.note {
                    Some(Note::Info(n)) => {
                        self.info(n);
                        continue;
                    }
                    Some(Note::Warn(n)) => {
                        self.warn(n);
                        if e.value.is_none() {
                            continue;
                        }
                    }
                    None => {}
                }
                let Some(mut value) = e.value else { continue };
                if comparison && scalar_left {
                    value = hv;
                }
                if return_bool {
                    value = V::F(f64::from(u8::from(e.keep)));
                } else if !e.keep {
                    continue;
                }
                push_v(&mut s_out, hp.i, value);
            }
            sort_points(&mut s_out);
            out.push(s_out);
        }
        if rename {
            out = merge_same_labels(out)?;
        }
        Ok(Val::Vector(out))
    }

    fn set_op(
        &self,
        op: &str,
        l: Vec<Series>,
        r: Vec<Series>,
        m: &Matching<'_>,
        grid: &Grid,
    ) -> Result<Val> {
        let lsig: Vec<Labels> = l.iter().map(|s| m.signature(&s.labels)).collect();
        let rsig: Vec<Labels> = r.iter().map(|s| m.signature(&s.labels)).collect();
        let lsteps = by_step_any(&l, grid.n);
        let rsteps = by_step_any(&r, grid.n);
        let mut lout: Vec<Series> = l
            .iter()
            .map(|s| Series::floats(s.labels.clone(), Vec::new()))
            .collect();
        let mut rout: Vec<Series> = r
            .iter()
            .map(|s| Series::floats(s.labels.clone(), Vec::new()))
            .collect();
        for i in 0..grid.n {
            match op {
                "and" | "unless" => {
                    let present: HashSet<&Labels> =
                        rsteps[i].iter().map(|(k, _)| &rsig[*k]).collect();
                    for (k, v) in &lsteps[i] {
                        if present.contains(&lsig[*k]) == (op == "and") {
                            push_v(&mut lout[*k], i as u32, v.clone());
                        }
                    }
                }
                _ => {
                    let present: HashSet<&Labels> =
                        lsteps[i].iter().map(|(k, _)| &lsig[*k]).collect();
                    for (k, v) in &lsteps[i] {
                        push_v(&mut lout[*k], i as u32, v.clone());
                    }
                    for (k, v) in &rsteps[i] {
                        if !present.contains(&rsig[*k]) {
                            push_v(&mut rout[*k], i as u32, v.clone());
                        }
                    }
                }
            }
        }
        let mut out: Vec<Series> = Vec::with_capacity(l.len() + r.len());
        out.extend(lout);
        out.extend(rout);
        out.retain(|s| !s.is_empty());
        let mut seen = HashSet::new();
        if out.iter().all(|s| seen.insert(s.labels.clone())) {
            return Ok(Val::Vector(out));
        }
        Ok(Val::Vector(merge_same_labels(out)?))
    }

    fn vector_vector(
        &self,
        op: &str,
        l: Vec<Series>,
        r: Vec<Series>,
        b: &BinaryExpr,
        return_bool: bool,
        grid: &Grid,
    ) -> Result<Val> {
        let m = matching(&b.modifier);
        let card = b
            .modifier
            .as_ref()
            .map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
        let include: &[String] = card.labels().map_or(&[], |l| &l.labels);
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        // The "many" side drives; for group_right that is the right side.
        let (many, one) = if one_to_many { (r, l) } else { (l, r) };
        let msig: Vec<Labels> = many.iter().map(|s| m.signature(&s.labels)).collect();
        let osig: Vec<Labels> = one.iter().map(|s| m.signature(&s.labels)).collect();
        let msteps = by_step_any(&many, grid.n);
        let osteps = by_step_any(&one, grid.n);
        let comparison = is_comparison(op);
        let rename = drops_name(op) || return_bool;

        // Each distinct signature gets a number once; the per-step
        // matching then indexes arrays instead of hashing label sets.
        let mut sig_ids: AHashMap<&Labels, u32> = AHashMap::with_capacity(msig.len() + osig.len());
        let mut id_of = |l| {
            let next = sig_ids.len() as u32;
            *sig_ids.entry(l).or_insert(next)
        };
        let oid: Vec<u32> = osig.iter().map(&mut id_of).collect();
        let mid: Vec<u32> = msig.iter().map(&mut id_of).collect();
        let sigs = sig_ids.len();
        // Per signature: the "one" side's series and value, with the step
        // they were set at (older steps' entries are stale).
        let mut one_at: Vec<Option<(u32, usize, &V)>> = vec![None; sigs];
        let mut matched_step = vec![u32::MAX; sigs];
        // Output series: by (many, one) pair, and the step each output
        // label set was last written at (for the uniqueness check).
        let mut result_labels: AHashMap<(usize, usize), usize> = AHashMap::new();
        let mut out_label_id: Vec<usize> = Vec::new();
        let mut label_ids: AHashMap<Labels, usize> = AHashMap::new();
        let mut inserted_step: Vec<u32> = Vec::new();
        let mut out: Vec<Series> = Vec::new();
        for i in 0..grid.n {
            self.check("binary operation")?;
            let step = i as u32;
            for (k, v) in &osteps[i] {
                let k = *k;
                let id = oid[k] as usize;
                if let Some((_, prev, _)) = one_at[id].filter(|e| e.0 == step) {
                    let side = if one_to_many { "left" } else { "right" };
                    let (a, b2) = (&one[prev].labels, &one[k].labels);
                    return Err(QueryError::Exec(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        prom_labels(&osig[k]),
                        prom_labels(a),
                        prom_labels(b2)
                    )));
                }
                one_at[id] = Some((step, k, v));
            }
            for (k, v) in &msteps[i] {
                let k = *k;
                let id = mid[k] as usize;
                let Some((_, o, ov)) = one_at[id].filter(|e| e.0 == step) else {
                    continue;
                };
                // Checked before comparison filtering: a many-to-one match
                // is an error even when the filter would drop the series.
                if one_to_one {
                    if matched_step[id] == step {
                        return Err(QueryError::Exec("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()));
                    }
                    matched_step[id] = step;
                }
                let (fl, fr) = if one_to_many { (ov, v) } else { (v, ov) };
                let e = elem_binop(op, fl, fr);
                match e.note {
                    Some(Note::Info(n)) if e.drops => {
                        self.info(n);
                        continue;
                    }
                    Some(Note::Warn(n)) if e.drops => {
                        self.warn(n);
                        continue;
                    }
                    Some(Note::Info(n)) => self.info(n),
                    Some(Note::Warn(n)) => self.warn(n),
                    None => {}
                }
                let keep = e.keep;
                let Some(mut value) = e.value else { continue };
                if return_bool {
                    value = V::F(f64::from(u8::from(keep)));
                } else if comparison && !keep {
                    continue;
                }
                let idx = match result_labels.get(&(k, o)) {
                    Some(&idx) => idx,
                    None => {
                        let labels = result_metric(
                            &many[k].labels,
                            &one[o].labels,
                            rename,
                            one_to_one,
                            &m,
                            include,
                        );
                        let next = label_ids.len();
                        let label_id = *label_ids.entry(labels.clone()).or_insert(next);
                        if label_id == inserted_step.len() {
                            inserted_step.push(u32::MAX);
                        }
                        out.push(Series::floats(labels, Vec::new()));
                        out_label_id.push(label_id);
                        result_labels.insert((k, o), out.len() - 1);
                        out.len() - 1
                    }
                };
                if !one_to_one {
                    let label_id = out_label_id[idx];
                    if inserted_step[label_id] == step {
                        return Err(QueryError::Exec(
                            "multiple matches for labels: grouping labels must ensure unique matches"
                                .into(),
                        ));
                    }
                    inserted_step[label_id] = step;
                }
                push_v(&mut out[idx], step, value);
            }
        }
        Ok(Val::Vector(merge_same_labels(out)?))
    }
}

/// The labels of a binary-operation result (Prometheus `resultMetric`).
fn result_metric(
    many: &Labels,
    one: &Labels,
    rename: bool,
    one_to_one: bool,
    m: &Matching<'_>,
    include: &[String],
) -> Labels {
    let mut b = LabelsBuilder::new();
    for x in many.iter() {
        if rename && &*x.name == METRIC_NAME {
            continue;
        }
        if one_to_one {
            let listed = m.names.iter().any(|n| **n == *x.name);
            if listed != m.on {
                continue;
            }
        }
        if include.iter().any(|n| **n == *x.name) {
            continue;
        }
        b.push_shared(x.name.clone(), x.value.clone());
    }
    for name in include {
        if let Some(v) = one.get(name) {
            b.push(name, v);
        }
    }
    b.build().expect("labels from valid label sets are valid")
}
