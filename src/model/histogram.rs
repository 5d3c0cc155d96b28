//! Native histogram samples as Prometheus models them: integer histograms
//! (bucket counts as deltas, what clients send and chunks store) and float
//! histograms (absolute float counts, what PromQL computes with).
//!
//! Owns the value types and their structural rules (schema range, span and
//! bucket count consistency). Must not know about encodings, storage or
//! PromQL semantics beyond what Prometheus's `model/histogram` package
//! defines.

/// Lowest exponential schema (each bucket 2^(2^4) wide).
pub const MIN_EXPONENTIAL_SCHEMA: i32 = -4;
/// Highest exponential schema (each bucket 2^(2^-8) wide).
pub const MAX_EXPONENTIAL_SCHEMA: i32 = 8;
/// The schema of native histograms with custom bucket boundaries (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Reports whether `schema` is one Prometheus accepts.
pub fn is_valid_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
        || (MIN_EXPONENTIAL_SCHEMA..=MAX_EXPONENTIAL_SCHEMA).contains(&schema)
}

/// Reports whether `schema` is the custom-buckets schema.
pub fn is_custom_buckets(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

/// What the sender says about a counter reset before this sample
/// (Prometheus's `CounterResetHint`, same numeric values as the wire enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CounterResetHint {
    /// No information: detect resets by comparing with the previous sample.
    #[default]
    Unknown = 0,
    /// A counter reset happened right before this sample.
    CounterReset = 1,
    /// No counter reset happened.
    NotCounterReset = 2,
    /// A gauge histogram: counts may go up and down.
    Gauge = 3,
}

impl CounterResetHint {
    /// The hint for the wire/record value `v`, `None` for an unknown value.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Unknown),
            1 => Some(Self::CounterReset),
            2 => Some(Self::NotCounterReset),
            3 => Some(Self::Gauge),
            _ => None,
        }
    }
}

/// A run of consecutive buckets: `offset` buckets skipped after the previous
/// span (for the first span: the index of its first bucket), then `length`
/// buckets present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Gap to the previous span's end (first span: starting bucket index).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// An integer native histogram: bucket counts delta-encoded within each
/// side (the first bucket absolute, each next one relative to the previous).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter reset information from the sender.
    pub counter_reset_hint: CounterResetHint,
    /// Bucket schema: −4..=8 exponential, or −53 custom buckets.
    pub schema: i32,
    /// Width of the zero bucket, `[-threshold, threshold]`.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total observations (including NaN observations, which no bucket has).
    pub count: u64,
    /// Sum of observations; the staleness marker here marks a stale sample.
    pub sum: f64,
    /// Positive bucket spans.
    pub positive_spans: Vec<Span>,
    /// Negative bucket spans (always empty for custom buckets).
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts as deltas.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts as deltas.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema −53 only), ascending.
    pub custom_values: Vec<f64>,
}

/// A float native histogram: absolute float bucket counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter reset information.
    pub counter_reset_hint: CounterResetHint,
    /// Bucket schema: −4..=8 exponential, or −53 custom buckets.
    pub schema: i32,
    /// Width of the zero bucket, `[-threshold, threshold]`.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations.
    pub count: f64,
    /// Sum of observations; the staleness marker here marks a stale sample.
    pub sum: f64,
    /// Positive bucket spans.
    pub positive_spans: Vec<Span>,
    /// Negative bucket spans (always empty for custom buckets).
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, absolute.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts, absolute.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema −53 only), ascending.
    pub custom_values: Vec<f64>,
}

/// Why a histogram is structurally invalid (Prometheus's validation errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    /// Schema outside −4..=8 and not −53.
    #[error("histogram schema {schema} is not in -4..8 or -53 (custom buckets)")]
    InvalidSchema {
        /// The schema sent.
        schema: i32,
    },
    /// The spans of one side count a different number of buckets than sent.
    #[error("{side} side: spans need {spans} buckets, have {buckets} buckets")]
    SpansBucketsMismatch {
        /// `positive` or `negative`.
        side: &'static str,
        /// Buckets the spans describe.
        spans: u64,
        /// Buckets present.
        buckets: usize,
    },
    /// A span after the first has a negative offset.
    #[error("{side} side: span number {index} with offset {offset}")]
    NegativeSpanOffset {
        /// `positive` or `negative`.
        side: &'static str,
        /// 1-based span number.
        index: usize,
        /// The offending offset.
        offset: i32,
    },
    /// A bucket count below zero.
    #[error("{side} side: bucket number {index} has observation count of {count}")]
    NegativeBucketCount {
        /// `positive` or `negative`.
        side: &'static str,
        /// 1-based bucket number.
        index: usize,
        /// The resulting count.
        count: f64,
    },
    /// Count below zero, or a float count that is not finite where needed.
    #[error("histogram count {count} is negative")]
    NegativeCount {
        /// The count sent.
        count: f64,
    },
    /// The buckets (incl. zero bucket) sum to more than `count` while `sum`
    /// is NaN (Prometheus: "count is not big enough").
    #[error("{count} observations found in buckets, but the Count field is {count_field}")]
    CountBelowBuckets {
        /// Sum of all bucket counts.
        count: f64,
        /// The histogram's count field.
        count_field: f64,
    },
    /// Custom-buckets rules: no negative side, no zero bucket, bounds
    /// strictly ascending and finite, enough bounds for the buckets.
    #[error("custom buckets: {reason}")]
    CustomBuckets {
        /// What is wrong.
        reason: &'static str,
    },
    /// The buckets (incl. zero bucket) do not add up to `count` while
    /// `sum` is not NaN (Prometheus: "count mismatch").
    #[error("{count} observations found in buckets, but the Count field is {count_field}")]
    CountMismatch {
        /// Sum of all bucket counts.
        count: f64,
        /// The histogram's count field.
        count_field: f64,
    },
    /// Custom values sent on an exponential histogram.
    #[error("histogram with exponential schema must not have custom bounds")]
    UnexpectedCustomValues,
    /// More buckets (or custom bounds) on one side than Tidemark stores
    /// ([`MAX_BUCKETS_PER_SIDE`]; Prometheus clients send at most 160 by
    /// default).
    #[error("{side} side: {buckets} buckets is more than the limit of {max}")]
    TooManyBuckets {
        /// `positive`, `negative` or `custom bounds`.
        side: &'static str,
        /// Buckets sent.
        buckets: usize,
        /// The limit.
        max: usize,
    },
}

/// Most buckets per side (and custom bounds) a stored histogram may have:
/// what the chunk decoders accept, so that whatever is stored reads back.
pub const MAX_BUCKETS_PER_SIDE: usize = 1 << 16;

/// Refuses more than [`MAX_BUCKETS_PER_SIDE`] buckets (or spans) on a side.
fn check_bucket_counts(
    positive: usize,
    negative: usize,
    custom: usize,
) -> Result<(), HistogramError> {
    for (side, buckets) in [
        ("positive", positive),
        ("negative", negative),
        ("custom bounds", custom),
    ] {
        if buckets > MAX_BUCKETS_PER_SIDE {
            return Err(HistogramError::TooManyBuckets {
                side,
                buckets,
                max: MAX_BUCKETS_PER_SIDE,
            });
        }
    }
    Ok(())
}

/// One native histogram sample value as stored: integer histograms (what
/// clients send) and float histograms (what recording rules and some
/// senders produce) are kept in different chunk encodings.
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// An integer histogram.
    Int(Histogram),
    /// A float histogram.
    Float(FloatHistogram),
}

impl HistogramValue {
    /// The value as a float histogram (what PromQL computes with).
    pub fn to_float(&self) -> FloatHistogram {
        match self {
            HistogramValue::Int(h) => h.to_float(),
            HistogramValue::Float(f) => f.clone(),
        }
    }

    /// Reports whether this is a staleness marker (`sum` is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::model::is_stale_nan(self.sum())
    }

    /// The sum of observations.
    pub fn sum(&self) -> f64 {
        match self {
            HistogramValue::Int(h) => h.sum,
            HistogramValue::Float(f) => f.sum,
        }
    }

    /// The counter reset hint.
    pub fn counter_reset_hint(&self) -> CounterResetHint {
        match self {
            HistogramValue::Int(h) => h.counter_reset_hint,
            HistogramValue::Float(f) => f.counter_reset_hint,
        }
    }

    /// Checks the histogram's structure as Prometheus does before storing.
    ///
    /// # Errors
    /// The first rule broken, as a [`HistogramError`].
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self {
            HistogramValue::Int(h) => h.validate(),
            HistogramValue::Float(f) => f.validate(),
        }
    }
}

/// A native histogram sample: a timestamp (ms) and its histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Timestamp in milliseconds.
    pub t: i64,
    /// The histogram.
    pub h: HistogramValue,
}

impl Histogram {
    /// The same histogram with absolute float bucket counts.
    pub fn to_float(&self) -> FloatHistogram {
        let absolute = |deltas: &[i64]| -> Vec<f64> {
            let mut cur = 0i64;
            deltas
                .iter()
                .map(|d| {
                    cur = cur.wrapping_add(*d);
                    cur as f64
                })
                .collect()
        };
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute(&self.positive_buckets),
            negative_buckets: absolute(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }

    /// Reports whether this is a staleness marker (`sum` is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::model::is_stale_nan(self.sum)
    }

    /// Checks the histogram as Prometheus's `Histogram.Validate` does:
    /// schema range, custom-bucket rules, span/bucket count consistency,
    /// non-negative bucket counts, and (unless `sum` is NaN) a `count` not
    /// below the sum of the buckets.
    ///
    /// # Errors
    /// The first rule broken, as a [`HistogramError`].
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_bucket_counts(
            self.positive_buckets.len().max(self.positive_spans.len()),
            self.negative_buckets.len().max(self.negative_spans.len()),
            self.custom_values.len(),
        )?;
        check_schema(
            self.schema,
            self.zero_threshold,
            self.zero_count != 0,
            &self.negative_spans,
            self.negative_buckets.len(),
            &self.custom_values,
            self.positive_spans.len(),
        )?;
        let neg = check_int_side("negative", &self.negative_spans, &self.negative_buckets)?;
        let pos = check_int_side("positive", &self.positive_spans, &self.positive_buckets)?;
        check_custom_bounds_cover(self.schema, &self.positive_spans, &self.custom_values)?;
        // Prometheus 3: with a NaN sum (NaN observations, which no bucket
        // counts) the buckets may hold fewer than `count`; otherwise exactly
        // `count`.
        let buckets = (neg as u128) + (pos as u128) + u128::from(self.zero_count);
        let count = u128::from(self.count);
        if self.sum.is_nan() && buckets > count {
            return Err(HistogramError::CountBelowBuckets {
                count: buckets as f64,
                count_field: self.count as f64,
            });
        }
        if !self.sum.is_nan() && buckets != count {
            return Err(HistogramError::CountMismatch {
                count: buckets as f64,
                count_field: self.count as f64,
            });
        }
        Ok(())
    }
}

impl FloatHistogram {
    /// Reports whether this is a staleness marker (`sum` is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::model::is_stale_nan(self.sum)
    }

    /// Checks the histogram as Prometheus's `FloatHistogram.Validate` does
    /// (see [`Histogram::validate`]); counts must not be negative.
    ///
    /// # Errors
    /// The first rule broken, as a [`HistogramError`].
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_bucket_counts(
            self.positive_buckets.len().max(self.positive_spans.len()),
            self.negative_buckets.len().max(self.negative_spans.len()),
            self.custom_values.len(),
        )?;
        check_schema(
            self.schema,
            self.zero_threshold,
            self.zero_count != 0.0,
            &self.negative_spans,
            self.negative_buckets.len(),
            &self.custom_values,
            self.positive_spans.len(),
        )?;
        check_float_side("negative", &self.negative_spans, &self.negative_buckets)?;
        check_float_side("positive", &self.positive_spans, &self.positive_buckets)?;
        check_custom_bounds_cover(self.schema, &self.positive_spans, &self.custom_values)?;
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount { count: self.count });
        }
        if self.zero_count < 0.0 {
            return Err(HistogramError::NegativeBucketCount {
                side: "zero",
                index: 1,
                count: self.zero_count,
            });
        }
        // Prometheus checks no count against the buckets of a float
        // histogram (rounding makes them differ).
        Ok(())
    }
}

/// Schema, zero bucket and custom-bucket rules shared by both kinds.
fn check_schema(
    schema: i32,
    zero_threshold: f64,
    has_zero_count: bool,
    negative_spans: &[Span],
    negative_buckets: usize,
    custom_values: &[f64],
    _positive_spans: usize,
) -> Result<(), HistogramError> {
    if !is_valid_schema(schema) {
        return Err(HistogramError::InvalidSchema { schema });
    }
    if is_custom_buckets(schema) {
        if !negative_spans.is_empty() || negative_buckets != 0 {
            return Err(HistogramError::CustomBuckets {
                reason: "histograms with custom buckets must not have negative buckets",
            });
        }
        if zero_threshold != 0.0 || has_zero_count {
            return Err(HistogramError::CustomBuckets {
                reason: "histograms with custom buckets must not have a zero bucket",
            });
        }
        for w in custom_values.windows(2) {
            if w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less) {
                return Err(HistogramError::CustomBuckets {
                    reason: "custom bounds must be strictly increasing",
                });
            }
        }
        if custom_values
            .iter()
            .any(|v| v.is_nan() || *v == f64::INFINITY)
        {
            return Err(HistogramError::CustomBuckets {
                reason: "custom bounds must be finite (+Inf is implicit)",
            });
        }
    } else if !custom_values.is_empty() {
        return Err(HistogramError::UnexpectedCustomValues);
    }
    Ok(())
}

/// For custom buckets, the highest bucket index the spans reach must have
/// a bound (or be the implicit +Inf bucket at `len(custom_values)`).
fn check_custom_bounds_cover(
    schema: i32,
    spans: &[Span],
    custom_values: &[f64],
) -> Result<(), HistogramError> {
    if !is_custom_buckets(schema) {
        return Ok(());
    }
    let mut idx: i64 = -1;
    for (i, s) in spans.iter().enumerate() {
        let offset = i64::from(s.offset);
        if i == 0 && offset < 0 {
            return Err(HistogramError::CustomBuckets {
                reason: "custom buckets: first span offset must not be negative",
            });
        }
        idx = idx
            .saturating_add(offset)
            .saturating_add(i64::from(s.length));
    }
    if idx >= 0 && idx > custom_values.len() as i64 {
        return Err(HistogramError::CustomBuckets {
            reason: "custom buckets: spans reach beyond the custom bounds",
        });
    }
    Ok(())
}

/// Checks the spans of one side against its bucket count and the offsets.
fn check_spans(side: &'static str, spans: &[Span], buckets: usize) -> Result<(), HistogramError> {
    let mut need: u64 = 0;
    for (i, s) in spans.iter().enumerate() {
        if i > 0 && s.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset {
                side,
                index: i + 1,
                offset: s.offset,
            });
        }
        need = need.saturating_add(u64::from(s.length));
    }
    if need != buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            spans: need,
            buckets,
        });
    }
    Ok(())
}

/// Checks one side of an integer histogram; returns its total count.
fn check_int_side(
    side: &'static str,
    spans: &[Span],
    deltas: &[i64],
) -> Result<u64, HistogramError> {
    check_spans(side, spans, deltas.len())?;
    let mut cur: i128 = 0;
    let mut total: u128 = 0;
    for (i, d) in deltas.iter().enumerate() {
        cur += i128::from(*d);
        if cur < 0 {
            return Err(HistogramError::NegativeBucketCount {
                side,
                index: i + 1,
                count: cur as f64,
            });
        }
        total = total.saturating_add(cur as u128);
    }
    Ok(u64::try_from(total).unwrap_or(u64::MAX))
}

/// Checks one side of a float histogram.
fn check_float_side(
    side: &'static str,
    spans: &[Span],
    counts: &[f64],
) -> Result<(), HistogramError> {
    check_spans(side, spans, counts.len())?;
    for (i, c) in counts.iter().enumerate() {
        if *c < 0.0 {
            return Err(HistogramError::NegativeBucketCount {
                side,
                index: i + 1,
                count: *c,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    fn h(count: u64, sum: f64) -> Histogram {
        Histogram {
            count,
            zero_count: 1,
            sum,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![2, 1], // 2 + 3
            ..Default::default()
        }
    }

    #[test]
    fn validate_follows_prometheus_3() {
        assert_eq!(h(6, 1.0).validate(), Ok(()));
        // Count must equal the buckets unless sum is NaN, then it may be more.
        assert!(matches!(
            h(7, 1.0).validate(),
            Err(HistogramError::CountMismatch { .. })
        ));
        assert!(matches!(
            h(5, 1.0).validate(),
            Err(HistogramError::CountMismatch { .. })
        ));
        assert_eq!(h(7, f64::NAN).validate(), Ok(()));
        assert!(matches!(
            h(5, f64::NAN).validate(),
            Err(HistogramError::CountBelowBuckets { .. })
        ));
        let mut neg = h(6, 1.0);
        neg.positive_buckets = vec![4, -5];
        assert!(matches!(
            neg.validate(),
            Err(HistogramError::NegativeBucketCount { index: 2, .. })
        ));
        let mut schema = h(6, 1.0);
        schema.schema = 9;
        assert_eq!(
            schema.validate(),
            Err(HistogramError::InvalidSchema { schema: 9 })
        );
        // Custom buckets: no bounds at all is one +Inf bucket.
        let nhcb = Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3,
            sum: 1.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![3],
            ..Default::default()
        };
        assert_eq!(nhcb.validate(), Ok(()));
        let mut two = nhcb.clone();
        two.positive_spans[0].length = 2;
        two.positive_buckets = vec![3, -3];
        assert!(matches!(
            two.validate(),
            Err(HistogramError::CustomBuckets { .. })
        ));
        two.custom_values = vec![0.5];
        assert_eq!(two.validate(), Ok(()));
        two.custom_values = vec![f64::INFINITY];
        assert!(two.validate().is_err());
        // Float histograms: counts are not checked against buckets.
        let mut f = h(6, 1.0).to_float();
        f.count = 5.5;
        assert_eq!(f.validate(), Ok(()));
        f.zero_count = -1.0;
        assert!(f.validate().is_err());
    }
}
