//! Kernels that look at how a series moves inside one range window:
//! `rate`/`increase`/`delta` (extrapolated), `irate`/`idelta`, `deriv`,
//! `predict_linear`, `resets` and `changes`.
//!
//! Inputs are the non-stale float samples of one window
//! `(range_start, range_end]`, ascending by timestamp (ms). The `anchored`
//! and `smoothed` selector modifiers and OTel start timestamps are not
//! handled here.

use super::stats::kahan_sum_inc;
use crate::model::Sample;

/// Go's `time.Duration.Seconds()` for a duration of `ms` milliseconds:
/// whole seconds plus the nanosecond remainder divided by 1e9. Computing it
/// this way (not `ms / 1000.0`) reproduces upstream's rounding exactly.
fn duration_seconds(ms: i64) -> f64 {
    let sec = ms / 1000;
    let nsec = (ms % 1000) * 1_000_000;
    sec as f64 + nsec as f64 / 1e9
}

/// `rate()` (`is_counter`, `is_rate`), `increase()` (`is_counter`,
/// `!is_rate`) and `delta()` (`!is_counter`, `!is_rate`): the Prometheus 3
/// extrapolated rate.
///
/// ```text
///   range_start                                        range_end
///       (·········|·····x·····x·····x·····x·····|·········]
///        to_start  first                   last   to_end
/// ```
///
/// The difference last − first (plus, for counters, the value before each
/// reset) is scaled from the sampled interval out to the window edges. An
/// edge is reached fully only if it is within 1.1 × the average sample
/// spacing; otherwise extrapolation stops half an average spacing beyond
/// the outermost sample. For counters the start is additionally limited to
/// where a straight line through the samples would cross zero. `rate`
/// divides by the window length in seconds.
///
/// `None` with fewer than 2 samples (upstream drops the series).
/// `range_start` is exclusive.
///
/// Upstream: `extrapolatedRate` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn extrapolated_rate(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let num_samples_minus_one = (samples.len() - 1) as f64;

    let mut result = last.v - first.v;
    // Most windows hold no counter reset: find that out first with a check
    // that has no serial dependency, and run the (serial) correction sum
    // only when there is one. The sum, and so the result, is unchanged.
    if is_counter
        && samples
            .iter()
            .zip(&samples[1..])
            .fold(false, |reset, (a, b)| reset | (b.v < a.v))
    {
        for pair in samples.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }

    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_duration_between_samples = sampled_interval / num_samples_minus_one;

    let extrapolation_threshold = average_duration_between_samples * 1.1;
    if duration_to_start >= extrapolation_threshold {
        duration_to_start = average_duration_between_samples / 2.0;
    }
    if is_counter {
        // Counters cannot go negative: do not extrapolate the start past the
        // point where the counter would have been zero.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first.v >= 0.0 {
            duration_to_zero = sampled_interval * (first.v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= extrapolation_threshold {
        duration_to_end = average_duration_between_samples / 2.0;
    }

    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= duration_seconds(range_end - range_start);
    }
    Some(result * factor)
}

/// `irate()` (`is_rate`) and `idelta()` (`!is_rate`): from the last two
/// samples. For `irate` a decrease counts as a counter reset and the result
/// is the last value itself (per second); `idelta` is the plain difference.
///
/// `None` with fewer than 2 samples or when the last two share a timestamp.
///
/// Upstream: `instantValue` (float branch) in promql/functions.go @ v3.14.0.
pub(crate) fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let prev = samples[samples.len() - 2];
    let last = samples[samples.len() - 1];
    let sampled_interval = last.t - prev.t;
    if sampled_interval == 0 {
        return None;
    }
    // In case of a counter reset the result stays the last value. A NaN
    // comparison is false, so NaNs take the difference path.
    let mut result = last.v;
    if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
        result = last.v - prev.v;
    }
    if is_rate {
        result /= sampled_interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit of `samples` with x measured in seconds from
/// `intercept_time` (ms). Returns `(slope, intercept)`; the intercept is the
/// fitted value at `intercept_time`. All sums are Kahan-compensated. A
/// constant series yields slope 0 (or NaN/NaN when the constant is ±Inf).
///
/// Upstream: `linearRegression` in promql/functions.go @ v3.14.0.
fn linear_regression(samples: &[Sample], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = samples[0].v;
    let mut const_y = true;
    for (i, s) in samples.iter().enumerate() {
        // Bitwise-free float comparison as upstream: NaN != NaN ends constY.
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(s.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * s.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `deriv()`: the least-squares slope per second. The regression is anchored
/// at the first sample's timestamp to keep x small (upstream issue #2674).
/// `None` with fewer than 2 samples.
///
/// Upstream: `funcDeriv` in promql/functions.go @ v3.14.0.
pub(crate) fn deriv(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    Some(linear_regression(samples, samples[0].t).0)
}

/// `predict_linear(v, duration_s)` evaluated at `eval_t` (ms): the fitted
/// line with its intercept at `eval_t`, extended by `duration_s` seconds.
/// `None` with fewer than 2 samples.
///
/// Upstream: `funcPredictLinear` in promql/functions.go @ v3.14.0.
pub(crate) fn predict_linear(samples: &[Sample], eval_t: i64, duration_s: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(samples, eval_t);
    Some(slope * duration_s + intercept)
}

/// `resets()`: how often a sample is lower than its predecessor. `None` for
/// an empty window; a single sample gives 0.
///
/// Upstream: `funcResets` (float-only, non-anchored path) in promql/functions.go @ v3.14.0.
pub(crate) fn resets(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.windows(2).filter(|p| p[1].v < p[0].v).count();
    Some(n as f64)
}

/// `changes()`: how often a sample differs from its predecessor. NaN → NaN
/// is not a change (NaN → number and number → NaN are). `None` for an empty
/// window.
///
/// Upstream: `funcChanges` (float-only, non-anchored path) in promql/functions.go @ v3.14.0.
pub(crate) fn changes(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let n = samples
        .windows(2)
        .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
        .count();
    Some(n as f64)
}

/// Reports whether upstream would attach the "possible non-counter" info to
/// `rate`/`increase` over a float series named `metric_name`: the name is
/// non-empty and does not end in `_total`, `_sum`, `_count` or `_bucket`.
/// See [`super::annotations::possible_non_counter_info`].
///
/// Upstream: the suffix check before `NewPossibleNonCounterInfo` in
/// `(*evaluator).rangeEval`, promql/engine.go @ v3.14.0.
pub(crate) fn is_possible_non_counter(metric_name: &str) -> bool {
    !metric_name.is_empty()
        && !["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|s| metric_name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Samples `v0, v0+step, …` every `interval_ms` starting at `start`.
    fn series(start: i64, interval_ms: i64, vals: &[f64]) -> Vec<Sample> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| Sample::new(start + i as i64 * interval_ms, *v))
            .collect()
    }

    /// The window `(t - range, t]` of a series.
    fn window(all: &[Sample], t: i64, range: i64) -> Vec<Sample> {
        all.iter()
            .filter(|s| s.t > t - range && s.t <= t)
            .copied()
            .collect()
    }

    fn close(got: f64, want: f64) -> bool {
        if want.is_nan() {
            return got.is_nan();
        }
        got == want || (got - want).abs() / (got.abs() + want.abs()) < 1e-9
    }

    #[test]
    fn duration_seconds_matches_go() {
        assert_eq!(duration_seconds(300_000), 300.0);
        assert_eq!(duration_seconds(1_500), 1.5);
        assert_eq!(duration_seconds(1_001), 1.0 + 1_000_000.0 / 1e9);
    }

    /// `a+bxN` in the .test load notation.
    fn seq(a: f64, b: f64, n: u32) -> Vec<f64> {
        (0..=n).map(|i| a + b * f64::from(i)).collect()
    }

    #[test]
    fn extrapolated_rate_functions_test_cases() {
        // Cases from functions.test (load 5m unless noted), evaluated at `t`
        // over `[range]`: (values, t, range, is_counter, is_rate, want).
        let cat = |a: Vec<f64>, b: Vec<f64>| [a, b].concat();
        let cases: Vec<(Vec<f64>, i64, i64, bool, bool, f64)> = vec![
            // increase(http_requests_total[50m]) at 50m.
            (seq(0.0, 10.0, 10), 50, 50, true, false, 100.0),
            (
                cat(seq(0.0, 18.0, 5), seq(0.0, 18.0, 5)),
                50,
                50,
                true,
                false,
                160.0,
            ),
            (seq(10.0, 10.0, 10), 50, 50, true, false, 100.0),
            (seq(1.0, 10.0, 10), 50, 50, true, false, 100.0),
            // increase(...[100m]): zero-point limit vs half-interval limit.
            (seq(0.0, 10.0, 10), 50, 100, true, false, 100.0),
            (
                cat(seq(0.0, 18.0, 5), seq(0.0, 18.0, 5)),
                50,
                100,
                true,
                false,
                162.0,
            ),
            (seq(10.0, 10.0, 10), 50, 100, true, false, 105.0),
            (seq(1.0, 10.0, 10), 50, 100, true, false, 101.0),
            // increase with a reset: 0 1 2 3 2 3 4 → 7.
            (
                vec![0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0],
                30,
                30,
                true,
                false,
                7.0,
            ),
            // rate(testcounter_reset_middle_total[50m]).
            (
                cat(seq(0.0, 27.0, 4), seq(0.0, 27.0, 5)),
                50,
                50,
                true,
                true,
                0.08,
            ),
            // rate(testcounter_reset_end_total[6m]): 0+10x9 0 10 → 0.
            (
                cat(seq(0.0, 10.0, 9), vec![0.0, 10.0]),
                50,
                6,
                true,
                true,
                0.0,
            ),
            // rate(calculate_rate_window_total[50m]).
            (seq(0.0, 80.0, 10), 50, 50, true, true, 0.26666666666666666),
            // delta() does not correct resets and is not zero-limited.
            (seq(10.0, 10.0, 10), 50, 100, false, false, 105.0),
        ];
        for (i, (vals, t, range, counter, rate, want)) in cases.into_iter().enumerate() {
            let (t, range) = (t * MIN, range * MIN);
            let s = window(&series(0, 5 * MIN, &vals), t, range);
            let got = extrapolated_rate(&s, t - range, t, counter, rate).unwrap();
            assert!(close(got, want), "case {i}: got {got}, want {want}");
        }
    }

    #[test]
    fn extrapolated_rate_zero_cutoff_functions_test_cases() {
        // load 4m: testcounter_zero_cutoff_total{start="Nm"} N*60+240x10;
        // rate(...[20m]) at 10m and at 50m.
        let at_10m = [0.5, 0.55, 0.6, 0.6, 0.6, 0.6];
        for (n, want) in at_10m.iter().enumerate() {
            let all = series(0, 4 * MIN, &seq(n as f64 * 60.0, 240.0, 10));
            let s = window(&all, 10 * MIN, 20 * MIN);
            let got = extrapolated_rate(&s, -10 * MIN, 10 * MIN, true, true).unwrap();
            assert!(close(got, *want), "start={n}m at 10m: {got} vs {want}");
            let s = window(&all, 50 * MIN, 20 * MIN);
            let got = extrapolated_rate(&s, 30 * MIN, 50 * MIN, true, true).unwrap();
            assert!(close(got, 0.6), "start={n}m at 50m: {got}");
        }
    }

    #[test]
    fn extrapolated_rate_stops_half_interval_beyond_far_edges() {
        // Samples at 4m and 5m in (0, 10m]: both edges beyond 1.1 × 60 s, so
        // extrapolate 30 s each way: 10 × (60 + 30 + 30) / 60 = 20.
        let s = vec![Sample::new(4 * MIN, 10.0), Sample::new(5 * MIN, 20.0)];
        let got = extrapolated_rate(&s, 0, 10 * MIN, false, false).unwrap();
        assert!(close(got, 20.0), "{got}");
        // Fewer than two samples: no result.
        assert_eq!(extrapolated_rate(&s[..1], 0, 10 * MIN, true, true), None);
        assert_eq!(extrapolated_rate(&[], 0, 10 * MIN, true, true), None);
    }

    /// (samples as (t, v), is_rate, expected)
    type InstantCase<'a> = (&'a [(i64, f64)], bool, Option<f64>);

    #[test]
    fn instant_value_table() {
        let cases: &[InstantCase] = &[
            (&[(0, 1.0)], true, None),
            (&[(0, 1.0), (10_000, 1.0), (10_000, 5.0)], true, None),
            (&[(0, 1.0), (10_000, 3.0)], false, Some(2.0)),
            (&[(0, 1.0), (10_000, 3.0)], true, Some(0.2)),
            // Counter reset: irate uses the last value.
            (&[(0, 10.0), (10_000, 4.0)], true, Some(0.4)),
            // idelta is a plain difference.
            (&[(0, 10.0), (10_000, 4.0)], false, Some(-6.0)),
            (&[(0, 5.0), (7_000, 1.0), (10_000, 3.0)], false, Some(2.0)),
        ];
        for (pts, is_rate, want) in cases {
            let s: Vec<Sample> = pts.iter().map(|(t, v)| Sample::new(*t, *v)).collect();
            let got = instant_value(&s, *is_rate);
            match (got, want) {
                (Some(g), Some(w)) => assert!(close(g, *w), "{pts:?}: {g} vs {w}"),
                _ => assert_eq!(got, *want, "{pts:?}"),
            }
        }
    }

    #[test]
    fn irate_functions_test_cases() {
        // load 5m: http_requests_total{path="/bar"} 0+10x5 0+10x5.
        let foo = series(0, 5 * MIN, &seq(0.0, 10.0, 10));
        let bar = series(0, 5 * MIN, &[seq(0.0, 10.0, 5), seq(0.0, 10.0, 5)].concat());
        let irate = |s: &[Sample], t: i64| instant_value(&window(s, t * MIN, 50 * MIN), true);
        assert!(close(irate(&foo, 50).unwrap(), 0.03333333333333333));
        assert!(close(irate(&bar, 50).unwrap(), 0.03333333333333333));
        // Counter reset at 30m: the last value (0) per second.
        assert_eq!(irate(&bar, 30), Some(0.0));

        // http_requests_nan 1 NaN NaN 5 11, irate(...[15m1s]) at 5m..20m.
        let nan = series(0, 5 * MIN, &[1.0, f64::NAN, f64::NAN, 5.0, 11.0]);
        let got: Vec<Option<f64>> = (0..=4)
            .map(|i| instant_value(&window(&nan, i * 5 * MIN, 15 * MIN + 1000), true))
            .collect();
        assert_eq!(got[0], None);
        assert!(got[1].unwrap().is_nan() && got[2].unwrap().is_nan() && got[3].unwrap().is_nan());
        assert!(close(got[4].unwrap(), 0.02));
    }

    #[test]
    fn deriv_and_predict_linear_functions_test_cases() {
        // load 5m: testcounter_reset_middle_total 0+10x4 0+10x5.
        let s = series(0, 5 * MIN, &[seq(0.0, 10.0, 4), seq(0.0, 10.0, 5)].concat());
        let got = deriv(&window(&s, 50 * MIN, 100 * MIN)).unwrap();
        assert!(close(got, 0.010606060606060607), "{got}");
        // deriv equals rate on a clean counter: 0+80x10 over [50m].
        let clean = series(0, 5 * MIN, &seq(0.0, 80.0, 10));
        assert!(close(
            deriv(&window(&clean, 50 * MIN, 50 * MIN)).unwrap(),
            0.26666666666666666
        ));

        // predict_linear(...[50m], 3600) at 50m → 70; with `@ 3000` over
        // [55m] the window includes t=0 and the intercept sits at the
        // evaluation time: at 50m → 76.81818181818181, at 10m →
        // 51.36363636363637, at 70m → 89.54545454545455.
        let at = |w: &[Sample], eval_min: i64| predict_linear(w, eval_min * MIN, 3600.0).unwrap();
        assert!(close(at(&window(&s, 50 * MIN, 50 * MIN), 50), 70.0));
        let w55 = window(&s, 50 * MIN, 55 * MIN);
        assert!(close(at(&w55, 50), 76.81818181818181));
        assert!(close(at(&w55, 10), 51.36363636363637));
        assert!(close(at(&w55, 70), 89.54545454545455));

        // http_requests_inf -Inf 0+80x10 Inf: NaN.
        let inf = series(
            0,
            5 * MIN,
            &[
                vec![f64::NEG_INFINITY],
                seq(0.0, 80.0, 10),
                vec![f64::INFINITY],
            ]
            .concat(),
        );
        let w = window(&inf, 100 * MIN, 100 * MIN);
        assert!(deriv(&w).unwrap().is_nan());
        assert!(predict_linear(&w, 100 * MIN, 6000.0).unwrap().is_nan());

        // Constant series: slope exactly 0, or NaN for ±Inf constants.
        let flat = series(0, 1000, &[4.0, 4.0, 4.0]);
        assert_eq!(deriv(&flat), Some(0.0));
        assert_eq!(predict_linear(&flat, 5_000, 100.0), Some(4.0));
        let inf = series(0, 1000, &[f64::INFINITY, f64::INFINITY]);
        assert!(deriv(&inf).unwrap().is_nan());
        assert_eq!(deriv(&flat[..1]), None);
    }

    #[test]
    fn resets_and_changes_functions_test_cases() {
        // load 5m: /foo 1 2 3 0 1 0 0 1 2 0, /bar 1 2 3 4 5 1 2 3 4 5,
        // /biz 0 0 0 0 0 1 1 1 1 1, evaluated at 50m (last sample at 45m).
        let foo = series(
            0,
            5 * MIN,
            &[1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0],
        );
        let bar = series(
            0,
            5 * MIN,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        );
        let biz = series(
            0,
            5 * MIN,
            &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        );
        let at50 = |s: &[Sample], r: i64| window(s, 50 * MIN, r);
        assert_eq!(resets(&at50(&foo, 5 * MIN)), None);
        for (range_min, want) in [
            (10, [0.0, 0.0, 0.0]),
            (20, [1.0, 0.0, 0.0]),
            (32, [2.0, 1.0, 0.0]),
            (50, [3.0, 1.0, 0.0]),
        ] {
            let r = range_min * MIN;
            let got = [&foo, &bar, &biz].map(|s| resets(&at50(s, r)).unwrap());
            assert_eq!(got, want, "resets [{range_min}m]");
        }
        for (range_min, want) in [
            (6, [0.0, 0.0, 0.0]),
            (20, [2.0, 2.0, 0.0]),
            (30, [3.0, 4.0, 0.0]),
            (50, [7.0, 8.0, 1.0]),
        ] {
            let r = range_min * MIN;
            let got = [&foo, &bar, &biz].map(|s| changes(&at50(s, r)).unwrap());
            assert_eq!(got, want, "changes [{range_min}m]");
        }
        // x{a="b"} NaN NaN NaN → 0; x{a="c"} 0 NaN 0 → 2.
        let nan = f64::NAN;
        assert_eq!(changes(&series(0, 5 * MIN, &[nan, nan, nan])), Some(0.0));
        assert_eq!(changes(&series(0, 5 * MIN, &[0.0, nan, 0.0])), Some(2.0));
    }

    #[test]
    fn resets_and_changes_table() {
        let nan = f64::NAN;
        let cases: &[(&[f64], Option<f64>, Option<f64>)] = &[
            (&[], None, None),
            (&[1.0], Some(0.0), Some(0.0)),
            (&[1.0, 2.0, 1.0, 1.0, 3.0, 0.0], Some(2.0), Some(4.0)),
            (&[nan, nan, 1.0, nan], Some(0.0), Some(2.0)),
            (&[1.0, 1.0, 1.0], Some(0.0), Some(0.0)),
        ];
        for (vals, want_resets, want_changes) in cases {
            let s = series(0, 1000, vals);
            assert_eq!(resets(&s), *want_resets, "resets {vals:?}");
            assert_eq!(changes(&s), *want_changes, "changes {vals:?}");
        }
    }

    #[test]
    fn possible_non_counter_suffixes() {
        for (name, want) in [
            ("http_requests_total", false),
            ("latency_sum", false),
            ("latency_count", false),
            ("latency_bucket", false),
            ("", false),
            ("http_requests", true),
            ("total", true),
        ] {
            assert_eq!(is_possible_non_counter(name), want, "{name}");
        }
    }
}
