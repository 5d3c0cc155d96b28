//! End-to-end WAL tests: write, replay, repair, group commit, checkpoint.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{Frame, SegmentReader};
use super::*;
use crate::model::{Interner, Labels, STALE_NAN_BITS};
use crate::storage::SeriesRef;

/// A comparable form of a record (samples by value bits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Canon {
    Series(Vec<(u64, String)>),
    Samples(Vec<(u64, i64, u64)>),
    OooSamples(Vec<(u64, i64, u64)>),
    Tombstones(Vec<(u64, i64, i64)>),
    Exemplars(Vec<(u64, i64, u64, String)>),
    Metadata(Vec<RefMetadata>),
    Histograms(Vec<(u64, i64, String)>),
    OooHistograms(Vec<(u64, i64, String)>),
}

fn canon(r: &Record) -> Canon {
    match r {
        Record::Series(s) => Canon::Series(
            s.iter()
                .map(|s| (s.series_ref.0, s.labels.to_string()))
                .collect(),
        ),
        Record::Samples(s) => Canon::Samples(
            s.iter()
                .map(|s| (s.series_ref.0, s.t, s.v.to_bits()))
                .collect(),
        ),
        Record::OooSamples(s) => Canon::OooSamples(
            s.iter()
                .map(|s| (s.series_ref.0, s.t, s.v.to_bits()))
                .collect(),
        ),
        Record::Tombstones(t) => {
            Canon::Tombstones(t.iter().map(|t| (t.series_ref.0, t.mint, t.maxt)).collect())
        }
        Record::Exemplars(e) => Canon::Exemplars(
            e.iter()
                .map(|e| (e.series_ref.0, e.t, e.v.to_bits(), e.labels.to_string()))
                .collect(),
        ),
        Record::Metadata(m) => Canon::Metadata(m.clone()),
        Record::Histograms(h) => Canon::Histograms(
            h.iter()
                .map(|h| (h.series_ref.0, h.t, format!("{:?}", h.h)))
                .collect(),
        ),
        Record::OooHistograms(h) => Canon::OooHistograms(
            h.iter()
                .map(|h| (h.series_ref.0, h.t, format!("{:?}", h.h)))
                .collect(),
        ),
    }
}

/// Logs `r` to `wal` (durable before it returns) and returns it as
/// [`canon`] sees it.
fn log_record(wal: &Wal, r: Record) -> Canon {
    let mut buf = Vec::new();
    match &r {
        Record::Series(s) => encode_series(s, &mut buf),
        Record::Samples(s) => encode_samples(s, &mut buf),
        Record::OooSamples(s) => encode_ooo_samples(s, &mut buf),
        Record::Tombstones(t) => encode_tombstones(t, &mut buf),
        Record::Exemplars(e) => encode_exemplars(e, &mut buf),
        Record::Metadata(m) => encode_metadata(m, &mut buf),
        Record::Histograms(h) => {
            encode_histogram_samples(h, &mut buf);
        }
        Record::OooHistograms(h) => {
            encode_ooo_histogram_samples(h, &mut buf);
        }
    }
    let t = wal.log(&[&buf]).unwrap();
    wal.wait_durable(t).unwrap();
    canon(&r)
}

fn series(r: u64) -> RefSeries {
    RefSeries {
        series_ref: SeriesRef(r),
        labels: Labels::try_from_pairs([("__name__", "up"), ("instance", &format!("host-{r}"))])
            .unwrap(),
    }
}

fn sample(r: u64, t: i64, bits: u64) -> RefSample {
    RefSample {
        series_ref: SeriesRef(r),
        t,
        v: f64::from_bits(bits),
    }
}

/// Record `i` of a deterministic stream: every 5th a series record.
fn record(i: u64) -> (Vec<u8>, Canon) {
    let mut buf = Vec::new();
    if i.is_multiple_of(5) {
        let s = vec![series(i), series(i + 1)];
        encode_series(&s, &mut buf);
        (buf, canon(&Record::Series(s)))
    } else {
        let bits = if i.is_multiple_of(7) {
            STALE_NAN_BITS
        } else {
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let s = vec![
            sample(i, i as i64 * 1000, bits),
            sample(i + 1, -(i as i64), 0),
        ];
        encode_samples(&s, &mut buf);
        (buf, canon(&Record::Samples(s)))
    }
}

fn small(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        fsync: FsyncPolicy::Batch,
        // Frame sizes stay those of the payloads; compression has its own
        // tests.
        compression: false,
    }
}

/// Writes records `range`, one per `log` call; returns their canonical forms.
fn write(wal: &Wal, range: std::ops::Range<u64>) -> Vec<Canon> {
    range
        .map(|i| {
            let (payload, c) = record(i);
            let t = wal.log(&[&payload]).unwrap();
            wal.wait_durable(t).unwrap();
            c
        })
        .collect()
}

fn read_all(dir: &Path) -> (Vec<Canon>, ReplayStats) {
    let interner = Interner::new();
    let mut got = Vec::new();
    let stats = replay(dir, &interner, |r| got.push(canon(&r))).unwrap();
    (got, stats)
}

fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    super::segment::list_segments(dir).unwrap()
}

/// Start offsets of the frames in a segment.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let mut r = SegmentReader::open(path).unwrap();
    assert!(r.read_header().unwrap().is_none());
    let mut out = Vec::new();
    while let Frame::Record { offset, .. } = r.next_frame().unwrap() {
        out.push(offset);
    }
    out
}

#[test]
fn wal_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Wal>();
}

#[test]
fn replay_missing_dir_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (got, stats) = read_all(&tmp.path().join("wal"));
    assert!(got.is_empty());
    assert_eq!(stats.segments, 0);
    assert!(stats.damage.is_none());
}

#[test]
fn durable_handle_waits_on_another_thread_and_says_when_it_is_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(&tmp.path().join("wal"), small(1 << 20)).unwrap();
    let (payload, _) = record(1);
    let t = wal.log(&[&payload]).unwrap();
    let durable = wal.durable(Some(t));
    // Batch policy: nothing has been fsynced yet.
    assert!(!durable.is_ready());
    std::thread::spawn(move || durable.wait())
        .join()
        .unwrap()
        .unwrap();
    assert!(wal.durable(Some(t)).is_ready(), "covered by that fsync");
    assert!(wal.durable(None).is_ready());
    // A later write is not covered by the earlier fsync.
    let t2 = wal.log(&[&payload]).unwrap();
    assert!(!wal.durable(Some(t2)).is_ready());
    wal.wait_durable(t2).unwrap();
    assert!(wal.durable(Some(t2)).is_ready());
    wal.close().unwrap();

    // Other policies never wait.
    let tmp = tempfile::tempdir().unwrap();
    let never = WalOptions {
        fsync: FsyncPolicy::Never,
        ..small(1 << 20)
    };
    let wal = Wal::open(&tmp.path().join("wal"), never).unwrap();
    let t = wal.log(&[&payload]).unwrap();
    let durable = wal.durable(Some(t));
    assert!(durable.is_ready());
    durable.wait().unwrap();
    wal.close().unwrap();
}

#[test]
fn replay_clean_write_across_segments_returns_all_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(512)).unwrap();
    let want = write(&wal, 0..300);
    wal.close().unwrap();
    let (first, last) = wal.segment_range();
    assert!(
        last - first >= 5,
        "expected several segments, got {first}..={last}"
    );
    for (_, path) in segments(&dir) {
        assert!(fs::metadata(&path).unwrap().len() <= 512);
    }
    let (got, stats) = read_all(&dir);
    assert_eq!(got, want);
    assert_eq!(stats.records, 300);
    assert_eq!(stats.segments, (last - first + 1) as usize);
    assert!(stats.damage.is_none());
}

#[test]
fn log_oversized_batch_gets_own_segment_and_one_batch_never_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(64)).unwrap();
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| record(i).0).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    wal.log(&refs[..1]).unwrap();
    wal.log(&refs).unwrap();
    wal.log(&refs[..1]).unwrap();
    wal.close().unwrap();
    let segs = segments(&dir);
    assert_eq!(segs.len(), 3);
    assert_eq!(frame_offsets(&segs[1].1).len(), 10);
    assert_eq!(read_all(&dir).0.len(), 12);
}

#[test]
fn replay_torn_tail_truncates_reports_and_reopen_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(1024)).unwrap();
    let mut want = write(&wal, 0..100);
    wal.close().unwrap();
    drop(wal);

    let (_, last) = segments(&dir).pop().unwrap();
    let record_start = *frame_offsets(&last).last().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let (got, stats) = read_all(&dir);
    want.pop();
    assert_eq!(got, want);
    let damage = stats.damage.expect("torn tail reported");
    assert_eq!(damage.file, last);
    assert_eq!(damage.offset, record_start);
    assert!(matches!(
        damage.reason,
        CorruptionReason::ShortRecord { .. }
    ));
    assert_eq!(damage.truncated_bytes, len - 3 - record_start);
    assert!(damage.removed_segments.is_empty());
    assert_eq!(fs::metadata(&last).unwrap().len(), record_start);

    let wal = Wal::open(&dir, small(1024)).unwrap();
    want.extend(write(&wal, 1000..1010));
    wal.close().unwrap();
    let (got, stats) = read_all(&dir);
    assert_eq!(got, want);
    assert!(stats.damage.is_none());
}

#[test]
fn replay_flipped_byte_in_earlier_segment_stops_there_and_removes_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(512)).unwrap();
    let want = write(&wal, 0..200);
    wal.close().unwrap();
    drop(wal);

    let segs = segments(&dir);
    assert!(segs.len() >= 4);
    let per_segment: Vec<usize> = segs.iter().map(|(_, p)| frame_offsets(p).len()).collect();
    let victim = &segs[1].1;
    let offsets = frame_offsets(victim);
    let middle = offsets.len() / 2;
    let mut bytes = fs::read(victim).unwrap();
    // A payload byte (past the 8-byte frame header).
    bytes[offsets[middle] as usize + 10] ^= 0x40;
    fs::write(victim, &bytes).unwrap();

    let (got, stats) = read_all(&dir);
    let intact = per_segment[0] + middle;
    assert_eq!(got, want[..intact]);
    let damage = stats.damage.expect("corruption reported");
    assert_eq!(damage.file, *victim);
    assert_eq!(damage.offset, offsets[middle]);
    assert!(matches!(
        damage.reason,
        CorruptionReason::CrcMismatch { .. }
    ));
    assert_eq!(damage.removed_segments.len(), segs.len() - 2);
    assert_eq!(segments(&dir).len(), 2);
    assert_eq!(read_all(&dir).0, want[..intact]);
}

#[test]
fn replay_damaged_header_removes_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(512)).unwrap();
    let want = write(&wal, 0..3);
    wal.close().unwrap();
    drop(wal);
    // A crash right after creating the next segment leaves it empty.
    fs::write(dir.join("00000001"), b"").unwrap();
    let (got, stats) = read_all(&dir);
    assert_eq!(got, want);
    let damage = stats.damage.unwrap();
    assert!(damage.file_removed);
    assert_eq!(damage.reason, CorruptionReason::ShortHeader { got: 0 });
    assert_eq!(segments(&dir).len(), 1);
}

#[test]
fn replay_zeroed_tail_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(4096)).unwrap();
    let want = write(&wal, 0..5);
    wal.close().unwrap();
    drop(wal);
    let path = segments(&dir).pop().unwrap().1;
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + 100)
        .unwrap();
    let (got, stats) = read_all(&dir);
    assert_eq!(got, want);
    let damage = stats.damage.unwrap();
    assert_eq!(
        (damage.offset, damage.reason),
        (len, CorruptionReason::ZeroLength)
    );
}

#[test]
fn replay_segment_gap_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(256)).unwrap();
    write(&wal, 0..40);
    wal.close().unwrap();
    drop(wal);
    fs::remove_file(dir.join("00000001")).unwrap();
    let err = replay(&dir, &Interner::new(), |_| {}).unwrap_err();
    assert!(matches!(err, Error::SegmentGap { missing: 1, .. }), "{err}");
}

#[test]
fn replay_newer_version_refused_not_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(256)).unwrap();
    write(&wal, 0..2);
    wal.close().unwrap();
    drop(wal);
    let path = dir.join("00000000");
    let mut bytes = fs::read(&path).unwrap();
    bytes[4] = FORMAT_VERSION + 1;
    fs::write(&path, &bytes).unwrap();
    let err = replay(&dir, &Interner::new(), |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { version, .. } if version == FORMAT_VERSION + 1),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);
    // Older segments (version 1: no tombstones records; version 2: no
    // exemplars or metadata records) are still read.
    for old in MIN_FORMAT_VERSION..FORMAT_VERSION {
        bytes[4] = old;
        fs::write(&path, &bytes).unwrap();
        let mut n = 0;
        replay(&dir, &Interner::new(), |_| n += 1).unwrap();
        assert!(n > 0, "version {old}");
    }
}

#[test]
fn log_rejects_empty_payload_and_writes_after_close() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert!(matches!(wal.log(&[b""]), Err(Error::EmptyRecord)));
    wal.close().unwrap();
    wal.close().unwrap();
    assert!(matches!(wal.log(&[b"\x02"]), Err(Error::Closed)));
}

#[test]
fn interval_and_never_policies_write_replayable_data() {
    for fsync in [
        FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            tmp.path(),
            WalOptions {
                segment_size: 1024,
                fsync,
                compression: false,
            },
        )
        .unwrap();
        let want = write(&wal, 0..50);
        if fsync != FsyncPolicy::Never {
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert!(wal.fsync_count() > 0);
        }
        drop(wal);
        assert_eq!(read_all(tmp.path()).0, want);
    }
}

#[test]
fn group_commit_concurrent_waiters_share_fsyncs() {
    const THREADS: u64 = 8;
    const BATCHES: u64 = 200;
    let tmp = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(tmp.path(), WalOptions::default()).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..BATCHES {
                    let mut buf = Vec::new();
                    encode_samples(&[sample(thread, i as i64, i)], &mut buf);
                    let ticket = wal.log(&[&buf]).unwrap();
                    wal.wait_durable(ticket).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let fsyncs = wal.fsync_count();
    eprintln!(
        "group commit: {fsyncs} fsyncs for {} batches",
        THREADS * BATCHES
    );
    wal.close().unwrap();
    let (got, _) = read_all(tmp.path());
    let got: BTreeSet<Canon> = got.into_iter().collect();
    let want: BTreeSet<Canon> = (0..THREADS)
        .flat_map(|t| (0..BATCHES).map(move |i| Canon::Samples(vec![(t, i as i64, i)])))
        .collect();
    assert_eq!(got, want);
    assert!(
        fsyncs < THREADS * BATCHES,
        "{fsyncs} fsyncs for {} batches: none shared",
        THREADS * BATCHES
    );
}

/// A deletion of out-of-order samples the checkpoint keeps (they are older
/// than its in-order bound) is kept with them: replay must not bring them
/// back undeleted (found by tests/powercut.rs).
#[test]
fn checkpoint_keeps_tombstones_of_kept_out_of_order_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(300)).unwrap();
    let log = |r: Record| log_record(&wal, r);
    let mut want = vec![log(Record::Series(vec![series(1)]))];
    want.push(log(Record::OooSamples(vec![sample(1, 50, 7)])));
    let deletion = RefTombstone {
        series_ref: SeriesRef(1),
        mint: 40,
        maxt: 60,
    };
    want.push(log(Record::Tombstones(vec![deletion])));
    // Older than both bounds: dropped.
    log(Record::Tombstones(vec![RefTombstone {
        series_ref: SeriesRef(1),
        mint: 0,
        maxt: 10,
    }]));
    let last = wal.cut_segment().unwrap() - 1;
    let since = KeepSince {
        in_order: 100,
        out_of_order: 30,
    };
    checkpoint(&dir, &wal, last, &Interner::new(), |_| true, since, None).unwrap();
    wal.close().unwrap();
    let (got, _) = read_all(&dir);
    assert_eq!(got, want);
}

/// An out-of-order sample of a series whose head no longer holds one that
/// old (it was written to a block) is dropped, however old another
/// series' held sample sets the global bound: kept, replay brought it
/// back into the head, and a deletion made after it was written (whose
/// head tombstone covers only what the series still held) did not hide
/// it. Found by tests/powercut.rs ("came back after an acknowledged
/// delete").
#[test]
fn checkpoint_drops_out_of_order_samples_the_head_no_longer_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(300)).unwrap();
    let log = |r: Record| log_record(&wal, r);
    let mut want = vec![log(Record::Series(vec![series(1), series(2)]))];
    // Series 1's sample went to a block; series 2 still holds from 20 on.
    log(Record::OooSamples(vec![sample(1, 50, 7)]));
    want.push(log(Record::OooSamples(vec![sample(2, 20, 8)])));
    log(Record::OooSamples(vec![sample(2, 15, 9)]));
    want.push(log(Record::OooSamples(vec![sample(2, 60, 10)])));
    let last = wal.cut_segment().unwrap() - 1;
    struct Head;
    impl Held for Head {
        fn live(&self, _: SeriesRef) -> bool {
            true
        }
        fn ooo_from(&self, r: SeriesRef) -> Option<i64> {
            (r == SeriesRef(2)).then_some(20)
        }
    }
    let since = KeepSince {
        in_order: 100,
        out_of_order: 10,
    };
    let stats = checkpoint(&dir, &wal, last, &Interner::new(), Head, since, None).unwrap();
    assert_eq!((stats.samples_kept, stats.samples_dropped), (2, 2));
    wal.close().unwrap();
    let (got, _) = read_all(&dir);
    assert_eq!(got, want);
}

#[test]
fn checkpoint_keeps_live_series_and_recent_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(300)).unwrap();
    let log = |r: Record| log_record(&wal, r);
    for r in 0..10 {
        log(Record::Series(vec![series(r)]));
    }
    for t in 0..20 {
        log(Record::Samples(
            (0..10).map(|r| sample(r, t, t as u64)).collect(),
        ));
    }
    let last = wal.cut_segment().unwrap() - 1;
    assert!(last >= 3, "several segments before the checkpoint");
    let mut after = vec![log(Record::Series(vec![series(11)]))];
    after.push(log(Record::Samples(vec![
        sample(1, 100, 1),
        sample(11, 100, 2),
    ])));

    let keep = |r: SeriesRef| r.0.is_multiple_of(2);
    let stats = checkpoint(&dir, &wal, last, &Interner::new(), keep, 15.into(), None).unwrap();
    assert_eq!(stats.index, last);
    assert_eq!((stats.series_kept, stats.series_dropped), (5, 5));
    assert_eq!((stats.samples_kept, stats.samples_dropped), (25, 175));
    assert_eq!(stats.segments_removed, last as usize + 1);
    assert_eq!(wal.segment_range().0, last + 1);
    assert!(segments(&dir).iter().all(|(i, _)| *i > last));
    wal.close().unwrap();

    let (got, stats) = read_all(&dir);
    assert_eq!(stats.checkpoint, Some(last));
    assert!(stats.damage.is_none());
    let mut want: Vec<Canon> = (0..10)
        .filter(|r| r % 2 == 0)
        .map(|r| canon(&Record::Series(vec![series(r)])))
        .collect();
    want.extend((15..20).map(|t| {
        Canon::Samples(
            (0..10)
                .filter(|r| r % 2 == 0)
                .map(|r| (r, t, t as u64))
                .collect(),
        )
    }));
    want.extend(after);
    assert_eq!(got, want);

    // A second checkpoint folds the first in and removes it.
    let wal = Wal::open(&dir, small(300)).unwrap();
    let last2 = wal.cut_segment().unwrap() - 1;
    let stats = checkpoint(
        &dir,
        &wal,
        last2,
        &Interner::new(),
        |_| true,
        i64::MIN.into(),
        None,
    )
    .unwrap();
    assert_eq!(stats.checkpoints_removed, 1);
    wal.close().unwrap();
    let (again, stats) = read_all(&dir);
    assert_eq!(stats.checkpoint, Some(last2));
    assert_eq!(again, got);
}

#[test]
fn checkpoint_of_open_segment_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let err = checkpoint(
        tmp.path(),
        &wal,
        0,
        &Interner::new(),
        |_| true,
        0.into(),
        None,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::CheckpointOpenSegment {
            last: 0,
            current: 0
        }
    ));
}

#[test]
fn replay_undecodable_payload_with_good_crc_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), small(4096)).unwrap();
    let want = write(&wal, 0..3);
    wal.log(&[&[99, 1, 2]]).unwrap();
    write(&wal, 3..5);
    wal.close().unwrap();
    drop(wal);
    let (got, stats) = read_all(tmp.path());
    assert_eq!(got, want);
    let damage = stats.damage.unwrap();
    assert_eq!(
        damage.reason,
        CorruptionReason::Undecodable(RecordError::UnknownType { typ: 99 })
    );
    assert_eq!(stats.bytes, damage.offset);
    assert_eq!(fs::metadata(&damage.file).unwrap().len(), damage.offset);
}

/// A checkpoint a crash left half written (`checkpoint.N.tmp`) is removed
/// when the WAL is opened; complete checkpoints and segments stay.
#[test]
fn open_removes_unfinished_checkpoints_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(Wal::open(&dir, WalOptions::default()).unwrap());
    let unfinished = dir.join("checkpoint.00000007.tmp");
    let complete = dir.join("checkpoint.00000003");
    for d in [&unfinished, &complete] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("00000000"), b"x").unwrap();
    }
    let before: BTreeSet<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    drop(Wal::open(&dir, WalOptions::default()).unwrap());
    assert!(!unfinished.exists());
    assert!(complete.join("00000000").exists());
    let after: BTreeSet<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // Everything else is still there (plus the segment the open started).
    for name in before
        .iter()
        .filter(|n| n.to_str() != Some("checkpoint.00000007.tmp"))
    {
        assert!(after.contains(name), "{name:?} removed");
    }
}

fn md(metric: &str, help: &str) -> RefMetadata {
    RefMetadata {
        metric: metric.into(),
        metric_type: 1,
        unit: String::new(),
        help: help.into(),
    }
}

#[test]
fn checkpoint_keeps_exemplars_of_live_series_and_newest_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, small(300)).unwrap();
    let log = |payloads: &[Vec<u8>]| {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let t = wal.log(&refs).unwrap();
        wal.wait_durable(t).unwrap();
    };
    let exemplar = |r: u64, t: i64| RefExemplar {
        series_ref: SeriesRef(r),
        t,
        v: t as f64,
        labels: Labels::try_from_pairs([("trace_id", format!("t{t}"))]).unwrap(),
    };
    let enc = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        f(&mut b);
        b
    };
    log(&[enc(&|b| encode_series(&[series(1), series(2)], b))]);
    for t in 0..10 {
        // Samples, exemplars and metadata in one entry, as an append writes.
        log(&[
            enc(&|b| encode_samples(&[sample(1, t, 0), sample(2, t, 0)], b)),
            enc(&|b| encode_exemplars(&[exemplar(1, t), exemplar(2, t)], b)),
            enc(&|b| encode_metadata(&[md("up", &format!("help {t}"))], b)),
        ]);
    }
    log(&[enc(&|b| encode_metadata(&[md("other", "o")], b))]);
    let last = wal.cut_segment().unwrap() - 1;
    let keep = |r: SeriesRef| r.0 == 2;
    let stats = checkpoint(&dir, &wal, last, &Interner::new(), keep, 6.into(), None).unwrap();
    assert_eq!((stats.exemplars_kept, stats.exemplars_dropped), (4, 16));
    assert_eq!(stats.metadata_kept, 2);
    wal.close().unwrap();

    let (got, _) = read_all(&dir);
    let exemplars: Vec<(u64, i64, u64, String)> = got
        .iter()
        .filter_map(|c| match c {
            Canon::Exemplars(e) => Some(e.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let want: Vec<(u64, i64, u64, String)> = (6..10)
        .map(|t| {
            let e = exemplar(2, t);
            (2, t, e.v.to_bits(), e.labels.to_string())
        })
        .collect();
    assert_eq!(exemplars, want);
    // The newest entry of each family, once, after everything else.
    assert_eq!(
        got.last(),
        Some(&Canon::Metadata(vec![md("other", "o"), md("up", "help 9")]))
    );
    assert_eq!(
        got.iter()
            .filter(|c| matches!(c, Canon::Metadata(_)))
            .count(),
        1
    );
}

/// A head that holds no series (persisted whole at shutdown): the
/// checkpoint decodes metadata records only, and keeps exactly what one
/// that decoded everything against "no series live" keeps, compressed or
/// not.
#[test]
fn checkpoint_of_an_empty_head_keeps_the_newest_metadata_only() {
    struct Empty;
    impl Held for Empty {
        fn live(&self, _: SeriesRef) -> bool {
            false
        }
        fn ooo_from(&self, _: SeriesRef) -> Option<i64> {
            None
        }
        fn holds_none(&self) -> bool {
            true
        }
    }
    let run = |compression: bool, empty: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let opts = WalOptions {
            compression,
            ..small(2000)
        };
        let wal = Wal::open(&dir, opts).unwrap();
        let log = |r: Record| log_record(&wal, r);
        log(Record::Series((0..40).map(series).collect()));
        for t in 0..30 {
            log(Record::Samples(
                (0..40).map(|r| sample(r, t, t as u64)).collect(),
            ));
            log(Record::OooSamples(vec![sample(3, t - 100, 1)]));
            log(Record::Metadata(vec![md("up", &format!("help {t}"))]));
        }
        log(Record::Tombstones(vec![RefTombstone {
            series_ref: SeriesRef(1),
            mint: 0,
            maxt: 5,
        }]));
        log(Record::Metadata(vec![md("other", "o")]));
        let last = wal.cut_segment().unwrap() - 1;
        let interner = Interner::new();
        let stats = if empty {
            checkpoint(&dir, &wal, last, &interner, Empty, 0.into(), None).unwrap()
        } else {
            let none = |_: SeriesRef| false;
            checkpoint(&dir, &wal, last, &interner, none, 0.into(), None).unwrap()
        };
        wal.close().unwrap();
        (read_all(&dir).0, stats.metadata_kept, stats.series_kept)
    };
    for compression in [false, true] {
        let decoded_all = run(compression, false);
        assert_eq!(
            decoded_all.0,
            vec![Canon::Metadata(vec![md("other", "o"), md("up", "help 29")])]
        );
        assert_eq!(
            run(compression, true),
            decoded_all,
            "compression {compression}"
        );
    }
}

/// With compression on, large records are written snappy-compressed
/// (fewer bytes on disk) and replay gives back exactly the same records;
/// a WAL written with it off reads the same.
#[test]
fn compressed_wal_replays_the_same_records_in_fewer_bytes() {
    let write_with = |compression: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            tmp.path(),
            WalOptions {
                compression,
                ..small(1 << 20)
            },
        )
        .unwrap();
        let mut want = Vec::new();
        for batch in 0..20u64 {
            // 100 node_exporter-like samples: many repeated values.
            let s: Vec<RefSample> = (0..100)
                .map(|r| sample(r, 1_700_000_000_000 + batch as i64 * 15_000, r % 3))
                .collect();
            let mut buf = Vec::new();
            encode_samples(&s, &mut buf);
            let t = wal.log(&[&buf]).unwrap();
            wal.wait_durable(t).unwrap();
            want.push(canon(&Record::Samples(s)));
        }
        wal.close().unwrap();
        let bytes: u64 = segments(tmp.path())
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum();
        let (got, stats) = read_all(tmp.path());
        assert!(stats.damage.is_none());
        assert_eq!(got, want, "compression {compression}");
        bytes
    };
    let (plain, compressed) = (write_with(false), write_with(true));
    assert!(
        compressed * 2 < plain,
        "compressed {compressed} bytes vs plain {plain}"
    );
}

/// Logs `record` (if any) and `samples` as [`Payload::Samples`], one entry
/// per series (runs of one ref; sorted by ref first, stably), with links
/// kept in `links` as the head keeps them in its series.
fn log_linked(
    wal: &Wal,
    links: &mut std::collections::HashMap<u64, ChainLink>,
    record: Option<&[u8]>,
    samples: &mut [RefSample],
) -> Ticket {
    samples.sort_by_key(|s| s.series_ref);
    for s in samples.iter() {
        links.entry(s.series_ref.0).or_default();
    }
    let mut runs: Vec<&[RefSample]> = samples
        .chunk_by(|a, b| a.series_ref == b.series_ref)
        .collect();
    let mut by_ref: std::collections::HashMap<u64, &mut ChainLink> =
        links.iter_mut().map(|(r, l)| (*r, l)).collect();
    let mut series: Vec<SeriesSamples<'_>> = runs
        .drain(..)
        .map(|run| SeriesSamples {
            link: by_ref.remove(&run[0].series_ref.0).unwrap(),
            samples: run,
        })
        .collect();
    let mut payloads = Vec::new();
    if let Some(r) = record {
        payloads.push(Payload::Record(r));
    }
    payloads.push(Payload::Samples(&mut series));
    wal.log_payloads(&mut payloads).unwrap()
}

/// The values of a node_exporter-like series `r` at scrape `k`: decimal
/// counters, integer gauges, binary fractions, NaN and stale markers.
fn varied_bits(r: u64, k: u64) -> u64 {
    match r % 6 {
        0 => ((6_263_558 + r * 10_117 + k * (1_371 + r % 50)) as f64 / 100.0).to_bits(),
        1 => ((8_007_602_176 + r * 4_096 + (k * 7_919 * r) % 1_000_000) as f64).to_bits(),
        2 => (0.1 * r as f64 + 0.2 * k as f64).to_bits(),
        3 if k % 5 == 4 => STALE_NAN_BITS,
        3 => 1.0f64.to_bits(),
        4 => (k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(r as u32),
        _ => (-0.0f64).to_bits(),
    }
}

/// Samples given to the WAL as samples are written as run-chained records
/// (type 14) that refer to the segment's earlier records: replay must give
/// back every sample exactly, across segment rotations (the chain starts
/// again) and after a failed fsync, when recovery writes the kept batches
/// into a new segment and so must encode them again against its chain.
#[test]
fn chained_samples_replay_exactly_across_rotation_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        compression: true,
        ..small(4 << 10)
    };
    let wal = Wal::open(tmp.path(), opts).unwrap();
    let mut links = std::collections::HashMap::new();
    let mut want = Vec::new();
    let series: Vec<RefSeries> = (0..40).map(series).collect();
    let mut series_rec = Vec::new();
    encode_series(&series, &mut series_rec);
    for k in 0..60u64 {
        let jitter = (k * 7 % 5) as i64;
        let mut s: Vec<RefSample> = (0..40)
            .map(|r| {
                sample(
                    r,
                    1_700_000_000_000 + k as i64 * 15_000 + jitter,
                    varied_bits(r, k),
                )
            })
            .collect();
        if k == 7 {
            // Out of ref order, one series twice: one entry per series,
            // each series' own samples in their order.
            s.reverse();
            s.push(sample(
                3,
                1_700_000_000_000 + 7 * 15_000 + 100,
                42.5f64.to_bits(),
            ));
        }
        let record = (k == 0).then_some(series_rec.as_slice());
        if k == 0 {
            want.push(canon(&Record::Series(series.clone())));
        }
        let t = log_linked(&wal, &mut links, record, &mut s);
        if k == 30 {
            wal.fail_next_fsync();
            assert!(wal.wait_durable(t).is_err());
            assert!(wal.recover().unwrap());
        }
        wal.wait_durable(t).unwrap();
        want.push(canon(&Record::Samples(s)));
    }
    wal.close().unwrap();
    let segs = segments(tmp.path());
    assert!(segs.len() > 3, "rotations: {segs:?}");
    let (mut chained, mut plain) = (0, 0);
    for (_, path) in &segs {
        let mut r = SegmentReader::open(path).unwrap();
        assert!(r.read_header().unwrap().is_none());
        while let Frame::Record { payload, .. } = r.next_frame().unwrap() {
            chained += usize::from(payload[0] == RECORD_RUN_SAMPLES);
            plain += usize::from(payload[0] == RECORD_SAMPLES);
        }
    }
    // The batch that was not durable when the fsync failed is written
    // again by recovery as a samples record; the links it had advanced
    // start again in the new segment.
    assert_eq!((chained, plain), (59, 1));
    let (got, stats) = read_all(tmp.path());
    assert!(stats.damage.is_none(), "{stats:?}");
    assert_eq!(got, want);
}

/// Scrape-regular samples of many series take a fraction of the bytes as
/// chained records that they take as snappy-compressed samples records.
#[test]
fn chained_samples_take_a_fraction_of_compressed_samples_records() {
    let size = |chained: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            compression: true,
            ..small(64 << 20)
        };
        let wal = Wal::open(tmp.path(), opts).unwrap();
        let mut links = std::collections::HashMap::new();
        for k in 0..50u64 {
            // Decimal counters and gauges, constants and stale markers
            // (what node_exporter sends), not random bits.
            let mut s: Vec<RefSample> = (0..750)
                .filter(|r| r % 6 != 2 && r % 6 != 4)
                .map(|r| sample(r, 1_700_000_000_000 + k as i64 * 15_000, varied_bits(r, k)))
                .collect();
            let t = if chained {
                log_linked(&wal, &mut links, None, &mut s)
            } else {
                let mut plain = Vec::new();
                encode_samples(&s, &mut plain);
                wal.log(&[&plain]).unwrap()
            };
            wal.wait_durable(t).unwrap();
        }
        wal.close().unwrap();
        segments(tmp.path())
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum::<u64>()
    };
    let (snappy, chained) = (size(false), size(true));
    assert!(
        chained * 5 < snappy * 2,
        "chained {chained} bytes vs snappy samples records {snappy}"
    );
}

/// The records of the WAL golden fixture: series, then chained samples
/// of every value form (same bits, decimal delta, new scale, XOR, stale
/// marker) and jittered timestamps, then a tombstone.
fn golden_batches() -> Vec<(Vec<u8>, Vec<RefSample>)> {
    let series: Vec<RefSeries> = (0..12).map(series).collect();
    let mut series_rec = Vec::new();
    encode_series(&series, &mut series_rec);
    let mut out = vec![(series_rec, Vec::new())];
    for k in 0..8u64 {
        let jitter = (k * 3 % 4) as i64;
        let s = (0..12)
            .map(|r| {
                sample(
                    r,
                    1_700_000_000_000 + k as i64 * 15_000 + jitter,
                    varied_bits(r, k),
                )
            })
            .collect();
        out.push((Vec::new(), s));
    }
    let mut tomb = Vec::new();
    encode_tombstones(
        &[RefTombstone {
            series_ref: SeriesRef(3),
            mint: 1_700_000_000_000,
            maxt: 1_700_000_015_000,
        }],
        &mut tomb,
    );
    out.push((tomb, Vec::new()));
    out
}

/// A WAL segment written by format version 7 (chained samples records,
/// type 13) must keep replaying to the same records. Written by the
/// version 7 build; never rewritten.
#[test]
fn wal_golden_v7_fixture_replays() {
    golden_fixture_replays("wal-v7", 7, false);
}

/// A WAL segment written by format version 8 (run-chained samples
/// records, type 14) must keep replaying to the same records. Regenerate
/// only on a deliberate format change (with a version bump, keeping this
/// fixture as it is) with
/// `TIDEMARK_WRITE_FIXTURES=1 cargo test --lib wal_golden_v8`.
#[test]
fn wal_golden_v8_fixture_replays() {
    let write = std::env::var_os("TIDEMARK_WRITE_FIXTURES").is_some();
    golden_fixture_replays("wal-v8", 8, write);
}

fn golden_fixture_replays(name: &str, version: u8, write: bool) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name);
    let batches = golden_batches();
    if write {
        let _ = fs::remove_dir_all(&fixture);
        let opts = WalOptions {
            compression: true,
            ..small(1 << 20)
        };
        let wal = Wal::open(&fixture, opts).unwrap();
        let mut links = std::collections::HashMap::new();
        for (rec, samples) in &batches {
            if samples.is_empty() {
                wal.log(&[rec]).unwrap();
            } else {
                log_linked(&wal, &mut links, None, &mut samples.clone());
            }
        }
        wal.close().unwrap();
    }
    let want: Vec<Canon> = batches
        .iter()
        .map(|(rec, samples)| {
            if samples.is_empty() {
                canon(&decode(rec, &Interner::new()).unwrap())
            } else {
                canon(&Record::Samples(samples.clone()))
            }
        })
        .collect();
    // Replay repairs in place: read a copy.
    let tmp = tempfile::tempdir().unwrap();
    for (_, path) in segments(&fixture) {
        fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let bytes = fs::read(&segments(tmp.path())[0].1).unwrap();
    assert_eq!(
        bytes[4], version,
        "the fixture is a version {version} segment"
    );
    let (got, stats) = read_all(tmp.path());
    assert!(stats.damage.is_none(), "{stats:?}");
    assert_eq!(got, want, "the {name} fixture must keep replaying");
}
