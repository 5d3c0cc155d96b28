//! A single float sample and the Prometheus staleness marker.

/// Bit pattern of the Prometheus staleness marker, a signalling-free NaN that
/// ends a series in PromQL. Every codec must preserve it bit-exactly.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Reports whether `v` is the staleness marker (compared by bits: any other
/// NaN is an ordinary value).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: a millisecond Unix timestamp and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; NaN, infinities and the staleness marker are all valid.
    pub v: f64,
}

impl Sample {
    /// Creates a sample.
    #[inline]
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }

    /// Reports whether this sample is the staleness marker.
    #[inline]
    pub fn is_stale(&self) -> bool {
        is_stale_nan(self.v)
    }

    /// Bit-exact equality: NaNs with equal bits are equal, `0.0 != -0.0`.
    #[inline]
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest decimal that
/// reads back as `v`, `NaN`, `+Inf`, `-Inf` (label values Prometheus
/// derives from numbers: `count_values`, OTLP `le` and `quantile`).
pub fn format_float_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_nan_but_only_marker_is_stale() {
        assert!(STALE_NAN.is_nan());
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
        assert!(Sample::new(1, STALE_NAN).is_stale());
    }

    #[test]
    fn bit_eq_distinguishes_negative_zero() {
        assert!(!Sample::new(1, 0.0).bit_eq(&Sample::new(1, -0.0)));
        assert!(Sample::new(1, f64::NAN).bit_eq(&Sample::new(1, f64::NAN)));
    }
}
