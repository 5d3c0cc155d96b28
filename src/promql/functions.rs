//! TEMPORARY stub of the kernels (replaced by the real module on merge).
#![allow(dead_code, missing_docs, unused_variables, clippy::ptr_arg)]
pub(crate) mod rate {
    use crate::model::Sample;
    pub(crate) fn extrapolated_rate(
        samples: &[Sample],
        range_start: i64,
        range_end: i64,
        is_counter: bool,
        is_rate: bool,
    ) -> Option<f64> {
        None
    }
    pub(crate) fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
        None
    }
    pub(crate) fn deriv(samples: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn predict_linear(samples: &[Sample], eval_t: i64, duration_s: f64) -> Option<f64> {
        None
    }
    pub(crate) fn resets(samples: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn changes(samples: &[Sample]) -> Option<f64> {
        None
    }
}
pub(crate) mod over_time {
    use crate::model::Sample;
    pub(crate) fn avg_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn sum_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn min_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn max_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn count_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn last_over_time(s: &[Sample]) -> Option<f64> {
        s.last().map(|x| x.v)
    }
    pub(crate) fn first_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn present_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn stddev_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn stdvar_over_time(s: &[Sample]) -> Option<f64> {
        None
    }
    pub(crate) fn quantile_over_time(q: f64, s: &[Sample]) -> Option<f64> {
        None
    }
}
pub(crate) mod stats {
    pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
        f64::NAN
    }
    pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
        (sum + inc, c)
    }
    #[derive(Debug, Clone, Default)]
    pub(crate) struct SumAcc {
        s: f64,
    }
    impl SumAcc {
        pub(crate) fn new() -> Self {
            Self::default()
        }
        pub(crate) fn add(&mut self, v: f64) {
            self.s += v
        }
        pub(crate) fn value(&self) -> f64 {
            self.s
        }
    }
    #[derive(Debug, Clone, Default)]
    pub(crate) struct AvgAcc {
        s: f64,
        n: f64,
    }
    impl AvgAcc {
        pub(crate) fn new() -> Self {
            Self::default()
        }
        pub(crate) fn add(&mut self, v: f64) {
            self.s += v;
            self.n += 1.0
        }
        pub(crate) fn value(&self) -> f64 {
            self.s / self.n
        }
    }
    #[derive(Debug, Clone, Default)]
    pub(crate) struct VarAcc {
        s: f64,
    }
    impl VarAcc {
        pub(crate) fn new() -> Self {
            Self::default()
        }
        pub(crate) fn add(&mut self, v: f64) {}
        pub(crate) fn stdvar(&self) -> f64 {
            0.0
        }
        pub(crate) fn stddev(&self) -> f64 {
            0.0
        }
    }
}
pub(crate) mod math {
    pub(crate) fn simple(name: &str) -> Option<fn(f64) -> f64> {
        match name {
            "abs" => Some(f64::abs),
            _ => None,
        }
    }
    pub(crate) fn round(v: f64, to_nearest: f64) -> f64 {
        v
    }
}
pub(crate) mod time {
    pub(crate) fn date_part(name: &str) -> Option<fn(f64) -> f64> {
        None
    }
}
pub(crate) mod histogram {
    pub(crate) struct Bucket {
        pub(crate) upper_bound: f64,
        pub(crate) count: f64,
    }
    pub(crate) struct QuantileResult {
        pub(crate) value: f64,
        pub(crate) forced_monotonicity: bool,
        pub(crate) fixed_precision: bool,
    }
    pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> QuantileResult {
        QuantileResult {
            value: f64::NAN,
            forced_monotonicity: false,
            fixed_precision: false,
        }
    }
    pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
        f64::NAN
    }
}
pub(crate) mod annotations {
    pub(crate) fn histogram_quantile_forced_monotonicity_info(metric_name: &str) -> String {
        String::new()
    }
    pub(crate) fn bad_bucket_label_warning(metric_name: &str, label: &str) -> String {
        String::new()
    }
    pub(crate) fn invalid_quantile_warning(q: f64) -> String {
        String::new()
    }
    pub(crate) fn possible_non_counter_info(metric_name: &str) -> String {
        String::new()
    }
}
