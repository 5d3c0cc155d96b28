//! The generated workload has the shape the load generator promises:
//! counters never go down, histogram buckets stay cumulative, scrape
//! jitter stays within its bound, each shard sends each of its series in
//! time order, every series goes to exactly one shard, requests hold at
//! most `max_samples_per_send` samples, and 1.0, 2.0 and OTLP bodies decode
//! (with Tidemark's own decoders; OTLP through its default translation)
//! back to exactly the generated samples.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use tidemark::ingest::decode::{decode, decompress, ProtoVersion, Request};
use tidemark_bench::encode::{Encoder, Protocol};
use tidemark_bench::workload::{MetricType, Point, Shape, Spec, Workload};

fn spec(
    targets: usize,
    m: usize,
    scrapes: usize,
    jitter_ms: i64,
    shards: usize,
    max: usize,
    seed: u64,
) -> Spec {
    Spec {
        targets,
        series_per_target: m,
        scrapes,
        interval_ms: 15_000,
        jitter_ms,
        end_ms: 1_700_000_000_000,
        shards,
        max_samples_per_send: max,
        seed,
    }
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        1usize..4,
        1usize..700,
        1usize..12,
        0i64..20,
        1usize..5,
        1usize..2500,
        any::<u64>(),
    )
        .prop_map(|(t, m, k, j, s, max, seed)| spec(t, m, k, j, s, max, seed))
}

/// One decoded sample: labels, timestamp, value bits.
type Decoded = (Vec<(String, String)>, i64, u64);

/// Every point of every shard, shard by shard.
fn all_points(wl: &Workload) -> Vec<Vec<Point>> {
    (0..wl.spec.shards)
        .map(|k| wl.shard(k).flatten().collect())
        .collect()
}

#[test]
fn workload_series_per_target_exact_and_labels_unique() {
    for m in [1, 50, 300, 856, 2000] {
        let wl = Workload::generate(spec(3, m, 1, 5, 1, 2000, 7));
        assert_eq!(wl.series.len(), 3 * m);
        let mut seen = HashSet::new();
        for s in &wl.series {
            assert!(
                s.labels.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted, unique names: {:?}",
                s.labels
            );
            assert!(s.labels.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()));
            assert!(
                seen.insert(s.labels.clone()),
                "duplicate series {:?}",
                s.labels
            );
        }
    }
}

#[test]
fn workload_default_host_has_dashboard_families() {
    let wl = Workload::generate(spec(1, 856, 1, 5, 1, 2000, 1));
    let names: HashSet<&str> = wl.series.iter().map(|s| s.name()).collect();
    for n in [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_network_receive_bytes_total",
        "node_disk_read_bytes_total",
        "node_filesystem_avail_bytes",
        "node_load1",
        "promhttp_metric_handler_request_duration_seconds_bucket",
        "up",
    ] {
        assert!(names.contains(n), "{n} missing");
    }
    // Many series never change (real exporters are mostly constant).
    let constant = wl
        .series
        .iter()
        .filter(|s| matches!(s.shape, Shape::Constant(_)))
        .count();
    assert!(constant > 100, "{constant} constant series");
}

#[test]
fn workload_histogram_buckets_stay_cumulative() {
    let wl = Workload::generate(spec(2, 400, 40, 5, 2, 2000, 3));
    let mut by_scrape: BTreeMap<(String, i64), Vec<(f64, f64)>> = BTreeMap::new();
    for p in all_points(&wl).into_iter().flatten() {
        let s = &wl.series[p.series as usize];
        if let Shape::Bucket { le } = s.shape {
            let inst = s
                .labels
                .iter()
                .find(|(n, _)| n == "instance")
                .unwrap()
                .1
                .clone();
            by_scrape.entry((inst, p.t)).or_default().push((le, p.v));
        }
    }
    assert!(!by_scrape.is_empty());
    for (k, mut b) in by_scrape {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{k:?}: {b:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn prop_shards_partition_series_in_time_order(spec in arb_spec()) {
        let wl = Workload::generate(spec.clone());
        let mut owner: HashMap<u32, usize> = HashMap::new();
        let mut total = 0usize;
        for k in 0..spec.shards {
            let mut last: HashMap<u32, i64> = HashMap::new();
            for batch in wl.shard(k) {
                prop_assert!(!batch.is_empty() && batch.len() <= spec.max_samples_per_send);
                for p in batch {
                    total += 1;
                    prop_assert_eq!(*owner.entry(p.series).or_insert(k), k, "series in two shards");
                    if let Some(&t) = last.get(&p.series) {
                        prop_assert!(p.t > t, "series {} out of order in shard {}", p.series, k);
                    }
                    last.insert(p.series, p.t);
                }
            }
        }
        prop_assert_eq!(total as u64, spec.total_samples());
        prop_assert_eq!(owner.len(), spec.active_series());
    }

    #[test]
    fn prop_counters_monotonic(spec in arb_spec()) {
        let wl = Workload::generate(spec);
        let mut last: HashMap<u32, f64> = HashMap::new();
        for p in all_points(&wl).into_iter().flatten() {
            let s = &wl.series[p.series as usize];
            let monotonic = s.metric_type == MetricType::Counter || s.metric_type == MetricType::Histogram;
            prop_assert!(p.v.is_finite());
            if monotonic {
                if let Some(&prev) = last.get(&p.series) {
                    prop_assert!(p.v >= prev, "{:?} went {} -> {}", s.labels, prev, p.v);
                }
            }
            last.insert(p.series, p.v);
        }
    }

    #[test]
    fn prop_jitter_within_bounds(spec in arb_spec()) {
        let wl = Workload::generate(spec.clone());
        for (i, tg) in wl.targets.iter().enumerate() {
            for k in 0..spec.scrapes {
                let scheduled = spec.start_ms() + k as i64 * spec.interval_ms + tg.phase_ms;
                let d = wl.scrape_time(i, k) - scheduled;
                prop_assert!((0..=spec.jitter_ms).contains(&d), "jitter {}", d);
                prop_assert!(wl.scrape_time(i, k) < spec.end_ms);
            }
        }
    }

    #[test]
    fn prop_encode_round_trip(spec in arb_spec(), v2 in any::<bool>()) {
        let wl = Workload::generate(spec);
        let protocol = if v2 { Protocol::V2 } else { Protocol::V1 };
        let enc = Encoder::new(protocol, &wl.series);
        let batch: Vec<Point> = wl.shard(0).next().unwrap_or_default();
        let body = enc.encode(&batch);
        prop_assert_eq!(body.samples as usize, batch.len());
        let raw = decompress(&body.bytes, 1 << 30).unwrap();
        let version = if v2 { ProtoVersion::V2 } else { ProtoVersion::V1 };
        let got: Vec<Decoded> = match decode(version, Bytes::from(raw)).unwrap() {
            Request::V1(r) => r.timeseries.iter().map(|ts| {
                prop_assert_eq!(ts.samples.len(), 1);
                let labels = ts.labels.iter().map(|l| (
                    String::from_utf8(l.name.to_vec()).unwrap(),
                    String::from_utf8(l.value.to_vec()).unwrap(),
                )).collect();
                Ok((labels, ts.samples[0].timestamp, ts.samples[0].value.to_bits()))
            }).collect::<Result<_, TestCaseError>>()?,
            Request::V2(r) => r.timeseries.iter().map(|ts| {
                prop_assert_eq!(ts.samples.len(), 1);
                prop_assert!(ts.metadata.is_some());
                let sym = |i: u32| String::from_utf8(r.symbols[i as usize].to_vec()).unwrap();
                let labels = ts.labels_refs.chunks(2).map(|c| (sym(c[0]), sym(c[1]))).collect();
                Ok((labels, ts.samples[0].timestamp, ts.samples[0].value.to_bits()))
            }).collect::<Result<_, TestCaseError>>()?,
        };
        let want: Vec<_> = batch.iter().map(|p| (wl.series[p.series as usize].labels.clone(), p.t, p.v.to_bits())).collect();
        prop_assert_eq!(got, want);
    }
}

/// `with_exemplars(3)`: every sample of series 0, 3, 6, ... carries one
/// exemplar whose `trace_id` is series and time in 32 hex digits, in both
/// protocols; other series carry none.
#[test]
fn encode_exemplars_on_one_in_n_series() {
    let wl = Workload::generate(spec(1, 30, 2, 0, 1, 2000, 7));
    let batch: Vec<Point> = wl.shard(0).next().unwrap();
    for (protocol, version) in [
        (Protocol::V1, ProtoVersion::V1),
        (Protocol::V2, ProtoVersion::V2),
    ] {
        let enc = Encoder::new(protocol, &wl.series).with_exemplars(3);
        let raw = decompress(&enc.encode(&batch).bytes, 1 << 30).unwrap();
        let got: Vec<(usize, String)> = match decode(version, Bytes::from(raw)).unwrap() {
            Request::V1(r) => r
                .timeseries
                .iter()
                .map(|ts| {
                    let ids = ts.exemplars.iter().map(|e| {
                        assert_eq!(&e.labels[0].name[..], b"trace_id");
                        String::from_utf8(e.labels[0].value.to_vec()).unwrap()
                    });
                    (ts.exemplars.len(), ids.collect::<String>())
                })
                .collect(),
            Request::V2(r) => r
                .timeseries
                .iter()
                .map(|ts| {
                    let sym = |i: u32| String::from_utf8(r.symbols[i as usize].to_vec()).unwrap();
                    let ids = ts.exemplars.iter().map(|e| {
                        assert_eq!(sym(e.labels_refs[0]), "trace_id");
                        sym(e.labels_refs[1])
                    });
                    (ts.exemplars.len(), ids.collect::<String>())
                })
                .collect(),
        };
        let want: Vec<(usize, String)> = batch
            .iter()
            .map(|p| {
                if p.series % 3 == 0 {
                    (1, format!("{:016x}{:016x}", p.series, p.t as u64))
                } else {
                    (0, String::new())
                }
            })
            .collect();
        assert_eq!(got, want, "{protocol:?}");
        assert!(want.iter().any(|w| w.0 == 1) && want.iter().any(|w| w.0 == 0));
    }
}

/// An OTLP body (plain and gzip) decodes and translates, with the server's
/// default settings, to exactly the batch's series and samples: the
/// loadgen's OTLP mode carries the remote-write series.
#[test]
fn encode_otlp_translates_to_the_generated_samples() {
    use tidemark::ingest::otlp::{decode as decode_otlp, translate::translate, OtlpEncoding};
    let wl = Workload::generate(spec(2, 200, 2, 5, 1, 2000, 3));
    let batch: Vec<Point> = wl.shard(0).next().unwrap();
    let mut want: Vec<Decoded> = batch
        .iter()
        .map(|p| {
            (
                wl.series[p.series as usize].labels.clone(),
                p.t,
                p.v.to_bits(),
            )
        })
        .collect();
    want.sort();
    for gzip in [false, true] {
        let enc = Encoder::new(Protocol::Otlp, &wl.series).with_gzip(gzip);
        let body = enc.encode(&batch);
        assert_eq!(body.samples as usize, batch.len());
        let req = decode_otlp(
            OtlpEncoding::Protobuf,
            gzip.then_some("gzip"),
            &body.bytes,
            1 << 30,
            &tidemark::ingest::WriteLimits::DEFAULT,
        )
        .unwrap();
        let t = translate(&req);
        assert!(t.refused.is_empty(), "{:?}", t.refused);
        let mut got: Vec<Decoded> = t
            .series
            .iter()
            .flat_map(|s| {
                let mut labels: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                labels.sort();
                s.samples
                    .iter()
                    .map(move |x| (labels.clone(), x.t, x.v.to_bits()))
            })
            .collect();
        got.sort();
        let mut want = want.clone();
        for w in &mut want {
            w.0.sort();
        }
        want.sort();
        assert_eq!(got, want, "gzip {gzip}");
    }
}
