//! Checking a query outcome against an eval's [`Expectations`]
//! (FORMAT.md §7.2, §8): failures, annotations, and result comparison.
//! Messages name what differed so a failing case can be fixed from the
//! report alone.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use tidemark::model::{is_stale_nan, FloatHistogram, Labels};
use tidemark::promql::{QueryError, QueryResult, RangeSeries, Value};

use crate::script::{Expectations, ExpectedSeries, Slot, TextMatch};

/// Relative tolerance of sample comparisons (upstream `defaultEpsilon`).
const EPSILON: f64 = 1e-6;

/// Float equality of upstream `util/almost.Equal` (FORMAT.md §8.1).
pub(crate) fn float_eq(a: f64, b: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

/// Formats a float like Go's `%v` does for the usual cases, so expected and
/// got read the same way as in the files.
pub(crate) fn fmt_f(v: f64) -> String {
    if is_stale_nan(v) {
        "stale".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Checks an error against `expect fail` (§7.2). `parsed` is false when
/// the error came from the parser: that only passes on a matching
/// `msg`/`regex`, never on a bare `expect fail`.
pub(crate) fn check_error(
    exp: &Expectations,
    err: &QueryError,
    parsed: bool,
) -> Result<(), String> {
    let text = err.to_string();
    match &exp.fail {
        None if parsed => Err(format!("query failed: {text}")),
        None => Err(format!("parse error: {text}")),
        Some(TextMatch::Any) if !parsed => Err(format!(
            "parse error under a bare `expect fail` (passes upstream for another reason): {text}"
        )),
        Some(m) if m.matches(&text) => Ok(()),
        Some(m) => Err(format!("error {text:?} does not match expected {m}")),
    }
}

/// Strips the ` (line:col)` position suffix the HTTP API appends.
fn strip_position(s: &str) -> &str {
    static POS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r" \(\d+:\d+\)$").expect("static regex"));
    match POS.find(s) {
        Some(m) => &s[..m.start()],
        None => s,
    }
}

fn check_kind(
    kind: &str,
    produced: &[String],
    lines: &[TextMatch],
    none: bool,
    some: bool,
) -> Result<(), String> {
    let produced: Vec<&str> = produced.iter().map(|s| strip_position(s)).collect();
    if none && !produced.is_empty() {
        return Err(format!("expected no {kind} annotations, got {produced:?}"));
    }
    if (some || !lines.is_empty()) && produced.is_empty() {
        return Err(format!("expected {kind} annotations, got none"));
    }
    if lines.is_empty() {
        return Ok(());
    }
    if let Some(l) = lines
        .iter()
        .find(|l| !produced.iter().any(|p| l.matches(p)))
    {
        return Err(format!(
            "expected {kind} annotation {l} not produced; got {produced:?}"
        ));
    }
    if let Some(p) = produced
        .iter()
        .find(|p| !lines.iter().any(|l| l.matches(p)))
    {
        return Err(format!("unexpected {kind} annotation {p:?}"));
    }
    Ok(())
}

/// Checks warnings and infos (§7.2). Unchecked unless the block has
/// warn/info/no_warn/no_info lines (or an `eval_warn`/`eval_info` header).
pub(crate) fn check_annotations(exp: &Expectations, res: &QueryResult) -> Result<(), String> {
    check_kind("warn", &res.warnings, &exp.warn, exp.no_warn, exp.some_warn)?;
    check_kind("info", &res.infos, &exp.info, exp.no_info, exp.some_info)
}

/// Upstream `labels.Compare`: pairwise by name then value, shorter first.
pub(crate) fn labels_cmp(a: &Labels, b: &Labels) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let o = x
            .name
            .as_bytes()
            .cmp(y.name.as_bytes())
            .then_with(|| x.value.as_bytes().cmp(y.value.as_bytes()));
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Upstream asserts every matrix is sorted by labels (§8.3).
pub(crate) fn check_sorted(m: &[RangeSeries]) -> Result<(), String> {
    for w in m.windows(2) {
        if labels_cmp(&w[0].labels, &w[1].labels) == Ordering::Greater {
            return Err(format!(
                "matrix not sorted by labels: {} before {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    Ok(())
}

fn by_labels(series: &[ExpectedSeries]) -> HashMap<&Labels, &ExpectedSeries> {
    series.iter().map(|s| (&s.labels, s)).collect()
}

fn expected_text(series: &[ExpectedSeries]) -> String {
    let v: Vec<String> = series
        .iter()
        .map(|s| {
            let vals: Vec<String> = s
                .slots
                .iter()
                .map(|x| match x {
                    Slot::Gap => "_".into(),
                    Slot::Float(v) => fmt_f(*v),
                    Slot::Histogram { h, .. } => hist_text(h),
                })
                .collect();
            format!("{} {}", s.labels, vals.join(" "))
        })
        .collect();
    v.join("; ")
}

/// A result value: a float or a histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Got<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

impl Got<'_> {
    fn text(&self) -> String {
        match self {
            Got::F(v) => fmt_f(*v),
            Got::H(h) => hist_text(h),
        }
    }
}

/// A histogram in the test notation, for failure messages.
pub(crate) fn hist_text(h: &FloatHistogram) -> String {
    let list = |b: &[(i32, f64)]| {
        b.iter()
            .map(|(i, c)| format!("{i}:{}", fmt_f(*c)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = format!(
        "{{{{schema:{} count:{} sum:{}",
        h.schema,
        fmt_f(h.count),
        fmt_f(h.sum)
    );
    if h.zero_count != 0.0 || h.zero_threshold != 0.0 {
        s.push_str(&format!(
            " z_bucket:{} z_bucket_w:{}",
            fmt_f(h.zero_count),
            fmt_f(h.zero_threshold)
        ));
    }
    let (p, n) = (h.positive(), h.negative());
    if !p.is_empty() {
        s.push_str(&format!(" buckets(idx:count):[{}]", list(&p)));
    }
    if !n.is_empty() {
        s.push_str(&format!(" n_buckets(idx:count):[{}]", list(&n)));
    }
    if !h.custom_values.is_empty() {
        let cv: Vec<String> = h.custom_values.iter().map(|v| fmt_f(*v)).collect();
        s.push_str(&format!(" custom_values:[{}]", cv.join(" ")));
    }
    s.push_str(&format!(" hint:{:?}}}}}", h.counter_reset_hint));
    s
}

/// Upstream's `compareNativeHistogram` after `Compact(0)` on both sides:
/// schema, zero threshold and (for custom buckets) bounds exactly; count,
/// sum, zero count and every populated bucket within ε; the reset hint
/// only when the expected literal gave one.
pub(crate) fn hist_eq(exp: &FloatHistogram, got: &FloatHistogram, hint_set: bool) -> bool {
    let (mut e, mut g) = (exp.clone(), got.clone());
    e.compact();
    g.compact();
    let buckets_eq = |a: &[(i32, f64)], b: &[(i32, f64)]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && float_eq(x.1, y.1))
    };
    e.schema == g.schema
        && float_eq(e.count, g.count)
        && float_eq(e.sum, g.sum)
        && (!e.uses_custom_buckets() || e.custom_values == g.custom_values)
        && e.zero_threshold == g.zero_threshold
        && float_eq(e.zero_count, g.zero_count)
        && buckets_eq(&e.negative(), &g.negative())
        && buckets_eq(&e.positive(), &g.positive())
        && (!hint_set || e.counter_reset_hint == g.counter_reset_hint)
}

/// Compares an instant vector (labels, value) with the series lines (§8.2).
pub(crate) fn compare_vector(
    exp: &Expectations,
    got: &[(Labels, Got<'_>)],
    ordered: bool,
) -> Result<(), String> {
    if exp.scalar.is_some() {
        return Err(format!(
            "expected scalar {}, got a vector of {} samples",
            fmt_f(exp.scalar.unwrap_or_default()),
            got.len()
        ));
    }
    if exp.string.is_some() {
        return Err("expected a string, got a vector".into());
    }
    let want = by_labels(&exp.series);
    let mut seen = std::collections::HashSet::new();
    for (i, (labels, v)) in got.iter().enumerate() {
        let Some(e) = want.get(labels) else {
            return Err(format!(
                "unexpected series {labels} = {} in result; expected: {}",
                v.text(),
                expected_text(&exp.series)
            ));
        };
        if ordered && e.pos != i + 1 {
            return Err(format!(
                "series {labels} at position {} but expected at {}",
                i + 1,
                e.pos
            ));
        }
        match (e.slots.first(), v) {
            (Some(Slot::Float(w)), Got::F(v)) if float_eq(*v, *w) => {}
            (Some(Slot::Histogram { h, hint_set }), Got::H(g)) if hist_eq(h, g, *hint_set) => {}
            (Some(Slot::Float(w)), v) => {
                return Err(format!(
                    "series {labels}: expected {}, got {}",
                    fmt_f(*w),
                    v.text()
                ))
            }
            (Some(Slot::Histogram { h, .. }), v) => {
                return Err(format!(
                    "series {labels}: expected {}, got {}",
                    hist_text(h),
                    v.text()
                ))
            }
            _ => return Err(format!("series {labels}: expected value is a gap")),
        }
        seen.insert(labels);
    }
    if let Some(missing) = exp.series.iter().find(|s| !seen.contains(&s.labels)) {
        return Err(format!(
            "expected series {} not in result (got {} series)",
            missing.labels,
            got.len()
        ));
    }
    Ok(())
}

/// Compares a matrix with the series lines, slot `i` at `start + i*step`
/// (§8.3).
pub(crate) fn compare_matrix(
    exp: &Expectations,
    got: &[RangeSeries],
    (start, end, step): (i64, i64, i64),
) -> Result<(), String> {
    if exp.ordered {
        return Err("expected an ordered vector, got a matrix".into());
    }
    if let Some(s) = exp.scalar {
        return Err(format!("expected scalar {}, got a matrix", fmt_f(s)));
    }
    if exp.string.is_some() {
        return Err("expected a string, got a matrix".into());
    }
    check_sorted(got)?;
    let want = by_labels(&exp.series);
    for s in got {
        let Some(e) = want.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} in result with {} points",
                s.labels,
                s.samples.len()
            ));
        };
        let mut points = Vec::new();
        let mut hpoints = Vec::new();
        for (i, slot) in e.slots.iter().enumerate() {
            let t = start + i as i64 * step;
            if t > end {
                return Err(format!(
                    "expected {} points for {}, but the time range cannot hold them",
                    e.slots.len(),
                    s.labels
                ));
            }
            match slot {
                Slot::Float(v) => points.push((t, *v)),
                Slot::Histogram { h, hint_set } => hpoints.push((t, h, *hint_set)),
                Slot::Gap => {}
            }
        }
        let got_pts: Vec<String> = s
            .samples
            .iter()
            .map(|p| format!("{}@{}", fmt_f(p.v), p.t))
            .collect();
        let want_pts: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{}@{}", fmt_f(*v), t))
            .collect();
        if points.len() != s.samples.len() || hpoints.len() != s.histograms.len() {
            return Err(format!(
                "series {}: expected {} float and {} histogram points [{}], got {} float and {} histogram points [{}]",
                s.labels,
                points.len(),
                hpoints.len(),
                want_pts.join(" "),
                s.samples.len(),
                s.histograms.len(),
                got_pts.join(" ")
            ));
        }
        for ((t, h, hint_set), p) in hpoints.iter().zip(&s.histograms) {
            if *t != p.t || !hist_eq(h, &p.h, *hint_set) {
                return Err(format!(
                    "series {}: expected histogram {} at {t}, got {} at {}",
                    s.labels,
                    hist_text(h),
                    hist_text(&p.h),
                    p.t
                ));
            }
        }
        for ((t, v), p) in points.iter().zip(&s.samples) {
            if *t != p.t || !float_eq(p.v, *v) {
                return Err(format!(
                    "series {}: expected [{}], got [{}]",
                    s.labels,
                    want_pts.join(" "),
                    got_pts.join(" ")
                ));
            }
        }
    }
    if let Some(missing) = exp
        .series
        .iter()
        .find(|e| !got.iter().any(|s| s.labels == e.labels))
    {
        return Err(format!(
            "expected series {} not in result (got {} series)",
            missing.labels,
            got.len()
        ));
    }
    Ok(())
}

fn compare_scalar(exp: &Expectations, v: f64) -> Result<(), String> {
    match exp.scalar {
        Some(w) if !exp.series.is_empty() => Err(format!(
            "expected scalar {} and series lines, got scalar {}",
            fmt_f(w),
            fmt_f(v)
        )),
        Some(w) if float_eq(v, w) => Ok(()),
        Some(w) => Err(format!("expected scalar {}, got {}", fmt_f(w), fmt_f(v))),
        None => Err(format!(
            "expected a vector or matrix, got scalar {}",
            fmt_f(v)
        )),
    }
}

/// Compares the value of an instant query (§8.2, §8.4, §7.3, §7.5).
pub(crate) fn compare_instant(exp: &Expectations, value: &Value) -> Result<(), String> {
    if let Some(rv) = exp.range_vector {
        return match value {
            Value::Matrix(m) => compare_matrix(exp, m, rv),
            other => Err(format!(
                "expected a range vector, got a {}",
                other.type_name()
            )),
        };
    }
    match value {
        Value::String { v, .. } => match &exp.string {
            Some(w) if w == v => Ok(()),
            Some(w) => Err(format!("expected string {w:?}, got {v:?}")),
            None => Err(format!("got string {v:?}, but no `expect string`")),
        },
        _ if exp.string.is_some() => Err(format!("expected a string, got a {}", value.type_name())),
        Value::Scalar { v, .. } => compare_scalar(exp, *v),
        Value::Vector(samples) => {
            let got: Vec<(Labels, Got<'_>)> = samples
                .iter()
                .map(|s| {
                    let v = match &s.h {
                        Some(h) => Got::H(h),
                        None => Got::F(s.v),
                    };
                    (s.labels.clone(), v)
                })
                .collect();
            compare_vector(exp, &got, exp.ordered)
        }
        Value::Matrix(m) => Err(format!(
            "instant eval returned a matrix of {} series; use `expect range vector`",
            m.len()
        )),
    }
}

/// Compares the value of a range query (§8.3).
pub(crate) fn compare_range(
    exp: &Expectations,
    value: &Value,
    range: (i64, i64, i64),
) -> Result<(), String> {
    match value {
        Value::Matrix(m) => compare_matrix(exp, m, range),
        other => Err(format!(
            "range query returned a {}, not a matrix",
            other.type_name()
        )),
    }
}

/// The range-mode cross-check of one instant result (§9.1): `range` is the
/// matrix of the range query `[t-1m, t+1m]` step 1m; its points at `t` must
/// meet the same expectations.
pub(crate) fn compare_range_mode(
    exp: &Expectations,
    instant: &Value,
    range: &Value,
    t: i64,
) -> Result<(), String> {
    let Value::Matrix(m) = range else {
        return Err(format!(
            "range query returned a {}, not a matrix",
            range.type_name()
        ));
    };
    if exp.ordered {
        return Ok(());
    }
    check_sorted(m)?;
    let vec: Vec<(Labels, Got<'_>)> = m
        .iter()
        .filter_map(|s| {
            let f = s.samples.iter().find(|p| p.t == t).map(|p| Got::F(p.v));
            let h = s.histograms.iter().find(|p| p.t == t).map(|p| Got::H(&p.h));
            f.or(h).map(|v| (s.labels.clone(), v))
        })
        .collect();
    if let Value::Scalar { .. } = instant {
        return match vec.first() {
            Some((_, Got::F(v))) => compare_scalar(exp, *v),
            Some((_, Got::H(_))) => Err("scalar expression has a histogram point".into()),
            None => Err("scalar expression has no point at the eval time".into()),
        };
    }
    compare_vector(exp, &vec, false)
}
