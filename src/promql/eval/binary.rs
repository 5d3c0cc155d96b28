//! Binary operators: arithmetic, comparison (filtering or `bool`), and the
//! set operators `and`/`or`/`unless`, between scalars and instant vectors,
//! with `on`/`ignoring` and `group_left`/`group_right` vector matching.
//! Semantics: Prometheus promql/engine.go `VectorBinop`, `VectorAnd`,
//! `VectorOr`, `VectorUnless`, `VectorscalarBinop`, `resultMetric` (v3.14).

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::model::{Labels, LabelsBuilder, METRIC_NAME};
use crate::promql::error::QueryError;
use crate::promql::eval::{
    by_step, drop_name, merge_same_labels, Evaluator, Grid, Point, Result, Series, Val,
};

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
        let op = b.op.to_string().to_lowercase();
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
            for p in series.points {
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
            out.push(Series::floats(labels, points));
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
        let lsteps = by_step(&l, grid.n);
        let rsteps = by_step(&r, grid.n);
        let mut lout: Vec<Vec<Point>> = vec![Vec::new(); l.len()];
        let mut rout: Vec<Vec<Point>> = vec![Vec::new(); r.len()];
        for i in 0..grid.n {
            match op {
                "and" | "unless" => {
                    let present: HashSet<&Labels> =
                        rsteps[i].iter().map(|&(k, _)| &rsig[k]).collect();
                    for &(k, v) in &lsteps[i] {
                        if present.contains(&lsig[k]) == (op == "and") {
                            lout[k].push(Point { i: i as u32, v });
                        }
                    }
                }
                _ => {
                    let present: HashSet<&Labels> =
                        lsteps[i].iter().map(|&(k, _)| &lsig[k]).collect();
                    for &(k, v) in &lsteps[i] {
                        lout[k].push(Point { i: i as u32, v });
                    }
                    for &(k, v) in &rsteps[i] {
                        if !present.contains(&rsig[k]) {
                            rout[k].push(Point { i: i as u32, v });
                        }
                    }
                }
            }
        }
        let mut out: Vec<Series> = Vec::with_capacity(l.len() + r.len());
        out.extend(
            l.into_iter()
                .zip(lout)
                .map(|(s, points)| Series::floats(s.labels, points)),
        );
        out.extend(
            r.into_iter()
                .zip(rout)
                .map(|(s, points)| Series::floats(s.labels, points)),
        );
        out.retain(|s| !s.points.is_empty());
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
        let msteps = by_step(&many, grid.n);
        let osteps = by_step(&one, grid.n);
        let comparison = is_comparison(op);
        let rename = drops_name(op) || return_bool;

        let mut result_labels: HashMap<(usize, usize), usize> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        for i in 0..grid.n {
            self.check("binary operation")?;
            let mut one_at: HashMap<&Labels, (usize, f64)> =
                HashMap::with_capacity(osteps[i].len());
            for &(k, v) in &osteps[i] {
                if let Some(&(prev, _)) = one_at.get(&osig[k]) {
                    let side = if one_to_many { "left" } else { "right" };
                    let (a, b2) = (&one[prev].labels, &one[k].labels);
                    return Err(QueryError::Exec(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        prom_labels(&osig[k]),
                        prom_labels(a),
                        prom_labels(b2)
                    )));
                }
                one_at.insert(&osig[k], (k, v));
            }
            let mut matched: HashSet<&Labels> = HashSet::new();
            let mut inserted: HashSet<Labels> = HashSet::new();
            for &(k, v) in &msteps[i] {
                let Some(&(o, ov)) = one_at.get(&msig[k]) else {
                    continue;
                };
                // Checked before comparison filtering: a many-to-one match
                // is an error even when the filter would drop the series.
                if one_to_one && !matched.insert(&msig[k]) {
                    return Err(QueryError::Exec("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()));
                }
                let (fl, fr) = if one_to_many { (ov, v) } else { (v, ov) };
                let (mut value, keep) = binop(op, fl, fr);
                if return_bool {
                    value = f64::from(u8::from(keep));
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
                        out.push(Series::floats(labels, Vec::new()));
                        result_labels.insert((k, o), out.len() - 1);
                        out.len() - 1
                    }
                };
                if !one_to_one && !inserted.insert(out[idx].labels.clone()) {
                    return Err(QueryError::Exec(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                out[idx].points.push(Point {
                    i: i as u32,
                    v: value,
                });
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
