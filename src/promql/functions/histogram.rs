//! `histogram_quantile` and `histogram_fraction` over classic histograms:
//! one [`Bucket`] per `le` series of a group, counts cumulative.
//!
//! The evaluator groups the `_bucket` series (by all labels except `le` and
//! `__name__`), parses `le` (a bad one yields
//! [`super::annotations::bad_bucket_label_warning`]) and calls these kernels
//! per group. Native histograms are not handled here.

/// Relative tolerance below which neighbouring cumulative counts are taken
/// as equal (floating-point noise, e.g. from `rate()` of each bucket).
///
/// Upstream: `smallDeltaTolerance` in promql/quantile.go @ v3.14.0.
pub(crate) const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One classic-histogram bucket: the `le` bound and the cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// The `le` label value.
    pub(crate) upper_bound: f64,
    /// Observations ≤ `upper_bound` (cumulative).
    pub(crate) count: f64,
}

/// Result of [`bucket_quantile`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QuantileResult {
    /// The estimated quantile.
    pub(crate) value: f64,
    /// A real decrease between buckets had to be flattened; the caller
    /// attaches
    /// [`super::annotations::histogram_quantile_forced_monotonicity_info`].
    pub(crate) forced_monotonicity: bool,
    /// Numerically insignificant differences were flattened (silently).
    pub(crate) fixed_precision: bool,
}

/// What [`ensure_monotonic_and_ignore_small_deltas`] changed, with the
/// statistics upstream carries in the forced-monotonicity annotation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MonotonicityFix {
    /// Some count decreased and was raised to its predecessor.
    pub(crate) forced_monotonicity: bool,
    /// Some count differed from its predecessor only by float noise.
    pub(crate) fixed_precision: bool,
    /// Smallest upper bound whose count was raised (0 if none).
    pub(crate) min_bucket: f64,
    /// Largest upper bound whose count was raised (0 if none).
    pub(crate) max_bucket: f64,
    /// Largest amount a count was raised by (0 if none).
    pub(crate) max_diff: f64,
}

impl MonotonicityFix {
    const NONE: MonotonicityFix = MonotonicityFix {
        forced_monotonicity: false,
        fixed_precision: false,
        min_bucket: 0.0,
        max_bucket: 0.0,
        max_diff: 0.0,
    };
}

/// Prometheus' `almost.Equal`: equal if both NaN, bit-for-bit equal, or
/// within relative `epsilon` (absolute `epsilon · MIN_POSITIVE` near zero).
///
/// Upstream: `Equal` in util/almost/almost.go @ v3.14.0.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    use crate::model::is_stale_nan;
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
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Sorts by upper bound. Upstream's comparator treats NaN bounds as equal
/// to everything; a total order keeps that case deterministic here.
fn sort_by_upper_bound(buckets: &mut [Bucket]) {
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
}

/// Merges buckets with equal upper bounds (summing counts); input sorted.
///
/// Upstream: `coalesceBuckets` in promql/quantile.go @ v3.14.0.
fn coalesce_buckets(buckets: &mut Vec<Bucket>) {
    buckets.dedup_by(|b, last| {
        if b.upper_bound == last.upper_bound {
            last.count += b.count;
            true
        } else {
            false
        }
    });
}

/// Flattens the cumulative counts into a non-decreasing sequence: first any
/// difference to the last accepted count that is mere float noise
/// (relative < `tolerance`, either direction), then any real decrease.
/// `prev` is not advanced by either correction.
///
/// Upstream: `ensureMonotonicAndIgnoreSmallDeltas` in promql/quantile.go @ v3.14.0.
pub(crate) fn ensure_monotonic_and_ignore_small_deltas(
    buckets: &mut [Bucket],
    tolerance: f64,
) -> MonotonicityFix {
    let mut fix = MonotonicityFix::NONE;
    let (mut min_bucket, mut max_bucket) = (f64::INFINITY, f64::NEG_INFINITY);
    let Some(first) = buckets.first() else {
        return fix;
    };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) {
            b.count = prev;
            fix.fixed_precision = true;
            continue;
        }
        if curr < prev {
            b.count = prev;
            fix.forced_monotonicity = true;
            min_bucket = min_bucket.min(b.upper_bound);
            max_bucket = max_bucket.max(b.upper_bound);
            fix.max_diff = fix.max_diff.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    if fix.forced_monotonicity {
        fix.min_bucket = min_bucket;
        fix.max_bucket = max_bucket;
    }
    fix
}

/// `histogram_quantile(q, …)` over classic buckets, plus what had to be
/// fixed in the input (see [`MonotonicityFix`]). Same rules as
/// [`bucket_quantile`].
///
/// Upstream: `BucketQuantile` in promql/quantile.go @ v3.14.0.
pub(crate) fn bucket_quantile_with_fix(
    q: f64,
    buckets: &mut Vec<Bucket>,
) -> (f64, MonotonicityFix) {
    let none = MonotonicityFix::NONE;
    if q.is_nan() {
        return (f64::NAN, none);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, none);
    }
    if q > 1.0 {
        return (f64::INFINITY, none);
    }
    sort_by_upper_bound(buckets);
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return (f64::NAN, none),
    }
    coalesce_buckets(buckets);
    let fix = ensure_monotonic_and_ignore_small_deltas(buckets, SMALL_DELTA_TOLERANCE);

    let n = buckets.len();
    if n < 2 {
        return (f64::NAN, none);
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return (f64::NAN, none);
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket: first count >= rank.
    let b = buckets[..n - 1].partition_point(|bk| bk.count < rank);

    if b == n - 1 {
        // The rank falls into the +Inf bucket.
        return (buckets[n - 2].upper_bound, fix);
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return (buckets[0].upper_bound, fix);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (
        bucket_start + (bucket_end - bucket_start) * (rank / count),
        fix,
    )
}

/// `histogram_quantile(q, …)` over classic buckets, linearly interpolating
/// inside the bucket the rank `q · total` falls into.
///
/// * Buckets are sorted by upper bound here; equal bounds are merged.
/// * Counts are made monotonic ([`ensure_monotonic_and_ignore_small_deltas`]).
/// * No +Inf bucket, fewer than 2 buckets (after merging) or a zero total →
///   NaN; `q < 0` → −Inf, `q > 1` → +Inf, NaN `q` → NaN (flags false).
/// * The lowest bucket interpolates from 0 if its bound is > 0, else its
///   bound is returned.
/// * A rank in the +Inf bucket returns the second-highest bound.
///
/// Empty `buckets` give NaN (upstream never calls it with none).
///
/// Upstream: `BucketQuantile` in promql/quantile.go @ v3.14.0.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> QuantileResult {
    let (value, fix) = bucket_quantile_with_fix(q, buckets);
    QuantileResult {
        value,
        forced_monotonicity: fix.forced_monotonicity,
        fixed_precision: fix.fixed_precision,
    }
}

/// `histogram_fraction(lower, upper, …)` over classic buckets: the share of
/// observations in `(lower, upper]`, interpolating linearly inside buckets.
/// The lowest bucket spans from 0 if its bound is > 0, else from −Inf (and
/// then contributes nothing by interpolation).
///
/// No +Inf bucket, no buckets, a zero total or a NaN bound → NaN;
/// `lower >= upper` → 0. Counts are not made monotonic here (upstream
/// doesn't either).
///
/// Upstream: `BucketFraction` in promql/quantile.go @ v3.14.0.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    sort_by_upper_bound(buckets);
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce_buckets(buckets);

    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }

    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper_bound <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper_bound;
        }
        let upper_bound = b.upper_bound;
        // Counts are cumulative, so this bucket holds `b.count - rank`.
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INF: f64 = f64::INFINITY;

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|(upper_bound, count)| Bucket {
                upper_bound: *upper_bound,
                count: *count,
            })
            .collect()
    }

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-9
    }

    /// Hand-made buckets with a positive lowest bound.
    fn positive() -> Vec<Bucket> {
        buckets(&[(0.1, 50.0), (0.2, 70.0), (INF, 110.0)])
    }

    /// Hand-made buckets with a negative lowest bound.
    fn negative() -> Vec<Bucket> {
        buckets(&[(-0.2, 10.0), (-0.1, 20.0), (0.3, 30.0), (INF, 40.0)])
    }

    #[test]
    fn bucket_quantile_table() {
        let cases: Vec<(f64, Vec<Bucket>, f64)> = vec![
            // Special q.
            (f64::NAN, positive(), f64::NAN),
            (-0.1, positive(), f64::NEG_INFINITY),
            (1.1, positive(), INF),
            // Interpolation from 0 in the lowest bucket.
            (0.0, positive(), 0.0),
            (0.25, positive(), 0.055),
            (0.5, positive(), 0.1 + 0.1 * (5.0 / 20.0)),
            // Rank in +Inf: second-highest bound.
            (0.9, positive(), 0.2),
            (1.0, positive(), 0.2),
            // Lowest bound <= 0 is returned as is.
            (0.1, negative(), -0.2),
            (0.375, negative(), -0.15),
            // Unsorted input is sorted.
            (
                0.25,
                buckets(&[(INF, 110.0), (0.2, 70.0), (0.1, 50.0)]),
                0.055,
            ),
            // Missing +Inf, too few buckets, zero total.
            (0.5, buckets(&[(0.1, 1.0), (0.2, 2.0)]), f64::NAN),
            (0.5, buckets(&[(INF, 10.0)]), f64::NAN),
            (0.5, buckets(&[(1.0, 0.0), (INF, 0.0)]), f64::NAN),
            (0.5, buckets(&[]), f64::NAN),
            // Equal bounds are coalesced: 1 → 2+3=5 of 10.
            (0.25, buckets(&[(1.0, 2.0), (1.0, 3.0), (INF, 10.0)]), 0.5),
        ];
        for (i, (q, mut b, want)) in cases.into_iter().enumerate() {
            let got = bucket_quantile(q, &mut b).value;
            assert!(same(got, want), "case {i}: q={q} got {got}, want {want}");
        }
    }

    #[test]
    fn bucket_quantile_forces_monotonicity() {
        // A real decrease (0.2 → 60 < 70 at 0.1) is flattened and flagged.
        let mut b = buckets(&[(0.1, 70.0), (0.2, 60.0), (0.4, 80.0), (INF, 100.0)]);
        let (v, fix) = bucket_quantile_with_fix(0.7, &mut b);
        assert!(fix.forced_monotonicity && !fix.fixed_precision);
        assert_eq!(
            (fix.min_bucket, fix.max_bucket, fix.max_diff),
            (0.2, 0.2, 10.0)
        );
        assert_eq!(b[1].count, 70.0);
        assert!(same(v, 0.1), "{v}");

        // Float noise is fixed silently, in either direction.
        let mut b = buckets(&[(1.0, 10.0), (2.0, 10.0 - 1e-14), (INF, 20.0)]);
        let r = bucket_quantile(0.5, &mut b);
        assert!(!r.forced_monotonicity && r.fixed_precision);
        assert_eq!(r.value, 1.0);

        // No fix needed.
        let r = bucket_quantile(0.5, &mut positive());
        assert!(!r.forced_monotonicity && !r.fixed_precision);
        // Special q short-circuits before fixing.
        let mut b = buckets(&[(0.1, 70.0), (0.2, 60.0), (INF, 100.0)]);
        assert!(!bucket_quantile(-1.0, &mut b).forced_monotonicity);
    }

    #[test]
    fn bucket_fraction_table() {
        let cases: Vec<(f64, f64, Vec<Bucket>, f64)> = vec![
            (f64::NEG_INFINITY, INF, positive(), 1.0),
            (f64::NEG_INFINITY, 0.1, positive(), 50.0 / 110.0),
            (0.1, 0.2, positive(), 20.0 / 110.0),
            (0.0, 0.05, positive(), 25.0 / 110.0),
            (0.15, INF, positive(), (110.0 - 60.0) / 110.0),
            (0.2, 0.1, positive(), 0.0),
            (f64::NAN, 0.1, positive(), f64::NAN),
            (0.0, 0.1, buckets(&[(0.1, 0.0), (INF, 0.0)]), f64::NAN),
            (0.0, 0.1, buckets(&[(0.1, 1.0)]), f64::NAN),
            (0.0, 0.1, buckets(&[]), f64::NAN),
            // Lowest bound <= 0: the lowest bucket reaches down to -Inf and
            // interpolation inside it yields its whole count.
            (-0.3, -0.1, negative(), 10.0 / 40.0),
            (-0.15, 0.3, negative(), (30.0 - 15.0) / 40.0),
        ];
        for (i, (lo, hi, mut b, want)) in cases.into_iter().enumerate() {
            let got = bucket_fraction(lo, hi, &mut b);
            assert!(
                same(got, want),
                "case {i}: ({lo}, {hi}] got {got}, want {want}"
            );
        }
    }

    /// `0+Nx10` evaluated at 50m is `10·N`.
    fn at_50m(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        buckets(
            &pairs
                .iter()
                .map(|(le, n)| (*le, n * 10.0))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn bucket_quantile_histograms_test_cases() {
        // histograms.test testhistogram{start="positive"|"negative"} at 50m.
        let pos = || at_50m(&[(0.1, 5.0), (0.2, 7.0), (1.0, 11.0), (INF, 12.0)]);
        let neg = || at_50m(&[(-0.2, 1.0), (-0.1, 2.0), (0.3, 2.0), (INF, 3.0)]);
        for (q, want_pos, want_neg) in [
            (0.0, 0.0, -0.2),
            (1.0, 1.0, 0.3),
            (0.2, 0.048, -0.2),
            (0.5, 0.15, -0.15),
            (0.8, 0.72, 0.3),
        ] {
            let got = bucket_quantile(q, &mut pos());
            assert!(
                same(got.value, want_pos) && !got.forced_monotonicity,
                "pos q={q}: {got:?}"
            );
            let got = bucket_quantile(q, &mut neg());
            assert!(
                same(got.value, want_neg) && !got.forced_monotonicity,
                "neg q={q}: {got:?}"
            );
        }
        // testhistogram2 at 7m (one increment): q 1/6, 1/2, 5/6 → 1, 3, 5.
        let h2 = || buckets(&[(0.0, 0.0), (2.0, 1.0), (4.0, 2.0), (6.0, 3.0), (INF, 3.0)]);
        for (q, want) in [(1.0 / 6.0, 1.0), (0.5, 3.0), (5.0 / 6.0, 5.0)] {
            assert!(same(bucket_quantile(q, &mut h2()).value, want), "q={q}");
        }
        // nonmonotonic_bucket at 50m: info annotation and these values.
        let nm = || {
            at_50m(&[
                (0.1, 2.0),
                (1.0, 1.0),
                (10.0, 5.0),
                (100.0, 4.0),
                (1000.0, 9.0),
                (INF, 8.0),
            ])
        };
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            let got = bucket_quantile(q, &mut nm());
            assert!(
                same(got.value, want) && got.forced_monotonicity,
                "q={q}: {got:?}"
            );
        }
        // mixed_bucket: 0.2 written three ways, coalesced after parsing;
        // a group with only +Inf buckets (coalesced to one) is NaN.
        let mut mixed = buckets(&[(0.1, 1.0), (0.2, 1.0), (0.2, 1.0), (0.2, 1.0), (INF, 4.0)]);
        assert!(same(bucket_quantile(0.5, &mut mixed).value, 0.15));
        let mut only_inf = buckets(&[(INF, 0.0), (INF, 0.0)]);
        assert!(bucket_quantile(0.5, &mut only_inf).value.is_nan());
    }

    #[test]
    fn bucket_fraction_histograms_test_cases() {
        // histograms.test at 50m.
        let h2 = || at_50m(&[(0.0, 0.0), (2.0, 1.0), (4.0, 2.0), (6.0, 3.0), (INF, 3.0)]);
        let h3_pos = at_50m(&[(0.0, 0.0), (0.1, 5.0), (0.2, 7.0), (1.0, 11.0), (INF, 11.0)]);
        let h3_neg = at_50m(&[
            (-0.25, 0.0),
            (-0.2, 1.0),
            (-0.1, 2.0),
            (0.3, 2.0),
            (INF, 2.0),
        ]);
        let first = || buckets(&[(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (INF, 100.0)]);
        let neg = || buckets(&[(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (INF, 100.0)]);
        let cases: Vec<(f64, f64, Vec<Bucket>, f64)> = vec![
            (0.0, 4.0, h2(), 0.6666666666666666),
            (0.0, 6.0, h2(), 1.0),
            (0.0, 3.5, h2(), 0.5833333333333334),
            (0.0, 0.2, h3_pos, 0.6363636363636364),
            (0.0, 0.2, h3_neg, 0.0),
            (0.0, 1.5, first(), 0.02),
            (-4.0, -2.0, neg(), 0.02),
            (f64::NEG_INFINITY, -1.5, neg(), 0.135),
            (f64::NEG_INFINITY, INF, first(), 1.0),
            (f64::NEG_INFINITY, INF, neg(), 1.0),
        ];
        for (i, (lo, hi, mut b, want)) in cases.into_iter().enumerate() {
            let got = bucket_fraction(lo, hi, &mut b);
            assert!(
                same(got, want),
                "case {i}: ({lo}, {hi}] got {got}, want {want}"
            );
        }
    }

    #[test]
    fn almost_equal_table() {
        assert!(almost_equal(1.0, 1.0 + 1e-13, 1e-12));
        assert!(!almost_equal(1.0, 1.0 + 1e-11, 1e-12));
        assert!(almost_equal(f64::NAN, f64::NAN, 1e-12));
        assert!(!almost_equal(0.0, 1e-300, 1e-12));
        assert!(almost_equal(INF, INF, 1e-12));
        let stale = crate::model::STALE_NAN;
        assert!(!almost_equal(stale, f64::NAN, 1e-12));
        assert!(almost_equal(stale, stale, 1e-12));
    }

    proptest! {
        #[test]
        fn prop_bucket_quantile_monotone_in_q(
            counts in proptest::collection::vec(0.0f64..1000.0, 2..10),
            q1 in 0.0f64..=1.0,
            q2 in 0.0f64..=1.0,
        ) {
            let mut acc = 0.0;
            let mut b: Vec<Bucket> = counts.iter().enumerate().map(|(i, c)| {
                acc += c;
                Bucket { upper_bound: if i + 1 == counts.len() { INF } else { (i + 1) as f64 }, count: acc }
            }).collect();
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            let a = bucket_quantile(lo, &mut b.clone()).value;
            let z = bucket_quantile(hi, &mut b).value;
            prop_assume!(!a.is_nan() && !z.is_nan());
            prop_assert!(a <= z + 1e-9, "q {lo} → {a}, q {hi} → {z}");
        }

        #[test]
        fn prop_bucket_fraction_in_unit_interval(
            counts in proptest::collection::vec(0.0f64..1000.0, 1..10),
            lo in -2.0f64..12.0,
            width in 0.0f64..12.0,
        ) {
            let mut acc = 0.0;
            let mut b: Vec<Bucket> = counts.iter().enumerate().map(|(i, c)| {
                acc += c;
                Bucket { upper_bound: if i + 1 == counts.len() { INF } else { (i + 1) as f64 }, count: acc }
            }).collect();
            let f = bucket_fraction(lo, lo + width, &mut b);
            prop_assume!(!f.is_nan());
            prop_assert!((-1e-12..=1.0 + 1e-12).contains(&f), "{f}");
        }
    }
}
