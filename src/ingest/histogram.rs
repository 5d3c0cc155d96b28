//! Native histograms of remote write 1.0 and 2.0 messages to the model's
//! [`HistogramValue`]: an integer histogram when the count is an integer
//! (`count_int`), a float histogram when it is a float (`count_float`), as
//! Prometheus's `HistogramProtoToHistogram` /
//! `FloatHistogramProtoToFloatHistogram` decide
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/storage/remote/codec.go>).
//!
//! Only converts: the structural rules are checked by
//! [`HistogramValue::validate`] (by the caller and again by storage).
//! Knows nothing of labels, HTTP or storage.

use crate::ingest::proto::{prometheus, write_v2};
use crate::model::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};

/// The hint for a wire `reset_hint` (same numbers in 1.0 and 2.0); an
/// unknown number is "unknown", which makes storage detect resets itself.
fn hint(v: i32) -> CounterResetHint {
    u8::try_from(v)
        .ok()
        .and_then(CounterResetHint::from_u8)
        .unwrap_or_default()
}

macro_rules! convert {
    ($h:expr, $module:ident) => {{
        use $module::histogram::{Count, ZeroCount};
        let h = $h;
        let spans = |s: &[$module::BucketSpan]| -> Vec<Span> {
            s.iter()
                .map(|s| Span {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let value = match h.count {
            Some(Count::CountFloat(count)) => HistogramValue::Float(FloatHistogram {
                counter_reset_hint: hint(h.reset_hint),
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: match h.zero_count {
                    Some(ZeroCount::ZeroCountFloat(z)) => z,
                    _ => 0.0,
                },
                count,
                sum: h.sum,
                positive_spans: spans(&h.positive_spans),
                negative_spans: spans(&h.negative_spans),
                positive_buckets: h.positive_counts.clone(),
                negative_buckets: h.negative_counts.clone(),
                custom_values: h.custom_values.clone(),
            }),
            count => HistogramValue::Int(Histogram {
                counter_reset_hint: hint(h.reset_hint),
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: match h.zero_count {
                    Some(ZeroCount::ZeroCountInt(z)) => z,
                    _ => 0,
                },
                count: match count {
                    Some(Count::CountInt(c)) => c,
                    _ => 0,
                },
                sum: h.sum,
                positive_spans: spans(&h.positive_spans),
                negative_spans: spans(&h.negative_spans),
                positive_buckets: h.positive_deltas.clone(),
                negative_buckets: h.negative_deltas.clone(),
                custom_values: h.custom_values.clone(),
            }),
        };
        (h.timestamp, value)
    }};
}

/// A 1.0 histogram as `(timestamp, value)`.
pub fn from_v1(h: &prometheus::Histogram) -> (i64, HistogramValue) {
    convert!(h, prometheus)
}

/// A 2.0 histogram as `(timestamp, value)` (custom-bucket histograms carry
/// schema −53 and their `custom_values`).
pub fn from_v2(h: &write_v2::Histogram) -> (i64, HistogramValue) {
    convert!(h, write_v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_float_histograms_by_count_kind() {
        let h = prometheus::Histogram {
            count: Some(prometheus::histogram::Count::CountInt(5)),
            zero_count: Some(prometheus::histogram::ZeroCount::ZeroCountInt(1)),
            sum: 2.5,
            schema: 3,
            zero_threshold: 0.001,
            positive_spans: vec![prometheus::BucketSpan {
                offset: -1,
                length: 2,
            }],
            positive_deltas: vec![2, 0],
            reset_hint: 3,
            timestamp: 42,
            ..Default::default()
        };
        let (t, v) = from_v1(&h);
        assert_eq!(t, 42);
        let HistogramValue::Int(i) = v else {
            panic!("integer histogram expected");
        };
        assert_eq!((i.count, i.zero_count, i.schema), (5, 1, 3));
        assert_eq!(i.counter_reset_hint, CounterResetHint::Gauge);
        assert_eq!(
            i.positive_spans,
            vec![Span {
                offset: -1,
                length: 2
            }]
        );
        assert_eq!(i.positive_buckets, vec![2, 0]);

        let f = write_v2::Histogram {
            count: Some(write_v2::histogram::Count::CountFloat(3.5)),
            zero_count: Some(write_v2::histogram::ZeroCount::ZeroCountFloat(0.5)),
            schema: -53,
            positive_spans: vec![write_v2::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_counts: vec![1.0, 2.0],
            custom_values: vec![0.5, 1.0],
            reset_hint: 9,
            ..Default::default()
        };
        let (_, v) = from_v2(&f);
        let HistogramValue::Float(f) = v else {
            panic!("float histogram expected");
        };
        assert_eq!((f.count, f.zero_count, f.schema), (3.5, 0.5, -53));
        assert_eq!(f.custom_values, vec![0.5, 1.0]);
        assert_eq!(f.counter_reset_hint, CounterResetHint::Unknown);
    }
}
