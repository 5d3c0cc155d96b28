//! Kernels of the functions over native histogram samples:
//! `histogram_count`, `histogram_sum`, `histogram_avg`,
//! `histogram_stddev`, `histogram_stdvar`, and the native paths of
//! `histogram_quantile` and `histogram_fraction`.
//!
//! Pure: a [`FloatHistogram`] in, a float (and the info annotation a case
//! raises) out. Semantics: Prometheus v3.14 `promql/functions.go`
//! (`simpleHistogramFunc`, `histogramVariance`) and `promql/quantile.go`
//! (`HistogramQuantile`, `HistogramFraction`).

use crate::model::histogram_ops::Bucket;
use crate::model::FloatHistogram;
use crate::promql::functions::annotations;

/// Prometheus's `FloatHistogram.String()`: `{count:N, sum:S, <bucket>…}`
/// with every populated bucket as `[lower,upper):count` (brackets by
/// inclusivity), as `count_values` uses for histogram samples.
pub(crate) fn to_prom_string(h: &FloatHistogram) -> String {
    let g = annotations::go_format_g;
    let mut s = format!("{{count:{}, sum:{}", g(h.count), g(h.sum));
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        s.push_str(", ");
        s.push(if b.lower_inclusive { '[' } else { '(' });
        s.push_str(&format!("{},{}", g(b.lower), g(b.upper)));
        s.push(if b.upper_inclusive { ']' } else { ')' });
        s.push_str(&format!(":{}", g(b.count)));
    }
    s.push('}');
    s
}

/// `histogram_count`.
pub(crate) fn count(h: &FloatHistogram) -> f64 {
    h.count
}

/// `histogram_sum`.
pub(crate) fn sum(h: &FloatHistogram) -> f64 {
    h.sum
}

/// `histogram_avg`.
pub(crate) fn avg(h: &FloatHistogram) -> f64 {
    h.sum / h.count
}

/// The estimated variance of the observations: each bucket's count at a
/// representative value (arithmetic mean of the bounds for custom
/// buckets, 0 in the zero bucket, geometric mean otherwise).
pub(crate) fn stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let custom = h.uses_custom_buckets();
    let (mut variance, mut c) = (0.0f64, 0.0f64);
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if custom {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let g = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -g
            } else {
                g
            }
        };
        let delta = val - mean;
        // Kahan-Babuška (Neumaier) summation, as upstream's kahansum.Inc.
        let x = b.count * delta * delta;
        let t = variance + x;
        if t.is_infinite() {
            c = 0.0;
        } else if variance.abs() >= x.abs() {
            c += (variance - t) + x;
        } else {
            c += (x - t) + variance;
        }
        variance = t;
    }
    (variance + c) / h.count
}

/// `histogram_stddev`.
pub(crate) fn stddev(h: &FloatHistogram) -> f64 {
    stdvar(h).sqrt()
}

/// The native `histogram_quantile(q, h)`: exponential interpolation within
/// exponential buckets, linear in the zero bucket and custom buckets.
/// Returns the value and an info annotation for NaN observations.
pub(crate) fn quantile(q: f64, h: &FloatHistogram, metric: &str) -> (f64, Option<String>) {
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    if h.count == 0.0 || q.is_nan() {
        return (f64::NAN, None);
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let mut buckets = h.all_buckets();
    if !forward {
        buckets.reverse();
    }
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut at = None;
    for (k, b) in buckets.iter().enumerate() {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        at = Some(k);
        if count >= rank {
            break;
        }
    }
    let Some(k) = at else {
        // No populated bucket (all observations NaN, or none in buckets):
        // upstream ends on an empty bucket at 0.
        if count < rank && h.sum.is_nan() {
            return (
                f64::NAN,
                Some(annotations::native_histogram_quantile_nan_result_info(
                    metric,
                )),
            );
        }
        if h.sum.is_nan() && count < h.count {
            return (
                f64::NAN,
                Some(annotations::native_histogram_quantile_nan_skew_info(metric)),
            );
        }
        return (if count < rank { 0.0 } else { f64::NAN }, None);
    };
    let mut bucket: Bucket = buckets[k];
    let custom = h.uses_custom_buckets();
    if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if custom {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return (bucket.upper, None);
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return (bucket.lower, None);
        }
    }
    count = count.min(h.count);
    if count < rank {
        if h.sum.is_nan() {
            return (
                f64::NAN,
                Some(annotations::native_histogram_quantile_nan_result_info(
                    metric,
                )),
            );
        }
        return (bucket.upper, None);
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let mut info = None;
    if h.sum.is_nan() {
        let total: f64 = count + buckets[k + 1..].iter().map(|b| b.count).sum::<f64>();
        if total < h.count {
            info = Some(annotations::native_histogram_quantile_nan_skew_info(metric));
        }
    }
    let fraction = rank / bucket.count;
    if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return (
            bucket.lower + (bucket.upper - bucket.lower) * fraction,
            info,
        );
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    if bucket.lower > 0.0 {
        return (
            (log_lower + (log_upper - log_lower) * fraction).exp2(),
            info,
        );
    }
    (
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2(),
        info,
    )
}

/// Fraction of a bucket's observations below `v` (upstream
/// `Bucket.FractionBelow`), linearly or on a log2 scale.
fn fraction_below(b: &Bucket, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    let log_v = v.abs().log2();
    if v > 0.0 {
        return (log_v - log_lower) / (log_upper - log_lower);
    }
    1.0 - ((log_v - log_upper) / (log_lower - log_upper))
}

/// The native `histogram_fraction(lower, upper, h)`; an info annotation
/// when NaN observations are left out.
pub(crate) fn fraction(
    lower: f64,
    upper: f64,
    h: &FloatHistogram,
    metric: &str,
) -> (f64, Option<String>) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, None);
    }
    if lower >= upper {
        return (0.0, None);
    }
    let custom = h.uses_custom_buckets();
    let buckets = h.all_buckets();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut consumed = buckets.len();
    for (k, b) in buckets.iter().enumerate() {
        let mut b = *b;
        count += b.count;
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let interpolate = |v: f64| {
            if custom || zero_bucket {
                if b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * fraction_below(&b, v, true)
            } else {
                rank + b.count * fraction_below(&b, v, false)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = k + 1;
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = k + 1;
            break;
        }
        rank += b.count;
    }
    let mut info = None;
    if h.sum.is_nan() {
        count += buckets[consumed.min(buckets.len())..]
            .iter()
            .map(|b| b.count)
            .sum::<f64>();
        if count < h.count {
            info = Some(annotations::native_histogram_fraction_nans_info(metric));
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / h.count, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(count: f64, sum: f64, zero: f64, buckets: &[(i32, f64)]) -> FloatHistogram {
        let mut h = FloatHistogram {
            count,
            sum,
            zero_count: zero,
            zero_threshold: 0.001,
            ..Default::default()
        };
        h.set_positive(buckets);
        h
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        // One bucket (1, 2]: the median is sqrt(2).
        let x = h(2.0, 3.0, 0.0, &[(1, 2.0)]);
        let (q, info) = quantile(0.5, &x, "m");
        assert!((q - 2f64.sqrt()).abs() < 1e-12, "{q}");
        assert!(info.is_none());
        assert_eq!(quantile(-1.0, &x, "m").0, f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &x, "m").0, f64::INFINITY);
        assert!(quantile(0.5, &FloatHistogram::default(), "m").0.is_nan());
    }

    #[test]
    fn quantile_in_zero_bucket_is_linear_from_zero() {
        let x = h(4.0, 1.0, 2.0, &[(1, 2.0)]);
        let (q, _) = quantile(0.25, &x, "m");
        assert!((q - 0.0005).abs() < 1e-12, "{q}");
    }

    #[test]
    fn fraction_is_the_inverse_of_quantile() {
        let x = h(4.0, 6.0, 0.0, &[(1, 2.0), (2, 2.0)]);
        let (f, _) = fraction(f64::NEG_INFINITY, 2.0, &x, "m");
        assert_eq!(f, 0.5);
        let (f, _) = fraction(0.0, f64::INFINITY, &x, "m");
        assert_eq!(f, 1.0);
        let (q, _) = quantile(0.75, &x, "m");
        let (f, _) = fraction(f64::NEG_INFINITY, q, &x, "m");
        assert!((f - 0.75).abs() < 1e-12);
        assert_eq!(fraction(2.0, 1.0, &x, "m").0, 0.0);
    }

    #[test]
    fn nan_observations_are_reported() {
        let x = h(5.0, f64::NAN, 0.0, &[(1, 2.0), (2, 2.0)]);
        let (q, info) = quantile(0.99, &x, "m");
        assert!(q.is_nan());
        assert!(info.unwrap().contains("NaN observations, result is NaN"));
        let (_, info) = fraction(0.0, 3.0, &x, "m");
        assert!(info.is_some());
    }

    #[test]
    fn stdvar_uses_geometric_means() {
        // All observations in (1, 2], mean sqrt(2): variance 0.
        let x = h(2.0, 2.0 * 2f64.sqrt(), 0.0, &[(1, 2.0)]);
        assert!(stdvar(&x).abs() < 1e-12);
        assert_eq!(avg(&x), 2f64.sqrt());
        assert!(stddev(&x).abs() < 1e-6);
    }
}
