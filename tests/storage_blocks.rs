//! Storage engine II end to end through `Db`: head data cut into blocks,
//! blocks merged, retention, deletion, snapshots and damaged blocks, each
//! checked sample by sample against an in-memory oracle. Time is the data's
//! own (sample timestamps drive compaction), so no test sleeps.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use tidemark::model::{Labels, Matcher, Sample, STALE_NAN_BITS};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const STEP: i64 = 15_000;
/// Start of the data: a multiple of every block range used.
const T0: i64 = 1_700_006_400_000 - 1_700_006_400_000 % (54 * HOUR);

type Oracle = BTreeMap<String, Vec<(i64, u64)>>;

fn opts() -> Options {
    Options {
        retention_ms: 0,
        ..options(FsyncPolicy::Never)
    }
}

fn labels(n: usize) -> Labels {
    let metric = ["node_cpu_seconds_total", "node_memory_free_bytes", "up"][n % 3];
    series_labels(metric, n)
}

/// A value with the shape of its metric: counters grow, gauges wander,
/// `up` is constant; a few staleness markers and odd floats mixed in.
fn value(n: usize, t: i64) -> f64 {
    let k = (t - T0) / STEP;
    if k % 97 == 13 && n.is_multiple_of(5) {
        return f64::from_bits(STALE_NAN_BITS);
    }
    match n % 3 {
        0 => (k as f64) * 1.5 + n as f64,
        1 => 1e9 + ((k * 7919 + n as i64) % 1000) as f64 * 0.25,
        _ => 1.0,
    }
}

/// Appends `series` series every 15 s over `[from, to)` in time order,
/// running compaction every simulated 30 minutes; records every sample in
/// the oracle.
fn ingest(db: &Db, oracle: &mut Oracle, series: usize, from: i64, to: i64) {
    let mut t = from;
    while t < to {
        let batch: Vec<_> = (0..series)
            .map(|n| one(labels(n), vec![Sample::new(t, value(n, t))]))
            .collect();
        let out = db.append(&batch).expect("append");
        assert!(out.is_complete(), "{:?}", out.rejected.first());
        for n in 0..series {
            oracle
                .entry(labels(n).to_string())
                .or_default()
                .push((t, value(n, t).to_bits()));
        }
        t += STEP;
        if (t - T0) % (30 * MIN) == 0 {
            db.compact().expect("compact");
        }
    }
}

fn range(d: &Oracle, mint: i64, maxt: i64) -> Oracle {
    d.iter()
        .map(|(k, v)| {
            let v: Vec<_> = v
                .iter()
                .copied()
                .filter(|(t, _)| *t >= mint && *t <= maxt)
                .collect();
            (k.clone(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn query(db: &Db, mint: i64, maxt: i64, matchers: &[Matcher]) -> Oracle {
    db.querier(mint, maxt)
        .select(matchers)
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.samples().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

fn assert_same(got: &Oracle, want: &Oracle, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: series count");
    for (k, w) in want {
        let g = got.get(k).unwrap_or_else(|| panic!("{what}: {k} missing"));
        assert_eq!(g.len(), w.len(), "{what}: sample count of {k}");
        assert!(g == w, "{what}: samples of {k} differ");
    }
}

/// Checks full-range and several partial-range queries against the oracle.
fn check_all(db: &Db, oracle: &Oracle, what: &str) {
    assert_same(&dump(db), oracle, what);
    let end = oracle
        .values()
        .flat_map(|v| v.last().map(|s| s.0))
        .max()
        .unwrap_or(T0);
    for (lo, hi) in [
        (T0, T0 + 2 * HOUR - 1),
        (T0 + HOUR + 7, T0 + 7 * HOUR + 3),
        (end - 3 * HOUR, end),
        (end - 10 * MIN, end + HOUR),
    ] {
        assert_same(&query(db, lo, hi, &[]), &range(oracle, lo, hi), what);
    }
}

fn block_spans(db: &Db) -> Vec<(i64, i64)> {
    db.blocks()
        .iter()
        .map(|m| ((m.min_time - T0) / HOUR, (m.max_time - T0) / HOUR))
        .collect()
}

#[test]
fn blocks_round_trip_across_cuts_merges_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, &mut oracle, 30, T0, T0 + 25 * HOUR);
        db.compact().unwrap();
        let spans = block_spans(&db);
        // 2 h blocks from the head, merged into 6 h and 18 h ones, no overlaps.
        assert!(spans.contains(&(0, 18)), "{spans:?}");
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
        assert!(db.head_stats().min_t.unwrap() >= T0 + 20 * HOUR);
        check_all(&db, &oracle, "before restart");
        let st = db.storage_stats();
        assert!(
            st.head_compactions >= 10 && st.merge_compactions >= 3,
            "{st:?}"
        );
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.open_report().quarantined.is_empty());
    check_all(&db, &oracle, "after restart");
    // Appends go on after a restart, before and after the next cut.
    ingest(&db, &mut oracle, 30, T0 + 25 * HOUR, T0 + 28 * HOUR);
    check_all(&db, &oracle, "after more data");
}

/// A querier made before a compaction and read after it sees everything:
/// the data the compaction moved from the head into a new block included.
#[test]
fn querier_made_before_a_head_cut_reads_the_new_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(dir.path(), opts()).unwrap();
    ingest(&db, &mut oracle, 9, T0, T0 + 3 * HOUR);
    assert!(db.blocks().is_empty());
    let q = db.querier(i64::MIN, i64::MAX);
    ingest(&db, &mut oracle, 9, T0 + 3 * HOUR, T0 + 4 * HOUR);
    assert_eq!(block_spans(&db), vec![(0, 2)]);
    assert!(db.head_stats().min_t.unwrap() >= T0 + 2 * HOUR);
    let got: Oracle = q
        .select(&[])
        .iter()
        .map(|s| {
            let samples = s.samples().map(|x| (x.t, x.v.to_bits())).collect();
            (s.labels().to_string(), samples)
        })
        .collect();
    assert_same(&got, &oracle, "querier made before the cut");
    let names = q.label_values("__name__", &[]);
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Compaction in its own thread beside an appender and a reader: appends
/// go on, every query sees each series as a gap-free run from the start up
/// to at least what was acknowledged before it began, and in the end
/// everything acknowledged is stored once.
#[test]
fn compaction_beside_appends_and_queries_loses_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let series = 6;
    let end = T0 + 10 * HOUR;
    let acked = AtomicI64::new(i64::MIN);
    let done = AtomicBool::new(false);
    let (compactions, queries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut t = T0;
            while t < end {
                let batch: Vec<_> = (0..series)
                    .map(|n| one(labels(n), vec![Sample::new(t, value(n, t))]))
                    .collect();
                assert!(db.append(&batch).unwrap().is_complete());
                acked.store(t, Ordering::Release);
                t += STEP;
            }
            done.store(true, Ordering::Release);
        });
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                db.compact().unwrap();
                compactions.fetch_add(1, Ordering::Relaxed);
            }
        });
        scope.spawn(|| {
            // Bounded: the appender finishes in seconds.
            for _ in 0..100_000 {
                if done.load(Ordering::Acquire) {
                    break;
                }
                let upto = acked.load(Ordering::Acquire);
                for s in db.querier(i64::MIN, i64::MAX).select(&[]) {
                    let mut want = T0;
                    for x in s.samples() {
                        assert_eq!(x.t, want, "{}: gap or repeat", s.labels());
                        want += STEP;
                    }
                    assert!(want > upto, "{}: ends at {want}, acked {upto}", s.labels());
                }
                queries.fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    db.compact().unwrap();
    assert_eq!(block_spans(&db), vec![(0, 6), (6, 8)]);
    assert!(compactions.load(Ordering::Relaxed) > 0);
    assert!(queries.load(Ordering::Relaxed) > 0);
    let mut oracle = Oracle::new();
    let mut t = T0;
    while t < end {
        for n in 0..series {
            oracle
                .entry(labels(n).to_string())
                .or_default()
                .push((t, value(n, t).to_bits()));
        }
        t += STEP;
    }
    check_all(&db, &oracle, "after concurrent compaction");
}

#[test]
fn appends_older_than_the_newest_block_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(dir.path(), opts()).unwrap();
    ingest(&db, &mut oracle, 3, T0, T0 + 4 * HOUR);
    assert!(!db.blocks().is_empty());
    // A brand-new series with a timestamp inside a persisted block.
    let out = db
        .append(&[one(
            series_labels("late", 0),
            vec![Sample::new(T0 + HOUR, 1.0)],
        )])
        .unwrap();
    assert_eq!(out.rejected.len(), 1, "{out:?}");
    check_all(&db, &oracle, "after refused append");
}

#[test]
fn delete_series_hides_data_at_once_and_compaction_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(dir.path(), opts()).unwrap();
    ingest(&db, &mut oracle, 12, T0, T0 + 9 * HOUR);
    assert!(db.blocks().len() >= 2);
    // Delete one metric over a window spanning blocks and the head.
    let (lo, hi) = (T0 + 3 * HOUR + 1, T0 + 8 * HOUR + 30 * MIN);
    let m = [Matcher::eq("__name__", "node_cpu_seconds_total")];
    let n = db.delete(&m, lo, hi).unwrap();
    assert!(n >= 4, "{n}");
    for (k, v) in oracle.iter_mut() {
        if k.starts_with("node_cpu_seconds_total") {
            v.retain(|(t, _)| *t < lo || *t > hi);
        }
    }
    oracle.retain(|_, v| !v.is_empty());
    check_all(&db, &oracle, "after delete");
    // A series deleted over all its data is not selected at all.
    db.delete(&[Matcher::eq("instance", "i1")], i64::MIN, i64::MAX)
        .unwrap();
    oracle.retain(|k, _| !k.contains("instance=\"i1\""));
    check_all(&db, &oracle, "after deleting a whole series");
    // Tombstones survive a restart (block files and the WAL record).
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    check_all(&db, &oracle, "deletions after restart");
    // Compaction rewrites the blocks without the deleted data.
    let before: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
    let r = db.compact().unwrap();
    assert!(r.rewrites >= 1, "{r:?}");
    let after: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
    assert!(after < before, "{before} -> {after}");
    assert!(db.blocks().iter().all(|m| m.stats.num_tombstones == 0));
    check_all(&db, &oracle, "after rewrite");
    assert_eq!(db.clean_tombstones().unwrap(), 0);
    // More data after the deletion window stays visible.
    ingest(&db, &mut oracle, 12, T0 + 9 * HOUR, T0 + 10 * HOUR);
    check_all(&db, &oracle, "after more data");
}

/// `clean_tombstones` (the admin API's) rewrites every block holding
/// tombstones at once, without waiting for a compaction, and drops exactly
/// the deleted samples.
#[test]
fn clean_tombstones_rewrites_blocks_without_the_deleted_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(dir.path(), opts()).unwrap();
    ingest(&db, &mut oracle, 12, T0, T0 + 9 * HOUR);
    let (lo, hi) = (T0 + HOUR, T0 + 5 * HOUR);
    db.delete(&[Matcher::eq("__name__", "up")], lo, hi).unwrap();
    for (k, v) in oracle.iter_mut() {
        if k.starts_with("up{") {
            v.retain(|(t, _)| *t < lo || *t > hi);
        }
    }
    // Blocks [0, 2 h), [2 h, 4 h) and [4 h, 6 h) hold the window; the head
    // holds [6 h, 9 h).
    assert_eq!(block_spans(&db), vec![(0, 2), (2, 4), (4, 6)]);
    let before: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(db.clean_tombstones().unwrap(), 3);
    let after: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
    // Every deleted sample in a block is gone from the files: 4 of the 12
    // series are `up`, 4 h of them deleted (the 1..5 h window is all in
    // blocks), 240 samples each.
    assert_eq!(before - after, 4 * 4 * 240 + 4, "{before} -> {after}");
    check_all(&db, &oracle, "after clean_tombstones");
    assert_eq!(db.clean_tombstones().unwrap(), 0);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    check_all(&db, &oracle, "after clean_tombstones and restart");
}

#[test]
fn retention_by_time_deletes_whole_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(
        dir.path(),
        Options {
            retention_ms: 6 * HOUR,
            ..opts()
        },
    )
    .unwrap();
    ingest(&db, &mut oracle, 6, T0, T0 + 14 * HOUR);
    db.compact().unwrap();
    // 10% of a 6 h retention is below the 2 h block range: no merges. The
    // head (cut once it spans 3 h) holds [12 h, 14 h); the newest sample
    // is at 14 h - 15 s, so blocks ending at 6 h or before (8 h - 15 s
    // behind it, past the 6 h retention) are gone and the one ending at
    // 8 h (6 h - 15 s behind) stays.
    assert_eq!(block_spans(&db), vec![(6, 8), (8, 10), (10, 12)]);
    assert_eq!(db.storage_stats().retention_deleted_blocks, 3);
    assert_eq!(db.head_stats().min_t, Some(T0 + 12 * HOUR));
    let kept = range(&oracle, T0 + 6 * HOUR, i64::MAX);
    check_all(&db, &kept, "after time retention");
}

#[test]
fn retention_by_size_deletes_oldest_blocks_until_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let limit;
    let expected_first;
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, &mut oracle, 20, T0, T0 + 12 * HOUR);
        let st = db.storage_stats();
        assert!(st.blocks >= 2, "{st:?}");
        // Room for the WAL and about half of the blocks.
        limit = db.wal_size_bytes() + st.blocks_bytes / 2;
        // Oldest blocks go first until blocks + WAL fit: work out which
        // block is then the first, from each block's own size on disk.
        let mut total = st.blocks_bytes + db.wal_size_bytes();
        let mut first = None;
        for m in db.blocks() {
            if total <= limit {
                first = Some(m.min_time);
                break;
            }
            let b = tidemark::storage::block::Block::open(&dir.path().join(&m.ulid), false);
            total -= b.unwrap().size_bytes();
        }
        expected_first = first;
    }
    let db = Db::open(
        dir.path(),
        Options {
            retention_bytes: limit,
            ..opts()
        },
    )
    .unwrap();
    let r = db.compact().unwrap();
    assert!(r.retention_deleted >= 1, "{r:?}");
    let st = db.storage_stats();
    assert!(st.blocks_bytes + db.wal_size_bytes() <= limit, "{st:?}");
    // Exactly the oldest blocks went: the first survivor is the expected
    // one, and some block survives (a limit of half the blocks).
    let first = db.blocks().first().map(|m| m.min_time);
    assert!(expected_first.is_some());
    assert_eq!(first, expected_first, "{:?}", block_spans(&db));
    let kept = range(&oracle, first.unwrap_or(i64::MAX), i64::MAX);
    check_all(&db, &kept, "after size retention");
}

#[test]
fn snapshot_holds_blocks_and_head_and_opens_as_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let db = Db::open(dir.path(), opts()).unwrap();
    ingest(&db, &mut oracle, 8, T0, T0 + 7 * HOUR);
    let snap = db.snapshot("snap-1", false).unwrap();
    let headless = db.snapshot("snap-2", true).unwrap();
    // The live store goes on; the snapshots do not change.
    ingest(&db, &mut oracle, 8, T0 + 7 * HOUR, T0 + 8 * HOUR);
    let upto = |o: &Oracle, t: i64| range(o, i64::MIN, t);
    let s = Db::open(&snap, opts()).unwrap();
    check_all(&s, &upto(&oracle, T0 + 7 * HOUR - 1), "snapshot with head");
    let s2 = Db::open(&headless, opts()).unwrap();
    let block_end = s2.blocks().last().unwrap().max_time;
    assert_same(
        &dump(&s2),
        &upto(&oracle, block_end - 1),
        "snapshot without head",
    );
}

fn corrupt_byte(path: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = ((bytes.len() as f64) * at_fraction) as usize;
    bytes[i] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Writes a store with several blocks, damages one file of the oldest
/// block, reopens: the block is quarantined and everything else served.
fn damaged_block_is_quarantined(file: impl Fn(&Path) -> std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let victim;
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, &mut oracle, 10, T0, T0 + 8 * HOUR);
        let metas = db.blocks();
        assert!(metas.len() >= 2, "{:?}", block_spans(&db));
        victim = metas[0].clone();
    }
    corrupt_byte(&file(&dir.path().join(&victim.ulid)), 0.5);
    let db = Db::open(dir.path(), opts()).unwrap();
    let q = &db.open_report().quarantined;
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].0.ends_with(Path::new("quarantine").join(&victim.ulid)));
    assert!(!db.blocks().iter().any(|m| m.ulid == victim.ulid));
    let kept = range(&oracle, victim.max_time, i64::MAX);
    check_all(&db, &kept, "after quarantine");
}

#[test]
fn corrupt_index_byte_quarantines_the_block() {
    damaged_block_is_quarantined(|b| b.join("index"));
}

#[test]
fn corrupt_chunk_byte_quarantines_the_block() {
    damaged_block_is_quarantined(|b| b.join("chunks").join("000001"));
}

/// A store of several blocks (`series` series over 8 h) whose oldest
/// block has a damaged chunk byte, which only the full check reads,
/// reopened with `defer_block_checks`; with the blocks' metas before.
fn deferred_store_with_damaged_oldest_block(
    dir: &Path,
    oracle: &mut Oracle,
    series: usize,
) -> (Db, Vec<tidemark::storage::block::BlockMeta>) {
    let metas = {
        let db = Db::open(dir, opts()).unwrap();
        ingest(&db, oracle, series, T0, T0 + 8 * HOUR);
        db.blocks()
    };
    assert!(metas.len() >= 2, "{metas:?}");
    corrupt_byte(&dir.join(&metas[0].ulid).join("chunks").join("000001"), 0.5);
    let deferred = Options {
        defer_block_checks: true,
        ..opts()
    };
    (Db::open(dir, deferred).unwrap(), metas)
}

/// With `defer_block_checks`, a block whose damage only the full check
/// finds (a chunk byte) opens and is served; the first operation that
/// could copy or merge it (`compact`, `clean_tombstones`, `snapshot`)
/// checks every waiting block first and quarantines it, and everything
/// else is served as before.
#[test]
fn deferred_checks_quarantine_a_damaged_block_before_anything_merges_or_copies_it() {
    type Trigger = fn(&Db);
    let triggers: [(&str, Trigger); 3] = [
        ("compact", |db| {
            db.compact().unwrap();
        }),
        ("clean_tombstones", |db| {
            db.clean_tombstones().unwrap();
        }),
        ("snapshot", |db| {
            db.snapshot("s", true).unwrap();
        }),
    ];
    for (what, trigger) in triggers {
        let dir = tempfile::tempdir().unwrap();
        let mut oracle = Oracle::new();
        let (db, metas) = deferred_store_with_damaged_oldest_block(dir.path(), &mut oracle, 10);
        let victim = metas[0].clone();
        assert!(db.open_report().quarantined.is_empty(), "{what}");
        assert_eq!(db.blocks(), metas, "{what}: served before the check");
        assert_eq!(db.storage_stats().blocks_awaiting_checks, metas.len());
        assert!(db.awaits_checks(&victim.ulid));
        trigger(&db);
        let stats = db.storage_stats();
        assert_eq!(
            (stats.quarantined_blocks, stats.blocks_awaiting_checks),
            (1, 0),
            "{what}"
        );
        assert!(!db.awaits_checks(&victim.ulid));
        assert!(!db.blocks().iter().any(|m| m.ulid == victim.ulid), "{what}");
        assert!(
            dir.path().join("quarantine").join(&victim.ulid).is_dir(),
            "{what}"
        );
        if what == "snapshot" {
            let copied = dir.path().join("snapshots").join("s").join(&victim.ulid);
            assert!(!copied.exists(), "the damaged block was snapshotted");
        }
        let kept = range(&oracle, victim.max_time, i64::MAX);
        check_all(&db, &kept, what);
        drop(db);
        // Quarantined for good: the next start does not see it.
        let db = Db::open(dir.path(), opts()).unwrap();
        assert!(db.open_report().quarantined.is_empty(), "{what}");
        check_all(&db, &kept, what);
    }
}

/// A block that stopped being served before its deferred check ran
/// (retention deleted it while the checks were failing for the machine's
/// reasons) is dropped from the waiting list, not checked or moved: the
/// checks must not fail for good on a block that is gone.
#[test]
fn a_deferred_block_no_longer_served_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let (db, metas) = deferred_store_with_damaged_oldest_block(dir.path(), &mut oracle, 4);
    let victim = metas[0].clone();
    db.update_blocks(Vec::new(), std::slice::from_ref(&victim.ulid));
    assert_eq!(db.check_deferred_blocks().unwrap(), 0);
    let stats = db.storage_stats();
    assert_eq!(
        (stats.quarantined_blocks, stats.blocks_awaiting_checks),
        (0, 0)
    );
    assert!(dir.path().join(&victim.ulid).is_dir(), "left where it was");
    db.compact().unwrap();
}

#[test]
fn head_deletion_survives_wal_checkpoint_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, &mut oracle, 4, T0, T0 + 150 * MIN);
        assert!(db.blocks().is_empty());
        // Two deletions while only the head holds the data: one inside the
        // first block's range (the block is written without those samples)
        // and one after it (its tombstone must outlive the WAL checkpoint
        // that follows the block).
        for (lo, hi) in [
            (T0 + 90 * MIN, T0 + 100 * MIN),
            (T0 + 130 * MIN, T0 + 140 * MIN),
        ] {
            db.delete(&[Matcher::eq("instance", "i2")], lo, hi).unwrap();
            for (k, v) in oracle.iter_mut() {
                if k.contains("instance=\"i2\"") {
                    v.retain(|(t, _)| *t < lo || *t > hi);
                }
            }
        }
        ingest(&db, &mut oracle, 4, T0 + 150 * MIN, T0 + 4 * HOUR);
        assert_eq!(db.blocks().len(), 1);
        check_all(&db, &oracle, "before restart");
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    check_all(&db, &oracle, "after restart");
}

/// A chunk that fails its checksum while a query reads it (the block was
/// opened without scanning its chunks) is skipped, and the answer says it
/// is partial: the querier reports the problem, and a PromQL answer
/// carries it as a warning. Never a silent partial answer.
#[test]
fn unreadable_chunk_at_query_time_is_a_warning_not_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let lazy = || Options {
        verify_chunks_on_open: false,
        ..opts()
    };
    let victim;
    {
        let db = Db::open(dir.path(), lazy()).unwrap();
        ingest(&db, &mut oracle, 10, T0, T0 + 8 * HOUR);
        victim = db.blocks()[0].clone();
    }
    corrupt_byte(
        &dir.path().join(&victim.ulid).join("chunks").join("000001"),
        0.5,
    );
    let db = Db::open(dir.path(), lazy()).unwrap();
    assert!(
        db.open_report().quarantined.is_empty(),
        "chunks not scanned at open"
    );
    let q = db.querier(victim.min_time, victim.max_time - 1);
    let read: usize = q.select(&[]).iter().map(|s| s.samples().count()).sum();
    let problems = q.take_problems();
    assert!(
        read < range(&oracle, victim.min_time, victim.max_time)
            .values()
            .map(Vec::len)
            .sum(),
        "the damaged chunk was read?"
    );
    assert!(!problems.is_empty(), "a skipped chunk must be reported");
    assert!(problems[0].contains("incomplete"), "{problems:?}");

    let engine = tidemark::promql::Engine::new(Default::default());
    let res = engine
        .instant_query(
            &db,
            "count_over_time({__name__=~\".+\"}[2h])",
            victim.max_time - 1,
        )
        .unwrap();
    assert!(
        res.warnings
            .iter()
            .any(|w| w.contains("block chunk could not be read")),
        "warnings: {:?}",
        res.warnings
    );
}

/// A block that cannot be opened for a reason of the machine, not of its
/// bytes (here the index read fails with EISDIR, standing in for EIO,
/// EMFILE or a failed mmap), is retried and reported, and the open fails:
/// it is never quarantined, so once the trouble ends every sample is
/// served again. Before, it was moved to `quarantine/` for good.
#[test]
fn transient_block_open_error_is_not_a_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::new();
    let victim;
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, &mut oracle, 4, T0, T0 + 8 * HOUR);
        victim = db.blocks()[0].clone();
    }
    let index = dir.path().join(&victim.ulid).join("index");
    let aside = dir.path().join("index.aside");
    std::fs::rename(&index, &aside).unwrap();
    std::fs::create_dir(&index).unwrap();
    let failed = Db::open(dir.path(), opts());
    assert!(failed.is_err(), "an unreadable block fails the open");
    drop(failed);
    assert!(
        !dir.path().join("quarantine").join(&victim.ulid).exists(),
        "a block that failed for the machine's reasons was quarantined"
    );
    std::fs::remove_dir(&index).unwrap();
    std::fs::rename(&aside, &index).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.open_report().quarantined.is_empty());
    check_all(&db, &oracle, "after the trouble ended");
}

/// Label names and values over blocks answer as Prometheus's: every series
/// of a block the range overlaps (from its index), unless the block has
/// deletions (then a series whose every sample is deleted does not count).
#[test]
fn label_names_and_values_over_blocks_answer_from_the_index_as_prometheus() {
    use tidemark::model::MatchOp;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let one = |name: &str, i: &str, t: i64| {
        let l = Labels::try_from_pairs([("__name__", name), ("i", i)]).unwrap();
        let out = db
            .append(&[common::one(l, vec![Sample::new(t, 1.0)])])
            .unwrap();
        assert!(out.is_complete());
    };
    // `early` only in the first hour, `late` from the second on, up to 4 h.
    let mut t = T0;
    while t < T0 + 4 * HOUR {
        if t < T0 + HOUR {
            one("early", "a", t);
        } else {
            one("late", "b", t);
        }
        t += STEP;
    }
    db.compact().unwrap();
    assert_eq!(block_spans(&db), vec![(0, 2)]);
    let names = |mint, maxt, m: &[Matcher]| db.querier(mint, maxt).label_values("__name__", m);
    // The whole block in range.
    assert_eq!(names(T0, T0 + 4 * HOUR, &[]), ["early", "late"]);
    assert_eq!(
        db.querier(T0, T0 + 4 * HOUR).label_names(&[]),
        ["__name__", "i"]
    );
    let only_a = [Matcher::new(MatchOp::Equal, "i", "a").unwrap()];
    assert_eq!(names(T0, T0 + 4 * HOUR, &only_a), ["early"]);
    assert_eq!(
        db.querier(T0, T0 + 4 * HOUR).label_values("i", &[]),
        ["a", "b"]
    );
    // The range cuts the block: still every series of it, as Prometheus.
    assert_eq!(names(T0 + 90 * MIN, T0 + 4 * HOUR, &[]), ["early", "late"]);
    // Outside the block: the head alone.
    assert_eq!(names(T0 + 3 * HOUR, T0 + 4 * HOUR, &[]), ["late"]);
    // Deleted: the block is read, and `early` is gone.
    db.delete(&only_a, T0, T0 + 4 * HOUR).unwrap();
    assert_eq!(names(T0, T0 + 4 * HOUR, &[]), ["late"]);
}
