//! Many threads appending at once: disjoint and overlapping series end with
//! exactly the expected contents, and conflicting samples get typed errors.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tidemark::model::Sample;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, SampleError};

const THREADS: usize = 8;
const ROUNDS: i64 = 200;

#[test]
fn concurrent_appends_disjoint_and_overlapping_series_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(FsyncPolicy::Batch)).unwrap();
    let dup_ok = AtomicUsize::new(0);
    let dup_err = AtomicUsize::new(0);
    let ooo = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for th in 0..THREADS {
            let (db, dup_ok, dup_err, ooo) = (&db, &dup_ok, &dup_err, &ooo);
            sc.spawn(move || {
                for r in 0..ROUNDS {
                    // Own series: 5 per thread, one sample per round.
                    let mut batch: Vec<_> = (0..5)
                        .map(|s| {
                            one(
                                series_labels(&format!("own_{th}"), s),
                                vec![Sample::new(r * 10, (th * 1000 + s) as f64 + r as f64)],
                            )
                        })
                        .collect();
                    // Shared series: every thread writes the same (t, v) so the
                    // winner stores it and the others see identical duplicates...
                    batch.push(one(
                        series_labels("shared_same", 0),
                        vec![Sample::new(r * 10, r as f64)],
                    ));
                    // ...and a series where threads disagree on the value.
                    batch.push(one(
                        series_labels("shared_conflict", 0),
                        vec![Sample::new(r * 10, th as f64)],
                    ));
                    let out = db.append(&batch).unwrap();
                    dup_ok.fetch_add(out.duplicates, Ordering::Relaxed);
                    for rej in &out.rejected {
                        match rej.error {
                            SampleError::DuplicateSample { .. } => {
                                dup_err.fetch_add(1, Ordering::Relaxed)
                            }
                            SampleError::OutOfOrder { .. } => ooo.fetch_add(1, Ordering::Relaxed),
                            ref e => panic!("unexpected rejection {e:?}"),
                        };
                        assert!(batch[rej.series]
                            .labels
                            .metric_name()
                            .unwrap()
                            .starts_with("shared_"));
                    }
                }
            });
        }
    });
    let d = dump(&db);
    for th in 0..THREADS {
        for s in 0..5 {
            let got = &d[&series_labels(&format!("own_{th}"), s).to_string()];
            let want: Vec<(i64, u64)> = (0..ROUNDS)
                .map(|r| (r * 10, ((th * 1000 + s) as f64 + r as f64).to_bits()))
                .collect();
            assert_eq!(got, &want, "own_{th} series {s}");
        }
    }
    // Each round of the shared series is stored exactly once, with one of the
    // values written; a thread that lost the race either saw its identical
    // sample (duplicate, accepted) or a typed error.
    let same = &d[&series_labels("shared_same", 0).to_string()];
    let conflict = &d[&series_labels("shared_conflict", 0).to_string()];
    assert!(same.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(conflict.windows(2).all(|w| w[0].0 < w[1].0));
    let total_writes = THREADS * ROUNDS as usize;
    // shared_same: every write is stored, a duplicate, or out of order (a
    // later round already stored by a faster thread).
    let conflict_rejects = dup_err.load(Ordering::Relaxed);
    let stored = same.len() + conflict.len();
    assert_eq!(
        stored + dup_ok.load(Ordering::Relaxed) + conflict_rejects + ooo.load(Ordering::Relaxed),
        2 * total_writes,
        "every shared write accounted for"
    );
    assert!(same
        .iter()
        .all(|&(t, v)| f64::from_bits(v) == (t / 10) as f64));
    assert!(conflict
        .iter()
        .all(|&(_, v)| (f64::from_bits(v) as usize) < THREADS));

    // Deterministic check of the typed errors on the contended series.
    let (last_t, last_v) = *conflict.last().unwrap();
    let out = db
        .append(&[
            one(
                series_labels("shared_conflict", 0),
                vec![Sample::new(last_t, f64::from_bits(last_v) + 0.5)],
            ),
            one(series_labels("shared_same", 0), vec![Sample::new(-1, 0.0)]),
        ])
        .unwrap();
    let errs: Vec<_> = out.rejected.iter().map(|r| r.error.clone()).collect();
    assert_eq!(
        errs,
        [
            SampleError::DuplicateSample { t: last_t },
            SampleError::OutOfOrder {
                t: -1,
                last_t: same.last().unwrap().0
            }
        ]
    );

    // Restart: the same contents come back.
    drop(db);
    let db = open(dir.path());
    assert_eq!(dump(&db), d);
}

/// Appenders whose timestamps lag behind the head's newest, beside a thread
/// compacting as fast as it can: every sample acknowledged is served
/// afterwards (from blocks or head) and after a restart. An append that
/// read the head's floor before compaction raised it must not land in a
/// range compaction has persisted and truncated (issue 13, item 1).
#[test]
fn lagging_appenders_beside_compaction_lose_nothing_acknowledged() {
    use std::sync::atomic::AtomicBool;
    const APPENDERS: usize = 4;
    let iterations: i64 = std::env::var("TIDEMARK_SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().unwrap();
    let opts = || tidemark::storage::Options {
        block_range_ms: 10_000,
        retention_ms: 0,
        head_snapshot_on_close: false,
        ..options(FsyncPolicy::Never)
    };
    let db = Db::open(dir.path(), opts()).unwrap();
    let stop = AtomicBool::new(false);
    let acked: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let compactor = scope.spawn(|| {
            let mut runs = 0u64;
            while !stop.load(Ordering::Acquire) {
                db.compact().unwrap();
                runs += 1;
            }
            runs
        });
        // The leader pushes the head's newest time ahead; the others lag
        // behind it by varying amounts, so their samples straddle the floor.
        let leader = scope.spawn(|| {
            for k in 0..iterations {
                let s = one(series_labels("lead", 0), vec![Sample::new(k * 40, 1.0)]);
                db.append(&[s]).unwrap();
            }
        });
        let lagging: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let db = &db;
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    let mut t = 0i64;
                    for k in 0..iterations {
                        t = t.max(k * 40 - 6_000 - (a as i64) * 500) + 1;
                        let s = one(series_labels("lag", a), vec![Sample::new(t, t as f64)]);
                        let out = db.append(&[s]).unwrap();
                        if out.appended == 1 {
                            acked.push(t);
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked = lagging.into_iter().map(|h| h.join().unwrap()).collect();
        leader.join().unwrap();
        stop.store(true, Ordering::Release);
        assert!(compactor.join().unwrap() > 0);
        acked
    });
    assert!(!db.blocks().is_empty(), "compaction persisted blocks");
    let check = |db: &Db, what: &str| {
        let d = dump(db);
        for (a, want) in acked.iter().enumerate() {
            let got: std::collections::HashSet<i64> = d
                .get(&series_labels("lag", a).to_string())
                .map(|v| v.iter().map(|s| s.0).collect())
                .unwrap_or_default();
            let lost: Vec<&i64> = want.iter().filter(|t| !got.contains(t)).collect();
            assert!(
                lost.is_empty(),
                "{what}: appender {a} lost acknowledged samples {lost:?}"
            );
        }
    };
    check(&db, "live");
    db.compact().unwrap();
    check(&db, "after a final compaction");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    check(&db, "after restart");
}
