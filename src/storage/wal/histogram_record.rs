//! Payload codecs of the histogram samples records: type 7 (integer
//! histograms) and type 8 (float histograms), custom-bucket histograms
//! (schema −53) included with their bounds (`docs/format/wal.md`, section
//! "Histogram samples").
//!
//! Field order follows Prometheus's `record.EncodeHistogram` /
//! `EncodeFloatHistogram`; the record framing (uvarint first ref, varint
//! deltas) is Tidemark's, as in the samples record. Owns the payload layout
//! only; parses bytes through [`Decbuf`] alone, so malformed input is an
//! error, never a panic, and no count read from the payload allocates more
//! than the payload could hold.

use crate::model::histogram::is_custom_buckets;
use crate::model::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use crate::storage::encoding::{put_be_u64, put_uvarint, put_varint, Decbuf};
use crate::storage::SeriesRef;

use super::record::RecordError;

/// Type byte of an integer histogram samples record.
pub const RECORD_HISTOGRAM_SAMPLES: u8 = 7;
/// Type byte of a float histogram samples record.
pub const RECORD_FLOAT_HISTOGRAM_SAMPLES: u8 = 8;
/// Type byte of an out-of-order integer histogram samples record (format
/// version 5): the layout of type 7, replayed into the out-of-order data.
pub const RECORD_OOO_HISTOGRAM_SAMPLES: u8 = 10;
/// Type byte of an out-of-order float histogram samples record (format
/// version 5): the layout of type 8.
pub const RECORD_OOO_FLOAT_HISTOGRAM_SAMPLES: u8 = 11;

/// One histogram sample of an already logged series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefHistogramSample {
    /// The series the sample belongs to.
    pub series_ref: SeriesRef,
    /// Timestamp in ms.
    pub t: i64,
    /// The histogram; floats round-trip bit-exactly.
    pub h: HistogramValue,
}

/// Appends the two records for `samples`: integer histograms as type 7,
/// float histograms as type 8, each only if it has samples. Returns the
/// payloads' end offsets in `buf` (one per record written).
pub fn encode_histogram_samples(samples: &[RefHistogramSample], buf: &mut Vec<u8>) -> Vec<usize> {
    encode_histogram_samples_as(
        [RECORD_HISTOGRAM_SAMPLES, RECORD_FLOAT_HISTOGRAM_SAMPLES],
        samples,
        buf,
    )
}

/// [`encode_histogram_samples`] for out-of-order samples: types 10 and 11.
pub fn encode_ooo_histogram_samples(
    samples: &[RefHistogramSample],
    buf: &mut Vec<u8>,
) -> Vec<usize> {
    encode_histogram_samples_as(
        [
            RECORD_OOO_HISTOGRAM_SAMPLES,
            RECORD_OOO_FLOAT_HISTOGRAM_SAMPLES,
        ],
        samples,
        buf,
    )
}

/// Integer histograms as `types[0]`, float histograms as `types[1]`.
fn encode_histogram_samples_as(
    types: [u8; 2],
    samples: &[RefHistogramSample],
    buf: &mut Vec<u8>,
) -> Vec<usize> {
    let mut ends = Vec::new();
    for float in [false, true] {
        let mut it = samples
            .iter()
            .filter(|s| matches!(s.h, HistogramValue::Float(_)) == float)
            .peekable();
        let Some(first) = it.peek() else {
            continue;
        };
        let (ref0, t0) = (first.series_ref.0, first.t);
        buf.push(types[usize::from(float)]);
        put_uvarint(buf, ref0);
        put_varint(buf, t0);
        for s in it {
            put_varint(buf, s.series_ref.0.wrapping_sub(ref0) as i64);
            put_varint(buf, s.t.wrapping_sub(t0));
            match &s.h {
                HistogramValue::Int(h) => put_int(buf, h),
                HistogramValue::Float(h) => put_float(buf, h),
            }
        }
        ends.push(buf.len());
    }
    ends
}

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn put_custom(buf: &mut Vec<u8>, schema: i32, values: &[f64]) {
    if is_custom_buckets(schema) {
        put_uvarint(buf, values.len() as u64);
        for v in values {
            put_be_u64(buf, v.to_bits());
        }
    }
}

/// `hint <1b> | schema <varint> | zero_threshold <8b> | zero_count <uvarint>
/// | count <uvarint> | sum <8b> | pos spans | neg spans | pos buckets
/// (<uvarint n> <varint>*) | neg buckets | [custom bounds]`.
fn put_int(buf: &mut Vec<u8>, h: &Histogram) {
    buf.push(h.counter_reset_hint as u8);
    put_varint(buf, i64::from(h.schema));
    put_be_u64(buf, h.zero_threshold.to_bits());
    put_uvarint(buf, h.zero_count);
    put_uvarint(buf, h.count);
    put_be_u64(buf, h.sum.to_bits());
    put_spans(buf, &h.positive_spans);
    put_spans(buf, &h.negative_spans);
    for side in [&h.positive_buckets, &h.negative_buckets] {
        put_uvarint(buf, side.len() as u64);
        for b in side {
            put_varint(buf, *b);
        }
    }
    put_custom(buf, h.schema, &h.custom_values);
}

/// As [`put_int`] with every count a raw 8-byte float.
fn put_float(buf: &mut Vec<u8>, h: &FloatHistogram) {
    buf.push(h.counter_reset_hint as u8);
    put_varint(buf, i64::from(h.schema));
    put_be_u64(buf, h.zero_threshold.to_bits());
    put_be_u64(buf, h.zero_count.to_bits());
    put_be_u64(buf, h.count.to_bits());
    put_be_u64(buf, h.sum.to_bits());
    put_spans(buf, &h.positive_spans);
    put_spans(buf, &h.negative_spans);
    for side in [&h.positive_buckets, &h.negative_buckets] {
        put_uvarint(buf, side.len() as u64);
        for b in side {
            put_be_u64(buf, b.to_bits());
        }
    }
    put_custom(buf, h.schema, &h.custom_values);
}

/// Decodes the body of a type 7 (`float == false`) or 8 record.
pub(super) fn decode_histogram_samples(
    d: &mut Decbuf<'_>,
    float: bool,
) -> Result<Vec<RefHistogramSample>, RecordError> {
    let mut out = Vec::new();
    if d.is_empty() {
        return Ok(out);
    }
    let ref0 = d.uvarint()?;
    let t0 = d.varint()?;
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let h = if float {
            HistogramValue::Float(read_float(d)?)
        } else {
            HistogramValue::Int(read_int(d)?)
        };
        out.push(RefHistogramSample {
            series_ref: SeriesRef(ref0.wrapping_add(dref as u64)),
            t: t0.wrapping_add(dt),
            h,
        });
    }
    Ok(out)
}

/// A count read from the payload, refused if the rest of the payload
/// cannot hold that many items of at least `min_len` bytes.
fn count(d: &mut Decbuf<'_>, min_len: usize) -> Result<usize, RecordError> {
    let at = d.position();
    let n = d.uvarint()?;
    match usize::try_from(n) {
        Ok(n) if n.saturating_mul(min_len) <= d.remaining() => Ok(n),
        _ => Err(RecordError::BadHistogram {
            at,
            what: "count larger than the record",
        }),
    }
}

fn hint(d: &mut Decbuf<'_>) -> Result<CounterResetHint, RecordError> {
    let at = d.position();
    CounterResetHint::from_u8(d.u8()?).ok_or(RecordError::BadHistogram {
        at,
        what: "unknown counter reset hint",
    })
}

fn schema(d: &mut Decbuf<'_>) -> Result<i32, RecordError> {
    let at = d.position();
    i32::try_from(d.varint()?).map_err(|_| RecordError::BadHistogram {
        at,
        what: "schema out of range",
    })
}

fn spans(d: &mut Decbuf<'_>) -> Result<Vec<Span>, RecordError> {
    let n = count(d, 2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = d.position();
        let offset = i32::try_from(d.varint()?);
        let length = u32::try_from(d.uvarint()?);
        match (offset, length) {
            (Ok(offset), Ok(length)) => out.push(Span { offset, length }),
            _ => {
                return Err(RecordError::BadHistogram {
                    at,
                    what: "span out of range",
                })
            }
        }
    }
    Ok(out)
}

fn custom(d: &mut Decbuf<'_>, schema: i32) -> Result<Vec<f64>, RecordError> {
    if !is_custom_buckets(schema) {
        return Ok(Vec::new());
    }
    let n = count(d, 8)?;
    (0..n).map(|_| Ok(f64::from_bits(d.be_u64()?))).collect()
}

fn read_int(d: &mut Decbuf<'_>) -> Result<Histogram, RecordError> {
    let counter_reset_hint = hint(d)?;
    let schema = schema(d)?;
    let zero_threshold = f64::from_bits(d.be_u64()?);
    let zero_count = d.uvarint()?;
    let count_field = d.uvarint()?;
    let sum = f64::from_bits(d.be_u64()?);
    let positive_spans = spans(d)?;
    let negative_spans = spans(d)?;
    let mut sides = [Vec::new(), Vec::new()];
    for side in &mut sides {
        let n = count(d, 1)?;
        side.reserve(n);
        for _ in 0..n {
            side.push(d.varint()?);
        }
    }
    let [positive_buckets, negative_buckets] = sides;
    Ok(Histogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count: count_field,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: custom(d, schema)?,
    })
}

fn read_float(d: &mut Decbuf<'_>) -> Result<FloatHistogram, RecordError> {
    let counter_reset_hint = hint(d)?;
    let schema = schema(d)?;
    let zero_threshold = f64::from_bits(d.be_u64()?);
    let zero_count = f64::from_bits(d.be_u64()?);
    let count_field = f64::from_bits(d.be_u64()?);
    let sum = f64::from_bits(d.be_u64()?);
    let positive_spans = spans(d)?;
    let negative_spans = spans(d)?;
    let mut sides = [Vec::new(), Vec::new()];
    for side in &mut sides {
        let n = count(d, 8)?;
        side.reserve(n);
        for _ in 0..n {
            side.push(f64::from_bits(d.be_u64()?));
        }
    }
    let [positive_buckets, negative_buckets] = sides;
    Ok(FloatHistogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count: count_field,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: custom(d, schema)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interner, STALE_NAN_BITS};
    use crate::storage::wal::{decode, Record};
    use proptest::prelude::*;

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::from_bits(STALE_NAN_BITS)),
            Just(-0.0),
            any::<u64>().prop_map(f64::from_bits),
            (0u32..1000).prop_map(f64::from),
        ]
    }

    fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| Span { offset, length }),
            0..4,
        )
    }

    fn arb_hint() -> impl Strategy<Value = CounterResetHint> {
        (0u8..4).prop_map(|v| CounterResetHint::from_u8(v).unwrap_or_default())
    }

    fn arb_schema() -> impl Strategy<Value = i32> {
        prop_oneof![Just(-53), -4i32..=8, any::<i32>()]
    }

    fn arb_value() -> impl Strategy<Value = HistogramValue> {
        let int = (
            arb_hint(),
            arb_schema(),
            arb_f64(),
            any::<u64>(),
            any::<u64>(),
            arb_f64(),
            arb_spans(),
            arb_spans(),
            proptest::collection::vec(any::<i64>(), 0..6),
            proptest::collection::vec(any::<i64>(), 0..6),
            proptest::collection::vec(arb_f64(), 0..4),
        )
            .prop_map(|(hint, schema, zt, zc, c, sum, ps, ns, pb, nb, cv)| {
                HistogramValue::Int(Histogram {
                    counter_reset_hint: hint,
                    schema,
                    zero_threshold: zt,
                    zero_count: zc,
                    count: c,
                    sum,
                    positive_spans: ps,
                    negative_spans: ns,
                    positive_buckets: pb,
                    negative_buckets: nb,
                    custom_values: if schema == -53 { cv } else { Vec::new() },
                })
            });
        let float = (
            arb_hint(),
            arb_schema(),
            proptest::collection::vec(arb_f64(), 4),
            arb_spans(),
            arb_spans(),
            proptest::collection::vec(arb_f64(), 0..6),
            proptest::collection::vec(arb_f64(), 0..6),
            proptest::collection::vec(arb_f64(), 0..4),
        )
            .prop_map(|(hint, schema, f, ps, ns, pb, nb, cv)| {
                HistogramValue::Float(FloatHistogram {
                    counter_reset_hint: hint,
                    schema,
                    zero_threshold: f[0],
                    zero_count: f[1],
                    count: f[2],
                    sum: f[3],
                    positive_spans: ps,
                    negative_spans: ns,
                    positive_buckets: pb,
                    negative_buckets: nb,
                    custom_values: if schema == -53 { cv } else { Vec::new() },
                })
            });
        prop_oneof![int, float]
    }

    /// Bit-level view, so NaN payloads compare equal to themselves.
    fn key(s: &RefHistogramSample) -> String {
        fn f(v: f64) -> u64 {
            v.to_bits()
        }
        match &s.h {
            HistogramValue::Int(h) => format!(
                "{} {} I {:?} {} {} {} {} {} {:?} {:?} {:?} {:?} {:?}",
                s.series_ref.0,
                s.t,
                h.counter_reset_hint,
                h.schema,
                f(h.zero_threshold),
                h.zero_count,
                h.count,
                f(h.sum),
                h.positive_spans,
                h.negative_spans,
                h.positive_buckets,
                h.negative_buckets,
                h.custom_values.iter().map(|v| f(*v)).collect::<Vec<_>>()
            ),
            HistogramValue::Float(h) => format!(
                "{} {} F {:?} {} {} {} {} {} {:?} {:?} {:?} {:?} {:?}",
                s.series_ref.0,
                s.t,
                h.counter_reset_hint,
                h.schema,
                f(h.zero_threshold),
                f(h.zero_count),
                f(h.count),
                f(h.sum),
                h.positive_spans,
                h.negative_spans,
                h.positive_buckets.iter().map(|v| f(*v)).collect::<Vec<_>>(),
                h.negative_buckets.iter().map(|v| f(*v)).collect::<Vec<_>>(),
                h.custom_values.iter().map(|v| f(*v)).collect::<Vec<_>>()
            ),
        }
    }

    proptest! {
        #[test]
        fn prop_histogram_records_round_trip(
            samples in proptest::collection::vec(
                (any::<u64>(), any::<i64>(), arb_value()).prop_map(|(r, t, h)| RefHistogramSample {
                    series_ref: SeriesRef(r), t, h,
                }),
                0..10,
            )
        ) {
            let mut buf = Vec::new();
            let ends = encode_histogram_samples(&samples, &mut buf);
            let mut got = Vec::new();
            let mut start = 0;
            for end in ends {
                match decode(&buf[start..end], &Interner::new()).unwrap() {
                    Record::Histograms(h) => got.extend(h),
                    other => prop_assert!(false, "got {:?}", other),
                }
                start = end;
            }
            prop_assert_eq!(start, buf.len());
            let mut want: Vec<_> = samples.iter().filter(|s| matches!(s.h, HistogramValue::Int(_))).collect();
            want.extend(samples.iter().filter(|s| matches!(s.h, HistogramValue::Float(_))));
            prop_assert_eq!(
                got.iter().map(key).collect::<Vec<_>>(),
                want.iter().map(|s| key(s)).collect::<Vec<_>>()
            );
            // The out-of-order records (10, 11): the same layout.
            let mut buf = Vec::new();
            let mut got = Vec::new();
            let mut start = 0;
            for end in encode_ooo_histogram_samples(&samples, &mut buf) {
                match decode(&buf[start..end], &Interner::new()).unwrap() {
                    Record::OooHistograms(h) => got.extend(h),
                    other => prop_assert!(false, "got {:?}", other),
                }
                start = end;
            }
            prop_assert_eq!(
                got.iter().map(key).collect::<Vec<_>>(),
                want.into_iter().map(key).collect::<Vec<_>>()
            );
        }

        #[test]
        fn prop_histogram_record_arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            typ in 7u8..9,
        ) {
            let mut typed = vec![typ];
            typed.extend_from_slice(&bytes);
            let _ = decode(&typed, &Interner::new());
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        // type 7, ref 0, t 0, dref 0, dt 0, hint 0, schema 0, zt, zc 0,
        // count 0, sum, then a span count of 2^62.
        let mut b = vec![7, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&[0; 8]);
        put_uvarint(&mut b, 1 << 62);
        assert!(matches!(
            decode(&b, &Interner::new()),
            Err(RecordError::BadHistogram { .. })
        ));
    }
}
