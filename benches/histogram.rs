//! Native histogram costs per sample: encoding into and decoding from a
//! head histogram chunk (Prometheus's encoding 2), and remote-write 1.0
//! ingest below HTTP (decompress, decode, convert, validate into a storage
//! batch) of a request of 500 histogram series. Histograms are shaped like
//! a client library's latency histogram (schema 3, ~50 populated buckets,
//! 200 observations per 15 s scrape). Throughput is in histogram samples.
//! Bytes per sample are printed by the test
//! `histogram_bytes_per_sample_in_head_chunks_and_blocks`.
//!
//! Run: `cargo bench --bench histogram -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use tidemark::ingest::decode::{decode, decompress, ProtoVersion, Request};
use tidemark::ingest::proto::prometheus as v1;
use tidemark::ingest::validate::{prepare_v1, Rules};
use tidemark::model::{Histogram, Span};
use tidemark::storage::chunk::{CounterResetHeader, HistogramAppender, HistogramIter};

const T: i64 = 1_700_000_000_000;

/// `n` scrapes of one latency histogram (deterministic pseudo-random
/// log-normal observations, schema 3).
fn histograms(seed: u64, n: usize) -> Vec<(i64, Histogram)> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut counts = std::collections::BTreeMap::<i64, u64>::new();
    let (mut count, mut sum) = (0u64, 0.0);
    (0..n)
        .map(|i| {
            for _ in 0..200 {
                let z: f64 = (0..4).map(|_| next()).sum::<f64>() - 2.0;
                let v = (z * 1.2 - 3.0).exp();
                *counts.entry((v.log2() * 8.0).ceil() as i64).or_default() += 1;
                count += 1;
                sum += v;
            }
            let mut spans: Vec<Span> = Vec::new();
            let mut last = 0i64;
            for &b in counts.keys() {
                match spans.last_mut() {
                    Some(s) if b == last + 1 => s.length += 1,
                    Some(_) => spans.push(Span {
                        offset: (b - last - 1) as i32,
                        length: 1,
                    }),
                    None => spans.push(Span {
                        offset: b as i32,
                        length: 1,
                    }),
                }
                last = b;
            }
            let mut prev = 0i64;
            let deltas = counts
                .values()
                .map(|&c| {
                    let d = c as i64 - prev;
                    prev = c as i64;
                    d
                })
                .collect();
            let h = Histogram {
                schema: 3,
                zero_threshold: 2f64.powi(-128),
                count,
                sum,
                positive_spans: spans,
                positive_buckets: deltas,
                ..Default::default()
            };
            (T + i as i64 * 15_000, h)
        })
        .collect()
}

fn chunk(c: &mut Criterion) {
    // About one head chunk's worth (Prometheus cuts at ~1 KiB).
    let samples = histograms(1, 30);
    let mut g = c.benchmark_group("histogram_chunk");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut a = HistogramAppender::new(CounterResetHeader::Unknown);
            for (t, h) in &samples {
                let _ = a.append(*t, black_box(h));
            }
            a.finish()
        })
    });
    let mut a = HistogramAppender::new(CounterResetHeader::Unknown);
    for (t, h) in &samples {
        a.append(*t, h).expect("one layout");
    }
    let bytes = a.finish();
    g.bench_function("decode", |b| {
        b.iter(|| HistogramIter::new(black_box(&bytes[..])).count())
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let series = 500;
    let req = v1::WriteRequest {
        timeseries: (0..series)
            .map(|i| {
                let (t, h) = histograms(i as u64, 1).remove(0);
                v1::TimeSeries {
                    labels: [
                        ("__name__", "http_request_duration_seconds".to_string()),
                        ("handler", format!("/api/{}", i % 50)),
                        ("instance", format!("app-{}:8080", i / 50)),
                        ("job", "app".to_string()),
                    ]
                    .into_iter()
                    .map(|(n, v)| v1::Label {
                        name: Bytes::from(n),
                        value: Bytes::from(v),
                    })
                    .collect(),
                    histograms: vec![v1::Histogram {
                        count: Some(v1::histogram::Count::CountInt(h.count)),
                        zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(0)),
                        sum: h.sum,
                        schema: h.schema,
                        zero_threshold: h.zero_threshold,
                        positive_spans: h
                            .positive_spans
                            .iter()
                            .map(|s| v1::BucketSpan {
                                offset: s.offset,
                                length: s.length,
                            })
                            .collect(),
                        positive_deltas: h.positive_buckets.clone(),
                        timestamp: t,
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let mut g = c.benchmark_group("histogram_ingest");
    g.throughput(Throughput::Elements(series as u64));
    g.bench_function("v1_decode_prepare", |b| {
        b.iter(|| {
            let raw = decompress(black_box(&body), 256 << 20).expect("decompress");
            let Request::V1(r) = decode(ProtoVersion::V1, Bytes::from(raw)).expect("decode") else {
                unreachable!("a 1.0 request");
            };
            let p = prepare_v1(&r, Rules::new(i64::MAX));
            assert_eq!(p.batch.len(), series);
            p
        })
    });
    g.finish();
}

criterion_group!(benches, chunk, ingest);
criterion_main!(benches);
