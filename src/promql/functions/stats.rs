//! Statistics shared by range functions and aggregations: the PromQL
//! `quantile`, Kahan–Babuška/Neumaier summation and the running
//! accumulators behind `sum`, `avg`, `stddev` and `stdvar`.
//!
//! Floating-point results must match Prometheus bit for bit where the
//! operation order allows it, so every formula here keeps upstream's order of
//! operations (no reassociation, no fused multiply-add).

use std::cmp::Ordering;

/// Orders values as upstream's `vectorByValueHeap.Less` intends: NaN before
/// everything, then ascending. Upstream's comparator calls NaN "less" than
/// anything including another NaN; this is the total order with the same
/// outcome wherever Go's sort result is defined.
fn nan_first_ascending(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// Prometheus `quantile`: the φ-quantile of `values` by linear interpolation
/// between the two closest ranks (`rank = q·(n−1)`).
///
/// Empty input or NaN `q` → NaN; `q < 0` → −Inf; `q > 1` → +Inf. Sorts
/// `values` in place, NaNs first (so a NaN sample can surface at low `q`).
///
/// Upstream: `quantile` in promql/quantile.go @ v3.14.0.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(nan_first_ascending);

    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    // Both operands are finite here, so Go's math.Max/math.Min NaN and
    // signed-zero rules do not come into play.
    let lower_index = rank.floor().max(0.0);
    let upper_index = (n - 1.0).min(lower_index + 1.0);
    let weight = rank - rank.floor();
    values[lower_index as usize] * (1.0 - weight) + values[upper_index as usize] * weight
}

/// One step of Kahan–Babuška/Neumaier compensated summation: adds `inc` to
/// `sum` with compensation `c` and returns `(new_sum, new_c)`. The caller
/// adds the final compensation once (`sum + c`).
///
/// An infinite intermediate sum resets the compensation to 0, so an
/// overflow is not turned into NaN by `Inf − Inf` in the compensation.
///
/// Upstream: `Inc` in util/kahansum/kahansum.go @ v3.14.0 (`kahanSumInc` in
/// older releases).
///
/// Upstream keeps Go from inlining it (issue #16714: Go may fuse `a*b + c`
/// into one FMA on some machines, changing results). Rust never contracts
/// or reorders float operations without explicit fast-math intrinsics, so
/// inlining it here keeps the exact operation order.
#[inline]
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        // Neumaier: the bigger operand goes first.
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Running `sum` aggregation over floats, as the float path of upstream's
/// `aggregation()` for `parser.SUM`: the first value seeds the sum, later
/// ones are Kahan-added, the compensation is added once at the end.
///
/// Upstream: `(*evaluator).aggregation`, case `parser.SUM`, promql/engine.go @ v3.14.0.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SumAcc {
    sum: f64,
    c: f64,
    count: u64,
}

impl SumAcc {
    /// An empty accumulator.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds one sample value.
    pub(crate) fn add(&mut self, v: f64) {
        if self.count == 0 {
            // Upstream seeds the group with the first value itself.
            self.sum = v;
            self.c = 0.0;
        } else {
            (self.sum, self.c) = kahan_sum_inc(v, self.sum, self.c);
        }
        self.count += 1;
    }

    /// The compensated sum; 0 if nothing was added (upstream never emits a
    /// group without samples).
    pub(crate) fn value(&self) -> f64 {
        self.sum + self.c
    }
}

/// Running `avg` aggregation over floats, as upstream's `aggregation()` for
/// `parser.AVG`: a Kahan-compensated direct sum while it stays finite; once
/// the next addition would overflow, switch for good to an incremental mean
/// (`mean·(n−1)/n + v/n`, still Kahan-compensated).
///
/// Upstream: `(*evaluator).aggregation`, case `parser.AVG`, promql/engine.go @ v3.14.0
/// (same algorithm as `funcAvgOverTime`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AvgAcc {
    sum: f64,
    mean: f64,
    c: f64,
    count: f64,
    incremental_mean: bool,
}

impl AvgAcc {
    /// An empty accumulator.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds one sample value.
    pub(crate) fn add(&mut self, v: f64) {
        if self.count == 0.0 {
            self.sum = v;
            self.mean = v;
            self.c = 0.0;
            self.count = 1.0;
            return;
        }
        self.count += 1.0;
        if !self.incremental_mean {
            let (new_sum, new_c) = kahan_sum_inc(v, self.sum, self.c);
            if !new_sum.is_infinite() {
                self.sum = new_sum;
                self.c = new_c;
                return;
            }
            // The direct sum would overflow: continue as incremental mean.
            self.incremental_mean = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_sum_inc(v / self.count, q * self.mean, q * self.c);
    }

    /// The mean; NaN if nothing was added.
    pub(crate) fn value(&self) -> f64 {
        if self.count == 0.0 {
            return f64::NAN;
        }
        if self.incremental_mean {
            self.mean + self.c
        } else {
            self.sum / self.count + self.c / self.count
        }
    }
}

/// Running `stddev`/`stdvar` aggregation over floats, as upstream's
/// `aggregation()` for `parser.STDVAR`/`parser.STDDEV`: Welford's online
/// algorithm (population variance, divisor `n`). A NaN or ±Inf *first*
/// value poisons the group to NaN, as upstream seeds `floatValue` with NaN
/// in that case; later ones poison it through the arithmetic.
///
/// Upstream: `(*evaluator).aggregation`, cases `parser.STDVAR, parser.STDDEV`,
/// promql/engine.go @ v3.14.0. Note that unlike `stddev_over_time` the
/// aggregation does not Kahan-compensate (see
/// [`over_time::stdvar_over_time`](super::over_time::stdvar_over_time)).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VarAcc {
    mean: f64,
    m2: f64,
    count: f64,
}

impl VarAcc {
    /// An empty accumulator.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds one sample value.
    pub(crate) fn add(&mut self, v: f64) {
        if self.count == 0.0 {
            self.count = 1.0;
            self.mean = v;
            self.m2 = if v.is_finite() { 0.0 } else { f64::NAN };
            return;
        }
        self.count += 1.0;
        let delta = v - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (v - self.mean);
    }

    /// Population variance; NaN if nothing was added.
    pub(crate) fn stdvar(&self) -> f64 {
        if self.count == 0.0 {
            return f64::NAN;
        }
        self.m2 / self.count
    }

    /// Population standard deviation; NaN if nothing was added.
    pub(crate) fn stddev(&self) -> f64 {
        self.stdvar().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(v: f64) -> u64 {
        v.to_bits()
    }

    #[test]
    fn quantile_table() {
        let cases: &[(f64, &[f64], f64)] = &[
            (0.5, &[], f64::NAN),
            (f64::NAN, &[1.0], f64::NAN),
            (-0.1, &[1.0, 2.0], f64::NEG_INFINITY),
            (1.1, &[1.0, 2.0], f64::INFINITY),
            (0.0, &[3.0, 1.0, 2.0], 1.0),
            (1.0, &[3.0, 1.0, 2.0], 3.0),
            (0.5, &[3.0, 1.0, 2.0], 2.0),
            (0.5, &[1.0, 2.0], 1.5),
            (0.25, &[4.0, 1.0, 3.0, 2.0], 1.75),
            (0.9, &[7.0], 7.0),
            // NaN sorts first.
            (0.0, &[1.0, f64::NAN, 2.0], f64::NAN),
            (1.0, &[1.0, f64::NAN, 2.0], 2.0),
            // aggregators.test: quantile(0.8, data) over 0 1 2 → 1.6;
            // over 0 1 → 0.8; over 0 1 2 3 → 2.4.
            (0.8, &[0.0, 1.0, 2.0], 1.6),
            (0.8, &[0.0, 1.0], 0.8),
        ];
        for (q, vals, want) in cases {
            let mut v = vals.to_vec();
            let got = quantile(*q, &mut v);
            if want.is_nan() {
                assert!(got.is_nan(), "quantile({q}, {vals:?}) = {got}");
            } else {
                assert!(
                    got == *want || (got - want).abs() < 1e-12,
                    "quantile({q}, {vals:?}) = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn kahan_sum_inc_table() {
        // (values, expected compensated total)
        let cases: &[(&[f64], f64)] = &[
            (&[1e16, 1.0, -1e16], 1.0),
            (&[1.0, 1e100, 1.0, -1e100], 2.0),
            (&[f64::INFINITY, 1.0], f64::INFINITY),
            (&[f64::MAX, f64::MAX], f64::INFINITY),
            (&[f64::INFINITY, f64::NEG_INFINITY], f64::NAN),
            (&[f64::NAN, 1.0], f64::NAN),
        ];
        for (vals, want) in cases {
            let (mut s, mut c) = (0.0, 0.0);
            for v in *vals {
                (s, c) = kahan_sum_inc(*v, s, c);
            }
            let got = if s.is_infinite() { s } else { s + c };
            if want.is_nan() {
                assert!(got.is_nan(), "{vals:?} → {got}");
            } else {
                assert_eq!(bits(got), bits(*want), "{vals:?} → {got}");
            }
        }
    }

    #[test]
    fn sum_acc_compensates() {
        let mut a = SumAcc::new();
        for v in [1e16, 1.0, -1e16] {
            a.add(v);
        }
        assert_eq!(a.value(), 1.0);

        // As upstream, the final `sum + c` turns a lone −0 into +0.
        let mut z = SumAcc::new();
        z.add(-0.0);
        assert_eq!(bits(z.value()), bits(0.0));
    }

    #[test]
    fn avg_acc_table() {
        let cases: &[(&[f64], f64)] = &[
            (&[1.0, 2.0, 3.0, 4.0], 2.5),
            (&[5.0], 5.0),
            // Overflowing direct sum switches to the incremental mean
            // (one ulp below MAX, as upstream's arithmetic gives).
            (&[f64::MAX, f64::MAX, f64::MAX], 1.7976931348623155e308),
            (&[f64::MAX, -f64::MAX], 0.0),
            (&[f64::INFINITY, 1.0], f64::INFINITY),
            (&[f64::INFINITY, f64::NEG_INFINITY], f64::NAN),
            (&[1.0, f64::NAN], f64::NAN),
        ];
        for (vals, want) in cases {
            let mut a = AvgAcc::new();
            for v in *vals {
                a.add(*v);
            }
            let got = a.value();
            if want.is_nan() {
                assert!(got.is_nan(), "{vals:?} → {got}");
            } else {
                assert_eq!(got, *want, "{vals:?}");
            }
        }
        assert!(AvgAcc::new().value().is_nan());
    }

    #[test]
    fn var_acc_table() {
        // aggregators.test: stdvar(http_requests) over 100..800 → 52500.
        let vals: Vec<f64> = (1..=8).map(|i| f64::from(i) * 100.0).collect();
        let mut a = VarAcc::new();
        for v in &vals {
            a.add(*v);
        }
        assert_eq!(a.stdvar(), 52500.0);
        assert!((a.stddev() - 229.12878474779).abs() < 1e-9);

        // "Float precision test": identical values give exactly 0.
        let mut z = VarAcc::new();
        for _ in 0..3 {
            z.add(1.5990505637277868);
        }
        assert_eq!(z.stdvar(), 0.0);

        // A non-finite first value poisons the group.
        for first in [f64::NAN, f64::INFINITY] {
            let mut n = VarAcc::new();
            n.add(first);
            assert!(n.stdvar().is_nan());
        }
        let mut one = VarAcc::new();
        one.add(7.0);
        assert_eq!(one.stddev(), 0.0);
    }

    proptest! {
        #[test]
        fn prop_quantile_monotone_in_q(
            vals in proptest::collection::vec(-1e6f64..1e6, 1..40),
            q1 in 0.0f64..=1.0,
            q2 in 0.0f64..=1.0,
        ) {
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            let a = quantile(lo, &mut vals.clone());
            let b = quantile(hi, &mut vals.clone());
            prop_assert!(a <= b + 1e-9 * (1.0 + b.abs()), "q {lo}→{a}, q {hi}→{b}");
        }

        #[test]
        fn prop_quantile_within_min_max(
            vals in proptest::collection::vec(-1e6f64..1e6, 1..40),
            q in 0.0f64..=1.0,
        ) {
            let got = quantile(q, &mut vals.clone());
            let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(got >= min - 1e-9 && got <= max + 1e-9);
        }

        #[test]
        fn prop_kahan_sum_permutation_invariant(
            vals in proptest::collection::vec(-1e12f64..1e12, 1..60),
            seed in any::<u64>(),
        ) {
            use rand::{seq::SliceRandom, SeedableRng};
            let mut shuffled = vals.clone();
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let sum = |vs: &[f64]| {
                let mut a = SumAcc::new();
                for v in vs { a.add(*v); }
                a.value()
            };
            let (a, b) = (sum(&vals), sum(&shuffled));
            let scale: f64 = vals.iter().map(|v| v.abs()).sum();
            prop_assert!((a - b).abs() <= 1e-15 * scale.max(1.0), "{a} vs {b}");
        }

        #[test]
        fn prop_avg_acc_matches_naive_mean(
            vals in proptest::collection::vec(-1e6f64..1e6, 1..60),
        ) {
            let mut a = AvgAcc::new();
            for v in &vals { a.add(*v); }
            let naive = vals.iter().sum::<f64>() / vals.len() as f64;
            prop_assert!((a.value() - naive).abs() <= 1e-9 * (1.0 + naive.abs()));
        }
    }
}
