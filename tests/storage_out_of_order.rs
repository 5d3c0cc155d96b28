//! The out-of-order window (`Options::out_of_order_time_window_ms`,
//! `--storage.out-of-order-time-window`): float samples older than their
//! series' newest but inside the window are stored and read back merged,
//! sorted and de-duplicated with in-order data; through head compaction
//! (blocks overlapping earlier ones, then merged), WAL checkpoints,
//! restarts and `kill -9`. A model test checks the append and read rules
//! against an oracle.
//!
//! The crash child is this test binary, re-run with
//! `TIDEMARK_OOO_CRASH_CHILD_DIR` set so that `ooo_crash_child_appender`
//! does the appending.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tidemark::model::{Histogram, HistogramSample, HistogramValue, Sample, Span};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options, SampleError};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn with_window(window_ms: i64, block_range_ms: i64, fsync: FsyncPolicy) -> Options {
    Options {
        out_of_order_time_window_ms: window_ms,
        block_range_ms,
        retention_ms: 0,
        ..options(fsync)
    }
}

/// Every sample of `name{instance="i0"}` as (t, value).
fn series_of(db: &Db, labels: &tidemark::model::Labels) -> Vec<(i64, f64)> {
    dump(db)
        .get(&labels.to_string())
        .map(|v| v.iter().map(|&(t, b)| (t, f64::from_bits(b))).collect())
        .unwrap_or_default()
}

#[test]
fn shuffled_samples_inside_the_window_read_back_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), with_window(HOUR, 2 * HOUR, FsyncPolicy::Never)).unwrap();
    let l = series_labels("ooo", 0);
    let base = 10 * HOUR;
    // The newest first, then 200 older samples in random order, one per
    // batch, some twice (an idempotent resend).
    let newest = Sample::new(base + 50 * MIN, 1e9);
    let out = db.append(&[one(l.clone(), vec![newest])]).unwrap();
    assert_eq!(out.appended, 1);
    let mut ts: Vec<i64> = (0..200).map(|i| base + i * 15_000).collect();
    ts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let (mut appended, mut ooo) = (0, 0);
    for &t in ts.iter().chain(ts.iter().take(20)) {
        let out = db
            .append(&[one(l.clone(), vec![Sample::new(t, t as f64)])])
            .unwrap();
        assert!(out.is_complete(), "{t}: {:?}", out.rejected);
        appended += out.appended;
        ooo += out.out_of_order;
    }
    // 200 stored (all older than the newest), 20 resends ignored.
    assert_eq!((appended, ooo), (200, 200));
    let mut want: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
    want.push((newest.t, newest.v));
    want.sort_by_key(|x| x.0);
    assert_eq!(series_of(&db, &l), want);
    assert_eq!(db.storage_stats().ooo_appended, 200);
    // A sub-range reads the same, merged.
    let q = db.querier(base + 10 * 15_000, base + 20 * 15_000);
    let got: Vec<i64> = q.select(&[])[0].samples().map(|s| s.t).collect();
    assert_eq!(
        got,
        (10..=20).map(|i| base + i * 15_000).collect::<Vec<_>>()
    );
}

#[test]
fn outside_the_window_is_too_old_and_without_a_window_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        with_window(10 * MIN, 2 * HOUR, FsyncPolicy::Never),
    )
    .unwrap();
    let l = series_labels("ooo", 0);
    let t0 = 10 * HOUR;
    db.append(&[one(l.clone(), vec![Sample::new(t0, 1.0)])])
        .unwrap();
    // 11 minutes back: outside the 10 minute window.
    let out = db
        .append(&[one(l.clone(), vec![Sample::new(t0 - 11 * MIN, 2.0)])])
        .unwrap();
    assert_eq!(
        out.rejected.first().map(|r| r.error.clone()),
        Some(SampleError::TooOld {
            t: t0 - 11 * MIN,
            min_valid_t: t0 - 10 * MIN
        })
    );
    // A different value at a held timestamp is still a duplicate error.
    let out = db
        .append(&[one(l.clone(), vec![Sample::new(t0 - 5 * MIN, 3.0)])])
        .unwrap();
    assert_eq!(out.out_of_order, 1);
    let out = db
        .append(&[one(l.clone(), vec![Sample::new(t0 - 5 * MIN, 4.0)])])
        .unwrap();
    assert_eq!(
        out.rejected.first().map(|r| r.error.clone()),
        Some(SampleError::DuplicateSample { t: t0 - 5 * MIN })
    );
    drop(db);

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), with_window(0, 2 * HOUR, FsyncPolicy::Never)).unwrap();
    db.append(&[one(l.clone(), vec![Sample::new(t0, 1.0)])])
        .unwrap();
    let out = db
        .append(&[one(l.clone(), vec![Sample::new(t0 - MIN, 2.0)])])
        .unwrap();
    assert_eq!(
        out.rejected.first().map(|r| r.error.clone()),
        Some(SampleError::OutOfOrder {
            t: t0 - MIN,
            last_t: t0
        })
    );
    assert_eq!(out.out_of_order, 0);
}

/// An integer histogram with `n` observations in one bucket.
fn hist(n: u64) -> HistogramValue {
    HistogramValue::Int(Histogram {
        count: n,
        sum: n as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        positive_buckets: vec![n as i64],
        ..Default::default()
    })
}

/// Native histograms (what OTLP exponential histograms become) arriving
/// shuffled inside the window are stored out of order like floats: read
/// back sorted, through compaction into overlapping blocks, a restart
/// from the snapshot and one from the WAL alone; outside the window they
/// are too old.
#[test]
fn late_native_histograms_are_stored_and_merged_like_floats() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |snapshot: bool| Options {
        head_snapshot_on_close: snapshot,
        ..with_window(6 * HOUR, 2 * HOUR, FsyncPolicy::Never)
    };
    let db = Db::open(dir.path(), opts(true)).unwrap();
    let l = series_labels("ooo_h", 0);
    let entry = |ts: &[i64]| tidemark::storage::SeriesSamples {
        created: Vec::new(),
        labels: l.clone(),
        samples: Vec::new(),
        histograms: ts
            .iter()
            .map(|&t| HistogramSample {
                t,
                h: hist((t / MIN) as u64),
            })
            .collect(),
    };
    // Every 5 minutes over 5 h, in 4 rounds of 15 min steps at falling
    // offsets, each round shuffled: nearly everything arrives late.
    let mut sent: Vec<i64> = Vec::new();
    for offset in [15, 10, 5, 0] {
        let mut ts: Vec<i64> = (0..20).map(|k| k * 15 * MIN + offset * MIN).collect();
        ts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(offset as u64));
        for t in ts {
            let out = db.append(&[entry(&[t])]).unwrap();
            assert!(out.is_complete(), "{t}: {:?}", out.rejected);
            sent.push(t);
        }
    }
    sent.sort_unstable();
    // Offsets 15 and 0 meet: those resends were identical duplicates.
    sent.dedup();
    let want: Vec<(i64, f64)> = sent.iter().map(|&t| (t, (t / MIN) as f64)).collect();
    assert_eq!(histogram_counts(&db, "ooo_h"), want);
    // Too old: more than 6 h behind the newest (5 h).
    let mut old = entry(&[]);
    old.histograms.push(HistogramSample {
        t: -2 * HOUR,
        h: hist(1),
    });
    let out = db.append(&[old]).unwrap();
    assert!(
        matches!(
            out.rejected.first().map(|r| &r.error),
            Some(SampleError::TooOld { .. })
        ),
        "{out:?}"
    );
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    assert_eq!(histogram_counts(&db, "ooo_h"), want, "after compaction");
    drop(db);
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert!(db.open_report().head_snapshot_loaded);
    assert_eq!(
        histogram_counts(&db, "ooo_h"),
        want,
        "after a snapshot restart"
    );
    // More late histograms, then a restart from the WAL alone.
    let late = 4 * HOUR + 2 * MIN;
    db.append(&[entry(&[late])]).unwrap();
    let mut want = want;
    want.push((late, (late / MIN) as f64));
    want.sort_by_key(|x| x.0);
    drop(db);
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert!(!db.open_report().head_snapshot_loaded);
    assert_eq!(histogram_counts(&db, "ooo_h"), want, "after WAL replay");
}

/// A late histogram between two in-order ones of one chunk: the in-order
/// chunk's "no counter reset" claim for its second sample no longer holds
/// (its predecessor is now the late one), so the reader says "unknown" and
/// leaves the judgement to PromQL, as Prometheus's merging iterator does.
#[test]
fn interleaved_histogram_chunks_do_not_keep_their_no_reset_claims() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), with_window(HOUR, 2 * HOUR, FsyncPolicy::Never)).unwrap();
    let l = series_labels("ooo_h", 0);
    let entry = |t: i64, n: u64| tidemark::storage::SeriesSamples {
        created: Vec::new(),
        labels: l.clone(),
        samples: Vec::new(),
        histograms: vec![HistogramSample { t, h: hist(n) }],
    };
    for (t, n) in [(0, 10), (2 * MIN, 12), (MIN, 20)] {
        let out = db.append(&[entry(t, n)]).unwrap();
        assert!(out.is_complete(), "{out:?}");
    }
    let q = db.querier(i64::MIN, i64::MAX);
    let got: Vec<(i64, f64, tidemark::model::CounterResetHint)> = q.select(&[])[0]
        .histograms()
        .map(|(t, h)| (t, h.count, h.counter_reset_hint))
        .collect();
    use tidemark::model::CounterResetHint::Unknown;
    assert_eq!(
        got,
        vec![
            (0, 10.0, Unknown),
            (MIN, 20.0, Unknown),
            (2 * MIN, 12.0, Unknown)
        ]
    );
}

/// Samples into a range already written as a block go to a new block that
/// overlaps it; reads merge both, compaction merges the blocks, and every
/// step survives a restart (snapshot) and a WAL replay.
#[test]
fn late_samples_for_a_persisted_range_make_an_overlapping_block_that_merges() {
    let dir = tempfile::tempdir().unwrap();
    let range = 2 * HOUR;
    let opts = || with_window(6 * HOUR, range, FsyncPolicy::Never);
    let db = Db::open(dir.path(), opts()).unwrap();
    let l = series_labels("ooo", 0);
    let mut want: BTreeMap<i64, f64> = BTreeMap::new();
    // In order, every 10 minutes over 5 hours: compaction writes [0, 2h).
    for t in (0..5 * HOUR).step_by(10 * MIN as usize) {
        db.append(&[one(l.clone(), vec![Sample::new(t, 1.0)])])
            .unwrap();
        want.insert(t, 1.0);
    }
    db.compact().unwrap();
    let blocks = db.blocks();
    assert_eq!(
        blocks
            .iter()
            .map(|b| (b.min_time, b.max_time))
            .collect::<Vec<_>>(),
        vec![(0, range)]
    );
    // Late samples at minute 5 of every 10 in [0, 2h): older than the
    // block's end, inside the 6 h window.
    let late: Vec<i64> = (0..2 * HOUR)
        .step_by(10 * MIN as usize)
        .map(|t| t + 5 * MIN)
        .collect();
    let batch: Vec<_> = late
        .iter()
        .rev()
        .map(|&t| one(l.clone(), vec![Sample::new(t, 2.0)]))
        .collect();
    let out = db.append(&batch).unwrap();
    assert_eq!((out.appended, out.out_of_order), (late.len(), late.len()));
    for &t in &late {
        want.insert(t, 2.0);
    }
    let want: Vec<(i64, f64)> = want.into_iter().collect();
    assert_eq!(series_of(&db, &l), want, "head and block merged");

    // More in-order data pushes the head on: the late samples are written
    // as a block overlapping [0, 2h), then merged with it.
    let mut want = want;
    for t in (5 * HOUR..8 * HOUR).step_by(10 * MIN as usize) {
        db.append(&[one(l.clone(), vec![Sample::new(t, 1.0)])])
            .unwrap();
        want.push((t, 1.0));
    }
    db.compact().unwrap();
    let blocks = db.blocks();
    let first: Vec<_> = blocks.iter().filter(|b| b.min_time == 0).collect();
    assert!(!first.is_empty(), "{blocks:?}");
    assert!(
        blocks.windows(2).all(|w| w[0].max_time <= w[1].min_time),
        "overlapping blocks were merged: {blocks:?}"
    );
    let stats = db.head_stats();
    assert!(
        stats.min_t.is_some_and(|t| t >= 2 * HOUR),
        "late samples left the head: {stats:?}"
    );
    assert_eq!(series_of(&db, &l), want, "after compaction");
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(series_of(&db, &l), want, "after a restart");
}

/// Out-of-order samples below the head's floor that no block has yet
/// survive a WAL checkpoint and a restart without the head snapshot.
#[test]
fn unpersisted_late_samples_survive_checkpoints_and_wal_replay() {
    let dir = tempfile::tempdir().unwrap();
    let range = 2 * HOUR;
    let opts = || Options {
        head_snapshot_on_close: false,
        ..with_window(24 * HOUR, range, FsyncPolicy::Never)
    };
    let db = Db::open(dir.path(), opts()).unwrap();
    let l = series_labels("ooo", 0);
    let mut want: BTreeMap<i64, f64> = BTreeMap::new();
    let mut t = 0;
    // Late samples far behind, then in-order data compacted twice over:
    // each compaction writes the oldest range (the late samples' range
    // first) and checkpoints the WAL.
    for step in 0..4 {
        for _ in 0..12 {
            db.append(&[one(l.clone(), vec![Sample::new(t, 1.0)])])
                .unwrap();
            want.insert(t, 1.0);
            t += 10 * MIN;
        }
        let late = (step * 7 + 1) * MIN;
        let out = db
            .append(&[one(l.clone(), vec![Sample::new(late, 5.0)])])
            .unwrap();
        if out.appended == 1 {
            want.insert(late, 5.0);
        }
        db.compact().unwrap();
    }
    let want: Vec<(i64, f64)> = want.into_iter().collect();
    assert_eq!(series_of(&db, &l), want);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(!db.open_report().head_snapshot_loaded);
    assert_eq!(series_of(&db, &l), want, "after WAL replay");
}

/// The database the compaction hook of
/// [`a_late_sample_landing_during_compaction_survives_its_checkpoint`]
/// appends to (taken by its first call).
static HOOKED: std::sync::Mutex<Option<std::sync::Arc<Db>>> = std::sync::Mutex::new(None);
const RACING_T: i64 = 95 * MIN;

fn append_while_block_is_added(step: &str) {
    if step != "head:block_added" {
        return;
    }
    let db = HOOKED.lock().unwrap().take();
    if let Some(db) = db {
        let out = db
            .append(&[one(
                series_labels("ooo", 0),
                vec![Sample::new(RACING_T, 7.0)],
            )])
            .unwrap();
        assert_eq!(out.out_of_order, 1, "{out:?}");
    }
}

/// A late sample for the range being compacted that lands after the head
/// was read (so the block lacks it) stays in the head, and the WAL
/// checkpoint that follows keeps it although it is below the checkpoint's
/// in-order bound: a restart without the head snapshot still has it.
#[test]
fn a_late_sample_landing_during_compaction_survives_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |hook: bool| Options {
        head_snapshot_on_close: false,
        crash_hook: hook.then_some(append_while_block_is_added as fn(&str)),
        ..with_window(24 * HOUR, 2 * HOUR, FsyncPolicy::Never)
    };
    let db = std::sync::Arc::new(Db::open(dir.path(), opts(true)).unwrap());
    let l = series_labels("ooo", 0);
    let mut want = Vec::new();
    for t in (0..=210 * MIN).step_by(10 * MIN as usize) {
        db.append(&[one(l.clone(), vec![Sample::new(t, 1.0)])])
            .unwrap();
        want.push((t, 1.0));
    }
    *HOOKED.lock().unwrap() = Some(db.clone());
    db.compact().unwrap();
    assert!(HOOKED.lock().unwrap().is_none(), "the hook ran");
    want.push((RACING_T, 7.0));
    want.sort_by_key(|x| x.0);
    assert_eq!(series_of(&db, &l), want);
    assert_eq!(
        db.blocks()
            .iter()
            .map(|b| (b.min_time, b.max_time))
            .collect::<Vec<_>>(),
        vec![(0, 2 * HOUR)],
        "one block; the racing sample waits in the head"
    );
    drop(db);
    let db = Db::open(dir.path(), opts(false)).unwrap();
    assert!(!db.open_report().head_snapshot_loaded);
    assert_eq!(series_of(&db, &l), want, "after WAL replay");
}

// ---- kill -9 ----

const CHILD_ENV: &str = "TIDEMARK_OOO_CRASH_CHILD_DIR";
const SERIES: usize = 8;
/// Batches come in shuffled order within groups of this many.
const GROUP: u64 = 32;
const CRASH_RANGE: i64 = 2_000;

fn crash_options() -> Options {
    with_window(60_000, CRASH_RANGE, FsyncPolicy::Batch)
}

/// Timestamp of batch `k` (10 ms apart); value `k * 100 + series`.
fn crash_t(k: u64) -> i64 {
    1_000_000 + k as i64 * 10
}

/// Not a test on its own: the body of the child process. Appends batches
/// whose timestamps arrive shuffled within groups, compacting meanwhile.
#[test]
fn ooo_crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var("TIDEMARK_OOO_CRASH_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let db = Db::open(&dir, crash_options()).expect("child open");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.compact().expect("compact");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(start);
        for group in (start / GROUP).. {
            let mut ks: Vec<u64> = (group * GROUP..(group + 1) * GROUP).collect();
            ks.shuffle(&mut rng);
            for k in ks {
                let batch: Vec<_> = (0..SERIES)
                    .map(|s| {
                        one(
                            series_labels("ooo_crash", s),
                            vec![Sample::new(crash_t(k), (k * 100 + s as u64) as f64)],
                        )
                    })
                    .collect();
                let out = db.append(&batch).expect("append");
                assert!(out.is_complete(), "{k}: {:?}", out.rejected.first());
                println!("ack {k}");
            }
            if group > start / GROUP + 100_000 {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

#[test]
fn kill9_while_appending_out_of_order_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut start = 0u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "ooo_crash_child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("TIDEMARK_OOO_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("ack ").and_then(|k| k.parse().ok()) {
                    let _ = tx.send(k);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .map(|k| acked.push(k))
            .expect("child acknowledged nothing in 60 s");
        let until = Instant::now() + Duration::from_millis(rng.gen_range(300..1500));
        while Instant::now() < until {
            if let Ok(k) = rx.recv_timeout(Duration::from_millis(20)) {
                acked.push(k);
            }
        }
        child.kill().expect("kill -9");
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        // The next child starts after every group this one began.
        start = (acked.iter().max().copied().unwrap_or(0) / GROUP + 1) * GROUP;

        let db = Db::open(dir.path(), crash_options()).expect("reopen after kill -9");
        let d = dump(&db);
        for s in 0..SERIES {
            let key = series_labels("ooo_crash", s).to_string();
            let got = d.get(&key).cloned().unwrap_or_default();
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "round {round}: {key} not sorted and unique"
            );
            for &k in &acked {
                let want = (crash_t(k), ((k * 100 + s as u64) as f64).to_bits());
                assert!(
                    got.binary_search(&want).is_ok(),
                    "round {round}: acknowledged batch {k} lost for {key}"
                );
            }
        }
        assert!(
            db.blocks().len() > 1 || round == 0,
            "compaction wrote blocks: {:?}",
            db.blocks()
        );
    }
    assert!(
        acked.len() > 100,
        "only {} batches acknowledged",
        acked.len()
    );
}

// ---- model ----

/// Block range and window of the model's store (ms): the window is over
/// half a range, so every sample the in-order rules take is inside it.
const RANGE: i64 = 100;
const WINDOW: i64 = 150;

#[derive(Debug, Clone)]
enum Op {
    /// Entries of one batch: series index and timestamps.
    Append(Vec<(usize, Vec<i64>)>),
    Query {
        mint: i64,
        maxt: i64,
    },
    Restart,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    let entry = (0usize..4, proptest::collection::vec(0i64..700, 0..8));
    prop_oneof![
        6 => proptest::collection::vec(entry, 1..4).prop_map(Op::Append),
        3 => (0i64..700, 0i64..700).prop_map(|(a, b)| Op::Query { mint: a.min(b), maxt: a.max(b) }),
        1 => Just(Op::Restart),
        2 => Just(Op::Compact),
    ]
}

/// A sample's value: fixed per series and time, so resends are identical.
fn value(i: usize, t: i64) -> f64 {
    (i as i64 * 1000 + t) as f64
}

/// The oracle: every stored timestamp per series, whether the head still
/// holds it, and the head's newest time.
#[derive(Default)]
struct Model {
    series: BTreeMap<usize, BTreeMap<i64, bool>>,
    max_t: Option<i64>,
    floor: Option<i64>,
}

impl Model {
    /// The head's rules with a window: a sample the head holds is a
    /// duplicate; any other inside the window (from the head's max time
    /// at the batch's start) is stored; before the first sample only the
    /// in-order rules apply (the window needs a max time).
    fn append(
        &mut self,
        i: usize,
        t: i64,
        window_start: Option<i64>,
        batch_last: &mut BTreeMap<usize, i64>,
    ) -> Result<bool, SampleError> {
        let s = self.series.entry(i).or_default();
        if s.get(&t) == Some(&true) {
            return Ok(false);
        }
        let floor = self.floor.unwrap_or(i64::MIN);
        let ok = match window_start {
            Some(w) => t >= w,
            None => batch_last.get(&i).is_none_or(|&l| t > l) && t >= floor,
        };
        if !ok {
            return Err(match (window_start, batch_last.get(&i)) {
                (Some(w), _) => SampleError::TooOld { t, min_valid_t: w },
                (None, Some(&l)) if t >= floor => SampleError::OutOfOrder { t, last_t: l },
                _ => SampleError::TooOld {
                    t,
                    min_valid_t: floor,
                },
            });
        }
        if window_start.is_none() {
            batch_last.insert(i, t);
        }
        s.insert(t, true);
        self.max_t = Some(self.max_t.map_or(t, |m| m.max(t)));
        Ok(true)
    }

    /// `Db::compact`: while the head spans over 1.5 ranges, its oldest
    /// range leaves it (a block has it).
    fn compact(&mut self) {
        loop {
            let head_min = self
                .series
                .values()
                .flat_map(|s| s.iter().filter(|x| *x.1).map(|x| *x.0))
                .min();
            let (Some(min_t), Some(max_t)) = (head_min, self.max_t) else {
                return;
            };
            if max_t - min_t <= RANGE / 2 * 3 {
                return;
            }
            let maxt = min_t.div_euclid(RANGE) * RANGE + RANGE;
            for s in self.series.values_mut() {
                for (_, in_head) in s.range_mut(..maxt) {
                    *in_head = false;
                }
            }
            self.floor = Some(self.floor.map_or(maxt, |f| f.max(maxt)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn prop_out_of_order_appends_match_the_oracle(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let open = |dir: &std::path::Path| {
            Db::open(dir, with_window(WINDOW, RANGE, FsyncPolicy::Never)).unwrap()
        };
        let mut db = open(dir.path());
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(entries) => {
                    let batch: Vec<_> = entries
                        .iter()
                        .map(|(i, ts)| {
                            one(series_labels("m", *i), ts.iter().map(|&t| Sample::new(t, value(*i, t))).collect())
                        })
                        .collect();
                    let out = db.append(&batch).unwrap();
                    let window_start = model.max_t.map(|m| m - WINDOW);
                    let mut batch_last = BTreeMap::new();
                    let (mut appended, mut dups, mut rejected) = (0, 0, Vec::new());
                    for (bi, (i, ts)) in entries.iter().enumerate() {
                        for (j, &t) in ts.iter().enumerate() {
                            match model.append(*i, t, window_start, &mut batch_last) {
                                Ok(true) => appended += 1,
                                Ok(false) => dups += 1,
                                Err(e) => rejected.push((bi, j, e)),
                            }
                        }
                    }
                    prop_assert_eq!(out.appended, appended);
                    prop_assert_eq!(out.duplicates, dups);
                    let got: Vec<_> = out.rejected.into_iter().map(|r| (r.series, r.sample, r.error)).collect();
                    prop_assert_eq!(got, rejected);
                }
                Op::Query { mint, maxt } => {
                    let got: BTreeMap<String, Vec<(i64, u64)>> = db
                        .querier(mint, maxt)
                        .select(&[])
                        .iter()
                        .map(|s| {
                            let v = s.samples().map(|x| (x.t, x.v.to_bits())).collect::<Vec<_>>();
                            // The collecting read the engine uses yields the same.
                            let collected: Vec<_> = s.samples_vec().iter().map(|x| (x.t, x.v.to_bits())).collect();
                            assert_eq!(collected, v, "samples_vec of {}", s.labels());
                            (s.labels().to_string(), v)
                        })
                        .filter(|(_, v)| !v.is_empty())
                        .collect();
                    let want: BTreeMap<String, Vec<(i64, u64)>> = model
                        .series
                        .iter()
                        .map(|(i, s)| {
                            (series_labels("m", *i).to_string(), s.range(mint..=maxt).map(|(&t, _)| (t, value(*i, t).to_bits())).collect::<Vec<_>>())
                        })
                        .filter(|(_, v)| !v.is_empty())
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Restart => {
                    drop(db);
                    db = open(dir.path());
                }
                Op::Compact => {
                    db.compact().unwrap();
                    model.compact();
                }
            }
        }
        // Every block overlap was merged away or is still readable whole.
        let all = dump(&db);
        for (i, s) in &model.series {
            let want: Vec<(i64, u64)> = s.keys().map(|&t| (t, value(*i, t).to_bits())).collect();
            prop_assert_eq!(all.get(&series_labels("m", *i).to_string()).cloned().unwrap_or_default(), want);
        }
    }
}
