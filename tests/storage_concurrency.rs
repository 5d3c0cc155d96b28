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
