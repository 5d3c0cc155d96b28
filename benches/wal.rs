//! WAL samples record benchmarks: 200 batches of 2,000 node_exporter-like
//! float samples (decimal counters and gauges, constants, a few binary
//! fractions; 15 s scrapes with a few ms of jitter), encoded as the
//! snappy-compressed samples record (type 12 around type 2, what the WAL
//! wrote before format version 7) and as the run-chained samples record
//! (type 14, what `SampleChain::encode` writes since version 8; "chained"
//! below, type 13 before), then decoded. Throughput is in samples; each
//! case also prints the bytes per sample it writes.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use tidemark::model::Interner;
use tidemark::storage::wal::{compress_record, decode, encode_samples, RefSample, SampleChain};
use tidemark::storage::SeriesRef;

const SERIES: u64 = 2_000;
const BATCHES: i64 = 200;

fn batches() -> Vec<Vec<RefSample>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut values: Vec<f64> = (0..SERIES)
        .map(|r| (r * 1_117 % 90_000) as f64 / 100.0)
        .collect();
    (0..BATCHES)
        .map(|k| {
            let t = 1_700_000_000_000 + k * 15_000 + rng.gen_range(0..=5);
            (0..SERIES)
                .map(|r| {
                    let v = &mut values[r as usize];
                    *v = match r % 8 {
                        // Counters in hundredths (CPU seconds) and bytes.
                        0..=2 => {
                            (*v * 100.0 + f64::from(rng.gen_range(0..2_000u32))).round() / 100.0
                        }
                        3 => (*v + f64::from(rng.gen_range(0..1_000_000u32))).round(),
                        // A gauge in thousandths, a constant, a flag.
                        4 => (f64::from(rng.gen_range(0..4_000u32))) / 1_000.0,
                        5 => 0.0,
                        6 => 1.0,
                        // A binary fraction (no short decimal).
                        _ => rng.gen::<f64>(),
                    };
                    RefSample {
                        series_ref: SeriesRef(1_000 + r),
                        t,
                        v: *v,
                    }
                })
                .collect()
        })
        .collect()
}

fn snappy_records(batches: &[Vec<RefSample>]) -> Vec<Vec<u8>> {
    let mut plain = Vec::new();
    let mut out = Vec::new();
    batches
        .iter()
        .map(|b| {
            plain.clear();
            encode_samples(b, &mut plain);
            if compress_record(&plain, &mut out) {
                out.clone()
            } else {
                plain.clone()
            }
        })
        .collect()
}

fn chained_records(batches: &[Vec<RefSample>]) -> Vec<Vec<u8>> {
    let mut chain = SampleChain::new();
    batches
        .iter()
        .map(|b| {
            let mut buf = Vec::new();
            chain.encode(b, &mut buf);
            buf
        })
        .collect()
}

fn bench_wal_records(c: &mut Criterion) {
    let batches = batches();
    let samples = (SERIES * BATCHES as u64) as f64;
    let bytes = |r: &[Vec<u8>]| r.iter().map(Vec::len).sum::<usize>() as f64 / samples;
    let (snappy, chained) = (snappy_records(&batches), chained_records(&batches));
    println!(
        "bytes per sample: samples record + snappy {:.2}, chained {:.2}",
        bytes(&snappy),
        bytes(&chained)
    );
    let mut g = c.benchmark_group("wal_samples_record");
    g.throughput(Throughput::Elements(samples as u64));
    g.sample_size(20);
    g.bench_function("encode/samples+snappy", |b| {
        b.iter(|| black_box(snappy_records(black_box(&batches))))
    });
    g.bench_function("encode/chained", |b| {
        b.iter(|| black_box(chained_records(black_box(&batches))))
    });
    let interner = Interner::new();
    g.bench_function("decode/samples+snappy", |b| {
        b.iter(|| {
            for r in &snappy {
                black_box(decode(r, &interner).unwrap());
            }
        })
    });
    g.bench_function("decode/chained", |b| {
        b.iter(|| {
            let mut chain = SampleChain::new();
            for r in &chained {
                black_box(
                    tidemark::storage::wal::decode_chained(r, &interner, &mut chain).unwrap(),
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_wal_records);
criterion_main!(benches);
