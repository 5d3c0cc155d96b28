//! Checkpoints: compacts closed segments (plus the previous checkpoint) into
//! `<wal>/checkpoint.NNNNNNNN/`, keeping only live series with their recent
//! samples and exemplars, and the newest metadata of each metric family,
//! then deletes what it replaces (`docs/format/checkpoint.md`).
//!
//! Owns checkpoint directories and the deletion of segments they cover. Must
//! not touch the open segment (the caller cuts one first, see
//! [`Wal::cut_segment`]) or anything outside the WAL directory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::model::Interner;
use crate::storage::{CrashHook, SeriesRef};

use super::reader::{list_checkpoints, read_segment_types, ReplayStats, CHECKPOINT_PREFIX};
use super::record::chained_fits;
use super::segment::{create_segment, list_segments, put_frame, segment_name, sync_dir};
use super::{
    encode_exemplars, encode_histogram_samples, encode_metadata, encode_ooo_histogram_samples,
    encode_ooo_samples, encode_samples, encode_series, encode_tombstones, io_err, Error, Record,
    RefMetadata, RefSample, Result, SampleChain, Wal, FRAME_HEADER_LEN, MAX_RECORD_LEN,
    RECORD_METADATA, SEGMENT_HEADER_LEN,
};

/// What a checkpoint kept, dropped and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Index of the checkpoint (the last segment it covers).
    pub index: u32,
    /// Series entries kept.
    pub series_kept: u64,
    /// Series entries dropped by `keep`.
    pub series_dropped: u64,
    /// Samples kept.
    pub samples_kept: u64,
    /// Samples dropped (series not kept, or older than `mint`).
    pub samples_dropped: u64,
    /// Exemplars kept.
    pub exemplars_kept: u64,
    /// Exemplars dropped (series not kept, or older than `mint`).
    pub exemplars_dropped: u64,
    /// Metric families whose newest metadata was kept.
    pub metadata_kept: u64,
    /// Bytes written to the checkpoint's segments.
    pub bytes: u64,
    /// WAL segments deleted.
    pub segments_removed: usize,
    /// Older checkpoints deleted.
    pub checkpoints_removed: usize,
}

/// The oldest timestamps a checkpoint keeps: in-order records (samples,
/// histograms, exemplars) from `in_order` on, out-of-order samples from
/// `out_of_order` on (the oldest the head still holds unwritten to a
/// block, which may be far older), and tombstones reaching either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepSince {
    /// Oldest in-order timestamp kept.
    pub in_order: i64,
    /// Oldest out-of-order sample timestamp kept.
    pub out_of_order: i64,
}

impl From<i64> for KeepSince {
    /// Both bounds at `mint`.
    fn from(mint: i64) -> Self {
        KeepSince {
            in_order: mint,
            out_of_order: mint,
        }
    }
}

/// What the head holds, as a checkpoint asks it. `Db` answers from the
/// head; a plain `Fn(SeriesRef) -> bool` says which series are live and
/// keeps their out-of-order samples by [`KeepSince::out_of_order`] alone.
pub trait Held {
    /// Whether series `r` is still in the head.
    fn live(&self, r: SeriesRef) -> bool;
    /// The oldest out-of-order sample (float or histogram) of `r` the head
    /// holds unwritten to a block; `None` when it holds none. Older
    /// out-of-order records of `r` are in a block already: kept, replay
    /// would bring them back into the head, and a deletion made after they
    /// were written, whose head tombstone covers only what the series still
    /// held, would not hide them there.
    fn ooo_from(&self, r: SeriesRef) -> Option<i64>;
    /// Whether the head holds no series at all (asked once, when the
    /// checkpoint starts): then no series, sample, exemplar or tombstone
    /// record can be kept, and only metadata records are decoded (a clean
    /// shutdown that persisted the head checkpoints the whole WAL so).
    fn holds_none(&self) -> bool {
        false
    }
}

impl<F: Fn(SeriesRef) -> bool> Held for F {
    fn live(&self, r: SeriesRef) -> bool {
        self(r)
    }
    fn ooo_from(&self, r: SeriesRef) -> Option<i64> {
        self(r).then_some(i64::MIN)
    }
}

/// Compacts segments `..=last` (which must be closed, i.e. before the
/// current one) and the previous checkpoint into `<dir>/checkpoint.<last:08>`:
/// keeps series for which `keep.live(ref)` is true, samples and exemplars of
/// kept series with `t >= mint.in_order` (out-of-order samples with
/// `t >= mint.out_of_order` and not older than the oldest the head holds of
/// their series, [`Held::ooo_from`]), and the newest metadata of every family (in one
/// record at the end: metadata records name families, not series). Written into a `.tmp` directory, fsynced, renamed atomically
/// and the directory fsynced; then segments `<= last` and older checkpoints
/// are deleted. If a checkpoint at `last` already exists only the deletions
/// run.
///
/// `crash` (a test hook, see [`CrashHook`]) is called with
/// `wal-checkpoint:renamed` once a new checkpoint is in place and before
/// anything it replaces is deleted, and with `wal-checkpoint:segments_removed`
/// once the segments are deleted and before the older checkpoints are.
///
/// # Errors
/// [`Error::CheckpointOpenSegment`] if `last` is not closed;
/// [`Error::Corruption`] if a source record is damaged (replay repairs
/// segments, a checkpoint does not); [`Error::Io`] on I/O failure.
pub fn checkpoint(
    dir: &Path,
    wal: &Wal,
    last: u32,
    interner: &Interner,
    keep: impl Held,
    mint: KeepSince,
    crash: Option<CrashHook>,
) -> Result<CheckpointStats> {
    let (_, current) = wal.segment_range();
    if last >= current {
        return Err(Error::CheckpointOpenSegment { last, current });
    }
    let mut stats = CheckpointStats {
        index: last,
        ..CheckpointStats::default()
    };
    let previous = list_checkpoints(dir)?.pop();
    if previous.as_ref().is_none_or(|(i, _)| *i < last) {
        let mut sources: Vec<PathBuf> = Vec::new();
        if let Some((_, cp_dir)) = &previous {
            sources.extend(list_segments(cp_dir)?.into_iter().map(|(_, p)| p));
        }
        let after = previous.as_ref().map_or(0, |(i, _)| i + 1);
        sources.extend(
            list_segments(dir)?
                .into_iter()
                .filter(|(i, _)| (after..=last).contains(i))
                .map(|(_, p)| p),
        );
        write_checkpoint(dir, wal, last, &sources, interner, &keep, mint, &mut stats)?;
        hook(crash, "wal-checkpoint:renamed");
    }
    // Cleanup: the checkpoint is durable, so what it replaces can go.
    for (i, path) in list_segments(dir)? {
        if i <= last {
            fs::remove_file(&path).map_err(io_err("remove checkpointed WAL segment", &path))?;
            stats.segments_removed += 1;
        }
    }
    hook(crash, "wal-checkpoint:segments_removed");
    for (i, path) in list_checkpoints(dir)? {
        if i < last {
            fs::remove_dir_all(&path).map_err(io_err("remove old checkpoint", &path))?;
            stats.checkpoints_removed += 1;
        }
    }
    sync_dir(dir)?;
    wal.set_first_segment(last + 1);
    Ok(stats)
}

/// Calls the crash hook, if any, with `step`.
fn hook(crash: Option<CrashHook>, step: &str) {
    if let Some(h) = crash {
        h(step);
    }
}

#[allow(clippy::too_many_arguments)]
fn write_checkpoint(
    dir: &Path,
    wal: &Wal,
    last: u32,
    sources: &[PathBuf],
    interner: &Interner,
    keep: &impl Held,
    since: KeepSince,
    stats: &mut CheckpointStats,
) -> Result<()> {
    let mint = since.in_order;
    let final_dir = dir.join(format!("{CHECKPOINT_PREFIX}{}", segment_name(last)));
    let tmp = dir.join(format!("{CHECKPOINT_PREFIX}{}.tmp", segment_name(last)));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err("remove stale checkpoint tmp dir", &tmp))?;
    }
    fs::create_dir(&tmp).map_err(io_err("create checkpoint tmp dir", &tmp))?;
    let opts = wal.options();
    let mut out = CheckpointWriter::create(&tmp, opts.segment_size, opts.compression)?;
    let mut payload = Vec::new();
    let mut failed = None;
    let mut metadata: BTreeMap<String, RefMetadata> = BTreeMap::new();
    let metadata_only = keep.holds_none();
    let mut on_record = |record: Record| {
        if failed.is_some() {
            return;
        }
        payload.clear();
        match record {
            Record::Series(mut series) => {
                let before = series.len() as u64;
                series.retain(|s| keep.live(s.series_ref));
                stats.series_kept += series.len() as u64;
                stats.series_dropped += before - series.len() as u64;
                if series.is_empty() {
                    return;
                }
                encode_series(&series, &mut payload);
            }
            Record::Samples(samples) => {
                let Some(samples) = keep_samples(samples, mint, keep, stats) else {
                    return;
                };
                if let Err(e) = out.append_samples(&samples) {
                    failed = Some(e);
                }
                return;
            }
            Record::OooSamples(samples) => {
                let bound = since.out_of_order;
                let Some(samples) = keep_ooo_samples(samples, bound, keep, stats) else {
                    return;
                };
                encode_ooo_samples(&samples, &mut payload);
            }
            Record::OooHistograms(histograms) => {
                let histograms = keep_ooo_samples(histograms, since.out_of_order, keep, stats);
                let encode = encode_ooo_histogram_samples;
                if let Err(e) = append_histograms(&mut out, histograms, encode, &mut payload) {
                    failed = Some(e);
                }
                return;
            }
            Record::Tombstones(mut tombstones) => {
                // Kept while any sample it may cover is kept: out-of-order
                // samples can be kept far below `mint` (already in a block
                // too, coming back on replay), and a deletion dropped here
                // would bring them back undeleted.
                let bound = mint.min(since.out_of_order);
                tombstones.retain(|t| t.maxt >= bound && keep.live(t.series_ref));
                if tombstones.is_empty() {
                    return;
                }
                encode_tombstones(&tombstones, &mut payload);
            }
            Record::Exemplars(mut exemplars) => {
                let before = exemplars.len() as u64;
                exemplars.retain(|e| e.t >= mint && keep.live(e.series_ref));
                stats.exemplars_kept += exemplars.len() as u64;
                stats.exemplars_dropped += before - exemplars.len() as u64;
                if exemplars.is_empty() {
                    return;
                }
                encode_exemplars(&exemplars, &mut payload);
            }
            Record::Metadata(entries) => {
                for m in entries {
                    metadata.insert(m.metric.clone(), m);
                }
                return;
            }
            Record::Histograms(histograms) => {
                let histograms = keep_samples(histograms, mint, keep, stats);
                let encode = encode_histogram_samples;
                if let Err(e) = append_histograms(&mut out, histograms, encode, &mut payload) {
                    failed = Some(e);
                }
                return;
            }
        }
        if let Err(e) = out.append(&payload) {
            failed = Some(e);
        }
    };
    let mut read = ReplayStats::default();
    let wanted = |typ: u8| !metadata_only || typ == RECORD_METADATA;
    for path in sources {
        let damage = read_segment_types(path, interner, wanted, &mut on_record, &mut read)?;
        if let Some((offset, reason)) = damage {
            return Err(Error::Corruption {
                file: path.clone(),
                offset,
                reason,
            });
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if !metadata.is_empty() {
        stats.metadata_kept = metadata.len() as u64;
        let entries: Vec<RefMetadata> = metadata.into_values().collect();
        // Records of a bounded number of families, far below MAX_RECORD_LEN.
        for chunk in entries.chunks(4096) {
            payload.clear();
            encode_metadata(chunk, &mut payload);
            out.append(&payload)?;
        }
    }
    stats.bytes = out.finish()?;
    sync_dir(&tmp)?;
    fs::rename(&tmp, &final_dir).map_err(io_err("rename checkpoint into place", &final_dir))?;
    sync_dir(dir)
}

/// A sample of some kind in a record: its series and time.
trait RecordSample {
    fn series_ref(&self) -> SeriesRef;
    fn t(&self) -> i64;
}

impl RecordSample for super::RefSample {
    fn series_ref(&self) -> SeriesRef {
        self.series_ref
    }
    fn t(&self) -> i64 {
        self.t
    }
}

impl RecordSample for super::RefHistogramSample {
    fn series_ref(&self) -> SeriesRef {
        self.series_ref
    }
    fn t(&self) -> i64 {
        self.t
    }
}

/// The samples of kept series at or after `bound`, counted in `stats`;
/// `None` when none is left.
fn keep_samples<S: RecordSample>(
    samples: Vec<S>,
    bound: i64,
    keep: &impl Held,
    stats: &mut CheckpointStats,
) -> Option<Vec<S>> {
    retain_counted(samples, stats, |s| {
        s.t() >= bound && keep.live(s.series_ref())
    })
}

/// The out-of-order samples at or after `bound` of kept series that the
/// head still holds ([`Held::ooo_from`]), counted in `stats`; `None` when
/// none is left.
fn keep_ooo_samples<S: RecordSample>(
    samples: Vec<S>,
    bound: i64,
    keep: &impl Held,
    stats: &mut CheckpointStats,
) -> Option<Vec<S>> {
    retain_counted(samples, stats, |s| {
        s.t() >= bound
            && keep
                .ooo_from(s.series_ref())
                .is_some_and(|from| s.t() >= from)
    })
}

/// `samples` that pass `keep`, counted in `stats`; `None` when none is left.
fn retain_counted<S>(
    mut samples: Vec<S>,
    stats: &mut CheckpointStats,
    keep: impl Fn(&S) -> bool,
) -> Option<Vec<S>> {
    let before = samples.len() as u64;
    samples.retain(keep);
    stats.samples_kept += samples.len() as u64;
    stats.samples_dropped += before - samples.len() as u64;
    (!samples.is_empty()).then_some(samples)
}

/// Appends histogram records (one per kind, by `encode`) for `histograms`.
fn append_histograms(
    out: &mut CheckpointWriter,
    histograms: Option<Vec<super::RefHistogramSample>>,
    encode: fn(&[super::RefHistogramSample], &mut Vec<u8>) -> Vec<usize>,
    payload: &mut Vec<u8>,
) -> Result<()> {
    let Some(histograms) = histograms else {
        return Ok(());
    };
    let mut start = 0;
    for end in encode(&histograms, payload) {
        out.append(&payload[start..end])?;
        start = end;
    }
    Ok(())
}

/// Writes frames into numbered segments of a checkpoint directory, rotating
/// at the WAL's segment size. Every finished file is fsynced.
struct CheckpointWriter {
    dir: PathBuf,
    segment_size: u64,
    index: u32,
    file: BufWriter<File>,
    path: PathBuf,
    size: u64,
    bytes: u64,
    frame: Vec<u8>,
    /// Snappy-compress records and chain samples as the WAL writer does.
    compression: bool,
    compressed: Vec<u8>,
    /// The open checkpoint segment's chain of samples.
    chain: SampleChain,
}

impl CheckpointWriter {
    fn create(dir: &Path, segment_size: u64, compression: bool) -> Result<Self> {
        let (file, path) = create_segment(dir, 0)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_size,
            index: 0,
            file: BufWriter::with_capacity(crate::storage::FILE_BUFFER_SIZE, file),
            path,
            size: SEGMENT_HEADER_LEN,
            bytes: SEGMENT_HEADER_LEN,
            frame: Vec::new(),
            compression,
            compressed: Vec::new(),
            chain: SampleChain::new(),
        })
    }

    /// Appends in-order float samples: a run-chained samples record against
    /// this segment's chain when compressing, else a samples record.
    fn append_samples(&mut self, samples: &[RefSample]) -> Result<()> {
        let mut record = std::mem::take(&mut self.compressed);
        record.clear();
        if !self.compression || !chained_fits(samples.len(), MAX_RECORD_LEN as usize) {
            encode_samples(samples, &mut record);
            let result = self.append_frame(&record);
            self.compressed = record;
            return result;
        }
        self.chain.encode(samples, &mut record);
        let mut result = Ok(());
        if self.must_rotate(record.len()) {
            // The record starts the next segment, whose chain is empty.
            result = self.rotate();
            record.clear();
            self.chain.encode(samples, &mut record);
        }
        let result = result.and_then(|()| self.append_frame(&record));
        self.compressed = record;
        result
    }

    fn must_rotate(&self, payload_len: usize) -> bool {
        let len = FRAME_HEADER_LEN + payload_len as u64;
        self.size > SEGMENT_HEADER_LEN && self.size + len > self.segment_size
    }

    fn rotate(&mut self) -> Result<()> {
        self.sync()?;
        self.index += 1;
        let (file, path) = create_segment(&self.dir, self.index)?;
        self.file = BufWriter::with_capacity(crate::storage::FILE_BUFFER_SIZE, file);
        self.path = path;
        self.size = SEGMENT_HEADER_LEN;
        self.bytes += SEGMENT_HEADER_LEN;
        self.chain.clear();
        Ok(())
    }

    fn append(&mut self, payload: &[u8]) -> Result<()> {
        let mut compressed = std::mem::take(&mut self.compressed);
        let payload = if self.compression && super::compress_record(payload, &mut compressed) {
            &compressed[..]
        } else {
            payload
        };
        let result = self.append_frame(payload);
        self.compressed = compressed;
        result
    }

    fn append_frame(&mut self, payload: &[u8]) -> Result<()> {
        let len = FRAME_HEADER_LEN + payload.len() as u64;
        if self.must_rotate(payload.len()) {
            self.rotate()?;
        }
        self.frame.clear();
        put_frame(&mut self.frame, payload);
        self.file
            .write_all(&self.frame)
            .map_err(io_err("write checkpoint segment", &self.path))?;
        self.size += len;
        self.bytes += len;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(io_err("write checkpoint segment", &self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err("fsync checkpoint segment", &self.path))
    }

    /// Flushes and fsyncs the last file; returns the bytes written.
    fn finish(mut self) -> Result<u64> {
        self.sync()?;
        Ok(self.bytes)
    }
}
