//! Replay: the newest complete checkpoint, then every later segment, in
//! order; a torn or corrupt tail is cut off and reported, never fatal
//! (`docs/format/wal.md`, section "Reading and repair").
//!
//! Owns the repair policy: it may truncate the damaged segment and remove
//! the segments after it, and nothing else. Must not be called while a
//! [`super::Wal`] is writing to the same directory.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::model::Interner;

use super::segment::{list_segments, sync_dir, CorruptionReason, Frame, SegmentReader};
use super::{decode_chained_if, io_err, Error, Record, Result, SampleChain, SEGMENT_HEADER_LEN};

/// Prefix of checkpoint directory names: `checkpoint.NNNNNNNN`.
pub(crate) const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// What replay found: counts and any repaired damage.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// WAL segments read (checkpoint segments not included).
    pub segments: usize,
    /// Records passed to the callback, checkpoint included.
    pub records: u64,
    /// Bytes of intact data read (headers and frames), checkpoint included.
    pub bytes: u64,
    /// The damage found and repaired, if any.
    pub damage: Option<Damage>,
    /// Index of the checkpoint replayed first, if any.
    pub checkpoint: Option<u32>,
}

/// Damage found by replay and what was done about it.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The damaged segment.
    pub file: PathBuf,
    /// Offset of the first damaged record (0: the header).
    pub offset: u64,
    /// What was wrong.
    pub reason: CorruptionReason,
    /// Bytes cut from the damaged segment.
    pub truncated_bytes: u64,
    /// True when the header itself was damaged and the file was removed
    /// rather than truncated.
    pub file_removed: bool,
    /// Later segments removed because they followed the damage.
    pub removed_segments: Vec<PathBuf>,
}

/// Replays `dir` (the WAL directory): newest complete checkpoint first, then
/// every segment after it, in order, calling `f` with each decoded record.
///
/// A torn or corrupt record (short frame, bad CRC, zero or implausible
/// length, undecodable payload) ends replay there: the segment is truncated
/// at that record's start offset (removed if its header is damaged), later
/// segments are removed, a warning names the file and offset, and the damage
/// is reported in [`ReplayStats::damage`]. A missing `dir` is an empty WAL.
///
/// # Errors
/// [`Error::Io`] for real I/O failures; [`Error::Corruption`] for damage
/// inside a checkpoint (written atomically, so never a torn tail);
/// [`Error::UnsupportedVersion`]; [`Error::SegmentGap`] when segment numbers
/// are not consecutive.
pub fn replay(dir: &Path, interner: &Interner, mut f: impl FnMut(Record)) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let checkpoint = newest_checkpoint(dir)?;
    if let Some((index, cp_dir)) = &checkpoint {
        read_checkpoint(cp_dir, interner, &mut f, &mut stats)?;
        stats.checkpoint = Some(*index);
    }
    // Segments at or below the checkpoint are leftovers of an interrupted
    // cleanup; their content is in the checkpoint.
    let segments: Vec<_> = list_segments(dir)?
        .into_iter()
        .filter(|(i, _)| checkpoint.as_ref().is_none_or(|(cp, _)| i > cp))
        .collect();
    replay_segments(dir, interner, segments, &mut f, &mut stats)?;
    Ok(stats)
}

/// Replays only the segments after `after`: what a head snapshot covering
/// the WAL up to segment `after` does not hold. Returns `None`, reading
/// nothing, when a checkpoint newer than `after` exists (the snapshot is
/// older than the WAL's compaction and must not be used).
///
/// # Errors
/// As [`replay`].
pub fn replay_after(
    dir: &Path,
    interner: &Interner,
    after: u32,
    mut f: impl FnMut(Record),
) -> Result<Option<ReplayStats>> {
    if newest_checkpoint(dir)?.is_some_and(|(cp, _)| cp > after) {
        return Ok(None);
    }
    let mut stats = ReplayStats::default();
    let segments: Vec<_> = list_segments(dir)?
        .into_iter()
        .filter(|(i, _)| *i > after)
        .collect();
    replay_segments(dir, interner, segments, &mut f, &mut stats)?;
    Ok(Some(stats))
}

fn replay_segments(
    dir: &Path,
    interner: &Interner,
    segments: Vec<(u32, PathBuf)>,
    f: &mut impl FnMut(Record),
    stats: &mut ReplayStats,
) -> Result<()> {
    check_consecutive(dir, &segments)?;
    for (n, (_, path)) in segments.iter().enumerate() {
        stats.segments += 1;
        if let Some((offset, reason)) = read_segment(path, interner, f, stats)? {
            stats.damage = Some(repair(dir, path, offset, reason, &segments[n + 1..])?);
            break;
        }
    }
    Ok(())
}

/// The newest complete (renamed, not `.tmp`) checkpoint in `dir`.
pub(crate) fn newest_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Complete checkpoints in `dir`, oldest first.
pub(crate) fn list_checkpoints(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    super::segment::list_numbered(dir, |n| {
        n.strip_prefix(CHECKPOINT_PREFIX)
            .and_then(super::segment::parse_segment_name)
    })
}

fn check_consecutive(dir: &Path, segments: &[(u32, PathBuf)]) -> Result<()> {
    for w in segments.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(Error::SegmentGap {
                dir: dir.to_path_buf(),
                missing: w[0].0 + 1,
            });
        }
    }
    Ok(())
}

fn read_checkpoint(
    cp_dir: &Path,
    interner: &Interner,
    f: &mut impl FnMut(Record),
    stats: &mut ReplayStats,
) -> Result<()> {
    let segments = list_segments(cp_dir)?;
    check_consecutive(cp_dir, &segments)?;
    for (_, path) in &segments {
        if let Some((offset, reason)) = read_segment(path, interner, f, stats)? {
            return Err(Error::Corruption {
                file: path.clone(),
                offset,
                reason,
            });
        }
    }
    Ok(())
}

/// Reads one segment, passing intact records to `f`. Returns where and why
/// it is damaged, if it is.
pub(crate) fn read_segment(
    path: &Path,
    interner: &Interner,
    f: &mut impl FnMut(Record),
    stats: &mut ReplayStats,
) -> Result<Option<(u64, CorruptionReason)>> {
    read_segment_types(path, interner, |_| true, f, stats)
}

/// [`read_segment`] decoding only the records whose type byte `wanted`
/// accepts ([`super::record::decode_chained_if`]); the others are checked
/// by their frame's CRC only and skipped. `wanted` must take all chained
/// samples records of a segment or none.
pub(crate) fn read_segment_types(
    path: &Path,
    interner: &Interner,
    wanted: impl Fn(u8) -> bool,
    f: &mut impl FnMut(Record),
    stats: &mut ReplayStats,
) -> Result<Option<(u64, CorruptionReason)>> {
    let mut r = SegmentReader::open(path)?;
    if let Some(reason) = r.read_header()? {
        return Ok(Some((0, reason)));
    }
    // Chained samples records refer to the segment's earlier records; the
    // chain starts empty at every segment, as the writer's does.
    let mut chain = SampleChain::new();
    let damage = loop {
        match r.next_frame()? {
            Frame::End => break None,
            Frame::Damaged { offset, reason } => break Some((offset, reason)),
            Frame::Record { offset, payload } => {
                match decode_chained_if(payload, interner, &mut chain, &wanted) {
                    Ok(Some(record)) => {
                        stats.records += 1;
                        f(record);
                    }
                    Ok(None) => {}
                    Err(e) => break Some((offset, CorruptionReason::Undecodable(e))),
                }
            }
        }
    };
    // Intact bytes end where the damage starts (an undecodable frame was
    // already consumed by the reader).
    stats.bytes += damage.as_ref().map_or(r.offset(), |(offset, _)| *offset);
    Ok(damage)
}

/// Removes `later` segments, newest first, then cuts `path` at `offset`
/// (removes it if the header is damaged), and fsyncs what changed. The
/// order makes every intermediate state openable: a repair interrupted by a
/// crash or an I/O error leaves consecutive segments ending in the damaged
/// one, which the next open repairs again; never a gap.
fn repair(
    dir: &Path,
    path: &Path,
    offset: u64,
    reason: CorruptionReason,
    later: &[(u32, PathBuf)],
) -> Result<Damage> {
    let len = fs::metadata(path)
        .map_err(io_err("stat WAL segment", path))?
        .len();
    let mut removed_segments = Vec::with_capacity(later.len());
    for (_, p) in later.iter().rev() {
        fs::remove_file(p).map_err(io_err("remove WAL segment after damage", p))?;
        removed_segments.push(p.clone());
    }
    removed_segments.reverse();
    sync_dir(dir)?;
    let file_removed = offset < SEGMENT_HEADER_LEN;
    if file_removed {
        fs::remove_file(path).map_err(io_err("remove damaged WAL segment", path))?;
    } else {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open WAL segment for repair", path))?;
        file.set_len(offset)
            .map_err(io_err("truncate damaged WAL segment", path))?;
        file.sync_all()
            .map_err(io_err("fsync repaired WAL segment", path))?;
    }
    sync_dir(dir)?;
    let truncated_bytes = len - offset.min(len);
    warn!(
        file = %path.display(),
        offset,
        %reason,
        truncated_bytes,
        file_removed,
        removed_segments = removed_segments.len(),
        "WAL damage repaired: replay stopped at a torn or corrupt record"
    );
    Ok(Damage {
        file: path.to_path_buf(),
        offset,
        reason,
        truncated_bytes,
        file_removed,
        removed_segments,
    })
}
