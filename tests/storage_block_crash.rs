//! Crash safety of block writing and compaction: a child process ingests
//! while compacting and aborts itself (a real crash: no destructors, no
//! flush) at one chosen step of writing a head block, of the head truncation
//! and WAL checkpoint after it, of a block merge, of a block rewrite that
//! drops deleted data, or of a retention deletion. The parent reopens the
//! store and checks that exactly the acknowledged samples are there (minus
//! acknowledged deletions and whole blocks past the retention), none twice,
//! and that the store compacts and takes appends again.
//!
//! The child is this same test binary, re-run with `CHILD_DIR`,
//! `CHILD_SCENARIO` and `CHILD_CRASH_AT` (`<step>#<occurrence>`) set.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tidemark::model::{MatchOp, Matcher, Sample};
use tidemark::storage::block::BlockMeta;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

const CHILD_DIR: &str = "TIDEMARK_BLOCK_CRASH_DIR";
const CHILD_CRASH_AT: &str = "TIDEMARK_BLOCK_CRASH_AT";
const CHILD_SCENARIO: &str = "TIDEMARK_BLOCK_CRASH_SCENARIO";
const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 6;
const END: i64 = T0 + 13 * HOUR;
/// When the deleting child deletes: the first block `[T0, T0+2h)` and its
/// WAL checkpoint are written, the second block's data is still in the head.
const DELETE_AT: i64 = T0 + 5 * HOUR;
/// First deleted timestamp: inside the first block.
const DELETED_FROM: i64 = T0 + HOUR;
/// Last deleted timestamp (inclusive): the first sample after the second
/// block, so it stays in the head and only the head's tombstone (in the
/// WAL checkpoint after that block) keeps it deleted.
const DELETED_TO: i64 = T0 + 4 * HOUR;
/// The series (by number) whose data in the deleted range is deleted.
const DELETED_SERIES: [usize; 2] = [1, 3];
/// Time retention of the retention scenario: each 2 h block expires a
/// compaction or two after the next one is written.
const RETENTION: i64 = 3 * HOUR;
/// Suffix of a block directory being deleted (`docs/format/README.md`).
const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";

static HITS: AtomicUsize = AtomicUsize::new(0);

/// What the child does besides ingesting and compacting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// Nothing else.
    Ingest,
    /// At [`DELETE_AT`], deletes [`DELETED_SERIES`] in
    /// `[DELETED_FROM, DELETED_TO]`: a tombstone in the first block (so the
    /// next compaction rewrites it) and one in the head.
    Delete,
    /// Runs with a time retention of [`RETENTION`], so compactions delete
    /// old blocks.
    Retention,
}

impl Scenario {
    /// The name passed to the child.
    fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Delete => "delete",
            Scenario::Retention => "retention",
        }
    }

    fn from_name(name: &str) -> Option<Scenario> {
        [Scenario::Ingest, Scenario::Delete, Scenario::Retention]
            .into_iter()
            .find(|s| s.name() == name)
    }

    fn retention_ms(self) -> i64 {
        match self {
            Scenario::Retention => RETENTION,
            Scenario::Ingest | Scenario::Delete => 0,
        }
    }
}

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

fn opts(scenario: Scenario, hook: bool) -> Options {
    Options {
        retention_ms: scenario.retention_ms(),
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

/// Selects the series of [`DELETED_SERIES`].
fn deleted_series_matchers() -> Vec<Matcher> {
    let instances: Vec<String> = DELETED_SERIES.iter().map(|n| format!("i{n}")).collect();
    vec![Matcher::new(MatchOp::Regex, "instance", instances.join("|")).expect("regex")]
}

/// Not a test on its own: the body of the child process.
#[test]
fn block_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let scenario = std::env::var(CHILD_SCENARIO)
        .ok()
        .and_then(|s| Scenario::from_name(&s))
        .expect("child scenario");
    let db = Db::open(&dir, opts(scenario, true)).expect("child open");
    if scenario == Scenario::Delete {
        ingest(&db, T0, DELETE_AT, true);
        let affected = db
            .delete(&deleted_series_matchers(), DELETED_FROM, DELETED_TO)
            .expect("delete");
        assert!(affected > 0, "the deletion matched nothing");
        // Acknowledged: block tombstones and the head's WAL record are
        // written before `delete` returns.
        println!("deleted");
        ingest(&db, DELETE_AT, END, true);
    } else {
        ingest(&db, T0, END, true);
    }
    println!("child finished without crashing");
}

/// The samples acknowledged up to `upto` (inclusive), without the deleted
/// ones when the deletion was acknowledged.
fn expected(upto: i64, deleted: bool) -> BTreeMap<String, Vec<(i64, u64)>> {
    (0..SERIES)
        .map(|n| {
            let samples = (0..)
                .map(|k| T0 + k * STEP)
                .take_while(|t| *t <= upto)
                .filter(|t| {
                    !(deleted
                        && DELETED_SERIES.contains(&n)
                        && (DELETED_FROM..=DELETED_TO).contains(t))
                })
                .map(|t| (t, value(n, t).to_bits()))
                .collect();
            (series_labels("crash_metric", n).to_string(), samples)
        })
        .collect()
}

/// `samples` without those before `from` (series left empty dropped).
fn since(
    samples: BTreeMap<String, Vec<(i64, u64)>>,
    from: i64,
) -> BTreeMap<String, Vec<(i64, u64)>> {
    samples
        .into_iter()
        .map(|(series, s)| (series, s.into_iter().filter(|(t, _)| *t >= from).collect()))
        .filter(|(_, s): &(String, Vec<_>)| !s.is_empty())
        .collect()
}

/// Checks that `db` serves exactly `expected(upto, deleted)`, except that
/// with a retention whole blocks past it may be gone: data is served from
/// the oldest block on, which must hold everything within the retention.
fn check_served(db: &Db, scenario: Scenario, upto: i64, deleted: bool, what: &str) {
    let served_from = db.blocks().first().map_or(T0, |m| m.min_time);
    let must_serve_from = match scenario.retention_ms() {
        0 => T0,
        retention => (upto - retention).max(T0),
    };
    assert!(
        served_from <= must_serve_from,
        "{what}: data from {served_from} on only, {must_serve_from} is within the retention"
    );
    assert_eq!(
        dump(db),
        since(expected(upto, deleted), served_from),
        "{what}"
    );
}

/// Names of the leftovers of unfinished writes and deletions in `dir`.
fn tmp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

/// Indexes of the checkpoints and of the segments in the WAL of `dir`.
fn wal_files(dir: &Path) -> (Vec<u32>, Vec<u32>) {
    let (mut checkpoints, mut segments) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir.join("wal")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(i) = name
            .strip_prefix("checkpoint.")
            .and_then(|i| i.parse().ok())
        {
            checkpoints.push(i);
        } else if let Ok(i) = name.parse() {
            segments.push(i);
        }
    }
    checkpoints.sort_unstable();
    segments.sort_unstable();
    (checkpoints, segments)
}

/// Metadata of the block directories in `dir`, read without opening a Db.
fn block_metas(dir: &Path) -> Vec<BlockMeta> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .map(|json| serde_json::from_slice(&json).expect("meta.json"))
        .collect()
}

fn crash_at(scenario: Scenario, step: &str) {
    crash_then(scenario, step, |_, _| {});
}

/// Crashes a `scenario` child at `step`, lets `before_reopen` look at (or
/// change) the data directory given the last acknowledged timestamp, then
/// reopens and checks the store.
fn crash_then(scenario: Scenario, step: &str, before_reopen: impl FnOnce(&Path, i64)) {
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
        .env(CHILD_SCENARIO, scenario.name())
        .env(CHILD_CRASH_AT, step)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("run child");
    let mut last_ack = None;
    let mut deleted = false;
    let mut crashed = false;
    for line in BufReader::new(&out.stdout[..]).lines() {
        let line = line.unwrap();
        if let Some(t) = line
            .strip_prefix("ack ")
            .and_then(|t| t.parse::<i64>().ok())
        {
            last_ack = Some(t);
        }
        deleted |= line == "deleted";
        crashed |= line.starts_with("crashing at");
    }
    assert!(crashed, "{step}: the child never reached the step");
    assert!(!out.status.success(), "{step}: child exited cleanly");
    let last_ack = last_ack.expect("child acknowledged something");
    assert_eq!(
        deleted,
        scenario == Scenario::Delete,
        "{step}: the crash must come after the deletion"
    );

    before_reopen(dir.path(), last_ack);
    let leftovers = tmp_leftovers(dir.path());
    let db = Db::open(dir.path(), opts(scenario, false)).expect("reopen after crash");
    assert!(db.open_report().quarantined.is_empty(), "{step}");
    let removed: Vec<_> = db
        .open_report()
        .removed_leftovers
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for l in &leftovers {
        assert!(removed.contains(l), "{step}: {l} not removed at open");
    }
    // Acknowledged samples, each once; nothing else (nothing later was sent).
    check_served(
        &db,
        scenario,
        last_ack,
        deleted,
        &format!("{step}: after reopen"),
    );
    // The store is consistent enough to compact and take more data.
    db.compact().unwrap();
    let metas = db.blocks();
    assert!(
        metas.windows(2).all(|w| w[0].max_time <= w[1].min_time),
        "{step}: overlapping blocks after compaction"
    );
    if scenario.retention_ms() > 0 {
        assert!(
            metas
                .iter()
                .all(|m| last_ack - m.max_time < scenario.retention_ms()),
            "{step}: a block past the retention survived compaction"
        );
    }
    // Deleted samples are gone from the blocks, not only hidden.
    let samples_in_blocks: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    let in_block_range = match (metas.first(), metas.last()) {
        (Some(first), Some(last)) => since(expected(last.max_time - 1, deleted), first.min_time),
        _ => BTreeMap::new(),
    };
    assert_eq!(
        samples_in_blocks,
        in_block_range.values().map(|v| v.len() as u64).sum::<u64>(),
        "{step}: blocks hold a sample twice or lose one"
    );
    ingest(&db, last_ack + STEP, END + HOUR, false);
    check_served(
        &db,
        scenario,
        END + HOUR - STEP,
        deleted,
        &format!("{step}: after more data"),
    );
    let leftovers = tmp_leftovers(dir.path());
    assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
}

#[test]
fn crash_while_writing_a_head_block() {
    for step in ["start", "series_written", "finished", "renamed"] {
        crash_at(Scenario::Ingest, &format!("head-block:{step}#2"));
    }
}

#[test]
fn crash_between_head_block_and_wal_checkpoint() {
    crash_at(Scenario::Ingest, "head:block_added#1");
    crash_at(Scenario::Ingest, "head:truncated#3");
}

#[test]
fn crash_while_merging_blocks() {
    for step in ["start", "series_written", "finished", "renamed"] {
        crash_at(Scenario::Ingest, &format!("merge-block:{step}#1"));
    }
    crash_at(Scenario::Ingest, "merge:swapped#1");
    crash_at(Scenario::Ingest, "merge:first_parent_deleted#1");
}

#[test]
fn crash_while_checkpointing_the_wal() {
    // The checkpoint is in place, the segments it covers are not deleted yet:
    // replay must skip them.
    let covered_segments_left = |dir: &Path, _| {
        let (checkpoints, segments) = wal_files(dir);
        let newest = *checkpoints.last().expect("a checkpoint");
        assert!(segments.iter().any(|&s| s <= newest), "{segments:?}");
    };
    crash_then(
        Scenario::Ingest,
        "wal-checkpoint:renamed#1",
        covered_segments_left,
    );
    crash_then(
        Scenario::Ingest,
        "wal-checkpoint:renamed#2",
        covered_segments_left,
    );
    // Segments deleted, the previous checkpoint not yet.
    crash_then(
        Scenario::Ingest,
        "wal-checkpoint:segments_removed#2",
        |dir, _| {
            let (checkpoints, segments) = wal_files(dir);
            assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
            assert!(segments.iter().all(|&s| s > checkpoints[1]), "{segments:?}");
        },
    );
    // The first checkpoint after the deletion carries the head's tombstone
    // for the sample at DELETED_TO, which no block holds.
    crash_then(
        Scenario::Delete,
        "wal-checkpoint:renamed#2",
        covered_segments_left,
    );
}

#[test]
fn crash_while_rewriting_a_block_with_tombstones() {
    for step in ["start", "series_written", "finished", "renamed"] {
        crash_at(Scenario::Delete, &format!("rewrite-block:{step}#1"));
    }
    crash_at(Scenario::Delete, "rewrite:swapped#1");
    crash_at(Scenario::Delete, "rewrite:first_parent_deleted#1");
}

#[test]
fn crash_while_deleting_blocks_past_retention() {
    crash_at(Scenario::Retention, "retention:dropped#1");
    crash_at(Scenario::Retention, "retention:dropped#2");
    crash_at(Scenario::Retention, "retention:block_deleted#1");
}

/// Deleting a block renames it to `<ulid>.tmp-for-deletion` before removing
/// it; the crash hook cannot stop between the two (the rename happens inside
/// the block-directory deletion), so the parent makes that rename itself
/// after a crash just before the deletion.
#[test]
fn crash_while_a_block_past_retention_is_renamed_aside() {
    crash_then(
        Scenario::Retention,
        "retention:dropped#2",
        |dir, last_ack| {
            let oldest_expired = block_metas(dir)
                .into_iter()
                .filter(|m| last_ack - m.max_time >= RETENTION)
                .min_by_key(|m| m.min_time)
                .expect("a block past the retention");
            let ulid = &oldest_expired.ulid;
            std::fs::rename(
                dir.join(ulid),
                dir.join(format!("{ulid}{TMP_DELETION_SUFFIX}")),
            )
            .unwrap();
        },
    );
}
