//! Persisting the head at a clean shutdown (`Options::persist_head_on_close`,
//! the server's `--storage.persist-head-on-shutdown`): the data directory at
//! rest holds blocks and an empty WAL; every sample, exemplar and metadata
//! entry comes back; a series that lagged behind the newest sample still
//! takes its next samples after the restart, also across a later crash; and
//! a crash at any step of the shutdown loses and doubles nothing.
//!
//! The crash cases re-run this test binary as a child (`CHILD_DIR`,
//! `common::crash`) that aborts itself at one step of `Db::close`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use tidemark::model::{Labels, Sample};
use tidemark::storage::block::BlockMeta;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{AppendExtras, Db, ExemplarEntry, MetricMetadata, Options};

const CHILD_DIR: &str = "TIDEMARK_PERSIST_CRASH_DIR";
const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 8;
/// Series 0 stops this much before the others: it lags behind the newest.
const LAG: i64 = 10 * STEP;
/// 2.5 h of data: the head spans two block ranges, nothing cut yet.
const END: i64 = T0 + 5 * HOUR / 2;

fn opts(hook: bool) -> Options {
    Options {
        persist_head_on_close: true,
        crash_hook: hook.then_some(common::crash::abort_at as fn(&str)),
        ..options(FsyncPolicy::Never)
    }
}

fn value(n: usize, t: i64) -> f64 {
    ((t - T0) / STEP) as f64 * (n as f64 + 0.25)
}

/// The last timestamp series `n` gets before the shutdown.
fn last_of(n: usize) -> i64 {
    if n == 0 {
        END - LAG
    } else {
        END
    }
}

fn exemplar(n: usize, t: i64) -> ExemplarEntry {
    ExemplarEntry {
        series: series_labels("persist_metric", n),
        labels: Labels::try_from_pairs([("trace_id", format!("{n}-{t}"))]).unwrap(),
        value: value(n, t),
        t,
    }
}

fn metadata() -> Vec<MetricMetadata> {
    vec![MetricMetadata {
        metric: "persist_metric".into(),
        metric_type: "counter",
        help: "Persisted at shutdown.".into(),
        unit: "seconds".into(),
    }]
}

/// Appends every series up to its [`last_of`], an exemplar every hour, and
/// the metric's metadata once.
fn ingest(db: &Db) {
    let mut t = T0;
    while t <= END {
        let batch: Vec<_> = (0..SERIES)
            .filter(|&n| t <= last_of(n))
            .map(|n| {
                one(
                    series_labels("persist_metric", n),
                    vec![Sample::new(t, value(n, t))],
                )
            })
            .collect();
        let extras = AppendExtras {
            exemplars: if (t - T0) % HOUR == 0 {
                (0..SERIES).map(|n| exemplar(n, t)).collect()
            } else {
                Vec::new()
            },
            metadata: if t == T0 { metadata() } else { Vec::new() },
        };
        let (out, _) = db.append_with(&batch, &[], &extras).expect("append");
        assert!(out.is_complete(), "{:?}", out.rejected.first());
        t += STEP;
    }
}

fn expected() -> BTreeMap<String, Vec<(i64, u64)>> {
    (0..SERIES)
        .map(|n| {
            let samples = (0..)
                .map(|k| T0 + k * STEP)
                .take_while(|&t| t <= last_of(n))
                .map(|t| (t, value(n, t).to_bits()))
                .collect();
            (series_labels("persist_metric", n).to_string(), samples)
        })
        .collect()
}

fn exemplars(db: &Db) -> Vec<String> {
    db.exemplars()
        .select(&[], i64::MIN, i64::MAX)
        .iter()
        .map(|e| format!("{} {} {}", e.series, e.labels, e.t))
        .collect()
}

fn expected_exemplars() -> Vec<String> {
    let mut out = Vec::new();
    let mut t = T0;
    while t <= END {
        for n in 0..SERIES {
            let e = exemplar(n, t);
            out.push(format!("{} {} {}", e.series, e.labels, e.t));
        }
        t += HOUR;
    }
    out
}

fn block_metas(dir: &Path) -> Vec<BlockMeta> {
    let mut metas: Vec<BlockMeta> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .map(|json| serde_json::from_slice(&json).expect("meta.json"))
        .collect();
    metas.sort_by_key(|m| m.min_time);
    metas
}

/// Bytes of the WAL directory's files.
fn wal_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let m = e.metadata().unwrap();
                        if m.is_dir() {
                            walk(&e.path())
                        } else {
                            m.len()
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("wal"))
}

#[test]
fn clean_close_persists_the_head_to_blocks_and_empties_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let wal_before;
    {
        let db = Db::open(dir.path(), opts(false)).unwrap();
        ingest(&db);
        wal_before = wal_bytes(dir.path());
        db.close().unwrap();
    }
    assert!(
        !dir.path().join("head_snapshot").exists(),
        "no snapshot beside blocks"
    );
    assert!(dir.path().join("head_metadata").is_file());
    let metas = block_metas(dir.path());
    // 2.5 h from an aligned start: two block ranges, aligned like head
    // compaction's, each recording the floor the head had (none).
    assert_eq!(metas.len(), 2, "{metas:?}");
    assert_eq!(metas[0].min_time, T0.div_euclid(2 * HOUR) * 2 * HOUR);
    assert_eq!(metas[1].min_time, metas[0].max_time);
    for m in &metas {
        assert_eq!(m.tidemark.head_floor, Some(i64::MIN), "{m:?}");
    }
    let wal_after = wal_bytes(dir.path());
    assert!(
        wal_after * 50 < wal_before,
        "the WAL keeps {wal_after} of {wal_before} bytes"
    );

    let db = Db::open(dir.path(), opts(false)).unwrap();
    let report = db.open_report();
    assert_eq!(report.head.samples, 0, "nothing to replay");
    assert!(report.head_metadata_loaded);
    assert_eq!(db.num_series(), 0, "the head starts empty");
    assert_eq!(dump(&db), expected());
    assert_eq!(exemplars(&db), expected_exemplars());
    assert_eq!(db.metadata().all(), metadata());
    // Kept: it is the only copy of the exemplars until the next shutdown.
    assert!(dir.path().join("head_metadata").is_file());
}

#[test]
fn a_lagging_series_takes_its_next_samples_after_a_persisted_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts(false)).unwrap();
        ingest(&db);
        db.close().unwrap();
    }
    // Series 0 stopped LAG before the newest sample; its next samples are
    // older than the blocks' end but newer than anything it has.
    let late: Vec<i64> = (1..=5).map(|k| END - LAG + k * STEP).collect();
    let mut want = expected();
    {
        // Closing this one writes nothing more (no persist, no snapshot):
        // what the next open finds is what a crash would leave.
        let crashing = Options {
            persist_head_on_close: false,
            head_snapshot_on_close: false,
            ..opts(false)
        };
        let db = Db::open(dir.path(), crashing).unwrap();
        for &t in &late {
            let out = db
                .append(&[one(
                    series_labels("persist_metric", 0),
                    vec![Sample::new(t, value(0, t))],
                )])
                .unwrap();
            assert!(out.is_complete(), "t={t}: {:?}", out.rejected.first());
        }
        // New exemplars of the new life judge against their own series.
        let e = exemplar(0, END + STEP);
        let (out, _) = db
            .append_with(
                &[one(
                    series_labels("persist_metric", 0),
                    vec![Sample::new(END + STEP, value(0, END + STEP))],
                )],
                &[],
                &AppendExtras {
                    exemplars: vec![e],
                    metadata: Vec::new(),
                },
            )
            .unwrap();
        assert_eq!(out.extras.exemplars_appended, 1);
        let s0 = want
            .get_mut(&series_labels("persist_metric", 0).to_string())
            .unwrap();
        for t in late.iter().copied().chain([END + STEP]) {
            s0.push((t, value(0, t).to_bits()));
        }
        assert_eq!(dump(&db), want);
    }
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert_eq!(
        dump(&db),
        want,
        "acknowledged after the restart, lost in replay"
    );
    let mut ex = expected_exemplars();
    let e = exemplar(0, END + STEP);
    ex.push(format!("{} {} {}", e.series, e.labels, e.t));
    assert_eq!(exemplars(&db), ex);
    // And a second persisted shutdown merges nothing away.
    db.compact().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert_eq!(dump(&db), want);
    assert_eq!(exemplars(&db), ex);
}

/// Not a test on its own: the body of the child process.
#[test]
fn persist_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let db = Db::open(&dir, opts(true)).expect("child open");
    ingest(&db);
    println!("ingested");
    db.close().expect("close");
    println!("child finished without crashing");
}

fn crash_at(step: &str) {
    let dir = tempfile::tempdir().unwrap();
    common::crash::run_child(
        "persist_crash_child",
        &[(CHILD_DIR, dir.path().as_os_str())],
        step,
    );

    let db = Db::open(dir.path(), opts(false)).expect("reopen after crash");
    assert!(db.open_report().quarantined.is_empty(), "{step}");
    assert_eq!(dump(&db), expected(), "{step}");
    assert_eq!(exemplars(&db), expected_exemplars(), "{step}");
    assert_eq!(db.metadata().all(), metadata(), "{step}");
    // The lagging series still takes its next sample.
    let t = END - LAG + STEP;
    let out = db
        .append(&[one(
            series_labels("persist_metric", 0),
            vec![Sample::new(t, value(0, t))],
        )])
        .unwrap();
    assert!(out.is_complete(), "{step}: {:?}", out.rejected.first());
    // Compaction merges whatever the crash left twice; still every sample once.
    db.compact().unwrap();
    let mut want = expected();
    want.get_mut(&series_labels("persist_metric", 0).to_string())
        .unwrap()
        .push((t, value(0, t).to_bits()));
    assert_eq!(dump(&db), want, "{step} after compaction");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert_eq!(dump(&db), want, "{step} after a clean restart");
}

#[test]
fn crash_at_any_step_of_the_persisting_shutdown_loses_and_doubles_nothing() {
    for step in [
        "head-block:start",
        "head-block:series_written",
        "head-block:finished",
        "head-block:renamed",
        "head-block:renamed#2",
        "close:blocks_written",
        "close:head_metadata_written",
        "wal-checkpoint:renamed",
        "wal-checkpoint:segments_removed",
        "close:wal_checkpointed",
    ] {
        crash_at(step);
    }
}
