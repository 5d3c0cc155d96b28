//! Unit tests of the head's append rules and replay, against a real WAL in a
//! temporary directory.

use super::*;
use crate::model::{Sample, STALE_NAN};
use crate::storage::head::appender::{SeriesHandle, SeriesSamples};
use crate::storage::wal::{Wal, WalOptions};

fn head(max_series_per_metric: usize) -> Head {
    Head::new(HeadOptions {
        block_range_ms: 7_200_000,
        max_series_per_metric,
        stripes: 16,
        max_exemplars: 100,
        metadata: MetadataLimits {
            max_families: 100,
            max_bytes: 1 << 20,
        },
        ooo_window_ms: 0,
    })
}

fn wal() -> (tempfile::TempDir, Wal) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
    (dir, wal)
}

fn batch(name: &str, samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        created: Vec::new(),
        histograms: Vec::new(),
        labels: Labels::from_static(&[("__name__", name), ("job", "t")]),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn read(h: &Head, name: &str) -> Vec<(i64, u64)> {
    let sel = h.select(&[Matcher::eq("__name__", name)], i64::MIN, i64::MAX);
    sel.iter()
        .flat_map(|(_, cs, _)| {
            cs.iter()
                .flat_map(|c| crate::storage::chunk::decode(c.encoding, &c.bytes).unwrap())
        })
        .map(|s| (s.t, s.v.to_bits()))
        .collect()
}

#[test]
fn append_in_order_then_read_back() {
    let (_d, w) = wal();
    let h = head(0);
    let out = h
        .append(&[batch("a", &[(1, 1.0), (2, STALE_NAN), (3, -0.0)])], &w)
        .unwrap();
    assert_eq!(out.appended, 3);
    assert_eq!(
        read(&h, "a"),
        vec![
            (1, 1f64.to_bits()),
            (2, STALE_NAN.to_bits()),
            (3, (-0.0f64).to_bits())
        ]
    );
    assert_eq!((h.min_t(), h.max_t()), (Some(1), Some(3)));
}

#[test]
fn duplicate_and_out_of_order_get_typed_errors() {
    let (_d, w) = wal();
    let h = head(0);
    h.append(&[batch("a", &[(10, 1.0)])], &w).unwrap();
    let out = h
        .append(
            &[batch("a", &[(10, 1.0), (10, 2.0), (5, 1.0), (11, 1.0)])],
            &w,
        )
        .unwrap();
    assert_eq!(out.appended, 1);
    assert_eq!(out.duplicates, 1);
    assert_eq!(
        out.rejected,
        vec![
            Rejected {
                kind: Default::default(),
                series: 0,
                sample: 1,
                error: SampleError::DuplicateSample { t: 10 }
            },
            Rejected {
                kind: Default::default(),
                series: 0,
                sample: 2,
                error: SampleError::OutOfOrder { t: 5, last_t: 10 }
            },
        ]
    );
    // A stale marker resent identically is a duplicate, not an error.
    h.append(&[batch("a", &[(12, STALE_NAN)])], &w).unwrap();
    let out = h.append(&[batch("a", &[(12, STALE_NAN)])], &w).unwrap();
    assert_eq!(
        (out.appended, out.duplicates, out.rejected.len()),
        (0, 1, 0)
    );
    // An ordinary NaN differs from the stale marker by bits.
    let out = h.append(&[batch("a", &[(12, f64::NAN)])], &w).unwrap();
    assert_eq!(
        out.rejected[0].error,
        SampleError::DuplicateSample { t: 12 }
    );
}

#[test]
fn too_old_relative_to_head_max_time() {
    let (_d, w) = wal();
    let h = head(0);
    h.append(&[batch("a", &[(10_000_000, 1.0)])], &w).unwrap();
    let out = h
        .append(
            &[batch(
                "b",
                &[(10_000_000 - 3_600_001, 1.0), (10_000_000 - 3_600_000, 1.0)],
            )],
            &w,
        )
        .unwrap();
    assert_eq!(out.appended, 1);
    assert_eq!(
        out.rejected[0].error,
        SampleError::TooOld {
            t: 6_399_999,
            min_valid_t: 6_400_000
        }
    );
}

#[test]
fn same_series_twice_in_one_batch_keeps_batch_order() {
    let (_d, w) = wal();
    let h = head(0);
    let out = h
        .append(
            &[
                batch("a", &[(1, 1.0)]),
                batch("b", &[(1, 1.0)]),
                batch("a", &[(2, 2.0), (1, 5.0)]),
            ],
            &w,
        )
        .unwrap();
    assert_eq!(out.appended, 3);
    assert_eq!(
        out.rejected,
        vec![Rejected {
            kind: Default::default(),
            series: 2,
            sample: 1,
            error: SampleError::DuplicateSample { t: 1 }
        }]
    );
    assert_eq!(read(&h, "a").len(), 2);
}

#[test]
fn series_limit_per_metric_rejects_new_series_only() {
    let (_d, w) = wal();
    let h = head(2);
    let mk = |i: &str| SeriesSamples {
        created: Vec::new(),
        histograms: Vec::new(),
        labels: Labels::from_static(&[("__name__", "m"), ("i", i)]),
        samples: vec![Sample::new(1, 1.0)],
    };
    let out = h.append(&[mk("1"), mk("2"), mk("3")], &w).unwrap();
    assert_eq!(out.appended, 2);
    assert_eq!(
        out.rejected,
        vec![Rejected {
            kind: Default::default(),
            series: 2,
            sample: 0,
            error: SampleError::SeriesLimit {
                metric: "m".into(),
                limit: 2
            }
        }]
    );
    // Existing series still take samples; other metrics are unaffected.
    let out = h
        .append(
            &[
                SeriesSamples {
                    histograms: Vec::new(),
                    samples: vec![Sample::new(2, 1.0)],
                    ..mk("1")
                },
                batch("other", &[(1, 1.0)]),
            ],
            &w,
        )
        .unwrap();
    assert!(out.is_complete());
    assert_eq!(out.rejected.first().map(|r| r.error.reason()), None);
}

#[test]
fn truncate_drops_old_chunks_and_empty_series() {
    let (_d, w) = wal();
    let h = head(0);
    let old: Vec<(i64, f64)> = (0..130).map(|i| (i, 1.0)).collect();
    h.append(&[batch("old", &old[..10]), batch("mixed", &old)], &w)
        .unwrap();
    h.append(&[batch("mixed", &[(200, 1.0)])], &w).unwrap();
    assert_eq!(h.truncate(150), 1);
    assert!(read(&h, "old").is_empty());
    // The first full chunk of "mixed" (0..119) ended before 150; the open one stays.
    assert_eq!(read(&h, "mixed").first().map(|s| s.0), Some(120));
    assert_eq!(h.min_t(), Some(120));
    assert_eq!(h.label_values("__name__"), ["mixed"]);
}

/// A handle from an earlier append takes the series without a lookup; a
/// handle for other labels, or for a series the head has since dropped, is
/// ignored and the labels decide, so no sample lands on the wrong series
/// or on a series no longer in the head.
#[test]
fn append_hinted_uses_live_matching_handles_only() {
    let (_d, w) = wal();
    let h = head(0);
    let (first, resolved) = h
        .append_hinted(&[batch("a", &[(1, 1.0)]), batch("b", &[(1, 2.0)])], &[], &w)
        .unwrap();
    assert_eq!(first.appended, 2);
    let handles: Vec<Option<SeriesHandle>> = {
        let mut v = vec![None, None];
        for (i, s) in resolved {
            v[i] = Some(s);
        }
        v
    };
    assert!(handles.iter().all(Option::is_some));
    // Handles in place: nothing to resolve.
    let (out, resolved) = h
        .append_hinted(
            &[batch("a", &[(2, 1.5)]), batch("b", &[(2, 2.5)])],
            &handles,
            &w,
        )
        .unwrap();
    assert_eq!((out.appended, resolved.len()), (2, 0));
    // Swapped handles: each entry's labels win.
    let swapped = [handles[1].clone(), handles[0].clone()];
    let (out, resolved) = h
        .append_hinted(
            &[batch("a", &[(3, 1.0)]), batch("b", &[(3, 2.0)])],
            &swapped,
            &w,
        )
        .unwrap();
    assert_eq!((out.appended, resolved.len()), (2, 2));
    assert_eq!(
        read(&h, "a"),
        [
            (1, 1f64.to_bits()),
            (2, 1.5f64.to_bits()),
            (3, 1f64.to_bits())
        ]
    );
    assert_eq!(
        read(&h, "b"),
        [
            (1, 2f64.to_bits()),
            (2, 2.5f64.to_bits()),
            (3, 2f64.to_bits())
        ]
    );
    // After truncation drops `a`, its old handle is ignored: the series is
    // created again and the sample is readable.
    h.truncate(i64::MAX);
    assert!(read(&h, "a").is_empty());
    let (out, resolved) = h
        .append_hinted(&[batch("a", &[(10, 7.0)])], &handles[..1], &w)
        .unwrap();
    assert_eq!((out.appended, resolved.len()), (1, 1));
    assert_eq!(read(&h, "a"), [(10, 7f64.to_bits())]);
}

/// An append that started before compaction raised the floor, but had not
/// yet taken the head's lock, must not land below the floor once
/// compaction has waited for appenders: that range is being persisted and
/// truncated, and a sample landing there after its 2xx would be lost.
#[test]
fn lagging_append_cannot_land_below_a_raised_floor() {
    use std::sync::mpsc;
    let (_d, w) = wal();
    let h = std::sync::Arc::new(head(0));
    h.append(&[batch("lag", &[(1_000, 1.0)])], &w).unwrap();
    let (at_pause_tx, at_pause_rx) = mpsc::sync_channel::<()>(0);
    let (go_tx, go_rx) = mpsc::sync_channel::<()>(0);
    let go_rx = parking_lot::Mutex::new(go_rx);
    super::appender::tests_pause::set("lagging-appender", move || {
        let _ = at_pause_tx.send(());
        let _ = go_rx.lock().recv();
    });
    let w = std::sync::Arc::new(w);
    let appender = {
        let (h, w) = (h.clone(), w.clone());
        std::thread::Builder::new()
            .name("lagging-appender".into())
            .spawn(move || h.append(&[batch("lag", &[(2_000, 2.0)])], &w).unwrap())
            .unwrap()
    };
    at_pause_rx.recv().unwrap();
    // Compaction: raise the floor, wait for appenders, read the range.
    h.set_min_valid_floor(5_000);
    h.wait_for_appenders();
    let persisted = read(&h, "lag");
    go_tx.send(()).unwrap();
    let out = appender.join().unwrap();
    super::appender::tests_pause::clear();
    assert_eq!(out.appended, 0, "the lagging sample is refused: {out:?}");
    assert!(matches!(out.rejected[0].error, SampleError::TooOld { .. }));
    assert_eq!(read(&h, "lag"), persisted, "nothing landed after the read");
}

/// After a failed fsync, the samples of the failed batch are in memory but
/// not durable. A resend is all duplicates of them: it must not be
/// acknowledged until they are durable, and recovery must write them again
/// rather than trust a later fsync of the same file (fsyncgate).
#[test]
fn duplicates_of_samples_not_yet_durable_are_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let w = Wal::open(&wal_dir, WalOptions::default()).unwrap();
    let h = head(0);
    h.append(&[batch("dur", &[(1_000, 1.0)])], &w).unwrap();
    w.fail_next_fsync();
    let b = batch("dur", &[(2_000, 2.0), (3_000, 3.0)]);
    assert!(
        h.append(std::slice::from_ref(&b), &w).is_err(),
        "fsync failed"
    );
    // Applied in memory, but not durable: a resend must not get a 2xx.
    assert!(
        h.append(std::slice::from_ref(&b), &w).is_err(),
        "a duplicate of a sample that is not durable was acknowledged"
    );
    assert!(w.recover().unwrap(), "recovery writes the frames again");
    let out = h.append(std::slice::from_ref(&b), &w).unwrap();
    assert_eq!((out.appended, out.duplicates), (0, 2));
    let out = h.append(&[batch("dur", &[(4_000, 4.0)])], &w).unwrap();
    assert_eq!(out.appended, 1);
    w.close().unwrap();
    drop(w);

    // Replay finds every acknowledged sample, none twice, no damage.
    let h2 = head(0);
    let mut stats = HeadReplayStats::default();
    let replay = crate::storage::wal::replay(&wal_dir, h2.interner(), |rec| {
        h2.apply_record(rec, &mut stats)
    })
    .unwrap();
    assert!(replay.damage.is_none(), "{replay:?}");
    assert_eq!(
        read(&h2, "dur"),
        [(1_000, 1.0), (2_000, 2.0), (3_000, 3.0), (4_000, 4.0)]
            .iter()
            .map(|&(t, v): &(i64, f64)| (t, v.to_bits()))
            .collect::<Vec<_>>()
    );
}

fn exemplar(name: &str, trace: &str, value: f64, t: i64) -> ExemplarEntry {
    ExemplarEntry {
        series: Labels::from_static(&[("__name__", name), ("job", "t")]),
        labels: Labels::try_from_pairs([("trace_id", trace)]).unwrap(),
        value,
        t,
    }
}

fn meta(metric: &str, help: &str) -> MetricMetadata {
    MetricMetadata {
        metric: metric.into(),
        metric_type: "counter",
        help: help.into(),
        unit: String::new(),
    }
}

fn exemplar_keys(h: &Head) -> Vec<(String, String, u64, i64)> {
    h.exemplars()
        .select(&[], i64::MIN, i64::MAX)
        .iter()
        .map(|e| {
            (
                e.series.to_string(),
                e.labels.to_string(),
                e.value.to_bits(),
                e.t,
            )
        })
        .collect()
}

fn replayed(wal_dir: &std::path::Path) -> (Head, HeadReplayStats) {
    let h = head(0);
    let mut stats = HeadReplayStats::default();
    crate::storage::wal::replay(wal_dir, h.interner(), |rec| h.apply_record(rec, &mut stats))
        .unwrap();
    (h, stats)
}

#[test]
fn append_with_exemplars_judged_as_prometheus_and_replayed() {
    let (d, w) = wal();
    let h = head(0);
    let extras = AppendExtras {
        exemplars: vec![
            exemplar("a", "x", 1.0, 10),
            exemplar("a", "x", 1.0, 10), // identical: duplicate
            exemplar("a", "y", 2.0, 10), // same time, other labels: out of order
            exemplar("a", "z", 3.0, 5),  // older: out of order
            exemplar("a", "w", f64::NAN, 11),
            exemplar("nope", "q", 1.0, 10), // no such series
        ],
        metadata: vec![],
    };
    let (out, _) = h
        .append_with(&[batch("a", &[(10, 1.0), (11, 2.0)])], &[], &extras, &w)
        .unwrap();
    let x = &out.extras;
    assert_eq!((x.exemplars_appended, x.exemplars_duplicate), (2, 1));
    assert_eq!(x.exemplars_dropped[&ExemplarDrop::OutOfOrder], 2);
    assert_eq!(x.exemplars_dropped[&ExemplarDrop::UnknownSeries], 1);
    // A resend of the same batch: duplicates only, nothing logged again.
    let (again, _) = h
        .append_with(&[batch("a", &[(11, 2.0)])], &[], &extras, &w)
        .unwrap();
    assert_eq!(again.extras.exemplars_appended, 0);
    let want = exemplar_keys(&h);
    assert_eq!(want.len(), 2);
    w.close().unwrap();

    let (h2, stats) = replayed(&d.path().join("wal"));
    assert_eq!(exemplar_keys(&h2), want);
    assert_eq!((stats.exemplars, stats.skipped_exemplars), (2, 0));
}

#[test]
fn append_with_metadata_only_logs_changes_and_replays() {
    let (d, w) = wal();
    let h = head(0);
    let md = |entries: Vec<MetricMetadata>| AppendExtras {
        exemplars: vec![],
        metadata: entries,
    };
    // A request of metadata alone (as Prometheus sends them) is logged.
    let (out, _) = h
        .append_with(&[], &[], &md(vec![meta("a", "A."), meta("b", "B.")]), &w)
        .unwrap();
    assert_eq!(out.extras.metadata_changed, 2);
    let written = w.written();
    // Unchanged: nothing logged.
    let (out, _) = h
        .append_with(&[], &[], &md(vec![meta("a", "A.")]), &w)
        .unwrap();
    assert_eq!(out.extras.metadata_changed, 0);
    assert_eq!(w.written(), written);
    let (out, _) = h
        .append_with(&[], &[], &md(vec![meta("a", "A, changed.")]), &w)
        .unwrap();
    assert_eq!(out.extras.metadata_changed, 1);
    w.close().unwrap();

    let (h2, stats) = replayed(&d.path().join("wal"));
    assert_eq!(h2.metadata().all(), h.metadata().all());
    assert_eq!(h2.metadata().get(Some("a"), 0)[0].help, "A, changed.");
    assert_eq!(stats.metadata, 3);
}

#[test]
fn append_with_store_bounds_drop_and_count_never_fail_samples() {
    let (_d, w) = wal();
    let h = Head::new(HeadOptions {
        block_range_ms: 7_200_000,
        max_series_per_metric: 0,
        stripes: 16,
        max_exemplars: 2,
        metadata: MetadataLimits {
            max_families: 1,
            max_bytes: 10,
        },
        ooo_window_ms: 0,
    });
    let extras = AppendExtras {
        exemplars: (0..3).map(|t| exemplar("a", "x", 1.0, t)).collect(),
        metadata: vec![meta("a", "A."), meta("b", "B."), meta("a", "too long help")],
    };
    let (out, _) = h
        .append_with(&[batch("a", &[(0, 1.0)])], &[], &extras, &w)
        .unwrap();
    assert_eq!(out.appended, 1);
    assert!(out.rejected.is_empty());
    assert_eq!(out.extras.exemplars_appended, 3);
    // A ring of two keeps the newest two.
    let ts: Vec<i64> = exemplar_keys(&h).iter().map(|k| k.3).collect();
    assert_eq!(ts, [1, 2]);
    assert_eq!(out.extras.metadata_changed, 1);
    assert_eq!(out.extras.metadata_dropped[&MetadataDrop::FamiliesLimit], 1);
    assert_eq!(out.extras.metadata_dropped[&MetadataDrop::BytesLimit], 1);
    assert_eq!(h.metadata().get(Some("a"), 0)[0].help, "A.");
}

#[test]
fn append_with_exemplars_off_logs_none() {
    let (d, w) = wal();
    let h = Head::new(HeadOptions {
        block_range_ms: 7_200_000,
        max_series_per_metric: 0,
        stripes: 16,
        max_exemplars: 0,
        metadata: MetadataLimits {
            max_families: 10,
            max_bytes: 1000,
        },
        ooo_window_ms: 0,
    });
    let extras = AppendExtras {
        exemplars: vec![exemplar("a", "x", 1.0, 1)],
        metadata: vec![],
    };
    let (out, _) = h
        .append_with(&[batch("a", &[(1, 1.0)])], &[], &extras, &w)
        .unwrap();
    assert_eq!(out.extras, ExtrasOutcome::default());
    assert!(h.exemplars().is_empty());
    w.close().unwrap();
    let (_, stats) = replayed(&d.path().join("wal"));
    assert_eq!((stats.exemplars, stats.skipped_exemplars), (0, 0));
}

#[test]
fn created_timestamp_zero_stored_only_when_newer_and_replayed() {
    let (d, w) = wal();
    let h = head(0);
    let with_ct = |created: &[i64], samples: &[(i64, f64)]| SeriesSamples {
        created: created.to_vec(),
        ..batch("c", samples)
    };
    // A new series: the zero goes before the first sample.
    let out = h.append(&[with_ct(&[50], &[(100, 5.0)])], &w).unwrap();
    assert_eq!((out.appended, out.created_zeros), (1, 1), "{out:?}");
    // Each of these is skipped silently: not newer than the newest sample
    // (resend), equal to the newest, equal to its own sample's time.
    for (ct, t) in [(50, 110), (110, 120), (130, 130)] {
        let out = h.append(&[with_ct(&[ct], &[(t, 6.0)])], &w).unwrap();
        assert_eq!(
            (out.appended, out.created_zeros, out.rejected.len()),
            (1, 0, 0),
            "ct {ct}: {out:?}"
        );
    }
    // A created timestamp newer than its sample never stores a zero
    // after the sample (the ingest side drops it; the head would keep it
    // for a later sample of the batch only).
    let out = h
        .append(&[with_ct(&[200], &[(140, 7.0), (210, 1.0)])], &w)
        .unwrap();
    assert_eq!((out.appended, out.created_zeros), (2, 1), "{out:?}");
    // A counter restart: zero at the created time, then the new count.
    let out = h.append(&[with_ct(&[250], &[(260, 1.0)])], &w).unwrap();
    assert_eq!((out.appended, out.created_zeros), (1, 1), "{out:?}");
    let want = [
        (50, 0.0),
        (100, 5.0),
        (110, 6.0),
        (120, 6.0),
        (130, 6.0),
        (140, 7.0),
        (200, 0.0),
        (210, 1.0),
        (250, 0.0),
        (260, 1.0),
    ];
    let bits = |v: &[(i64, f64)]| v.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
    assert_eq!(read(&h, "c"), bits(&want));

    // A histogram series: the zero keeps the histogram's schema.
    let hl = Labels::from_static(&[("__name__", "hc"), ("job", "t")]);
    let hist = crate::model::Histogram {
        schema: 3,
        count: 2,
        zero_count: 2,
        zero_threshold: 0.001,
        sum: 1.0,
        ..Default::default()
    };
    let hb = SeriesSamples {
        labels: hl.clone(),
        histograms: vec![crate::model::HistogramSample {
            t: 1_000,
            h: crate::model::HistogramValue::Int(hist),
        }],
        created: vec![900],
        samples: Vec::new(),
    };
    let out = h.append(std::slice::from_ref(&hb), &w).unwrap();
    assert_eq!(
        (out.appended, out.appended_histograms, out.created_zeros),
        (1, 1, 1),
        "{out:?}"
    );
    let s = h.find_series(&hl).unwrap();
    let zero = s.data.lock().hist().unwrap().value_at(900).unwrap();
    assert_eq!((zero.schema, zero.count, zero.sum), (3, 0.0, 0.0));
    assert_eq!(zero.zero_threshold, 0.001);
    // Resent: the zero is not newer now, the sample a duplicate.
    let out = h.append(std::slice::from_ref(&hb), &w).unwrap();
    assert_eq!(
        (out.duplicates, out.created_zeros, out.rejected.len()),
        (1, 0, 0)
    );

    // The zeros are in the WAL like any sample.
    w.close().unwrap();
    drop(w);
    let (h2, _) = replayed(&d.path().join("wal"));
    assert_eq!(read(&h2, "c"), bits(&want));
    let s = h2.find_series(&hl).unwrap();
    assert!(s.data.lock().hist().unwrap().value_at(900).is_some());
}
