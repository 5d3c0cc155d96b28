//! Property tests of the remote-write receiver below HTTP: random 1.0 and 2.0
//! requests survive prost + snappy and `decode::{decompress, decode}` bit for
//! bit (StaleNaN and NaN payloads included), `validate::prepare_v1/v2` keep
//! exactly the series a label oracle accepts (sorted labels, samples by bits),
//! and arbitrary or mutated bodies never panic and never store more than
//! what was valid.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use tidemark::ingest::decode::{decode, decompress, ProtoVersion, Request};
use tidemark::ingest::limits::{scan, HISTOGRAM_SAMPLE_WEIGHT};
use tidemark::ingest::proto::{prometheus as v1, write_v2 as v2};
use tidemark::ingest::validate::{
    prepare_plain_v1_cached, prepare_v1, prepare_v2, Prepared, Rules,
};
use tidemark::ingest::wire::{read_plain_v1, read_plain_v1_limited};
use tidemark::ingest::{Error, Limit, Receiver, ReceiverOptions, SeriesCache, WriteLimits};
use tidemark::model::{Labels, STALE_NAN_BITS};
use tidemark::storage::{Db, Options};

/// Decompressed-size limit for these tests: far above any generated body.
const MAX_DECOMPRESSED: usize = 16 << 20;

/// No sample is "too far in the future", so prepare keeps every sample of a
/// valid series.
const NO_FUTURE_LIMIT: Rules = Rules::new(i64::MAX);

/// Raw label pairs as they go on the wire (bytes: may be invalid UTF-8).
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Any f64 bit pattern, weighted towards the ones codecs get wrong.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        1 => Just(f64::from_bits(STALE_NAN_BITS)),
        // NaN with any payload and sign (the low bit keeps it from being ∞).
        1 => any::<u64>().prop_map(|p| f64::from_bits(0x7ff0_0000_0000_0001 | (p & 0x800f_ffff_ffff_ffff))),
        1 => prop::sample::select(vec![0.0, -0.0, 1.0, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, f64::MAX]),
    ]
}

/// The bits a proto3 scalar `double` has after a prost round trip: prost
/// skips a field equal (`==`) to its default 0.0, so -0.0 arrives as +0.0.
/// (gogoproto, which Prometheus uses, does the same.) Oneof and repeated
/// doubles are always written and keep -0.0.
fn wire_bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// A label string: mostly valid UTF-8 (including the empty string), rarely
/// invalid bytes.
fn label_bytes(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(choices).prop_map(|s| s.as_bytes().to_vec()),
        3 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_map(String::into_bytes),
        1 => Just(vec![0xff, b'x', 0xfe]),
    ]
}

const NAMES: &[&str] = &["job", "instance", "le", "a", "", "ünï", "__name__"];
const VALUES: &[&str] = &["", "x", "node", "10.0.0.1:9100", "ü ✓", "+Inf"];

/// A series' label pairs: usually with `__name__`, in random order, with
/// occasional duplicates, empty names/values and invalid UTF-8.
fn series_pairs() -> impl Strategy<Value = Pairs> {
    (
        prop::option::weighted(0.85, "[a-z_:][a-z0-9_:]{0,12}"),
        prop::collection::vec((label_bytes(NAMES), label_bytes(VALUES)), 0..5),
    )
        .prop_map(|(name, mut pairs)| {
            if let Some(n) = name {
                pairs.push((b"__name__".to_vec(), n.into_bytes()));
            }
            pairs
        })
        .prop_shuffle()
}

fn exemplar_pairs() -> impl Strategy<Value = Pairs> {
    prop::collection::vec(
        (
            label_bytes(&["trace_id", "span_id", ""]),
            label_bytes(VALUES),
        ),
        0..3,
    )
}

/// What `build_labels` must make of raw pairs: `None` when the series must
/// be rejected, else the pairs without empty values, sorted by name.
fn oracle_labels(pairs: &Pairs, need_name: bool) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        let n = String::from_utf8(n.clone()).ok()?;
        let v = String::from_utf8(v.clone()).ok()?;
        if !v.is_empty() {
            out.push((n, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.iter().any(|(n, _)| n.is_empty()) || out.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    if need_name && !out.iter().any(|(n, _)| n == "__name__") {
        return None;
    }
    Some(out)
}

fn label_vec(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

/// Histogram fields shared by the 1.0 and 2.0 messages.
#[derive(Debug, Clone)]
struct Hist {
    count: Option<Result<u64, f64>>,
    sum: f64,
    schema: i32,
    zero_threshold: f64,
    zero_count: Option<Result<u64, f64>>,
    neg_spans: Vec<(i32, u32)>,
    neg_deltas: Vec<i64>,
    neg_counts: Vec<f64>,
    pos_spans: Vec<(i32, u32)>,
    pos_deltas: Vec<i64>,
    pos_counts: Vec<f64>,
    reset_hint: i32,
    t: i64,
    custom_values: Vec<f64>,
    start_t: i64,
}

fn int_or_float() -> impl Strategy<Value = Option<Result<u64, f64>>> {
    prop::option::of(prop_oneof![
        any::<u64>().prop_map(Ok),
        any_f64().prop_map(Err)
    ])
}

fn hist() -> impl Strategy<Value = Hist> {
    let spans = || prop::collection::vec((any::<i32>(), any::<u32>()), 0..3);
    let floats = || prop::collection::vec(any_f64(), 0..3);
    (
        (
            int_or_float(),
            any_f64(),
            -53..9i32,
            any_f64(),
            int_or_float(),
        ),
        (spans(), prop::collection::vec(any::<i64>(), 0..3), floats()),
        (spans(), prop::collection::vec(any::<i64>(), 0..3), floats()),
        (0..5i32, any::<i64>(), floats(), any::<i64>()),
    )
        .prop_map(
            |(
                (count, sum, schema, zero_threshold, zero_count),
                (neg_spans, neg_deltas, neg_counts),
                (pos_spans, pos_deltas, pos_counts),
                (reset_hint, t, custom_values, start_t),
            )| Hist {
                count,
                sum,
                schema,
                zero_threshold,
                zero_count,
                neg_spans,
                neg_deltas,
                neg_counts,
                pos_spans,
                pos_deltas,
                pos_counts,
                reset_hint,
                t,
                custom_values,
                start_t,
            },
        )
}

/// Builds the `Histogram` of package `$m` (`v1` or `v2`) from a [`Hist`],
/// plus the package's own fields.
macro_rules! histogram {
    ($m:ident, $h:expr $(, $field:ident: $value:expr)*) => {{
        let h: &Hist = $h;
        let spans = |s: &[(i32, u32)]| {
            s.iter()
                .map(|&(offset, length)| $m::BucketSpan { offset, length })
                .collect::<Vec<_>>()
        };
        $m::Histogram {
            count: h.count.map(|c| match c {
                Ok(i) => $m::histogram::Count::CountInt(i),
                Err(f) => $m::histogram::Count::CountFloat(f),
            }),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count.map(|c| match c {
                Ok(i) => $m::histogram::ZeroCount::ZeroCountInt(i),
                Err(f) => $m::histogram::ZeroCount::ZeroCountFloat(f),
            }),
            negative_spans: spans(&h.neg_spans),
            negative_deltas: h.neg_deltas.clone(),
            negative_counts: h.neg_counts.clone(),
            positive_spans: spans(&h.pos_spans),
            positive_deltas: h.pos_deltas.clone(),
            positive_counts: h.pos_counts.clone(),
            reset_hint: h.reset_hint,
            timestamp: h.t,
            custom_values: h.custom_values.clone(),
            $($field: $value,)*
        }
    }};
}

/// One generated series, before it is put into either wire format.
#[derive(Debug, Clone)]
struct GenSeries {
    labels: Pairs,
    /// (timestamp, value, start timestamp — 2.0 only).
    samples: Vec<(i64, f64, i64)>,
    exemplars: Vec<(Pairs, f64, i64)>,
    histograms: Vec<Hist>,
    /// 2.0 only: (type, help, unit).
    metadata: Option<(i32, String, String)>,
    /// 2.0 only: break `labels_refs` (odd length or out-of-range ref).
    corrupt_refs: Option<bool>,
}

fn gen_series() -> impl Strategy<Value = GenSeries> {
    (
        series_pairs(),
        prop::collection::vec((any::<i64>(), any_f64(), any::<i64>()), 0..5),
        prop::collection::vec((exemplar_pairs(), any_f64(), any::<i64>()), 0..3),
        prop::collection::vec(hist(), 0..2),
        prop::option::of((0..9i32, "[ -~]{0,8}", "[a-z]{0,4}")),
        prop::option::weighted(0.1, any::<bool>()),
    )
        .prop_map(
            |(labels, samples, exemplars, histograms, metadata, corrupt_refs)| GenSeries {
                labels,
                samples,
                exemplars,
                histograms,
                metadata,
                corrupt_refs,
            },
        )
}

/// 1.0 request-level metadata: (type, family name, help, unit).
type Meta1 = (i32, String, String, String);

fn gen_request() -> impl Strategy<Value = (Vec<GenSeries>, Vec<Meta1>)> {
    (
        prop::collection::vec(gen_series(), 0..8),
        prop::collection::vec((0..9i32, "[a-z_]{0,10}", "[ -~]{0,10}", "[a-z]{0,5}"), 0..3),
    )
}

fn v1_label(n: &[u8], v: &[u8]) -> v1::Label {
    v1::Label {
        name: Bytes::copy_from_slice(n),
        value: Bytes::copy_from_slice(v),
    }
}

/// The 1.0 request for generated series (2.0-only parts ignored).
fn to_v1(series: &[GenSeries], metadata: &[Meta1]) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s.labels.iter().map(|(n, v)| v1_label(n, v)).collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|&(t, v, _)| v1::Sample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|(l, v, t)| v1::Exemplar {
                        labels: l.iter().map(|(n, v)| v1_label(n, v)).collect(),
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
                histograms: s.histograms.iter().map(|h| histogram!(v1, h)).collect(),
            })
            .collect(),
        metadata: metadata
            .iter()
            .map(|(t, name, help, unit)| v1::MetricMetadata {
                r#type: *t,
                metric_family_name: name.clone(),
                help: help.clone(),
                unit: unit.clone(),
            })
            .collect(),
    }
}

/// A 2.0 symbol table under construction: "" first, each string once.
struct Symbols {
    table: Vec<Bytes>,
    index: HashMap<Vec<u8>, u32>,
}

impl Symbols {
    fn new() -> Self {
        let mut s = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.get(b"");
        s
    }

    fn get(&mut self, b: &[u8]) -> u32 {
        if let Some(&r) = self.index.get(b) {
            return r;
        }
        let r = self.table.len() as u32;
        self.table.push(Bytes::copy_from_slice(b));
        self.index.insert(b.to_vec(), r);
        r
    }

    fn refs(&mut self, pairs: &Pairs) -> Vec<u32> {
        pairs
            .iter()
            .flat_map(|(n, v)| [self.get(n), self.get(v)])
            .collect()
    }
}

/// The 2.0 request for generated series (request-level metadata ignored).
fn to_v2(series: &[GenSeries]) -> v2::Request {
    let mut sym = Symbols::new();
    let timeseries = series
        .iter()
        .map(|s| {
            let mut labels_refs = sym.refs(&s.labels);
            match s.corrupt_refs {
                Some(true) => labels_refs.push(0),
                Some(false) => labels_refs.extend([u32::MAX, 0]),
                None => {}
            }
            v2::TimeSeries {
                created_timestamp: 0,
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|&(t, v, st)| v2::Sample {
                        value: v,
                        timestamp: t,
                        start_timestamp: st,
                    })
                    .collect(),
                histograms: s
                    .histograms
                    .iter()
                    .map(|h| histogram!(v2, h, start_timestamp: h.start_t))
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|(l, v, t)| v2::Exemplar {
                        labels_refs: sym.refs(l),
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
                metadata: s.metadata.as_ref().map(|(t, help, unit)| v2::Metadata {
                    r#type: *t,
                    help_ref: sym.get(help.as_bytes()),
                    unit_ref: sym.get(unit.as_bytes()),
                }),
            }
        })
        .collect();
    v2::Request {
        symbols: sym.table,
        timeseries,
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any input below 4 GiB")
}

/// Prepared output in comparable form: batch as (labels, [(t, bits)]),
/// exemplars as (series, labels, bits, t), metadata names.
type Canon = (
    Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>,
    Vec<(Vec<(String, String)>, Vec<(String, String)>, u64, i64)>,
    usize,
    usize,
    usize,
);

fn canon(p: &Prepared) -> Canon {
    (
        p.batch
            .iter()
            .map(|s| {
                (
                    label_vec(&s.labels),
                    s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
                )
            })
            .collect(),
        p.exemplars
            .iter()
            .map(|e| {
                (
                    label_vec(&e.series),
                    label_vec(&e.labels),
                    e.value.to_bits(),
                    e.t,
                )
            })
            .collect(),
        p.samples_received,
        p.histograms_received,
        p.rejected.values().sum(),
    )
}

/// What prepare must produce for generated series, from the label oracle.
/// `v2` adds the broken-refs rule.
/// Whether the receiver keeps a generated histogram: not before 1970 and
/// structurally valid (the conversion from the wire is the 1.0 one; 2.0's
/// has the same fields).
fn hist_is_kept(h: &Hist) -> bool {
    let (t, value) = tidemark::ingest::histogram::from_v1(&histogram!(v1, h));
    t >= 0 && value.validate().is_ok()
}

fn expected(series: &[GenSeries], v2: bool) -> Canon {
    let (mut batch, mut exemplars) = (Vec::new(), Vec::new());
    let (mut samples, mut histograms, mut rejected) = (0, 0, 0);
    for s in series {
        samples += s.samples.len();
        histograms += s.histograms.len();
        let labels = if v2 && s.corrupt_refs.is_some() {
            None
        } else {
            oracle_labels(&s.labels, true)
        };
        let Some(labels) = labels else {
            rejected += s.samples.len() + s.histograms.len();
            continue;
        };
        // A generated histogram is rarely valid, but can be (no buckets,
        // a valid schema and zero threshold): kept when its time is not
        // before 1970 and it passes the structural rules.
        let kept_h = s.histograms.iter().filter(|h| hist_is_kept(h)).count();
        rejected += s.histograms.len() - kept_h;
        for (l, v, t) in &s.exemplars {
            if let Some(el) = oracle_labels(l, false) {
                exemplars.push((labels.clone(), el, wire_bits(*v), *t));
            }
        }
        // Samples before 1970 are refused (reason before_1970).
        let before_epoch = s.samples.iter().filter(|&&(t, _, _)| t < 0).count();
        rejected += before_epoch;
        if s.samples.len() > before_epoch || kept_h > 0 {
            let got = s.samples.iter().filter(|&&(t, _, _)| t >= 0);
            batch.push((labels, got.map(|&(t, v, _)| (t, wire_bits(v))).collect()));
        }
    }
    (batch, exemplars, samples, histograms, rejected)
}

fn sample_bits_v1(r: &v1::WriteRequest) -> Vec<Vec<(i64, u64)>> {
    let s = r.timeseries.iter();
    s.map(|ts| {
        let x = ts.samples.iter();
        x.map(|x| (x.timestamp, x.value.to_bits())).collect()
    })
    .collect()
}

fn sample_bits_v2(r: &v2::Request) -> Vec<Vec<(i64, u64)>> {
    let s = r.timeseries.iter();
    s.map(|ts| {
        let x = ts.samples.iter();
        x.map(|x| (x.timestamp, x.value.to_bits())).collect()
    })
    .collect()
}

fn gen_sample_bits(series: &[GenSeries]) -> Vec<Vec<(i64, u64)>> {
    let s = series.iter();
    s.map(|s| {
        s.samples
            .iter()
            .map(|&(t, v, _)| (t, wire_bits(v)))
            .collect()
    })
    .collect()
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    /// 1.0: prost + snappy → decompress + decode gives back the same message
    /// (compared by re-encoding, so every double is compared by bits), and
    /// prepare keeps exactly the oracle's series, labels sorted, samples
    /// bit-exact (StaleNaN and NaN payloads survive).
    #[test]
    fn prop_v1_encode_decode_round_trip((series, metadata) in gen_request()) {
        let req = to_v1(&series, &metadata);
        let wire = req.encode_to_vec();
        let raw = decompress(&snappy(&wire), MAX_DECOMPRESSED).unwrap();
        prop_assert_eq!(&raw, &wire);
        let Request::V1(got) = decode(ProtoVersion::V1, Bytes::from(raw)).unwrap() else {
            panic!("decode(V1) returned a 2.0 request");
        };
        prop_assert_eq!(got.encode_to_vec(), wire);
        prop_assert_eq!(sample_bits_v1(&got), gen_sample_bits(&series));
        for (g, s) in got.timeseries.iter().zip(&series) {
            let labels: Pairs = g.labels.iter().map(|l| (l.name.to_vec(), l.value.to_vec())).collect();
            prop_assert_eq!(&labels, &s.labels);
        }

        let p = prepare_v1(&got, NO_FUTURE_LIMIT);
        prop_assert_eq!(canon(&p), expected(&series, false));
        let names: Vec<&str> = p.metadata.iter().map(|m| m.metric.as_str()).collect();
        let want: Vec<&str> = metadata.iter().map(|m| m.1.as_str()).collect();
        prop_assert_eq!(names, want);
    }

    /// The in-place reader of plain 1.0 requests prepares exactly what
    /// prost's message of the same bytes prepares, cache and all (twice:
    /// labels built, then from the cache); requests it cannot read (metadata,
    /// exemplars, histograms) are left to prost.
    #[test]
    fn prop_plain_v1_reader_prepares_what_prost_prepares((series, metadata) in gen_request()) {
        let wire = to_v1(&series, &metadata).encode_to_vec();
        let Request::V1(prost) = decode(ProtoVersion::V1, Bytes::from(wire.clone())).unwrap() else {
            panic!("decode(V1) returned a 2.0 request");
        };
        let plain_shape = prost.metadata.is_empty()
            && prost.timeseries.iter().all(|t| t.exemplars.is_empty() && t.histograms.is_empty());
        let plain = read_plain_v1(&wire);
        prop_assert_eq!(plain.is_some(), plain_shape);
        if let Some(plain) = plain {
            let cache = SeriesCache::new(1 << 16);
            let want = canon(&prepare_v1(&prost, NO_FUTURE_LIMIT));
            // The second round reads the series the first one appended
            // from the cache, as the receiver fills it.
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), Options::default()).unwrap();
            for _ in 0..2 {
                let got = prepare_plain_v1_cached(&plain, NO_FUTURE_LIMIT, &cache);
                prop_assert_eq!(canon(&got), want.clone());
                let (_, resolved) = db.append_hinted(&got.batch, &vec![None; got.batch.len()]).unwrap();
                for (i, series) in resolved {
                    if let Some(Some(slot)) = got.slots.get(i) {
                        cache.set_series(slot.key, series);
                    }
                }
            }
        }
    }

    /// 2.0: the same round trip with a symbol table ("" first), labels_refs,
    /// start timestamps, per-series metadata and exemplars; broken refs
    /// reject only their own series.
    #[test]
    fn prop_v2_encode_decode_round_trip((series, _) in gen_request()) {
        let req = to_v2(&series);
        let wire = req.encode_to_vec();
        let raw = decompress(&snappy(&wire), MAX_DECOMPRESSED).unwrap();
        let Request::V2(got) = decode(ProtoVersion::V2, Bytes::from(raw)).unwrap() else {
            panic!("decode(V2) returned a 1.0 request");
        };
        prop_assert_eq!(got.encode_to_vec(), wire);
        prop_assert_eq!(&got.symbols, &req.symbols);
        prop_assert!(got.symbols.first().is_some_and(|s| s.is_empty()));
        prop_assert_eq!(sample_bits_v2(&got), gen_sample_bits(&series));
        for (g, s) in got.timeseries.iter().zip(&series) {
            let st: Vec<i64> = g.samples.iter().map(|x| x.start_timestamp).collect();
            let want: Vec<i64> = s.samples.iter().map(|x| x.2).collect();
            prop_assert_eq!(st, want);
        }

        let p = prepare_v2(&got, NO_FUTURE_LIMIT);
        prop_assert_eq!(canon(&p), expected(&series, true));
        let want_meta: Vec<(String, String, String)> = series
            .iter()
            .filter(|s| s.corrupt_refs.is_none())
            .filter_map(|s| {
                let labels = oracle_labels(&s.labels, true)?;
                let (_, help, unit) = s.metadata.clone()?;
                let name = labels.into_iter().find(|l| l.0 == "__name__")?.1;
                Some((name, help, unit))
            })
            .collect();
        let got_meta: Vec<(String, String, String)> = p
            .metadata
            .iter()
            .map(|m| (m.metric.clone(), m.help.clone(), m.unit.clone()))
            .collect();
        prop_assert_eq!(got_meta, want_meta);
    }

    /// Arbitrary bytes, as a snappy body and as a decompressed protobuf of
    /// either version, never panic anywhere from decompress to prepare.
    #[test]
    fn prop_decode_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        max_t in any::<i64>(),
    ) {
        let rules = Rules::new(max_t);
        let raw = decompress(&bytes, MAX_DECOMPRESSED).unwrap_or_default();
        for body in [bytes.clone(), raw] {
            // Whatever the in-place reader accepts, prost reads the same.
            if let Some(plain) = read_plain_v1(&body) {
                let Ok(Request::V1(r)) = decode(ProtoVersion::V1, Bytes::from(body.clone())) else {
                    panic!("the plain reader accepted bytes prost refuses");
                };
                let got = prepare_plain_v1_cached(&plain, rules, &SeriesCache::new(64));
                prop_assert_eq!(canon(&got), canon(&prepare_v1(&r, rules)));
            }
            for version in [ProtoVersion::V1, ProtoVersion::V2] {
                match decode(version, Bytes::from(body.clone())) {
                    Ok(Request::V1(r)) => drop(prepare_v1(&r, rules)),
                    Ok(Request::V2(r)) => drop(prepare_v2(&r, rules)),
                    Err(e) => prop_assert!(matches!(e, Error::Protobuf { .. }), "{e}"),
                }
            }
        }
    }
}

/// One way to damage a body.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at the index with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Cut the body at the index.
    Truncate(prop::sample::Index),
    /// Insert bytes at the index.
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        2 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, mask) if !body.is_empty() => {
            let i = i.index(body.len());
            body[i] ^= mask;
        }
        Mutation::Flip(..) => {}
        Mutation::Truncate(i) => body.truncate(i.index(body.len() + 1)),
        Mutation::Insert(i, b) => {
            let at = i.index(body.len() + 1);
            body.splice(at..at, b.iter().copied());
        }
    }
}

/// Moves every timestamp into the hour before `now` (in order per series),
/// so that mutated bodies reach storage instead of all being too far in the
/// future.
fn tame(series: &mut [GenSeries], now: i64) {
    for s in series {
        let mut ts: Vec<i64> = s
            .samples
            .iter()
            .map(|x| now - x.0.rem_euclid(3_600_000))
            .collect();
        ts.sort_unstable();
        for (x, t) in s.samples.iter_mut().zip(ts) {
            x.0 = t;
        }
    }
}

/// Valid bodies of either version, damaged before or after snappy, go
/// through the full `Receiver::write` into a real `Db`: no panic; either a
/// named whole-request error that stores nothing, or an outcome whose counts
/// add up and which stores no more samples than the decoded body's valid
/// series carry.
#[test]
fn prop_mutated_valid_bodies_never_panic_and_store_only_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let opts = ReceiverOptions {
        max_decompressed_bytes: 1 << 20,
        ..ReceiverOptions::default()
    };
    let receiver = Receiver::new(db.clone(), opts.clone());
    let now = 1_700_000_000_000;
    let rules = Rules::new(now + opts.max_future_ms);
    let strategy = (
        gen_request(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(mutation(), 1..4),
    );
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(
            &strategy,
            |((mut series, metadata), is_v2, after_snappy, mutations)| {
                tame(&mut series, now);
                let (version, mut wire) = if is_v2 {
                    (ProtoVersion::V2, to_v2(&series).encode_to_vec())
                } else {
                    (ProtoVersion::V1, to_v1(&series, &metadata).encode_to_vec())
                };
                let body = if after_snappy {
                    let mut body = snappy(&wire);
                    mutations.iter().for_each(|m| mutate(&mut body, m));
                    body
                } else {
                    mutations.iter().for_each(|m| mutate(&mut wire, m));
                    snappy(&wire)
                };

                // What a correct receiver may store: the valid series of the
                // body as decoded independently.
                let prepared = decompress(&body, opts.max_decompressed_bytes)
                    .ok()
                    .and_then(|raw| decode(version, Bytes::from(raw)).ok())
                    .map(|r| match r {
                        Request::V1(r) => prepare_v1(&r, rules),
                        Request::V2(r) => prepare_v2(&r, rules),
                    });

                let before = db.head_stats().samples;
                let result = receiver.write(version, &body, now);
                let stored = db.head_stats().samples - before;
                match (result, prepared) {
                    (Ok(o), Some(p)) => {
                        prop_assert_eq!(o.samples_received, p.samples_received);
                        prop_assert_eq!(o.histograms_received, p.histograms_received);
                        prop_assert_eq!(
                            o.samples_written + o.rejected_total(),
                            o.samples_received + o.histograms_received
                        );
                        let valid: usize = p.batch.iter().map(|s| s.samples.len()).sum();
                        prop_assert!(o.samples_written <= valid);
                        prop_assert!(stored <= o.samples_written);
                    }
                    (Err(e), None) => {
                        prop_assert!(
                            matches!(
                                e,
                                Error::Snappy { .. }
                                    | Error::Protobuf { .. }
                                    | Error::DecompressedTooLarge { .. }
                            ),
                            "unexpected whole-request error: {e}"
                        );
                        prop_assert_eq!(stored, 0);
                    }
                    (r, p) => prop_assert!(
                        false,
                        "receiver and independent decode disagree: {:?} vs decodable={}",
                        r.map(|o| o.samples_written),
                        p.is_some()
                    ),
                }
                Ok(())
            },
        )
        .unwrap();
}

/// The counts the whole-request limits apply to, from a decoded request:
/// (samples with histogram weights, series, label pairs, exemplars,
/// metadata entries).
fn counts(r: &Request) -> [usize; 5] {
    let hist = |spans: usize, deltas: usize, counts: usize| {
        HISTOGRAM_SAMPLE_WEIGHT + spans + deltas + counts
    };
    let refs = |n: usize| n.div_ceil(2);
    match r {
        Request::V1(r) => [
            r.timeseries
                .iter()
                .map(|s| {
                    s.samples.len()
                        + s.histograms
                            .iter()
                            .map(|h| {
                                hist(
                                    h.negative_spans.len() + h.positive_spans.len(),
                                    h.negative_deltas.len() + h.positive_deltas.len(),
                                    h.negative_counts.len()
                                        + h.positive_counts.len()
                                        + h.custom_values.len(),
                                )
                            })
                            .sum::<usize>()
                })
                .sum(),
            r.timeseries.len(),
            r.timeseries
                .iter()
                .map(|s| s.labels.len() + s.exemplars.iter().map(|e| e.labels.len()).sum::<usize>())
                .sum(),
            r.timeseries.iter().map(|s| s.exemplars.len()).sum(),
            r.metadata.len(),
        ],
        Request::V2(r) => [
            r.timeseries
                .iter()
                .map(|s| {
                    s.samples.len()
                        + s.histograms
                            .iter()
                            .map(|h| {
                                hist(
                                    h.negative_spans.len() + h.positive_spans.len(),
                                    h.negative_deltas.len() + h.positive_deltas.len(),
                                    h.negative_counts.len()
                                        + h.positive_counts.len()
                                        + h.custom_values.len(),
                                )
                            })
                            .sum::<usize>()
                })
                .sum(),
            r.timeseries.len(),
            r.symbols.len()
                + r.timeseries
                    .iter()
                    .map(|s| {
                        refs(s.labels_refs.len())
                            + s.exemplars
                                .iter()
                                .map(|e| refs(e.labels_refs.len()))
                                .sum::<usize>()
                    })
                    .sum::<usize>(),
            r.timeseries.iter().map(|s| s.exemplars.len()).sum(),
            r.timeseries.iter().filter(|s| s.metadata.is_some()).count(),
        ],
    }
}

const COUNTED: [Limit; 5] = [
    Limit::SamplesPerRequest,
    Limit::SeriesPerRequest,
    Limit::LabelsPerRequest,
    Limit::ExemplarsPerRequest,
    Limit::MetadataPerRequest,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The pre-scan refuses a request exactly when one of its counts is
    /// over its limit, and names a limit that is exceeded; on plain 1.0
    /// bodies the in-place reader refuses the same requests with the same
    /// limit.
    #[test]
    fn prop_scan_counts_what_prost_decodes(
        (series, metadata) in gen_request(),
        is_v2 in any::<bool>(),
        maxes in prop::array::uniform5(0usize..40),
    ) {
        let (version, body) = if is_v2 {
            (ProtoVersion::V2, to_v2(&series).encode_to_vec())
        } else {
            (ProtoVersion::V1, to_v1(&series, &metadata).encode_to_vec())
        };
        let limits = WriteLimits {
            max_samples_per_request: maxes[0],
            max_series_per_request: maxes[1],
            max_labels_per_request: maxes[2],
            max_exemplars_per_request: maxes[3],
            max_metadata_per_request: maxes[4],
            ..WriteLimits::DEFAULT
        };
        let decoded = decode(version, Bytes::from(body.clone())).unwrap();
        let have = counts(&decoded);
        let over: Vec<Limit> = COUNTED
            .iter()
            .zip(have.iter().zip(maxes))
            .filter(|(_, (n, max))| **n > *max)
            .map(|(l, _)| *l)
            .collect();
        let scanned = scan(version, &body, &limits);
        match &scanned {
            Ok(()) => prop_assert!(over.is_empty(), "scan passed over {over:?} ({have:?})"),
            Err(Error::TooMany { limit, max }) => {
                prop_assert!(over.contains(limit), "{limit:?} named, over {over:?} ({have:?})");
                prop_assert_eq!(*max, limits.get(*limit));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        if !is_v2 && read_plain_v1(&body).is_some() {
            let limit_of = |r: Result<(), Error>| match r {
                Err(Error::TooMany { limit, .. }) => Some(limit),
                _ => None,
            };
            let read = read_plain_v1_limited(&body, &limits).map(|_| ());
            prop_assert_eq!(limit_of(read), limit_of(scanned));
        }
    }
}

/// The case the v2 round trip once shrank to: a generated histogram that
/// happens to be valid (no count, no buckets) is kept, not rejected, and
/// the oracle must say so in both formats.
#[test]
fn a_valid_generated_histogram_is_kept_in_both_formats() {
    let h = Hist {
        count: None,
        sum: 0.0,
        schema: 0,
        zero_threshold: 0.0,
        zero_count: None,
        neg_spans: Vec::new(),
        neg_deltas: Vec::new(),
        neg_counts: Vec::new(),
        pos_spans: Vec::new(),
        pos_deltas: Vec::new(),
        pos_counts: Vec::new(),
        reset_hint: 0,
        t: 0,
        custom_values: Vec::new(),
        start_t: 0,
    };
    let series = vec![GenSeries {
        labels: vec![(b"__name__".to_vec(), b"a".to_vec())],
        samples: Vec::new(),
        exemplars: Vec::new(),
        histograms: vec![h],
        metadata: None,
        corrupt_refs: None,
    }];
    assert!(hist_is_kept(&series[0].histograms[0]));
    let Request::V2(v2req) = decode(
        ProtoVersion::V2,
        Bytes::from(to_v2(&series).encode_to_vec()),
    )
    .unwrap() else {
        panic!("decode(V2) returned a 1.0 request");
    };
    let p = prepare_v2(&v2req, NO_FUTURE_LIMIT);
    assert_eq!(canon(&p), expected(&series, true));
    assert_eq!(p.batch.first().map(|s| s.histograms.len()), Some(1));
    let p = prepare_v1(&to_v1(&series, &[]), NO_FUTURE_LIMIT);
    assert_eq!(canon(&p), expected(&series, false));
}
