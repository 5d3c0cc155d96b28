//! Native histogram samples through the storage API: appended in a batch,
//! stored in the head's histogram chunks, read back through the querier
//! (`Series::histograms`), with the ordering, duplicate and validation
//! rules of float samples.

mod common;

use tidemark::model::{
    CounterResetHint, Histogram, HistogramSample, HistogramValue, Sample, Span, STALE_NAN,
};
use tidemark::storage::{SampleError, SampleKind, SeriesSamples};

fn hist(count: u64) -> Histogram {
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: 1,
        count,
        sum: count as f64 * 2.5,
        positive_spans: vec![Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![1, (count as i64 - 2).max(0) - 1],
        ..Default::default()
    }
}

fn entry(n: usize, hs: Vec<(i64, HistogramValue)>) -> SeriesSamples {
    SeriesSamples {
        created: Vec::new(),
        labels: common::series_labels("h", n),
        samples: Vec::new(),
        histograms: hs
            .into_iter()
            .map(|(t, h)| HistogramSample { t, h })
            .collect(),
    }
}

#[test]
fn histograms_append_and_read_back_through_the_querier() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path());
    let mut want = Vec::new();
    let mut batch = Vec::new();
    for i in 0..300i64 {
        let mut h = hist(3 + i as u64);
        if i == 200 {
            h = hist(3); // a counter reset
        }
        if i == 250 {
            h.sum = STALE_NAN;
        }
        let t = 1_000 + i * 15_000;
        want.push((t, h.to_float()));
        batch.push((t, HistogramValue::Int(h)));
    }
    let out = db.append(&[entry(0, batch)]).unwrap();
    assert_eq!((out.appended, out.appended_histograms), (300, 300));
    assert!(out.rejected.is_empty());

    let q = db.querier(i64::MIN, i64::MAX);
    let series = q.select(&[]);
    assert_eq!(series.len(), 1);
    assert!(series[0].has_histograms());
    assert_eq!(series[0].samples().count(), 0);
    let got: Vec<_> = series[0].histograms().collect();
    assert_eq!(got.len(), want.len());
    for ((t, h), (wt, wh)) in got.iter().zip(&want) {
        assert_eq!(t, wt);
        if wh.is_stale() {
            assert!(h.is_stale(), "{t}");
            continue;
        }
        assert_eq!(
            (h.count, h.zero_count, h.sum.to_bits()),
            (wh.count, wh.zero_count, wh.sum.to_bits()),
            "{t}"
        );
        assert_eq!(h.positive_buckets, wh.positive_buckets, "{t}");
    }
    // The first sample after the reset is in a chunk of its own kind.
    assert_eq!(
        got[201].1.counter_reset_hint,
        CounterResetHint::NotCounterReset
    );
    // A narrower range selects only its samples.
    let q = db.querier(1_000 + 10 * 15_000, 1_000 + 12 * 15_000);
    let got: Vec<_> = q.select(&[])[0].histograms().map(|(t, _)| t).collect();
    assert_eq!(got, vec![151_000, 166_000, 181_000]);
    assert!(db.head_stats().chunk_bytes > 0);
}

#[test]
fn histogram_rules_match_float_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path());
    let h = |c| HistogramValue::Int(hist(c));
    db.append(&[entry(0, vec![(10, h(5)), (20, h(6))])])
        .unwrap();
    // Resending identical samples is accepted silently; a different value
    // at a held timestamp, an older timestamp and an invalid histogram are
    // rejected, each with its reason.
    let mut bad = hist(9);
    bad.positive_buckets.push(1);
    let out = db
        .append(&[entry(
            0,
            vec![
                (10, h(5)),
                (20, h(7)),
                (15, h(6)),
                (30, HistogramValue::Int(bad)),
                (40, h(8)),
            ],
        )])
        .unwrap();
    assert_eq!((out.appended, out.duplicates), (1, 1));
    let errs: Vec<_> = out
        .rejected
        .iter()
        .map(|r| (r.sample, r.kind, r.error.reason()))
        .collect();
    assert_eq!(
        errs,
        vec![
            (1, SampleKind::Histogram, "duplicate_timestamp"),
            (2, SampleKind::Histogram, "out_of_order"),
            (3, SampleKind::Histogram, "invalid_histogram"),
        ]
    );
    assert!(matches!(
        out.rejected[2].error,
        SampleError::InvalidHistogram(_)
    ));
    // A float sample at a histogram's timestamp is a duplicate timestamp;
    // histograms and floats share one time order.
    let out = db
        .append(&[SeriesSamples {
            created: Vec::new(),
            labels: common::series_labels("h", 0),
            samples: vec![Sample::new(40, 1.0), Sample::new(50, 1.0)],
            histograms: vec![HistogramSample { t: 45, h: h(9) }],
        }])
        .unwrap();
    assert_eq!(out.appended, 1);
    assert_eq!(
        out.rejected
            .iter()
            .map(|r| (r.kind, r.error.reason()))
            .collect::<Vec<_>>(),
        vec![
            (SampleKind::Float, "duplicate_timestamp"),
            (SampleKind::Histogram, "out_of_order"),
        ]
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let s = &q.select(&[])[0];
    assert_eq!(
        s.histograms().map(|(t, _)| t).collect::<Vec<_>>(),
        vec![10, 20, 40]
    );
    assert_eq!(s.samples().map(|s| s.t).collect::<Vec<_>>(), vec![50]);
}

/// Integer, float and custom-bucket histograms of three series, with a
/// reset and a stale marker, as (t, value) per series.
fn mixed_batch() -> Vec<SeriesSamples> {
    let mut int = Vec::new();
    let mut float = Vec::new();
    let mut nhcb = Vec::new();
    for i in 0..150i64 {
        let t = 1_000 + i * 10_000;
        let mut h = hist(3 + (i % 70) as u64);
        if i == 120 {
            h.sum = STALE_NAN;
        }
        int.push((t, HistogramValue::Int(h.clone())));
        let mut f = h.to_float();
        f.count += 0.25;
        f.sum *= 0.1;
        float.push((t, HistogramValue::Float(f)));
        nhcb.push((
            t,
            HistogramValue::Int(Histogram {
                schema: -53,
                count: 2 * i as u64,
                sum: i as f64,
                positive_spans: vec![Span {
                    offset: 0,
                    length: 2,
                }],
                positive_buckets: vec![i, 0],
                custom_values: vec![0.25, 1.0],
                ..Default::default()
            }),
        ));
    }
    vec![entry(0, int), entry(1, float), entry(2, nhcb)]
}

fn read_all(db: &tidemark::storage::Db) -> Vec<(String, Vec<(i64, String)>)> {
    let q = db.querier(i64::MIN, i64::MAX);
    q.select(&[])
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.histograms().map(|(t, h)| (t, format!("{h:?}"))).collect(),
            )
        })
        .collect()
}

#[test]
fn histograms_survive_restart_by_wal_replay_and_by_head_snapshot() {
    for snapshot in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let opts = tidemark::storage::Options {
            head_snapshot_on_close: snapshot,
            ..common::options(tidemark::storage::wal::FsyncPolicy::Never)
        };
        let db = tidemark::storage::Db::open(dir.path(), opts.clone()).unwrap();
        let out = db.append(&mixed_batch()).unwrap();
        assert_eq!(out.appended_histograms, 450);
        let before = read_all(&db);
        assert_eq!(before.len(), 3);
        assert!(before.iter().all(|(_, h)| h.len() == 150));
        db.close().unwrap();
        drop(db);
        let db = tidemark::storage::Db::open(dir.path(), opts).unwrap();
        assert_eq!(db.open_report().head_snapshot_loaded, snapshot);
        assert_eq!(read_all(&db), before, "snapshot={snapshot}");
        // Appends continue where they left off.
        let out = db
            .append(&[entry(0, vec![(10_000_000, HistogramValue::Int(hist(80)))])])
            .unwrap();
        assert_eq!(out.appended, 1);
    }
}

const HOUR: i64 = 3_600_000;
/// A start aligned to every compaction level (as tests/storage_blocks.rs).
const T0: i64 = 1_700_006_400_000 - 1_700_006_400_000 % (54 * HOUR);

/// A histogram's value for comparison: counts and sum by bits, and the
/// non-empty buckets by index (a recoded chunk adds empty buckets).
fn canon(h: &tidemark::model::FloatHistogram) -> String {
    if h.is_stale() {
        return "stale".into();
    }
    let mut buckets = Vec::new();
    let mut idx = 0i64;
    let mut k = 0;
    for s in &h.positive_spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            if h.positive_buckets[k] != 0.0 {
                buckets.push((idx, h.positive_buckets[k]));
            }
            k += 1;
            idx += 1;
        }
    }
    format!(
        "s{} z{} c{} zc{} sum{:x} {:?} {:?}",
        h.schema,
        h.zero_threshold,
        h.count,
        h.zero_count,
        h.sum.to_bits(),
        buckets,
        h.custom_values
    )
}

type HOracle = std::collections::BTreeMap<String, Vec<(i64, String)>>;

fn hquery(db: &tidemark::storage::Db, mint: i64, maxt: i64) -> (HOracle, usize) {
    let q = db.querier(mint, maxt);
    let mut floats = 0;
    let mut out = HOracle::new();
    for s in q.select(&[]) {
        floats += s.samples().count();
        let v: Vec<_> = s.histograms().map(|(t, h)| (t, canon(&h))).collect();
        if !v.is_empty() {
            out.insert(s.labels().to_string(), v);
        }
    }
    assert!(q.take_problems().is_empty());
    (out, floats)
}

/// Appends 30 s data from `from` to `to`: series 0 integer histograms
/// (reset every 7 h), series 1 float histograms, series 2 histograms in
/// odd hours and floats in even ones; compacting every hour.
fn hingest(
    db: &tidemark::storage::Db,
    oracle: &mut HOracle,
    floats: &mut usize,
    from: i64,
    to: i64,
) {
    let mut t = from;
    while t < to {
        let step = (t - T0) / 30_000;
        let mut h = hist(3 + (step % 840) as u64);
        if step % 500 == 7 {
            // A new bucket now and then: the head recodes its chunk.
            h.positive_spans[0].length = 3;
            let second = h.positive_buckets[0] + h.positive_buckets[1];
            h.positive_buckets.push(-second);
        }
        let mut f = h.to_float();
        f.sum += 0.5;
        let odd_hour = ((t - T0) / HOUR) % 2 == 1;
        let mixed = SeriesSamples {
            created: Vec::new(),
            labels: common::series_labels("h", 2),
            samples: if odd_hour {
                vec![]
            } else {
                vec![Sample::new(t, step as f64)]
            },
            histograms: if odd_hour {
                vec![HistogramSample {
                    t,
                    h: HistogramValue::Int(h.clone()),
                }]
            } else {
                vec![]
            },
        };
        let batch = vec![
            entry(0, vec![(t, HistogramValue::Int(h.clone()))]),
            entry(1, vec![(t, HistogramValue::Float(f.clone()))]),
            mixed,
        ];
        let out = db.append(&batch).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        for (i, v) in [(0, h.to_float()), (1, f)] {
            oracle
                .entry(common::series_labels("h", i).to_string())
                .or_default()
                .push((t, canon(&v)));
        }
        if odd_hour {
            oracle
                .entry(common::series_labels("h", 2).to_string())
                .or_default()
                .push((t, canon(&h.to_float())));
        } else {
            *floats += 1;
        }
        t += 30_000;
        if (t - T0) % HOUR == 0 {
            db.compact().unwrap();
        }
    }
}

#[test]
fn histograms_are_compacted_into_blocks_and_survive_restart_delete_and_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tidemark::storage::Options {
        retention_ms: 0,
        ..common::options(tidemark::storage::wal::FsyncPolicy::Never)
    };
    let mut oracle = HOracle::new();
    let mut floats = 0;
    {
        let db = tidemark::storage::Db::open(dir.path(), opts.clone()).unwrap();
        hingest(&db, &mut oracle, &mut floats, T0, T0 + 9 * HOUR);
        assert!(db.blocks().len() >= 2, "{:?}", db.blocks().len());
        assert!(db.head_stats().min_t.unwrap() >= T0 + 4 * HOUR);
        let (got, f) = hquery(&db, i64::MIN, i64::MAX);
        assert_eq!(f, floats);
        assert_eq!(got, oracle, "after compaction");
        // Blocks hold histogram samples in their stats.
        let in_blocks: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
        assert!(in_blocks > 3 * 4 * 120, "{in_blocks}");
        db.close().unwrap();
    }
    let db = tidemark::storage::Db::open(dir.path(), opts).unwrap();
    assert!(db.open_report().quarantined.is_empty());
    let (got, _) = hquery(&db, i64::MIN, i64::MAX);
    assert_eq!(got, oracle, "after restart");
    // A narrow range across a block boundary.
    let (lo, hi) = (T0 + 2 * HOUR - 60_000, T0 + 2 * HOUR + 60_000);
    let (got, _) = hquery(&db, lo, hi);
    let want: HOracle = oracle
        .iter()
        .map(|(k, v)| {
            let v: Vec<_> = v
                .iter()
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .cloned()
                .collect();
            (k.clone(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    assert_eq!(got, want);
    // Deleting hides histograms at once; a rewrite drops them.
    let (dlo, dhi) = (T0 + HOUR, T0 + 3 * HOUR);
    db.delete(&[tidemark::model::Matcher::eq("instance", "i0")], dlo, dhi)
        .unwrap();
    for (k, v) in oracle.iter_mut() {
        if k.contains("instance=\"i0\"") {
            v.retain(|(t, _)| *t < dlo || *t > dhi);
        }
    }
    let (got, _) = hquery(&db, i64::MIN, i64::MAX);
    assert_eq!(got, oracle, "after delete");
    assert!(db.clean_tombstones().unwrap() >= 1);
    let (got, _) = hquery(&db, i64::MIN, i64::MAX);
    assert_eq!(got, oracle, "after rewrite");
}

/// Schema-3 bucket index of an observation `v > 0` (Prometheus: bucket i
/// holds (2^((i-1)/8), 2^(i/8)]).
fn bucket_of(v: f64) -> i64 {
    (v.log2() * 8.0).ceil() as i64
}

/// One scrape target's latency histogram over `n` scrapes at 15 s: ~200
/// log-normal-ish observations per scrape (a deterministic generator), as
/// a client library exposes it (schema 3, zero threshold 2^-128).
fn realistic_series(seed: u64, n: usize) -> Vec<(i64, HistogramValue)> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut counts: std::collections::BTreeMap<i64, u64> = Default::default();
    let (mut count, mut sum) = (0u64, 0.0f64);
    let mut out = Vec::new();
    for i in 0..n {
        for _ in 0..200 {
            // Sum of uniforms ~ normal; exp of it ~ log-normal latency (s).
            let z: f64 = (0..4).map(|_| next()).sum::<f64>() - 2.0;
            let v = (z * 1.2 - 3.0).exp();
            *counts.entry(bucket_of(v)).or_default() += 1;
            count += 1;
            sum += v;
        }
        let idx: Vec<i64> = counts.keys().copied().collect();
        let mut spans: Vec<Span> = Vec::new();
        let mut last = 0i64;
        for &b in &idx {
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
        out.push((
            T0 + i as i64 * 15_000 + (i as i64 * 7) % 11,
            HistogramValue::Int(h),
        ));
    }
    out
}

/// Prints bytes per histogram sample in head chunks (what Prometheus keeps
/// and persists: same encoding, same cut rules) and in Tidemark's blocks.
/// `cargo test --test storage_histograms bytes_per -- --nocapture`.
#[test]
fn histogram_bytes_per_sample_in_head_chunks_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path());
    let (series, n) = (20usize, 3 * 240 + 60); // 3 h 15 m at 15 s: one block
    let data: Vec<_> = (0..series).map(|i| realistic_series(i as u64, n)).collect();
    for k in 0..n {
        let batch: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(i, d)| entry(i, vec![d[k].clone()]))
            .collect();
        assert!(db.append(&batch).unwrap().rejected.is_empty());
    }
    let head = db.head_stats();
    let samples = (series * n) as f64;
    let buckets: usize = data
        .iter()
        .map(|d| match &d[n - 1].1 {
            HistogramValue::Int(h) => h.positive_buckets.len(),
            HistogramValue::Float(h) => h.positive_buckets.len(),
        })
        .sum();
    let head_bps = head.chunk_bytes as f64 / samples;
    db.compact().unwrap();
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 1);
    let block_samples = blocks[0].stats.num_samples as f64;
    // The head chunks the compaction persisted (and then dropped):
    // Prometheus writes exactly those to its block, each framed in its
    // segment with a uvarint length, an encoding byte and a CRC-32.
    let after = db.head_stats();
    let moved_bytes = head.chunk_bytes - after.chunk_bytes;
    let moved_chunks = head.chunks - after.chunks;
    assert_eq!((head.samples - after.samples) as f64, block_samples);
    let prom_block_bps = (moved_bytes + moved_chunks * 7) as f64 / block_samples;
    let chunks_dir = dir.path().join(&blocks[0].ulid).join("chunks");
    let block_bytes: u64 = std::fs::read_dir(&chunks_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len() - 8)
        .sum();
    let block_bps = block_bytes as f64 / block_samples;
    println!(
        "HISTOGRAM-BYTES-PER-SAMPLE series={series} samples={} buckets_per_histogram~{} head_chunks={:.2} (chunks={}) prometheus_block_same_chunks={:.2} tidemark_block={:.2} (block samples={})",
        samples,
        buckets / series,
        head_bps,
        head.chunks,
        prom_block_bps,
        block_bps,
        block_samples
    );
    assert!(
        block_bps < prom_block_bps,
        "{block_bps} vs {prom_block_bps}"
    );
    // The block reads back the same histograms.
    let q = db.querier(i64::MIN, i64::MAX);
    let got: usize = q.select(&[]).iter().map(|s| s.histograms().count()).sum();
    assert_eq!(got, series * n);
}

/// A series that stops sending histograms and goes on with floats (and the
/// reverse): compaction persists and truncates the old kind's chunks, and
/// the head's min time moves on (a dead chunk of one kind kept alive by the
/// other kind would make compaction cut the same range forever).
#[test]
fn series_switching_kinds_compacts_and_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tidemark::storage::Options {
        block_range_ms: 100,
        retention_ms: 0,
        ..common::options(tidemark::storage::wal::FsyncPolicy::Never)
    };
    let db = tidemark::storage::Db::open(dir.path(), opts).unwrap();
    let l = |n| common::series_labels("sw", n);
    // Series 0: histograms at 0..50, floats after; series 1 the reverse.
    let mut batch = vec![
        entry(
            0,
            (0..5)
                .map(|i| (i * 10, HistogramValue::Int(hist(3 + i as u64))))
                .collect(),
        ),
        SeriesSamples {
            created: Vec::new(),
            labels: l(1),
            samples: (0..5).map(|i| Sample::new(i * 10, i as f64)).collect(),
            histograms: vec![],
        },
    ];
    batch[0].labels = l(0);
    assert!(db.append(&batch).unwrap().is_complete());
    for t in (50..1000).step_by(10) {
        let batch = vec![
            SeriesSamples {
                created: Vec::new(),
                labels: l(0),
                samples: vec![Sample::new(t, 1.0)],
                histograms: vec![],
            },
            SeriesSamples {
                created: Vec::new(),
                labels: l(1),
                samples: vec![],
                histograms: vec![HistogramSample {
                    t,
                    h: HistogramValue::Int(hist(3 + t as u64)),
                }],
            },
        ];
        assert!(db.append(&batch).unwrap().is_complete());
        if t % 100 == 0 {
            db.compact().unwrap();
        }
    }
    assert!(
        db.head_stats().min_t.unwrap() >= 800,
        "{:?}",
        db.head_stats()
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let s = q.select(&[]);
    assert_eq!(s[0].histograms().count(), 5);
    assert_eq!(s[0].samples().count(), 95);
    assert_eq!(s[1].samples().count(), 5);
    assert_eq!(s[1].histograms().count(), 95);
}

#[test]
fn histograms_over_the_bucket_limit_are_refused_so_all_stored_ones_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path());
    let n = tidemark::model::histogram::MAX_BUCKETS_PER_SIDE;
    let big = |buckets: usize| Histogram {
        schema: 0,
        count: buckets as u64,
        sum: 1.0,
        positive_spans: vec![Span {
            offset: 0,
            length: buckets as u32,
        }],
        positive_buckets: std::iter::once(1)
            .chain(std::iter::repeat(0))
            .take(buckets)
            .collect(),
        ..Default::default()
    };
    let out = db
        .append(&[entry(
            0,
            vec![
                (1, HistogramValue::Int(big(n))),
                (2, HistogramValue::Int(big(n + 1))),
            ],
        )])
        .unwrap();
    assert_eq!(out.appended, 1);
    assert!(matches!(
        out.rejected[0].error,
        SampleError::InvalidHistogram(tidemark::model::HistogramError::TooManyBuckets { .. })
    ));
    let q = db.querier(i64::MIN, i64::MAX);
    let got: Vec<_> = q.select(&[])[0].histograms().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.positive_buckets.len(), n);
    assert!(q.take_problems().is_empty());
}

/// Golden bytes from a real Prometheus: `tests/testdata/prometheus-2.42-
/// histogram-chunk.bin` is a head chunk (encoding 2) of Debian's
/// Prometheus 2.42, taken from a TSDB snapshot by
/// `tests/e2e_native_histograms.rs` (`TIDEMARK_WRITE_GOLDEN_HISTOGRAM_CHUNK`
/// refreshes it). Scrape n served schema 2, zero count n, buckets -1..=3
/// with counts n*(i+1)+i, sum 1.5n. Tidemark decodes exactly that and
/// re-encodes the samples to the same bytes.
#[test]
fn prometheus_2_42_histogram_chunk_decodes_and_re_encodes_bit_exactly() {
    use tidemark::storage::chunk::{CounterResetHeader, HistogramAppender, HistogramIter};
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/testdata/prometheus-2.42-histogram-chunk.bin"),
    )
    .unwrap();
    let mut it = HistogramIter::new(&bytes[..]);
    assert_eq!(it.header(), CounterResetHeader::Unknown);
    let samples: Vec<_> = it.by_ref().collect();
    assert_eq!(it.err(), None);
    assert_eq!(samples.len(), 14);
    for (i, (t, h)) in samples.iter().enumerate() {
        if i > 0 {
            assert!(*t > samples[i - 1].0);
        }
        let n = h.zero_count;
        let abs: Vec<u64> = (0..5u64).map(|i| n * (i + 1) + i).collect();
        assert_eq!(h.schema, 2);
        assert_eq!(h.zero_threshold, 2f64.powi(-128));
        assert_eq!(h.count, abs.iter().sum::<u64>() + n);
        assert_eq!(h.sum, n as f64 * 1.5);
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: -1,
                length: 5
            }]
        );
        let f = h.to_float();
        assert_eq!(
            f.positive_buckets,
            abs.iter().map(|&a| a as f64).collect::<Vec<_>>()
        );
        assert!(h.validate().is_ok());
    }
    let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
    for (t, h) in &samples {
        app.append(*t, h).unwrap();
    }
    assert_eq!(&app.finish()[..], &bytes[..]);
}
