//! Chunk codec benchmarks: encode and decode one head-sized chunk
//! ([`SAMPLES_PER_CHUNK`] samples) of a counter, a gauge and a constant,
//! as XOR chunks (the head's) and as packed chunks (the blocks').
//! Throughput is in samples, so criterion reports samples/s.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use tidemark::model::Sample;
use tidemark::storage::chunk::{
    decode_packed, encode_packed, pack_full, XorAppender, XorIter, SAMPLES_PER_CHUNK,
};

/// `(name, samples)` for each series shape, 15s scrape interval with a few
/// milliseconds of jitter as real scrapes have.
fn series() -> Vec<(&'static str, Vec<(i64, f64)>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut t = 1_700_000_000_000i64;
    let ts: Vec<i64> = (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            t += 15_000 + rng.gen_range(-5..=5);
            t
        })
        .collect();
    let mut c = 12_345.0;
    let counter = ts
        .iter()
        .map(|&t| {
            c += f64::from(rng.gen_range(0..50u32));
            (t, c)
        })
        .collect();
    let mut g = 0.5f64;
    let gauge = ts
        .iter()
        .map(|&t| {
            g = (g + rng.gen_range(-0.05..0.05)).clamp(0.0, 1.0);
            (t, g)
        })
        .collect();
    let constant = ts.iter().map(|&t| (t, 1.0)).collect();
    vec![
        ("counter", counter),
        ("gauge", gauge),
        ("constant", constant),
    ]
}

fn encode(samples: &[(i64, f64)]) -> Box<[u8]> {
    let mut a = XorAppender::new();
    for &(t, v) in samples {
        a.append(t, v);
    }
    a.finish()
}

fn chunk_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk_encode");
    for (name, samples) in series() {
        g.throughput(Throughput::Elements(samples.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &samples, |b, s| {
            b.iter(|| encode(black_box(s)))
        });
    }
    g.finish();
}

fn chunk_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk_decode");
    for (name, samples) in series() {
        let bytes = encode(&samples);
        g.throughput(Throughput::Elements(samples.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut sum = 0.0;
                for s in XorIter::new(black_box(&bytes[..])) {
                    sum += s.v;
                }
                sum
            })
        });
    }
    g.finish();
}

fn packed_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("packed_decode");
    for (name, samples) in series() {
        let samples: Vec<Sample> = samples.iter().map(|&(t, v)| Sample::new(t, v)).collect();
        let bytes = encode_packed(&samples);
        g.throughput(Throughput::Elements(samples.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| {
                decode_packed(black_box(&bytes[..]))
                    .expect("decodes")
                    .iter()
                    .map(|s| s.v)
                    .sum::<f64>()
            })
        });
    }
    g.finish();
}

/// What the head pays when it cuts a full chunk: the XOR chunk decoded,
/// packed, and the smaller kept (`chunk::pack_full`), per sample; printed
/// once per shape are the bytes before and after.
fn head_pack_full(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_pack_full");
    for (name, samples) in series() {
        let xor = encode(&samples).into_vec();
        let (encoding, packed) = pack_full(xor.clone());
        eprintln!(
            "head_pack_full/{name}: {} XOR bytes -> {} bytes {encoding:?}",
            xor.len(),
            packed.len()
        );
        g.throughput(Throughput::Elements(samples.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &xor, |b, xor| {
            b.iter(|| pack_full(black_box(xor.clone())))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    chunk_encode,
    chunk_decode,
    packed_decode,
    head_pack_full
);
criterion_main!(benches);
