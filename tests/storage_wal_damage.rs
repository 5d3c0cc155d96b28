//! A damaged WAL never stops the store from opening: a torn tail (segment cut
//! mid-record) or a flipped byte ends replay at the damaged record; all data
//! before it is intact; the damage is reported (and logged) with file and
//! offset; and the store takes writes again afterwards.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use tidemark::model::Sample;

/// Writes `n` batches of one new sample for 10 series each, and returns the
/// last segment and its length after each batch.
/// Opens without the head snapshot, so every reopen replays the (damaged)
/// WAL this file is about.
fn open_wal_only(dir: &std::path::Path) -> tidemark::storage::Db {
    let opts = tidemark::storage::Options {
        head_snapshot_on_close: false,
        ..options(tidemark::storage::wal::FsyncPolicy::Never)
    };
    tidemark::storage::Db::open(dir, opts).expect("open db")
}

fn write_batches(dir: &Path, n: usize) -> (PathBuf, Vec<u64>) {
    let db = open_wal_only(dir);
    let mut ends = Vec::new();
    for k in 0..n {
        let batch: Vec<_> = (0..10)
            .map(|s| {
                one(
                    series_labels("dmg", s),
                    vec![Sample::new(k as i64 * 1000, k as f64)],
                )
            })
            .collect();
        assert!(db.append(&batch).unwrap().is_complete());
        let seg = last_segment(dir);
        ends.push(fs::metadata(&seg).unwrap().len());
    }
    db.close().unwrap();
    (last_segment(dir), ends)
}

/// The newest WAL segment that holds records.
fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .chars()
                    .all(|c| c.is_ascii_digit())
        })
        .collect();
    segs.sort();
    segs.into_iter()
        .rev()
        .find(|p| fs::metadata(p).unwrap().len() > 64)
        .expect("a segment with data")
}

/// Timestamps stored for series 0; every series must agree.
fn stored_batches(dir: &Path) -> (Vec<i64>, tidemark::storage::OpenReport) {
    let db = open_wal_only(dir);
    let d = dump(&db);
    let first: Vec<i64> = d
        .values()
        .next()
        .map(|v| v.iter().map(|s| s.0).collect())
        .unwrap_or_default();
    assert!(
        d.values().all(|v| v.len() == first.len()),
        "series disagree: batch partially replayed"
    );
    (first, db.open_report().clone())
}

fn want(n: usize) -> Vec<i64> {
    (0..n as i64).map(|k| k * 1000).collect()
}

#[test]
fn wal_torn_tail_truncated_rest_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, ends) = write_batches(dir.path(), 20);
    // Cut the last record in half.
    let cut = ends[18] + (ends[19] - ends[18]) / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (got, report) = stored_batches(dir.path());
    assert_eq!(got, want(19));
    let damage = report.wal.damage.expect("damage reported");
    assert_eq!(damage.file, seg);
    assert_eq!(damage.offset, ends[18]);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        ends[18],
        "torn record truncated away"
    );

    // Writable again, and the next open is clean.
    {
        let db = open_wal_only(dir.path());
        assert!(db
            .append(&[one(series_labels("dmg", 0), vec![Sample::new(99_000, 1.0)])])
            .unwrap()
            .is_complete());
    }
    let db = open_wal_only(dir.path());
    assert!(db.open_report().wal.damage.is_none());
    assert_eq!(dump(&db)[&series_labels("dmg", 0).to_string()].len(), 20);
}

#[test]
fn wal_flipped_byte_stops_replay_at_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, ends) = write_batches(dir.path(), 20);
    // Flip a byte inside the 11th batch's record.
    let pos = (ends[9] + ends[10]) / 2;
    let mut bytes = fs::read(&seg).unwrap();
    bytes[pos as usize] ^= 0x5a;
    fs::write(&seg, &bytes).unwrap();

    let (got, report) = stored_batches(dir.path());
    assert_eq!(
        got,
        want(10),
        "everything before the damage intact, nothing after it"
    );
    let damage = report.wal.damage.expect("damage reported");
    assert_eq!(damage.file, seg);
    assert_eq!(damage.offset, ends[9]);
}

#[test]
fn wal_garbage_appended_after_last_record_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, ends) = write_batches(dir.path(), 5);
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xff; 37]);
    fs::write(&seg, &bytes).unwrap();
    let (got, report) = stored_batches(dir.path());
    assert_eq!(got, want(5));
    assert_eq!(report.wal.damage.expect("damage reported").offset, ends[4]);
}

/// A repair that stops halfway (here: one later segment cannot be removed,
/// as a crash or an I/O error would stop it) must leave a WAL that the next
/// open repairs, never a gap between segments that refuses to open. Repair
/// therefore removes later segments newest first and cuts the damaged one
/// last.
#[test]
fn wal_repair_interrupted_midway_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || tidemark::storage::Options {
        head_snapshot_on_close: false,
        wal: tidemark::storage::wal::WalOptions {
            // Chained samples records of 10 samples take ~20 bytes: small
            // segments so that 40 batches span several.
            segment_size: 128,
            fsync: tidemark::storage::wal::FsyncPolicy::Never,
            compression: true,
        },
        ..options(tidemark::storage::wal::FsyncPolicy::Never)
    };
    {
        let db = tidemark::storage::Db::open(dir.path(), opts()).unwrap();
        for k in 0..40 {
            let batch: Vec<_> = (0..10)
                .map(|s| {
                    one(
                        series_labels("rep", s),
                        vec![Sample::new(k * 1000, k as f64)],
                    )
                })
                .collect();
            assert!(db.append(&batch).unwrap().is_complete());
        }
        db.close().unwrap();
    }
    let wal = dir.path().join("wal");
    let mut segs: Vec<PathBuf> = fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().len() == 8)
        .collect();
    segs.sort();
    assert!(segs.len() >= 6, "want several segments, got {segs:?}");
    // Damage the header of a middle segment: replay stops there.
    let damaged = segs[2].clone();
    fs::write(&damaged, b"garbage!").unwrap();
    // The first later segment cannot be removed (a directory in its place).
    let stuck = segs[3].clone();
    fs::remove_file(&stuck).unwrap();
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("x"), b"x").unwrap();
    let first = tidemark::storage::Db::open(dir.path(), opts());
    assert!(
        first.is_err(),
        "repair cannot finish while the segment is stuck"
    );
    drop(first);
    // The trouble ends (the directory goes); the store must open and hold
    // every batch before the damage.
    fs::remove_dir_all(&stuck).unwrap();
    let db = tidemark::storage::Db::open(dir.path(), opts())
        .expect("a half-done repair leaves a WAL that opens");
    let d = dump(&db);
    let got = &d[&series_labels("rep", 0).to_string()];
    assert!(!got.is_empty(), "data before the damage survives");
}
