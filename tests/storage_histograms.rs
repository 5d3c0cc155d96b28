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
