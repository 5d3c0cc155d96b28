//! Restart round trip: what was appended reads back bit-exactly after close
//! and reopen (WAL replay), stale markers and odd floats included.

mod common;

use std::collections::BTreeMap;

use common::*;
use tidemark::model::{Sample, STALE_NAN};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

/// Options without the head snapshot: every reopen replays the WAL.
fn wal_only() -> Options {
    Options {
        head_snapshot_on_close: false,
        ..options(FsyncPolicy::Never)
    }
}

/// Value of sample `j` of series `i`: counters, gauges, constants, and the
/// floats codecs get wrong (stale marker, NaN payloads, -0.0, infinities).
fn value(i: usize, j: usize) -> f64 {
    match (i % 4, j % 97) {
        (_, 13) => STALE_NAN,
        (_, 29) => f64::from_bits(0x7ff8_0000_dead_beef),
        (_, 41) => -0.0,
        (_, 53) => f64::INFINITY,
        (_, 67) => f64::NEG_INFINITY,
        (0, _) => (j * 17 + i) as f64,
        (1, _) => ((i * 31 + j * 7) % 1000) as f64 / 10.0 - 50.0,
        (2, _) => 42.0,
        _ => (j as f64).sin() * 1e6,
    }
}

#[test]
fn restart_round_trip_1000_series_x_500_samples_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut want: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    {
        let db = Db::open(dir.path(), wal_only()).unwrap();
        // Appended in slices of 50 samples per series, as a scraper would.
        for round in 0..10 {
            let batch: Vec<_> = (0..1000)
                .map(|i| {
                    let samples: Vec<Sample> = (round * 50..(round + 1) * 50)
                        .map(|j| {
                            Sample::new(
                                1_700_000_000_000 + j as i64 * 15_000 + i as i64,
                                value(i, j),
                            )
                        })
                        .collect();
                    one(series_labels("restart_metric", i), samples)
                })
                .collect();
            for s in &batch {
                want.entry(s.labels.to_string())
                    .or_default()
                    .extend(s.samples.iter().map(|x| (x.t, x.v.to_bits())));
            }
            let out = db.append(&batch).unwrap();
            assert!(out.is_complete(), "{:?}", out.rejected.first());
            assert_eq!(out.appended, 50_000);
        }
        assert_eq!(dump(&db), want);
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), wal_only()).unwrap();
    let report = db.open_report();
    assert!(!report.head_snapshot_loaded);
    assert!(report.wal.damage.is_none(), "{:?}", report.wal.damage);
    assert_eq!(report.head.samples, 500_000);
    assert_eq!(report.head.series, 1000);
    let got = dump(&db);
    assert_eq!(got.len(), 1000);
    assert_eq!(got, want);
    // Appends continue after replay with the same rules.
    let out = db
        .append(&[one(
            series_labels("restart_metric", 0),
            vec![Sample::new(1_700_000_000_000, 1.0)],
        )])
        .unwrap();
    assert_eq!(out.rejected.len(), 1);
}

#[test]
fn restart_twice_keeps_refs_and_data() {
    let dir = tempfile::tempdir().unwrap();
    for generation in 0..3i64 {
        let db = open(dir.path());
        let batch: Vec<_> = (0..20)
            .map(|i| {
                one(
                    series_labels("gen", i),
                    vec![Sample::new(generation * 1000 + 1, generation as f64)],
                )
            })
            .collect();
        assert!(db.append(&batch).unwrap().is_complete());
        let d = dump(&db);
        assert_eq!(d.len(), 20);
        assert!(d.values().all(|v| v.len() == generation as usize + 1));
    }
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path());
    let err = tidemark::storage::Db::open(
        dir.path(),
        options(tidemark::storage::wal::FsyncPolicy::Never),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn open_waits_for_a_lock_released_soon_after() {
    // A holder that lets go within the wait (a process still exiting, a
    // child between fork and exec holding a copy of the descriptor) does
    // not make the directory "in use".
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
    });
    let second = tidemark::storage::Db::open(
        dir.path(),
        options(tidemark::storage::wal::FsyncPolicy::Never),
    );
    releaser.join().unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

fn restart_batch(round: usize) -> Vec<tidemark::storage::SeriesSamples> {
    (0..200)
        .map(|i| {
            let samples = (round * 150..(round + 1) * 150)
                .map(|j| Sample::new(1_700_000_000_000 + j as i64 * 15_000, value(i, j)))
                .collect();
            one(series_labels("snap_metric", i), samples)
        })
        .collect()
}

#[test]
fn clean_restart_loads_the_head_snapshot_then_newer_wal() {
    let dir = tempfile::tempdir().unwrap();
    let want;
    {
        let db = open(dir.path());
        assert!(db.append(&restart_batch(0)).unwrap().is_complete());
        db.close().unwrap();
    }
    assert!(dir.path().join("head_snapshot").is_file());
    {
        let db = open(dir.path());
        assert!(db.open_report().head_snapshot_loaded);
        assert_eq!(db.open_report().head.samples, 0, "nothing replayed");
        // Used once: a crash from here on recovers from the WAL alone.
        assert!(!dir.path().join("head_snapshot").exists());
        // The restored open chunks take appends exactly as before.
        assert!(db.append(&restart_batch(1)).unwrap().is_complete());
        want = dump(&db);
        assert_eq!(want.values().map(Vec::len).sum::<usize>(), 200 * 300);
        db.close().unwrap();
    }
    let db = open(dir.path());
    assert!(db.open_report().head_snapshot_loaded);
    assert_eq!(dump(&db), want);
    db.close().unwrap();
    drop(db);
    // The same store replayed from the WAL alone holds the same.
    std::fs::remove_file(dir.path().join("head_snapshot")).unwrap();
    let db = Db::open(dir.path(), wal_only()).unwrap();
    assert!(!db.open_report().head_snapshot_loaded);
    assert_eq!(dump(&db), want);
}

#[test]
fn damaged_head_snapshot_falls_back_to_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let want;
    {
        let db = open(dir.path());
        assert!(db.append(&restart_batch(0)).unwrap().is_complete());
        want = dump(&db);
        db.close().unwrap();
    }
    let path = dir.path().join("head_snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let db = open(dir.path());
    assert!(!db.open_report().head_snapshot_loaded);
    assert_eq!(db.open_report().head.samples, 200 * 150);
    assert_eq!(dump(&db), want);
    assert!(!path.exists());
}

/// Exemplars and metadata by each way back: the head snapshot with
/// `head_metadata`; a snapshot whose `head_metadata` is missing or damaged
/// (the WAL is replayed instead, the snapshot is not half used); the WAL
/// alone.
#[test]
fn exemplars_and_metadata_come_back_by_snapshot_or_wal() {
    use tidemark::model::Labels;
    use tidemark::storage::{AppendExtras, ExemplarEntry, MetricMetadata};

    fn state(db: &Db) -> (Vec<String>, Vec<MetricMetadata>) {
        let ex = db
            .exemplars()
            .select(&[], i64::MIN, i64::MAX)
            .iter()
            .map(|e| format!("{} {} {} {}", e.series, e.labels, e.value.to_bits(), e.t))
            .collect();
        (ex, db.metadata().all())
    }
    let dir = tempfile::tempdir().unwrap();
    let batch = restart_batch(0);
    let extras = AppendExtras {
        exemplars: batch
            .iter()
            .flat_map(|s| {
                s.samples.iter().step_by(10).map(|x| ExemplarEntry {
                    series: s.labels.clone(),
                    labels: Labels::try_from_pairs([("trace_id", format!("{}", x.t))]).unwrap(),
                    value: x.v,
                    t: x.t,
                })
            })
            .collect(),
        metadata: vec![MetricMetadata {
            metric: "snap_metric".into(),
            metric_type: "counter",
            help: "Snapshot ☃ test.".into(),
            unit: "seconds".into(),
        }],
    };
    let want;
    {
        let db = open(dir.path());
        let (out, _) = db.append_with(&batch, &[], &extras).unwrap();
        assert_eq!(out.extras.exemplars_appended, 200 * 15);
        want = state(&db);
        db.close().unwrap();
    }
    let meta = dir.path().join("head_metadata");
    let snap = dir.path().join("head_snapshot");
    assert!(meta.is_file() && snap.is_file());
    {
        let db = open(dir.path());
        assert!(db.open_report().head_snapshot_loaded);
        assert_eq!(db.open_report().head.samples, 0, "nothing replayed");
        assert!(!meta.exists() && !snap.exists());
        assert_eq!(state(&db), want);
        db.close().unwrap();
    }
    // Missing head_metadata: the WAL, not a snapshot without exemplars.
    std::fs::remove_file(&meta).unwrap();
    {
        let db = open(dir.path());
        assert!(!db.open_report().head_snapshot_loaded);
        assert_eq!(state(&db), want);
        db.close().unwrap();
    }
    // Damaged head_metadata: the same.
    let mut bytes = std::fs::read(&meta).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&meta, bytes).unwrap();
    {
        let db = open(dir.path());
        assert!(!db.open_report().head_snapshot_loaded);
        assert!(!meta.exists() && !snap.exists());
        assert_eq!(state(&db), want);
    }
    let db = Db::open(dir.path(), wal_only()).unwrap();
    assert_eq!(state(&db), want);
}
