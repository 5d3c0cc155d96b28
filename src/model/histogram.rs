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
    /// is not NaN (Prometheus: "count is less than the sum of buckets").
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
    /// Custom values sent on an exponential histogram.
    #[error("histogram with exponential schema must not have custom bounds")]
    UnexpectedCustomValues,
}
