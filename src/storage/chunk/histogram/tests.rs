//! Tests of both histogram chunk encodings: round trips (bit-exact,
//! including stale markers, resets, recoding and gauge chunks), the
//! append/recode/cut decisions, and decoding of arbitrary bytes.

use proptest::prelude::*;

use super::super::{
    decode_histograms, CounterResetHeader, Encoding, FloatHistogramAppender, FloatHistogramIter,
    HistogramAppender, HistogramIter,
};
use crate::model::{CounterResetHint, FloatHistogram, Histogram, Span, STALE_NAN};

fn span(offset: i32, length: u32) -> Span {
    Span { offset, length }
}

/// An integer histogram from absolute bucket counts.
fn int_h(schema: i32, spans: Vec<Span>, abs: &[i64], zero: u64) -> Histogram {
    let mut prev = 0;
    let deltas = abs
        .iter()
        .map(|a| {
            let d = a - prev;
            prev = *a;
            d
        })
        .collect();
    let count = abs.iter().sum::<i64>() as u64 + zero;
    Histogram {
        schema,
        zero_threshold: 2f64.powi(-128),
        zero_count: zero,
        count,
        sum: count as f64 * 1.5,
        positive_spans: spans,
        positive_buckets: deltas,
        ..Default::default()
    }
}

/// Non-empty buckets by index, for comparing histograms whose layouts may
/// differ by empty buckets (after a recode).
fn nonzero(spans: &[Span], counts: &[f64]) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    let mut idx = 0i64;
    let mut k = 0;
    for s in spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            if counts[k] != 0.0 {
                out.push((idx, counts[k].to_bits()));
            }
            k += 1;
            idx += 1;
        }
    }
    out
}

fn same(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    if a.is_stale() || b.is_stale() {
        return a.sum.to_bits() == b.sum.to_bits();
    }
    a.schema == b.schema
        && a.zero_threshold == b.zero_threshold
        && a.zero_count.to_bits() == b.zero_count.to_bits()
        && a.count.to_bits() == b.count.to_bits()
        && a.sum.to_bits() == b.sum.to_bits()
        && a.custom_values == b.custom_values
        && nonzero(&a.positive_spans, &a.positive_buckets)
            == nonzero(&b.positive_spans, &b.positive_buckets)
        && nonzero(&a.negative_spans, &a.negative_buckets)
            == nonzero(&b.negative_spans, &b.negative_buckets)
}

/// Appends like the head does: a refused sample starts a new chunk with
/// the header the appender chose. Returns the chunks with their headers.
fn encode_int(samples: &[(i64, Histogram)]) -> Vec<Box<[u8]>> {
    let mut out = Vec::new();
    let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
    for (t, h) in samples {
        if let Err(header) = app.append(*t, h) {
            let full = std::mem::replace(&mut app, HistogramAppender::new(header));
            out.push(full.finish());
            app.append(*t, h).expect("an empty chunk takes any sample");
        }
    }
    if app.num_samples() > 0 {
        out.push(app.finish());
    }
    out
}

fn encode_float(samples: &[(i64, FloatHistogram)]) -> Vec<Box<[u8]>> {
    let mut out = Vec::new();
    let mut app = FloatHistogramAppender::new(CounterResetHeader::Unknown);
    for (t, h) in samples {
        if let Err(header) = app.append(*t, h) {
            let full = std::mem::replace(&mut app, FloatHistogramAppender::new(header));
            out.push(full.finish());
            app.append(*t, h).expect("an empty chunk takes any sample");
        }
    }
    if app.num_samples() > 0 {
        out.push(app.finish());
    }
    out
}

/// One step of a generated series: time step, and what happens.
#[derive(Debug, Clone)]
enum Step {
    /// Buckets grow by these increments (index → increment).
    Grow(Vec<(i8, u8)>),
    /// All counts restart from these.
    Reset(Vec<(i8, u8)>),
    /// A staleness marker.
    Stale,
    /// The schema changes.
    Schema(i8),
    /// A gauge histogram sample.
    Gauge(Vec<(i8, u8)>),
}

fn step() -> impl Strategy<Value = Step> {
    let buckets = proptest::collection::vec((-6i8..6, 0u8..50), 0..6);
    prop_oneof![
        6 => buckets.clone().prop_map(Step::Grow),
        1 => buckets.clone().prop_map(Step::Reset),
        1 => Just(Step::Stale),
        1 => (-4i8..=8).prop_map(Step::Schema),
        1 => buckets.prop_map(Step::Gauge),
    ]
}

/// Builds an integer histogram series from steps: absolute counts per
/// bucket index, spans from the set of indices present.
fn build(steps: &[(u16, Step)]) -> Vec<(i64, Histogram)> {
    let mut counts: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut schema = 0;
    let mut zero = 0u64;
    let mut t = 1_000i64;
    let mut out = Vec::new();
    for (dt, st) in steps {
        t += i64::from(*dt) + 1;
        let mut hint = CounterResetHint::Unknown;
        match st {
            Step::Grow(b) => {
                for (i, inc) in b {
                    *counts.entry(i64::from(*i)).or_default() += i64::from(*inc);
                }
                zero += 1;
            }
            Step::Reset(b) | Step::Gauge(b) => {
                counts.clear();
                zero = 0;
                for (i, c) in b {
                    counts.insert(i64::from(*i), i64::from(*c));
                }
                if matches!(st, Step::Gauge(_)) {
                    hint = CounterResetHint::Gauge;
                }
            }
            Step::Stale => {
                out.push((
                    t,
                    Histogram {
                        sum: STALE_NAN,
                        ..Default::default()
                    },
                ));
                continue;
            }
            Step::Schema(s) => schema = i32::from(*s),
        }
        let idx: Vec<i64> = counts.keys().copied().collect();
        let abs: Vec<i64> = counts.values().copied().collect();
        let mut h = int_h(schema, spans_of(&idx), &abs, zero);
        h.counter_reset_hint = hint;
        out.push((t, h));
    }
    out
}

fn spans_of(idx: &[i64]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut last = 0i64;
    for &b in idx {
        match spans.last_mut() {
            Some(s) if b == last + 1 => s.length += 1,
            Some(_) => spans.push(span((b - last - 1) as i32, 1)),
            None => spans.push(span(b as i32, 1)),
        }
        last = b;
    }
    spans
}

fn decode_int_all(chunks: &[Box<[u8]>]) -> Vec<(i64, Histogram)> {
    let mut out = Vec::new();
    for c in chunks {
        let mut it = HistogramIter::new(&c[..]);
        out.extend(it.by_ref());
        assert_eq!(it.err(), None);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn prop_int_chunks_round_trip_bit_exact(steps in proptest::collection::vec((0u16..100, step()), 1..60)) {
        let samples = build(&steps);
        let chunks = encode_int(&samples);
        let decoded = decode_int_all(&chunks);
        prop_assert_eq!(decoded.len(), samples.len());
        for ((t, h), (dt, dh)) in samples.iter().zip(&decoded) {
            prop_assert_eq!(t, dt);
            prop_assert!(same(&h.to_float(), &dh.to_float()), "{:?}\n{:?}", h, dh);
        }
        // Re-encoding a chunk's decoded samples gives the same bytes.
        for c in &chunks {
            let header = HistogramIter::new(&c[..]).header();
            let mut app = HistogramAppender::new(header);
            for (t, h) in HistogramIter::new(&c[..]) {
                prop_assert!(app.append(t, &h).is_ok());
            }
            prop_assert_eq!(&app.finish()[..], &c[..]);
        }
        // The float view agrees.
        let floats: Vec<_> = chunks
            .iter()
            .flat_map(|c| decode_histograms(Encoding::Histogram, c).unwrap())
            .collect();
        for ((_, h), (_, f)) in decoded.iter().zip(&floats) {
            prop_assert!(same(&h.to_float(), f));
        }
    }

    #[test]
    fn prop_float_chunks_round_trip_bit_exact(steps in proptest::collection::vec((0u16..100, step()), 1..60), scale in prop_oneof![Just(1.0), Just(0.1), Just(1.0/3.0)]) {
        let samples: Vec<(i64, FloatHistogram)> = build(&steps)
            .into_iter()
            .map(|(t, h)| {
                let mut f = h.to_float();
                if !f.is_stale() {
                    f.positive_buckets.iter_mut().for_each(|b| *b *= scale);
                    f.count *= scale;
                    f.zero_count *= scale;
                }
                (t, f)
            })
            .collect();
        let chunks = encode_float(&samples);
        let mut decoded = Vec::new();
        for c in &chunks {
            let mut it = FloatHistogramIter::new(&c[..]);
            decoded.extend(it.by_ref());
            prop_assert_eq!(it.err(), None);
        }
        prop_assert_eq!(decoded.len(), samples.len());
        for ((t, h), (dt, dh)) in samples.iter().zip(&decoded) {
            prop_assert_eq!(t, dt);
            prop_assert!(same(h, dh), "{:?}\n{:?}", h, dh);
        }
        for c in &chunks {
            let header = FloatHistogramIter::new(&c[..]).header();
            let mut app = FloatHistogramAppender::new(header);
            for (t, h) in FloatHistogramIter::new(&c[..]) {
                prop_assert!(app.append(t, &h).is_ok());
            }
            prop_assert_eq!(&app.finish()[..], &c[..]);
        }
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for _ in HistogramIter::new(&bytes[..]) {}
        for _ in FloatHistogramIter::new(&bytes[..]) {}
        let _ = decode_histograms(Encoding::Histogram, &bytes);
        let _ = decode_histograms(Encoding::FloatHistogram, &bytes);
    }

    #[test]
    fn prop_damaged_chunks_never_panic(steps in proptest::collection::vec((0u16..100, step()), 1..30), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let samples = build(&steps);
        for mut c in encode_int(&samples).into_iter().map(Vec::from) {
            for (at, x) in &flips {
                let n = c.len();
                c[at % n] ^= x;
            }
            for _ in HistogramIter::new(&c[..]) {}
            for _ in FloatHistogramIter::new(&c[..]) {}
        }
    }
}

#[test]
fn counter_reset_cuts_with_counter_reset_header() {
    let a = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    let b = int_h(0, vec![span(0, 2)], &[6, 4], 1);
    let chunks = encode_int(&[(1, a.clone()), (2, b)]);
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::CounterReset
    );
    // An explicit hint is honoured even when the counts grow.
    let mut c = int_h(0, vec![span(0, 2)], &[9, 9], 1);
    c.counter_reset_hint = CounterResetHint::CounterReset;
    let chunks = encode_int(&[(1, a), (2, c)]);
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::CounterReset
    );
}

#[test]
fn schema_change_cuts_with_unknown_header() {
    let a = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    let b = int_h(1, vec![span(0, 2)], &[6, 6], 1);
    let chunks = encode_int(&[(1, a), (2, b)]);
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::Unknown
    );
}

#[test]
fn new_bucket_recodes_the_chunk_instead_of_cutting() {
    let a = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    let b = int_h(
        0,
        vec![span(-1, 1), span(0, 2), span(3, 1)],
        &[1, 6, 6, 2],
        1,
    );
    let chunks = encode_int(&[(1, a), (2, b.clone())]);
    assert_eq!(chunks.len(), 1);
    let got: Vec<_> = HistogramIter::new(&chunks[0][..]).collect();
    // The first sample now has the second's layout, with empty buckets.
    assert_eq!(got[0].1.positive_spans, b.positive_spans);
    assert_eq!(got[0].1.positive_buckets, vec![0, 5, 0, -5]);
    assert_eq!(got[1].1.positive_buckets, b.positive_buckets);
    assert_eq!(
        got[1].1.counter_reset_hint,
        CounterResetHint::NotCounterReset
    );
    // A later sample lacking a bucket that is still empty gets it back.
    let c = int_h(0, vec![span(0, 2), span(3, 1)], &[7, 7, 2], 2);
    let chunks = encode_int(&[(1, int_h(0, vec![span(-1, 3)], &[0, 5, 5], 1)), (2, c)]);
    assert_eq!(chunks.len(), 1);
}

#[test]
fn stale_marker_then_value_cuts_and_stale_writes_no_buckets() {
    let a = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    let stale = Histogram {
        sum: STALE_NAN,
        ..Default::default()
    };
    let chunks = encode_int(&[(1, a.clone()), (2, stale.clone()), (3, stale), (4, a)]);
    assert_eq!(chunks.len(), 2);
    let got: Vec<_> = HistogramIter::new(&chunks[0][..]).collect();
    assert_eq!(got.len(), 3);
    assert!(got[1].1.is_stale() && got[2].1.is_stale());
    assert!(got[1].1.positive_spans.is_empty());
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::Unknown
    );
}

#[test]
fn gauge_samples_go_to_gauge_chunks() {
    let mut a = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    a.counter_reset_hint = CounterResetHint::Gauge;
    let mut b = int_h(0, vec![span(1, 2)], &[1, 0], 0);
    b.counter_reset_hint = CounterResetHint::Gauge;
    let counter = int_h(0, vec![span(0, 2)], &[5, 5], 1);
    let chunks = encode_int(&[(1, counter), (2, a), (3, b)]);
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::Gauge
    );
    let got: Vec<_> = HistogramIter::new(&chunks[1][..]).collect();
    assert!(got
        .iter()
        .all(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge));
    // Both samples share the merged layout (buckets 0..=2).
    assert_eq!(got[1].1.positive_spans, vec![span(0, 3)]);
}

#[test]
fn custom_buckets_round_trip() {
    let h = Histogram {
        schema: -53,
        count: 6,
        sum: 3.5,
        positive_spans: vec![span(0, 3)],
        positive_buckets: vec![1, 1, 1],
        custom_values: vec![0.1, 1.0, 2.5],
        ..Default::default()
    };
    let mut h2 = h.clone();
    h2.custom_values = vec![0.2, 1.0, 2.5];
    let chunks = encode_int(&[(1, h.clone()), (2, h.clone()), (3, h2.clone())]);
    // Changed bounds are a counter reset (Prometheus's rule).
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        HistogramIter::new(&chunks[1][..]).header(),
        CounterResetHeader::CounterReset
    );
    let got = decode_int_all(&chunks);
    assert_eq!(got[0].1.custom_values, h.custom_values);
    assert_eq!(got[2].1.custom_values, h2.custom_values);
}

#[test]
fn first_sample_bytes_match_prometheus_layout() {
    // Layout written by hand from Prometheus's histogram_meta.go: header
    // (count 1, flag 0), zero threshold 2^-128 as byte 116, schema 0 as
    // the 1-bit varbit 0, one positive span {offset 0, length 1}, no
    // negative spans, t=0, count=1, zero count=0, sum 1.0, bucket 1.
    let h = Histogram {
        zero_threshold: 2f64.powi(-128),
        count: 1,
        sum: 1.0,
        positive_spans: vec![span(0, 1)],
        positive_buckets: vec![1],
        ..Default::default()
    };
    let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
    app.append(0, &h).unwrap();
    let bytes = app.finish();
    // Bits after the threshold byte: 0 (schema) | 10 001 (1 span) |
    // 10 001 (length 1) | 0 (offset 0) | 0 (no negative spans) | 0 (t) |
    // 10 001 (count 1) | 0 (zero count) | 64 bits of 1.0 | 10 001 (bucket).
    let mut bits = String::from("0");
    bits += "10001";
    bits += "10001";
    bits += "0";
    bits += "0";
    bits += "0";
    bits += "10001";
    bits += "0";
    bits += &format!("{:064b}", 1f64.to_bits());
    bits += "10001";
    while bits.len() % 8 != 0 {
        bits.push('0');
    }
    let mut want = vec![0, 1, 0, 116];
    want.extend(
        bits.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()),
    );
    assert_eq!(&bytes[..], &want[..]);
}
