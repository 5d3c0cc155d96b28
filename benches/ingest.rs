//! Remote-write decode throughput below HTTP and storage: one realistic
//! request of 2,000 samples (2,000 node_exporter-like series, one sample
//! each, as Prometheus sends by default with `max_samples_per_send: 2000`)
//! in 1.0 and 2.0, measured as (a) snappy decompress + prost decode and
//! (b) the same plus `prepare` (label validation into a storage batch).
//! Reported in samples/s.
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use tidemark::ingest::decode::{decode, decompress, ProtoVersion, Request};
use tidemark::ingest::limits::scan;
use tidemark::ingest::proto::{prometheus as v1, write_v2 as v2};
use tidemark::ingest::validate::{
    prepare_plain_v1_cached, prepare_v1, prepare_v2, prepare_v2_cached, Prepared, Rules,
};
use tidemark::ingest::wire::read_plain_v1;
use tidemark::ingest::{SeriesCache, WriteLimits};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options};

/// Prometheus's default `queue_config.max_samples_per_send`.
const SAMPLES: usize = 2000;
const T: i64 = 1_700_000_000_000;
const LIMIT: usize = 256 << 20;
const RULES: Rules = Rules::new(i64::MAX);

/// Labels of series `i`, shaped like a node_exporter scrape: a few metric
/// families, cpu/mode/device fan-out, instance and job on every series.
fn labels(i: usize) -> Vec<(String, String)> {
    let host = i / 500;
    let j = i % 500;
    let instance = format!("node-{host:03}.prod.example.com:9100");
    let mut l = match j {
        0..=255 => {
            let modes = [
                "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
            ];
            vec![
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (j / 8).to_string()),
                ("mode", modes[j % 8].to_string()),
            ]
        }
        256..=383 => {
            let metrics = [
                "node_disk_read_bytes_total",
                "node_disk_written_bytes_total",
                "node_disk_reads_completed_total",
                "node_disk_writes_completed_total",
            ];
            vec![
                ("__name__", metrics[j % 4].to_string()),
                ("device", format!("nvme{}n1", (j - 256) / 4)),
            ]
        }
        384..=447 => vec![
            ("__name__", "node_network_receive_bytes_total".to_string()),
            ("device", format!("eth{}", j - 384)),
        ],
        _ => vec![("__name__", format!("node_memory_field_{}_bytes", j - 448))],
    };
    l.push(("instance", instance));
    l.push(("job", "node".to_string()));
    l.sort();
    l.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

fn value(i: usize) -> f64 {
    (i as f64) * 1234.5678 + 0.25
}

fn v1_body() -> Vec<u8> {
    v1_body_of(0..SAMPLES)
}

/// A 1.0 body of the series numbered `series`.
fn v1_body_of(series: std::ops::Range<usize>) -> Vec<u8> {
    let req = v1::WriteRequest {
        timeseries: series
            .map(|i| v1::TimeSeries {
                labels: labels(i)
                    .into_iter()
                    .map(|(n, v)| v1::Label {
                        name: Bytes::from(n),
                        value: Bytes::from(v),
                    })
                    .collect(),
                samples: vec![v1::Sample {
                    value: value(i),
                    timestamp: T,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compressible")
}

fn v2_body() -> Vec<u8> {
    let mut symbols: Vec<Bytes> = vec![Bytes::new()];
    let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let mut sym = |s: String| {
        *index.entry(s.clone()).or_insert_with(|| {
            symbols.push(Bytes::from(s));
            (symbols.len() - 1) as u32
        })
    };
    let timeseries = (0..SAMPLES)
        .map(|i| v2::TimeSeries {
            labels_refs: labels(i)
                .into_iter()
                .flat_map(|(n, v)| [sym(n), sym(v)])
                .collect(),
            samples: vec![v2::Sample {
                value: value(i),
                timestamp: T,
                start_timestamp: 0,
            }],
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Counter as i32,
                help_ref: 0,
                unit_ref: 0,
            }),
            ..Default::default()
        })
        .collect();
    let req = v2::Request {
        symbols,
        timeseries,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compressible")
}

fn decode_body(version: ProtoVersion, body: &[u8]) -> Request {
    let raw = decompress(body, LIMIT).expect("valid body");
    decode(version, Bytes::from(raw)).expect("valid protobuf")
}

fn bench_decode(c: &mut Criterion) {
    let bodies = [
        ("1.0", ProtoVersion::V1, v1_body()),
        ("2.0", ProtoVersion::V2, v2_body()),
    ];
    let mut g = c.benchmark_group("remote_write_decode");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    for (name, version, body) in &bodies {
        // Check once that the request is what it claims to be.
        let p = match decode_body(*version, body) {
            Request::V1(r) => prepare_v1(&r, RULES),
            Request::V2(r) => prepare_v2(&r, RULES),
        };
        assert_eq!(p.batch.len(), SAMPLES, "{name}: every series valid");
        assert!(p.rejected.is_empty(), "{name}: nothing rejected");

        g.bench_function(format!("{name}/decompress+decode"), |b| {
            b.iter(|| black_box(decode_body(*version, black_box(body))))
        });
        g.bench_function(format!("{name}/decompress+decode+prepare"), |b| {
            b.iter(|| {
                let p = match decode_body(*version, black_box(body)) {
                    Request::V1(r) => prepare_v1(&r, RULES),
                    Request::V2(r) => prepare_v2(&r, RULES),
                };
                black_box(p)
            })
        });
        // The whole-request limit pre-scan the receiver runs before prost
        // (for 2.0, and 1.0 requests with metadata, exemplars or histograms).
        let raw = decompress(body, LIMIT).expect("valid body");
        g.bench_function(format!("{name}/limits pre-scan"), |b| {
            b.iter(|| black_box(scan(*version, black_box(&raw), &WriteLimits::DEFAULT)))
        });
        // What the receiver runs for a sender repeating its series: 1.0
        // read in place (counted against the request limits), 2.0 through
        // prost; labels from a warm series cache.
        let cache = SeriesCache::new(1 << 16);
        let receive = |body: &[u8]| {
            let raw = decompress(body, LIMIT).expect("valid body");
            match version {
                ProtoVersion::V1 => {
                    let plain = read_plain_v1(&raw).expect("plain request");
                    prepare_plain_v1_cached(&plain, RULES, &cache)
                }
                ProtoVersion::V2 => match decode(*version, Bytes::from(raw)) {
                    Ok(Request::V2(r)) => prepare_v2_cached(&r, RULES, &cache),
                    _ => unreachable!("valid 2.0 body"),
                },
            }
        };
        let db = open_db();
        warm(&cache, &db, &receive(body));
        let again = receive(body);
        let hits = again.slots.iter().flatten().filter(|s| s.series.is_some());
        assert_eq!(hits.count(), again.batch.len(), "every series a cache hit");
        g.bench_function(format!("{name}/receiver path, cached"), |b| {
            b.iter(|| black_box(receive(black_box(body))))
        });
    }
    g.finish();
}

/// A store for [`warm`] (no fsync: nothing here is about durability).
fn open_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        wal: WalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
        ..Default::default()
    };
    let db = Db::open(dir.path(), options).expect("db opens");
    (dir, db)
}

/// Appends a prepared request and caches its series with the head's
/// handles, as the receiver warms its cache.
fn warm(cache: &SeriesCache, (_, db): &(tempfile::TempDir, Db), p: &Prepared) {
    let (_, resolved) = db
        .append_hinted(&p.batch, &vec![None; p.batch.len()])
        .expect("appends");
    for (i, series) in resolved {
        if let Some(Some(slot)) = p.slots.get(i) {
            cache.set_series(slot.key, series);
        }
    }
}

/// Series a server holds while ingesting `tidemark-loadgen`'s default
/// workload (64 targets x 856 series): the cache and its labels no longer
/// fit the CPU's caches, so lookups pay for memory as in the server.
const MANY_SERIES: usize = 64_000;

/// The receiver's 1.0 path over a warm series cache of [`MANY_SERIES`]
/// series, sent as requests of 2,000 series in turn.
fn bench_many_series(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = (0..MANY_SERIES / SAMPLES)
        .map(|b| v1_body_of(b * SAMPLES..(b + 1) * SAMPLES))
        .collect();
    let cache = SeriesCache::new(1 << 22);
    let run = |body: &[u8]| {
        let raw = decompress(body, LIMIT).expect("valid body");
        let plain = read_plain_v1(&raw).expect("plain request");
        prepare_plain_v1_cached(&plain, RULES, &cache)
    };
    let db = open_db();
    for body in &bodies {
        let p = run(body);
        assert_eq!(p.batch.len(), SAMPLES, "every series valid");
        warm(&cache, &db, &p);
    }
    assert_eq!(cache.len(), bodies.len() * SAMPLES, "all cached");
    let mut g = c.benchmark_group("remote_write_decode");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    let mut next = 0;
    g.bench_function("1.0/receiver path, cached, 64k series", |b| {
        b.iter(|| {
            next = (next + 1) % bodies.len();
            black_box(run(black_box(&bodies[next])))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_many_series);
criterion_main!(benches);
