//! Crash safety of block writing and compaction: a child process ingests
//! while compacting and aborts itself (a real crash: no destructors, no
//! flush) at one chosen step of writing a head block, of the head truncation
//! and WAL checkpoint after it, or of a block merge. The parent reopens the
//! store and checks that exactly the acknowledged samples are there, none
//! twice, and that the store compacts and takes appends again.
//!
//! The child is this same test binary, re-run with `CHILD_DIR` and
//! `CHILD_CRASH_AT` (`<step>#<occurrence>`) set.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tidemark::model::Sample;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

const CHILD_DIR: &str = "TIDEMARK_BLOCK_CRASH_DIR";
const CHILD_CRASH_AT: &str = "TIDEMARK_BLOCK_CRASH_AT";
const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 6;
const END: i64 = T0 + 13 * HOUR;

static HITS: AtomicUsize = AtomicUsize::new(0);

/// The crash hook of the child: aborts at the configured occurrence of the
/// configured step.
fn crash_hook(step: &str) {
    let Ok(at) = std::env::var(CHILD_CRASH_AT) else {
        return;
    };
    let (want, nth) = at.split_once('#').unwrap_or((at.as_str(), "1"));
    if step == want && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth.parse().unwrap_or(1) {
        println!("crashing at {step}");
        std::process::abort();
    }
}

fn opts(hook: bool) -> Options {
    Options {
        retention_ms: 0,
        // Process crashes only: what write(2) reached the kernel survives.
        crash_hook: hook.then_some(crash_hook as fn(&str)),
        ..options(FsyncPolicy::Never)
    }
}

fn value(n: usize, t: i64) -> f64 {
    ((t - T0) / STEP) as f64 * (n as f64 + 0.5)
}

fn batch(t: i64) -> Vec<tidemark::storage::SeriesSamples> {
    (0..SERIES)
        .map(|n| {
            one(
                series_labels("crash_metric", n),
                vec![Sample::new(t, value(n, t))],
            )
        })
        .collect()
}

/// Appends from `from` to `to` (exclusive), compacting every 30 minutes of
/// data; prints each acknowledged timestamp when `report`.
fn ingest(db: &Db, from: i64, to: i64, report: bool) {
    let mut t = from;
    while t < to {
        let out = db.append(&batch(t)).expect("append");
        assert!(out.is_complete(), "{:?}", out.rejected.first());
        if report {
            println!("ack {t}");
        }
        t += STEP;
        if (t - T0) % (HOUR / 2) == 0 {
            db.compact().expect("compact");
        }
    }
}

/// Not a test on its own: the body of the child process.
#[test]
fn block_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let db = Db::open(&dir, opts(true)).expect("child open");
    ingest(&db, T0, END, true);
    println!("child finished without crashing");
}

fn expected(upto: i64) -> BTreeMap<String, Vec<(i64, u64)>> {
    (0..SERIES)
        .map(|n| {
            let samples = (0..)
                .map(|k| T0 + k * STEP)
                .take_while(|t| *t <= upto)
                .map(|t| (t, value(n, t).to_bits()))
                .collect();
            (series_labels("crash_metric", n).to_string(), samples)
        })
        .collect()
}

fn crash_at(step: &str) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "block_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_CRASH_AT, step)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("run child");
    let mut last_ack = None;
    let mut crashed = false;
    for line in BufReader::new(&out.stdout[..]).lines() {
        let line = line.unwrap();
        if let Some(t) = line
            .strip_prefix("ack ")
            .and_then(|t| t.parse::<i64>().ok())
        {
            last_ack = Some(t);
        }
        crashed |= line.starts_with("crashing at");
    }
    assert!(crashed, "{step}: the child never reached the step");
    assert!(!out.status.success(), "{step}: child exited cleanly");
    let last_ack = last_ack.expect("child acknowledged something");

    let db = Db::open(dir.path(), opts(false)).expect("reopen after crash");
    assert!(db.open_report().quarantined.is_empty(), "{step}");
    // Acknowledged samples, each once; nothing else (nothing later was sent).
    assert_eq!(dump(&db), expected(last_ack), "{step}: after reopen");
    // The store is consistent enough to compact and take more data.
    db.compact().unwrap();
    let metas = db.blocks();
    assert!(
        metas.windows(2).all(|w| w[0].max_time <= w[1].min_time),
        "{step}: overlapping blocks after compaction"
    );
    let samples_in_blocks: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    let in_block_range = expected(metas.last().map_or(T0 - 1, |m| m.max_time - 1));
    assert_eq!(
        samples_in_blocks,
        in_block_range.values().map(|v| v.len() as u64).sum::<u64>(),
        "{step}: blocks hold a sample twice or lose one"
    );
    ingest(&db, last_ack + STEP, END + HOUR, false);
    assert_eq!(
        dump(&db),
        expected(END + HOUR - STEP),
        "{step}: after more data"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
}

#[test]
fn crash_while_writing_a_head_block() {
    for step in ["start", "series_written", "finished", "renamed"] {
        crash_at(&format!("head-block:{step}#2"));
    }
}

#[test]
fn crash_between_head_block_and_wal_checkpoint() {
    crash_at("head:block_added#1");
    crash_at("head:truncated#3");
}

#[test]
fn crash_while_merging_blocks() {
    for step in ["start", "series_written", "finished", "renamed"] {
        crash_at(&format!("merge-block:{step}#1"));
    }
    crash_at("merge:swapped#1");
    crash_at("merge:first_parent_deleted#1");
}
