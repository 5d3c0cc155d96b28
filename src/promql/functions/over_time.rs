//! `<aggregation>_over_time` kernels over the float samples of one range
//! window. Every function returns `None` for an empty window (upstream emits
//! no sample for the series at that step).
//!
//! Histogram samples are the evaluator's business: upstream ignores them in
//! a mixed range (with `HistogramIgnoredInMixedRangeInfo`) for
//! min/max/stddev/stdvar/quantile/mad and refuses the mix for sum/avg.

use super::stats::{kahan_sum_inc, quantile};
use crate::model::Sample;

/// `avg_over_time`: Kahan-compensated direct mean while the running sum
/// stays finite, switching for good to a Kahan-compensated incremental mean
/// once the next addition would overflow. Same float results as upstream.
///
/// Upstream: `funcAvgOverTime` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn avg_over_time(samples: &[Sample]) -> Option<f64> {
    let (first, rest) = samples.split_first()?;
    let mut sum = first.v;
    let mut count = 1.0;
    let mut mean = 0.0;
    let mut c = 0.0;
    let mut incremental_mean = false;
    for (i, s) in rest.iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental_mean {
            let (new_sum, new_c) = kahan_sum_inc(s.v, sum, c);
            if !new_sum.is_infinite() {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental_mean = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(s.v / count, q * mean, q * c);
    }
    Some(if incremental_mean {
        mean + c
    } else {
        sum / count + c / count
    })
}

/// `sum_over_time`: Kahan-compensated sum; an infinite sum is returned as
/// is (its compensation would only turn it into NaN).
///
/// Upstream: `funcSumOverTime` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn sum_over_time(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let (mut sum, mut c) = (0.0, 0.0);
    for s in samples {
        (sum, c) = kahan_sum_inc(s.v, sum, c);
    }
    Some(if sum.is_infinite() { sum } else { sum + c })
}

/// Shared loop of min/max_over_time: the first value is the candidate and
/// is replaced by any sample that `better`s it, or by anything while the
/// candidate is NaN — so NaN is the result only if every sample is NaN.
///
/// Upstream: `compareOverTime` in promql/functions.go @ v3.14.0.
fn compare_over_time(samples: &[Sample], better: fn(f64, f64) -> bool) -> Option<(f64, i64)> {
    let first = samples.first()?;
    let (mut val, mut ts) = (first.v, first.t);
    for s in samples {
        if better(s.v, val) || val.is_nan() {
            val = s.v;
            ts = s.t;
        }
    }
    Some((val, ts))
}

/// `min_over_time`; NaN only if all samples are NaN.
///
/// Upstream: `funcMinOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn min_over_time(samples: &[Sample]) -> Option<f64> {
    compare_over_time(samples, |cur, m| cur < m).map(|(v, _)| v)
}

/// `max_over_time`; NaN only if all samples are NaN.
///
/// Upstream: `funcMaxOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn max_over_time(samples: &[Sample]) -> Option<f64> {
    compare_over_time(samples, |cur, m| cur > m).map(|(v, _)| v)
}

/// `count_over_time`.
///
/// Upstream: `funcCountOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn count_over_time(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty()).then_some(samples.len() as f64)
}

/// `last_over_time`: the newest sample's value.
///
/// Upstream: `funcLastOverTime` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn last_over_time(samples: &[Sample]) -> Option<f64> {
    samples.last().map(|s| s.v)
}

/// `first_over_time`: the oldest sample's value.
///
/// Upstream: `funcFirstOverTime` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn first_over_time(samples: &[Sample]) -> Option<f64> {
    samples.first().map(|s| s.v)
}

/// `present_over_time`: 1 for a non-empty window.
///
/// Upstream: `funcPresentOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn present_over_time(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty()).then_some(1.0)
}

/// Population variance of the window by upstream's Kahan-compensated
/// Welford variant: `delta` is taken against the compensated mean, the
/// second factor re-reads the *updated* compensated mean, both the mean and
/// the sum of squares carry a compensation term, and the divisor is `n`.
///
/// Upstream: `varianceOverTime` in promql/functions.go @ v3.14.0.
fn variance_over_time(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for s in samples {
        count += 1.0;
        let delta = s.v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (s.v - (mean + c_mean)), aux, c_aux);
    }
    Some((aux + c_aux) / count)
}

/// `stdvar_over_time`: population variance (see [`variance_over_time`]).
///
/// Upstream: `funcStdvarOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn stdvar_over_time(samples: &[Sample]) -> Option<f64> {
    variance_over_time(samples)
}

/// `stddev_over_time`: square root of the population variance.
///
/// Upstream: `funcStddevOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn stddev_over_time(samples: &[Sample]) -> Option<f64> {
    variance_over_time(samples).map(f64::sqrt)
}

/// `quantile_over_time(q, …)`: [`quantile`] of the window's values. The
/// caller attaches [`super::annotations::invalid_quantile_warning`] when
/// `q` is NaN or outside [0, 1] (upstream warns whenever the window is
/// non-empty).
///
/// Upstream: `funcQuantileOverTime` in promql/functions.go @ v3.14.0.
pub(crate) fn quantile_over_time(q: f64, samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    Some(quantile(q, &mut values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(vals: &[f64]) -> Vec<Sample> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| Sample::new(i as i64 * 10_000, *v))
            .collect()
    }

    fn same(got: Option<f64>, want: Option<f64>) -> bool {
        match (got, want) {
            (None, None) => true,
            (Some(g), Some(w)) if w.is_nan() => g.is_nan(),
            (Some(g), Some(w)) => g == w || (g - w).abs() / (g.abs() + w.abs()) < 1e-9,
            _ => false,
        }
    }

    type Kernel = fn(&[Sample]) -> Option<f64>;

    #[test]
    fn empty_window_gives_none() {
        let kernels: [Kernel; 11] = [
            avg_over_time,
            sum_over_time,
            min_over_time,
            max_over_time,
            count_over_time,
            last_over_time,
            first_over_time,
            present_over_time,
            stddev_over_time,
            stdvar_over_time,
            |x| quantile_over_time(0.5, x),
        ];
        for k in kernels {
            assert_eq!(k(&[]), None);
        }
    }

    #[test]
    fn over_time_table() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        // (kernel name, kernel, input, want)
        let cases: &[(&str, Kernel, &[f64], f64)] = &[
            ("avg", avg_over_time, &[1.0, 2.0, 3.0, 4.0], 2.5),
            (
                "avg",
                avg_over_time,
                &[f64::MAX, f64::MAX, f64::MAX],
                f64::MAX,
            ),
            ("avg", avg_over_time, &[inf, 1.0], inf),
            ("avg", avg_over_time, &[inf, -inf], nan),
            ("sum", sum_over_time, &[1e16, 1.0, -1e16], 1.0),
            ("sum", sum_over_time, &[f64::MAX, f64::MAX], inf),
            ("sum", sum_over_time, &[1.0, nan], nan),
            ("min", min_over_time, &[3.0, 1.0, 2.0], 1.0),
            ("min", min_over_time, &[nan, 3.0, nan, 1.0], 1.0),
            ("min", min_over_time, &[nan, nan], nan),
            ("max", max_over_time, &[3.0, 1.0, 5.0], 5.0),
            ("max", max_over_time, &[nan, 3.0, nan], 3.0),
            ("max", max_over_time, &[nan], nan),
            ("count", count_over_time, &[nan, 1.0, 2.0], 3.0),
            ("last", last_over_time, &[1.0, 2.0, nan], nan),
            ("first", first_over_time, &[7.0, 2.0], 7.0),
            ("present", present_over_time, &[nan], 1.0),
            (
                "stdvar",
                stdvar_over_time,
                &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
                4.0,
            ),
            (
                "stddev",
                stddev_over_time,
                &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
                2.0,
            ),
            ("stddev", stddev_over_time, &[1.5990505637277868; 3], 0.0),
            ("stdvar", stdvar_over_time, &[1.0, inf], nan),
        ];
        for (name, k, input, want) in cases {
            let got = k(&s(input));
            assert!(
                same(got, Some(*want)),
                "{name}({input:?}) = {got:?}, want {want}"
            );
        }
    }

    #[test]
    fn quantile_over_time_functions_test_cases() {
        // functions.test: data{test="three samples"} 0 1 2 →
        // quantile_over_time(0, …) 0, (0.5) 1, (0.75) 1.5, (0.8) 1.6, (1) 2,
        // (-1) -Inf, (2) +Inf, (NaN) NaN.
        let w = s(&[0.0, 1.0, 2.0]);
        for (q, want) in [
            (0.0, 0.0),
            (0.5, 1.0),
            (0.75, 1.5),
            (0.8, 1.6),
            (1.0, 2.0),
            (-1.0, f64::NEG_INFINITY),
            (2.0, f64::INFINITY),
            (f64::NAN, f64::NAN),
        ] {
            assert!(same(quantile_over_time(q, &w), Some(want)), "q={q}");
        }
    }
}
