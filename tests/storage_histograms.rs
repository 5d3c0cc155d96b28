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
