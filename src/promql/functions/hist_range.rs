//! Range-vector functions over windows that hold native histogram samples
//! (alone or mixed with floats): `rate`/`increase`/`delta`,
//! `irate`/`idelta`, `sum_over_time`/`avg_over_time` of histograms,
//! `count`/`present`/`first`/`last_over_time`, `changes`, `resets`, and
//! the float functions that ignore histograms.
//!
//! Pure: a window of float samples and one of histogram samples in, a
//! float or histogram and the annotations it raises out. Semantics:
//! Prometheus v3.14 `promql/functions.go` (`extrapolatedRate`,
//! `histogramRate`, `instantValue`, `funcSumOverTime`, `funcAvgOverTime`,
//! `compareOverTime`, `funcResets`, `funcChanges`, `funcFirstOverTime`,
//! `funcLastOverTime`).

use crate::model::histogram_ops::Compensation;
use crate::model::histogram_ops::{Combined, HistogramOpError};
use crate::model::{CounterResetHint, FloatHistogram, Sample};
use crate::promql::eval::HSample;
use crate::promql::functions::annotations::{self, HistogramOperation};

/// How a range function treats histogram samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistMode {
    /// Floats only: a window of only histograms yields nothing; histograms
    /// beside floats are ignored with an info annotation.
    FloatsOnly,
    /// `rate` (counter, per second), `increase` (counter), `delta`.
    Rate { counter: bool, per_second: bool },
    /// `irate` (per second) and `idelta`.
    Instant { per_second: bool },
    /// `sum_over_time`.
    Sum,
    /// `avg_over_time`.
    Avg,
    /// `count_over_time`: every sample counts.
    Count,
    /// `present_over_time`.
    Present,
    /// `first_over_time`.
    First,
    /// `last_over_time`.
    Last,
    /// `changes`.
    Changes,
    /// `resets`.
    Resets,
}

/// An annotation a kernel raises.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    Warn(String),
    Info(String),
}

/// A kernel's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    F(f64),
    H(FloatHistogram),
}

/// A compensated running sum or mean of histograms, as Prometheus's
/// `sum`/`avg` (and `sum_over_time`/`avg_over_time`) compute it: Kahan
/// summation, and for a mean the switch to an incremental mean once the
/// plain sum would overflow.
pub(crate) struct HistSum {
    value: FloatHistogram,
    comp: Compensation,
    n: f64,
    avg: bool,
    /// The incremental mean, once the sum overflowed.
    mean: Option<FloatHistogram>,
}

impl HistSum {
    pub(crate) fn new(h: &FloatHistogram, avg: bool) -> Self {
        HistSum {
            value: h.clone(),
            comp: Compensation::default(),
            n: 1.0,
            avg,
            mean: None,
        }
    }

    /// Adds one more histogram.
    pub(crate) fn add(&mut self, h: &FloatHistogram) -> Result<Combined, HistogramOpError> {
        self.n += 1.0;
        if !self.avg {
            return self.value.kahan_add(h, &mut self.comp);
        }
        if self.mean.is_none() {
            let mut v = self.value.clone();
            let mut c = self.comp;
            let r = v.kahan_add(h, &mut c)?;
            if !v.has_overflow() {
                self.value = v;
                self.comp = c;
                return Ok(r);
            }
            let mut m = self.value.clone();
            m.div(self.n - 1.0);
            self.comp.div(self.n - 1.0);
            self.mean = Some(m);
        }
        let q = (self.n - 1.0) / self.n;
        self.comp.mul(q);
        let mut to_add = h.clone();
        to_add.div(self.n);
        let Some(m) = self.mean.as_mut() else {
            return Ok(Combined::default());
        };
        m.mul(q);
        m.kahan_add(&to_add, &mut self.comp)
    }

    /// The sum or mean, compacted.
    pub(crate) fn finish(self) -> FloatHistogram {
        let mut out = match self.mean {
            Some(mut m) => {
                m.apply_compensation(&self.comp);
                m
            }
            None => {
                let mut v = self.value;
                let mut c = self.comp;
                if self.avg {
                    v.div(self.n);
                    c.div(self.n);
                }
                v.apply_compensation(&c);
                v
            }
        };
        out.compact();
        out
    }
}

/// One window of one series.
#[derive(Clone, Copy)]
pub(crate) struct Window<'a> {
    pub(crate) floats: &'a [Sample],
    pub(crate) hists: &'a [HSample],
    /// Window start (exclusive) and end (inclusive), ms.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// The selector's range, ms.
    pub(crate) range_ms: i64,
    pub(crate) metric: &'a str,
    /// Precomputed `hists[k].detect_reset(hists[k - 1])` for `k >= 1`
    /// (aligned with `hists`), so sliding windows do not redo it.
    pub(crate) resets: Option<&'a [bool]>,
}

/// `resets[k]`: whether histogram `k` is a counter reset after `k - 1`
/// (`false` for the first), for [`Window::resets`].
pub(crate) fn reset_flags(hists: &[HSample]) -> Vec<bool> {
    let mut out = Vec::with_capacity(hists.len());
    out.push(false);
    for w in hists.windows(2) {
        out.push(w[1].h.detect_reset(&w[0].h));
    }
    out.truncate(hists.len());
    out
}

fn mixed(w: &Window<'_>, notes: &mut Vec<Note>) -> Option<Out> {
    notes.push(Note::Warn(annotations::mixed_floats_histograms_warning(
        w.metric,
    )));
    None
}

/// The histogram path of a window (`w.hists` non-empty) for `mode`;
/// `float` is the function's float kernel, used where the function
/// ignores histograms.
pub(crate) fn eval(
    mode: HistMode,
    w: &Window<'_>,
    float: impl Fn(&[Sample]) -> Option<f64>,
    notes: &mut Vec<Note>,
) -> Option<Out> {
    let has_floats = !w.floats.is_empty();
    match mode {
        HistMode::FloatsOnly => {
            if !has_floats {
                return None;
            }
            notes.push(Note::Info(
                annotations::histogram_ignored_in_mixed_range_info(w.metric),
            ));
            float(w.floats).map(Out::F)
        }
        HistMode::Count => Some(Out::F((w.floats.len() + w.hists.len()) as f64)),
        HistMode::Present => Some(Out::F(1.0)),
        HistMode::First | HistMode::Last => {
            let f = if mode == HistMode::First {
                w.floats.first()
            } else {
                w.floats.last()
            };
            let h = if mode == HistMode::First {
                w.hists.first()
            } else {
                w.hists.last()
            };
            match (f, h) {
                (Some(f), Some(h))
                    if (mode == HistMode::First && f.t < h.t)
                        || (mode == HistMode::Last && f.t > h.t) =>
                {
                    Some(Out::F(f.v))
                }
                (_, Some(h)) => Some(Out::H((*h.h).clone())),
                (Some(f), None) => Some(Out::F(f.v)),
                (None, None) => None,
            }
        }
        HistMode::Changes | HistMode::Resets => {
            Some(Out::F(changes_or_resets(w, mode == HistMode::Resets)))
        }
        HistMode::Instant { .. } if has_floats => {
            // The last two samples decide, whatever their kinds.
            let lf = w.floats.len().saturating_sub(2);
            let lh = w.hists.len().saturating_sub(2);
            let mut last: Vec<(i64, bool)> = w.floats[lf..]
                .iter()
                .map(|s| (s.t, false))
                .chain(w.hists[lh..].iter().map(|s| (s.t, true)))
                .collect();
            last.sort_by_key(|x| x.0);
            let tail = &last[last.len().saturating_sub(2)..];
            match tail {
                [(_, false), (_, false)] => float(w.floats).map(Out::F),
                [(_, true), (_, true)] => {
                    let only = Window {
                        floats: &[],
                        hists: w.hists,
                        ..*w
                    };
                    eval(mode, &only, float, notes)
                }
                [_, _] => mixed(w, notes),
                _ => None,
            }
        }
        _ if has_floats => mixed(w, notes),
        HistMode::Sum | HistMode::Avg => sum_or_avg(w, mode == HistMode::Avg, notes),
        HistMode::Rate {
            counter,
            per_second,
        } => rate(w, counter, per_second, notes),
        HistMode::Instant { per_second } => instant(w, per_second, notes),
    }
}

/// Walks floats and histograms in time order, counting changes (or
/// resets): a switch between float and histogram counts as one.
fn changes_or_resets(w: &Window<'_>, resets: bool) -> f64 {
    enum S<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let mut seq: Vec<(i64, S<'_>)> = w
        .floats
        .iter()
        .map(|s| (s.t, S::F(s.v)))
        .chain(w.hists.iter().map(|s| (s.t, S::H(&s.h))))
        .collect();
    seq.sort_by_key(|x| x.0);
    let mut n = 0.0;
    for pair in seq.windows(2) {
        let hit = match (&pair[0].1, &pair[1].1) {
            (S::F(a), S::F(b)) => {
                if resets {
                    b < a
                } else {
                    a != b && !(a.is_nan() && b.is_nan())
                }
            }
            (S::H(a), S::H(b)) => {
                if resets {
                    b.detect_reset(a)
                } else {
                    !hist_identical(a, b)
                }
            }
            _ => true,
        };
        if hit {
            n += 1.0;
        }
    }
    n
}

/// Prometheus `FloatHistogram.Equals`: bitwise equal values, same layout.
fn hist_identical(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.compact();
    b.compact();
    a.schema == b.schema
        && a.count.to_bits() == b.count.to_bits()
        && a.sum.to_bits() == b.sum.to_bits()
        && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
        && a.zero_threshold == b.zero_threshold
        && a.zero_count.to_bits() == b.zero_count.to_bits()
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && a.positive_buckets
            .iter()
            .zip(&b.positive_buckets)
            .all(|(x, y)| x.to_bits() == y.to_bits())
        && a.negative_buckets
            .iter()
            .zip(&b.negative_buckets)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Adds `h` into `acc`, raising the annotations of a failed or
/// reconciling addition; false when the schemas cannot be combined.
fn add_noted(
    acc: &mut FloatHistogram,
    h: &FloatHistogram,
    op: HistogramOperation,
    sub: bool,
    metric: &str,
    notes: &mut Vec<Note>,
) -> bool {
    let r = if sub { acc.sub(h) } else { acc.add(h) };
    match r {
        Ok(c) => {
            if c.nhcb_bounds_reconciled {
                notes.push(Note::Info(
                    annotations::mismatched_custom_buckets_histograms_info(op),
                ));
            }
            true
        }
        Err(_) => {
            notes.push(Note::Warn(
                annotations::mixed_exponential_custom_histograms_warning(metric),
            ));
            false
        }
    }
}

fn sum_or_avg(w: &Window<'_>, avg: bool, notes: &mut Vec<Note>) -> Option<Out> {
    let first = w.hists.first()?;
    let acc = (*first.h).clone();
    let (mut reset, mut not_reset) = (false, false);
    let mut hint = |h: &FloatHistogram| match h.counter_reset_hint {
        CounterResetHint::CounterReset => reset = true,
        CounterResetHint::NotCounterReset => not_reset = true,
        _ => {}
    };
    hint(&first.h);
    let mut acc = HistSum::new(&acc, avg);
    for s in &w.hists[1..] {
        hint(&s.h);
        match acc.add(&s.h) {
            Ok(c) => {
                if c.nhcb_bounds_reconciled {
                    notes.push(Note::Info(
                        annotations::mismatched_custom_buckets_histograms_info(
                            HistogramOperation::Agg,
                        ),
                    ));
                }
            }
            Err(_) => {
                notes.push(Note::Warn(
                    annotations::mixed_exponential_custom_histograms_warning(w.metric),
                ));
                return None;
            }
        }
    }

    if reset && not_reset {
        notes.push(Note::Warn(
            annotations::histogram_counter_reset_collision_warning(HistogramOperation::Agg),
        ));
    }
    Some(Out::H(acc.finish()))
}

/// `rate`/`increase`/`delta` of a histogram window, extrapolated to the
/// window's edges as upstream's `extrapolatedRate`.
fn rate(w: &Window<'_>, counter: bool, per_second: bool, notes: &mut Vec<Note>) -> Option<Out> {
    let hs = w.hists;
    if hs.len() < 2 {
        return None;
    }
    let mut result = histogram_rate(hs, w.resets, counter, w.metric, notes)?;
    let (first_t, last_t) = (hs[0].t, hs[hs.len() - 1].t);
    let n_minus_one = (hs.len() - 1) as f64;
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / n_minus_one;
    let threshold = avg_between * 1.1;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if counter && result.count > 0.0 && hs[0].h.count >= 0.0 {
        let to_zero = sampled * (hs[0].h.count / result.count);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if per_second {
        factor /= w.range_ms as f64 / 1000.0;
    }
    result.mul(factor);
    Some(Out::H(result))
}

/// Upstream `histogramRate`: last − first, plus every value lost at a
/// counter reset, at the lowest schema of the window.
fn histogram_rate(
    hs: &[HSample],
    resets: Option<&[bool]>,
    counter: bool,
    metric: &str,
    notes: &mut Vec<Note>,
) -> Option<FloatHistogram> {
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    let is_reset = |k: usize| match resets.and_then(|r| r.get(k)) {
        Some(&r) => r,
        None => hs[k].h.detect_reset(&hs[k - 1].h),
    };
    let last = &hs[hs.len() - 1].h;
    let mut prev: FloatHistogram = (*hs[0].h).clone();
    if counter && (gauge(&prev) || gauge(last)) {
        notes.push(Note::Warn(
            annotations::native_histogram_not_counter_warning(metric),
        ));
    }
    let mut custom = prev.uses_custom_buckets();
    if counter {
        let second = &hs[1].h;
        if is_reset(1) {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..Default::default()
            };
            custom = second.uses_custom_buckets();
        }
    }
    if last.uses_custom_buckets() != custom {
        notes.push(Note::Warn(
            annotations::mixed_exponential_custom_histograms_warning(metric),
        ));
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for s in &hs[1..hs.len() - 1] {
        if !counter {
            continue;
        }
        if gauge(&s.h) {
            notes.push(Note::Warn(
                annotations::native_histogram_not_counter_warning(metric),
            ));
        }
        min_schema = min_schema.min(s.h.schema);
        if s.h.uses_custom_buckets() != custom {
            notes.push(Note::Warn(
                annotations::mixed_exponential_custom_histograms_warning(metric),
            ));
            return None;
        }
    }
    let mut h = (**last).clone();
    h.reduce_resolution(min_schema);
    if !add_noted(&mut h, &prev, HistogramOperation::Sub, true, metric, notes) {
        return None;
    }
    if counter {
        // A reset at the second sample was handled by starting from an
        // empty histogram, whose addition changes nothing.
        let mut p: &FloatHistogram = &prev;
        for (k, s) in hs.iter().enumerate().skip(1) {
            if is_reset(k) && !add_noted(&mut h, p, HistogramOperation::Add, false, metric, notes) {
                return None;
            }
            p = &s.h;
        }
    } else if !gauge(&hs[0].h) || !gauge(last) {
        notes.push(Note::Warn(annotations::native_histogram_not_gauge_warning(
            metric,
        )));
    }
    // Dedup the annotations pushed per inner sample.
    notes.dedup();
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

/// `irate`/`idelta` of the last two samples (both histograms here).
fn instant(w: &Window<'_>, per_second: bool, notes: &mut Vec<Note>) -> Option<Out> {
    let hs = w.hists;
    if hs.len() < 2 {
        return None;
    }
    let (a, b) = (&hs[hs.len() - 2], &hs[hs.len() - 1]);
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    let mut r = (*b.h).clone();
    if per_second && (gauge(&b.h) || gauge(&a.h)) {
        notes.push(Note::Warn(
            annotations::native_histogram_not_counter_warning(w.metric),
        ));
    }
    if !per_second && (!gauge(&b.h) || !gauge(&a.h)) {
        notes.push(Note::Warn(annotations::native_histogram_not_gauge_warning(
            w.metric,
        )));
    }
    if (!per_second || !b.h.detect_reset(&a.h))
        && !add_noted(&mut r, &a.h, HistogramOperation::Sub, true, w.metric, notes)
    {
        return None;
    }
    r.counter_reset_hint = CounterResetHint::Gauge;
    r.compact();
    if per_second {
        r.div(interval as f64 / 1000.0);
    }
    Some(Out::H(r))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn hs(t: i64, count: f64, buckets: &[(i32, f64)]) -> HSample {
        let mut h = FloatHistogram {
            count,
            sum: count,
            ..Default::default()
        };
        h.set_positive(buckets);
        HSample { t, h: Arc::new(h) }
    }

    fn window<'a>(floats: &'a [Sample], hists: &'a [HSample]) -> Window<'a> {
        Window {
            floats,
            hists,
            start: 0,
            end: 60_000,
            range_ms: 60_000,
            metric: "m",
            resets: None,
        }
    }

    #[test]
    fn increase_of_a_steady_counter_extrapolates() {
        let h = [
            hs(10_000, 1.0, &[(0, 1.0)]),
            hs(20_000, 2.0, &[(0, 2.0)]),
            hs(30_000, 3.0, &[(0, 3.0)]),
        ];
        let mut notes = Vec::new();
        let mode = HistMode::Rate {
            counter: true,
            per_second: false,
        };
        let Some(Out::H(r)) = eval(mode, &window(&[], &h), |_| None, &mut notes) else {
            panic!()
        };
        // 2 over 20 s, extrapolated by 10 s to the start (half way to
        // zero) and 5 s to the end: 2 * 35/20.
        assert!((r.count - 3.5).abs() < 1e-9, "{}", r.count);
        assert_eq!(r.counter_reset_hint, CounterResetHint::Gauge);
        assert!(notes.is_empty());
    }

    #[test]
    fn mixed_window_warns_for_rate_and_counts_for_count() {
        let f = [Sample::new(5_000, 1.0)];
        let h = [hs(10_000, 1.0, &[]), hs(20_000, 2.0, &[])];
        let mut notes = Vec::new();
        let mode = HistMode::Rate {
            counter: true,
            per_second: true,
        };
        assert!(eval(mode, &window(&f, &h), |_| None, &mut notes).is_none());
        assert!(matches!(&notes[0], Note::Warn(w) if w.contains("mix of histograms and floats")));
        let c = eval(HistMode::Count, &window(&f, &h), |_| None, &mut notes);
        assert_eq!(c, Some(Out::F(3.0)));
    }

    #[test]
    fn resets_and_changes_walk_both_kinds() {
        let f = [Sample::new(40_000, 1.0)];
        let h = [
            hs(10_000, 2.0, &[(0, 2.0)]),
            hs(20_000, 1.0, &[(0, 1.0)]),
            hs(30_000, 1.0, &[(0, 1.0)]),
        ];
        let mut notes = Vec::new();
        let w = window(&f, &h);
        assert_eq!(
            eval(HistMode::Resets, &w, |_| None, &mut notes),
            Some(Out::F(2.0))
        );
        assert_eq!(
            eval(HistMode::Changes, &w, |_| None, &mut notes),
            Some(Out::F(2.0))
        );
    }

    #[test]
    fn sum_over_time_adds_histograms() {
        let h = [hs(10_000, 1.0, &[(0, 1.0)]), hs(20_000, 2.0, &[(1, 2.0)])];
        let mut notes = Vec::new();
        let Some(Out::H(r)) = eval(HistMode::Sum, &window(&[], &h), |_| None, &mut notes) else {
            panic!()
        };
        assert_eq!(r.count, 3.0);
        assert_eq!(r.positive(), vec![(0, 1.0), (1, 2.0)]);
    }
}
